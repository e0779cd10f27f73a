"""REST bodies parsed strictly, and outputs that JSON cannot carry refused, in-process."""

import gzip
import zlib

import numpy as np
import orjson
import pytest
from mlserver.types import InferenceResponse, ResponseOutput, TensorData

from runtimes.errors import InvalidInput, InvalidPayload, NonFiniteOutput
from runtimes.protocol.rest_codec import parse_request, render_response, split_body
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


# --- The codec's ordinary work: what a request says, it keeps; what a response holds, it writes.


def test_a_json_request_keeps_its_inputs_outputs_id_and_headers():
    document = {
        "id": "req-1",
        "parameters": {"custom": "x"},
        "inputs": [
            {"name": "a", "shape": [2, 2], "datatype": "FP32", "data": [1.5, 2, 3, 4]},
            {"name": "b", "shape": [1], "datatype": "BYTES", "data": ["red"]},
        ],
        "outputs": [{"name": "predict"}, {"name": "predict_proba"}],
    }
    request = parse_request("m", orjson.dumps(document), None, {"x-request-id": "h"})
    assert request.id == "req-1"
    assert [(i.name, i.shape, i.datatype) for i in request.inputs] == [
        ("a", [2, 2], "FP32"),
        ("b", [1], "BYTES"),
    ]
    assert [i.data.root for i in request.inputs] == [[1.5, 2, 3, 4], ["red"]]
    assert [o.name for o in request.outputs or []] == ["predict", "predict_proba"]
    assert request.parameters is not None
    assert request.parameters.headers == {"x-request-id": "h"}
    assert request.parameters.model_extra == {"custom": "x"}


def test_two_binary_inputs_are_read_in_order_each_of_its_own_size():
    first = np.arange(6, dtype=np.float32).reshape(2, 3)
    second = np.array([7, -8], dtype=np.int64)
    header = orjson.dumps(
        {
            "inputs": [
                {"name": "f", "shape": [2, 3], "datatype": "FP32",
                 "parameters": {"binary_data_size": first.nbytes}},
                {"name": "i", "shape": [2], "datatype": "INT64",
                 "parameters": {"binary_data_size": second.nbytes}},
            ]
        }
    )  # fmt: skip
    body = header + first.tobytes() + second.tobytes()
    request = parse_request("m", body, str(len(header)), {})
    decoded = [np.asarray(i.data.root) for i in request.inputs]
    np.testing.assert_array_equal(decoded[0].reshape(2, 3), first)
    np.testing.assert_array_equal(decoded[1], second)
    assert decoded[1].dtype == np.int64


@pytest.mark.parametrize(
    ("length", "words"),
    [("abc", "is not a number"), ("-1", "does not fit"), ("9999", "does not fit")],
)
def test_a_header_length_that_does_not_fit_the_body_is_refused(length, words):
    with pytest.raises(InvalidPayload, match=words):
        split_body(b'{"inputs": []}', length)


def test_the_header_length_splits_json_from_binary():
    json_part, binary = split_body(b'{"inputs": []}\x01\x02', "14")
    assert (json_part, bytes(binary)) == (b'{"inputs": []}', b"\x01\x02")
    assert split_body(b"{}", None) == (b"{}", b"")


@pytest.mark.parametrize("size", [-1, "8", True, 33])
def test_a_binary_data_size_that_is_not_a_size_of_what_follows_is_refused(size):
    body, length = _binary_body(ROW.tobytes(), size)
    with pytest.raises(InvalidPayload, match="input 'input-0': binary_data_size"):
        parse_request("m", body, length, {})


@pytest.mark.parametrize("shape", ["1,4", [1.0, 4], [True, 4], None])
def test_a_shape_that_is_not_a_list_of_integers_names_the_input(shape):
    document = {"inputs": [{"name": "x", "shape": shape, "datatype": "FP64", "data": [1] * 4}]}
    with pytest.raises(InvalidInput) as caught:
        parse_request("m", orjson.dumps(document), None, {})
    assert "'x'" in str(caught.value) and "shape" in str(caught.value)
    assert caught.value.status_code == 400


@pytest.mark.parametrize(
    ("body", "words"),
    [
        (b"[1, 2]", "must be a JSON object, got list"),
        (b'{"inputs": {}}', "'inputs' must be a list"),
        (b'{"inputs": [], "outputs": "predict"}', "'outputs' must be a list"),
        (b'{"inputs": [], "id": 7}', "'id' must be a string"),
        (b'{"inputs": [{"shape": [1]}]}', "string 'name'"),
        (b'{"inputs": [{"name": "x", "shape": [1], "datatype": "FP64"}]}', "has no data"),
        (b'{"inputs": [', "not valid JSON"),
    ],
)
def test_malformed_documents_are_refused_naming_the_problem(body, words):
    with pytest.raises((InvalidPayload, InvalidInput)) as caught:
        parse_request("m", body, None, {})
    assert words in str(caught.value)
    assert caught.value.status_code == 400


def _two_outputs() -> InferenceResponse:
    outputs = [
        ResponseOutput.model_construct(
            name=name, shape=list(values.shape), datatype=datatype, parameters=None,
            data=TensorData.model_construct(root=values),
        )
        for name, datatype, values in (
            ("predict", "INT64", np.array([2, 0, 1], dtype=np.int64)),
            ("predict_proba", "FP64", np.array([[0.25, 0.75], [1.0, 0.0], [0.5, 0.5]])),
        )
    ]  # fmt: skip
    return InferenceResponse.model_construct(
        model_name="m", model_version="3", id="r-9", parameters=None, outputs=outputs
    )


def test_outputs_asked_as_binary_follow_the_json_header_and_the_others_stay_json():
    response = _two_outputs()
    request = parse_request(
        "m", _json_body({"binary_data_output": True}, {"binary_data": False}), None, {}
    )
    body, header_length = render_response(request, response)
    assert header_length is not None
    header = orjson.loads(body[:header_length])
    assert (header["model_name"], header["model_version"], header["id"]) == ("m", "3", "r-9")
    by_name = {o["name"]: o for o in header["outputs"]}
    # 'predict' is asked as JSON by its own flag, over the request's default.
    assert by_name["predict"]["data"] == [2, 0, 1] and "parameters" not in by_name["predict"]
    proba = response.outputs[1].data.root
    assert by_name["predict_proba"]["parameters"] == {"binary_data_size": proba.nbytes}
    assert by_name["predict_proba"]["shape"] == [3, 2] and "data" not in by_name["predict_proba"]
    carried = np.frombuffer(body[header_length:], dtype="<f8").reshape(3, 2)
    np.testing.assert_array_equal(carried, proba)


def test_without_binary_flags_every_output_is_json():
    response = _two_outputs()
    body, header_length = render_response(parse_request("m", _json_body(), None, {}), response)
    assert header_length is None
    outputs = orjson.loads(body)["outputs"]
    assert [o["data"] for o in outputs] == [[2, 0, 1], [0.25, 0.75, 1.0, 0.0, 0.5, 0.5]]
    assert [o["datatype"] for o in outputs] == ["INT64", "FP64"]
