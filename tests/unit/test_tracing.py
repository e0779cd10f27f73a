"""Spans from a real data plane and runtime, exported by the SDK's in-memory exporter; the
trace and log settings through the REST app and the gRPC service, in-process."""

import asyncio
import logging
import time
from collections.abc import Awaitable, Callable, Iterator
from dataclasses import dataclass
from types import SimpleNamespace
from typing import Any

import grpc
import joblib
import orjson
import pytest
from grpc import aio
from mlserver.types import InferenceRequest, Parameters, RequestInput
from opentelemetry.sdk.trace import ReadableSpan
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from opentelemetry.trace import SpanKind, StatusCode
from sklearn.datasets import load_iris
from sklearn.linear_model import LogisticRegression

from runtimes.dataplane import V2DataPlane
from runtimes.errors import ModelUnavailable, SettingsError
from runtimes.extensions.handlers import ExtensionHandlers
from runtimes.extensions.log_settings import LogSettings
from runtimes.extensions.statistics import Statistics
from runtimes.extensions.trace_settings import TraceSettings
from runtimes.observability.logs import LOGGERS, LogControl
from runtimes.observability.trace_policy import TracePolicy, TraceSetting
from runtimes.observability.tracing import build_tracer, exporter_protocol, service_resource
from runtimes.protocol.grpc.messages import SERVICE_NAME, message
from runtimes.protocol.grpc.service import TritonService, triton_handler
from runtimes.protocol.rest_app import build_rest_app
from runtimes.settings import build_server_config
from tests.unit.asgi_client import call
from tests.unit.grpc_context import FakeContext

from .in_process import release_metrics, serve_iris

X, Y = load_iris(return_X_y=True)
TRACE_ID = "0af7651916cd43dd8448eb211c80319c"
PARENT_ID = "b7ad6b7169203331"
TRACEPARENT = f"00-{TRACE_ID}-{PARENT_ID}-01"


@dataclass
class Traced:
    loop: asyncio.AbstractEventLoop
    plane: V2DataPlane
    exporter: InMemorySpanExporter
    policy: TracePolicy
    service: TritonService
    app: Any

    def run(self, body: Awaitable[Any]) -> Any:
        return self.loop.run_until_complete(body)

    def spans(self) -> dict[str, ReadableSpan]:
        return {span.name: span for span in self.exporter.get_finished_spans()}


@pytest.fixture(scope="module")
def module_traced(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Traced]:
    folder = tmp_path_factory.mktemp("iris")
    joblib.dump(LogisticRegression(max_iter=500).fit(X, Y), folder / "model.joblib")
    loop = asyncio.new_event_loop()
    plane, repository = loop.run_until_complete(serve_iris(folder, ready=True))
    exporter = InMemorySpanExporter()
    policy = TracePolicy(TraceSetting())
    plane.tracer = tracer = build_tracer(policy, processor=SimpleSpanProcessor(exporter))
    extensions = ExtensionHandlers(plane, Statistics())
    trace = TraceSettings(policy, plane, tracing=True)
    log = LogSettings(LogControl("INFO", "default"))
    service = TritonService(plane, repository, extensions, trace, log)
    app = build_rest_app(plane, extensions, repository, 1 << 20, control_token="sesame",
                         trace_settings=trace, log_settings=log)  # fmt: skip
    yield Traced(loop, plane, exporter, policy, service, app)
    release_metrics(plane)
    tracer.shutdown()
    loop.close()


@pytest.fixture
def traced(module_traced: Traced) -> Iterator[Traced]:
    module_traced.exporter.clear()
    module_traced.policy.update(None, {"level": None, "rate": None, "count": None})
    saved = {name: logging.getLogger(name).level for name in LOGGERS}
    yield module_traced
    for name, level in saved.items():
        logging.getLogger(name).setLevel(level)


def _payload(rows: int = 2, headers: dict[str, str] | None = None) -> InferenceRequest:
    return InferenceRequest(
        id="req-7",
        parameters=Parameters(headers=headers or {}),
        inputs=[
            RequestInput(
                name="input-0", shape=[rows, 4], datatype="FP64", data=X[:rows].ravel().tolist()
            )
        ],
    )


def test_one_request_is_a_server_span_with_a_child_per_phase(traced):
    payload = _payload(headers={"traceparent": TRACEPARENT})
    traced.run(traced.plane.infer(payload, "iris", None, time.perf_counter_ns(), "rest"))
    spans = traced.spans()
    assert {"infer", "decode", "queue", "validation", "compute", "encode"} <= set(spans)
    root = spans["infer"]
    assert root.kind is SpanKind.SERVER
    assert root.parent is not None and f"{root.parent.span_id:016x}" == PARENT_ID
    assert f"{root.context.trace_id:032x}" == TRACE_ID
    attributes = dict(root.attributes or {})
    assert attributes["v2serve.model"] == "iris" and attributes["v2serve.version"] == "1"
    assert attributes["v2serve.batch_size"] == 2 and attributes["v2serve.status"] == 200
    served = traced.run(traced.plane.resolve("iris", "1"))
    assert attributes["v2serve.backend"] == served.backend_parameters["inference_backend"]
    assert attributes["v2serve.protocol"] == "rest" and attributes["v2serve.request_id"] == "req-7"
    assert root.resource.attributes["service.name"] == "v2serve"
    children = sorted((s for s in spans.values() if s is not root), key=lambda s: s.start_time)
    assert [s.name for s in children] == ["decode", "queue", "validation", "compute", "encode"]
    for child in children:
        assert child.parent is not None and child.parent.span_id == root.context.span_id
        assert root.start_time <= child.start_time <= child.end_time <= root.end_time
    for before, after in zip(children, children[1:], strict=False):
        assert before.end_time == after.start_time


def test_a_failed_request_carries_its_status_and_a_404_is_not_an_error(traced):
    with pytest.raises(ModelUnavailable):
        traced.run(traced.plane.infer(_payload(), "nope"))
    root = traced.spans()["infer"]
    attributes = dict(root.attributes or {})
    assert attributes["v2serve.status"] == 404 and "not found" in attributes["v2serve.error"]
    assert "v2serve.version" not in attributes
    assert root.status.status_code is StatusCode.UNSET


def test_level_off_records_nothing_and_rate_takes_one_in_n(traced):
    traced.policy.update(None, {"level": "OFF"})
    traced.run(traced.plane.infer(_payload(), "iris"))
    assert traced.exporter.get_finished_spans() == ()
    traced.policy.update(None, {"level": "TIMESTAMPS", "rate": 2})
    for _ in range(4):
        traced.run(traced.plane.infer(_payload(), "iris"))
    roots = [s for s in traced.exporter.get_finished_spans() if s.name == "infer"]
    assert len(roots) == 2


class _Broken(SimpleSpanProcessor):
    def on_end(self, span: ReadableSpan) -> None:
        raise RuntimeError("the exporter's queue is broken")


def test_a_failing_span_processor_never_fails_the_request(traced, caplog):
    healthy = traced.plane.tracer
    traced.plane.tracer = build_tracer(
        TracePolicy(TraceSetting()), processor=_Broken(traced.exporter)
    )
    try:
        answer = traced.run(traced.plane.infer(_payload(), "iris"))
    finally:
        traced.plane.tracer = healthy
    assert answer.model_version == "1" and len(answer.outputs) == 1
    assert "recording the trace" in caplog.text


def test_without_a_parent_the_root_starts_a_trace(traced):
    traced.run(traced.plane.infer(_payload(), "iris"))
    root = traced.spans()["infer"]
    assert root.parent is None and "decode" not in traced.spans()


def test_protocol_comes_from_the_environment_and_a_bad_one_names_the_variable():
    assert exporter_protocol({}) == "http/protobuf"
    assert exporter_protocol({"OTEL_EXPORTER_OTLP_PROTOCOL": "grpc"}) == "grpc"
    both = {
        "OTEL_EXPORTER_OTLP_PROTOCOL": "grpc",
        "OTEL_EXPORTER_OTLP_TRACES_PROTOCOL": "http/protobuf",
    }
    assert exporter_protocol(both) == "http/protobuf"
    with pytest.raises(SettingsError, match="OTEL_EXPORTER_OTLP_PROTOCOL.*http/json"):
        exporter_protocol({"OTEL_EXPORTER_OTLP_PROTOCOL": "http/json"})


def test_service_name_is_v2serve_unless_the_environment_names_one(monkeypatch):
    assert service_resource().attributes["service.name"] == "v2serve"
    monkeypatch.setenv("OTEL_SERVICE_NAME", "fraud-scorer")
    assert service_resource().attributes["service.name"] == "fraud-scorer"


def test_tracing_option_and_mlservers_tracing_server_is_refused(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    assert build_server_config(None, None, {"V2SERVE_TRACING": "true"}).options.tracing
    assert not build_server_config(None, None, {}).options.tracing
    monkeypatch.setenv("MLSERVER_TRACING_SERVER", "collector:4317")
    with pytest.raises(SettingsError, match="V2SERVE_TRACING=true"):
        build_server_config(None, None)


def test_rest_trace_settings_per_model_and_token(traced):
    token = {"authorization": "Bearer sesame"}
    assert call(traced.app, "GET", "/v2/trace/setting").status == 401
    update = orjson.dumps({"trace_rate": "4", "trace_level": ["TIMESTAMPS"]})
    answer = call(traced.app, "POST", "/v2/models/iris/trace/setting", update, token)
    assert answer.status == 200 and answer.json()["trace_rate"] == "4"
    assert call(traced.app, "GET", "/v2/trace/setting", headers=token).json()["trace_rate"] == "1"
    cleared = call(traced.app, "POST", "/v2/models/iris/trace/setting",
                   orjson.dumps({"trace_rate": None}), token).json()  # fmt: skip
    assert cleared["trace_rate"] == "1"
    unknown = call(traced.app, "GET", "/v2/models/nope/trace/setting", headers=token)
    assert unknown.status == 404
    bad = call(traced.app, "POST", "/v2/trace/setting", orjson.dumps({"trace_count": 1.5}), token)
    assert bad.status == 400 and "'trace_count'" in bad.json()["error"]
    assert call(traced.app, "POST", "/v2/trace/setting", b"", token).status == 200
    assert call(traced.app, "POST", "/v2/trace/setting", b"[1]", token).status == 400


def test_rest_log_settings(traced):
    token = {"authorization": "Bearer sesame"}
    assert call(traced.app, "POST", "/v2/logging", b"{}").status == 401
    shown = call(traced.app, "POST", "/v2/logging", orjson.dumps({"log_verbose_level": 1}), token)
    assert shown.status == 200 and shown.json()["log_verbose_level"] == 1
    bad = call(traced.app, "POST", "/v2/logging", orjson.dumps({"log_info": [True]}), token)
    assert bad.status == 400 and "'log_info'" in bad.json()["error"]
    call(traced.app, "POST", "/v2/logging", orjson.dumps({"log_verbose_level": 0}), token)


def _unary(service: TritonService, name: str) -> Callable[[Any, Any], Awaitable[Any]]:
    details = SimpleNamespace(method=f"/{SERVICE_NAME}/{name}", invocation_metadata=())
    handler = triton_handler(service).service(details)
    assert handler is not None and handler.unary_unary is not None
    return handler.unary_unary


def test_grpc_trace_setting_and_log_settings(traced):
    request = message("TraceSettingRequest")(model_name="iris")
    request.settings["trace_count"].value.append("3")
    request.settings["trace_rate"]  # an empty value clears the key
    reply = traced.run(_unary(traced.service, "TraceSetting")(request, FakeContext()))
    found = {key: list(value.value) for key, value in reply.settings.items()}
    assert found["trace_count"] == ["3"] and found["trace_level"] == ["TIMESTAMPS"]
    assert found["trace_mode"] == ["opentelemetry"]
    traced.policy.update("iris", {"count": None})

    logs = message("LogSettingsRequest")()
    logs.settings["log_verbose_level"].uint32_param = 0
    reply = traced.run(_unary(traced.service, "LogSettings")(logs, FakeContext()))
    assert reply.settings["log_info"].bool_param is True
    assert reply.settings["log_format"].string_param == "default"
    assert reply.settings["log_verbose_level"].WhichOneof("parameter_choice") == "uint32_param"

    wrong = message("LogSettingsRequest")()
    wrong.settings["log_info"].string_param = "yes"
    context = FakeContext()
    with pytest.raises(aio.AbortError):
        traced.run(_unary(traced.service, "LogSettings")(wrong, context))
    assert context.aborted is not None
    code, details = context.aborted
    assert code is grpc.StatusCode.INVALID_ARGUMENT and "'log_info'" in details
