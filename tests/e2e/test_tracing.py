"""OpenTelemetry tracing against real OTLP receivers, and Triton's trace and log settings
through tritonclient.

The receivers are built here on ``opentelemetry-proto``'s messages: an HTTP server taking
``ExportTraceServiceRequest`` at ``/v1/traces`` (http/protobuf) and a gRPC
``TraceService``. Two servers export to them, one per OTLP protocol. Spans are found by the
trace id of the ``traceparent`` the client sent, or by the request id: a request traced
later in the same server is exported after an earlier one (the batch processor's queue is
first in, first out), so once a later marker has arrived, a missing span was never made.
"""

import gzip
import json
import secrets
import threading
import time
from collections.abc import Callable, Iterator
from concurrent import futures
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import grpc
import numpy as np
import pytest
import requests
import tritonclient.grpc as grpcclient
import tritonclient.http as httpclient
from opentelemetry.proto.collector.trace.v1 import trace_service_pb2, trace_service_pb2_grpc
from tritonclient.utils import InferenceServerException

from .conftest import RunningServer, copy_models, start_server, stop_server

IRIS = np.array([[5.1, 3.5, 1.4, 0.2], [6.7, 3.0, 5.2, 2.3]])
DIABETES = np.full((1, 10), 0.01)
PHASES = ["decode", "queue", "validation", "compute", "encode"]
LOCAL = {"no_proxy": "127.0.0.1,localhost", "NO_PROXY": "127.0.0.1,localhost"}


@dataclass
class Span:
    name: str
    trace_id: str
    span_id: str
    parent_id: str
    start: int
    end: int
    kind: int
    attributes: dict[str, Any]
    service: str


@dataclass
class Received:
    """Every span a receiver got, in arrival order."""

    spans: list[Span] = field(default_factory=list)
    lock: threading.Lock = field(default_factory=threading.Lock)

    def add(self, request: trace_service_pb2.ExportTraceServiceRequest) -> None:
        found = []
        for resource_spans in request.resource_spans:
            resource = {a.key: _value(a.value) for a in resource_spans.resource.attributes}
            for scope_spans in resource_spans.scope_spans:
                for span in scope_spans.spans:
                    found.append(
                        Span(
                            span.name,
                            span.trace_id.hex(),
                            span.span_id.hex(),
                            span.parent_span_id.hex(),
                            span.start_time_unix_nano,
                            span.end_time_unix_nano,
                            span.kind,
                            {a.key: _value(a.value) for a in span.attributes},
                            str(resource.get("service.name", "")),
                        )
                    )
        with self.lock:
            self.spans.extend(found)

    def wait_for(self, matches: Callable[[list[Span]], bool], timeout: float = 60) -> list[Span]:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            with self.lock:
                spans = list(self.spans)
            if matches(spans):
                return spans
            time.sleep(0.05)
        raise AssertionError(f"no such spans within {timeout}s; got {[s.name for s in spans]}")

    def trace(self, trace_id: str) -> dict[str, Span]:
        """The spans of one request's trace, once its root has arrived: the root ends after
        its children, so they were queued, and exported, before it."""
        spans = self.wait_for(
            lambda got: any(s.trace_id == trace_id and s.name == "infer" for s in got)
        )
        return {s.name: s for s in spans if s.trace_id == trace_id}


def _value(value: Any) -> Any:
    kind = value.WhichOneof("value")
    return getattr(value, kind) if kind else None


class _OtlpHttp(BaseHTTPRequestHandler):
    received: Received

    def do_POST(self) -> None:  # noqa: N802 - http.server's name
        body = self.rfile.read(int(self.headers["Content-Length"]))
        if self.headers.get("Content-Encoding") == "gzip":
            body = gzip.decompress(body)
        if self.path != "/v1/traces":
            self.send_error(404)
            return
        self.received.add(trace_service_pb2.ExportTraceServiceRequest.FromString(body))
        reply = trace_service_pb2.ExportTraceServiceResponse().SerializeToString()
        self.send_response(200)
        self.send_header("Content-Type", "application/x-protobuf")
        self.send_header("Content-Length", str(len(reply)))
        self.end_headers()
        self.wfile.write(reply)

    def log_message(self, format: str, *args: Any) -> None:
        pass


class _OtlpGrpc(trace_service_pb2_grpc.TraceServiceServicer):
    def __init__(self, received: Received):
        self.received = received

    def Export(self, request: Any, context: Any) -> Any:  # noqa: N802 - OTLP's name
        self.received.add(request)
        return trace_service_pb2.ExportTraceServiceResponse()


@pytest.fixture(scope="module")
def http_receiver() -> Iterator[tuple[str, Received]]:
    received = Received()
    handler = type("Handler", (_OtlpHttp,), {"received": received})
    httpd = ThreadingHTTPServer(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=httpd.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{httpd.server_address[1]}/v1/traces", received
    httpd.shutdown()


@pytest.fixture(scope="module")
def grpc_receiver() -> Iterator[tuple[str, Received]]:
    received = Received()
    server = grpc.server(futures.ThreadPoolExecutor(max_workers=2))
    trace_service_pb2_grpc.add_TraceServiceServicer_to_server(_OtlpGrpc(received), server)
    port = server.add_insecure_port("127.0.0.1:0")
    server.start()
    yield f"http://127.0.0.1:{port}", received
    server.stop(grace=None)


def _traced_server(workdir: Any, repository: Any, env: dict[str, str]) -> RunningServer:
    return start_server(
        workdir,
        repository,
        env={
            **LOCAL,
            "V2SERVE_TRACING": "true",
            "MLSERVER_CACHE_ENABLED": "true",
            "OTEL_SERVICE_NAME": "v2serve-e2e",
            "OTEL_BSP_SCHEDULE_DELAY": "50",
            **env,
        },
    )


@pytest.fixture(scope="module")
def traced_models(tmp_path_factory, repository) -> Any:
    """The models these tests call, from the session's repository (both servers)."""
    target = tmp_path_factory.mktemp("traced-models") / "model-repository"
    return copy_models(repository, target, ["iris", "diabetes", "bare"])


@pytest.fixture(scope="module")
def traced(
    tmp_path_factory, traced_models, http_receiver
) -> Iterator[tuple[RunningServer, Received]]:
    endpoint, received = http_receiver
    server = _traced_server(
        tmp_path_factory.mktemp("traced-http"),
        traced_models,
        {"OTEL_EXPORTER_OTLP_TRACES_ENDPOINT": endpoint},
    )
    yield server, received
    assert stop_server(server) == 0, server.log_text()


@pytest.fixture(scope="module")
def traced_grpc(
    tmp_path_factory, traced_models, grpc_receiver
) -> Iterator[tuple[RunningServer, Received]]:
    endpoint, received = grpc_receiver
    server = _traced_server(
        tmp_path_factory.mktemp("traced-grpc"),
        traced_models,
        {"OTEL_EXPORTER_OTLP_PROTOCOL": "grpc", "OTEL_EXPORTER_OTLP_ENDPOINT": endpoint},
    )
    yield server, received
    assert stop_server(server) == 0, server.log_text()


def _traceparent() -> tuple[str, str, str]:
    trace_id, parent_id = secrets.token_hex(16), secrets.token_hex(8)
    return f"00-{trace_id}-{parent_id}-01", trace_id, parent_id


def _infer(protocol: str, server: RunningServer, model: str, rows: np.ndarray,
           headers: dict[str, str]) -> np.ndarray:  # fmt: skip
    if protocol == "http":
        http = httpclient.InferenceServerClient(url=server.http_url)
        tensor = httpclient.InferInput("input-0", list(rows.shape), "FP64")
        tensor.set_data_from_numpy(rows)
        return http.infer(model, [tensor], headers=headers).as_numpy("predict")
    client = grpcclient.InferenceServerClient(url=server.grpc_url)
    tensor = grpcclient.InferInput("input-0", list(rows.shape), "FP64")
    tensor.set_data_from_numpy(rows)
    return client.infer(model, [tensor], headers=headers).as_numpy("predict")


def _client(protocol: str, server: RunningServer) -> Any:
    if protocol == "http":
        return httpclient.InferenceServerClient(url=server.http_url)
    return grpcclient.InferenceServerClient(url=server.grpc_url)


def _assert_request_trace(
    spans: dict[str, Span], parent_id: str, protocol: str, server: RunningServer
) -> None:
    root = spans["infer"]
    metadata = requests.get(f"{server.base}/v2/models/iris/versions/2", timeout=10).json()
    assert root.parent_id == parent_id
    assert root.kind == 2  # SPAN_KIND_SERVER
    assert root.service == "v2serve-e2e"
    assert root.attributes["v2serve.model"] == "iris"
    assert root.attributes["v2serve.version"] == "2"  # the version that served
    assert root.attributes["v2serve.backend"] == metadata["parameters"]["inference_backend"]
    assert root.attributes["v2serve.batch_size"] == 2
    assert root.attributes["v2serve.status"] == 200
    assert root.attributes["v2serve.protocol"] == ("rest" if protocol == "http" else "grpc")
    assert root.attributes["v2serve.cache_hit"] is False
    children = sorted((s for s in spans.values() if s is not root), key=lambda s: s.start)
    assert [s.name for s in children] == PHASES
    for child in children:
        assert child.parent_id == root.span_id
        assert root.start <= child.start <= child.end <= root.end


@pytest.mark.parametrize("protocol", ["http", "grpc"])
def test_a_request_is_one_span_under_the_clients_parent_with_a_span_per_phase(
    traced, estimators, protocol
):
    server, received = traced
    traceparent, trace_id, parent_id = _traceparent()
    rows = IRIS + np.random.default_rng().uniform(0, 0.01, IRIS.shape)  # not a cache hit
    predicted = _infer(protocol, server, "iris", rows, {"traceparent": traceparent})
    np.testing.assert_array_equal(predicted, estimators[("iris", "2")].predict(rows))
    _assert_request_trace(received.trace(trace_id), parent_id, protocol, server)


def test_a_cache_hit_is_a_cache_span_instead_of_compute(traced):
    server, received = traced
    rows = IRIS + 0.5
    _infer("http", server, "iris", rows, {})
    traceparent, trace_id, _ = _traceparent()
    _infer("grpc", server, "iris", rows, {"traceparent": traceparent})
    spans = received.trace(trace_id)
    assert "cache" in spans and "compute" not in spans
    assert spans["infer"].attributes["v2serve.cache_hit"] is True


def test_a_failed_request_is_traced_with_its_status(traced):
    server, received = traced
    traceparent, trace_id, _ = _traceparent()
    with pytest.raises(InferenceServerException):
        _infer("http", server, "iris", np.ones((1, 3)), {"traceparent": traceparent})
    root = received.trace(trace_id)["infer"]
    assert root.attributes["v2serve.status"] == 400
    assert "input-0" in root.attributes["v2serve.error"]


@pytest.mark.parametrize("protocol", ["http", "grpc"])
def test_the_grpc_exporter_sends_the_same_spans(traced_grpc, protocol):
    server, received = traced_grpc
    traceparent, trace_id, parent_id = _traceparent()
    rows = IRIS + np.random.default_rng().uniform(0, 0.01, IRIS.shape)
    _infer(protocol, server, "iris", rows, {"traceparent": traceparent})
    _assert_request_trace(received.trace(trace_id), parent_id, protocol, server)


def test_trace_settings_round_trip_with_tritonclient_defaults(traced, protocol):
    server, _ = traced
    client = _client(protocol, server)
    shown = (
        client.get_trace_settings()
        if protocol == "http"
        else client.get_trace_settings(as_json=True)["settings"]
    )
    level = shown["trace_level"] if protocol == "http" else shown["trace_level"]["value"]
    assert level == ["TIMESTAMPS"]
    client.update_trace_settings()  # tritonclient's defaults: no model, no settings
    client.get_trace_settings(model_name="iris")


@pytest.mark.parametrize("off_over", ["http", "grpc"])
def test_a_model_switched_off_records_no_spans_while_others_do(traced, off_over):
    server, received = traced
    _client(off_over, server).update_trace_settings(
        model_name="diabetes", settings={"trace_level": ["OFF"]}
    )
    try:
        silent, silent_id, _ = _traceparent()
        _infer("http", server, "diabetes", DIABETES, {"traceparent": silent})
        marker, marker_id, _ = _traceparent()
        _infer("http", server, "iris", IRIS, {"traceparent": marker})
        spans = received.wait_for(lambda got: any(s.trace_id == marker_id for s in got))
        assert not any(s.trace_id == silent_id for s in spans)
    finally:
        cleared = _client("grpc", server).update_trace_settings(
            model_name="diabetes", settings={"trace_level": None}, as_json=True
        )
    assert cleared["settings"]["trace_level"]["value"] == ["TIMESTAMPS"]
    again, again_id, _ = _traceparent()
    _infer("grpc", server, "diabetes", DIABETES, {"traceparent": again})
    assert received.trace(again_id)["infer"].attributes["v2serve.model"] == "diabetes"


def test_a_rate_of_two_traces_every_second_request(traced):
    server, received = traced
    http = httpclient.InferenceServerClient(url=server.http_url)
    shown = http.update_trace_settings(model_name="diabetes", settings={"trace_rate": "2"})
    assert shown["trace_rate"] == "2"
    run = secrets.token_hex(4)
    try:
        for n in range(1, 5):
            _infer("http", server, "diabetes", DIABETES, {"x-request-id": f"{run}-{n}"})
        marker, marker_id, _ = _traceparent()
        _infer("http", server, "iris", IRIS, {"traceparent": marker})
        spans = received.wait_for(lambda got: any(s.trace_id == marker_id for s in got))
    finally:
        http.update_trace_settings(model_name="diabetes", settings={"trace_rate": None})
    traced_ids = sorted(
        s.attributes["v2serve.request_id"]
        for s in spans
        if s.name == "infer" and str(s.attributes.get("v2serve.request_id", "")).startswith(run)
    )
    assert traced_ids == [f"{run}-2", f"{run}-4"]


@pytest.mark.parametrize(
    ("settings", "key"),
    [
        ({"trace_rate": "often"}, "trace_rate"),
        ({"trace_level": ["TENSORS"]}, "trace_level"),
        ({"trace_count": "-5"}, "trace_count"),
        ({"trace_file": "/tmp/trace.json"}, "trace_file"),
    ],
)
def test_bad_trace_values_are_refused_naming_the_key(traced, protocol, settings, key):
    server, _ = traced
    with pytest.raises(InferenceServerException) as caught:
        _client(protocol, server).update_trace_settings(settings=settings)
    expected = "400" if protocol == "http" else "StatusCode.INVALID_ARGUMENT"
    assert caught.value.status() == expected
    assert f"'{key}'" in caught.value.message()


def test_with_tracing_off_the_level_is_off_and_cannot_be_turned_on(server, protocol):
    client = _client(protocol, server)
    if protocol == "http":
        assert client.get_trace_settings()["trace_level"] == ["OFF"]
    else:
        shown = client.get_trace_settings(as_json=True)["settings"]
        assert shown["trace_level"]["value"] == ["OFF"]
    with pytest.raises(InferenceServerException) as caught:
        client.update_trace_settings(settings={"trace_level": ["TIMESTAMPS"]})
    assert "V2SERVE_TRACING=true" in caught.value.message()


def test_log_settings_change_the_servers_log_at_run_time(traced, protocol):
    server, _ = traced
    client = _client(protocol, server)
    shown = (
        client.get_log_settings()
        if protocol == "http"
        else client.get_log_settings(as_json=True)["settings"]
    )
    assert set(shown) == {"log_file", "log_info", "log_warning", "log_error",
                          "log_verbose_level", "log_format"}  # fmt: skip

    def ready_lines() -> list[str]:
        return [
            line for line in server.log_text().splitlines() if "'bare' version 1 is ready" in line
        ]

    before = len(ready_lines())
    client.update_log_settings(settings={"log_format": "json"})
    try:
        client.unload_model("bare")
        client.load_model("bare")  # logs "model 'bare' version 1 is ready", now as JSON
        deadline = time.monotonic() + 60
        while len(ready_lines()) == before and time.monotonic() < deadline:
            time.sleep(0.05)
        line = json.loads(ready_lines()[-1])
        assert (line["level"], line["logger"]) == ("INFO", "v2serve.repository")
    finally:
        client.update_log_settings(settings={"log_format": "default"})
    with pytest.raises(InferenceServerException) as caught:
        client.update_log_settings(settings={"log_file": "/tmp/v2serve.log"})
    assert "'log_file'" in caught.value.message()
