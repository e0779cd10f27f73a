"""Where an estimator call runs: on the event loop, or on its model version's own threads.

A call on the event loop holds every request of every model for as long as it runs: one
5 s ``predict`` delayed iris by 4.5 s (issue 18). So a call runs off the loop, on a small
thread pool that belongs to its model version, whenever its expected cost is above
``OFF_LOOP_SECONDS``. The expected cost has two parts, measured at load on the warm-up
example (one row, then ``MEASURE_ROWS``) and refined from every call:

- the call's own CPU time, ``per_call + per_row * rows``, read from the clock of the
  thread that runs it (``time.thread_time``) and refined with an exponential moving
  estimate. Being preempted, or waiting for the interpreter lock (which changes hands
  every 5 ms under load), costs a call wall time but no CPU, so that noise cannot push a
  cheap model off the loop; a call that really computed longer moves it at once;
- its wait, the wall time it did not spend on its thread's CPU: ``time.sleep``, I/O, a
  native library's helper threads. That blocks the loop just as computing does, so a
  sleeping ``predict`` runs off the loop. The estimate is the least wait of the last
  ``WAIT_WINDOW`` calls: a sleeping model waits in every call, a cheap one only when the
  scheduler or the lock delayed it, and one clean call (on the loop or on a thread)
  brings it back. (A model that blocks on only an occasional call is not caught by it.)

A model marked slow (``"execution": "thread"``) always runs off the loop; ``"loop"``
always on it; ``auto`` also sends a call off the loop when the cost could not be measured.

Only calls measured cheaper than the bound stay on the loop, and only on a compiled or
native predictor (issue 18: "only where it is measured to be cheaper and cannot be
slow"): a thread hop costs tens of microseconds of latency, more than a compiled one-row
call takes, and a compiled call's cost follows from its rows. A call on the sklearn
backend runs the estimator's own Python, which may block on any call (a custom
``predict``, a ``FunctionTransformer``), so under ``auto`` it always runs off the loop.
Each pool is bounded (``execution_threads``); calls beyond it wait in the pool's queue, which
``max_inflight_per_model`` bounds, and the queue is visible in the model's config and in
metrics (``ExecutorCollector`` in ``runtimes.observability.metrics``). Observed times are
folded in on the event loop only, so the estimate needs no lock.

A call whose request's deadline passed while it waited in that queue is dropped when a
thread takes it, before the estimator runs (``runtimes.deadlines``): 504 /
DEADLINE_EXCEEDED, counted as a timeout like a request dropped in admission or in the
batching queue. A call that waited longer than ``PROBE_AFTER_SECONDS`` also asks whether
its caller is still there (a closed REST connection: 499, never run; a gone gRPC caller
cancels the awaiting task, and so the queued future, by itself). That probe steps the
REST connection's ``receive``, which belongs to the event loop, so the thread hands it to
the loop and waits for the answer (at most ``PROBE_TIMEOUT_SECONDS``; no answer: run).
"""

import asyncio
import bisect
import contextvars
import os
import threading
import time
from collections import deque
from collections.abc import Callable, Iterator, Mapping, Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Any, Literal, NamedTuple

import numpy as np
import pandas as pd

from .deadlines import Caller

Results = Mapping[str, np.ndarray]
Compute = Callable[[Any, list[str]], Results]
Clock = Callable[[], float]
Mode = Literal["auto", "thread", "loop"]

OFF_LOOP_SECONDS = 200e-6
"""A call expected to take longer than this runs off the event loop."""
MEASURE_ROWS = 64
"""Rows of the second measurement at load, which separates per-row from per-call cost."""
SMALL_CALL_ROWS = 8
"""Calls of at most this many rows refine the per-call cost, larger ones the per-row cost."""
SMOOTHING = 0.2
"""Weight of one observation in the moving estimate of CPU time."""
WAIT_WINDOW = 3
"""Calls whose least wait is the expected wait: a preempted or lock-delayed call among
them does not count, a model that waits in every call does."""
PROBE_AFTER_SECONDS = 0.01
"""A queued call that waited longer asks whether its caller is still there before it
runs; a shorter wait does not pay the round trip to the event loop."""
PROBE_TIMEOUT_SECONDS = 1.0
"""How long a thread waits for the event loop's answer to that probe; then it runs."""
QUEUE_BUCKETS = (
    0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05,
    0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0,
)  # fmt: skip


def default_threads() -> int:
    """Two threads where there are two cores or more: one slow call does not block the
    model's next one, and a model cannot take more of the machine than that."""
    return max(1, min(2, os.cpu_count() or 1))


class Spent(NamedTuple):
    """What one call cost: wall-clock seconds, and CPU seconds of the thread that ran it."""

    wall: float
    cpu: float


@dataclass
class CallCost:
    """Expected seconds of one call of ``rows`` rows: CPU ``per_call + per_row * rows``,
    plus ``wait``, the least wall time beyond the CPU time of the last few calls."""

    per_call: float
    per_row: float
    wait: float = 0.0
    recent_waits: deque[float] = field(
        default_factory=lambda: deque(maxlen=WAIT_WINDOW), repr=False
    )

    def __post_init__(self) -> None:
        """The given wait stands for a full window: it takes a window's calls to move."""
        self.recent_waits.extend([self.wait] * (WAIT_WINDOW - len(self.recent_waits)))

    def expected(self, rows: int) -> float:
        return self.per_call + self.per_row * rows + self.wait

    def observe(self, rows: int, spent: Spent) -> None:
        """Moves the CPU estimate a step towards an observed call, so a model that turns
        slow (a bigger input, a colder cache) leaves the loop, and records its wait."""
        cpu = spent.cpu
        if rows <= SMALL_CALL_ROWS:
            residual = cpu - self.per_row * rows
            self.per_call = max(0.0, self.per_call + SMOOTHING * (residual - self.per_call))
        else:
            per_row = (cpu - self.per_call) / rows
            self.per_row = max(0.0, self.per_row + SMOOTHING * (per_row - self.per_row))
        self.waited(spent)

    def waited(self, spent: Spent) -> None:
        self.recent_waits.append(max(0.0, spent.wall - spent.cpu))
        self.wait = min(self.recent_waits)

    def describe(self) -> str:
        return (
            f"{self.per_call * 1e6:.0f} us CPU per call + {self.per_row * 1e6:.2f} us per row"
            f" + {self.wait * 1e6:.0f} us waiting"
        )


def runs_off_loop(
    mode: Mode,
    cost: CallCost | None,
    rows: int,
    bound: float = OFF_LOOP_SECONDS,
    may_block: bool = False,
) -> bool:
    """The decision for one call: off the loop unless measured cheaper than ``bound`` and
    unable to block. ``may_block``: the call runs the estimator's own Python (the sklearn
    backend), where a custom ``predict`` or a ``FunctionTransformer`` can sleep or wait on
    any call, measured cheap or not; only a compiled or native predictor's cost follows
    from its rows, so only its calls may stay on the loop."""
    if mode == "thread":
        return True
    if mode == "loop":
        return False
    return may_block or cost is None or cost.expected(rows) > bound


def repeat_rows(features: Any, rows: int) -> Any:
    """``rows`` copies of the first row, as an array or a DataFrame like ``features``."""
    if isinstance(features, pd.DataFrame):
        return pd.concat([features.iloc[:1]] * rows, ignore_index=True)
    return np.repeat(np.asarray(features)[:1], rows, axis=0)


def timed(
    compute: Compute, features: Any, methods: list[str], clock: Clock, cpu: Clock
) -> tuple[Results, Spent]:
    """``compute``'s results and what it spent; ``cpu`` reads the calling thread's clock."""
    wall_started, cpu_started = clock(), cpu()
    results = compute(features, methods)
    cpu_seconds = cpu() - cpu_started
    return results, Spent(clock() - wall_started, cpu_seconds)


def measure_cost(
    compute: Compute,
    features: Any,
    methods: list[str],
    clock: Clock = time.perf_counter,
    bound: float = OFF_LOOP_SECONDS,
    cpu_clock: Clock = time.thread_time,
) -> CallCost | None:
    """The cost of one call, from calls on the warm-up example; None when it fails.

    A single row over the bound in wall time settles it (every call will run off the
    loop, so a model that sleeps seconds is not called again). Otherwise the medians of
    three calls' CPU time of one row and of ``MEASURE_ROWS`` rows give the per-call and
    per-row parts, and the one-row calls' waits the wait."""
    try:
        one = repeat_rows(features, 1)
        _, first = timed(compute, one, methods, clock, cpu_clock)
        if first.wall > bound:
            return CallCost(per_call=first.cpu, per_row=0.0, wait=first.wall - first.cpu)
        many = repeat_rows(features, MEASURE_ROWS)
        smalls = [timed(compute, one, methods, clock, cpu_clock)[1] for _ in range(3)]
        larges = [timed(compute, many, methods, clock, cpu_clock)[1] for _ in range(3)]
    except Exception:  # noqa: BLE001 - an unknown cost sends every auto call off the loop
        return None
    small = sorted(spent.cpu for spent in smalls)[1]
    large = sorted(spent.cpu for spent in larges)[1]
    per_row = max(0.0, (large - small) / (MEASURE_ROWS - 1))
    cost = CallCost(per_call=max(0.0, small - per_row), per_row=per_row)
    for spent in smalls:
        cost.waited(spent)
    return cost


@dataclass
class QueueStats:
    """Calls waiting for one of a model's threads, and how long they waited.

    Updated from the event loop (a call queued or abandoned) and from the pool's threads
    (a call started), so every change holds the lock."""

    waiting: int = 0
    running: int = 0
    on_loop: int = 0
    off_loop: int = 0
    dropped: int = 0
    """Calls dropped in the queue because their deadline passed (never run)."""
    buckets: list[int] = field(default_factory=lambda: [0] * (len(QUEUE_BUCKETS) + 1))
    waited_seconds: float = 0.0
    _lock: threading.Lock = field(default_factory=threading.Lock, repr=False)

    def queued(self) -> None:
        with self._lock:
            self.waiting += 1
            self.off_loop += 1

    def started(self, waited: float) -> None:
        with self._lock:
            self.waiting -= 1
            self.running += 1
            self.buckets[bisect.bisect_left(QUEUE_BUCKETS, waited)] += 1
            self.waited_seconds += waited

    def finished(self) -> None:
        with self._lock:
            self.running -= 1

    def abandoned(self) -> None:
        """A queued call cancelled before a thread took it (its client went away)."""
        with self._lock:
            self.waiting -= 1

    def left(self, waited: float) -> None:
        """A queued call whose caller went away before a thread took it: never run."""
        with self._lock:
            self.waiting -= 1
            self.buckets[bisect.bisect_left(QUEUE_BUCKETS, waited)] += 1
            self.waited_seconds += waited

    def expired(self, waited: float) -> None:
        """A queued call whose deadline passed before a thread took it: never run."""
        with self._lock:
            self.waiting -= 1
            self.dropped += 1
            self.buckets[bisect.bisect_left(QUEUE_BUCKETS, waited)] += 1
            self.waited_seconds += waited

    def ran_on_loop(self) -> None:
        self.on_loop += 1  # only ever from the event loop

    def histogram(self) -> tuple[list[tuple[str, int]], float]:
        """Cumulative ``(le, count)`` pairs and the sum, as Prometheus wants them."""
        with self._lock:
            counts, total = list(self.buckets), self.waited_seconds
        cumulative, pairs = 0, []
        for bound, count in zip([*map(str, QUEUE_BUCKETS), "+Inf"], counts, strict=True):
            cumulative += count
            pairs.append((bound, cumulative))
        return pairs, total


def _running_loop() -> asyncio.AbstractEventLoop | None:
    try:
        return asyncio.get_running_loop()
    except RuntimeError:  # submitted from a plain thread: nobody can answer a probe
        return None


def _gone(caller: Caller, loop: asyncio.AbstractEventLoop) -> bool:
    """On a pool thread: the caller's probe, run on the event loop it belongs to."""
    answer: Future[bool] = Future()

    def probe() -> None:
        try:
            answer.set_result(caller.gone())
        except BaseException as exc:  # noqa: BLE001 - reported to the waiting thread
            answer.set_exception(exc)

    try:
        loop.call_soon_threadsafe(probe)
        return answer.result(timeout=PROBE_TIMEOUT_SECONDS)
    except Exception:  # noqa: BLE001 - a loop that is closed or busy: run the call
        return False


class ModelExecution:
    """One model version's execution: its mode, cost estimate, threads and queue.

    Created at load and shut down at unload; the pool's threads start on first use, so
    a model whose calls all stay on the loop never has one."""

    def __init__(
        self,
        model: str,
        version: str,
        mode: Mode,
        threads: int,
        cost: CallCost | None,
        clock: Clock = time.perf_counter,
        cpu_clock: Clock = time.thread_time,
        may_block: bool = False,
    ):
        """``clock``: wall time; ``cpu_clock``: CPU time of the thread that reads it;
        ``may_block``: see ``runs_off_loop``."""
        self.model, self.version = model, version
        self.mode, self.threads, self.cost = mode, threads, cost
        self.may_block = may_block
        self.stats = QueueStats()
        self._clock, self._cpu_clock = clock, cpu_clock
        self._pool = ThreadPoolExecutor(
            max_workers=threads, thread_name_prefix=f"v2serve-{model}-{version}"
        )

    def off_loop(self, rows: int, may_block: bool = False) -> bool:
        """``may_block``: this call, whatever the model's others do (see ``run``)."""
        blocks = self.may_block or may_block
        return runs_off_loop(self.mode, self.cost, rows, may_block=blocks)

    async def run(
        self,
        compute: Compute,
        features: Any,
        methods: list[str],
        caller: Caller | None = None,
        may_block: bool = False,
    ) -> Results:
        """One call, on the loop or off it; ``caller`` carries the request's deadline.
        ``may_block``: this call runs the estimator's own code (a method or an input the
        compiled predictor leaves to sklearn), so under ``auto`` it leaves the loop whatever
        the model's calls cost, and its cost, not the predictor's, stays out of the estimate."""
        rows = len(features)
        if not self.off_loop(rows, may_block):
            results, spent = timed(compute, features, methods, self._clock, self._cpu_clock)
            self._observe(rows, spent)
            self.stats.ran_on_loop()
            return results
        future = self.submit(compute, features, methods, caller)
        results, spent = await asyncio.wrap_future(future)
        if not may_block:
            self._observe(rows, spent)
        return results

    async def run_off_loop(self, compute: Compute, features: Any, methods: list[str]) -> Results:
        """One call on the model's threads whatever its cost: a batched call (the batcher
        runs its calls here, so the model's concurrency and queue metrics cover them)."""
        results, spent = await asyncio.wrap_future(self.submit(compute, features, methods))
        self._observe(len(features), spent)
        return results

    def submit(
        self,
        compute: Compute,
        features: Any,
        methods: list[str],
        caller: Caller | None = None,
    ) -> "Future[tuple[Results, Spent]]":
        """Queues one call on the model's threads; the future gives results and their cost,
        or the 504 of a call whose deadline passed while it was queued (499: whose caller
        left). Called from the event loop, which answers the probe of a gone caller."""
        context = contextvars.copy_context()
        queued_at = self._clock()
        loop = _running_loop() if caller is not None else None
        self.stats.queued()

        def call() -> tuple[Results, Spent]:
            started = self._clock()
            waited = started - queued_at
            if caller is not None:
                if caller.expired():
                    self.stats.expired(waited)
                    raise caller.dropped("in the model's executor queue")
                if waited > PROBE_AFTER_SECONDS and loop is not None and _gone(caller, loop):
                    self.stats.left(waited)
                    raise caller.dropped("in the model's executor queue")
            self.stats.started(waited)
            try:
                return context.run(timed, compute, features, methods, self._clock, self._cpu_clock)
            finally:
                self.stats.finished()

        future = self._pool.submit(call)
        future.add_done_callback(self._count_abandoned)
        return future

    def _count_abandoned(self, future: "Future[Any]") -> None:
        if future.cancelled():  # cancelled before a thread took it: call() never ran
            self.stats.abandoned()

    def _observe(self, rows: int, spent: Spent) -> None:
        # A cost that could not be measured at load stays unknown: one observation
        # cannot tell per-call from per-row cost, and guessing wrong blocks the loop.
        if self.cost is not None:
            self.cost.observe(rows, spent)

    def shutdown(self) -> None:
        """Takes no new calls; calls already running finish on their threads."""
        self._pool.shutdown(wait=False, cancel_futures=True)

    def describe(self) -> dict[str, str]:
        """For the model's configuration (Triton's config extension)."""
        return {
            "execution": self.mode,
            "execution_on_loop": self._on_loop_rule(),
            "execution_threads": str(self.threads),
            "execution_cost": self.cost.describe() if self.cost is not None else "unknown",
            "execution_queue": str(self.stats.waiting),
            "execution_queue_timeouts": str(self.stats.dropped),
        }


    def _on_loop_rule(self) -> str:
        if self.mode == "thread" or (self.mode == "auto" and self.may_block):
            return "never"
        if self.mode == "loop":
            return "always"
        return f"calls expected under {OFF_LOOP_SECONDS * 1e6:.0f} us"


class Executions:
    """The live executions by (model, version): read by the config extension and the
    metrics collector. A reload registers the new instance before the old unloads, so
    the newest wins and an unregister removes only its own. One per server, owned by its
    composition (``runtimes.server``) and handed to the runtimes it hosts through
    ``RuntimeServices``, so two servers in one process never see each other's."""

    def __init__(self) -> None:
        self._live: dict[tuple[str, str], ModelExecution] = {}

    def register(self, execution: ModelExecution) -> None:
        self._live[(execution.model, execution.version)] = execution

    def unregister(self, execution: ModelExecution) -> None:
        key = (execution.model, execution.version)
        if self._live.get(key) is execution:
            del self._live[key]

    def find(self, model: str, version: str | None) -> ModelExecution | None:
        return self._live.get((model, version or ""))

    def __iter__(self) -> Iterator[ModelExecution]:
        return iter(list(self._live.values()))


async def start_execution(
    model: str,
    version: str | None,
    mode: Mode,
    threads: int | None,
    compute: Compute,
    example: tuple[Any, Sequence[str]],
    registry: Executions | None = None,
    may_block: bool = False,
) -> ModelExecution:
    """At load: measure the cost where ``auto`` needs it (off the loop: the model may be
    slow), create the pool and register it where the server reads it (None: no server).
    ``may_block``: the calls run the estimator's own code (see ``runs_off_loop``), so
    every call leaves the loop whatever it costs, and there is nothing to measure."""
    features, methods = example
    cost = None
    if mode == "auto" and not may_block:
        cost = await asyncio.to_thread(measure_cost, compute, features, list(methods))
    execution = ModelExecution(
        model, version or "", mode, threads or default_threads(), cost, may_block=may_block
    )
    if registry is not None:
        registry.register(execution)
    return execution


def stop_execution(execution: ModelExecution, registry: Executions | None = None) -> None:
    if registry is not None:
        registry.unregister(execution)
    execution.shutdown()
