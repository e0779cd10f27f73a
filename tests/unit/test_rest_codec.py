"""REST bodies parsed strictly, and outputs that JSON cannot carry refused, in-process."""

import gzip
import zlib

import numpy as np
import orjson
import pytest
from mlserver.types import InferenceResponse, ResponseOutput, TensorData

from runtimes.errors import InvalidPayload, NonFiniteOutput
from runtimes.protocol.rest_codec import parse_request, render_response
from runtimes.protocol.rest_fastpath import _decompress

ROW = np.array([[5.1, 3.5, 1.4, 0.2]])


def _binary_body(raw: bytes, size: int) -> tuple[bytes, str]:
    header = orjson.dumps(
        {
            "inputs": [
                {
                    "name": "input-0",
                    "shape": [1, 4],
                    "datatype": "FP64",
                    "parameters": {"binary_data_size": size},
                }
            ]
        }
    )
    return header + raw, str(len(header))


def test_binary_inputs_consumed_exactly_are_decoded():
    body, length = _binary_body(ROW.tobytes(), 32)
    request = parse_request("m", body, length, {})
    np.testing.assert_array_equal(np.asarray(request.inputs[0].data.root).reshape(1, 4), ROW)


def test_bytes_left_after_the_binary_inputs_are_refused():
    body, length = _binary_body(ROW.tobytes() + b"\0\0\0", 32)
    with pytest.raises(InvalidPayload, match="3 bytes of binary data follow the last"):
        parse_request("m", body, length, {})


def _json_body(request_parameters=None, output_parameters=None) -> bytes:
    document: dict = {
        "inputs": [{"name": "input-0", "shape": [1, 4], "datatype": "FP64", "data": [1] * 4}]
    }
    if request_parameters is not None:
        document["parameters"] = request_parameters
    if output_parameters is not None:
        document["outputs"] = [{"name": "predict", "parameters": output_parameters}]
    return orjson.dumps(document)


@pytest.mark.parametrize(
    ("body", "words"),
    [
        (_json_body({"binary_data_output": "false"}), ["the request", "'binary_data_output'"]),
        (_json_body({"binary_data_output": 1}), ["'binary_data_output'", "int 1"]),
        (_json_body(output_parameters={"binary_data": "false"}), ["output 'predict'"]),
        (_json_body({"sequence_start": "true"}), ["'sequence_start'"]),
    ],
)
def test_boolean_parameters_must_be_json_booleans(body, words):
    with pytest.raises(InvalidPayload) as caught:
        parse_request("m", body, None, {})
    assert "must be a JSON boolean" in str(caught.value)
    for word in words:
        assert word in str(caught.value)


def test_json_boolean_parameters_pass():
    body = _json_body({"binary_data_output": False}, {"binary_data": True})
    request = parse_request("m", body, None, {})
    assert request.outputs is not None and request.outputs[0].parameters is not None


PAYLOAD = b'{"inputs": []}'


@pytest.mark.parametrize(
    ("encoding", "body"),
    [("gzip", gzip.compress(PAYLOAD)), ("deflate", zlib.compress(PAYLOAD))],
)
def test_one_compressed_member_is_decoded(encoding, body):
    assert _decompress(body, encoding, 1000) == PAYLOAD


@pytest.mark.parametrize(
    ("encoding", "body", "words"),
    [
        ("gzip", gzip.compress(PAYLOAD) + b"junk", "4 bytes follow the end of the gzip"),
        ("gzip", gzip.compress(PAYLOAD) * 2, "follow the end of the gzip"),
        ("deflate", zlib.compress(PAYLOAD) + b"x", "1 bytes follow the end of the deflate"),
        ("gzip", gzip.compress(PAYLOAD)[:-4], "truncated"),
    ],
    ids=["gzip-trailing", "gzip-second-member", "deflate-trailing", "gzip-truncated"],
)
def test_compressed_bodies_must_be_one_member_and_nothing_else(encoding, body, words):
    with pytest.raises(InvalidPayload, match=words):
        _decompress(body, encoding, 1000)


def _response(values) -> InferenceResponse:
    output = ResponseOutput.model_construct(
        name="predict",
        shape=[3],
        datatype="FP64",
        parameters=None,
        data=TensorData.model_construct(root=values),
    )
    return InferenceResponse.model_construct(
        model_name="m", model_version="1", id=None, parameters=None, outputs=[output]
    )


NON_FINITE = np.array([np.inf, -np.inf, np.nan])


@pytest.mark.parametrize("values", [NON_FINITE, NON_FINITE.tolist(), [[1.0], [np.nan]]])
def test_a_non_finite_json_output_is_an_error_naming_it(values):
    request = parse_request("m", _json_body(), None, {})
    with pytest.raises(NonFiniteOutput) as caught:
        render_response(request, _response(values))
    assert "output 'predict' holds NaN/Inf" in str(caught.value)
    assert "binary_data_output" in str(caught.value)
    assert caught.value.status_code == 500


def test_a_non_finite_binary_output_is_carried_unchanged():
    request = parse_request("m", _json_body({"binary_data_output": True}), None, {})
    body, header_length = render_response(request, _response(NON_FINITE))
    assert header_length is not None
    carried = np.frombuffer(body[header_length:], dtype=np.float64)
    np.testing.assert_array_equal(carried, NON_FINITE)


def test_finite_json_outputs_are_rendered():
    request = parse_request("m", _json_body(), None, {})
    body, header_length = render_response(request, _response(np.array([1.5, -2.0, 0.0])))
    assert header_length is None
    assert orjson.loads(body)["outputs"][0]["data"] == [1.5, -2.0, 0.0]
