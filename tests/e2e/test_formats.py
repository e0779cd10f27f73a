"""XGBoost, LightGBM and MLflow models served like any other (issue 17).

Each answer over REST and gRPC is compared with the library's own predict on the same
file, loaded in this process; a repository whose versions change format under traffic
serves every request.
"""

import os
import threading
import time
import warnings
from collections.abc import Callable
from pathlib import Path
from typing import Any

import lightgbm
import mlflow.sklearn
import numpy as np
import pytest
import xgboost
from sklearn.datasets import load_breast_cancer, load_iris
from sklearn.linear_model import LogisticRegression
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import StandardScaler

from runtimes.compiled.tolerance import ATOL, RTOL
from runtimes.examples import breast_cancer_xgboost, wine_frame, write_version_folder

from .clients import infer, make_client, metadata
from .conftest import start_server, stop_server

IRIS = load_iris()
CANCER = load_breast_cancer()


def _xgboost(folder: Path) -> Any:
    model = xgboost.XGBClassifier()
    model.load_model(folder / "model.json")
    return model


def _lightgbm(folder: Path) -> Any:
    booster = lightgbm.Booster(model_file=str(folder / "model.txt"))

    class Answers:
        def predict_proba(self, rows: np.ndarray) -> np.ndarray:
            return np.asarray(booster.predict(rows))

        def predict(self, rows: np.ndarray) -> np.ndarray:
            return np.argmax(self.predict_proba(rows), axis=1)

    return Answers()


def _mlflow(folder: Path) -> Any:
    return mlflow.sklearn.load_model(str(folder))


# model -> (what loads the library's own model from the version folder, rows, outputs)
NUMERIC_MODELS: dict[str, tuple[Callable[[Path], Any], np.ndarray, list[str]]] = {
    "breast-cancer-xgboost": (_xgboost, CANCER.data[::40], ["predict", "predict_proba"]),
    "iris-lightgbm": (_lightgbm, IRIS.data[::11], ["predict", "predict_proba"]),
    "iris-mlflow-array": (_mlflow, IRIS.data[::13], ["predict", "predict_proba"]),
}


@pytest.mark.parametrize("model", sorted(NUMERIC_MODELS))
def test_numeric_formats_answer_as_the_library(server, repository, protocol, model) -> None:
    reference, rows, outputs = NUMERIC_MODELS[model]
    own = reference(repository / model / "1")
    result = infer(protocol, make_client(protocol, server), model, {"input-0": rows}, outputs)
    np.testing.assert_array_equal(result.as_numpy("predict"), own.predict(rows))
    np.testing.assert_allclose(
        result.as_numpy("predict_proba"), own.predict_proba(rows), rtol=RTOL, atol=ATOL
    )


def test_mlflow_named_columns_answer_as_mlflow(server, repository, protocol) -> None:
    columns = ["alcohol", "malic_acid", "flavanoids", "proline", "colour"]
    frame = wine_frame()[columns].iloc[::9]
    inputs = {
        name: frame[name].to_numpy(dtype=object if name == "colour" else np.float64)
        for name in columns
    }
    result = infer(protocol, make_client(protocol, server), "wine-mlflow", inputs, ["predict"])
    expected = _mlflow(repository / "wine-mlflow" / "1").predict(frame)
    np.testing.assert_array_equal(result.as_numpy("predict"), expected)


def test_mlflow_signature_is_the_metadata(server, protocol) -> None:
    found = metadata(protocol, make_client(protocol, server), "iris-mlflow")
    assert [i["name"] for i in found["inputs"]] == list(IRIS.feature_names)
    assert {i["datatype"] for i in found["inputs"]} == {"FP64"}
    (predict,) = [o for o in found["outputs"] if o["name"] == "predict"]
    assert predict["datatype"] == "INT64"


def test_booster_metadata_names_format_and_backend(server) -> None:
    config = make_client("http", server).get_model_config("breast-cancer-xgboost")
    text = str(config)
    assert "xgboost" in text and "binary:logistic" in text
    index = {m["name"]: m for m in make_client("http", server).get_model_repository_index()}
    assert index["breast-cancer-xgboost"]["state"] == "READY"
    assert "onnx: verified" in index["breast-cancer-xgboost"]["reason"]


def test_formats_drop_in_under_traffic_with_no_failed_request(tmp_path: Path) -> None:
    """One model whose versions are an XGBoost booster, a LightGBM booster, then an
    MLflow folder: traffic never fails while each replaces the last."""
    model_dir = tmp_path / "repo" / "changing"
    writers = [breast_cancer_xgboost, _lightgbm_cancer, _mlflow_cancer]
    write_version_folder(writers[0], model_dir / "1")
    server = start_server(tmp_path / "server", model_dir.parent)
    rows = CANCER.data[:3]
    failures: list[str] = []
    served: set[str] = set()
    stop = threading.Event()

    def traffic(protocol: str) -> None:
        client = make_client(protocol, server)
        deadline = time.monotonic() + 90
        while not stop.is_set() and time.monotonic() < deadline:
            try:
                result = infer(protocol, client, "changing", {"input-0": rows}, ["predict"])
                response = result.get_response()
                served.add(
                    response["model_version"] if protocol == "http" else response.model_version
                )
            except Exception as exc:  # noqa: BLE001 - every failure is recorded
                failures.append(f"{protocol}: {exc}")

    threads = [threading.Thread(target=traffic, args=(p,)) for p in ("http", "grpc")]
    try:
        for thread in threads:
            thread.start()
        for version, writer in enumerate(writers[1:], start=2):
            staging = model_dir / f".staging-{version}"
            write_version_folder(writer, staging)
            os.rename(staging, model_dir / str(version))
            _wait_until(lambda v=str(version): v in served, f"version {version} served")
    finally:
        stop.set()
        for thread in threads:
            thread.join(timeout=30)
        stop_server(server)
    assert failures == []
    assert served >= {"1", "2", "3"}


def _lightgbm_cancer(folder: Path) -> None:
    model = lightgbm.LGBMClassifier(n_estimators=10, verbose=-1, n_jobs=1)
    folder.mkdir(parents=True)
    model.fit(CANCER.data, CANCER.target).booster_.save_model(str(folder / "model.txt"))


def _mlflow_cancer(folder: Path) -> None:
    model = make_pipeline(StandardScaler(), LogisticRegression(max_iter=1000))
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        mlflow.sklearn.save_model(
            model.fit(CANCER.data, CANCER.target), str(folder), pip_requirements=["scikit-learn"]
        )


def _wait_until(predicate: Callable[[], bool], what: str, timeout: float = 30.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return
        time.sleep(0.05)
    raise AssertionError(f"not within {timeout}s: {what}")
