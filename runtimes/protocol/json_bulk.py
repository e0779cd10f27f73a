"""A large JSON request body, parsed into a document whose numeric data are numpy arrays.

This runs in a helper process (``runtimes.protocol.offload``): orjson holds the
interpreter lock for the whole parse, 3.6 s for 40 MB on a busy 2-core machine, so in a
thread it would stall the event loop just as long. What comes back is small dicts and
arrays, which unpickle at memory speed; a list of millions of Python floats would not.

Each numeric input's ``data`` is checked exactly as ``runtimes.validation`` checks JSON
values (rectangular, numbers only, booleans only for BOOL) and becomes a flat array of
the tensor's own datatype, which validation then takes as it takes decoded binary data.
A value that fails becomes a ``DataProblem`` that the server raises as the error
validation would have raised. BYTES inputs are left as they came.

Only numpy and orjson are imported: the helper process starts light.
"""

from dataclasses import dataclass
from typing import Any

import numpy as np
import orjson

JSON_DTYPES: dict[str, type] = {
    "BOOL": np.bool_,
    "UINT8": np.uint8, "UINT16": np.uint16, "UINT32": np.uint32, "UINT64": np.uint64,
    "INT8": np.int8, "INT16": np.int16, "INT32": np.int32, "INT64": np.int64,
    "FP16": np.float16, "FP32": np.float32, "FP64": np.float64,
}  # fmt: skip
"""The datatypes decoded here; the same dtypes as ``runtimes.schema.datatype_to_numpy``."""

_TYPE_NAMES = {
    str: "strings", int: "numbers", float: "numbers", bytes: "bytes", bool: "booleans",
    type(None): "nulls", dict: "objects", list: "nested lists",
}  # fmt: skip


@dataclass(frozen=True)
class DataProblem:
    """Why an input's data cannot be its datatype: the parts of an ``InvalidInput``."""

    rule: str
    expected: str
    got: str


@dataclass(frozen=True)
class JsonProblem:
    """The body is not JSON: orjson's message."""

    message: str


def tensor_values(datatype: str, data: Any) -> Any:
    """A flat array of ``datatype``, a DataProblem, or ``data`` unchanged (not numeric)."""
    dtype = JSON_DTYPES.get(datatype)
    if dtype is None:
        return data
    values = data if isinstance(data, list) else [data]
    if values and isinstance(values[0], list):
        values = np.asarray(values, dtype=object).reshape(-1).tolist()
        if any(isinstance(value, list) for value in values):
            return DataProblem("has ragged nested data", "a rectangular array", "ragged lists")
    allowed = {int, float, bool} if datatype == "BOOL" else {int, float}
    foreign = set(map(type, values)) - allowed
    if foreign:
        got = ", ".join(sorted(_TYPE_NAMES.get(kind, kind.__name__) for kind in foreign))
        return DataProblem("has non-numeric data", f"{datatype} numbers", got)
    try:
        return np.asarray(values, dtype=dtype)
    except (ValueError, TypeError, OverflowError) as exc:
        return DataProblem("has values that are not numbers", datatype, str(exc))


def load_document(json_part: bytes) -> Any:
    """The parsed body with numeric input data decoded, or a JsonProblem."""
    try:
        document = orjson.loads(json_part)
    except orjson.JSONDecodeError as exc:
        return JsonProblem(str(exc))
    inputs = document.get("inputs") if isinstance(document, dict) else None
    for item in inputs if isinstance(inputs, list) else ():
        if not isinstance(item, dict) or "data" not in item:
            continue
        parameters = item.get("parameters")
        if isinstance(parameters, dict) and "binary_data_size" in parameters:
            continue  # the codec refuses or reads it; nothing to decode here
        datatype = item.get("datatype")
        if isinstance(datatype, str):
            item["data"] = tensor_values(datatype, item["data"])
    return document
