"""Adaptive batching: concurrent requests share a call, keep their rows, outputs and errors."""

import asyncio
import time

import numpy as np
import pandas as pd
import pytest

from runtimes.batching import MicroBatcher


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
    from runtimes.batching import choose_batcher

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
