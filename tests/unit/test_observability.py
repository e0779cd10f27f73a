"""Metrics, failure reasons, log format and options, without a server."""

import asyncio
import io
import json
import logging
import logging.config
from types import SimpleNamespace

import numpy as np
import pytest
from mlserver.types import InferenceRequest, Parameters, RequestInput
from prometheus_client import CollectorRegistry
from prometheus_client.exposition import generate_latest
from prometheus_client.parser import text_string_to_metric_families

from runtimes.batching import LiveBatchers, MicroBatcher
from runtimes.errors import (
    InvalidInput,
    ModelUnavailable,
    NotReady,
    PredictionFailed,
    RequestTooLarge,
    all_error_classes,
)
from runtimes.execution import Executions, ModelExecution
from runtimes.observability.logs import (
    REQUEST_LOGGER,
    HealthCheckFilter,
    RequestLog,
    logging_config,
    with_logging_config,
)
from runtimes.observability.metrics import (
    REASONS,
    PredictionLogMetrics,
    ServingMetrics,
    failure_reason,
)
from runtimes.observability.observer import RequestObserver, request_id
from runtimes.repository.states import ModelStates, VersionState
from runtimes.settings import ServerOptions, build_server_config
from runtimes.timings import Phases

from .in_process import loggers_restored


def samples(registry: CollectorRegistry) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    text = generate_latest(registry).decode()
    return {
        (s.name, tuple(sorted(s.labels.items()))): s.value
        for family in text_string_to_metric_families(text)
        for s in family.samples
    }


def value(registry: CollectorRegistry, name: str, **labels: str) -> float:
    return samples(registry).get((name, tuple(sorted(labels.items()))), 0.0)


def payload(rows: int, request_id: str | None = None, headers: dict | None = None):
    parameters = Parameters(headers=headers) if headers is not None else None
    tensor = RequestInput(name="input-0", shape=[rows, 4], datatype="FP64", data=[0.0] * rows * 4)
    return InferenceRequest(id=request_id, inputs=[tensor], parameters=parameters)


def model(name: str, version: str) -> SimpleNamespace:
    return SimpleNamespace(name=name, version=version)


@pytest.fixture
def setup():
    registry = CollectorRegistry()
    states = ModelStates()
    states.set("iris", "2", VersionState.READY)
    metrics = ServingMetrics(states, registry)
    observer = RequestObserver(states, metrics, None)
    return registry, states, metrics, observer


def test_success_counts_the_served_version(setup):
    registry, _, _, observer = setup
    phases = Phases(queue_ns=1000, input_ns=2000, infer_ns=3000, output_ns=4000)
    served = model("iris", "2")
    observer.started(served)
    assert value(registry, "v2serve_inflight_requests", model="iris", version="2") == 1
    observer.finished("iris", served, payload(3), None, 10_000, phases)
    assert value(registry, "v2serve_inflight_requests", model="iris", version="2") == 0
    labels = {"model": "iris", "version": "2"}
    assert value(registry, "nv_inference_request_success_total", **labels) == 1
    assert value(registry, "nv_inference_count_total", **labels) == 3
    assert value(registry, "nv_inference_exec_count_total", **labels) == 1
    assert value(registry, "nv_inference_request_duration_us_total", **labels) == 10
    assert value(registry, "nv_inference_queue_duration_us_total", **labels) == 1
    assert value(registry, "nv_inference_compute_infer_duration_us_total", **labels) == 3
    assert value(registry, "v2serve_request_duration_seconds_count", **labels) == 1
    assert value(registry, "v2serve_request_duration_seconds_sum", **labels) == 10e-6
    assert value(registry, "v2serve_compute_duration_seconds_sum", phase="output", **labels) == (
        4e-6
    )
    assert value(registry, "v2serve_batch_size_bucket", le="2.0", **labels) == 0
    assert value(registry, "v2serve_batch_size_bucket", le="4.0", **labels) == 1


def test_failures_carry_a_reason(setup):
    registry, _, _, observer = setup
    served = model("iris", "2")
    observer.started(served)
    bad = InvalidInput("iris", "input-0", "has the wrong shape", "[-1, 4]", "[1, 3]")
    observer.finished("iris", served, payload(1), bad, 5000, Phases())
    observer.finished("iris", None, payload(1), NotReady("iris", None), 5000, Phases())
    observer.finished("nope", None, payload(1), ModelUnavailable("nope"), 5000, Phases())
    failures = "nv_inference_request_failure_total"
    assert value(registry, failures, model="iris", version="2", reason="invalid_input") == 1
    # A known model that no version answered: the version is unknown.
    assert value(registry, failures, model="iris", version="", reason="unavailable") == 1
    # A name no repository holds is not a label value.
    assert value(registry, failures, model="", version="", reason="not_found") == 1
    assert value(registry, "nv_inference_request_success_total", model="iris", version="2") == 0
    assert value(registry, "v2serve_inflight_requests", model="iris", version="2") == 0


@pytest.mark.parametrize(
    ("error", "reason"),
    [
        (InvalidInput("m", "x", "is bad", "a", "b"), "invalid_input"),
        (ModelUnavailable("m"), "not_found"),
        (RequestTooLarge(10, 5), "too_large"),
        (NotReady("m", None), "unavailable"),
        (PredictionFailed("m", ValueError("boom")), "internal"),
        (RuntimeError("unexpected"), "internal"),
        (asyncio.CancelledError(), "cancelled"),
    ],
)
def test_failure_reasons(error, reason):
    assert failure_reason(error) == reason


def test_every_error_class_has_a_reason_in_the_fixed_set():
    for cls in all_error_classes():
        error = cls.__new__(cls)
        assert failure_reason(error) in REASONS, cls


def test_load_metrics_and_states(setup):
    registry, states, metrics, _ = setup
    states.set("iris", "3", VersionState.UNAVAILABLE, "corrupt")
    metrics.load_finished("iris", "2", 0.5, ok=True)
    metrics.load_finished("iris", "3", 0.1, ok=False)
    assert value(registry, "v2serve_model_load_duration_seconds_count", model="iris", version="2")
    assert value(registry, "v2serve_model_load_failures_total", model="iris", version="3") == 1
    assert value(registry, "v2serve_model_load_failures_total", model="iris", version="2") == 0
    assert value(registry, "v2serve_model_versions", model="iris", state="READY") == 1
    assert value(registry, "v2serve_model_versions", model="iris", state="UNAVAILABLE") == 1
    assert value(registry, "v2serve_model_versions", model="iris", state="LOADING") == 0


def test_forget_drops_a_retired_versions_series(setup):
    registry, _, metrics, observer = setup
    served = model("iris", "2")
    observer.started(served)
    observer.finished("iris", served, payload(1), None, 1000, Phases())
    metrics.forget("iris", "2")
    assert not [key for key in samples(registry) if ("version", "2") in key[1]
                and key[0].startswith("nv_inference")]  # fmt: skip


def test_close_unregisters_everything():
    registry = CollectorRegistry()
    ServingMetrics(ModelStates(), registry).close()
    ServingMetrics(ModelStates(), registry)  # would raise on a duplicate name


def test_request_id_prefers_the_header():
    assert request_id(payload(1, "body-id", {"x-request-id": "header-id"})) == "header-id"
    assert request_id(payload(1, "body-id", {"other": "x"})) == "body-id"
    assert request_id(payload(1)) is None


@pytest.fixture(autouse=True)
def restore_loggers():
    """Other tests capture through the root logger."""
    with loggers_restored(["v2serve", "mlserver", "uvicorn", "uvicorn.error", "uvicorn.access"]):
        yield


def _configured(json_format: bool) -> io.StringIO:
    config = logging_config(json_format, "INFO")
    config["handlers"]["stdout"]["stream"] = stream = io.StringIO()
    logging.config.dictConfig(config)
    return stream


def test_json_request_line_parses_and_carries_the_fields():
    stream = _configured(json_format=True)
    observer = RequestObserver(ModelStates(), None, RequestLog())
    served = model("iris", "2")
    phases = Phases(cache_hit=True)
    observer.finished("iris", served, payload(2, "abc", {"x-request-id": "r-1"}), None, 1_500_000,
                      phases)  # fmt: skip
    line = json.loads(stream.getvalue().splitlines()[-1])
    assert line["logger"] == REQUEST_LOGGER
    assert line["level"] == "INFO"
    assert line["request_id"] == "r-1"
    assert (line["model"], line["version"], line["status"]) == ("iris", "2", 200)
    assert line["latency_ms"] == 1.5
    assert line["cache_hit"] is True
    assert line["batch_size"] == 2


def test_json_failure_line_names_status_and_reason():
    stream = _configured(json_format=True)
    observer = RequestObserver(ModelStates(), None, RequestLog())
    observer.finished("nope", None, payload(1, "x"), ModelUnavailable("nope"), 1000, Phases())
    line = json.loads(stream.getvalue().splitlines()[-1])
    assert (line["status"], line["reason"]) == (404, "not_found")
    assert "not found" in line["error"]


def test_text_format_appends_fields():
    stream = _configured(json_format=False)
    RequestLog().emit({"request_id": "r-2", "model": "iris"})
    assert stream.getvalue().rstrip().endswith("inference request_id=r-2 model=iris")


def test_level_silences_request_lines():
    config = logging_config(False, "WARNING")
    config["handlers"]["stdout"]["stream"] = stream = io.StringIO()
    logging.config.dictConfig(config)
    log = RequestLog()
    assert not log.enabled
    RequestObserver(None, None, log).finished("m", None, payload(1), None, 1, Phases())
    assert stream.getvalue() == ""


@pytest.mark.parametrize(
    ("name", "msg", "args", "kept"),
    [
        ("uvicorn.access", '%s - "%s %s HTTP/%s" %d', ("c", "GET", "/v2/health/ready", "1.1", 200),
         False),
        ("uvicorn.access", '%s - "%s %s HTTP/%s" %d', ("c", "GET", "/v2/health/live", "1.1", 200),
         False),
        ("uvicorn.access", '%s - "%s %s HTTP/%s" %d', ("c", "POST", "/v2/models/m/infer", "1.1",
         200), True),
        ("mlserver.grpc", "/grpc.health.v1.Health/Check", (), False),
        ("mlserver.grpc", "/inference.GRPCInferenceService/ServerReady", (), False),
        ("mlserver.grpc", "/inference.GRPCInferenceService/ModelInfer", (), True),
    ],
)  # fmt: skip
def test_health_checks_are_filtered(name, msg, args, kept):
    record = logging.LogRecord(name, logging.INFO, "", 0, msg, args, None)
    assert HealthCheckFilter().filter(record) is kept


def test_options_and_logging_settings(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    environ = {"V2SERVE_LOG_LEVEL": "warning", "V2SERVE_LOG_FORMAT": "json",
               "V2SERVE_SHUTDOWN_GRACE": "5"}  # fmt: skip
    config = build_server_config(None, None, environ)
    assert config.options.log_level == "WARNING"
    assert config.options.shutdown_grace == 5
    settings = with_logging_config(config.mlserver, config.options)
    assert isinstance(settings.logging_settings, dict)
    formatter = settings.logging_settings["formatters"]["v2serve"]["()"]
    assert formatter.endswith("JsonFormatter")
    assert settings.logging_settings["loggers"]["v2serve"]["level"] == "WARNING"
    own = config.mlserver.model_copy(update={"logging_settings": "my-logging.json"})
    assert with_logging_config(own, config.options).logging_settings == "my-logging.json"
    structured = config.mlserver.model_copy(update={"use_structured_logging": True})
    text_options = ServerOptions()
    chosen = with_logging_config(structured, text_options).logging_settings
    assert isinstance(chosen, dict)
    assert chosen["formatters"]["v2serve"]["()"].endswith("JsonFormatter")
    with pytest.raises(Exception, match="log_format"):
        build_server_config(None, None, {"V2SERVE_LOG_FORMAT": "xml"})


def _exposed_names() -> set[str]:
    """Every sample name the metrics port can show from v2serve (request, load, cache)."""
    from runtimes.cache import build_response_cache, publish_metrics
    from runtimes.settings import CacheSettings

    registry = CollectorRegistry()
    states = ModelStates()
    states.set("iris", "2", VersionState.READY)
    batchers, executions = LiveBatchers(), Executions()
    executions.register(ModelExecution("iris", "2", "thread", 1, None))
    metrics = ServingMetrics(states, registry, executions=executions, batchers=batchers)
    observer = RequestObserver(states, metrics, None)
    observer.started(model("iris", "2"))
    observer.finished("iris", model("iris", "2"), payload(1), None, 1000, Phases())
    observer.finished("iris", None, payload(1), NotReady("iris", None), 1000, Phases())
    metrics.load_finished("iris", "2", 1.0, ok=False)
    prediction_log = PredictionLogMetrics(registry)
    for counter in (prediction_log.sent, prediction_log.failed, prediction_log.dropped):
        counter.labels("iris", "2").inc()
    cache = build_response_cache(CacheSettings(enabled=True))
    assert cache is not None
    publish_metrics(cache, registry)
    scope = cache.scope("iris", "2")
    cache.store(scope, cache.lookup(scope, {}, ["predict"]), {"predict": np.zeros(1)})
    batcher = MicroBatcher(lambda features, methods: {}, 1, model="iris", version="2")
    batchers.add(batcher)
    return {name for name, _ in samples(registry)} if batcher else set()


def _base(name: str) -> str:
    for suffix in ("_bucket", "_count", "_sum", "_created"):
        if name.endswith(suffix):
            return name[: -len(suffix)]
    return name


def test_docs_and_dashboard_name_only_real_metrics():
    import re
    from pathlib import Path

    root = Path(__file__).resolve().parents[2]
    exposed = _exposed_names()
    families = {_base(n) for n in exposed} | exposed
    documented = set(re.findall(r"`((?:nv|v2serve)_[a-z_]+)`",
                                (root / "docs/observability.md").read_text()))  # fmt: skip
    # Every metric is documented, and the docs name nothing that does not exist.
    assert {_base(n) for n in exposed if not n.endswith("_created")} <= documented | {
        n.removesuffix("_total") for n in documented
    }
    assert documented <= families
    dashboard = json.loads((root / "deploy/grafana/v2serve.json").read_text())
    queried = {
        name
        for panel in dashboard["panels"]
        for target in panel["targets"]
        for name in re.findall(r"\b((?:nv|v2serve)_[a-z_]+)", target["expr"])
    }
    assert queried and queried <= exposed, queried - exposed
