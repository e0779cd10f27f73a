"""Per-request phase timings, handed from the data plane to the runtime through a
context variable (the runtime is built by MLServer's registry and cannot be injected)."""

from contextvars import ContextVar
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


current_phases: ContextVar[Phases | None] = ContextVar("v2serve_phases", default=None)


class PhaseClock:
    """Laps of one request's phases into the current ``Phases``, if the request is timed.
    A plain object rather than a context manager: this runs on every request."""

    __slots__ = ("phases", "last")

    def __init__(self) -> None:
        self.phases = current_phases.get()
        self.last = perf_counter_ns()

    def lap(self, phase: str) -> None:
        now = perf_counter_ns()
        if self.phases is not None:
            attribute = f"{phase}_ns"
            setattr(self.phases, attribute, getattr(self.phases, attribute) + now - self.last)
        self.last = now
