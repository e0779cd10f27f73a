"""OpenTelemetry spans for inference requests, recorded after the fact.

A request already carries its phase timings (``runtimes.timings.Phases``, for statistics
and metrics), so nothing is traced while it runs: when the data plane has answered, one
``infer`` span (kind SERVER) and a child per phase are built, finished, from the start
and end times it has. The runtime has no tracing code, and with tracing off the data
plane pays one ``is not None`` check per request.

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
    OTEL_SDK_DISABLED,
)
from opentelemetry.sdk.resources import SERVICE_NAME, SERVICE_VERSION, Resource
from opentelemetry.sdk.trace import ReadableSpan, SpanProcessor, TracerProvider
from opentelemetry.sdk.trace.export import BatchSpanProcessor, SpanExporter
from opentelemetry.sdk.util.instrumentation import InstrumentationScope
from opentelemetry.trace import SpanContext, SpanKind, Status, StatusCode, TraceFlags

from ..errors import SettingsError
from ..runtime_api import description_of
from ..timings import Phases
from .metrics import error_status
from .observer import batch_size, request_id
from .trace_policy import TracePolicy

PROTOCOLS = ("http/protobuf", "grpc")
DEFAULT_PROTOCOL = "http/protobuf"
SERVICE = "v2serve"
ROOT_SPAN = "infer"
SAMPLED = TraceFlags(TraceFlags.SAMPLED)
UNSET = Status(StatusCode.UNSET)

logger = logging.getLogger("v2serve.tracing")


def exporter_protocol(environ: Mapping[str, str]) -> str:
    """The OTLP transport: the traces variable, else the general one, else http/protobuf."""
    for variable in (OTEL_EXPORTER_OTLP_TRACES_PROTOCOL, OTEL_EXPORTER_OTLP_PROTOCOL):
        value = environ.get(variable, "").strip()
        if value:
            if value not in PROTOCOLS:
                raise SettingsError(
                    variable, f"'{value}' is not supported: expected one of {list(PROTOCOLS)}"
                )
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


def sdk_disabled(environ: Mapping[str, str]) -> bool:
    """OpenTelemetry's own off switch, ``OTEL_SDK_DISABLED=true``."""
    return environ.get(OTEL_SDK_DISABLED, "").strip().lower() == "true"


def build_tracer(
    policy: TracePolicy,
    environ: Mapping[str, str] | None = None,
    processor: SpanProcessor | None = None,
) -> "RequestTracer":
    """A tracer on a batch processor in front of the OTLP exporter the environment
    chooses. The SDK's provider reads the sampler and the id generator from the
    environment, and flushes the processor at interpreter exit."""
    environ = os.environ if environ is None else environ
    resource = service_resource()
    chosen = processor or BatchSpanProcessor(otlp_exporter(exporter_protocol(environ)))
    provider = TracerProvider(resource=resource)
    provider.add_span_processor(chosen)
    return RequestTracer(policy, chosen, resource, provider)


def _headers(payload: InferenceRequest) -> Mapping[str, Any]:
    parameters = payload.parameters
    headers = getattr(parameters, "headers", None) if parameters is not None else None
    return headers or {}


def _backend(model: MLModel) -> str:
    """The backend a version reports through the runtime interface (empty for a foreign
    ``MLModel``), not an attribute read by name."""
    return str(description_of(model).parameters.get("inference_backend", ""))


def _laps(begun: int, started: int, phases: Phases) -> list[tuple[str, int, int]]:
    """(name, start, end) of each phase that took time, one after the other."""
    compute = "cache" if phases.cache_hit else "compute"
    durations = (
        ("decode", started - begun),
        ("queue", phases.queue_ns),
        ("validation", phases.input_ns),
        (compute, phases.infer_ns),
        ("encode", phases.output_ns),
    )
    laps, at = [], begun
    for name, duration in durations:
        if duration > 0:
            laps.append((name, at, at + duration))
            at += duration
    return laps


def _attributes(
    name: str,
    model: MLModel | None,
    payload: InferenceRequest,
    status: int,
    phases: Phases,
    protocol: str,
) -> dict[str, Any]:
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
    return attributes


class RequestTracer:
    """Turns a finished request into spans, when the trace policy and the sampler take it.

    The spans are built finished, as the SDK's ``ReadableSpan``, and handed to the span
    processor: a live SDK span (locks, limits, a sampler call per child) cost about 40 µs
    here, a finished one about 4 µs. The root goes through the provider's sampler
    (``OTEL_TRACES_SAMPLER``) and ids as a live span would; its children follow it.
    """

    def __init__(
        self,
        policy: TracePolicy,
        processor: SpanProcessor,
        resource: Resource,
        provider: TracerProvider,
    ):
        self.policy = policy
        self.processor = processor
        self.resource = resource
        self.provider = provider
        self.scope = InstrumentationScope(SERVICE, package_version("v2serve"))

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
        if self.policy.silent(name):
            return
        headers = _headers(payload)
        parent = propagate.extract(headers) if headers else None
        parent_span = trace.get_current_span(parent).get_span_context()
        propagated = parent_span.is_valid and parent_span.trace_flags.sampled
        if not self.policy.sample(name, propagated):
            return
        status = 200 if error is None else error_status(error)
        attributes = _attributes(name, model, payload, status, phases, protocol)
        ids = self.provider.id_generator
        trace_id = parent_span.trace_id if parent_span.is_valid else ids.generate_trace_id()
        sampled = self.provider.sampler.should_sample(
            parent, trace_id, ROOT_SPAN, SpanKind.SERVER, attributes
        )
        if not sampled.decision.is_sampled():
            return
        attributes.update(sampled.attributes)
        state = sampled.trace_state
        root = SpanContext(trace_id, ids.generate_span_id(), False, SAMPLED, state)
        to_epoch = time.time_ns() - time.perf_counter_ns()
        begun = (received_ns if received_ns is not None else started_ns) + to_epoch
        for lap, start, end in _laps(begun, started_ns + to_epoch, phases):
            child = SpanContext(trace_id, ids.generate_span_id(), False, SAMPLED, state)
            self._emit(lap, child, root, SpanKind.INTERNAL, {}, start, end, UNSET)
        outcome = UNSET
        if error is not None:
            attributes["v2serve.error"] = str(error)
            if status >= 500:
                outcome = Status(StatusCode.ERROR, str(error))
        end = started_ns + elapsed_ns + to_epoch
        above = parent_span if parent_span.is_valid else None
        self._emit(ROOT_SPAN, root, above, SpanKind.SERVER, attributes, begun, end, outcome)

    def _emit(
        self,
        name: str,
        context: SpanContext,
        parent: SpanContext | None,
        kind: SpanKind,
        attributes: dict[str, Any],
        start: int,
        end: int,
        status: Status,
    ) -> None:
        self.processor.on_end(
            ReadableSpan(
                name,
                context,
                parent,
                resource=self.resource,
                attributes=attributes,
                kind=kind,
                status=status,
                start_time=start,
                end_time=end,
                instrumentation_scope=self.scope,
            )
        )

    def shutdown(self) -> None:
        """Exports what is still queued; the provider also does it at interpreter exit."""
        self.provider.shutdown()
