"""Per-request phase timings, handed from the data plane to the runtime through a
context variable (the runtime is built by MLServer's registry and cannot be injected)."""

from collections.abc import Callable, Iterator
from contextlib import contextmanager
from contextvars import ContextVar
from dataclasses import dataclass
from time import perf_counter_ns
from typing import TypeVar

T = TypeVar("T")


@dataclass
class Phases:
    queue_ns: int = 0
    input_ns: int = 0
    infer_ns: int = 0
    output_ns: int = 0
    cache_hit: bool | None = None
    """None: no cache looked at; for the request log."""


current_phases: ContextVar[Phases | None] = ContextVar("v2serve_phases", default=None)


@contextmanager
def timed(phase: str) -> Iterator[None]:
    """Adds the block's duration to ``<phase>_ns`` of the current request, if one is timed."""
    phases = current_phases.get()
    started = perf_counter_ns()
    try:
        yield
    finally:
        if phases is not None:
            attribute = f"{phase}_ns"
            setattr(phases, attribute, getattr(phases, attribute) + perf_counter_ns() - started)


def on_cache_miss(compute: Callable[[], T]) -> Callable[[], T]:
    """Marks the current request a cache hit unless the cache calls ``compute``."""
    phases = current_phases.get()
    if phases is None:
        return compute
    phases.cache_hit = True

    def miss() -> T:
        phases.cache_hit = False
        return compute()

    return miss
