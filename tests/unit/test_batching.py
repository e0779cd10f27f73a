"""Adaptive batching: concurrent requests share a call, keep their rows, outputs and errors."""

import asyncio
import logging
import threading
import time

import numpy as np
import pandas as pd
import pytest

from runtimes.batching import MicroBatcher, choose_batcher, row_mismatch
from runtimes.errors import PredictionFailed
from runtimes.execution import ModelExecution


class Recorder:
    def __init__(self, delay: float = 0.02):
        self.calls: list[tuple[int, tuple[str, ...]]] = []
        self.delay = delay

    def __call__(self, features, methods):
        time.sleep(self.delay)  # as a real estimator blocks, off the event loop
        values = np.asarray(features, dtype=float)
        if (values < 0).any():
            raise ValueError("negative rows")
        self.calls.append((len(values), tuple(methods)))
        return {m: values[:, 0] * (2 if m == "predict" else 3) for m in methods}


async def _many(batcher, requests):
    return await asyncio.gather(
        *(batcher.submit(features, methods) for features, methods in requests),
        return_exceptions=True,
    )


def test_concurrent_requests_are_batched_and_split_back():
    recorder = Recorder()
    batcher = MicroBatcher(recorder, max_rows=64)
    requests = [(np.full((1 + i % 3, 2), float(i)), ["predict"]) for i in range(12)]
    answers = asyncio.run(_many(batcher, requests))
    for (features, _), answer in zip(requests, answers, strict=True):
        np.testing.assert_array_equal(answer["predict"], features[:, 0] * 2)
    assert len(recorder.calls) < len(requests)
    assert sum(rows for rows, _ in recorder.calls) == sum(len(f) for f, _ in requests)


def test_requested_outputs_are_honoured_per_group():
    recorder = Recorder()
    batcher = MicroBatcher(recorder, max_rows=64)
    requests = [
        (np.ones((1, 2)) * i, ["predict"] if i % 2 else ["predict", "score"]) for i in range(8)
    ]
    answers = asyncio.run(_many(batcher, requests))
    for (features, methods), answer in zip(requests, answers, strict=True):
        assert set(answer) == set(methods)
        if "score" in methods:
            np.testing.assert_array_equal(answer["score"], features[:, 0] * 3)


def test_a_failing_request_fails_alone():
    batcher = MicroBatcher(Recorder(), max_rows=64)
    requests = [(np.ones((1, 2)) * (-1 if i == 3 else i), ["predict"]) for i in range(6)]
    answers = asyncio.run(_many(batcher, requests))
    assert isinstance(answers[3], ValueError)
    assert all(isinstance(a, dict) for i, a in enumerate(answers) if i != 3)


def test_max_rows_bounds_a_batch():
    recorder = Recorder()
    batcher = MicroBatcher(recorder, max_rows=4)
    asyncio.run(_many(batcher, [(np.ones((2, 2)), ["predict"]) for _ in range(10)]))
    assert max(rows for rows, _ in recorder.calls) <= 4


def test_dataframes_are_stacked():
    seen = []

    def compute(features, methods):
        seen.append(len(features))
        return {"predict": features["a"].to_numpy() + 1}

    batcher = MicroBatcher(compute, max_rows=64)
    frames = [pd.DataFrame({"a": [float(i), float(i)]}) for i in range(5)]
    answers = asyncio.run(_many(batcher, [(frame, ["predict"]) for frame in frames]))
    for frame, answer in zip(frames, answers, strict=True):
        np.testing.assert_array_equal(answer["predict"], frame["a"].to_numpy() + 1)


@pytest.mark.parametrize("count", [1])
def test_a_lone_request_runs_at_once(count):
    recorder = Recorder(delay=0)
    batcher = MicroBatcher(recorder, max_rows=64)
    [answer] = asyncio.run(_many(batcher, [(np.ones((1, 2)), ["predict"])] * count))
    assert recorder.calls == [(1, ("predict",))]


def test_auto_batching_only_where_one_call_is_expensive():
    def fast(features, methods):
        return {"predict": np.zeros(len(features))}

    def slow(features, methods):
        time.sleep(0.002)
        return fast(features, methods)

    example = (np.zeros((1, 2)), ["predict"])
    assert choose_batcher("auto", compiled=False, compute=fast, example=example, max_rows=8) is None
    assert choose_batcher("auto", compiled=False, compute=slow, example=example, max_rows=8)
    assert choose_batcher("auto", compiled=True, compute=slow, example=example, max_rows=8) is None
    assert choose_batcher("on", compiled=True, compute=fast, example=example, max_rows=8)
    assert choose_batcher("off", compiled=False, compute=slow, example=example, max_rows=8) is None


# -- trust: the batcher checks what the estimator returns, and contains what it raises ----



@pytest.mark.parametrize(
    ("results", "phrase"),
    [
        ({"predict": np.zeros(3)}, None),
        ({"predict": np.zeros((3, 2))}, None),
        ({"predict": np.float64(1.0)}, "0-d"),
        ({"predict": np.asarray(1.0)}, "0-d"),
        ({"predict": np.zeros(2)}, "has 2 rows for a batch of 3 rows"),
        ({"predict": np.zeros(0)}, "has 0 rows"),
        ({"predict": [1, 2, 3]}, "not an array"),
        ({}, "output 'predict' is NoneType"),
        (np.zeros(3), "not outputs by name"),
    ],
)
def test_row_mismatch_names_the_output_and_the_rows(results, phrase):
    problem = row_mismatch(results, ["predict"], 3)
    if phrase is None:
        assert problem is None
    else:
        assert problem is not None and phrase in problem


class Gate:
    """A compute that blocks its first call until released, so the next requests queue
    up and go together as one batch; ``answer`` decides what a call returns."""

    def __init__(self, answer):
        import threading

        self.answer = answer
        self.first = threading.Event()
        self.calls: list[int] = []

    def __call__(self, features, methods):
        if not self.calls:
            self.calls.append(len(features))
            self.first.wait(timeout=30)
        else:
            self.calls.append(len(features))
        return self.answer(np.asarray(features, dtype=float), methods)


async def _queued(batcher, gate, requests):
    """The first request runs alone and holds the batcher; the rest queue behind it."""
    first = asyncio.ensure_future(batcher.submit(*requests[0]))
    while not gate.calls:
        await asyncio.sleep(0.001)
    rest = [asyncio.ensure_future(batcher.submit(*r)) for r in requests[1:]]
    await asyncio.sleep(0)
    gate.first.set()
    return await asyncio.gather(first, *rest, return_exceptions=True)


def _aggregate(values, methods):
    """One row per call, whatever the call's rows: a per-call aggregate."""
    return {m: np.array([values[:, 0].sum()]) for m in methods}


@pytest.mark.parametrize(
    "answer",
    [
        _aggregate,
        lambda values, methods: {m: np.float64(values.sum()) for m in methods},
        lambda values, methods: {m: values[:-1, 0] if len(values) > 1 else values[:, 0]
                                 for m in methods},  # fmt: skip
    ],
    ids=["aggregate", "0-d", "one row short"],
)
def test_a_batch_that_breaks_the_row_contract_is_answered_alone_and_stops_batching(
    answer, caplog
):
    gate = Gate(answer)
    batcher = MicroBatcher(gate, max_rows=64, model="m", version="1")
    requests = [(np.full((1 + i % 2, 2), float(i)), ["predict"]) for i in range(6)]
    with caplog.at_level(logging.ERROR, logger="v2serve.batching"):
        answers = asyncio.run(_queued(batcher, gate, requests))
        later = asyncio.run(_many(batcher, requests))
    for (features, methods), got in zip(requests, answers + later, strict=False):
        np.testing.assert_array_equal(got["predict"], answer(features, methods)["predict"])
    for (features, methods), got in zip(requests, later, strict=True):
        np.testing.assert_array_equal(got["predict"], answer(features, methods)["predict"])
    assert batcher.stopped is not None
    assert batcher.description.startswith("stopped (output 'predict'")
    stops = [r for r in caplog.records if "batching stopped for good" in r.getMessage()]
    assert len(stops) == 1, stops
    # After the stop, every call holds one request's rows.
    assert gate.calls[-len(requests) :] == [len(f) for f, _ in requests]


@pytest.mark.parametrize(
    "raised", [KeyboardInterrupt, SystemExit, MemoryError, GeneratorExit, RecursionError]
)
def test_a_base_exception_inside_the_batcher_fails_its_callers_not_the_loop(raised):
    def compute(features, methods):
        values = np.asarray(features, dtype=float)
        if (values < 0).any():
            raise raised("from the compute")
        return {m: values[:, 0] for m in methods}

    async def scenario():
        batcher = MicroBatcher(compute, max_rows=64)
        requests = [(np.full((1, 2), -1.0 if i % 3 == 0 else float(i)), ["predict"])
                    for i in range(9)]  # fmt: skip
        answers = await _many(batcher, requests)
        again = await batcher.submit(np.ones((1, 2)), ["predict"])
        return requests, answers, again

    requests, answers, again = asyncio.run(scenario())
    for (features, _), got in zip(requests, answers, strict=True):
        if (features < 0).any() and issubclass(raised, Exception):
            assert isinstance(got, raised), got  # handed over as it came
        elif (features < 0).any():
            assert isinstance(got, PredictionFailed), got
            assert raised.__name__ in str(got)
        else:
            np.testing.assert_array_equal(got["predict"], features[:, 0])
    np.testing.assert_array_equal(again["predict"], [1.0])


def test_features_that_cannot_be_stacked_are_answered_alone():
    def compute(features, methods):
        return {m: np.asarray(features).sum(axis=1) for m in methods}

    gate = Gate(lambda values, methods: compute(values, methods))
    batcher = MicroBatcher(gate, max_rows=64)
    requests = [(np.ones((1, 2 + i)), ["predict"]) for i in range(4)]
    answers = asyncio.run(_queued(batcher, gate, requests))
    for (features, methods), got in zip(requests, answers, strict=True):
        np.testing.assert_array_equal(got["predict"], compute(features, methods)["predict"])
    assert batcher.stopped is None


def test_a_cancelled_batch_resolves_every_caller():
    async def scenario():
        gate = Gate(lambda values, methods: {m: values[:, 0] for m in methods})
        batcher = MicroBatcher(gate, max_rows=64)
        first = asyncio.ensure_future(batcher.submit(np.ones((1, 2)), ["predict"]))
        while not gate.calls:
            await asyncio.sleep(0.001)
        queued = [asyncio.ensure_future(batcher.submit(np.ones((1, 2)), ["predict"]))
                  for _ in range(3)]  # fmt: skip
        await asyncio.sleep(0)
        for task in asyncio.all_tasks():
            if task.get_coro().__qualname__ == "MicroBatcher._run":
                task.cancel()
        gate.first.set()
        answers = await asyncio.gather(first, *queued, return_exceptions=True)
        return answers, batcher

    answers, batcher = asyncio.run(scenario())
    assert all(isinstance(a, PredictionFailed) for a in answers), answers
    assert "CancelledError" in str(answers[0])
    assert not batcher._pending and not batcher._running


def test_a_model_whose_example_breaks_the_row_contract_is_stopped_at_load():
    def fixed(features, methods):
        time.sleep(0.002)
        return {m: np.zeros(3) for m in methods}

    example = (np.zeros((1, 2)), ["predict"])
    batcher = choose_batcher("auto", False, fixed, example, 8, model="m", version="1")
    assert batcher is not None and batcher.stopped is not None
    assert "at load, output 'predict' has 3 rows for a batch of 2 rows" in batcher.description
    on = choose_batcher("on", False, fixed, example, 8, model="m", version="1")
    assert on is not None and on.stopped is not None


def test_batched_calls_run_on_the_models_own_executor_and_are_counted_there():
    """Issue 18: the batcher's calls go through the model version's executor, not the
    loop's default one, so its concurrency and queue metrics cover them."""
    threads: list[str] = []

    def compute(features, methods):
        threads.append(threading.current_thread().name)
        return {m: np.asarray(features)[:, 0] for m in methods}

    execution = ModelExecution("m", "1", "auto", 1, None)
    batcher = MicroBatcher(compute, max_rows=64, model="m", version="1", execution=execution)
    requests = [(np.full((1, 2), float(i)), ["predict"]) for i in range(5)]
    try:
        answers = asyncio.run(_many(batcher, requests))
    finally:
        execution.shutdown()
    for (features, _), got in zip(requests, answers, strict=True):
        np.testing.assert_array_equal(got["predict"], features[:, 0])
    assert threads and all(name.startswith("v2serve-m-1") for name in threads), threads
    stats = execution.stats
    assert stats.off_loop == len(threads) and stats.on_loop == 0
    assert stats.waiting == 0 and stats.running == 0
    assert dict(stats.histogram()[0])["+Inf"] == len(threads)


def test_choose_batcher_hands_the_execution_to_its_batcher():
    execution = ModelExecution("m", "1", "auto", 1, None)
    try:
        example = (np.zeros((1, 2)), ["predict"])
        batcher = choose_batcher(
            "on", False, lambda f, m: {"predict": np.zeros(len(f))}, example, 8,
            model="m", version="1", execution=execution,
        )  # fmt: skip
    finally:
        execution.shutdown()
    assert batcher is not None and batcher.execution is execution
