"""Raw tensor bytes, as the binary tensor data extension (REST) and raw contents (gRPC)
carry them: little-endian, row-major; BYTES as 4-byte length-prefixed elements.

Decoding goes straight to numpy, so large tensors never become Python lists.
"""

from math import prod

import numpy as np

from ..schema import RAW_DTYPES
from ..validation import check_raw_tensor


def _bf16_to_float32(raw: np.ndarray) -> np.ndarray:
    return (raw.astype(np.uint32) << 16).view(np.float32)


def decode_raw(
    model: str, name: str, datatype: str, shape: list[int], raw: bytes | memoryview
) -> np.ndarray:
    """A flat array of ``prod(shape)`` elements, after the byte length is checked."""
    elements = check_raw_tensor(model, name, datatype, shape, raw)
    if elements is not None:
        array = np.empty(prod(shape), dtype=object)
        array[:] = elements
        return array
    array = np.frombuffer(raw, dtype=RAW_DTYPES[datatype])
    return _bf16_to_float32(array) if datatype == "BF16" else array


def encode_raw(array: np.ndarray) -> bytes:
    if array.dtype.kind in "OUS":
        parts = []
        for value in array.reshape(-1):
            data = value if isinstance(value, bytes) else str(value).encode()
            parts.append(len(data).to_bytes(4, "little") + data)
        return b"".join(parts)
    return np.ascontiguousarray(array).astype(array.dtype.newbyteorder("<"), copy=False).tobytes()
