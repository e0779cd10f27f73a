"""The request series kept as plain numbers (``ServingMetrics``) render exactly what
prometheus_client's own Counter, Gauge and Histogram render for the same requests: the
reference below is the unoptimised path, built here with prometheus_client itself."""

from types import SimpleNamespace

from hypothesis import given, settings
from hypothesis import strategies as st
from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, generate_latest
from prometheus_client.parser import text_string_to_metric_families

from runtimes.errors import InvalidInput, ModelUnavailable, NotReady
from runtimes.observability.metrics import (
    BATCH_BUCKETS,
    LABELS,
    PHASES,
    SECONDS_BUCKETS,
    ServingMetrics,
    failure_reason,
)
from runtimes.observability.observer import RequestObserver
from runtimes.repository.states import ModelStates, VersionState
from runtimes.timings import Phases

from .test_observability import payload


class Reference:
    """v2serve's request metrics as they were, one prometheus_client call per value."""

    def __init__(self, registry: CollectorRegistry):
        def counter(name: str, labels: tuple[str, ...] = LABELS) -> Counter:
            return Counter(name, "doc", labels, registry=registry)

        def histogram(name: str, buckets: tuple[float, ...], labels=LABELS) -> Histogram:
            return Histogram(name, "doc", labels, buckets=buckets, registry=registry)

        self.success = counter("nv_inference_request_success")
        self.failure = counter("nv_inference_request_failure", (*LABELS, "reason"))
        self.count = counter("nv_inference_count")
        self.exec = counter("nv_inference_exec_count")
        self.request_us = counter("nv_inference_request_duration_us")
        self.queue_us = counter("nv_inference_queue_duration_us")
        self.phase_us = [counter(f"nv_inference_compute_{p}_duration_us") for p in PHASES]
        self.request_s = histogram("v2serve_request_duration_seconds", SECONDS_BUCKETS)
        self.queue_s = histogram("v2serve_queue_duration_seconds", SECONDS_BUCKETS)
        self.compute_s = histogram(
            "v2serve_compute_duration_seconds", SECONDS_BUCKETS, (*LABELS, "phase")
        )
        self.batch = histogram("v2serve_batch_size", BATCH_BUCKETS)
        self.inflight = Gauge("v2serve_inflight_requests", "doc", LABELS, registry=registry)
        self.every = [
            self.success, self.count, self.exec, self.request_us, self.queue_us,
            *self.phase_us, self.request_s, self.queue_s, self.batch, self.inflight,
        ]  # fmt: skip

    def touch(self, labels: tuple[str, str]) -> None:
        """A series appears, all zeros, the first time its labels are used (as before)."""
        for metric in self.every:
            metric.labels(*labels)
        for phase in PHASES:
            self.compute_s.labels(*labels, phase)

    def succeeded(self, labels, rows: int, total_ns: int, phases: Phases) -> None:
        self.touch(labels)
        self.success.labels(*labels).inc()
        self.count.labels(*labels).inc(rows)
        self.exec.labels(*labels).inc()
        self.request_us.labels(*labels).inc(total_ns / 1000)
        self.queue_us.labels(*labels).inc(phases.queue_ns / 1000)
        self.request_s.labels(*labels).observe(total_ns / 1e9)
        self.queue_s.labels(*labels).observe(phases.queue_ns / 1e9)
        for phase, ns, us in zip(
            PHASES, (phases.input_ns, phases.infer_ns, phases.output_ns), self.phase_us,
            strict=True,
        ):  # fmt: skip
            us.labels(*labels).inc(ns / 1000)
            self.compute_s.labels(*labels, phase).observe(ns / 1e9)
        self.batch.labels(*labels).observe(rows)

    def failed(self, labels, reason: str) -> None:
        self.touch(labels)
        self.failure.labels(*labels, reason).inc()


def request_samples(registry: CollectorRegistry) -> dict[tuple, float]:
    names = {"nv_inference", "v2serve_request", "v2serve_queue", "v2serve_compute",
             "v2serve_batch_size", "v2serve_inflight"}  # fmt: skip
    found = {}
    for family in text_string_to_metric_families(generate_latest(registry).decode()):
        for sample in family.samples:
            if sample.name.endswith("_created") or not sample.name.startswith(tuple(names)):
                continue
            found[(sample.name, tuple(sorted(sample.labels.items())))] = sample.value
    return found


ERRORS = [
    InvalidInput("iris", "input-0", "has the wrong shape", "FP64 [-1, 4]", "FP64 [1, 3]"),
    NotReady("iris", "2"),
    ModelUnavailable("nope"),
]
durations = st.integers(min_value=0, max_value=20_000_000_000)
requests = st.lists(
    st.tuples(
        st.sampled_from([("iris", "2"), ("iris", "3"), ("wine", "1"), None]),
        st.integers(min_value=1, max_value=5000),
        st.none() | st.sampled_from(ERRORS),
        st.tuples(durations, durations, durations, durations, durations),
    ),
    max_size=40,
)


@settings(max_examples=60, deadline=None)
@given(requests)
def test_plain_counters_render_what_prometheus_client_renders(calls):
    registry, expected = CollectorRegistry(), CollectorRegistry()
    states = ModelStates()
    for model, version in (("iris", "2"), ("iris", "3"), ("wine", "1")):
        states.set(model, version, VersionState.READY)
    metrics = ServingMetrics(states, registry)
    observer = RequestObserver(states, metrics, None)
    reference = Reference(expected)
    for served, rows, error, (total, queue, infer, inputs, output) in calls:
        phases = Phases(queue_ns=queue, input_ns=inputs, infer_ns=infer, output_ns=output)
        model = SimpleNamespace(name=served[0], version=served[1]) if served else None
        name = served[0] if served else "unknown"
        if model is not None:
            observer.started(model)
        observer.finished(name, model, payload(rows), error, total, phases)
        labels = served if served else ("", "")
        if error is None:
            reference.succeeded(labels, rows, total, phases)
        else:
            reference.failed(labels, failure_reason(error))
    assert request_samples(registry) == request_samples(expected)


def test_a_request_in_flight_shows_and_a_retired_version_goes():
    registry, states = CollectorRegistry(), ModelStates()
    metrics = ServingMetrics(states, registry)
    observer = RequestObserver(states, metrics, None)
    iris = SimpleNamespace(name="iris", version="2")
    observer.started(iris)
    observer.started(iris)
    inflight = ("v2serve_inflight_requests", (("model", "iris"), ("version", "2")))
    assert request_samples(registry)[inflight] == 2
    observer.finished("iris", iris, payload(1), None, 1000, Phases())
    assert request_samples(registry)[inflight] == 1
    metrics.forget("iris", "2")
    assert request_samples(registry) == {}
