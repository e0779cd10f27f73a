"""Loads racing unloads of one model, over REST and gRPC with tritonclient (issue 14,
class 10): every call tells the truth, never 422 "no version could be loaded" for a
healthy artifact.

Loads and unloads of one model are serialised by its lock (runtimes/repository/lifecycle.py):
each call does what it says, in turn, so a healthy artifact always loads. The model
unpickles slowly, so that the calls of several clients pile up behind each other's loads.
"""

import os
import threading
from collections.abc import Iterator

import numpy as np
import orjson
import pytest
import requests
import tritonclient.grpc as grpcclient
import tritonclient.http as httpclient
from sklearn.datasets import load_iris
from sklearn.linear_model import LogisticRegression
from tritonclient.utils import InferenceServerException

from runtimes.examples import write_artifact

from .conftest import ROOT, RunningServer, start_server, stop_server
from .slow_estimator import SlowToUnpickle

IRIS = load_iris()
ESTIMATOR = LogisticRegression(max_iter=1000).fit(IRIS.data, IRIS.target)
MODEL = "racer"
LOAD_SECONDS = 0.05
"""How long the artifact takes to unpickle: long enough for calls to overlap a load."""
CLIENTS = 6
ROUNDS = 4
TRUTHFUL = ("unloaded while loading", "superseded")
"""The only failures a racing call may report (issue 14): none is expected, since the
calls are serialised, but a loser must say one of these and nothing else."""


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RunningServer]:
    repository = tmp_path_factory.mktemp("race") / "model-repository"
    write_artifact(
        SlowToUnpickle(ESTIMATOR, LOAD_SECONDS), repository / MODEL / "1" / "model.joblib"
    )
    (repository / MODEL / "model-settings.json").write_text(
        orjson.dumps({"parameters": {"extra": {"inference_backend": "sklearn"}}}).decode()
    )
    env = {
        "PYTHONPATH": os.pathsep.join([str(ROOT), os.environ.get("PYTHONPATH", "")]),
        "V2SERVE_WATCH": "false",
    }
    running = start_server(tmp_path_factory.mktemp("server"), repository, env=env)
    yield running
    assert stop_server(running) == 0, running.log_text()


def _client(protocol: str, server: RunningServer) -> object:
    if protocol == "http":
        return httpclient.InferenceServerClient(url=server.http_url, network_timeout=120)
    return grpcclient.InferenceServerClient(url=server.grpc_url)


def _race(server: RunningServer, protocols: list[str]) -> list[str]:
    """Each client loads and unloads the model ROUNDS times, all at once: the failures."""
    failures: list[str] = []
    lock = threading.Lock()
    start = threading.Barrier(len(protocols))

    def client_loop(protocol: str) -> None:
        client = _client(protocol, server)
        start.wait(timeout=60)
        try:
            for _ in range(ROUNDS):
                for action in (client.load_model, client.unload_model):  # type: ignore[attr-defined]
                    try:
                        action(MODEL)
                    except InferenceServerException as exc:
                        with lock:
                            failures.append(f"{protocol} {action.__name__}: {exc.message()}")
        finally:
            client.close()  # type: ignore[attr-defined]

    threads = [threading.Thread(target=client_loop, args=(p,), daemon=True) for p in protocols]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=300)
    assert not any(thread.is_alive() for thread in threads), "a load or unload never answered"
    return failures


def _predict(server: RunningServer) -> np.ndarray:
    body = {"inputs": [{"name": "input-0", "shape": [2, 4], "datatype": "FP64",
                        "data": IRIS.data[:2].ravel().tolist()}]}  # fmt: skip
    response = requests.post(f"{server.base}/v2/models/{MODEL}/infer", json=body, timeout=30)
    assert response.status_code == 200, response.text
    return np.asarray(response.json()["outputs"][0]["data"])


@pytest.mark.parametrize(
    "protocols",
    [["http"] * CLIENTS, ["grpc"] * CLIENTS, ["http", "grpc"] * (CLIENTS // 2)],
    ids=["rest", "grpc", "both"],
)
def test_loads_racing_unloads_of_one_model_tell_the_truth(
    server: RunningServer, protocols: list[str]
) -> None:
    failures = _race(server, protocols)
    untruthful = [f for f in failures if not any(phrase in f for phrase in TRUTHFUL)]
    assert untruthful == [], untruthful
    assert not any("no version could be loaded" in f for f in failures), failures
    # Whatever the order was, the healthy artifact loads and answers afterwards.
    client = _client(protocols[0], server)
    try:
        client.load_model(MODEL)  # type: ignore[attr-defined]
    finally:
        client.close()  # type: ignore[attr-defined]
    np.testing.assert_array_equal(_predict(server), ESTIMATOR.predict(IRIS.data[:2]))
    index = requests.post(f"{server.base}/v2/repository/index", json={}, timeout=30).json()
    assert [(m["name"], m["state"]) for m in index] == [(MODEL, "READY")], index
