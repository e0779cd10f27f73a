"""Prometheus metrics per model and *served* version, on MLServer's metrics port.

MLServer labels its own counters with the requested version ("None" for unversioned
REST, "" for gRPC) and has no latency histograms; these use the version that answered.
Triton's names are kept where Triton has the metric (its durations are counters of
microseconds); ``v2serve_*`` histograms in seconds give quantiles. docs/observability.md
lists every metric.

The endpoint serves prometheus_client's default ``REGISTRY`` in-process. Each
(model, version) keeps its label children in a dict, so a request costs dictionary
lookups and increments rather than ``labels()`` calls (benchmarks/observability_cost.py).
"""

import asyncio
from collections.abc import Iterator
from dataclasses import dataclass

from mlserver.errors import MLServerError
from prometheus_client import REGISTRY, CollectorRegistry, Counter, Gauge, Histogram
from prometheus_client.core import (
    CounterMetricFamily,
    GaugeMetricFamily,
    HistogramMetricFamily,
    Metric,
)
from prometheus_client.metrics import MetricWrapperBase
from prometheus_client.registry import Collector

from ..batching import LiveBatchers
from ..execution import Executions
from ..repository.states import ModelStates, VersionState
from ..timings import Phases

LABELS = ("model", "version")
SECONDS_BUCKETS = (
    0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05,
    0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0,
)  # fmt: skip
BATCH_BUCKETS = (1, 2, 4, 8, 16, 32, 64, 128, 256, 512, 1024, 4096, 16384)
LOAD_BUCKETS = (0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0, 120.0, 300.0)
PHASES = ("input", "infer", "output")

# The fixed set of failure reasons, from the error's HTTP status.
REASON_BY_STATUS = {
    400: "invalid_input",
    404: "not_found",
    413: "too_large",
    429: "rejected",
    503: "unavailable",
    504: "timeout",
}
REASONS = (*REASON_BY_STATUS.values(), "cancelled", "internal")


def error_status(error: BaseException) -> int:
    """The HTTP status a failure is answered with; 499 (nginx's) for a client gone away."""
    if isinstance(error, MLServerError):
        return int(error.status_code)
    return 499 if isinstance(error, asyncio.CancelledError) else 500


def failure_reason(error: BaseException) -> str:
    status = error_status(error)
    if status == 499:
        return "cancelled"
    if status in REASON_BY_STATUS:
        return REASON_BY_STATUS[status]
    return "invalid_input" if 400 <= status < 500 else "internal"


@dataclass
class _Series:
    """The label children of one (model, version)."""

    labels: tuple[str, str]
    success: Counter
    failures: dict[str, Counter]
    inferences: Counter
    executions: Counter
    request_us: Counter
    queue_us: Counter
    phase_us: tuple[Counter, Counter, Counter]
    request_seconds: Histogram
    queue_seconds: Histogram
    phase_seconds: tuple[Histogram, Histogram, Histogram]
    batch: Histogram
    inflight: Gauge


class ServingMetrics:
    def __init__(
        self,
        states: ModelStates,
        registry: CollectorRegistry = REGISTRY,
        executions: Executions | None = None,
        batchers: LiveBatchers | None = None,
    ):
        """``executions`` and ``batchers``: the server's own (``runtimes.server``); none
        given, the collectors show none."""
        self.registry = registry
        self._series: dict[tuple[str, str], _Series] = {}

        def counter(name: str, doc: str, labels: tuple[str, ...] = LABELS) -> Counter:
            return Counter(name, doc, labels, registry=registry)

        def histogram(
            name: str, doc: str, buckets: tuple[float, ...], labels: tuple[str, ...] = LABELS
        ) -> Histogram:
            return Histogram(name, doc, labels, buckets=buckets, registry=registry)

        self.success = counter("nv_inference_request_success", "Successful inference requests")
        self.failure = counter(
            "nv_inference_request_failure",
            "Failed inference requests, by reason",
            (*LABELS, "reason"),
        )
        self.inference_count = counter(
            "nv_inference_count", "Inferences performed: the sum of successful batch sizes"
        )
        self.exec_count = counter(
            "nv_inference_exec_count", "Model executions: one per successful request"
        )
        self.request_us = counter(
            "nv_inference_request_duration_us",
            "Cumulative end-to-end duration of successful requests, microseconds",
        )
        self.queue_us = counter(
            "nv_inference_queue_duration_us",
            "Cumulative time successful requests waited before the model, microseconds",
        )
        self.phase_us = tuple(
            counter(
                f"nv_inference_compute_{phase}_duration_us",
                f"Cumulative compute {phase} duration of successful requests, microseconds",
            )
            for phase in PHASES
        )
        self.request_seconds = histogram(
            "v2serve_request_duration_seconds",
            "End-to-end duration of successful inference requests in the data plane",
            SECONDS_BUCKETS,
        )
        self.queue_seconds = histogram(
            "v2serve_queue_duration_seconds",
            "Time a successful request waited before the model",
            SECONDS_BUCKETS,
        )
        self.compute_seconds = histogram(
            "v2serve_compute_duration_seconds",
            "Compute time of successful requests, by phase: input (decode and check), "
            "infer (estimator or cache), output (response tensors)",
            SECONDS_BUCKETS,
            (*LABELS, "phase"),
        )
        self.batch_size = histogram(
            "v2serve_batch_size", "Rows per successful request", BATCH_BUCKETS
        )
        self.inflight = Gauge(
            "v2serve_inflight_requests",
            "Inference requests being served now",
            LABELS,
            registry=registry,
            multiprocess_mode="livesum",
        )
        self.load_seconds = histogram(
            "v2serve_model_load_duration_seconds",
            "Duration of model version loads, including warm-up, successful or not",
            LOAD_BUCKETS,
        )
        self.load_failures = counter(
            "v2serve_model_load_failures", "Model version loads that failed"
        )
        self._states = StatesCollector(states)
        registry.register(self._states)
        self._batching = BatchingCollector(states, batchers or LiveBatchers())
        registry.register(self._batching)
        self._executions = ExecutorCollector(executions or Executions())
        registry.register(self._executions)

    def close(self) -> None:
        """Unregister everything, so another instance can use the same registry."""
        for collector in (
            self.success, self.failure, self.inference_count, self.exec_count,
            self.request_us, self.queue_us, *self.phase_us, self.request_seconds,
            self.queue_seconds, self.compute_seconds, self.batch_size, self.inflight,
            self.load_seconds, self.load_failures, self._states, self._batching,
            self._executions,
        ):  # fmt: skip
            self.registry.unregister(collector)

    def series(self, model: str, version: str) -> _Series:
        found = self._series.get((model, version))
        if found is None:
            found = self._series[(model, version)] = self._new_series(model, version)
        return found

    def _new_series(self, model: str, version: str) -> _Series:
        labels = (model, version)
        phase_us = tuple(c.labels(*labels) for c in self.phase_us)
        phase_seconds = tuple(self.compute_seconds.labels(*labels, p) for p in PHASES)
        return _Series(
            labels=labels,
            success=self.success.labels(*labels),
            failures={},
            inferences=self.inference_count.labels(*labels),
            executions=self.exec_count.labels(*labels),
            request_us=self.request_us.labels(*labels),
            queue_us=self.queue_us.labels(*labels),
            phase_us=(phase_us[0], phase_us[1], phase_us[2]),
            request_seconds=self.request_seconds.labels(*labels),
            queue_seconds=self.queue_seconds.labels(*labels),
            phase_seconds=(phase_seconds[0], phase_seconds[1], phase_seconds[2]),
            batch=self.batch_size.labels(*labels),
            inflight=self.inflight.labels(*labels),
        )

    def succeeded(self, series: _Series, batch_size: int, total_ns: int, phases: Phases) -> None:
        series.success.inc()
        series.inferences.inc(batch_size)
        series.executions.inc()
        series.request_us.inc(total_ns / 1000)
        series.queue_us.inc(phases.queue_ns / 1000)
        series.request_seconds.observe(total_ns / 1e9)
        series.queue_seconds.observe(phases.queue_ns / 1e9)
        for ns, us, seconds in zip(
            (phases.input_ns, phases.infer_ns, phases.output_ns),
            series.phase_us,
            series.phase_seconds,
            strict=True,
        ):
            us.inc(ns / 1000)
            seconds.observe(ns / 1e9)
        series.batch.observe(batch_size)

    def failed(self, series: _Series, reason: str) -> None:
        counter = series.failures.get(reason)
        if counter is None:
            counter = series.failures[reason] = self.failure.labels(*series.labels, reason)
        counter.inc()

    def load_finished(self, model: str, version: str, seconds: float, ok: bool) -> None:
        self.load_seconds.labels(model, version).observe(seconds)
        if not ok:
            self.load_failures.labels(model, version).inc()

    # A LifecycleListener (runtimes.repository.lifecycle).
    def version_loaded(self, model: str, version: str, seconds: float) -> None:
        self.load_finished(model, version, seconds, ok=True)

    def load_failed(self, model: str, version: str, seconds: float, reason: str) -> None:
        self.load_finished(model, version, seconds, ok=False)

    def version_retired(self, model: str, version: str) -> None:
        self.forget(model, version)

    def forget(self, model: str, version: str) -> None:
        """Drop a retired version's request series, so cardinality follows what is served.

        Load histograms and failures stay: they describe attempts, not a served version.
        """
        if self._series.pop((model, version), None) is None:
            return
        for metric in (
            self.success, self.inference_count, self.exec_count, self.request_us,
            self.queue_us, *self.phase_us, self.request_seconds, self.queue_seconds,
            self.batch_size, self.inflight,
        ):  # fmt: skip
            _remove(metric, model, version)
        for phase in PHASES:
            _remove(self.compute_seconds, model, version, phase)
        for reason in REASONS:
            _remove(self.failure, model, version, reason)


def _remove(metric: MetricWrapperBase, *labels: str) -> None:
    try:
        metric.remove(*labels)
    except KeyError:
        pass


class StatesCollector(Collector):
    """``v2serve_model_versions{model,state}``, read from the version states when scraped."""

    def __init__(self, states: ModelStates):
        self.states = states

    def collect(self) -> Iterator[Metric]:
        family = GaugeMetricFamily(
            "v2serve_model_versions",
            "Model versions known to the repository, by state",
            labels=["model", "state"],
        )
        counts: dict[str, dict[VersionState, int]] = {}
        for status in self.states.all():
            per_model = counts.setdefault(status.model, dict.fromkeys(VersionState, 0))
            per_model[status.state] += 1
        for model in sorted(counts):
            for state, count in counts[model].items():
                family.add_metric([model, state.value], count)
        yield family


class PredictionLogMetrics:
    """What became of the predictions chosen for the prediction log, per model and served
    version (``runtimes.observability.prediction_log``). A prediction is one request
    event and one response event; each counts once, in exactly one of the three."""

    def __init__(self, registry: CollectorRegistry = REGISTRY):
        self.registry = registry
        self.dropped = Counter(
            "v2serve_prediction_log_dropped",
            "Predictions not logged: the model's prediction-log queue was full, or the "
            "server stopped before they were sent",
            LABELS,
            registry=registry,
        )
        self.sent = Counter(
            "v2serve_prediction_log_sent",
            "Predictions whose request and response events the sink accepted",
            LABELS,
            registry=registry,
        )
        self.failed = Counter(
            "v2serve_prediction_log_failed",
            "Predictions whose events the sink refused or could not be reached for",
            LABELS,
            registry=registry,
        )

    def close(self) -> None:
        for counter in (self.dropped, self.sent, self.failed):
            self.registry.unregister(counter)

    def forget(self, model: str, version: str) -> None:
        for counter in (self.dropped, self.sent, self.failed):
            _remove(counter, model, version)


class BatchingCollector(Collector):
    """``v2serve_batching_stopped{model,version}``: 1 once a model's batcher stopped for
    good (an output without one row per input row, runtimes.batching), 0 while it batches;
    absent for a model that does not batch. Read from the live batchers when scraped, for
    the versions the repository still knows."""

    def __init__(self, states: ModelStates, batchers: LiveBatchers):
        self.states = states
        self.batchers = batchers

    def collect(self) -> Iterator[Metric]:
        family = GaugeMetricFamily(
            "v2serve_batching_stopped",
            "1 if adaptive batching stopped for good for a model version, 0 while it batches",
            labels=list(LABELS),
        )
        known = {(status.model, status.version) for status in self.states.all()}
        for batcher in sorted(self.batchers.all(), key=lambda b: (b.model, b.version)):
            if (batcher.model, batcher.version) in known:
                stopped = float(batcher.stopped is not None)
                family.add_metric([batcher.model, batcher.version], stopped)
        yield family
class ExecutorCollector(Collector):
    """Each served version's own threads (``runtimes.execution``), read when scraped:
    the pool's size, calls waiting for a thread, how long they waited, and how many
    calls ran on the event loop and how many off it."""

    def __init__(self, executions: Executions):
        self.executions = executions

    def collect(self) -> Iterator[Metric]:
        threads = GaugeMetricFamily(
            "v2serve_executor_threads", "Threads of the model version's own pool", labels=LABELS
        )
        waiting = GaugeMetricFamily(
            "v2serve_executor_queue_length",
            "Estimator calls waiting for one of the model version's threads",
            labels=LABELS,
        )
        queued = HistogramMetricFamily(
            "v2serve_executor_queue_seconds",
            "Time an estimator call waited for one of the model version's threads",
            labels=LABELS,
        )
        calls = CounterMetricFamily(
            "v2serve_executor_calls",
            "Direct estimator calls, by where they ran: on the event loop or off it",
            labels=[*LABELS, "where"],
        )
        for execution in self.executions:
            labels = [execution.model, execution.version]
            stats = execution.stats
            threads.add_metric(labels, execution.threads)
            waiting.add_metric(labels, stats.waiting)
            buckets, total = stats.histogram()
            queued.add_metric(labels, buckets, total)
            calls.add_metric([*labels, "loop"], stats.on_loop)
            calls.add_metric([*labels, "thread"], stats.off_loop)
        yield threads
        yield waiting
        yield queued
        yield calls
