"""Checks every request against the model's schema before it reaches the estimator.

Datatypes are matched exactly, as Triton does: an FP32 tensor for an FP64 input is an
error, not a silent cast. Messages name the model, the input, the rule, what was
expected and what came.
"""

from collections.abc import Sequence
from math import prod
from typing import Any

import numpy as np
import pandas as pd
from mlserver.types import RequestInput, RequestOutput

from .errors import InvalidInput, InvalidOutput, InvalidPayload
from .schema import DEFAULT_OUTPUT, ModelSchema, TensorSpec, datatype_to_numpy


def _shape_text(shape: Sequence[int]) -> str:
    return "[" + ", ".join(str(d) for d in shape) + "]"


def _spec_text(spec: TensorSpec) -> str:
    return f"{spec.datatype} {_shape_text(spec.shape)}"


def _flat_data(model: str, tensor: RequestInput) -> list[Any]:
    data = getattr(tensor.data, "root", tensor.data)
    if not isinstance(data, list):
        data = [data]
    if data and isinstance(data[0], list):
        flat = np.asarray(data, dtype=object).reshape(-1).tolist()
        if any(isinstance(value, list) for value in flat):
            raise InvalidInput(
                model, tensor.name, "has ragged nested data", "a rectangular array", "ragged lists"
            )
        return flat
    return data


def _check_shape(model: str, spec: TensorSpec, tensor: RequestInput) -> tuple[int, ...]:
    shape = tuple(tensor.shape)
    same_rank = len(shape) == len(spec.shape)
    column_as_2d = spec.shape == (-1,) and len(shape) == 2 and shape[1] == 1
    dims_match = same_rank and all(
        want in (-1, got) for want, got in zip(spec.shape, shape, strict=True)
    )
    if not (dims_match or column_as_2d) or any(d < 0 for d in shape):
        raise InvalidInput(
            model,
            tensor.name,
            "has the wrong shape",
            _spec_text(spec),
            f"{tensor.datatype} {_shape_text(shape)}",
        )
    return shape


def _to_array(model: str, spec: TensorSpec, tensor: RequestInput, allow_nan: bool) -> np.ndarray:
    if tensor.datatype != spec.datatype:
        raise InvalidInput(
            model,
            tensor.name,
            "has the wrong datatype",
            _spec_text(spec),
            f"{tensor.datatype} {_shape_text(tensor.shape)}",
        )
    shape = _check_shape(model, spec, tensor)
    data = _flat_data(model, tensor)
    if len(data) != prod(shape):
        raise InvalidInput(
            model,
            tensor.name,
            "has data that disagrees with its shape",
            f"{prod(shape)} values for shape {_shape_text(shape)}",
            f"{len(data)} values",
        )
    if spec.datatype == "BYTES":
        values = [v.decode("utf-8") if isinstance(v, bytes) else v for v in data]
        if not all(isinstance(v, str) for v in values):
            raise InvalidInput(model, tensor.name, "has non-string data", "strings", "other values")
        return np.asarray(values, dtype=object).reshape(shape)
    if any(isinstance(v, str | bytes) for v in data[:1]):
        raise InvalidInput(model, tensor.name, "has non-numeric data", spec.datatype, "strings")
    try:
        array = np.asarray(data, dtype=datatype_to_numpy(spec.datatype)).reshape(shape)
    except (ValueError, TypeError, OverflowError) as exc:
        raise InvalidInput(
            model, tensor.name, "has values that are not numbers", spec.datatype, str(exc)
        ) from exc
    if not allow_nan and array.dtype.kind == "f" and not np.isfinite(array).all():
        raise InvalidInput(
            model, tensor.name, "contains NaN or Inf", "finite numbers", "NaN or Inf"
        )
    return array


def _index_inputs(
    model: str, schema: ModelSchema, inputs: Sequence[RequestInput]
) -> dict[str, RequestInput]:
    if not inputs:
        raise InvalidPayload(f"model '{model}': the request has no inputs")
    by_name: dict[str, RequestInput] = {}
    for tensor in inputs:
        if tensor.name in by_name:
            raise InvalidInput(model, tensor.name, "is duplicated", "each input once", "it twice")
        if schema.input_named(tensor.name) is None:
            raise InvalidInput(
                model,
                tensor.name,
                "is unknown",
                f"inputs {[s.name for s in schema.inputs]}",
                f"'{tensor.name}'",
            )
        by_name[tensor.name] = tensor
    missing = [spec.name for spec in schema.inputs if spec.name not in by_name]
    if missing:
        raise InvalidInput(model, missing[0], "is missing", "it in the request", "no such input")
    return by_name


def decode_features(
    model: str, schema: ModelSchema, inputs: Sequence[RequestInput], allow_nan: bool = False
) -> np.ndarray | pd.DataFrame:
    """The estimator's X: a 2-D array, or a DataFrame for named columns."""
    by_name = _index_inputs(model, schema, inputs)
    arrays = {
        spec.name: _to_array(model, spec, by_name[spec.name], allow_nan) for spec in schema.inputs
    }
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


def requested_outputs(
    model: str, schema: ModelSchema, outputs: Sequence[RequestOutput] | None
) -> list[str]:
    if not outputs:
        return (
            [DEFAULT_OUTPUT] if DEFAULT_OUTPUT in schema.output_names else [schema.output_names[0]]
        )
    names: list[str] = []
    for output in outputs:
        if output.name not in schema.output_names:
            raise InvalidOutput(model, output.name, schema.output_names)
        if output.name not in names:
            names.append(output.name)
    return names
