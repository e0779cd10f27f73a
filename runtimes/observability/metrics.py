"""Prometheus metrics per model and *served* version, on MLServer's metrics port.

MLServer labels its own counters with the requested version ("None" for unversioned
REST, "" for gRPC) and has no latency histograms; these use the version that answered.
Triton's names are kept where Triton has the metric (its durations are counters of
microseconds); ``v2serve_*`` histograms in seconds give quantiles. docs/observability.md
lists every metric.

The endpoint serves prometheus_client's default ``REGISTRY`` in-process. The request
series are plain numbers per (model, version), rendered by a collector when scraped
(``RequestCollector``): a request costs a dictionary look-up and a few additions, no
prometheus_client lock or ``labels()`` call (benchmarks/observability_cost.py).
"""

import asyncio
from bisect import bisect_left
from collections.abc import Iterator

from mlserver.errors import MLServerError
from prometheus_client import REGISTRY, CollectorRegistry, Counter, Histogram
from prometheus_client.core import (
    CounterMetricFamily,
    GaugeMetricFamily,
    HistogramMetricFamily,
    Metric,
)
from prometheus_client.metrics import MetricWrapperBase
from prometheus_client.registry import Collector
from prometheus_client.utils import INF, floatToGoString

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


class Buckets:
    """One histogram child as plain numbers: a count per bucket (the last is +Inf) and a sum.
    ``observe`` is prometheus_client's rule (the first bound >= the value), without its lock:
    every request is observed on the event loop."""

    __slots__ = ("bounds", "counts", "sum")

    def __init__(self, bounds: tuple[float, ...]):
        self.bounds = bounds
        self.counts = [0] * (len(bounds) + 1)
        self.sum = 0.0

    def observe(self, value: float) -> None:
        self.counts[bisect_left(self.bounds, value)] += 1
        self.sum += value

    def cumulative(self) -> list[tuple[str, float]]:
        """``(le, count)`` pairs as Prometheus renders them (``le="1.0"``, ``"+Inf"``)."""
        pairs: list[tuple[str, float]] = []
        total = 0
        for bound, count in zip((*self.bounds, INF), self.counts, strict=True):
            total += count
            pairs.append((floatToGoString(bound), total))
        return pairs


class _Series:
    """What one (model, version) has served, as plain numbers read when scraped."""

    __slots__ = (
        "labels", "success", "failures", "inferences", "executions", "request_us",
        "queue_us", "phase_us", "request_seconds", "queue_seconds", "phase_seconds",
        "batch", "inflight",
    )  # fmt: skip

    def __init__(self, labels: tuple[str, str]):
        self.labels = labels
        self.success = 0
        self.failures: dict[str, int] = {}
        self.inferences = 0
        self.executions = 0
        self.request_us = 0.0
        self.queue_us = 0.0
        self.phase_us = [0.0, 0.0, 0.0]
        self.request_seconds = Buckets(SECONDS_BUCKETS)
        self.queue_seconds = Buckets(SECONDS_BUCKETS)
        self.phase_seconds = (
            Buckets(SECONDS_BUCKETS), Buckets(SECONDS_BUCKETS), Buckets(SECONDS_BUCKETS)
        )  # fmt: skip
        self.batch = Buckets(BATCH_BUCKETS)
        self.inflight = 0


class RequestCollector(Collector):
    """The request series of ``ServingMetrics``, rendered from its plain numbers when
    scraped: the names, labels, types and buckets that prometheus_client's Counter, Gauge
    and Histogram gave them before, without a lock and a label look-up per increment
    (tests/unit/test_metrics_drift.py compares the two)."""

    def __init__(self, series: dict[tuple[str, str], _Series]):
        self.series = series

    def collect(self) -> Iterator[Metric]:
        labels = list(LABELS)

        def counter(name: str, doc: str) -> CounterMetricFamily:
            return CounterMetricFamily(name, doc, labels=labels)

        def histogram(name: str, doc: str, extra: tuple[str, ...] = ()) -> HistogramMetricFamily:
            return HistogramMetricFamily(name, doc, labels=[*labels, *extra])

        success = counter("nv_inference_request_success", "Successful inference requests")
        failure = CounterMetricFamily(
            "nv_inference_request_failure",
            "Failed inference requests, by reason",
            labels=[*labels, "reason"],
        )
        inferences = counter(
            "nv_inference_count", "Inferences performed: the sum of successful batch sizes"
        )
        executions = counter(
            "nv_inference_exec_count", "Model executions: one per successful request"
        )
        request_us = counter(
            "nv_inference_request_duration_us",
            "Cumulative end-to-end duration of successful requests, microseconds",
        )
        queue_us = counter(
            "nv_inference_queue_duration_us",
            "Cumulative time successful requests waited before the model, microseconds",
        )
        phase_us = [
            counter(
                f"nv_inference_compute_{phase}_duration_us",
                f"Cumulative compute {phase} duration of successful requests, microseconds",
            )
            for phase in PHASES
        ]
        request_seconds = histogram(
            "v2serve_request_duration_seconds",
            "End-to-end duration of successful inference requests in the data plane",
        )
        queue_seconds = histogram(
            "v2serve_queue_duration_seconds", "Time a successful request waited before the model"
        )
        compute_seconds = histogram(
            "v2serve_compute_duration_seconds",
            "Compute time of successful requests, by phase: input (decode and check), "
            "infer (estimator or cache), output (response tensors)",
            ("phase",),
        )
        batch = histogram("v2serve_batch_size", "Rows per successful request")
        inflight = GaugeMetricFamily(
            "v2serve_inflight_requests", "Inference requests being served now", labels=labels
        )
        for series in list(self.series.values()):
            values = list(series.labels)
            success.add_metric(values, series.success)
            for reason, count in list(series.failures.items()):
                failure.add_metric([*values, reason], count)
            inferences.add_metric(values, series.inferences)
            executions.add_metric(values, series.executions)
            request_us.add_metric(values, series.request_us)
            queue_us.add_metric(values, series.queue_us)
            for family, total in zip(phase_us, series.phase_us, strict=True):
                family.add_metric(values, total)
            for histogram_family, buckets in (
                (request_seconds, series.request_seconds),
                (queue_seconds, series.queue_seconds),
                (batch, series.batch),
            ):
                histogram_family.add_metric(values, buckets.cumulative(), buckets.sum)
            for phase, buckets in zip(PHASES, series.phase_seconds, strict=True):
                compute_seconds.add_metric([*values, phase], buckets.cumulative(), buckets.sum)
            inflight.add_metric(values, series.inflight)
        yield from (success, failure, inferences, executions, request_us, queue_us, *phase_us)
        yield from (request_seconds, queue_seconds, compute_seconds, batch, inflight)


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
        self.requests = RequestCollector(self._series)
        """Also served on its own with parallel workers (``rest_metrics.MetricsApp``):
        requests are counted in this process, not in the workers' multiprocess files."""
        registry.register(self.requests)
        self.load_seconds = Histogram(
            "v2serve_model_load_duration_seconds",
            "Duration of model version loads, including warm-up, successful or not",
            LABELS,
            buckets=LOAD_BUCKETS,
            registry=registry,
        )
        self.load_failures = Counter(
            "v2serve_model_load_failures", "Model version loads that failed", LABELS,
            registry=registry,
        )  # fmt: skip
        self._states = StatesCollector(states)
        registry.register(self._states)
        self._batching = BatchingCollector(states, batchers or LiveBatchers())
        registry.register(self._batching)
        self._executions = ExecutorCollector(executions or Executions())
        registry.register(self._executions)

    def close(self) -> None:
        """Unregister everything, so another instance can use the same registry."""
        for collector in (
            self.requests, self.load_seconds, self.load_failures, self._states,
            self._batching, self._executions,
        ):  # fmt: skip
            self.registry.unregister(collector)

    def series(self, model: str, version: str) -> _Series:
        found = self._series.get((model, version))
        if found is None:
            found = self._series[(model, version)] = _Series((model, version))
        return found

    def succeeded(self, series: _Series, batch_size: int, total_ns: int, phases: Phases) -> None:
        series.success += 1
        series.inferences += batch_size
        series.executions += 1
        series.request_us += total_ns / 1000
        series.queue_us += phases.queue_ns / 1000
        series.request_seconds.observe(total_ns / 1e9)
        series.queue_seconds.observe(phases.queue_ns / 1e9)
        phase_us, phase_seconds = series.phase_us, series.phase_seconds
        for index, ns in enumerate((phases.input_ns, phases.infer_ns, phases.output_ns)):
            phase_us[index] += ns / 1000
            phase_seconds[index].observe(ns / 1e9)
        series.batch.observe(batch_size)

    def failed(self, series: _Series, reason: str) -> None:
        series.failures[reason] = series.failures.get(reason, 0) + 1

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
        self._series.pop((model, version), None)


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
