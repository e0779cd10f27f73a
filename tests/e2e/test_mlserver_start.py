"""The runtime under plain ``mlserver start`` (MLServer's own server, no v2serve server
code): a folder with ``model.joblib`` and a ``model-settings.json`` naming
``runtimes.sklearn.SklearnRuntime``, as a KServe ``kserve-mlserver`` user writes it.

MLServer cannot bind port 0: the harness's ``start_vanilla`` picks free ports and starts
again when one was taken meanwhile."""

import json
from collections.abc import Iterator
from pathlib import Path

import joblib
import numpy as np
import pytest
import tritonclient.grpc as grpcclient
import tritonclient.http as httpclient
from sklearn.datasets import load_iris
from sklearn.linear_model import LogisticRegression
from tritonclient.utils import InferenceServerException

from tests.harness import start_vanilla, stop_server

X, Y = load_iris(return_X_y=True)
ESTIMATOR = LogisticRegression(max_iter=500).fit(X, Y)
# model name -> parameters.uri as the user writes it (None: no uri at all)
MODELS = {"uri-folder": "./", "uri-file": "./model.joblib", "no-uri": None}
ROWS = X[::10]


def _write_repository(root: Path) -> None:
    for name, uri in MODELS.items():
        folder = root / name
        folder.mkdir(parents=True)
        joblib.dump(ESTIMATOR, folder / "model.joblib")
        settings: dict[str, object] = {
            "name": name,
            "implementation": "runtimes.sklearn.SklearnRuntime",
        }
        if uri is not None:
            settings["parameters"] = {"uri": uri}
        (folder / "model-settings.json").write_text(json.dumps(settings))


@pytest.fixture(scope="module")
def mlserver(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[int, int]]:
    root = tmp_path_factory.mktemp("mlserver-start")
    _write_repository(root)
    # Started from another folder: uris are relative to model-settings.json, not to here.
    server = start_vanilla(tmp_path_factory.mktemp("elsewhere"), root, list(MODELS), timeout=120)
    try:
        yield server.http_port, server.grpc_port
    finally:
        stop_server(server)


def _http(ports: tuple[int, int]) -> httpclient.InferenceServerClient:
    return httpclient.InferenceServerClient(f"127.0.0.1:{ports[0]}")


def _grpc(ports: tuple[int, int]) -> grpcclient.InferenceServerClient:
    return grpcclient.InferenceServerClient(f"127.0.0.1:{ports[1]}")


def _infer(protocol: str, ports: tuple[int, int], model: str, rows: np.ndarray, output: str):
    module = httpclient if protocol == "http" else grpcclient
    tensor = module.InferInput("input-0", list(rows.shape), "FP64")
    requested = module.InferRequestedOutput(output)
    if protocol == "http":
        tensor.set_data_from_numpy(rows, binary_data=False)  # MLServer's REST has no binary
        requested = httpclient.InferRequestedOutput(output, binary_data=False)
        return _http(ports).infer(model, [tensor], outputs=[requested]).as_numpy(output)
    tensor.set_data_from_numpy(rows)
    return _grpc(ports).infer(model, [tensor], outputs=[requested]).as_numpy(output)


@pytest.mark.parametrize("protocol", ["http", "grpc"])
@pytest.mark.parametrize("model", list(MODELS))
def test_answers_equal_the_estimator(mlserver, protocol, model):
    predicted = _infer(protocol, mlserver, model, ROWS, "predict")
    assert predicted.reshape(-1).tolist() == ESTIMATOR.predict(ROWS).tolist()
    proba = _infer(protocol, mlserver, model, ROWS, "predict_proba")
    np.testing.assert_allclose(
        proba.reshape(ESTIMATOR.predict_proba(ROWS).shape),
        ESTIMATOR.predict_proba(ROWS),
        rtol=1e-6,
        atol=1e-9,
    )


@pytest.mark.parametrize("model", list(MODELS))
def test_metadata_has_the_derived_schema(mlserver, model):
    metadata = _http(mlserver).get_model_metadata(model)
    assert metadata["platform"] == "sklearn"
    assert metadata["inputs"] == [{"name": "input-0", "datatype": "FP64", "shape": [-1, 4]}]
    outputs = {tensor["name"]: tensor for tensor in metadata["outputs"]}
    assert outputs["predict"]["shape"] == [-1]
    assert outputs["predict_proba"]["shape"] == [-1, len(ESTIMATOR.classes_)]
    assert metadata["parameters"]["format"] == "sklearn"


@pytest.mark.parametrize("protocol", ["http", "grpc"])
def test_a_bad_shape_is_a_400_naming_the_problem(mlserver, protocol):
    with pytest.raises(InferenceServerException) as caught:
        _infer(protocol, mlserver, "uri-file", X[:2, :3], "predict")
    message = str(caught.value)
    assert "input-0" in message and "wrong shape" in message and "[-1, 4]" in message
    status = caught.value.status()
    assert status in ("400", "StatusCode.INVALID_ARGUMENT"), status
