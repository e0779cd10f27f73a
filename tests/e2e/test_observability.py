"""Metrics, JSON logs and probes of a real server (docs/observability.md).

Metric values are read from the metrics port and parsed with prometheus_client's parser;
each test compares values before and after its own requests.
"""

import json
import shutil
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass, field

import joblib
import numpy as np
import pytest
import requests
import tritonclient.grpc as grpcclient
import tritonclient.http as httpclient
from prometheus_client.parser import text_string_to_metric_families
from sklearn.datasets import load_iris
from tritonclient.utils import InferenceServerException

from runtimes.examples import EXAMPLES, train_into, write_artifact

from .conftest import ROOT, RunningServer, start_server, stop_server, wait_until_ready
from .slow_estimator import SlowToUnpickle

X = np.ascontiguousarray(load_iris().data[:3], dtype=np.float64)
SLOW_LOAD_SECONDS = 3.0
Samples = dict[tuple[str, tuple[tuple[str, str], ...]], float]


@dataclass
class Observed:
    server: RunningServer
    probes: list[tuple[int, int, bool, bool]] = field(default_factory=list)
    """(REST live, REST ready, gRPC live, gRPC ready) polled while the server started."""


def _status(url: str) -> int:
    try:
        return requests.get(url, timeout=2).status_code
    except requests.RequestException:
        return 0


def _grpc_probe(client: grpcclient.InferenceServerClient) -> tuple[bool, bool]:
    try:
        return client.is_server_live(), client.is_server_ready()
    except InferenceServerException:
        return False, False


@pytest.fixture(scope="module")
def observed(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Observed]:
    repository = tmp_path_factory.mktemp("observed") / "model-repository"
    shutil.copytree(
        ROOT / "model-repository" / "iris",
        repository / "iris",
        ignore=shutil.ignore_patterns("*.joblib"),
    )
    train_into(repository, {"iris": EXAMPLES["iris"]})
    (repository / "dropzone" / "1").mkdir(parents=True)
    shutil.copy(repository / "iris" / "1" / "model.joblib", repository / "dropzone" / "1")
    # Loads slowly: liveness must hold and readiness must wait (strict readiness).
    slow = SlowToUnpickle(
        joblib.load(repository / "iris" / "1" / "model.joblib"), SLOW_LOAD_SECONDS
    )
    write_artifact(slow, repository / "slow" / "1" / "model.joblib")
    server = start_server(
        tmp_path_factory.mktemp("observed-server"),
        repository,
        # debug turns on uvicorn's and MLServer's access logs: health checks must not show.
        settings={"debug": True, "v2serve": {"log_format": "json", "log_requests": True}},
        wait_ready=False,
    )
    result = Observed(server)
    grpc = grpcclient.InferenceServerClient(url=server.grpc_url)
    try:
        deadline = time.monotonic() + 90
        while time.monotonic() < deadline and server.process.poll() is None:
            live = _status(f"{server.base}/v2/health/live")
            ready = _status(f"{server.base}/v2/health/ready")
            result.probes.append((live, ready, *_grpc_probe(grpc)))
            if ready == 200:
                break
            time.sleep(0.1)
        wait_until_ready(server)
        yield result
    finally:
        grpc.close()
        assert stop_server(server) == 0, server.log_text()


def scrape(server: RunningServer) -> Samples:
    text = requests.get(f"http://127.0.0.1:{server.metrics_port}/metrics", timeout=5).text
    return {
        (sample.name, tuple(sorted(sample.labels.items()))): sample.value
        for family in text_string_to_metric_families(text)
        for sample in family.samples
    }


def metric(samples: Samples, name: str, **labels: str) -> float:
    return samples.get((name, tuple(sorted(labels.items()))), 0.0)


def infer(
    protocol: str,
    server: RunningServer,
    model: str = "iris",
    version: str = "",
    data: np.ndarray = X,
    request_id: str | None = None,
    body_id: str = "",
) -> None:
    headers = {"x-request-id": request_id} if request_id else None
    if protocol == "http":
        client = httpclient.InferenceServerClient(url=server.http_url)
        tensor = httpclient.InferInput("input-0", list(data.shape), "FP64")
        tensor.set_data_from_numpy(data, binary_data=False)
    else:
        client = grpcclient.InferenceServerClient(url=server.grpc_url)
        tensor = grpcclient.InferInput("input-0", list(data.shape), "FP64")
        tensor.set_data_from_numpy(data)
    try:
        client.infer(model, [tensor], model_version=version, headers=headers, request_id=body_id)
    finally:
        client.close()


def log_lines(server: RunningServer) -> list[dict]:
    return [json.loads(line) for line in server.log_text().splitlines() if line.strip()]


def test_liveness_holds_while_a_slow_model_loads(observed: Observed) -> None:
    # From the first answer on: the two REST probes are separate requests, so the one just
    # before the listener opened may fail while the next one already answers.
    first_live = next(i for i, p in enumerate(observed.probes) if p[0] == 200)
    loading = [p for p in observed.probes[first_live:] if p[1] not in (0, 200)]
    assert loading, f"never saw the server answer while loading: {observed.probes}"
    assert all(live == 200 for live, _, _, _ in loading), observed.probes
    # gRPC answered at least once while REST said not ready, and then said live, not ready.
    grpc_loading = [p for p in loading if p[2] or p[3]]
    assert grpc_loading, observed.probes
    assert all(p[2] and not p[3] for p in grpc_loading), observed.probes
    samples = scrape(observed.server)
    load_sum = "v2serve_model_load_duration_seconds_sum"
    assert metric(samples, load_sum, model="slow", version="1") >= SLOW_LOAD_SECONDS


@pytest.mark.parametrize("protocol", ["http", "grpc"])
def test_requests_count_under_the_served_version(observed: Observed, protocol: str) -> None:
    server = observed.server
    before = scrape(server)
    for _ in range(3):
        infer(protocol, server)  # unversioned: version 2 answers
    infer(protocol, server, version="1")
    after = scrape(server)

    def delta(name: str, **labels: str) -> float:
        return metric(after, name, **labels) - metric(before, name, **labels)

    v2 = {"model": "iris", "version": "2"}
    v1 = {"model": "iris", "version": "1"}
    assert delta("nv_inference_request_success_total", **v2) == 3
    assert delta("nv_inference_request_success_total", **v1) == 1
    assert delta("nv_inference_count_total", **v2) == 3 * len(X)
    assert delta("nv_inference_exec_count_total", **v2) == 3
    assert delta("nv_inference_request_duration_us_total", **v2) > 0
    assert delta("nv_inference_compute_infer_duration_us_total", **v2) > 0
    assert delta("v2serve_request_duration_seconds_count", **v2) == 3
    assert delta("v2serve_compute_duration_seconds_count", phase="infer", **v2) == 3
    assert delta("v2serve_batch_size_bucket", le="2.0", **v2) == 0
    assert delta("v2serve_batch_size_bucket", le="4.0", **v2) == 3
    assert metric(after, "v2serve_inflight_requests", **v2) == 0
    # MLServer's version label is the requested one; no series says "None".
    assert (
        "nv_inference_request_success_total",
        (("model", "iris"), ("version", "None")),
    ) not in after


@pytest.mark.parametrize("protocol", ["http", "grpc"])
def test_failures_count_with_their_reason(observed: Observed, protocol: str) -> None:
    server = observed.server
    before = scrape(server)
    with pytest.raises(InferenceServerException):
        infer(protocol, server, data=X[:, :3].copy())  # wrong shape
    with pytest.raises(InferenceServerException):
        infer(protocol, server, version="9")  # no such version
    with pytest.raises(InferenceServerException):
        infer(protocol, server, model=f"missing-{uuid.uuid4().hex[:6]}")
    after = scrape(server)
    failures = "nv_inference_request_failure_total"

    def delta(**labels: str) -> float:
        return metric(after, failures, **labels) - metric(before, failures, **labels)

    assert delta(model="iris", version="2", reason="invalid_input") == 1
    assert delta(model="iris", version="", reason="not_found") == 1
    assert delta(model="", version="", reason="not_found") == 1
    success = "nv_inference_request_success_total"
    assert metric(after, success, model="iris", version="2") == metric(
        before, success, model="iris", version="2"
    )


def test_a_corrupt_version_counts_as_a_load_failure(observed: Observed) -> None:
    server = observed.server
    model = server.repository / "dropzone"
    staging = server.repository / ".staging-dropzone-2"
    staging.mkdir()
    (staging / "model.joblib").write_bytes(b"this is not a pickle")
    staging.rename(model / "2")
    try:
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            samples = scrape(server)
            failed = metric(
                samples, "v2serve_model_load_failures_total", model="dropzone", version="2"
            )
            if failed:
                break
            time.sleep(0.2)
        assert failed == 1
        assert metric(samples, "v2serve_model_versions", model="dropzone", state="UNAVAILABLE") == 1
        assert metric(samples, "v2serve_model_versions", model="dropzone", state="READY") == 1
        before = metric(
            samples, "nv_inference_request_success_total", model="dropzone", version="1"
        )
        infer("http", server, model="dropzone")
        after = metric(
            scrape(server), "nv_inference_request_success_total", model="dropzone", version="1"
        )
        assert after == before + 1
    finally:
        shutil.rmtree(model / "2")


@pytest.mark.parametrize("protocol", ["http", "grpc"])
def test_json_log_lines_carry_the_request_id(observed: Observed, protocol: str) -> None:
    server = observed.server
    header_id = f"hdr-{protocol}-{uuid.uuid4().hex}"
    body_id = f"body-{protocol}-{uuid.uuid4().hex}"
    infer(protocol, server, request_id=header_id, body_id="ignored-" + header_id)
    infer(protocol, server, body_id=body_id)
    with pytest.raises(InferenceServerException):
        infer(protocol, server, data=X[:, :3].copy(), request_id=header_id + "-bad")
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline:
        lines = {line.get("request_id"): line for line in log_lines(server)}
        if header_id + "-bad" in lines:
            break
        time.sleep(0.1)
    ok = lines[header_id]
    assert (ok["logger"], ok["level"], ok["message"]) == ("v2serve.requests", "INFO", "inference")
    assert (ok["model"], ok["version"], ok["status"]) == ("iris", "2", 200)
    assert ok["latency_ms"] > 0
    assert ok["batch_size"] == len(X)
    assert lines[body_id]["status"] == 200
    bad = lines[header_id + "-bad"]
    assert (bad["status"], bad["reason"]) == (400, "invalid_input")
    assert "wrong shape" in bad["error"]


def test_every_log_line_is_json_and_health_checks_are_not_logged(observed: Observed) -> None:
    server = observed.server
    for _ in range(3):
        assert requests.get(f"{server.base}/v2/health/ready", timeout=5).status_code == 200
        assert requests.get(f"{server.base}/v2/health/live", timeout=5).status_code == 200
    grpc = grpcclient.InferenceServerClient(url=server.grpc_url)
    assert grpc.is_server_ready() and grpc.is_server_live()
    grpc.close()
    requests.get(f"{server.base}/v2/models/iris", timeout=5)  # a logged route, for contrast
    time.sleep(0.5)  # let the lines reach the file; not a timing assertion
    lines = log_lines(server)  # raises if any line is not JSON
    messages = [str(line.get("message", "")) for line in lines]
    assert any("/v2/models/iris" in m for m in messages), "access log is on under debug"
    assert not [
        m
        for m in messages
        if "/v2/health" in m or "ServerReady" in m or "ServerLive" in m or "grpc.health" in m
    ]
