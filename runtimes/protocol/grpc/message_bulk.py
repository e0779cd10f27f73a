"""A large ModelInferRequest split into a small remainder and its bulk, off the event loop.

protobuf's parser (upb) holds the interpreter lock for the whole parse, 30-75 ms of a
40 MB message, so in a thread it would stall the event loop just as long. The remainder
is the message without its tensors' values (``raw_input_contents`` and every typed
``contents`` cleared), a few hundred bytes that the server parses at once; the bulk is
the values.

- ``scan_message`` reads the wire format itself, in a thread: it walks the few fields of
  the message and of each input and takes raw buffers and packed FP32/FP64 contents as
  views of the received bytes, so nothing is copied or parsed while holding the lock.
- ``split_message`` parses with protobuf in the helper process
  (``runtimes.protocol.offload``), for what the scan leaves: large varint or BYTES typed
  contents. Its bulk comes back pickled: bytes and arrays, which unpickle at memory speed,
  but a copy each way, so the scan is the first choice (``benchmarks/loop_hold.py``).

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

    raw: list[bytes | memoryview]
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


def _varint(data: memoryview, offset: int) -> tuple[int, int]:
    value = shift = 0
    while True:
        byte = data[offset]  # IndexError when truncated
        value |= (byte & 0x7F) << shift
        offset, shift = offset + 1, shift + 7
        if not byte & 0x80:
            return value, offset
        if shift > 63:
            raise ValueError("a varint longer than 10 bytes")


def _values(contents: Any, name: str, only: bool) -> Any:
    values = getattr(contents, name)
    dtype = FIELD_DTYPES.get(name)
    if dtype is None:
        return list(values)
    if only and name in _FIXED_WIDTH:
        # One packed field of little-endian values after its tag and varint length:
        # read from the wire at memory speed rather than as millions of Python floats.
        wire = contents.SerializeToString()
        length, offset = _varint(memoryview(wire), 1)
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


# The wire format (protobuf's encoding guide): a field is a varint tag, number << 3 | type.
_VARINT, _FIXED64, _LEN, _FIXED32 = 0, 1, 2, 5
_INPUTS, _RAW_INPUT_CONTENTS, _CONTENTS = 5, 7, 5
_PACKED_FIXED = {6: "fp32_contents", 7: "fp64_contents"}
SMALL_CONTENTS = 64 * 1024
"""Other typed contents up to this size are parsed by protobuf where the scan runs."""


_CHUNK = 1 << 20


def _aligned(view: memoryview) -> memoryview:
    """``view``, copied to an 8-byte boundary if it is not on one (numpy and estimators
    compute slower on unaligned values), a megabyte at a time: one copy of 40 MB holds
    the interpreter lock for 6 ms, a megabyte well under one."""
    source = np.frombuffer(view, dtype=np.uint8)
    if source.ctypes.data % 8 == 0:
        return view
    copy = np.empty_like(source)
    for start in range(0, source.size, _CHUNK):
        copy[start : start + _CHUNK] = source[start : start + _CHUNK]
    return copy.data


class _Unscannable(Exception):
    """A typed field the scan does not read (varint or BYTES values above SMALL_CONTENTS)."""


def _fields(data: memoryview, start: int, end: int) -> Any:
    """(number, wire type, field start, value start, value end) of each field."""
    offset = start
    while offset < end:
        tag, value_start = _varint(data, offset)
        kind = tag & 7
        if kind == _VARINT:
            _, value_end = _varint(data, value_start)
        elif kind == _LEN:
            length, value_start = _varint(data, value_start)
            value_end = value_start + length
        elif kind in (_FIXED64, _FIXED32):
            value_end = value_start + (8 if kind == _FIXED64 else 4)
        else:
            raise ValueError(f"wire type {kind} (groups are not proto3)")
        if value_end > end:
            raise ValueError("a field runs past the end of its message")
        yield tag >> 3, kind, offset, value_start, value_end
        offset = value_end


def _encode_varint(value: int) -> bytes:
    out = bytearray()
    while value > 0x7F:
        out.append(value & 0x7F | 0x80)
        value >>= 7
    out.append(value)
    return bytes(out)


def _typed(data: memoryview, segments: list[tuple[int, int]]) -> list[tuple[str, Any]]:
    """The populated fields of one input's contents, read from its ``segments``."""
    packed: dict[str, list[memoryview]] = {}
    for start, end in segments:
        for number, kind, _, value_start, value_end in _fields(data, start, end):
            name = _PACKED_FIXED.get(number)
            if name is None or kind != _LEN:
                return _parsed(data, segments)
            if value_end > value_start:  # protobuf lists no empty field
                packed.setdefault(name, []).append(data[value_start:value_end])
    found = []
    for name, parts in packed.items():
        dtype = FIELD_DTYPES[name]
        joined = parts[0] if len(parts) == 1 else memoryview(b"".join(parts))
        if len(joined) % dtype.itemsize:
            raise ValueError(f"a packed {name} of {len(joined)} bytes")
        found.append((name, np.frombuffer(_aligned(joined), dtype=dtype)))
    return sorted(found, key=lambda item: list(FIELD_DTYPES).index(item[0]))


def _parsed(data: memoryview, segments: list[tuple[int, int]]) -> list[tuple[str, Any]]:
    if sum(end - start for start, end in segments) > SMALL_CONTENTS:
        raise _Unscannable
    wire = b"".join(data[start:end] for start, end in segments)
    contents = message("InferTensorContents").FromString(wire)
    names = [descriptor.name for descriptor, _ in contents.ListFields()]
    return [(name, _values(contents, name, len(names) == 1)) for name in names]


def scan_message(wire: bytes) -> SplitMessage | WireProblem | None:
    """``wire`` split without protobuf's parser; None when the helper process should
    parse it (large typed contents other than FP32/FP64)."""
    data = memoryview(wire)
    parts: list[bytes | memoryview] = []
    raw: list[bytes | memoryview] = []
    contents = []
    try:
        for number, kind, start, value_start, value_end in _fields(data, 0, len(data)):
            if kind == _LEN and number == _RAW_INPUT_CONTENTS:
                raw.append(_aligned(data[value_start:value_end]))
            elif kind == _LEN and number == _INPUTS:
                tensor, segments = [], []
                for inner, inner_kind, field, inner_start, inner_end in _fields(
                    data, value_start, value_end
                ):
                    if inner == _CONTENTS and inner_kind == _LEN:
                        segments.append((inner_start, inner_end))
                    else:
                        tensor.append(data[field:inner_end])
                contents.append(_typed(data, segments))
                body = b"".join(tensor)
                parts += [bytes([_INPUTS << 3 | _LEN]), _encode_varint(len(body)), body]
            else:
                parts.append(data[start:value_end])
    except _Unscannable:
        return None
    except (ValueError, IndexError, DecodeError) as exc:
        return WireProblem(f"Error parsing message: {exc}")
    return SplitMessage(b"".join(parts), Bulk(raw, contents))
