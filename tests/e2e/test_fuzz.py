"""Random and malformed payloads never get a 5xx, and the server keeps answering correctly."""

import json
from typing import Any

import numpy as np
import requests
import tritonclient.grpc as grpcclient
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from tritonclient.utils import InferenceServerException

IRIS_ROW = [5.1, 3.5, 1.4, 0.2]
DATATYPES = ["FP64", "FP32", "INT64", "INT32", "BOOL", "BYTES", "UINT8", "FP16", "", "fp64", "X"]
MODELS = ["iris", "iris-limited", "wine-strict", "diabetes", "nope"]

json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | st.text(max_size=8),
    lambda inner: (
        st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=6), inner, max_size=4)
    ),
    max_leaves=12,
)
shapes = st.lists(st.integers(min_value=-3, max_value=2**40), max_size=4) | st.lists(
    st.integers(min_value=0, max_value=5), min_size=1, max_size=3
)
tensors = st.fixed_dictionaries(
    {
        "name": st.sampled_from(["input-0", "alcohol", "colour", "x", ""]),
        "shape": shapes | json_values,
        "datatype": st.sampled_from(DATATYPES) | json_values,
        "data": st.lists(
            st.floats(allow_nan=False) | st.integers() | st.text(max_size=4), max_size=12
        )
        | json_values,
    },
    optional={"parameters": json_values},
)
bodies = (
    st.fixed_dictionaries(
        {"inputs": st.lists(tensors, max_size=3) | json_values},
        optional={"outputs": json_values, "parameters": json_values, "id": json_values},
    )
    | json_values
)


def _assert_healthy(server: Any, estimators: dict) -> None:
    assert requests.get(f"{server.base}/v2/health/ready", timeout=5).status_code == 200
    body = {"inputs": [{"name": "input-0", "shape": [1, 4], "datatype": "FP64", "data": IRIS_ROW}]}
    response = requests.post(f"{server.base}/v2/models/iris/infer", json=body, timeout=5)
    expected = estimators[("iris", "2")].predict(np.array([IRIS_ROW]))
    assert response.json()["outputs"][0]["data"] == expected.tolist()


@settings(
    max_examples=150, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(model=st.sampled_from(MODELS), body=bodies)
def test_random_json_never_5xx(server, model, body):
    response = requests.post(
        f"{server.base}/v2/models/{model}/infer", data=json.dumps(body), timeout=10
    )
    assert response.status_code < 500, response.text
    assert "error" in response.json() or response.status_code == 200


@settings(
    max_examples=50, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(raw=st.binary(max_size=64))
def test_random_bytes_never_5xx(server, raw):
    response = requests.post(f"{server.base}/v2/models/iris/infer", data=raw, timeout=10)
    assert response.status_code < 500, response.text


@settings(
    max_examples=80, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(
    model=st.sampled_from(MODELS),
    name=st.sampled_from(["input-0", "colour", "x"]),
    shape=st.lists(st.integers(min_value=-2, max_value=6), max_size=3),
    datatype=st.sampled_from(DATATYPES[:-3] + ["X"]),
    raw=st.binary(max_size=80),
)
def test_random_grpc_raw_tensors_never_internal(server, model, name, shape, datatype, raw):
    client = grpcclient.InferenceServerClient(url=server.grpc_url)
    tensor = grpcclient.InferInput(name, shape, datatype)
    tensor._raw_content = raw
    try:
        client.infer(model, [tensor])
    except InferenceServerException as exc:
        assert exc.status() in (
            "StatusCode.INVALID_ARGUMENT",
            "StatusCode.NOT_FOUND",
        ), exc.message()


def test_server_still_answers_after_fuzzing(server, estimators):
    _assert_healthy(server, estimators)
