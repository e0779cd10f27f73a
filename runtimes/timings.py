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
    """Laps of one request's phases into its ``Phases``.
    A plain object rather than a context manager: this runs on every request."""

    __slots__ = ("phases", "last")

    def __init__(self, phases: Phases) -> None:
        self.phases = phases
        self.last = perf_counter_ns()

    def lap(self, phase: str) -> None:
        now = perf_counter_ns()
        attribute = f"{phase}_ns"
        setattr(self.phases, attribute, getattr(self.phases, attribute) + now - self.last)
        self.last = now
