"""SIGTERM under steady REST and gRPC traffic: nothing that started before it fails.

The model sleeps in ``predict`` (``slow_estimator.SlowClassifier``), so requests are in
flight when the listeners close. With ``shutdown_delay`` the server keeps serving, with
readiness false, before it closes them; requests that reach a closed listener afterwards
may be refused (that is what readiness told the load balancer), but none may get an
error answer.
"""

import os
import signal
import threading
import time
from dataclasses import dataclass

import numpy as np
import pytest
import requests
import tritonclient.grpc as grpcclient
from sklearn.datasets import load_iris
from tritonclient.utils import InferenceServerException

from runtimes.examples import write_artifact

from .conftest import ROOT, RunningServer, start_server
from .slow_estimator import SlowClassifier

X = np.ascontiguousarray(load_iris().data[:2], dtype=np.float64)
BODY = {"inputs": [{"name": "input-0", "shape": list(X.shape), "datatype": "FP64",
                   "data": X.ravel().tolist()}]}  # fmt: skip
DELAY = 1.0


@dataclass
class Call:
    protocol: str
    started: float
    ended: float
    outcome: str  # "ok", "refused" (no answer: connection refused/closed), or the error


class Traffic:
    def __init__(self, server: RunningServer, per_protocol: int = 2):
        self.server = server
        self.stop = threading.Event()
        self.calls: list[Call] = []
        self.lock = threading.Lock()
        self.threads = [
            threading.Thread(target=target, daemon=True)
            for target in (self._rest, self._grpc)
            for _ in range(per_protocol)
        ]

    def _record(self, protocol: str, started: float, outcome: str) -> None:
        with self.lock:
            self.calls.append(Call(protocol, started, time.monotonic(), outcome))

    def _rest(self) -> None:
        session = requests.Session()
        url = f"{self.server.base}/v2/models/slow/infer"
        deadline = time.monotonic() + 60
        while not self.stop.is_set() and time.monotonic() < deadline:
            started = time.monotonic()
            try:
                response = session.post(url, json=BODY, timeout=30)
            except requests.ConnectionError:
                self._record("http", started, "refused")
                time.sleep(0.05)
                continue
            outcome = "ok" if response.status_code == 200 else f"{response.status_code}"
            self._record("http", started, outcome)

    def _grpc(self) -> None:
        client = grpcclient.InferenceServerClient(url=self.server.grpc_url)
        deadline = time.monotonic() + 60
        while not self.stop.is_set() and time.monotonic() < deadline:
            tensor = grpcclient.InferInput("input-0", list(X.shape), "FP64")
            tensor.set_data_from_numpy(X)
            started = time.monotonic()
            try:
                client.infer("slow", [tensor], client_timeout=30)
            except InferenceServerException as exc:
                # UNAVAILABLE: no listener. CANCELLED: gRPC's answer to a call that
                # arrives on an open connection once the server has begun to stop.
                refused = exc.status() in ("StatusCode.UNAVAILABLE", "StatusCode.CANCELLED")
                self._record("grpc", started, "refused" if refused else str(exc))
                time.sleep(0.05)
                continue
            self._record("grpc", started, "ok")
        client.close()


@pytest.fixture(params=[0.0, DELAY], ids=["no-delay", "delay"])
def slow_server(tmp_path, request):
    repository = tmp_path / "model-repository"
    data = load_iris()
    estimator = SlowClassifier(delay=0.05).fit(data.data, data.target)
    write_artifact(estimator, repository / "slow" / "1" / "model.joblib")
    (repository / "slow" / "model-settings.json").write_text(
        '{"parameters": {"extra": {"inference_backend": "sklearn"}}}'
    )
    env = {"PYTHONPATH": os.pathsep.join([str(ROOT), os.environ.get("PYTHONPATH", "")])}
    settings = {"v2serve": {"shutdown_delay": request.param, "shutdown_grace": 20}}
    server = start_server(tmp_path / "server", repository, settings=settings, env=env)
    yield server, request.param
    if server.process.poll() is None:
        server.process.kill()
        server.process.wait()


def _probe_readiness(server: RunningServer) -> tuple[int, bool, bool]:
    ready = requests.get(f"{server.base}/v2/health/ready", timeout=5).status_code
    grpc = grpcclient.InferenceServerClient(url=server.grpc_url)
    try:
        return ready, grpc.is_server_ready(), grpc.is_server_live()
    finally:
        grpc.close()


def test_sigterm_under_load_fails_nothing_in_flight(
    slow_server: tuple[RunningServer, float],
) -> None:
    server, delay = slow_server
    traffic = Traffic(server)
    for thread in traffic.threads:
        thread.start()
    try:
        while sum(c.outcome == "ok" for c in list(traffic.calls)) < 20:
            assert server.process.poll() is None, server.log_text()
            time.sleep(0.05)
        sent = time.monotonic()
        server.process.send_signal(signal.SIGTERM)
        if delay:
            # Within the delay: readiness false over both protocols, still live.
            ready, grpc_ready, grpc_live = _probe_readiness(server)
            assert ready != 200 and not grpc_ready and grpc_live
        assert server.process.wait(timeout=60) == 0, server.log_text()
        exited = time.monotonic()
    finally:
        traffic.stop.set()
        for thread in traffic.threads:
            thread.join(timeout=60)

    before = [c for c in traffic.calls if c.started < sent]
    after = [c for c in traffic.calls if c.started >= sent]
    assert before and all(c.outcome == "ok" for c in before), [
        (c, c.started - sent, c.ended - sent) for c in before if c.outcome != "ok"
    ]
    # Requests that came after SIGTERM were served or refused, never answered with an error.
    assert all(c.outcome in ("ok", "refused") for c in after), [
        (c, c.started - sent, c.ended - sent, exited - sent)
        for c in after
        if c.outcome not in ("ok", "refused")
    ]
    if delay:
        served_after = {c.protocol for c in after if c.outcome == "ok"}
        assert served_after == {"http", "grpc"}, after
    log = server.log_text()
    assert "stopping: readiness is false" in log
    assert "Traceback" not in log, log
