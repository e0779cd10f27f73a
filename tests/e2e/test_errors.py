"""Bad requests get JSON errors with meaningful statuses, and matching gRPC codes.

One row per bad input: the REST status, the gRPC code, and words the message must hold.
"""

import json

import numpy as np
import pytest
import requests
import tritonclient.grpc as grpcclient
from tritonclient.utils import InferenceServerException

IRIS_ROW = [5.1, 3.5, 1.4, 0.2]


def _body(**tensor):
    base = {"name": "input-0", "shape": [1, 4], "datatype": "FP64", "data": IRIS_ROW}
    return {"inputs": [{**base, **tensor}]}


CASES = [
    # id, model path, body, http status, grpc code, words
    ("unknown-model", "nope", _body(), 404, "NOT_FOUND", ["nope", "not found"]),
    ("unknown-version", "iris/versions/9", _body(), 404, "NOT_FOUND", ["version '9'", "1, 2"]),
    (
        "too-few-features",
        "iris",
        _body(shape=[1, 3], data=IRIS_ROW[:3]),
        400,
        "INVALID_ARGUMENT",
        ["input-0", "[-1, 4]", "[1, 3]"],
    ),
    (
        "shape-vs-data",
        "iris",
        _body(shape=[2, 4]),
        400,
        "INVALID_ARGUMENT",
        ["8 values", "4 values"],
    ),
    ("wrong-datatype", "iris", _body(datatype="FP32"), 400, "INVALID_ARGUMENT", ["FP64", "FP32"]),
    ("unknown-input", "iris", _body(name="x"), 400, "INVALID_ARGUMENT", ["'x'", "unknown"]),
    ("nan", "iris", _body(data=[float("nan"), 1, 2, 3]), 400, "INVALID_ARGUMENT", ["NaN"]),
    (
        "unknown-output",
        "iris",
        {**_body(), "outputs": [{"name": "nope"}]},
        400,
        "INVALID_ARGUMENT",
        ["nope", "predict_proba"],
    ),
]


# JSON has no NaN literal: over REST the body itself is malformed.
REST_WORDS = {"nan": ["JSON"]}


@pytest.mark.parametrize(
    ("path", "body", "status", "words"),
    [pytest.param(c[1], c[2], c[3], REST_WORDS.get(c[0], c[5]), id=c[0]) for c in CASES],
)
def test_rest_errors_are_json(server, path, body, status, words):
    response = requests.post(
        f"{server.base}/v2/models/{path}/infer",
        data=json.dumps(body),
        headers={"Content-Type": "application/json"},
    )
    assert response.status_code == status
    message = response.json()["error"]
    for word in words:
        assert word in message


def _grpc_request(body):
    tensor = body["inputs"][0]
    infer_input = grpcclient.InferInput(tensor["name"], tensor["shape"], tensor["datatype"])
    infer_input._raw_content = None
    contents = infer_input._get_tensor().contents
    contents.fp64_contents.extend(tensor["data"]) if tensor[
        "datatype"
    ] == "FP64" else contents.fp32_contents.extend(tensor["data"])
    outputs = [grpcclient.InferRequestedOutput(o["name"]) for o in body.get("outputs", [])]
    return [infer_input], outputs or None


@pytest.mark.parametrize(
    ("path", "body", "code", "words"),
    [pytest.param(c[1], c[2], c[4], c[5], id=c[0]) for c in CASES],
)
def test_grpc_errors_carry_codes(server, path, body, code, words):
    model, _, version = path.partition("/versions/")
    inputs, outputs = _grpc_request(body)
    client = grpcclient.InferenceServerClient(url=server.grpc_url)
    with pytest.raises(InferenceServerException) as caught:
        client.infer(model, inputs, model_version=version, outputs=outputs)
    assert caught.value.status() == f"StatusCode.{code}"
    for word in words:
        assert word in caught.value.message()


@pytest.mark.parametrize(
    ("raw", "words"),
    [
        (b"{not json", ["JSON"]),
        (b"[1, 2]", ["invalid inference request"]),
        (b'{"inputs": 3}', ["inputs"]),
        (b"{}", ["inputs"]),
    ],
)
def test_malformed_bodies_are_400_json(server, raw, words):
    response = requests.post(
        f"{server.base}/v2/models/iris/infer",
        data=raw,
        headers={"Content-Type": "application/json"},
    )
    assert response.status_code == 400
    for word in words:
        assert word in response.json()["error"]


def test_body_without_content_type_is_read_as_json(server, estimators):
    raw = json.dumps(_body()).encode()
    response = requests.post(f"{server.base}/v2/models/iris/infer", data=raw)
    assert response.status_code == 200, response.text
    expected = estimators[("iris", "2")].predict(np.array([IRIS_ROW]))
    assert response.json()["outputs"][0]["data"] == expected.tolist()


def test_unknown_path_is_json_404(server):
    response = requests.get(f"{server.base}/v2/nothing/here")
    assert response.status_code == 404
    assert "error" in response.json()
