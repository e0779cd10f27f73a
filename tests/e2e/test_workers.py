"""With parallel-inference workers on (MLSERVER_PARALLEL_WORKERS=1): the in-flight bound
(429 / RESOURCE_EXHAUSTED), a version folder deleted with requests in flight, and a killed
worker. A slow estimator holds requests in flight in the worker process.
"""

import json
import os
import shutil
import signal
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
import requests
import tritonclient.grpc as grpcclient
from tritonclient.utils import InferenceServerException

from runtimes.examples import write_artifact
from tests.faulty import SLOW_SETTINGS, Slow, iris_fitted

from .conftest import RunningServer, start_server, stop_server
from .reliability import IRIS, PYTHONPATH, rest_infer, wait_for

LIMIT = 2
SLOW = iris_fitted(Slow(seconds=1.0))
ROWS = IRIS[:2]


@pytest.fixture(scope="module")
def workers(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RunningServer]:
    root = tmp_path_factory.mktemp("workers")
    repo = root / "repo"
    for name, versions in (("slow", ["1"]), ("slow-drop", ["1", "2"])):
        for version in versions:
            write_artifact(SLOW, repo / name / version / "model.joblib")
        settings = {"parameters": {"extra": SLOW_SETTINGS}}
        (repo / name / "model-settings.json").write_text(json.dumps(settings))
    env = {
        **PYTHONPATH,
        "MLSERVER_PARALLEL_WORKERS": "1",
        "V2SERVE_MAX_INFLIGHT_PER_MODEL": str(LIMIT),
    }
    server = start_server(root / "server", repo, env=env)
    yield server
    assert stop_server(server) == 0, server.log_text()


def _burst(count: int, call) -> list:
    """``count`` calls released together; each result or exception in order."""
    barrier = threading.Barrier(count)
    results: list = [None] * count

    def run(i: int) -> None:
        barrier.wait()
        try:
            results[i] = call()
        except Exception as exc:  # noqa: BLE001 - the caller inspects every outcome
            results[i] = exc

    threads = [threading.Thread(target=run, args=(i,)) for i in range(count)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=60)
    return results


def test_past_the_bound_rest_gets_429_with_retry_after_at_once(workers):
    answers = _burst(8, lambda: rest_infer(workers.base, "slow", ROWS))
    codes = sorted(a.status_code for a in answers)
    assert set(codes) == {200, 429}, codes
    assert codes.count(200) >= 1 and codes.count(429) >= 8 - 2 * LIMIT, codes
    refused = next(a for a in answers if a.status_code == 429)
    assert refused.headers["retry-after"] == "1"
    assert f"has {LIMIT} requests in flight" in refused.json()["error"]
    assert rest_infer(workers.base, "slow", ROWS).status_code == 200


def test_past_the_bound_grpc_gets_resource_exhausted(workers):
    def call():
        client = grpcclient.InferenceServerClient(url=workers.grpc_url)
        tensor = grpcclient.InferInput("input-0", list(ROWS.shape), "FP64")
        tensor.set_data_from_numpy(ROWS)
        return client.infer("slow", [tensor])

    outcomes = _burst(8, call)
    errors = [o for o in outcomes if isinstance(o, Exception)]
    assert errors and len(errors) < 8, outcomes
    for error in errors:
        assert isinstance(error, InferenceServerException), error
        assert error.status() == "StatusCode.RESOURCE_EXHAUSTED"


class InFlight:
    """LIMIT requests held in flight on ``model``, proven by a probe that the bound refuses."""

    def __init__(self, server: RunningServer, model: str):
        self.server, self.model = server, model
        self.answers: list[requests.Response] = []
        self.threads: list[threading.Thread] = []

    def __enter__(self) -> "InFlight":
        for attempt in range(5):
            self.threads = [threading.Thread(target=self._call, daemon=True) for _ in range(LIMIT)]
            for thread in self.threads:
                thread.start()
            time.sleep(0.3 * (attempt + 1))  # let them reach the server first; checked below
            probe = rest_infer(self.server.base, self.model, ROWS)
            if probe.status_code == 429:
                return self
            self.join()  # the probe was admitted before them: try again
            self.answers.clear()
        raise AssertionError("could not hold requests in flight")

    def _call(self) -> None:
        self.answers.append(rest_infer(self.server.base, self.model, ROWS))

    def join(self) -> list[requests.Response]:
        for thread in self.threads:
            thread.join(timeout=60)
        return self.answers

    def __exit__(self, *exc: object) -> None:
        self.join()


def test_a_version_folder_deleted_with_requests_in_flight(workers):
    model_dir = workers.repository / "slow-drop"
    assert rest_infer(workers.base, "slow-drop", ROWS).json()["model_version"] == "2"
    with InFlight(workers, "slow-drop") as held:
        shutil.rmtree(model_dir / "2")
    answers = held.join()
    assert [a.status_code for a in answers] == [200] * LIMIT, [a.text for a in answers]
    assert {a.json()["model_version"] for a in answers} == {"2"}
    wait_for(
        lambda: rest_infer(workers.base, "slow-drop", ROWS).json()["model_version"] == "1",
        "version 1 serving after version 2 was deleted",
    )


def _worker_pids(server: RunningServer) -> list[int]:
    found = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            stat = (entry / "stat").read_text().rsplit(")", 1)[1].split()
            cmdline = (entry / "cmdline").read_bytes()
        except OSError:
            continue
        if int(stat[1]) == server.process.pid and b"spawn_main" in cmdline:
            found.append(int(entry.name))
    return found


def test_a_killed_worker_fails_its_requests_clearly_and_is_replaced(workers):
    [worker] = _worker_pids(workers)
    with InFlight(workers, "slow") as held:
        os.kill(worker, signal.SIGKILL)
    for killed in held.join():
        assert killed.status_code == 503, killed.text
        assert "parallel-inference worker stopped during the request" in killed.json()["error"]

    seen: list[tuple[int, str]] = []

    def recovered() -> bool:
        answer = rest_infer(workers.base, "slow", ROWS)
        seen.append((answer.status_code, answer.text))
        return answer.status_code == 200

    wait_for(recovered, "a new worker serving", 60)
    for status, text in seen[:-1]:
        assert status == 503 and "parallel-inference worker" in text, (status, text)
    assert [pid for pid in _worker_pids(workers) if pid != worker]
    assert requests.get(f"{workers.base}/v2/health/ready", timeout=5).status_code == 200
