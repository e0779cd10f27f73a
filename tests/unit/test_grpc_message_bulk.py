"""A large gRPC message split off the loop converts exactly as a small one does.

``message_bulk.scan_message`` (the wire read in a thread) and ``split_message`` (protobuf
in the helper process) split a message into remainder and bulk; the server parses the
remainder and converts it with the bulk (``to_inference_request(..., bulk)``). Whatever
the inputs, the result must equal the ordinary parse and conversion of the whole message.
"""

from typing import Any

import numpy as np
import pytest
from google.protobuf.message import DecodeError
from hypothesis import given, settings
from hypothesis import strategies as st

from runtimes.errors import InvalidInput, InvalidPayload
from runtimes.protocol.grpc.convert import to_inference_request
from runtimes.protocol.grpc.message_bulk import (
    SMALL_CONTENTS,
    SplitMessage,
    WireProblem,
    scan_message,
    split_message,
)
from runtimes.protocol.grpc.messages import message

Request = message("ModelInferRequest")

_INT32 = st.integers(-(2**31), 2**31 - 1)
TYPED: dict[str, tuple[str, Any]] = {
    "FP64": ("fp64_contents", st.floats(allow_nan=False, allow_infinity=False)),
    "FP32": ("fp32_contents", st.floats(width=32, allow_nan=False, allow_infinity=False)),
    "INT32": ("int_contents", _INT32),
    "INT8": ("int_contents", st.integers(-128, 127)),
    "UINT16": ("uint_contents", st.integers(0, 2**16 - 1)),
    "INT64": ("int64_contents", st.integers(-(2**63), 2**63 - 1)),
    "UINT64": ("uint64_contents", st.integers(0, 2**64 - 1)),
    "BOOL": ("bool_contents", st.booleans()),
    "BYTES": ("bytes_contents", st.binary(max_size=8)),
}
RAW = {"FP64": "<f8", "INT32": "<i4", "UINT8": "u1", "BOOL": "?"}


@st.composite
def requests(draw: st.DrawFn) -> Any:
    """A ModelInferRequest with typed and raw inputs, parameters and outputs."""
    request = Request(model_name="m", model_version="2", id=draw(st.text(max_size=5)))
    request.parameters["content_type"].string_param = "np"
    request.parameters["priority"].int64_param = draw(st.integers(0, 9))
    for index in range(draw(st.integers(1, 4))):
        raw = draw(st.booleans())
        datatype = draw(st.sampled_from(sorted(RAW if raw else TYPED)))
        count = draw(st.integers(0, 6))
        tensor = request.inputs.add(name=f"in-{index}", datatype=datatype, shape=[1, count])
        tensor.parameters["scale"].double_param = draw(st.floats(allow_nan=False))
        if raw:
            values = np.asarray(draw(st.lists(st.booleans(), min_size=count, max_size=count)))
            request.raw_input_contents.append(values.astype(RAW[datatype]).tobytes())
        else:
            field, elements = TYPED[datatype]
            getattr(tensor.contents, field).extend(
                draw(st.lists(elements, min_size=count, max_size=count))
            )
    request.outputs.add(name="predict").parameters["binary_data"].bool_param = True
    return request


def _plain(converted: Any) -> dict[str, Any]:
    """The request as comparable values: arrays and lists both as lists."""
    document = converted.model_dump()
    for tensor in document["inputs"]:
        data = tensor["data"]
        tensor["data"] = data.tolist() if isinstance(data, np.ndarray) else list(data)
    return document


def _outcome(convert: Any) -> Any:
    """The converted request as plain values, or the error it raised."""
    try:
        return _plain(convert())
    except (InvalidInput, InvalidPayload) as exc:
        return type(exc), str(exc)


def _split(wire: bytes, splitter: Any = split_message) -> tuple[Any, Any]:
    split = splitter(wire)
    assert isinstance(split, SplitMessage)
    return Request.FromString(split.remainder), split.bulk


@pytest.mark.parametrize("splitter", [split_message, scan_message])
@settings(max_examples=200, deadline=None)
@given(request=requests())
def test_a_split_message_converts_as_the_whole_message(splitter, request):
    wire = request.SerializeToString()
    remainder, bulk = _split(wire, splitter)
    expected = _outcome(lambda: to_inference_request(Request.FromString(wire), {"h": "1"}))
    assert _outcome(lambda: to_inference_request(remainder, {"h": "1"}, bulk)) == expected


@settings(max_examples=300, deadline=None)
@given(request=requests(), data=st.data())
def test_a_damaged_message_is_refused_by_the_scan_whenever_protobuf_refuses_it(request, data):
    """Bytes changed anywhere: the scan's outcome (a problem, a remainder that does not
    parse, or a conversion) is the ordinary parse's."""
    wire = bytearray(request.SerializeToString())
    for _ in range(data.draw(st.integers(1, 3))):
        wire[data.draw(st.integers(0, len(wire) - 1))] = data.draw(st.integers(0, 255))
    wire = bytes(wire[: data.draw(st.integers(1, len(wire)))])
    try:
        whole = Request.FromString(wire)
    except DecodeError:
        whole = None
    split = scan_message(wire)
    if split is None:  # left to the helper process
        return
    try:
        remainder = None if isinstance(split, WireProblem) else Request.FromString(split.remainder)
    except DecodeError:
        remainder = None
    assert (remainder is None) == (whole is None)
    if whole is not None:
        expected = _outcome(lambda: to_inference_request(whole, {}))
        got = _outcome(lambda: to_inference_request(remainder, {}, split.bulk))
        if isinstance(got, tuple) and "values outside" in got[1]:
            # Refused at conversion; a small message's values are refused by validation.
            assert _out_of_range(whole), got
        else:
            assert got == expected


def _out_of_range(request: Any) -> bool:
    """Whether an INT8/16 or UINT8/16 input holds values its datatype cannot."""
    for tensor in request.inputs:
        if tensor.datatype in ("INT8", "INT16", "UINT8", "UINT16"):
            limits = np.iinfo(tensor.datatype.lower())
            values = list(tensor.contents.int_contents) + list(tensor.contents.uint_contents)
            if any(not limits.min <= value <= limits.max for value in values):
                return True
    return False


def test_the_scan_leaves_large_varint_contents_to_the_helper_and_parses_small_ones():
    request = Request(model_name="m")
    tensor = request.inputs.add(name="a", datatype="INT32", shape=[5])
    tensor.contents.int_contents.extend([1, -2, 3, 4, 5])
    remainder, bulk = _split(request.SerializeToString(), scan_message)
    assert bulk.contents[0][0][1].tolist() == [1, -2, 3, 4, 5]
    tensor.contents.int_contents.extend([7] * SMALL_CONTENTS)
    assert scan_message(request.SerializeToString()) is None


def test_the_scan_reads_raw_buffers_and_packed_floats_without_copying_aligned_ones():
    values = np.arange(1000, dtype="<f8")
    request = Request(model_name="m", raw_input_contents=[values.tobytes()])
    request.inputs.add(name="a", datatype="FP64", shape=[1000])
    request.inputs.add(name="b", datatype="FP32", shape=[2]).contents.fp32_contents.extend(
        [0.5, 1.5]
    )
    remainder, bulk = _split(request.SerializeToString(), scan_message)
    converted = to_inference_request(remainder, {}, bulk)
    assert converted.inputs[0].data.root.flags.aligned
    np.testing.assert_array_equal(converted.inputs[0].data.root, values)
    assert converted.inputs[1].data.root.dtype == np.float32


@pytest.mark.parametrize("splitter", [split_message, scan_message])
def test_the_remainder_holds_no_tensor_values(splitter):
    request = Request(model_name="m")
    request.inputs.add(name="a", datatype="FP64", shape=[3]).contents.fp64_contents.extend(
        [1.0] * 3
    )
    request.inputs.add(name="b", datatype="FP64", shape=[100_000])
    request.raw_input_contents.append(np.zeros(100_000).tobytes())
    remainder, bulk = _split(request.SerializeToString(), splitter)
    assert len(remainder.SerializeToString()) < 100
    assert not remainder.raw_input_contents and not remainder.inputs[0].contents.ListFields()
    assert bulk.contents[0][0][0] == "fp64_contents" and bulk.contents[1] == []
    assert bulk.contents[0][0][1].dtype == np.dtype("<f8")


def test_fp64_values_read_from_the_wire_are_exact():
    values = np.random.default_rng(0).random(10_000) * 1e300
    request = Request(model_name="m")
    tensor = request.inputs.add(name="a", datatype="FP64", shape=[values.size])
    tensor.contents.fp64_contents.extend(values.tolist())
    remainder, bulk = _split(request.SerializeToString())
    converted = to_inference_request(remainder, {}, bulk)
    np.testing.assert_array_equal(converted.inputs[0].data.root, values)


def test_typed_values_in_the_wrong_field_are_refused_as_for_a_small_message():
    request = Request(model_name="m")
    tensor = request.inputs.add(name="a", datatype="FP64", shape=[2])
    tensor.contents.fp32_contents.extend([1.0, 2.0])
    tensor.contents.fp64_contents.extend([1.0, 2.0])
    remainder, bulk = _split(request.SerializeToString())
    with pytest.raises(InvalidInput, match="fp32_contents, fp64_contents") as small:
        to_inference_request(request, {})
    with pytest.raises(InvalidInput) as large:
        to_inference_request(remainder, {}, bulk)
    assert str(large.value) == str(small.value)


def test_int8_values_out_of_range_are_refused():
    request = Request(model_name="m")
    request.inputs.add(name="a", datatype="INT8", shape=[2]).contents.int_contents.extend(
        [1, 300]
    )
    remainder, bulk = _split(request.SerializeToString())
    with pytest.raises(InvalidInput, match="'a' has values that are not numbers"):
        to_inference_request(remainder, {}, bulk)


def test_raw_buffers_must_match_the_inputs_without_contents_as_for_a_small_message():
    request = Request(model_name="m", raw_input_contents=[b"\0" * 8, b"\0" * 8])
    request.inputs.add(name="a", datatype="FP64", shape=[1])
    remainder, bulk = _split(request.SerializeToString())
    with pytest.raises(InvalidPayload, match="2 raw_input_contents for 1 inputs"):
        to_inference_request(remainder, {}, bulk)


@pytest.mark.parametrize("splitter", [split_message, scan_message])
@pytest.mark.parametrize(
    "wire",
    [b"\xff\xff\xff", b"\x0a\x05ab", Request(model_name="m").SerializeToString()[:-1] + b"\x80"],
)
def test_bytes_that_are_not_a_message_are_a_problem(splitter, wire):
    """A WireProblem, or (a string field's bad UTF-8, kept by the scan) a remainder that
    protobuf refuses: the server answers both as InvalidPayload."""
    problem = splitter(wire)
    if isinstance(problem, SplitMessage):
        with pytest.raises(DecodeError):
            Request.FromString(problem.remainder)
        return
    assert isinstance(problem, WireProblem) and "pars" in problem.message.lower()


def test_an_empty_packed_field_is_no_contents_as_protobuf_reads_it():
    """Protobuf never writes one, but parses one as an empty field: the input then takes
    a raw buffer."""
    tensor = Request.InferInputTensor(name="a", datatype="FP64", shape=[1])
    body = tensor.SerializeToString() + b"\x2a\x02\x3a\x00"  # contents: fp64_contents = []
    raw = Request(raw_input_contents=[np.array([2.5]).tobytes()]).SerializeToString()
    wire = Request(model_name="m").SerializeToString() + b"\x2a" + bytes([len(body)]) + body + raw
    expected = _outcome(lambda: to_inference_request(Request.FromString(wire), {}))
    assert expected["inputs"][0]["data"] == [2.5]
    remainder, bulk = _split(wire, scan_message)
    assert _outcome(lambda: to_inference_request(remainder, {}, bulk)) == expected
