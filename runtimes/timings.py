"""Per-request phase timings: the data plane creates a ``Phases`` and hands it to the
runtime's ``infer`` (``runtimes.runtime_api``), which fills it in; statistics, metrics and
the request log read it afterwards."""

from dataclasses import dataclass
from time import perf_counter_ns


@dataclass
class Phases:
    queue_ns: int = 0
    input_ns: int = 0
    infer_ns: int = 0
    output_ns: int = 0
    cache_hit: bool | None = None
    """None: no cache looked at; for the request log."""


class PhaseClock:
    """Laps of one request's phases: ``phases.input_ns += clock.lap()``.
    A plain object rather than a context manager, and no attribute named by a string
    (``setattr``): this runs three times on every request."""

    __slots__ = ("last",)

    def __init__(self) -> None:
        self.last = perf_counter_ns()

    def lap(self) -> int:
        """Nanoseconds since the last lap, or since the clock started."""
        now = perf_counter_ns()
        elapsed = now - self.last
        self.last = now
        return elapsed
