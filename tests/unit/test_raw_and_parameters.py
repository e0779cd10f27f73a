"""gRPC raw buffers and request parameters, checked as the request is converted."""

import numpy as np
import pytest

from runtimes.errors import InvalidInput, InvalidPayload
from runtimes.protocol.grpc.convert import to_inference_request
from runtimes.protocol.grpc.messages import message
from runtimes.validation import check_parameters, check_raw_tensor

ROW = np.array([[5.1, 3.5, 1.4, 0.2]])


def test_right_lengths_pass():
    check_raw_tensor("m", "x", "FP64", [1, 4], ROW.tobytes())
    check_raw_tensor("m", "x", "FP32", [1, 4], ROW.astype(np.float32).tobytes())
    check_raw_tensor("m", "x", "BYTES", [2], b"\x01\0\0\0a\x00\0\0\0")
    check_raw_tensor("m", "x", "FP64", [0, 4], b"")


@pytest.mark.parametrize(
    ("datatype", "shape", "raw", "words"),
    [
        ("FP64", [1, 4], ROW.tobytes()[:-1], ["32 bytes", "31 bytes", "'x'", "model 'm'"]),
        ("INT32", [2], b"\0" * 12, ["8 bytes", "12 bytes"]),
        ("FP64", [-1, 4], ROW.tobytes(), ["negative"]),
        ("FP65", [1, 4], ROW.tobytes(), ["unknown datatype", "FP65"]),
        ("BYTES", [1], b"\x05\0\0\0ab", ["malformed"]),
        ("BYTES", [1], b"\x01\0", ["malformed"]),
        ("BYTES", [3], b"\x01\0\0\0a", ["3 length-prefixed", "1 strings"]),
    ],
)
def test_wrong_raw_buffers(datatype, shape, raw, words):
    with pytest.raises(InvalidInput) as caught:
        check_raw_tensor("m", "x", datatype, shape, raw)
    for word in words:
        assert word in str(caught.value)


def _request(raw_count: int, **parameters):
    request = message("ModelInferRequest")(model_name="m")
    request.inputs.add(name="x", datatype="FP64", shape=[1, 4])
    request.raw_input_contents.extend([ROW.tobytes()] * raw_count)
    for key, value in parameters.items():
        field = "string_param" if isinstance(value, str) else "int64_param"
        request.parameters[key].MergeFrom(message("InferParameter")(**{field: value}))
    return request


def test_raw_buffers_must_match_the_inputs_without_contents():
    to_inference_request(_request(1), {})
    with pytest.raises(InvalidPayload, match="2 raw_input_contents for 1 inputs"):
        to_inference_request(_request(2), {})


def test_grpc_parameters_of_the_wrong_type():
    to_inference_request(_request(1, content_type="np"), {})
    with pytest.raises(InvalidPayload, match="'content_type' must be a string, got int 5"):
        to_inference_request(_request(1, content_type=5), {})


def test_parameters_must_be_an_object():
    check_parameters("m", "request", {"custom": 1.5})
    with pytest.raises(InvalidPayload, match="must be an object, got list"):
        check_parameters("m", "request", [1])
    with pytest.raises(InvalidPayload, match="'headers' must be an object"):
        check_parameters("m", "input 'x'", {"headers": "h"})


def test_every_parameter_kind_survives_conversion():
    request = _request(1)
    kinds = {"b": ("bool_param", True), "i": ("int64_param", -3), "s": ("string_param", "x"),
             "d": ("double_param", 1.5), "u": ("uint64_param", 2**63 + 1)}  # fmt: skip
    for key, (field, value) in kinds.items():
        request.parameters[key].MergeFrom(message("InferParameter")(**{field: value}))
    converted = to_inference_request(request, {})
    assert {k: getattr(converted.parameters, k) for k in kinds} == {
        k: value for k, (_, value) in kinds.items()
    }
    np.testing.assert_array_equal(converted.inputs[0].data.root, ROW.ravel())
