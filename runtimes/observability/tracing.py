"""OpenTelemetry spans for inference requests, recorded after the fact.

A request already carries its phase timings (``runtimes.timings.Phases``, for statistics
and metrics), so nothing is traced while it runs: when the data plane has answered, one
``infer`` span (kind SERVER) and a child per phase are created with explicit start and
end times. The runtime has no tracing code, and with tracing off the data plane pays one
``is not None`` check per request.

Spans, in order, each present when its phase took time:

- ``decode``: from the adapter's receipt of the request (REST: body read and parsed; gRPC:
  the message converted) to the data plane;
- ``queue``: resolving the version and admission, until the runtime starts;
- ``validation``: decoding the tensors to the schema's dtypes and checking them;
- ``cache`` when the response cache answered, else ``compute`` (the estimator, with the
  wait for an adaptive batch and a cache miss's lookup);
- ``encode``: building the response tensors.

The root carries ``v2serve.model``, ``v2serve.version`` (the version that served),
``v2serve.backend``, ``v2serve.cache_hit``, ``v2serve.batch_size`` (rows),
``v2serve.status`` (the HTTP status; gRPC maps it), ``v2serve.protocol`` and
``v2serve.request_id``; a 5xx sets the span's status to ERROR.

Configuration is OpenTelemetry's own: the SDK reads ``OTEL_SERVICE_NAME`` /
``OTEL_RESOURCE_ATTRIBUTES``, ``OTEL_TRACES_SAMPLER`` (+ ``_ARG``), ``OTEL_BSP_*`` and the
exporter's ``OTEL_EXPORTER_OTLP_[TRACES_]ENDPOINT`` / ``_HEADERS`` / ``_TIMEOUT``; v2serve
reads ``OTEL_EXPORTER_OTLP_[TRACES_]PROTOCOL`` to pick the exporter, which the SDK leaves
to its auto-configuration. The parent comes from the request's W3C ``traceparent``
(``OTEL_PROPAGATORS``, tracecontext and baggage by default). Which requests are traced at
all is the trace policy's (``trace_policy``: Triton's level, rate and count).
"""

import logging
import os
import time
from collections.abc import Mapping
from importlib.metadata import version as package_version
from typing import Any

from mlserver.model import MLModel
from mlserver.types import InferenceRequest
from opentelemetry import propagate, trace
from opentelemetry.sdk.environment_variables import (
    OTEL_EXPORTER_OTLP_PROTOCOL,
    OTEL_EXPORTER_OTLP_TRACES_PROTOCOL,
)
from opentelemetry.sdk.resources import SERVICE_NAME, SERVICE_VERSION, Resource
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import BatchSpanProcessor, SpanExporter
from opentelemetry.trace import SpanKind, Status, StatusCode

from ..errors import SettingsError
from ..timings import Phases
from .metrics import error_status
from .observer import batch_size, request_id
from .trace_policy import TracePolicy

PROTOCOLS = ("http/protobuf", "grpc")
DEFAULT_PROTOCOL = "http/protobuf"
SERVICE = "v2serve"
ROOT_SPAN = "infer"

logger = logging.getLogger("v2serve.tracing")


def exporter_protocol(environ: Mapping[str, str]) -> str:
    """The OTLP transport: the traces variable, else the general one, else http/protobuf."""
    for variable in (OTEL_EXPORTER_OTLP_TRACES_PROTOCOL, OTEL_EXPORTER_OTLP_PROTOCOL):
        value = environ.get(variable, "").strip()
        if value:
            if value not in PROTOCOLS:
                raise SettingsError(variable, f"'{value}' is not supported: expected one of "
                                    f"{list(PROTOCOLS)}")  # fmt: skip
            return value
    return DEFAULT_PROTOCOL


def otlp_exporter(protocol: str) -> SpanExporter:
    """OTLP's exporter for ``protocol``; each reads its endpoint and options itself."""
    if protocol == "grpc":
        from opentelemetry.exporter.otlp.proto.grpc.trace_exporter import (
            OTLPSpanExporter as GrpcSpanExporter,
        )

        return GrpcSpanExporter()
    from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter

    return OTLPSpanExporter()


def service_resource() -> Resource:
    """OpenTelemetry's resource from the environment, named ``v2serve`` unless it says."""
    resource = Resource.create({SERVICE_VERSION: package_version("v2serve")})
    if str(resource.attributes.get(SERVICE_NAME, "")).startswith("unknown_service"):
        resource = resource.merge(Resource({SERVICE_NAME: SERVICE}))
    return resource


def build_provider(
    environ: Mapping[str, str] | None = None, exporter: SpanExporter | None = None
) -> TracerProvider:
    """A provider with a batch processor on the OTLP exporter the environment chooses."""
    environ = os.environ if environ is None else environ
    chosen = exporter or otlp_exporter(exporter_protocol(environ))
    provider = TracerProvider(resource=service_resource())
    provider.add_span_processor(BatchSpanProcessor(chosen))
    return provider


def _headers(payload: InferenceRequest) -> Mapping[str, Any]:
    parameters = payload.parameters
    headers = getattr(parameters, "headers", None) if parameters is not None else None
    return headers or {}


def _backend(model: MLModel) -> str:
    described = getattr(model, "backend_parameters", None)
    return str(described.get("inference_backend", "")) if isinstance(described, dict) else ""


class RequestTracer:
    """Turns a finished request into spans, when the trace policy takes it."""

    def __init__(self, provider: TracerProvider, policy: TracePolicy):
        self.provider = provider
        self.policy = policy
        self.tracer = provider.get_tracer("v2serve", package_version("v2serve"))

    def record(
        self,
        name: str,
        model: MLModel | None,
        payload: InferenceRequest,
        error: BaseException | None,
        started_ns: int,
        elapsed_ns: int,
        phases: Phases,
        received_ns: int | None = None,
        protocol: str = "",
    ) -> None:
        """``started_ns`` and ``received_ns`` are ``perf_counter_ns`` readings: when the
        data plane began, and when the protocol adapter received the request. A failure
        here is logged and never reaches the request, which has been answered already."""
        try:
            self._record(
                name, model, payload, error, started_ns, elapsed_ns, phases, received_ns, protocol
            )
        except Exception:  # noqa: BLE001 - a trace is never worth a failed request
            logger.exception("recording the trace of a request to model '%s' failed", name)

    def _record(
        self,
        name: str,
        model: MLModel | None,
        payload: InferenceRequest,
        error: BaseException | None,
        started_ns: int,
        elapsed_ns: int,
        phases: Phases,
        received_ns: int | None,
        protocol: str,
    ) -> None:
        headers = _headers(payload)
        parent = propagate.extract(headers)
        parent_context = trace.get_current_span(parent).get_span_context()
        propagated = parent_context.is_valid and parent_context.trace_flags.sampled
        if not self.policy.sample(name, propagated):
            return
        to_epoch = time.time_ns() - time.perf_counter_ns()
        begun = (received_ns if received_ns is not None else started_ns) + to_epoch
        status = 200 if error is None else error_status(error)
        attributes: dict[str, Any] = {
            "v2serve.model": name,
            "v2serve.batch_size": batch_size(payload),
            "v2serve.status": status,
        }
        if model is not None:
            attributes["v2serve.version"] = model.version or ""
            attributes["v2serve.backend"] = _backend(model)
        if phases.cache_hit is not None:
            attributes["v2serve.cache_hit"] = phases.cache_hit
        if protocol:
            attributes["v2serve.protocol"] = protocol
        found_id = request_id(payload)
        if found_id:
            attributes["v2serve.request_id"] = found_id
        root = self.tracer.start_span(
            ROOT_SPAN, parent, SpanKind.SERVER, attributes=attributes, start_time=begun
        )
        if root.is_recording():
            self._phases(root, begun, started_ns + to_epoch, phases)
            if error is not None:
                root.set_attribute("v2serve.error", str(error))
                if status >= 500:
                    root.set_status(Status(StatusCode.ERROR, str(error)))
        root.end(end_time=started_ns + elapsed_ns + to_epoch)

    def _phases(self, root: trace.Span, begun: int, started: int, phases: Phases) -> None:
        context = trace.set_span_in_context(root)
        compute = "cache" if phases.cache_hit else "compute"
        laps = (
            ("decode", started - begun),
            ("queue", phases.queue_ns),
            ("validation", phases.input_ns),
            (compute, phases.infer_ns),
            ("encode", phases.output_ns),
        )
        at = begun
        for span_name, duration in laps:
            if duration <= 0:
                continue
            self.tracer.start_span(span_name, context, start_time=at).end(end_time=at + duration)
            at += duration

    def shutdown(self) -> None:
        """Exports what is still queued; the provider also does it at interpreter exit."""
        self.provider.shutdown()
