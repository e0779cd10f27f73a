"""Raw tensor bytes, as the binary tensor data extension (REST) and raw contents (gRPC)
carry them: little-endian, row-major; BYTES as 4-byte length-prefixed elements.

Decoding goes straight to numpy, so large tensors never become Python lists.
"""

from math import prod

import numpy as np

from ..validation import check_raw_tensor

NUMPY_BY_DATATYPE: dict[str, np.dtype] = {
    name: np.dtype(code)
    for name, code in {
        "BOOL": "?", "INT8": "<i1", "INT16": "<i2", "INT32": "<i4", "INT64": "<i8",
        "UINT8": "<u1", "UINT16": "<u2", "UINT32": "<u4", "UINT64": "<u8",
        "FP16": "<f2", "FP32": "<f4", "FP64": "<f8", "BF16": "<u2",
    }.items()
}  # fmt: skip
_DATATYPE_BY_KIND = {"b": "BOOL", "O": "BYTES", "U": "BYTES", "S": "BYTES"}


def datatype_of(array: np.ndarray) -> str:
    if array.dtype.kind in _DATATYPE_BY_KIND:
        return _DATATYPE_BY_KIND[array.dtype.kind]
    return {
        np.dtype("int8"): "INT8", np.dtype("int16"): "INT16", np.dtype("int32"): "INT32",
        np.dtype("int64"): "INT64", np.dtype("uint8"): "UINT8", np.dtype("uint16"): "UINT16",
        np.dtype("uint32"): "UINT32", np.dtype("uint64"): "UINT64", np.dtype("float16"): "FP16",
        np.dtype("float32"): "FP32", np.dtype("float64"): "FP64",
    }.get(array.dtype.newbyteorder("="), "BYTES")  # fmt: skip


def _bf16_to_float32(raw: np.ndarray) -> np.ndarray:
    return (raw.astype(np.uint32) << 16).view(np.float32)


def _split_bytes(raw: bytes, count: int) -> np.ndarray:
    elements: list[bytes] = []
    offset = 0
    while offset < len(raw):
        length = int.from_bytes(raw[offset : offset + 4], "little")
        elements.append(raw[offset + 4 : offset + 4 + length])
        offset += 4 + length
    array = np.empty(count, dtype=object)
    array[:] = elements
    return array


def decode_raw(model: str, name: str, datatype: str, shape: list[int], raw: bytes) -> np.ndarray:
    """A flat array of ``prod(shape)`` elements, after the byte length is checked."""
    check_raw_tensor(model, name, datatype, shape, raw)
    if datatype == "BYTES":
        return _split_bytes(raw, prod(shape))
    array = np.frombuffer(raw, dtype=NUMPY_BY_DATATYPE[datatype])
    return _bf16_to_float32(array) if datatype == "BF16" else array


def encode_raw(array: np.ndarray) -> bytes:
    if array.dtype.kind in "OUS":
        parts = []
        for value in array.reshape(-1):
            data = value if isinstance(value, bytes) else str(value).encode()
            parts.append(len(data).to_bytes(4, "little") + data)
        return b"".join(parts)
    return np.ascontiguousarray(array).astype(array.dtype.newbyteorder("<"), copy=False).tobytes()
