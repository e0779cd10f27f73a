"""The response cache on a real server: right answers, shared only where they must be.

One server for the module, with MLServer's own switch ``MLSERVER_CACHE_ENABLED=true``.
Hits and misses are read from the metrics port, as an operator would.
"""

import json
import os
import shutil
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np
import pytest
import requests
import tritonclient.grpc as grpcclient
from prometheus_client.parser import text_string_to_metric_families
from sklearn.datasets import load_breast_cancer, load_iris
from tritonclient.utils import InferenceServerException

from runtimes.compiled.tolerance import ATOL, RTOL
from runtimes.examples import wine_frame

from .clients import infer, make_client
from .conftest import RunningServer, copy_models, start_server, stop_server

IRIS = np.ascontiguousarray(load_iris().data[::30][:5], dtype=np.float64)


def _add_model(repository: Path, name: str, artifact: Path, settings: dict | None = None) -> None:
    folder = repository / name / "1"
    folder.mkdir(parents=True)
    shutil.copy(artifact, folder / "model.joblib")
    if settings is not None:
        (repository / name / "model-settings.json").write_text(json.dumps(settings))


@pytest.fixture(scope="module")
def cached(tmp_path_factory: pytest.TempPathFactory, repository: Path) -> Iterator[RunningServer]:
    served = copy_models(
        repository,
        tmp_path_factory.mktemp("cache-repo") / "model-repository",
        ["iris", "diabetes", "wine-columns", "breast-cancer"],
    )
    iris_v1 = served / "iris" / "1" / "model.joblib"
    iris_v2 = served / "iris" / "2" / "model.joblib"
    # Both say cache_enabled, so MLServer's own cache (keyed without the model) would
    # serve one twin's answer to the other if it ran.
    _add_model(served, "twin-1", iris_v1, {"cache_enabled": True})
    _add_model(served, "twin-2", iris_v2, {"cache_enabled": True})
    _add_model(served, "swap", iris_v1)
    _add_model(served, "uncached", iris_v1, {"cache_enabled": False})
    _add_model(served, "nan-ok", iris_v1, {"parameters": {"extra": {"allow_nan": True}}})
    running = start_server(
        tmp_path_factory.mktemp("cache-server"),
        served,
        env={"MLSERVER_CACHE_ENABLED": "true", "MLSERVER_CACHE_SIZE": "500"},
    )
    yield running
    assert stop_server(running) == 0, running.log_text()


def _metrics(server: RunningServer) -> dict[tuple[str, str], float]:
    """v2serve_cache_* samples by (name, model); evictions summed over reasons."""
    text = requests.get(f"http://127.0.0.1:{server.metrics_port}/metrics", timeout=5).text
    found: dict[tuple[str, str], float] = {}
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            if sample.name.startswith("v2serve_cache_"):
                key = (sample.name, sample.labels["model"])
                found[key] = found.get(key, 0) + sample.value
    return found


def _count(server: RunningServer, what: str, model: str) -> float:
    return _metrics(server).get((f"v2serve_cache_{what}", model), 0)


def test_models_given_one_input_answer_with_their_own_results(cached, estimators, protocol):
    client = make_client(protocol, cached)
    models = [("iris", "2"), ("twin-1", "1"), ("twin-2", "2")]
    for model, version in models:
        for _ in range(2):
            result = infer(protocol, client, model, {"input-0": IRIS}, ["predict_proba"])
            np.testing.assert_allclose(
                result.as_numpy("predict_proba"),
                estimators[("iris", version)].predict_proba(IRIS),
                rtol=RTOL,
                atol=ATOL,
            )
    for model, _ in models:
        assert _count(cached, "hits_total", model) >= 1


def test_named_columns_with_strings_hit_only_their_own_rows(cached, estimators):
    estimator = estimators[("wine-columns", "1")]
    columns = list(estimator.feature_names_in_)
    frame = wine_frame()
    first = frame.iloc[[0, 60]]
    second = first.copy()  # the same numbers, one string changed
    second.iloc[1, second.columns.get_loc("colour")] = next(
        c for c in ("pale", "medium", "deep") if c != first["colour"].iloc[1]
    )
    client = make_client("grpc", cached)
    for rows in (first, second, first, second):
        inputs = {
            name: rows[name].to_numpy(dtype=object if name == "colour" else np.float64)
            for name in columns
        }
        result = infer("grpc", client, "wine-columns", inputs, ["predict_proba"])
        np.testing.assert_allclose(
            result.as_numpy("predict_proba"),
            estimator.predict_proba(rows[columns]),
            rtol=RTOL,
            atol=ATOL,
        )
    assert _count(cached, "misses_total", "wine-columns") == 2
    assert _count(cached, "hits_total", "wine-columns") == 2


def test_versions_addressed_explicitly_answer_with_their_own_results(cached, estimators):
    client = make_client("http", cached)
    for _ in range(2):
        for version in ("1", "2"):
            result = infer("http", client, "iris", {"input-0": IRIS}, ["predict_proba"], version)
            np.testing.assert_allclose(
                result.as_numpy("predict_proba"),
                estimators[("iris", version)].predict_proba(IRIS),
                rtol=RTOL,
                atol=ATOL,
            )


def test_a_swapped_version_never_serves_the_old_answer(cached, estimators):
    client = make_client("http", cached)
    old, new = estimators[("iris", "1")], estimators[("iris", "2")]
    for _ in range(2):
        result = infer("http", client, "swap", {"input-0": IRIS}, ["predict_proba"])
        np.testing.assert_allclose(result.as_numpy("predict_proba"), old.predict_proba(IRIS))
    assert _count(cached, "hits_total", "swap") == 1
    assert _count(cached, "entries", "swap") == 1

    artifact = cached.repository / "swap" / "1" / "model.joblib"
    staged = artifact.with_suffix(".tmp")
    shutil.copy(cached.repository / "iris" / "2" / "model.joblib", staged)
    os.replace(staged, artifact)
    reload = requests.post(f"{cached.base}/v2/repository/models/swap/load", timeout=60)
    assert reload.status_code == 200, reload.text

    for _ in range(2):
        result = infer("http", client, "swap", {"input-0": IRIS}, ["predict_proba"])
        np.testing.assert_allclose(result.as_numpy("predict_proba"), new.predict_proba(IRIS))
    assert _count(cached, "hits_total", "swap") == 2
    assert _count(cached, "entries", "swap") == 1  # the old instance's entry was freed

    unload = requests.post(f"{cached.base}/v2/repository/models/swap/unload", timeout=60)
    assert unload.status_code == 200, unload.text
    assert _count(cached, "entries", "swap") == 0
    assert _count(cached, "bytes", "swap") == 0


def _rest(server: RunningServer, data: list, request_id: str, header: str) -> requests.Response:
    body = {
        "id": request_id,
        "inputs": [{"name": "input-0", "shape": [1, 10], "datatype": "FP64", "data": data}],
    }
    return requests.post(
        f"{server.base}/v2/models/diabetes/infer",
        json=body,
        headers={"X-Client": header},
        timeout=10,
    )


def test_spellings_protocols_ids_and_headers_share_one_entry(cached, estimators):
    row = [1, 0, 2, -1, 0, 3, 1, 0, -2, 1]
    expected = estimators[("diabetes", "1")].predict(np.array([row], dtype=np.float64))
    answers = [
        _rest(cached, row, "first", "a"),
        _rest(cached, [float(v) for v in row], "second", "b"),
        _rest(cached, [row], "third", "c"),
    ]
    for response, request_id in zip(answers, ("first", "second", "third"), strict=True):
        assert response.status_code == 200, response.text
        assert response.json()["id"] == request_id
        np.testing.assert_allclose(
            response.json()["outputs"][0]["data"], expected, rtol=RTOL, atol=ATOL
        )
    X = np.array([row], dtype=np.float64)
    for protocol in ("http", "grpc"):
        result = infer(protocol, make_client(protocol, cached), "diabetes", {"input-0": X})
        np.testing.assert_allclose(
            result.as_numpy("predict").reshape(-1), expected, rtol=RTOL, atol=ATOL
        )
    assert _count(cached, "misses_total", "diabetes") == 1
    assert _count(cached, "hits_total", "diabetes") == 4


def test_errors_are_not_cached(cached):
    # NaN passes validation for this model, then LogisticRegression rejects it.
    client = grpcclient.InferenceServerClient(url=cached.grpc_url)
    X = np.array([[np.nan, 3.5, 1.4, 0.2]])
    tensor = grpcclient.InferInput("input-0", list(X.shape), "FP64")
    tensor.set_data_from_numpy(X)
    for _ in range(2):
        with pytest.raises(InferenceServerException) as caught:
            client.infer("nan-ok", [tensor])
        assert "INVALID_ARGUMENT" in str(caught.value.status())
    assert _count(cached, "misses_total", "nan-ok") == 2
    assert _count(cached, "hits_total", "nan-ok") == 0
    assert _count(cached, "entries", "nan-ok") == 0


def test_a_model_can_opt_out(cached, estimators):
    client = make_client("http", cached)
    for _ in range(2):
        result = infer("http", client, "uncached", {"input-0": IRIS})
        np.testing.assert_array_equal(
            result.as_numpy("predict"), estimators[("iris", "1")].predict(IRIS)
        )
    assert not [key for key in _metrics(cached) if key[1] == "uncached"]


def test_identical_concurrent_requests_all_get_the_right_answer(cached, estimators):
    X = np.ascontiguousarray(load_breast_cancer().data[:1], dtype=np.float64)
    expected = estimators[("breast-cancer", "1")].predict_proba(X)

    def ask(_: int) -> np.ndarray:
        client = make_client("http", cached)
        answers = []
        for _ in range(5):
            result = infer("http", client, "breast-cancer", {"input-0": X}, ["predict_proba"])
            answers.append(result.as_numpy("predict_proba"))
        return np.stack(answers)

    with ThreadPoolExecutor(max_workers=8) as pool:
        for answers in pool.map(ask, range(8)):
            for answer in answers:
                np.testing.assert_allclose(answer, expected, rtol=RTOL, atol=ATOL)
    assert (
        _count(cached, "hits_total", "breast-cancer")
        + _count(cached, "misses_total", "breast-cancer")
        == 40
    )
