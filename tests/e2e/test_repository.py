"""The versioned repository under steady traffic: drop, break, fix, write slowly, remove.

Traffic runs from several REST and gRPC clients at the unversioned model the whole time;
every answer must come from a version that was served and equal that version's
estimator run in-process. Zero failed requests is the bar.
"""

import http.client
import json
import os
import shutil
import threading
import time
from pathlib import Path

import joblib
import numpy as np
import pytest
import requests
import tritonclient.grpc as grpcclient
from sklearn.datasets import load_iris
from sklearn.linear_model import LogisticRegression
from tritonclient.utils import InferenceServerException

from runtimes.compiled.tolerance import ATOL, RTOL
from runtimes.examples import write_artifact

from .clients import infer, make_client
from .conftest import holds_for, start_server, stop_server, wait_until

X = np.ascontiguousarray(load_iris().data[::15], dtype=np.float64)
MODEL = "live"
TIMEOUT = 30.0


def _train(c: float):
    data = load_iris()
    return LogisticRegression(C=c, max_iter=1000).fit(data.data, data.target)


ESTIMATORS = {str(v): _train(c) for v, c in {1: 1.0, 2: 0.05, 3: 0.01, 4: 10.0}.items()}
EXPECTED = {v: e.predict_proba(X) for v, e in ESTIMATORS.items()}


class Traffic:
    """Clients that hammer the unversioned model until stopped, recording every answer."""

    def __init__(self, server, clients_per_protocol: int = 2):
        self.server = server
        self.stop = threading.Event()
        self.failures: list[str] = []
        self.served: dict[str, int] = {}
        self.wrong: list[str] = []
        self.lock = threading.Lock()
        self.threads = [
            threading.Thread(target=self._run, args=(protocol,), daemon=True)
            for protocol in ("http", "grpc")
            for _ in range(clients_per_protocol)
        ]

    def _run(self, protocol: str) -> None:
        client = make_client(protocol, self.server)
        deadline = time.monotonic() + 120
        while not self.stop.is_set() and time.monotonic() < deadline:
            try:
                result = infer(protocol, client, MODEL, {"input-0": X}, ["predict_proba"])
                version = (
                    result.get_response()["model_version"]
                    if protocol == "http"
                    else (result.get_response().model_version)
                )
                proba = result.as_numpy("predict_proba")
            except Exception as exc:  # noqa: BLE001 - every failure is recorded
                with self.lock:
                    self.failures.append(f"{protocol}: {exc}")
                continue
            with self.lock:
                self.served[version] = self.served.get(version, 0) + 1
                if version not in EXPECTED or not np.allclose(
                    proba, EXPECTED[version], rtol=RTOL, atol=ATOL
                ):
                    self.wrong.append(version)

    def __enter__(self) -> "Traffic":
        for thread in self.threads:
            thread.start()
        return self

    def __exit__(self, *exc) -> None:
        self.stop.set()
        for thread in self.threads:
            thread.join(timeout=30)


def _default_version(server) -> str:
    body = {
        "inputs": [{"name": "input-0", "shape": [1, 4], "datatype": "FP64", "data": X[0].tolist()}]
    }
    return requests.post(f"{server.base}/v2/models/{MODEL}/infer", json=body).json()[
        "model_version"
    ]


def _wait_for(predicate, what: str) -> float:
    start = time.monotonic()
    while time.monotonic() - start < TIMEOUT:
        if predicate():
            return time.monotonic() - start
        time.sleep(0.05)
    raise AssertionError(f"not within {TIMEOUT}s: {what}")


def _index(server) -> dict[tuple[str, str], dict]:
    client = make_client("http", server)
    return {(m["name"], m.get("version", "")): m for m in client.get_model_repository_index()}


def _drop_by_rename(model_dir: Path, version: str, estimator) -> None:
    staging = model_dir / f".staging-{version}"
    write_artifact(estimator, staging / "model.joblib")
    os.rename(staging, model_dir / version)


@pytest.fixture
def live_repository(tmp_path) -> Path:
    model_dir = tmp_path / "repo" / MODEL
    write_artifact(ESTIMATORS["1"], model_dir / "1" / "model.joblib")
    (model_dir / "model-settings.json").write_text(
        json.dumps({"parameters": {"extra": {"version_policy": {"latest": {"num_versions": 2}}}}})
    )
    return model_dir


@pytest.mark.parametrize("watcher", ["inotify", "polling"])
def test_versions_come_and_go_under_traffic_with_no_failed_request(
    tmp_path, live_repository, watcher
):
    env = {"V2SERVE_USE_INOTIFY": str(watcher == "inotify").lower()}
    if watcher == "polling":  # the same scans as every 1 s, only sooner after each change
        env["V2SERVE_POLL_INTERVAL"] = "0.25"
    server = start_server(tmp_path / "server", live_repository.parent, env=env)
    timings: dict[str, float] = {}
    try:
        with Traffic(server) as traffic:
            time.sleep(0.5)
            _drop_by_rename(live_repository, "2", ESTIMATORS["2"])
            timings["rename"] = _wait_for(lambda: _default_version(server) == "2", "v2 served")

            corrupt = live_repository / ".staging-3"
            corrupt.mkdir()
            (corrupt / "model.joblib").write_bytes(b"this is not a pickle")
            os.rename(corrupt, live_repository / "3")
            _wait_for(
                lambda: _index(server).get((MODEL, "3"), {}).get("state") == "UNAVAILABLE",
                "v3 listed unavailable",
            )
            reason = _index(server)[(MODEL, "3")]["reason"]
            assert "model.joblib" in reason, reason
            assert _default_version(server) == "2"
            for version in ("1", "2"):  # latest: 2 keeps two versions addressable
                client = make_client("grpc", server)
                result = infer("grpc", client, MODEL, {"input-0": X}, ["predict_proba"], version)
                np.testing.assert_allclose(result.as_numpy("predict_proba"), EXPECTED[version])

            fixed = live_repository / "3" / ".model.joblib.tmp"
            joblib.dump(ESTIMATORS["3"], fixed)
            os.replace(fixed, live_repository / "3" / "model.joblib")
            timings["fix-in-place"] = _wait_for(
                lambda: _default_version(server) == "3", "v3 served"
            )
            _wait_for(lambda: (MODEL, "1") not in _index(server), "v1 retired")

            slow = live_repository / "4"
            slow.mkdir()
            payload = tmp_path / "v4.joblib"
            joblib.dump(ESTIMATORS["4"], payload)
            data = payload.read_bytes()
            with (slow / "model.joblib").open("wb") as sink:
                for start in range(0, len(data), max(1, len(data) // 5)):
                    sink.write(data[start : start + max(1, len(data) // 5)])
                    sink.flush()
                    time.sleep(0.2)
            timings["slow-copy"] = _wait_for(lambda: _default_version(server) == "4", "v4 served")

            shutil.rmtree(slow)
            timings["remove"] = _wait_for(lambda: _default_version(server) == "3", "v4 removed")
            time.sleep(0.5)
        assert traffic.failures == [], traffic.failures[:5]
        assert traffic.wrong == []
        assert traffic.served.get("3", 0) > 0, traffic.served  # v3 was the default a while
        assert set(traffic.served) <= {"1", "2", "3", "4"}
        assert sum(traffic.served.values()) > 50
    finally:
        assert stop_server(server) == 0
    report = tmp_path.parent / "drop-to-served.json"
    history = json.loads(report.read_text()) if report.exists() else []
    report.write_text(json.dumps([*history, {"watcher": watcher, **timings}]))
    print(watcher, "drop-to-served seconds:", timings, "requests:", traffic.served)


def test_repository_api_rejects_names_that_escape(server, tmp_path):
    outside = tmp_path / "outside"
    outside.mkdir()
    link = server.repository / "escape"
    link.symlink_to(outside)
    try:
        for name in ["..%2F..%2Fetc", "%2Fetc", "a%5C..", "escape", "..", "iris%2F1"]:
            connection = http.client.HTTPConnection(server.http_url.split(":")[0], server.http_port)
            connection.request("POST", f"/v2/repository/models/{name}/load", body=b"")
            response = connection.getresponse()
            body = response.read()
            assert response.status == 400, (name, response.status, body)
            assert "error" in json.loads(body)
        grpc = grpcclient.InferenceServerClient(url=server.grpc_url)
        with pytest.raises(InferenceServerException) as caught:
            grpc.load_model("../etc")
        assert caught.value.status() == "StatusCode.INVALID_ARGUMENT"
    finally:
        link.unlink()


def _escaping_models(repository: Path, outside: Path) -> dict[str, str]:
    """Issue 14.8's layouts, each a model whose only version reaches outside the root;
    the phrase its refusal must hold."""
    artifact = outside / "1" / "model.joblib"
    shutil.copytree(repository / "iris" / "1", outside / "1")
    cases = {
        "outside-dotdot-artifact": (
            {"artifact": os.path.relpath(artifact, repository / "outside-dotdot-artifact" / "1")},
            "parameters.extra.artifact",
        ),
        "outside-absolute-artifact": ({"artifact": str(artifact)}, "absolute path"),
        "outside-absolute-uri": (None, "absolute path"),
        "outside-version-link": (None, "version folder 'outside-version-link/1' leads outside"),
        "outside-artifact-link": (None, "'outside-artifact-link/1/model.joblib' leads outside"),
    }
    for name, (extra, _) in cases.items():
        folder = repository / name
        folder.mkdir()
        settings: dict = {"parameters": {"extra": extra}} if extra else {}
        if name == "outside-absolute-uri":
            settings = {"parameters": {"uri": str(outside / "1")}}
        (folder / "model-settings.json").write_text(json.dumps(settings))
        if name == "outside-version-link":
            (folder / "1").symlink_to(outside / "1")
        elif name == "outside-artifact-link":
            (folder / "1").mkdir()
            (folder / "1" / "model.joblib").symlink_to(artifact)
        else:
            shutil.copytree(repository / "iris" / "1", folder / "1")
    return {name: phrase for name, (_, phrase) in cases.items()}


def test_layouts_and_settings_that_reach_outside_the_repository_are_refused(server, tmp_path):
    """Issue 14.8 over REST and gRPC: each refused before any load, in the load's answer
    and in the index, with no absolute server path in either."""
    outside = tmp_path / "outside"
    cases = _escaping_models(server.repository, outside)
    hidden = (str(tmp_path), str(server.repository.resolve()))
    grpc_client = grpcclient.InferenceServerClient(url=server.grpc_url)
    try:
        for name, phrase in cases.items():
            answer = requests.post(f"{server.base}/v2/repository/models/{name}/load", timeout=60)
            assert answer.status_code == 422, (name, answer.status_code, answer.text)
            message = answer.json()["error"]
            assert phrase in message and not any(h in message for h in hidden), message
            with pytest.raises(InferenceServerException) as caught:
                grpc_client.load_model(name)
            assert caught.value.status() == "StatusCode.FAILED_PRECONDITION", name
            assert phrase in caught.value.message(), caught.value.message()
            assert not any(h in caught.value.message() for h in hidden)
        index = requests.post(f"{server.base}/v2/repository/index", json={}, timeout=30).json()
        listed = {m["name"]: m for m in index if m["name"] in cases}
        assert sorted(listed) == sorted(cases)
        for name, phrase in cases.items():
            assert listed[name]["state"] == "UNAVAILABLE", listed[name]
            assert phrase in listed[name]["reason"], listed[name]
            assert not any(h in listed[name]["reason"] for h in hidden)
        # Nothing outside was served meanwhile.
        ready = requests.get(f"{server.base}/v2/models/outside-version-link/ready", timeout=30)
        assert ready.status_code != 200
    finally:
        grpc_client.close()
        for name in cases:
            folder = server.repository / name
            if (folder / "1").is_symlink():
                (folder / "1").unlink()
            shutil.rmtree(folder)

        def gone() -> bool:
            index = requests.post(f"{server.base}/v2/repository/index", json={}, timeout=30)
            return not any(m["name"] in cases for m in index.json())

        wait_until(gone, 60, "the escaping models to leave the index")


@pytest.mark.parametrize("name", ["a" * 256, "é" * 128], ids=["256-ascii", "256-bytes-utf8"])
def test_load_and_unload_of_a_name_over_255_bytes_are_invalid_over_both(server, name):
    """Issue 14.9: was 500 / INTERNAL, with the repository's absolute path in the message."""
    root = str(server.repository.resolve())
    for action in ("load", "unload"):
        response = requests.post(
            f"{server.base}/v2/repository/models/{name}/{action}", data=b"", timeout=30
        )
        assert response.status_code == 400, (action, response.status_code, response.text)
        message = response.json()["error"]
        assert "255 bytes" in message and root not in message, message
    client = grpcclient.InferenceServerClient(url=server.grpc_url)
    for call in (client.load_model, client.unload_model):
        with pytest.raises(InferenceServerException) as caught:
            call(name)
        assert caught.value.status() == "StatusCode.INVALID_ARGUMENT", caught.value.message()
        assert "255 bytes" in caught.value.message()
        assert root not in caught.value.message()


def test_index_over_both_protocols(server):
    http_index = make_client("http", server).get_model_repository_index()
    grpc_index = make_client("grpc", server).get_model_repository_index(as_json=True)["models"]
    for index in (http_index, grpc_index):
        states = {(m["name"], m.get("version", "")): m["state"] for m in index}
        assert states[("iris", "1")] == "READY" and states[("iris", "2")] == "READY"
        assert states[("diabetes", "1")] == "READY"


def test_unknown_model_and_version_list_what_exists(server):
    response = requests.post(f"{server.base}/v2/models/iris/versions/5/infer", json={"inputs": []})
    assert response.status_code == 404
    assert "1, 2" in response.json()["error"]
    assert requests.get(f"{server.base}/v2/models/nope/ready").status_code == 404


def test_explicit_mode_and_unload_load(tmp_path, live_repository):
    server = start_server(
        tmp_path / "server", live_repository.parent, env={"V2SERVE_WATCH": "false"}
    )
    try:
        _drop_by_rename(live_repository, "2", ESTIMATORS["2"])
        # Nothing watches in explicit mode: v1 stays the default for longer than a watch
        # would take to serve v2, checked throughout.
        holds_for(lambda: _default_version(server) == "1", 2.5, "v1 the default")
        client = make_client("http", server)
        client.load_model(MODEL)
        assert _default_version(server) == "2"
        client.unload_model(MODEL)
        assert requests.get(f"{server.base}/v2/models/{MODEL}/ready").status_code == 404
        states = {m["name"]: m for m in client.get_model_repository_index()}
        assert states[MODEL]["state"] == "UNAVAILABLE" and states[MODEL]["reason"] == "unloaded"
        make_client("grpc", server).load_model(MODEL)
        assert _default_version(server) == "2"
    finally:
        assert stop_server(server) == 0


def test_failed_model_keeps_strict_readiness_false_and_lenient_true(tmp_path, live_repository):
    broken = live_repository.parent / "broken" / "1"
    broken.mkdir(parents=True)
    (broken / "model.joblib").write_bytes(b"\x80\x04 truncated")
    strict = start_server(tmp_path / "strict", live_repository.parent, wait_ready=False)
    lenient = start_server(
        tmp_path / "lenient", live_repository.parent, env={"V2SERVE_READINESS": "lenient"}
    )
    try:
        _wait_for(lambda: _ready_status(strict, f"/v2/models/{MODEL}/ready") == 200, "live ready")
        assert _ready_status(strict, "/v2/health/ready") != 200
        assert _ready_status(lenient, "/v2/health/ready") == 200
        index = {
            (m["name"], m.get("version", "")): m
            for m in make_client("http", strict).get_model_repository_index()
        }
        assert index[("broken", "1")]["state"] == "UNAVAILABLE"
        assert index[("broken", "1")]["reason"]
    finally:
        assert stop_server(strict) == 0
        assert stop_server(lenient) == 0


def _ready_status(server, path: str) -> int:
    try:
        return requests.get(f"{server.base}{path}", timeout=2).status_code
    except requests.RequestException:
        return 0


def test_inference_backend_switched_by_a_new_version_folder(tmp_path, live_repository):
    server = start_server(tmp_path / "server", live_repository.parent)
    try:
        staging = live_repository / ".staging-2"
        write_artifact(ESTIMATORS["2"], staging / "model.joblib")
        settings = {"parameters": {"extra": {"inference_backend": "sklearn"}}}
        (staging / "model-settings.json").write_text(json.dumps(settings))
        os.rename(staging, live_repository / "2")
        _wait_for(lambda: _default_version(server) == "2", "v2 served")
        reasons = {key: entry["reason"] for key, entry in _index(server).items()}
        assert reasons[(MODEL, "1")].startswith("native"), reasons
        assert reasons[(MODEL, "2")].startswith("sklearn"), reasons
        config = make_client("grpc", server).get_model_config(MODEL, "2", as_json=True)["config"]
        assert config["parameters"]["inference_backend"]["string_value"] == "sklearn"
    finally:
        assert stop_server(server) == 0
