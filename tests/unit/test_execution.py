"""Where estimator calls run (runtimes.execution): the decision from rows and injected
costs, the moving estimate, the measurement at load with a fake clock, the executor's
lifecycle and its queue accounting. No sockets, no timing: every cost is injected."""

import asyncio
import threading
import time
from typing import Any

import numpy as np
import pandas as pd
import pytest

from runtimes.deadlines import Caller, Deadline
from runtimes.errors import CallerGone, DeadlineExceeded
from runtimes.execution import (
    MEASURE_ROWS,
    OFF_LOOP_SECONDS,
    QUEUE_BUCKETS,
    WAIT_WINDOW,
    CallCost,
    Executions,
    ModelExecution,
    QueueStats,
    Spent,
    default_threads,
    measure_cost,
    repeat_rows,
    runs_off_loop,
    start_execution,
    stop_execution,
    timed,
)


class FakeClock:
    def __init__(self) -> None:
        self.now = 0.0

    def __call__(self) -> float:
        return self.now


def costing(clock: FakeClock, per_call: float, per_row: float, calls: list[int] | None = None):
    """A compute whose every call advances the fake clock by per_call + per_row * rows."""

    def compute(features: Any, methods: list[str]) -> dict[str, np.ndarray]:
        rows = len(features)
        if calls is not None:
            calls.append(rows)
        clock.now += per_call + per_row * rows
        return {method: np.zeros(rows) for method in methods}

    return compute


def spending(wall: FakeClock, cpu: FakeClock, spends: Any):
    """A compute whose n-th call computes ``cpu`` and waits ``wait`` seconds, from the
    ``(cpu, wait)`` pairs ``spends`` yields: wall time moves by both, CPU time by the first."""
    plan = iter(spends)

    def compute(features: Any, methods: list[str]) -> dict[str, np.ndarray]:
        computed, waited = next(plan)
        cpu.now += computed
        wall.now += computed + waited
        return {method: np.zeros(len(features)) for method in methods}

    return compute


def serve(execution: ModelExecution, compute: Any, calls: int, rows: int = 1) -> list[bool]:
    """``calls`` one after another; for each, whether it ran off the loop."""

    async def scenario() -> list[bool]:
        where = []
        for _ in range(calls):
            before = execution.stats.off_loop
            await execution.run(compute, np.zeros((rows, 4)), ["predict"])
            where.append(execution.stats.off_loop > before)
        return where

    try:
        return asyncio.run(scenario())
    finally:
        execution.shutdown()


# --- the decision -------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("per_call", "per_row", "rows", "off"),
    [
        (20e-6, 1e-6, 1, False),  # a compiled one-row call stays on the loop
        (20e-6, 1e-6, 100, False),  # 120 us
        (20e-6, 1e-6, 181, True),  # 201 us
        (20e-6, 1e-6, 100_000, True),  # a big request to a cheap model
        (8e-3, 1e-6, 1, True),  # a forest served by sklearn
        (OFF_LOOP_SECONDS, 0.0, 1, False),  # exactly the bound stays
    ],
)
def test_auto_decides_from_rows_times_cost(per_call, per_row, rows, off):
    assert runs_off_loop("auto", CallCost(per_call, per_row), rows) is off


@pytest.mark.parametrize("rows", [1, 10_000])
def test_modes_override_the_cost(rows):
    cheap = CallCost(1e-6, 0.0)
    dear = CallCost(5.0, 0.0)
    assert runs_off_loop("thread", cheap, rows) is True
    assert runs_off_loop("loop", dear, rows) is False
    assert runs_off_loop("auto", None, rows) is True  # unknown cost: off the loop


@pytest.mark.parametrize("rows", [1, 1_000])
def test_the_estimators_own_code_never_runs_on_the_loop_under_auto(rows):
    """A sklearn-backend call measured cheap still leaves the loop: its cost may not
    follow from its rows (a custom predict may sleep on any call); a compiled one stays."""
    cheap = CallCost(1e-6, 0.0)
    assert runs_off_loop("auto", cheap, rows, may_block=True) is True
    assert runs_off_loop("auto", cheap, rows, may_block=False) is False
    assert runs_off_loop("loop", cheap, rows, may_block=True) is False  # the user's choice


def test_a_cheap_sklearn_backend_call_runs_on_the_models_threads():
    loop_thread = threading.get_ident()
    seen: list[int] = []

    def compute(features: Any, methods: list[str]) -> dict[str, np.ndarray]:
        seen.append(threading.get_ident())
        return {"predict": np.zeros(len(features))}

    async def go(may_block: bool) -> ModelExecution:
        execution = ModelExecution("m", "1", "auto", 1, CallCost(1e-6, 0.0), may_block=may_block)
        await execution.run(compute, np.zeros((1, 4)), ["predict"])
        execution.shutdown()
        return execution

    blocking = asyncio.run(go(True))
    assert seen[-1] != loop_thread and blocking.stats.on_loop == 0
    assert blocking.describe()["execution_on_loop"] == "never"
    compiled = asyncio.run(go(False))
    assert seen[-1] == loop_thread and compiled.stats.on_loop == 1
    assert compiled.describe()["execution_on_loop"].startswith("calls expected under")


def test_a_call_that_leaves_work_to_sklearn_runs_off_the_loop_and_teaches_nothing():
    """One call of a compiled model that needs the estimator's own code (a method the
    predictor lacks) leaves the loop though the model's calls are measured cheap, and its
    cost does not move the estimate that keeps the model's cheap calls on the loop."""
    loop_thread = threading.get_ident()
    seen: list[int] = []
    wall, cpu = FakeClock(), FakeClock()

    def compute(features: Any, methods: list[str]) -> dict[str, np.ndarray]:
        seen.append(threading.get_ident())
        cpu.now += 0.05  # sklearn's 50 ms, far above the bound
        wall.now += 0.05
        return {method: np.zeros(len(features)) for method in methods}

    async def go() -> ModelExecution:
        cost = CallCost(1e-6, 0.0)
        execution = ModelExecution("m", "1", "auto", 1, cost, clock=wall, cpu_clock=cpu)
        await execution.run(compute, np.zeros((1, 4)), ["decision_function"], may_block=True)
        execution.shutdown()
        return execution

    execution = asyncio.run(go())
    assert seen == [seen[0]] and seen[0] != loop_thread
    assert execution.stats.on_loop == 0 and execution.stats.off_loop == 1
    assert execution.cost is not None and execution.cost.expected(1) == pytest.approx(1e-6)
    assert execution.off_loop(1) is False  # the model's own cheap calls stay on the loop
    assert execution.off_loop(1, may_block=True) is True


def test_a_call_that_may_block_stays_on_the_loop_when_the_user_chose_loop():
    execution = ModelExecution("m", "1", "loop", 1, CallCost(1e-6, 0.0))
    try:
        assert execution.off_loop(1, may_block=True) is False
    finally:
        execution.shutdown()


def test_the_bound_is_a_parameter():
    cost = CallCost(100e-6, 0.0)
    assert runs_off_loop("auto", cost, 1, bound=50e-6) is True
    assert runs_off_loop("auto", cost, 1, bound=500e-6) is False


# --- refinement ---------------------------------------------------------------------------


def test_small_calls_refine_the_per_call_cost_towards_what_is_observed():
    cost = CallCost(per_call=20e-6, per_row=1e-6)
    for _ in range(40):
        cost.observe(1, Spent(5e-3 + 1e-6, 5e-3 + 1e-6))
    assert cost.per_call == pytest.approx(5e-3, rel=1e-2)
    assert cost.per_row == 1e-6
    assert runs_off_loop("auto", cost, 1)


def test_large_calls_refine_the_per_row_cost():
    cost = CallCost(per_call=10e-6, per_row=0.1e-6)
    for _ in range(40):
        cost.observe(10_000, Spent(20.01e-3, 10e-6 + 10_000 * 2e-6))
    assert cost.per_row == pytest.approx(2e-6, rel=1e-2)
    assert cost.per_call == 10e-6


def test_one_outlier_moves_the_estimate_by_a_fraction_and_it_comes_back():
    cost = CallCost(per_call=20e-6, per_row=0.0)
    cost.observe(1, Spent(5e-3, 5e-3))  # a call that really computed 5 ms
    assert 20e-6 < cost.per_call < 5e-3
    assert runs_off_loop("auto", cost, 1)
    for _ in range(60):
        cost.observe(1, Spent(20e-6, 20e-6))
    assert not runs_off_loop("auto", cost, 1)


def test_estimates_never_go_negative():
    cost = CallCost(per_call=1e-3, per_row=1e-6)
    for _ in range(50):
        cost.observe(1, Spent(0.0, 0.0))
        cost.observe(1000, Spent(0.0, 0.0))
    assert cost.per_call >= 0 and cost.per_row >= 0


# --- CPU time and waits: scheduler noise against blocking calls --------------------------

CHEAP = 28e-6
"""iris's real cost per call, compiled, one row."""


def test_a_cheap_model_stays_on_the_loop_when_some_calls_are_preempted():
    """Every 7th call is held 5 ms by the scheduler or the interpreter lock (wall time,
    no CPU), two in a row once: a wall-clock mean would send the model off the loop."""
    wall, cpu = FakeClock(), FakeClock()
    noise = {3, 10, 11, 17, 24, 31, 38}
    spends = ((CHEAP, 5e-3 if n in noise else 0.0) for n in range(40))
    execution = ModelExecution(
        "iris", "1", "auto", 2, CallCost(CHEAP, 0.0), clock=wall, cpu_clock=cpu
    )
    where = serve(execution, spending(wall, cpu, spends), 40)
    assert where == [False] * 40
    assert execution.cost is not None
    assert execution.cost.per_call == pytest.approx(CHEAP)
    assert execution.cost.wait == pytest.approx(0.0, abs=1e-12)


def test_a_cheap_model_sent_off_by_waits_comes_back_after_one_clean_call():
    """Waits in WAIT_WINDOW calls in a row send it off; on the threads the interpreter
    lock delays most calls too, and the first clean one brings it back."""
    wall, cpu = FakeClock(), FakeClock()
    waits = [5e-3] * WAIT_WINDOW + [3e-3, 0.0, 4e-3, 2e-3]
    spends = [(CHEAP, wait) for wait in waits]
    execution = ModelExecution(
        "iris", "1", "auto", 2, CallCost(CHEAP, 0.0), clock=wall, cpu_clock=cpu
    )
    where = serve(execution, spending(wall, cpu, spends), len(spends))
    assert where == [False] * WAIT_WINDOW + [True, True, False, False]


def test_a_sleeping_model_leaves_the_loop_and_stays_off():
    """Cheap at load, then each predict sleeps 0.5 s (no CPU): after WAIT_WINDOW calls
    it is off the loop, and its calls on the threads keep it there."""
    wall, cpu = FakeClock(), FakeClock()
    spends = [(CHEAP, 0.5)] * 12
    execution = ModelExecution(
        "slow", "1", "auto", 2, CallCost(CHEAP, 0.0), clock=wall, cpu_clock=cpu
    )
    where = serve(execution, spending(wall, cpu, spends), len(spends))
    assert where == [False] * WAIT_WINDOW + [True] * (12 - WAIT_WINDOW)
    assert execution.cost is not None and execution.cost.wait == pytest.approx(0.5)
    assert execution.cost.per_call == pytest.approx(CHEAP)


def test_a_model_that_sleeps_at_load_never_runs_on_the_loop():
    wall, cpu = FakeClock(), FakeClock()
    calls: list[int] = []
    spends = [(1e-6, 2.0)] * 20
    compute = spending(wall, cpu, spends)

    def counted(features: Any, methods: list[str]) -> dict[str, np.ndarray]:
        calls.append(len(features))
        return compute(features, methods)

    cost = measure_cost(counted, np.zeros((1, 4)), ["predict"], clock=wall, cpu_clock=cpu)
    assert cost is not None and calls == [1]  # measured once: it is off the loop
    assert cost.wait == pytest.approx(2.0) and cost.per_call == pytest.approx(1e-6)
    execution = ModelExecution("slow", "1", "auto", 2, cost, clock=wall, cpu_clock=cpu)
    assert serve(execution, counted, 10) == [True] * 10


def test_a_heavy_cpu_model_goes_off_the_loop_at_its_first_heavy_call():
    """Cheap at load, then 5 ms of CPU per call: the second call is already off."""
    wall, cpu = FakeClock(), FakeClock()
    spends = [(5e-3, 0.0)] * 10
    execution = ModelExecution(
        "heavy", "1", "auto", 2, CallCost(CHEAP, 0.0), clock=wall, cpu_clock=cpu
    )
    where = serve(execution, spending(wall, cpu, spends), len(spends))
    assert where == [False] + [True] * 9
    assert execution.cost is not None and execution.cost.per_call > OFF_LOOP_SECONDS


def test_a_heavy_cpu_model_is_measured_off_the_loop_at_load():
    wall, cpu = FakeClock(), FakeClock()
    cost = measure_cost(
        spending(wall, cpu, [(3e-3, 0.0)] * 10), np.zeros((1, 4)), ["predict"], wall, cpu_clock=cpu
    )
    assert cost is not None and runs_off_loop("auto", cost, 1)
    assert cost.wait == pytest.approx(0.0, abs=1e-12)


def test_the_cpu_clock_is_the_calling_threads_own():
    """A sleep costs wall time and no CPU on the real clocks: what tells a blocking call
    from a computing one. (Bounds of a sleep, not a measurement of speed.)"""
    _, spent = timed(
        lambda features, methods: time.sleep(0.05) or {},
        None,
        [],
        time.perf_counter,
        time.thread_time,
    )
    assert spent.wall >= 0.05
    assert spent.cpu < 0.025


def test_the_wait_is_the_least_of_recent_calls_and_never_negative():
    cost = CallCost(CHEAP, 0.0)
    for wall, cpu in [(1e-3, 1e-6), (2e-3, 1e-6), (1e-6, 5e-6)]:
        cost.observe(1, Spent(wall, cpu))
    assert cost.wait == pytest.approx(0.0, abs=1e-12)
    for _ in range(WAIT_WINDOW):
        cost.observe(1, Spent(0.1 + CHEAP, CHEAP))
    assert cost.wait == pytest.approx(0.1)
    assert "100000 us waiting" in cost.describe()


# --- measurement at load ------------------------------------------------------------------


def test_measure_separates_per_call_from_per_row():
    clock = FakeClock()
    calls: list[int] = []
    compute = costing(clock, per_call=30e-6, per_row=2e-6, calls=calls)
    cost = measure_cost(compute, np.zeros((1, 4)), ["predict"], clock=clock, cpu_clock=clock)
    assert cost is not None
    assert cost.per_row == pytest.approx(2e-6)
    assert cost.per_call == pytest.approx(30e-6)
    assert sorted(set(calls)) == [1, MEASURE_ROWS]


def test_a_slow_first_call_is_not_repeated():
    clock = FakeClock()
    calls: list[int] = []
    compute = costing(clock, 2.0, 0.0, calls)
    cost = measure_cost(compute, np.zeros((1, 4)), ["predict"], clock, cpu_clock=clock)
    assert calls == [1]
    assert cost is not None and cost.per_call == 2.0
    assert runs_off_loop("auto", cost, 1)


def test_a_failing_call_leaves_the_cost_unknown():
    def broken(features: Any, methods: list[str]) -> dict[str, np.ndarray]:
        raise ValueError("Found unknown categories")

    assert measure_cost(broken, np.zeros((1, 4)), ["predict"]) is None


def test_repeat_rows_keeps_the_kind_of_input():
    frame = pd.DataFrame({"a": [1.0, 2.0], "b": ["x", "y"]})
    repeated = repeat_rows(frame, 5)
    assert isinstance(repeated, pd.DataFrame)
    assert list(repeated["b"]) == ["x"] * 5
    array = repeat_rows(np.arange(8.0).reshape(2, 4), 3)
    np.testing.assert_array_equal(array, np.tile(np.arange(4.0), (3, 1)))


# --- the executor -------------------------------------------------------------------------


def test_a_cheap_call_runs_on_the_loop_thread_and_refines_the_cost():
    clock = FakeClock()
    threads: list[str] = []

    def compute(features: Any, methods: list[str]) -> dict[str, np.ndarray]:
        threads.append(threading.current_thread().name)
        clock.now += 50e-6
        return {"predict": np.zeros(len(features))}

    execution = ModelExecution(
        "m", "1", "auto", 2, CallCost(10e-6, 0.0), clock=clock, cpu_clock=clock
    )
    try:
        asyncio.run(execution.run(compute, np.zeros((1, 4)), ["predict"]))
    finally:
        execution.shutdown()
    assert threads == [threading.current_thread().name]
    assert execution.stats.on_loop == 1 and execution.stats.off_loop == 0
    assert execution.cost is not None and execution.cost.per_call > 10e-6


def test_an_expensive_call_runs_on_the_models_own_threads():
    threads: list[str] = []

    def compute(features: Any, methods: list[str]) -> dict[str, np.ndarray]:
        threads.append(threading.current_thread().name)
        return {"predict": np.ones(len(features))}

    execution = ModelExecution("slow", "3", "auto", 1, CallCost(1.0, 0.0))
    try:
        results = asyncio.run(execution.run(compute, np.zeros((2, 4)), ["predict"]))
    finally:
        execution.shutdown()
    np.testing.assert_array_equal(results["predict"], np.ones(2))
    assert threads and threads[0].startswith("v2serve-slow-3")
    assert execution.stats.off_loop == 1 and execution.stats.on_loop == 0
    assert execution.stats.waiting == 0 and execution.stats.running == 0


def test_an_error_in_a_thread_reaches_the_caller_and_the_queue_is_settled():
    def compute(features: Any, methods: list[str]) -> dict[str, np.ndarray]:
        raise RuntimeError("estimator broke")

    execution = ModelExecution("m", "1", "thread", 1, None)
    try:
        with pytest.raises(RuntimeError, match="estimator broke"):
            asyncio.run(execution.run(compute, np.zeros((1, 4)), ["predict"]))
    finally:
        execution.shutdown()
    assert execution.stats.waiting == 0 and execution.stats.running == 0


def test_concurrency_is_bounded_and_the_queue_is_counted():
    """Two threads, five calls held on a gate: two run, three wait, then all finish."""
    gate = threading.Event()
    started = threading.Semaphore(0)

    def compute(features: Any, methods: list[str]) -> dict[str, np.ndarray]:
        started.release()
        assert gate.wait(timeout=30)
        return {"predict": np.zeros(len(features))}

    execution = ModelExecution("m", "1", "thread", 2, None)
    futures = [execution.submit(compute, np.zeros((1, 4)), ["predict"]) for _ in range(5)]
    try:
        assert started.acquire(timeout=30) and started.acquire(timeout=30)
        assert execution.stats.running == 2
        assert execution.stats.waiting == 3
        assert execution.describe()["execution_queue"] == "3"
        gate.set()
        for future in futures:
            future.result(timeout=30)
    finally:
        gate.set()
        execution.shutdown()
    assert execution.stats.waiting == 0 and execution.stats.running == 0
    pairs, _ = execution.stats.histogram()
    assert pairs[-1] == ("+Inf", 5)


def test_a_call_cancelled_while_queued_leaves_the_queue():
    gate = threading.Event()
    running = threading.Event()

    def compute(features: Any, methods: list[str]) -> dict[str, np.ndarray]:
        running.set()
        assert gate.wait(timeout=30)
        return {}

    execution = ModelExecution("m", "1", "thread", 1, None)
    first = execution.submit(compute, np.zeros((1, 1)), [])
    queued = execution.submit(compute, np.zeros((1, 1)), [])
    try:
        assert running.wait(timeout=30)
        assert execution.stats.waiting == 1
        assert queued.cancel()
        assert execution.stats.waiting == 0
    finally:
        gate.set()
        first.result(timeout=30)
        execution.shutdown()
    assert execution.stats.running == 0


def test_queue_histogram_buckets_what_was_waited():
    stats = QueueStats()
    for waited in (0.0, 0.003, 0.003, 20.0):
        stats.queued()
        stats.started(waited)
        stats.finished()
    pairs, total = stats.histogram()
    assert len(pairs) == len(QUEUE_BUCKETS) + 1
    assert dict(pairs)["0.0001"] == 1
    assert dict(pairs)["0.005"] == 3
    assert dict(pairs)["10.0"] == 3
    assert pairs[-1] == ("+Inf", 4)
    assert total == pytest.approx(20.006)
    assert [count for _, count in pairs] == sorted(count for _, count in pairs)


def test_shutdown_refuses_new_calls():
    execution = ModelExecution("m", "1", "thread", 1, None)
    execution.shutdown()
    with pytest.raises(RuntimeError):
        execution.submit(lambda features, methods: {}, np.zeros((1, 1)), [])


def test_start_measures_registers_and_stop_unregisters():
    registry = Executions()
    clock_calls: list[int] = []

    def compute(features: Any, methods: list[str]) -> dict[str, np.ndarray]:
        clock_calls.append(len(features))
        return {"predict": np.zeros(len(features))}

    example = (np.zeros((1, 4)), ["predict"])
    execution = asyncio.run(
        start_execution("iris", "2", "auto", None, compute, example, registry=registry)
    )
    assert execution.cost is not None and clock_calls
    assert execution.threads == default_threads()
    assert registry.find("iris", "2") is execution
    described = execution.describe()
    assert described["execution"] == "auto" and described["execution_threads"] == str(
        default_threads()
    )
    stop_execution(execution, registry=registry)
    assert registry.find("iris", "2") is None


def test_a_model_that_may_block_is_not_measured_at_load():
    """Its calls leave the loop whatever they cost, so load spends no calls measuring."""
    calls: list[int] = []
    compute = costing(FakeClock(), 1e-6, 0.0, calls)
    example = (np.zeros((1, 4)), ["predict"])
    execution = asyncio.run(start_execution("a", "1", "auto", 1, compute, example, may_block=True))
    assert calls == [] and execution.cost is None and execution.off_loop(1)
    execution.shutdown()


def test_thread_mode_is_not_measured_and_a_reload_keeps_the_newest():
    registry = Executions()
    calls: list[int] = []
    compute = costing(FakeClock(), 1.0, 0.0, calls)
    example = (np.zeros((1, 4)), ["predict"])
    old = asyncio.run(start_execution("a", "1", "thread", 3, compute, example, registry=registry))
    new = asyncio.run(start_execution("a", "1", "thread", 3, compute, example, registry=registry))
    assert calls == [] and old.cost is None and new.threads == 3
    stop_execution(old, registry=registry)
    assert registry.find("a", "1") is new
    assert list(registry) == [new]
    stop_execution(new, registry=registry)
    assert list(registry) == []


# --- deadlines in the queue ---------------------------------------------------------------


def _held(gate: threading.Event, running: threading.Event, calls: list[int]):
    def compute(features: Any, methods: list[str]) -> dict[str, np.ndarray]:
        calls.append(len(features))
        running.set()
        assert gate.wait(timeout=30)
        return {"predict": np.zeros(len(features))}

    return compute


def test_a_call_whose_deadline_passed_in_the_queue_is_dropped_before_it_runs():
    """One thread, held by a first call; the second's deadline is already over when a
    thread takes it: it never reaches the estimator and its caller gets a 504."""
    gate, running, calls = threading.Event(), threading.Event(), []
    compute = _held(gate, running, calls)
    execution = ModelExecution("slow", "1", "thread", 1, None)
    now = time.monotonic()
    late = Caller("slow", now - 2.0, Deadline(now - 1.0))
    patient = Caller("slow", now, Deadline(now + 3600))
    try:
        first = execution.submit(compute, np.zeros((1, 4)), ["predict"], patient)
        assert running.wait(timeout=30)
        dropped = execution.submit(compute, np.zeros((2, 4)), ["predict"], late)
        assert execution.stats.waiting == 1
        gate.set()
        assert len(first.result(timeout=30)[0]["predict"]) == 1
        with pytest.raises(DeadlineExceeded, match="executor queue") as raised:
            dropped.result(timeout=30)
    finally:
        gate.set()
        execution.shutdown()
    assert raised.value.status_code == 504
    assert "'slow'" in str(raised.value)
    assert calls == [1]
    stats = execution.stats
    assert stats.waiting == 0 and stats.running == 0 and stats.dropped == 1
    assert execution.describe()["execution_queue_timeouts"] == "1"
    assert dict(stats.histogram()[0])["+Inf"] == 2  # the dropped call's wait is counted too


def test_run_raises_the_timeout_in_the_caller_and_a_live_deadline_runs():
    calls: list[int] = []
    compute = costing(FakeClock(), 0.0, 0.0, calls)
    execution = ModelExecution("m", "1", "thread", 1, None)
    now = time.monotonic()
    try:
        with pytest.raises(DeadlineExceeded):
            asyncio.run(
                execution.run(compute, np.zeros((1, 4)), ["p"], Caller("m", now, Deadline(now)))
            )
        assert calls == []
        live = Caller("m", now, Deadline(now + 3600))
        results = asyncio.run(execution.run(compute, np.zeros((3, 4)), ["p"], live))
        no_deadline = asyncio.run(execution.run(compute, np.zeros((1, 4)), ["p"], Caller("m", now)))
    finally:
        execution.shutdown()
    assert len(results["p"]) == 3 and len(no_deadline["p"]) == 1
    assert calls == [3, 1]


def test_a_call_on_the_loop_is_not_dropped_it_never_waited():
    calls: list[int] = []
    compute = costing(FakeClock(), 0.0, 0.0, calls)
    execution = ModelExecution("m", "1", "loop", 1, None)
    now = time.monotonic()
    try:
        late = Caller("m", now - 1, Deadline(now - 0.5))
        asyncio.run(execution.run(compute, np.zeros((1, 4)), ["p"], late))
    finally:
        execution.shutdown()
    assert calls == [1]


def test_a_queued_call_whose_caller_left_is_dropped_after_asking_the_loop():
    """The first call holds the only thread and moves the clock on a second: the queued
    call waited, so it asks its caller's probe (on the event loop) and is not run."""
    clock = FakeClock()
    gate = threading.Event()
    calls: list[int] = []
    probed_on: list[threading.Thread] = []

    def gone() -> bool:
        probed_on.append(threading.current_thread())
        return True

    def compute(features: Any, methods: list[str]) -> dict[str, np.ndarray]:
        assert gate.wait(timeout=30)
        calls.append(len(features))
        clock.now += 1.0
        return {"p": np.zeros(len(features))}

    execution = ModelExecution("m", "1", "thread", 1, None, clock=clock)
    now = time.monotonic()

    async def scenario() -> tuple[Any, Any]:
        first = execution.submit(compute, np.zeros((1, 4)), ["p"], Caller("m", now))
        left = execution.submit(compute, np.zeros((2, 4)), ["p"], Caller("m", now, gone=gone))
        gate.set()
        waited = [asyncio.wrap_future(first), asyncio.wrap_future(left)]
        return tuple(await asyncio.gather(*waited, return_exceptions=True))

    try:
        first, left = asyncio.run(scenario())
    finally:
        gate.set()
        execution.shutdown()
    assert len(first[0]["p"]) == 1
    assert isinstance(left, CallerGone) and left.status_code == 499, left
    assert "executor queue" in str(left)
    assert calls == [1]
    assert probed_on == [threading.main_thread()]  # the probe ran on the event loop
    assert execution.stats.waiting == 0 and execution.stats.dropped == 0


def test_a_call_that_did_not_wait_does_not_probe_its_caller():
    probes: list[int] = []

    def gone() -> bool:
        probes.append(1)
        return True

    execution = ModelExecution("m", "1", "thread", 1, None, clock=FakeClock())
    compute = costing(FakeClock(), 0.0, 0.0)
    try:
        results = asyncio.run(
            execution.run(
                compute, np.zeros((1, 4)), ["p"], Caller("m", time.monotonic(), gone=gone)
            )
        )
    finally:
        execution.shutdown()
    assert len(results["p"]) == 1 and probes == []
