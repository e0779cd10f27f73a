"""A large ModelInferRequest, parsed and split into a small remainder and its bulk.

This runs in a helper process (``runtimes.protocol.offload``): protobuf's parser (upb)
holds the interpreter lock for the whole parse, 40-75 ms of a 40 MB message, so in a
thread it would stall the event loop just as long. What comes back is the message without
its tensors' values (``raw_input_contents`` and every typed ``contents`` cleared), a few
hundred bytes that the server parses at once, and the values themselves as bytes and
numpy arrays, which unpickle at memory speed.

Each populated typed field comes back under its own name and with its own dtype, so the
server applies Triton's field rule and the datatype's range exactly as for a small
message (``convert.to_inference_request``). Only numpy and protobuf are imported: the
helper process starts light.
"""

from dataclasses import dataclass
from typing import Any

import numpy as np
from google.protobuf.message import DecodeError

from .messages import message

FIELD_DTYPES: dict[str, np.dtype] = {
    "bool_contents": np.dtype(np.bool_),
    "int_contents": np.dtype(np.int32),
    "int64_contents": np.dtype(np.int64),
    "uint_contents": np.dtype(np.uint32),
    "uint64_contents": np.dtype(np.uint64),
    "fp32_contents": np.dtype("<f4"),
    "fp64_contents": np.dtype("<f8"),
}
"""Each numeric typed field's own dtype; ``bytes_contents`` stays a list of bytes."""

_FIXED_WIDTH = ("fp32_contents", "fp64_contents")


@dataclass(frozen=True)
class Bulk:
    """A message's tensor values: ``raw`` in order, and for each input the populated
    typed fields as (field name, values)."""

    raw: list[bytes]
    contents: list[list[tuple[str, Any]]]


@dataclass(frozen=True)
class SplitMessage:
    remainder: bytes
    """The serialized ModelInferRequest without raw or typed contents."""
    bulk: Bulk


@dataclass(frozen=True)
class WireProblem:
    """The bytes are not a ModelInferRequest: protobuf's message."""

    message: str


def _values(contents: Any, name: str, only: bool) -> Any:
    values = getattr(contents, name)
    dtype = FIELD_DTYPES.get(name)
    if dtype is None:
        return list(values)
    if only and name in _FIXED_WIDTH:
        # One packed field of little-endian values after its tag and varint length:
        # read from the wire at memory speed rather than as millions of Python floats.
        wire = contents.SerializeToString()
        offset, length, shift = 1, 0, 0
        while True:
            byte = wire[offset]
            length |= (byte & 0x7F) << shift
            offset, shift = offset + 1, shift + 7
            if not byte & 0x80:
                break
        return np.frombuffer(wire, dtype=dtype, count=length // dtype.itemsize, offset=offset)
    return np.fromiter(values, dtype=dtype, count=len(values))


def split_message(wire: bytes) -> SplitMessage | WireProblem:
    """``wire`` parsed and split into remainder and bulk, or a WireProblem."""
    try:
        request = message("ModelInferRequest").FromString(wire)
    except DecodeError as exc:
        return WireProblem(str(exc))
    raw = list(request.raw_input_contents)
    del request.raw_input_contents[:]
    contents = []
    for tensor in request.inputs:
        populated = [descriptor.name for descriptor, _ in tensor.contents.ListFields()]
        only = len(populated) == 1
        contents.append([(name, _values(tensor.contents, name, only)) for name in populated])
        tensor.ClearField("contents")
    return SplitMessage(request.SerializeToString(), Bulk(raw, contents))
