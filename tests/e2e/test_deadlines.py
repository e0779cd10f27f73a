"""Request deadlines end to end, with real tritonclient HTTP and gRPC clients.

The model (``slow_estimator.GatedClassifier``, batched) logs every call and holds the
requests a test marks until the test releases them. So a request is queued behind a held
one for as long as the test needs, and the log proves whether it ever ran. Nothing here
races the clock: the tests wait for what the server reports (the call log, the in-flight
gauge, counters), and only past a deadline once it is certain to have passed.
"""

import asyncio
import itertools
import os
import socket
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import numpy as np
import orjson
import pytest
import requests
import tritonclient.grpc as grpcclient
import tritonclient.grpc.aio as grpcaio
import tritonclient.http as httpclient
import tritonclient.http.aio as httpaio
from prometheus_client.parser import text_string_to_metric_families
from sklearn.datasets import load_iris
from tritonclient.utils import InferenceServerException

from runtimes.examples import write_artifact
from tests.harness import wait_until

from .conftest import ROOT, RunningServer, start_server, stop_server
from .slow_estimator import HOLD, GatedClassifier

IRIS = load_iris()
TIMEOUT_US = 300_000
"""Triton's ``timeout`` parameter the tests send: 0.3 s."""
DEFAULT_TIMEOUT_MS = 300
"""``default_timeout_ms`` of the model ``gated-default``."""
TAGS = itertools.count(1)


class Gate:
    """The folder ``GatedClassifier`` logs its calls to and waits on."""

    def __init__(self, path: Path):
        self.path = path

    def release(self, *tags: int) -> None:
        for tag in tags:
            (self.path / f"release-{tag}").touch()

    def count(self, event: str, tag: int) -> int:
        calls = self.path / "calls"
        lines = calls.read_text().splitlines() if calls.exists() else []
        return sum(1 for line in lines if line.split()[0] == event and str(tag) in line.split()[1:])

    def started(self, tag: int) -> int:
        return self.count("start", tag)

    def ended(self, tag: int) -> int:
        return self.count("end", tag)


@pytest.fixture(scope="module")
def gate(tmp_path_factory: pytest.TempPathFactory) -> Gate:
    return Gate(tmp_path_factory.mktemp("gate"))


@pytest.fixture(scope="module")
def estimator(gate: Gate) -> GatedClassifier:
    return GatedClassifier(str(gate.path)).fit(IRIS.data, IRIS.target)


@pytest.fixture(scope="module")
def server(
    tmp_path_factory: pytest.TempPathFactory, estimator: GatedClassifier
) -> Iterator[RunningServer]:
    repository = tmp_path_factory.mktemp("deadlines") / "model-repository"
    extra: dict[str, Any] = {"inference_backend": "sklearn", "batching": "on"}
    models = {
        "gated": extra,
        "gated-default": {**extra, "default_timeout_ms": DEFAULT_TIMEOUT_MS},
        # Not batched: each call waits in the model's own one-thread executor queue.
        "gated-thread": {**extra, "batching": "off", "execution": "thread", "execution_threads": 1},
    }
    for name, settings in models.items():
        write_artifact(estimator, repository / name / "1" / "model.joblib")
        (repository / name / "model-settings.json").write_text(
            orjson.dumps({"parameters": {"extra": settings}}).decode()
        )
    env = {"PYTHONPATH": os.pathsep.join([str(ROOT), os.environ.get("PYTHONPATH", "")])}
    running = start_server(
        tmp_path_factory.mktemp("server"), repository, settings={"cache_enabled": True}, env=env
    )
    yield running
    assert stop_server(running) == 0, running.log_text()


def row(tag: int) -> np.ndarray:
    """One iris row whose first feature carries ``tag``; unique, so never a cache hit."""
    features = IRIS.data[tag % len(IRIS.data)].astype(np.float64).copy()
    features[0] = HOLD + tag
    return features.reshape(1, 4)


def poll(condition: Callable[[], bool], what: str, timeout: float = 60) -> None:
    """The harness's polling loop, with the argument order these tests use."""
    wait_until(condition, timeout, what, interval=0.01)


def wait_past(moment: float) -> None:
    """Until ``moment`` (time.monotonic) has passed: a deadline that is certain to be over."""
    poll(lambda: time.monotonic() > moment, "the deadline passing")


def metric(server: RunningServer, name: str, **labels: str) -> float:
    text = requests.get(f"http://{server.http_url.split(':')[0]}:{server.metrics_port}/metrics",
                        timeout=10).text  # fmt: skip
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            if sample.name == name and all(sample.labels.get(k) == v for k, v in labels.items()):
                return float(sample.value)
    return 0.0


def failures(server: RunningServer, model: str, reason: str) -> float:
    return metric(
        server, "nv_inference_request_failure_total", model=model, version="1", reason=reason
    )


def inflight(server: RunningServer, model: str) -> float:
    return metric(server, "v2serve_inflight_requests", model=model, version="1")


def fail_count(server: RunningServer, model: str) -> int:
    stats = requests.get(f"{server.base}/v2/models/{model}/versions/1/stats", timeout=10).json()
    return int(stats["model_stats"][0]["inference_stats"]["fail"]["count"])


async def infer(protocol: str, server: RunningServer, model: str, X: np.ndarray, **kw: Any) -> Any:
    """tritonclient's asyncio client of ``protocol``: the ``predict`` output, or the error."""
    if protocol == "http":
        client: Any = httpaio.InferenceServerClient(url=server.http_url)
        tensor: Any = httpaio.InferInput("input-0", list(X.shape), "FP64")
        tensor.set_data_from_numpy(X, binary_data=False)
    else:
        client = grpcaio.InferenceServerClient(url=server.grpc_url)
        tensor = grpcaio.InferInput("input-0", list(X.shape), "FP64")
        tensor.set_data_from_numpy(X)
    try:
        return (await client.infer(model, [tensor], **kw)).as_numpy("predict")
    except InferenceServerException as exc:
        return exc
    finally:
        await client.close()


def check_timed_out(protocol: str, outcome: Any) -> None:
    assert isinstance(outcome, InferenceServerException), outcome
    expected = "504" if protocol == "http" else "StatusCode.DEADLINE_EXCEEDED"
    assert outcome.status() == expected, outcome
    assert "deadline" in str(outcome.message()), outcome


def queue_behind_held(
    protocol: str, server: RunningServer, gate: Gate, model: str, **queued_kw: Any
) -> tuple[Any, Any, int, int]:
    """Hold one request in the model, queue another behind it with ``queued_kw``, wait
    until the queued one's deadline has passed, then release: both outcomes and tags."""
    held, queued = next(TAGS), next(TAGS)
    timeout_s = queued_kw.pop("seconds")

    async def scenario() -> tuple[Any, Any]:
        first = asyncio.ensure_future(infer(protocol, server, model, row(held)))
        await asyncio.to_thread(poll, lambda: gate.started(held) == 1, "the held request runs")
        failed = fail_count(server, model)
        second = asyncio.ensure_future(infer(protocol, server, model, row(queued), **queued_kw))
        await asyncio.to_thread(
            poll,
            lambda: inflight(server, model) == 2 or fail_count(server, model) > failed,
            "the second request queued (or already dropped)",
        )
        # The server started the queued request's clock before the gauge showed it.
        await asyncio.to_thread(wait_past, time.monotonic() + timeout_s)
        gate.release(held, queued)
        return await first, await second

    first, second = asyncio.run(scenario())
    return first, second, held, queued


@pytest.mark.parametrize("protocol", ["http", "grpc"])
def test_a_request_queued_past_its_timeout_is_dropped_without_running(
    server: RunningServer, gate: Gate, estimator: GatedClassifier, protocol: str
) -> None:
    failed, timeouts = fail_count(server, "gated"), failures(server, "gated", "timeout")
    first, second, held, queued = queue_behind_held(
        protocol, server, gate, "gated", timeout=TIMEOUT_US, seconds=TIMEOUT_US / 1e6
    )
    np.testing.assert_array_equal(first, estimator.inner_.predict(row(held)))
    check_timed_out(protocol, second)
    assert gate.started(queued) == 0
    assert fail_count(server, "gated") == failed + 1
    assert failures(server, "gated", "timeout") == timeouts + 1


def test_a_grpc_deadline_drops_a_queued_request(server: RunningServer, gate: Gate) -> None:
    """tritonclient's ``client_timeout`` is the gRPC deadline: the client gives up at it
    (DEADLINE_EXCEEDED), and the server drops the request instead of running it."""
    timeouts = failures(server, "gated", "timeout")
    held, queued = next(TAGS), next(TAGS)

    async def scenario() -> Any:
        first = asyncio.ensure_future(infer("grpc", server, "gated", row(held)))
        await asyncio.to_thread(poll, lambda: gate.started(held) == 1, "the held request runs")
        second = await infer("grpc", server, "gated", row(queued), client_timeout=1.0)
        gate.release(held, queued)
        await first
        return second

    outcome = asyncio.run(scenario())
    assert isinstance(outcome, InferenceServerException)
    assert outcome.status() == "StatusCode.DEADLINE_EXCEEDED"
    poll(lambda: failures(server, "gated", "timeout") == timeouts + 1, "the timeout counted")
    assert gate.ended(held) == 1 and gate.started(queued) == 0


def queue_timeouts(server: RunningServer, model: str) -> int:
    """``execution_queue_timeouts`` in the model's configuration (runtimes.execution)."""
    config = requests.get(f"{server.base}/v2/models/{model}/config", timeout=10).json()
    return int(config["parameters"]["execution_queue_timeouts"]["string_value"])


@pytest.mark.parametrize("protocol", ["http", "grpc"])
def test_a_call_queued_in_the_models_executor_past_its_timeout_is_dropped_without_running(
    server: RunningServer, gate: Gate, estimator: GatedClassifier, protocol: str
) -> None:
    """No batcher: the second call waits for the model's only thread, and is dropped
    when the thread takes it, its deadline over (issue 16: the executor queue)."""
    model = "gated-thread"
    failed, timeouts = fail_count(server, model), failures(server, model, "timeout")
    dropped = queue_timeouts(server, model)
    first, second, held, queued = queue_behind_held(
        protocol, server, gate, model, timeout=TIMEOUT_US, seconds=TIMEOUT_US / 1e6
    )
    np.testing.assert_array_equal(first, estimator.inner_.predict(row(held)))
    check_timed_out(protocol, second)
    assert "executor queue" in str(second.message()), second
    assert gate.started(queued) == 0
    assert fail_count(server, model) == failed + 1
    assert failures(server, model, "timeout") == timeouts + 1
    assert queue_timeouts(server, model) == dropped + 1


@pytest.mark.parametrize("protocol", ["http", "grpc"])
def test_the_model_default_timeout_drops_a_queued_request(
    server: RunningServer, gate: Gate, protocol: str
) -> None:
    failed = fail_count(server, "gated-default")
    first, second, held, queued = queue_behind_held(
        protocol, server, gate, "gated-default", seconds=DEFAULT_TIMEOUT_MS / 1000
    )
    # The held request ran past the default deadline too, and completes.
    assert isinstance(first, np.ndarray), first
    check_timed_out(protocol, second)
    assert gate.started(queued) == 0
    assert fail_count(server, "gated-default") == failed + 1
    assert failures(server, "gated-default", "timeout") >= 1


@pytest.mark.parametrize("protocol", ["http", "grpc"])
def test_a_running_request_completes_past_its_timeout_and_is_cached(
    server: RunningServer, gate: Gate, estimator: GatedClassifier, protocol: str
) -> None:
    tag = next(TAGS)

    async def scenario() -> Any:
        sent = time.monotonic()
        call = asyncio.ensure_future(infer(protocol, server, "gated", row(tag), timeout=TIMEOUT_US))
        await asyncio.to_thread(poll, lambda: gate.started(tag) == 1, "the request runs")
        await asyncio.to_thread(wait_past, sent + TIMEOUT_US / 1e6)
        gate.release(tag)
        return await call

    answer = asyncio.run(scenario())
    np.testing.assert_array_equal(answer, estimator.inner_.predict(row(tag)))
    # Its caller waited for the answer, so it was cached: asked again, the model is not called.
    again = asyncio.run(infer(protocol, server, "gated", row(tag)))
    np.testing.assert_array_equal(again, answer)
    assert gate.started(tag) == 1


def _grpc_inputs(X: np.ndarray) -> list[Any]:
    tensor = grpcclient.InferInput("input-0", list(X.shape), "FP64")
    tensor.set_data_from_numpy(X)
    return [tensor]


def test_a_cancelled_grpc_call_is_not_run_if_queued_and_not_cached_if_running(
    server: RunningServer, gate: Gate
) -> None:
    running, queued = next(TAGS), next(TAGS)
    cancelled = failures(server, "gated", "cancelled")
    client = grpcclient.InferenceServerClient(url=server.grpc_url)
    try:
        answers: list[Any] = []
        calls = [
            client.async_infer("gated", _grpc_inputs(row(running)), lambda *a: answers.append(a))
        ]
        poll(lambda: gate.started(running) == 1, "the first request runs")
        calls.append(
            client.async_infer("gated", _grpc_inputs(row(queued)), lambda *a: answers.append(a))
        )
        poll(lambda: inflight(server, "gated") == 2, "the second request queued")
        for call in calls:
            call.cancel()
        poll(lambda: failures(server, "gated", "cancelled") == cancelled + 2, "both cancelled")
        gate.release(running, queued)
        poll(lambda: gate.ended(running) == 1, "the running request completes")
        # Its caller had gone, so its answer was not cached: the model is called again.
        again = client.infer("gated", _grpc_inputs(row(running)))
        assert again.as_numpy("predict").shape == (1,)
        assert gate.started(running) == 2
        assert gate.started(queued) == 0
    finally:
        client.close()


def _post_and_leave_open(
    server: RunningServer, X: np.ndarray, model: str = "gated"
) -> socket.socket:
    body = orjson.dumps({"inputs": [{"name": "input-0", "shape": [1, 4], "datatype": "FP64",
                                     "data": X.ravel().tolist()}]})  # fmt: skip
    sock = socket.create_connection((server.http_url.split(":")[0], server.http_port), timeout=30)
    sock.sendall(
        f"POST /v2/models/{model}/infer HTTP/1.1\r\nHost: test\r\n".encode()
        + b"Content-Type: application/json\r\nContent-Length: %d\r\n\r\n%s" % (len(body), body)
    )
    return sock


def test_a_closed_rest_connection_is_not_run_if_queued_and_not_cached_if_running(
    server: RunningServer, gate: Gate
) -> None:
    running, queued = next(TAGS), next(TAGS)
    cancelled = failures(server, "gated", "cancelled")
    first = _post_and_leave_open(server, row(running))
    poll(lambda: gate.started(running) == 1, "the first request runs")
    second = _post_and_leave_open(server, row(queued))
    poll(lambda: inflight(server, "gated") == 2, "the second request queued")
    first.close()
    second.close()
    # Both end-of-streams reached the server before this request did, and its event loop
    # handles them before it can answer this one.
    assert requests.get(f"{server.base}/v2/health/live", timeout=10).status_code == 200
    gate.release(running, queued)
    poll(lambda: gate.ended(running) == 1, "the running request completes")
    poll(lambda: inflight(server, "gated") == 0, "both requests finished")
    assert failures(server, "gated", "cancelled") == cancelled + 1  # the queued one
    client = httpclient.InferenceServerClient(url=server.http_url)
    try:
        tensor = httpclient.InferInput("input-0", [1, 4], "FP64")
        tensor.set_data_from_numpy(row(running), binary_data=False)
        assert client.infer("gated", [tensor]).as_numpy("predict").shape == (1,)
    finally:
        client.close()
    assert gate.started(running) == 2, "the answer of a closed connection was cached"
    assert gate.started(queued) == 0


def test_a_closed_rest_connection_queued_in_the_models_executor_is_not_run(
    server: RunningServer, gate: Gate
) -> None:
    """No batcher: the queued call waits for the model's only thread; when the thread
    takes it, the event loop's probe finds its connection closed (499, never run)."""
    model = "gated-thread"
    running, queued = next(TAGS), next(TAGS)
    cancelled = failures(server, model, "cancelled")
    first = _post_and_leave_open(server, row(running), model)
    poll(lambda: gate.started(running) == 1, "the first request runs")
    second = _post_and_leave_open(server, row(queued), model)
    poll(lambda: inflight(server, model) == 2, "the second request queued")
    second.close()
    # The end-of-stream reached the server before this request did.
    assert requests.get(f"{server.base}/v2/health/live", timeout=10).status_code == 200
    gate.release(running, queued)
    poll(lambda: gate.ended(running) == 1, "the running request completes")
    poll(lambda: inflight(server, model) == 0, "both requests finished")
    first.close()
    assert failures(server, model, "cancelled") == cancelled + 1
    assert gate.started(queued) == 0


@pytest.mark.parametrize(
    "value", [-1, 1.5, "100", True], ids=["negative", "float", "string", "bool"]
)
def test_a_bad_timeout_parameter_is_a_400_naming_it(server: RunningServer, value: Any) -> None:
    body = {"parameters": {"timeout": value},
            "inputs": [{"name": "input-0", "shape": [1, 4], "datatype": "FP64",
                        "data": IRIS.data[0].tolist()}]}  # fmt: skip
    response = requests.post(f"{server.base}/v2/models/gated/infer", json=body, timeout=30)
    assert response.status_code == 400, response.text
    assert "'timeout'" in response.json()["error"]


def test_a_negative_grpc_timeout_is_invalid_argument(server: RunningServer) -> None:
    client = grpcclient.InferenceServerClient(url=server.grpc_url)
    try:
        with pytest.raises(InferenceServerException) as raised:
            client.infer("gated", _grpc_inputs(IRIS.data[:1].astype(np.float64)), timeout=-5)
    finally:
        client.close()
    assert raised.value.status() == "StatusCode.INVALID_ARGUMENT"
    assert "'timeout'" in str(raised.value.message())
