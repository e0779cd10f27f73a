"""Checks every request against the model's schema before it reaches the estimator.

Datatypes are matched exactly, as Triton does: an FP32 tensor for an FP64 input is an
error, not a silent cast. Messages name the model, the input, the rule, what was
expected and what came.
"""

import math
from collections.abc import Mapping, Sequence
from math import prod
from typing import Any

import numpy as np
import pandas as pd
from mlserver.types import RequestInput, RequestOutput

from .constraints import Constraints
from .errors import InvalidInput, InvalidOutput, InvalidPayload
from .schema import DEFAULT_OUTPUT, RAW_DTYPES, ModelSchema, TensorSpec, datatype_to_numpy

NO_CONSTRAINTS = Constraints()

# Python types a numeric tensor's values may have once parsed (JSON or protobuf).
_NUMBER_TYPES: set[type] = {int, float}
_JSON_TYPE_NAMES = {
    str: "strings",
    int: "numbers",
    float: "numbers",
    bytes: "bytes",
    bool: "booleans",
    type(None): "nulls",
    dict: "objects",
    list: "nested lists",
}


def _shape_text(shape: Sequence[int]) -> str:
    return "[" + ", ".join(str(d) for d in shape) + "]"


def _spec_text(spec: TensorSpec) -> str:
    return f"{spec.datatype} {_shape_text(spec.shape)}"


def _flat_data(model: str, name: str, data: Any) -> list[Any]:
    if not isinstance(data, list):
        data = [data]
    if data and isinstance(data[0], list):
        flat = np.asarray(data, dtype=object).reshape(-1).tolist()
        if any(isinstance(value, list) for value in flat):
            raise InvalidInput(
                model, name, "has ragged nested data", "a rectangular array", "ragged lists"
            )
        return flat
    return data


def _dims_match(want: tuple[int, ...], got: tuple[int, ...]) -> bool:
    if len(want) != len(got):
        return want == (-1,) and len(got) == 2 and got[1] == 1  # a column as [-1, 1]
    for expected, actual in zip(want, got, strict=True):
        if actual < 0 or (expected != -1 and expected != actual):
            return False
    return True


def _check_shape(
    model: str, spec: TensorSpec, name: str, datatype: str, given: Sequence[int]
) -> tuple[int, ...]:
    shape = tuple(given)
    if not _dims_match(spec.shape, shape) or min(shape, default=0) < 0:
        raise InvalidInput(
            model, name, "has the wrong shape", _spec_text(spec), f"{datatype} {_shape_text(shape)}"
        )
    if shape and shape[0] == 0:
        raise InvalidInput(model, name, "has an empty batch", "at least 1 row", "0 rows")
    return shape


def _check_value_types(
    model: str, name: str, data: list[Any], allowed: set[type], expected: str
) -> None:
    foreign = set(map(type, data)) - allowed
    if foreign:
        got = ", ".join(sorted(_JSON_TYPE_NAMES.get(t, t.__name__) for t in foreign))
        rule = "has non-string data" if str in allowed else "has non-numeric data"
        raise InvalidInput(model, name, rule, expected, got)


def _to_array(model: str, spec: TensorSpec, tensor: RequestInput, allow_nan: bool) -> np.ndarray:
    raw = getattr(tensor.data, "root", tensor.data)
    return tensor_array(model, spec, tensor.name, tensor.datatype, tensor.shape, raw, allow_nan)


def tensor_array(
    model: str,
    spec: TensorSpec,
    name: str,
    datatype: str,
    given_shape: Sequence[int],
    raw: Any,
    allow_nan: bool,
) -> np.ndarray:
    """One input's array, checked against its spec: from a ``RequestInput``'s fields, or
    from the wire's JSON directly (the lean REST path, ``decode_single``)."""
    if datatype != spec.datatype:
        raise InvalidInput(
            model,
            name,
            "has the wrong datatype",
            _spec_text(spec),
            f"{datatype} {_shape_text(given_shape)}",
        )
    shape = _check_shape(model, spec, name, datatype, given_shape)
    if isinstance(raw, np.ndarray):
        return _from_decoded(model, spec, name, raw, shape, allow_nan)
    data = _flat_data(model, name, raw)
    if spec.datatype == "BYTES":
        data = [v.decode("utf-8", "replace") if isinstance(v, bytes) else v for v in data]
        _check_value_types(model, name, data, {str}, "strings")
    else:
        allowed = _NUMBER_TYPES | {bool} if spec.datatype == "BOOL" else _NUMBER_TYPES
        _check_value_types(model, name, data, allowed, f"{spec.datatype} numbers")
    if len(data) != prod(shape):
        raise InvalidInput(
            model,
            name,
            "has data that disagrees with its shape",
            f"{prod(shape)} values for shape {_shape_text(shape)}",
            f"{len(data)} values",
        )
    if spec.datatype == "BYTES":
        return np.asarray(data, dtype=object).reshape(shape)
    try:
        array = np.asarray(data, dtype=datatype_to_numpy(spec.datatype)).reshape(shape)
    except (ValueError, TypeError, OverflowError) as exc:
        raise InvalidInput(
            model, name, "has values that are not numbers", spec.datatype, str(exc)
        ) from exc
    _check_finite(model, name, array, allow_nan)
    return array


_SMALL = 32


def _check_finite(model: str, name: str, array: np.ndarray, allow_nan: bool) -> None:
    if allow_nan or array.dtype.kind != "f":
        return
    # For a few values a Python loop is cheaper than numpy's ufunc and reduction overhead.
    finite = (
        all(map(math.isfinite, array.flat)) if array.size <= _SMALL else np.isfinite(array).all()
    )
    if not finite:
        raise InvalidInput(model, name, "contains NaN or Inf", "finite numbers", "NaN or Inf")


def _from_decoded(
    model: str,
    spec: TensorSpec,
    name: str,
    array: np.ndarray,
    shape: tuple[int, ...],
    allow_nan: bool,
) -> np.ndarray:
    """Tensors that arrived as raw bytes, already decoded to numpy by the protocol adapter."""
    if array.size != prod(shape):
        raise InvalidInput(
            model,
            name,
            "has data that disagrees with its shape",
            f"{prod(shape)} values for shape {_shape_text(shape)}",
            f"{array.size} values",
        )
    if spec.datatype == "BYTES":
        try:
            text = [v.decode("utf-8") if isinstance(v, bytes) else str(v) for v in array]
        except UnicodeDecodeError as exc:
            raise InvalidInput(
                model, name, "has BYTES that are not UTF-8", "text", str(exc)
            ) from exc
        return np.asarray(text, dtype=object).reshape(shape)
    array = array.reshape(shape)
    _check_finite(model, name, array, allow_nan)
    return array


def _check_known(model: str, schema: ModelSchema, name: str) -> TensorSpec:
    spec = schema.input_named(name)
    if spec is None:
        raise InvalidInput(
            model, name, "is unknown", f"inputs {[s.name for s in schema.inputs]}", f"'{name}'"
        )
    return spec


def _index_inputs(
    model: str, schema: ModelSchema, inputs: Sequence[RequestInput]
) -> dict[str, RequestInput]:
    if not inputs:
        raise InvalidPayload(f"model '{model}': the request has no inputs")
    by_name: dict[str, RequestInput] = {}
    for tensor in inputs:
        if tensor.name in by_name:
            raise InvalidInput(model, tensor.name, "is duplicated", "each input once", "it twice")
        _check_known(model, schema, tensor.name)
        by_name[tensor.name] = tensor
    missing = [spec.name for spec in schema.inputs if spec.name not in by_name]
    if missing:
        raise InvalidInput(model, missing[0], "is missing", "it in the request", "no such input")
    return by_name


def _check_batch_size(model: str, name: str, shape: Sequence[int], max_batch_size: int) -> None:
    if max_batch_size and shape and shape[0] > max_batch_size:
        raise InvalidInput(
            model,
            name,
            "exceeds the model's max_batch_size",
            f"at most {max_batch_size} rows",
            f"{shape[0]} rows",
        )


def decode_features(
    model: str,
    schema: ModelSchema,
    inputs: Sequence[RequestInput],
    allow_nan: bool = False,
    constraints: Constraints = NO_CONSTRAINTS,
) -> np.ndarray | pd.DataFrame:
    """The estimator's X: a 2-D array, or a DataFrame for named columns."""
    by_name = _index_inputs(model, schema, inputs)
    if constraints.max_batch_size:
        for tensor in by_name.values():
            _check_batch_size(model, tensor.name, tensor.shape, constraints.max_batch_size)
    arrays = {
        spec.name: _to_array(model, spec, by_name[spec.name], allow_nan) for spec in schema.inputs
    }
    if constraints.ranges or constraints.categories:
        constraints.check(model, arrays)
    if not schema.named_columns:
        return next(iter(arrays.values()))
    columns = {name: array.reshape(-1) for name, array in arrays.items()}
    lengths = {len(column) for column in columns.values()}
    if len(lengths) > 1:
        first = schema.inputs[0].name
        raise InvalidInput(
            model,
            first,
            "has a batch size unlike the other columns",
            "one batch size for every column",
            f"sizes {sorted(lengths)}",
        )
    return pd.DataFrame(columns)


def single_input(schema: ModelSchema) -> bool:
    """Whether ``decode_single`` can serve the schema: one input, not named columns."""
    return len(schema.inputs) == 1 and not schema.named_columns


def decode_single(
    model: str,
    schema: ModelSchema,
    name: str,
    datatype: str,
    shape: Sequence[int],
    data: Any,
    allow_nan: bool = False,
    constraints: Constraints = NO_CONSTRAINTS,
) -> np.ndarray:
    """``decode_features`` of a request with one input, given as its fields rather than a
    ``RequestInput``, for a ``single_input`` schema: the same checks in the same order,
    so the same errors (tests/unit/test_lean_path.py)."""
    spec = _check_known(model, schema, name)
    if constraints.max_batch_size:
        _check_batch_size(model, name, shape, constraints.max_batch_size)
    array = tensor_array(model, spec, name, datatype, shape, data, allow_nan)
    if constraints.ranges or constraints.categories:
        constraints.check(model, {name: array})
    return array


def requested_outputs(
    model: str, schema: ModelSchema, outputs: Sequence[RequestOutput] | None
) -> list[str]:
    return requested_names(model, schema, [output.name for output in outputs or ()])


def requested_names(model: str, schema: ModelSchema, wanted: Sequence[str]) -> list[str]:
    """The methods to run for the outputs ``wanted`` by name, in order and once each;
    none wanted: the default output. An unknown name is refused, naming the known ones."""
    if not wanted:
        return (
            [DEFAULT_OUTPUT] if DEFAULT_OUTPUT in schema.output_names else [schema.output_names[0]]
        )
    names: list[str] = []
    for name in wanted:
        if name not in schema.output_names:
            raise InvalidOutput(model, name, schema.output_names)
        if name not in names:
            names.append(name)
    return names


# Parameters that v2serve or MLServer read from a request or an input, with their types.
# Over REST pydantic checks them; over gRPC MLServer's converter raises a bare
# ValidationError (an INTERNAL error), so the gRPC adapter checks them first.
_PARAMETER_TYPES: dict[str, tuple[type, str]] = {
    "content_type": (str, "a string"),
    "headers": (dict, "an object"),
}


def check_parameters(model: str, where: str, values: Any) -> None:
    if not isinstance(values, Mapping):
        raise InvalidPayload(
            f"model '{model}': {where} parameters must be an object, got {type(values).__name__}"
        )
    for key, (kind, text) in _PARAMETER_TYPES.items():
        value = values.get(key)
        if value is not None and not isinstance(value, kind):
            raise InvalidPayload(
                f"model '{model}': {where} parameter '{key}' must be {text}, "
                f"got {type(value).__name__} {value!r}"
            )


def split_bytes_elements(raw: bytes) -> list[bytes] | None:
    """The elements of a length-prefixed BYTES buffer, or None if a prefix overruns it."""
    elements: list[bytes] = []
    offset = 0
    while offset < len(raw):
        if offset + 4 > len(raw):
            return None
        size = int.from_bytes(raw[offset : offset + 4], "little")
        elements.append(raw[offset + 4 : offset + 4 + size])
        offset += 4 + size
    return elements if offset == len(raw) else None


def check_raw_tensor(
    model: str, name: str, datatype: str, shape: Sequence[int], raw: bytes | memoryview
) -> list[bytes] | None:
    """A raw buffer must hold exactly shape x element size bytes (BYTES: that many strings).
    For BYTES the elements it split are returned, so the decoder does not split again."""
    if any(d < 0 for d in shape):
        raise InvalidInput(
            model, name, "has a negative dimension", "dimensions >= 0", _shape_text(shape)
        )
    count = prod(shape)
    if datatype == "BYTES":
        elements = split_bytes_elements(bytes(raw))
        if elements is None or len(elements) != count:
            got = "a malformed buffer" if elements is None else f"{len(elements)} strings"
            raise InvalidInput(
                model,
                name,
                "has raw contents that disagree with its shape",
                f"{count} length-prefixed strings for {datatype} {_shape_text(shape)}",
                f"{got} in {len(raw)} bytes",
            )
        return elements
    raw_dtype = RAW_DTYPES.get(datatype)
    if raw_dtype is None:
        raise InvalidInput(
            model,
            name,
            "has an unknown datatype",
            f"one of {sorted([*RAW_DTYPES, 'BYTES'])}",
            datatype,
        )
    size = raw_dtype.itemsize
    if len(raw) != count * size:
        raise InvalidInput(
            model,
            name,
            "has raw contents of the wrong length",
            f"{count * size} bytes for {datatype} {_shape_text(shape)}",
            f"{len(raw)} bytes",
        )
    return None
