"""Per-request cost of v2serve's metrics and request log line, in microseconds.

Runs ``RequestObserver.finished`` (what the data plane calls once per request) on its
own, in-process: metrics only, metrics plus a JSON log line, plus a text log line. The
log goes to /dev/null, so the figure is formatting and the write call, not a terminal.

    .venv/bin/python -m benchmarks.observability_cost
"""

import logging.config
import statistics
import time
from types import SimpleNamespace
from typing import Any

from mlserver.types import InferenceRequest, Parameters, RequestInput
from prometheus_client import CollectorRegistry

from runtimes.observability.logs import RequestLog, logging_config
from runtimes.observability.metrics import ServingMetrics
from runtimes.observability.observer import RequestObserver
from runtimes.repository.states import ModelStates
from runtimes.timings import Phases

N = 20_000
ROUNDS = 5


def _per_request_us(observer: RequestObserver) -> float:
    model: Any = SimpleNamespace(name="iris", version="2")
    payload = InferenceRequest(
        id="abc",
        parameters=Parameters(headers={"x-request-id": "req-1"}),
        inputs=[RequestInput(name="input-0", shape=[1, 4], datatype="FP64", data=[0.0] * 4)],
    )
    phases = Phases(queue_ns=20_000, input_ns=100_000, infer_ns=200_000, output_ns=30_000)
    rounds = []
    for _ in range(ROUNDS):
        started = time.perf_counter_ns()
        for _ in range(N):
            observer.started(model)
            observer.finished("iris", model, payload, None, 400_000, phases)
        rounds.append((time.perf_counter_ns() - started) / N / 1000)
    return statistics.median(rounds)


def main() -> None:
    with open("/dev/null", "w") as sink:
        results = {}
        for label, json_format, with_log in (
            ("nothing (no metrics, no log)", False, False),
            ("metrics", False, False),
            ("metrics + JSON log line", True, True),
            ("metrics + text log line", False, True),
        ):
            config = logging_config(json_format, "INFO")
            config["handlers"]["stdout"]["stream"] = sink
            logging.config.dictConfig(config)
            metrics = None
            if label != "nothing (no metrics, no log)":
                metrics = ServingMetrics(ModelStates(), CollectorRegistry())
            observer = RequestObserver(ModelStates(), metrics, RequestLog() if with_log else None)
            results[label] = _per_request_us(observer)
    for label, us in results.items():
        print(f"{label:32s} {us:7.2f} µs per request (median of {ROUNDS} x {N})")


if __name__ == "__main__":
    main()
