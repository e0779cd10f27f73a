"""One model's slow work never stalls another model's requests (issue 18).

A light model (iris, served compiled) answers one-row requests, one at a time, while a
heavy request runs on another model: a ``predict`` that sleeps 2 s, 100,000 rows to a
forest served by sklearn, a 40 MB JSON body, a 40 MB gRPC message. The light model's
latencies are taken only while the heavy request is in flight, and its p99 must stay
under the issue's bound: 50 ms, and 100 ms for the 40 MB body and message. These are
bounds on how long one request can hold the others up (before issue 18 each was the
heavy request's whole duration, seconds), not measurements of speed; each test prints
the p99 it saw.
"""

import json
import multiprocessing
import os
import threading
import time
from collections.abc import Callable, Iterator
from typing import Any

import numpy as np
import orjson
import pytest
import requests
import tritonclient.grpc as grpcclient
import tritonclient.http as httpclient
from sklearn.datasets import load_breast_cancer, load_iris
from sklearn.ensemble import RandomForestClassifier
from sklearn.linear_model import LogisticRegression

from runtimes.examples import write_artifact

from .clients import infer, make_client
from .conftest import ROOT, RunningServer, start_server, stop_server
from .slow_estimator import SlowClassifier

SLEEP = 2.0
HEAVY_ROWS = 100_000
WARM_UP = 50
MIN_SAMPLES = 30
SLOW_SETTINGS = {"parameters": {"extra": {"inference_backend": "sklearn", "batching": "off"}}}


@pytest.fixture(scope="module")
def isolated(
    tmp_path_factory: pytest.TempPathFactory,
) -> Iterator[tuple[RunningServer, dict[str, Any]]]:
    """Three models: one that sleeps, a light one, a forest; with the fitted estimators."""
    root = tmp_path_factory.mktemp("isolation")
    repository = root / "model-repository"
    iris, cancer = load_iris(), load_breast_cancer()
    slow = SlowClassifier(delay=SLEEP).fit(iris.data, iris.target)
    write_artifact(slow, repository / "slow" / "1" / "model.joblib")
    (repository / "slow" / "model-settings.json").write_text(json.dumps(SLOW_SETTINGS))
    light = LogisticRegression(max_iter=1000).fit(iris.data, iris.target)
    write_artifact(light, repository / "light" / "1" / "model.joblib")
    forest = RandomForestClassifier(n_estimators=50, random_state=0)
    forest.fit(cancer.data, cancer.target)
    write_artifact(forest, repository / "forest" / "1" / "model.joblib")
    (repository / "forest" / "model-settings.json").write_text(json.dumps(SLOW_SETTINGS))
    env = {"PYTHONPATH": os.pathsep.join([str(ROOT), os.environ.get("PYTHONPATH", "")])}
    server = start_server(root / "server", repository, env=env)
    try:
        yield server, {"slow": slow.inner_, "light": light, "forest": forest}
    finally:
        stop_server(server)


class LightProbe:
    """One-row requests to the light model, one at a time, over one protocol."""

    def __init__(self, server: RunningServer, protocol: str, estimator: Any):
        self.protocol = protocol
        module = httpclient if protocol == "http" else grpcclient
        self.client = make_client(protocol, server)
        row = np.array([[5.1, 3.5, 1.4, 0.2]])
        self.expected = estimator.predict(row).tolist()
        self.tensor = module.InferInput("input-0", list(row.shape), "FP64")
        if protocol == "http":
            self.tensor.set_data_from_numpy(row, binary_data=False)
        else:
            self.tensor.set_data_from_numpy(row)

    def once(self) -> float:
        started = time.perf_counter()
        result = self.client.infer("light", [self.tensor])
        elapsed = time.perf_counter() - started
        assert result.as_numpy("predict").tolist() == self.expected
        return elapsed

    def while_running(
        self, heavy: Callable[[], Any], timeout: float = 180, wait_for: Any = None
    ) -> list[float]:
        """Latencies of requests sent while ``heavy`` runs in another thread (from when
        ``wait_for`` is set, if given: the heavy request is on its way)."""
        for _ in range(WARM_UP):
            self.once()
        outcome: list[Any] = []
        thread = threading.Thread(target=lambda: outcome.append(_capture(heavy)))
        latencies: list[float] = []
        thread.start()
        deadline = time.monotonic() + timeout
        if wait_for is not None:
            assert wait_for.wait(timeout=timeout), "the heavy request was never sent"
        while thread.is_alive() and time.monotonic() < deadline:
            latencies.append(self.once())
        thread.join(timeout=max(1.0, deadline - time.monotonic()))
        assert not thread.is_alive(), "the heavy request did not finish"
        if isinstance(outcome[0], BaseException):
            raise outcome[0]
        return latencies

    def close(self) -> None:
        self.client.close()


def _latencies_during(
    server: Any, protocol: str, light: Any, heavy: Callable[[], Any], wait_for: Any = None
) -> list[float]:
    """The light model's latencies over ``protocol`` while ``heavy`` runs."""
    probe = LightProbe(server, protocol, light)
    try:
        return probe.while_running(heavy, wait_for=wait_for)
    finally:
        probe.close()


def _run_child(child: Any, answers: Any) -> tuple[Callable[[], None], list[Any]]:
    """A heavy call that runs ``child`` (a big request from its own process) and the list
    that gets what it answered."""
    answer: list[Any] = []

    def heavy() -> None:
        child.start()
        answer.append(answers.get(timeout=300))
        child.join(timeout=60)

    return heavy, answer


def _capture(call: Callable[[], Any]) -> Any:
    try:
        return call()
    except BaseException as exc:  # noqa: BLE001 - re-raised in the test's thread
        return exc


def _p99(latencies: list[float]) -> float:
    return float(np.percentile(latencies, 99))


def _report(case: str, latencies: list[float]) -> float:
    p99 = _p99(latencies)
    print(
        f"\nisolation {case}: light p99 {p99 * 1000:.1f} ms, max {max(latencies) * 1000:.1f} ms, "
        f"median {np.median(latencies) * 1000:.1f} ms over {len(latencies)} requests"
    )
    return p99


def _slow_calls(
    server: RunningServer, protocol: str, calls: int, estimator: Any
) -> Callable[[], None]:
    """``calls`` concurrent one-row requests to the model that sleeps: more than its
    threads, so one waits in its queue."""
    row = np.array([[6.7, 3.0, 5.2, 2.3]])
    expected = estimator.predict(row).tolist()

    def one() -> None:
        client = make_client(protocol, server, network_timeout=120)
        try:
            answer = infer(protocol, client, "slow", {"input-0": row})
            assert answer.as_numpy("predict").tolist() == expected
        finally:
            client.close()

    def run() -> None:
        errors: list[Any] = []
        threads = [
            threading.Thread(target=lambda: errors.append(_capture(one))) for _ in range(calls)
        ]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join(timeout=120)
        failures = [e for e in errors if isinstance(e, BaseException)]
        if failures:
            raise failures[0]

    return run


def _metric(server: RunningServer, name: str, model: str) -> float:
    text = requests.get(f"http://127.0.0.1:{server.metrics_port}/metrics", timeout=10).text
    total = 0.0
    for line in text.splitlines():
        if line.startswith(name) and f'model="{model}"' in line:
            total += float(line.rsplit(" ", 1)[1])
    return total


@pytest.mark.parametrize("protocol", ["http", "grpc"])
def test_a_sleeping_predict_does_not_hold_up_another_model(isolated, protocol):
    server, estimators = isolated
    started = time.monotonic()
    heavy = _slow_calls(server, protocol, 3, estimators["slow"])
    latencies = _latencies_during(server, protocol, estimators["light"], heavy)
    # Three calls of 2 s on two threads: the third waited for one.
    p99 = _report(f"(a) sleeping predict, {protocol}", latencies)
    assert time.monotonic() - started >= 2 * SLEEP
    assert len(latencies) >= MIN_SAMPLES, latencies
    assert p99 < 0.050
    assert _metric(server, "v2serve_executor_calls_total", "slow") >= 3
    assert _metric(server, "v2serve_executor_queue_seconds_count", "slow") >= 3


def _forest_request(protocol: str, url: str, sent: Any, answers: Any) -> None:
    """In a child process: the client's own copies of 24 MB must not count as the server's."""
    rows = np.tile(load_breast_cancer().data, (HEAVY_ROWS // 569 + 1, 1))[:HEAVY_ROWS]
    module: Any = httpclient if protocol == "http" else grpcclient
    options = {"network_timeout": 300} if protocol == "http" else {}
    client = module.InferenceServerClient(url=url, **options)
    tensor = module.InferInput("input-0", list(rows.shape), "FP64")
    tensor.set_data_from_numpy(rows)
    sent.set()
    try:
        answers.put(client.infer("forest", [tensor]).as_numpy("predict"))
    finally:
        client.close()


@pytest.mark.parametrize("protocol", ["http", "grpc"])
def test_a_large_request_to_a_forest_does_not_hold_up_another_model(isolated, protocol):
    server, estimators = isolated
    context = multiprocessing.get_context("spawn")
    sent, answers = context.Event(), context.Queue()
    url = server.http_url if protocol == "http" else server.grpc_url
    child = context.Process(target=_forest_request, args=(protocol, url, sent, answers))
    heavy, answer = _run_child(child, answers)
    latencies = _latencies_during(server, protocol, estimators["light"], heavy, wait_for=sent)
    p99 = _report(f"(b) {HEAVY_ROWS} rows to a forest on sklearn, {protocol}", latencies)
    assert child.exitcode == 0
    assert len(latencies) >= MIN_SAMPLES, latencies
    rows = np.tile(load_breast_cancer().data, (HEAVY_ROWS // 569 + 1, 1))[:HEAVY_ROWS]
    np.testing.assert_array_equal(answer[0], estimators["forest"].predict(rows))
    # Measured p99 5-8 ms on a loaded 2-core machine (before issue 18: the whole predict,
    # seconds); the forest's thread gives the interpreter lock up every 5 ms.
    assert p99 < 0.050


def test_a_40_mb_json_body_does_not_hold_up_another_model(isolated):
    server, estimators = isolated
    iris = load_iris().data
    rows = np.tile(iris, (40_000_000 // (iris.shape[0] * 4 * 17) + 1, 1))
    rows = rows + np.random.default_rng(0).random(rows.shape) / 7  # long decimals
    document = {"inputs": [{"name": "input-0", "shape": list(rows.shape), "datatype": "FP64",
                            "data": rows.tolist()}]}  # fmt: skip
    body = orjson.dumps(document)
    assert len(body) >= 40_000_000
    headers = {"Content-Type": "application/json"}
    # The first large body starts the JSON helper process; not the case measured here.
    small = orjson.dumps({"inputs": [{**document["inputs"][0], "shape": [20_000, 4],
                                      "data": rows[:20_000].tolist()}]})  # fmt: skip
    url = f"{server.base}/v2/models/light/infer"
    warm = requests.post(url, data=small, headers=headers, timeout=120)
    assert warm.status_code == 200, warm.text
    answers: list[requests.Response] = []

    def heavy() -> None:
        url = f"{server.base}/v2/models/slow/infer"
        answers.append(requests.post(url, data=body, headers=headers, timeout=300))

    latencies = _latencies_during(server, "http", estimators["light"], heavy)
    p99 = _report("(c) 40 MB JSON body to the sleeping model, http", latencies)
    assert answers[0].status_code == 200, answers[0].text[:500]
    assert len(latencies) >= MIN_SAMPLES, latencies
    served = answers[0].json()["outputs"][0]
    assert served["shape"][0] == rows.shape[0]
    np.testing.assert_array_equal(served["data"], estimators["slow"].predict(rows))
    assert p99 < 0.100


def _big_message_rows() -> np.ndarray:
    iris = load_iris().data
    return np.tile(iris, (40_000_000 // (iris.shape[0] * 4 * 8) + 1, 1))


def _big_grpc_request(url: str, contents: str, sent: Any, answers: Any) -> None:
    """In a child process (serializing 40 MB holds the client's interpreter): one
    ModelInfer with the rows as ``contents``, sent as Triton's own protobuf messages."""
    import grpc
    from tritonclient.grpc import service_pb2, service_pb2_grpc

    rows = _big_message_rows()
    request = service_pb2.ModelInferRequest(model_name="slow")
    tensor = request.inputs.add(name="input-0", datatype="FP64", shape=list(rows.shape))
    if contents == "raw_input_contents":
        request.raw_input_contents.append(rows.astype("<f8").tobytes())
    else:
        tensor.contents.fp64_contents.extend(rows.ravel())
    wire_size = request.ByteSize()
    options = [("grpc.max_receive_message_length", -1), ("grpc.max_send_message_length", -1)]
    with grpc.insecure_channel(url, options=options) as channel:
        sent.set()
        reply = service_pb2_grpc.GRPCInferenceServiceStub(channel).ModelInfer(
            request, timeout=300
        )
    predicted = np.frombuffer(reply.raw_output_contents[0], dtype="<i8")
    answers.put((wire_size, predicted))


@pytest.mark.parametrize("contents", ["raw_input_contents", "fp64_contents"])
def test_a_40_mb_grpc_message_does_not_hold_up_another_model(isolated, contents):
    """Parsed by protobuf on the event loop, 30-75 ms of 40 MB held every model."""
    server, estimators = isolated
    context = multiprocessing.get_context("spawn")
    sent, answers = context.Event(), context.Queue()
    child = context.Process(
        target=_big_grpc_request, args=(server.grpc_url, contents, sent, answers)
    )
    heavy, answer = _run_child(child, answers)
    latencies = _latencies_during(server, "grpc", estimators["light"], heavy, wait_for=sent)
    p99 = _report(f"(d) 40 MB gRPC message ({contents}) to the sleeping model, grpc", latencies)
    assert child.exitcode == 0
    wire_size, predicted = answer[0]
    assert wire_size >= 40_000_000
    assert len(latencies) >= MIN_SAMPLES, latencies
    np.testing.assert_array_equal(predicted, estimators["slow"].predict(_big_message_rows()))
    assert p99 < 0.100
