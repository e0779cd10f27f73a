"""The backend in use shows in model metadata, and a forced backend is the one that serves."""

from typing import Any

import numpy as np
import pytest
import requests
import tritonclient.grpc as grpcclient
import tritonclient.http as httpclient
from sklearn.datasets import load_breast_cancer, load_iris

from runtimes.compiled.tolerance import ATOL, RTOL

from .clients import infer, make_client, metadata


def _grpc_config_parameters(server, model: str) -> dict[str, str]:
    """Over gRPC the backend is in the model configuration's parameters: ModelMetadata
    carries only the fields that Triton's and KServe's definitions share."""
    client = grpcclient.InferenceServerClient(url=server.grpc_url)
    config = client.get_model_config(model, as_json=True)["config"]
    return {key: value["string_value"] for key, value in config["parameters"].items()}


def _parameters(server, protocol: str, model: str) -> dict[str, str]:
    if protocol == "grpc":
        return _grpc_config_parameters(server, model)
    return metadata(protocol, make_client(protocol, server), model).get("parameters") or {}


@pytest.mark.parametrize(
    ("model", "backend", "phrase"),
    [
        ("breast-cancer-onnx", "onnx", "rows on"),
        ("breast-cancer-sklearn", "sklearn", "inference_backend 'sklearn'"),
        ("iris", "native", "verified on"),
    ],
)
def test_metadata_names_the_backend(server, protocol, model, backend, phrase):
    found = _parameters(server, protocol, model)
    assert found["inference_backend"] == backend
    assert phrase in found["verification"]


@pytest.mark.parametrize("model", ["breast-cancer-onnx", "breast-cancer-sklearn"])
def test_forced_backends_answer_like_the_estimator(server, estimators, protocol, model):
    X = np.ascontiguousarray(load_breast_cancer().data[::25], dtype=np.float64)
    client = make_client(protocol, server)
    result = infer(protocol, client, model, {"input-0": X}, ["predict_proba", "predict"])
    estimator = estimators[(model, "1")]
    np.testing.assert_array_equal(result.as_numpy("predict"), estimator.predict(X))
    assert result.as_numpy("predict").dtype == estimator.predict(X).dtype
    np.testing.assert_allclose(
        result.as_numpy("predict_proba"), estimator.predict_proba(X), rtol=RTOL, atol=ATOL
    )


def test_sklearn_backend_answers_bit_for_bit(server, estimators):
    X = load_breast_cancer().data[:9]
    body = {
        "inputs": [
            {"name": "input-0", "shape": list(X.shape), "datatype": "FP64", "data": X.tolist()}
        ],
        "outputs": [{"name": "predict_proba"}],
    }
    answer = requests.post(f"{server.base}/v2/models/breast-cancer-sklearn/infer", json=body)
    served = np.array(answer.json()["outputs"][0]["data"]).reshape(-1, 2)
    expected = estimators[("breast-cancer-sklearn", "1")].predict_proba(X)
    np.testing.assert_array_equal(served, expected)


def test_the_log_says_which_backend_serves(server):
    log = server.log_text()
    assert "model 'breast-cancer-onnx' version 1 serves onnx: verified on" in log
    assert "model 'breast-cancer-sklearn' version 1 serves sklearn" in log


def test_the_closed_form_answers_every_output_as_perf_analyzer_asks(server, estimators, protocol):
    """perf_analyzer asks for every output the metadata lists, binary over REST and raw over
    gRPC (issue 15): all three come from the closed form and equal the estimator's."""
    X = np.ascontiguousarray(load_iris().data[::10], dtype=np.float64)
    module: Any = grpcclient if protocol == "grpc" else httpclient
    tensor = module.InferInput("input-0", list(X.shape), "FP64")
    names = ["decision_function", "predict", "predict_proba"]
    if protocol == "http":
        tensor.set_data_from_numpy(X, binary_data=True)
        outputs = [module.InferRequestedOutput(name, binary_data=True) for name in names]
    else:
        tensor.set_data_from_numpy(X)
        outputs = [module.InferRequestedOutput(name) for name in names]
    result = make_client(protocol, server).infer("iris", [tensor], outputs=outputs)
    estimator = estimators[("iris", "2")]
    assert "decision_function max |diff|" in _parameters(server, protocol, "iris")["verification"]
    np.testing.assert_array_equal(result.as_numpy("predict"), estimator.predict(X))
    for name in ("decision_function", "predict_proba"):
        np.testing.assert_allclose(
            result.as_numpy(name), getattr(estimator, name)(X), rtol=RTOL, atol=ATOL
        )
