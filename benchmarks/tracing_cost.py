"""Per-request cost of tracing, off and on, in microseconds.

Off, a request pays what the tracing hooks add to the hot path: one ``perf_counter_ns``
in the protocol adapter, two more arguments to ``V2DataPlane.infer`` and one
``is not None`` check; measured here as the same calls on a stand-in, against the call
without them. On, ``RequestTracer.record`` (what the data plane calls once per request)
with the SDK's batch processor in front of an exporter that drops the spans (on the
processor's thread), so the figure is span building and queueing, not the network: with
and without a client ``traceparent``, and with the policy declining (level OFF, rate
1000). Last, what the OTLP exporter adds on top, per request: encoding a batch of those
spans as the protobuf it POSTs (on the processor's thread, holding the GIL meanwhile).

    .venv/bin/python -m benchmarks.tracing_cost [--quick] [--json]

``make bench`` runs it in its own process (``--json``: one line, label -> µs) and puts the
figures beside cell (g)'s throughput with tracing off and on.
"""

import argparse
import json
import statistics
import time
from collections.abc import Callable, Sequence
from types import SimpleNamespace
from typing import Any

from mlserver.types import InferenceRequest, Parameters, RequestInput
from opentelemetry.exporter.otlp.proto.common.trace_encoder import encode_spans
from opentelemetry.sdk.trace import ReadableSpan, SpanProcessor
from opentelemetry.sdk.trace.export import (
    BatchSpanProcessor,
    SimpleSpanProcessor,
    SpanExporter,
    SpanExportResult,
)

from runtimes.observability.trace_policy import TracePolicy, TraceSetting
from runtimes.observability.tracing import build_tracer
from runtimes.timings import Phases

N = 20_000
ROUNDS = 5
EXPORT_BATCH_REQUESTS = 85
"""About one export of the SDK's batch processor (512 spans) of six-span requests."""
TRACEPARENT = "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01"


class _Dropping(SpanExporter):
    def export(self, spans: Sequence[ReadableSpan]) -> SpanExportResult:
        return SpanExportResult.SUCCESS


class _Keeping(SpanExporter):
    def __init__(self) -> None:
        self.spans: list[ReadableSpan] = []

    def export(self, spans: Sequence[ReadableSpan]) -> SpanExportResult:
        self.spans.extend(spans)
        return SpanExportResult.SUCCESS


class _Plane:
    """The data plane's hook and nothing else: with tracing off, ``tracer`` is None."""

    tracer: Any = None

    def with_hook(
        self, payload: Any, name: str, version: Any, received: Any, protocol: str
    ) -> None:
        if self.tracer is not None:
            raise AssertionError("tracing is off")

    def without_hook(self, payload: Any, name: str, version: Any) -> None:
        pass


def _median_us(body: Callable[[], None], n: int) -> float:
    rounds = []
    for _ in range(ROUNDS):
        started = time.perf_counter_ns()
        for _ in range(n):
            body()
        rounds.append((time.perf_counter_ns() - started) / n / 1000)
    return statistics.median(rounds)


def off_cost_us(n: int = N) -> float:
    plane, payload = _Plane(), object()

    def hooked() -> None:
        received = time.perf_counter_ns()
        plane.with_hook(payload, "iris", None, received, "rest")

    def bare() -> None:
        plane.without_hook(payload, "iris", None)

    return _median_us(hooked, n * 10) - _median_us(bare, n * 10)


def _payload(headers: dict[str, str]) -> InferenceRequest:
    return InferenceRequest(
        id="abc",
        parameters=Parameters(headers={"x-request-id": "req-1", **headers}),
        inputs=[RequestInput(name="input-0", shape=[1, 4], datatype="FP64", data=[0.0] * 4)],
    )


def _recorder(processor: SpanProcessor, setting: TraceSetting, headers: dict[str, str]) -> Any:
    """(tracer, one request's ``record``) as the data plane calls it once per request."""
    tracer = build_tracer(TracePolicy(setting), processor=processor)
    model: Any = SimpleNamespace(
        name="iris", version="2", backend_parameters={"inference_backend": "onnx"}
    )
    payload = _payload(headers)
    phases = Phases(queue_ns=20_000, input_ns=100_000, infer_ns=200_000, output_ns=30_000)

    def record() -> None:
        now = time.perf_counter_ns()
        tracer.record("iris", model, payload, None, now, 400_000, phases, now - 50_000, "rest")

    return tracer, record


def on_cost_us(setting: TraceSetting, headers: dict[str, str], n: int = N) -> float:
    processor = BatchSpanProcessor(_Dropping(), max_queue_size=1 << 16)
    tracer, record = _recorder(processor, setting, headers)
    try:
        return _median_us(record, n)
    finally:
        tracer.shutdown()


def export_cost_us(requests: int = EXPORT_BATCH_REQUESTS) -> float:
    """The OTLP/HTTP exporter's share per request, which the figures above leave out (their
    exporter drops spans): encoding a batch of real requests' spans as the protobuf it
    POSTs. It runs on the batch processor's thread, but holds the GIL while it does."""
    keeping = _Keeping()
    tracer, record = _recorder(SimpleSpanProcessor(keeping), TraceSetting(), {})
    try:
        for _ in range(requests):
            record()
    finally:
        tracer.shutdown()
    spans = keeping.spans

    def encode() -> None:
        encode_spans(spans).SerializeToString()

    return _median_us(encode, ROUNDS) / requests


OFF = "off (hooks only)"
"""The label of the figure issue 16 bounds: under 1 µs a request."""
NO_PARENT, WITH_PARENT = "on, no traceparent", "on, with traceparent"
LEVEL_OFF, RATE, EXPORT = "on, level OFF", "on, rate 1000", "on, OTLP encoding"
LABELS = (OFF, NO_PARENT, WITH_PARENT, LEVEL_OFF, RATE, EXPORT)
"""The figures' labels, in the order printed (the report describes each)."""


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="a quarter of the calls")
    parser.add_argument("--json", action="store_true", help="one JSON line: label -> µs")
    args = parser.parse_args(argv)
    n = N // 4 if args.quick else N
    results = {
        OFF: off_cost_us(n),
        NO_PARENT: on_cost_us(TraceSetting(), {}, n),
        WITH_PARENT: on_cost_us(TraceSetting(), {"traceparent": TRACEPARENT}, n),
        LEVEL_OFF: on_cost_us(TraceSetting(level="OFF"), {}, n),
        RATE: on_cost_us(TraceSetting(rate=1000), {}, n),
        EXPORT: export_cost_us(),
    }
    if args.json:
        print(json.dumps(results), flush=True)
        return
    for label, us in results.items():
        print(f"{label:24s} {us:7.3f} µs per request (median of {ROUNDS} rounds)")


if __name__ == "__main__":
    main()
