"""Batched estimators that misbehave, under concurrency, through the real data plane.

A real ``SklearnRuntime`` (``batching: on``) serves estimators from ``tests.faulty`` whose
output, on some calls, has the wrong number of rows, is 0-d, or which raise (exceptions
outside ``Exception`` too) or are slow. Concurrent callers go through ``V2DataPlane.infer``
as REST and gRPC do. Whatever the estimator does, each caller gets what the same estimator
gives for that caller's rows alone, or an error if that raises; nobody waits forever, and
no in-flight slot is left behind (a leak would refuse later requests with 429).
"""

import asyncio
import itertools
from pathlib import Path

import joblib
import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from mlserver.settings import ModelParameters, ModelSettings, Settings
from mlserver.types import InferenceRequest, RequestInput

from runtimes.batching import MicroBatcher
from runtimes.dataplane import V2DataPlane
from runtimes.errors import PredictionFailed
from runtimes.extensions.statistics import Statistics
from runtimes.repository.lifecycle import VersionLifecycle
from runtimes.settings import ServerOptions
from runtimes.sklearn import SklearnRuntime
from tests.faulty import RAISED, Misbehaves, Raises, iris_fitted

from .in_process import release_metrics
from .repository_support import make_lifecycle

KINDS = ("rows", "aggregate", "scalar", "slow", "good", "raises")
TRIGGER = 5.0
INFLIGHT_LIMIT = 16
_versions = itertools.count(1)


def _estimator(kind: str):
    if kind == "raises":
        return iris_fitted(Raises(trigger=TRIGGER))
    return iris_fitted(Misbehaves(kind, trigger=TRIGGER, seconds=0.005))


@pytest.fixture(scope="module")
def served(tmp_path_factory: pytest.TempPathFactory):
    """One lifecycle and data plane; each example loads a fresh version of its model."""
    root = tmp_path_factory.mktemp("batching-property")
    lifecycle = make_lifecycle(root)
    plane = V2DataPlane(
        Settings(),
        lifecycle.registry,
        lifecycle.states,
        ServerOptions(max_inflight_per_model=INFLIGHT_LIMIT),
        lifecycle.inflight,
        Statistics(),
    )
    estimators = {kind: _estimator(kind) for kind in KINDS}
    for kind, estimator in estimators.items():
        (root / kind).mkdir()
        joblib.dump(estimator, root / kind / "model.joblib")
    yield root, lifecycle, plane, estimators
    release_metrics(plane)


async def _load(lifecycle: VersionLifecycle, root: Path, kind: str) -> str:
    version = str(next(_versions))
    settings = ModelSettings(
        name=kind,
        implementation=SklearnRuntime,
        parameters=ModelParameters(
            uri=str(root / kind),
            version=version,
            extra={"batching": "on", "inference_backend": "sklearn"},
        ),
    )
    assert await lifecycle.load(settings), lifecycle.states.of_model(kind)
    return version


def _request(rows: np.ndarray) -> InferenceRequest:
    return InferenceRequest(
        inputs=[
            RequestInput(
                name="input-0", datatype="FP64", shape=list(rows.shape), data=rows.ravel().tolist()
            )
        ],
        outputs=[{"name": "predict"}],
    )


def _rows(spec: list[tuple[bool, int]]) -> np.ndarray:
    """One row per (misbehave, which) pair: a trigger row, or an ordinary iris-like row."""
    return np.array(
        [[TRIGGER + 1.0 if bad else 5.0 - 0.5, float(which), 1.4, 0.2] for bad, which in spec]
    )


callers = st.lists(
    st.lists(st.tuples(st.booleans(), st.integers(0, len(RAISED) - 1)), min_size=1, max_size=3),
    min_size=2,
    max_size=12,
)


@settings(
    max_examples=60,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)
@given(kind=st.sampled_from(KINDS), specs=callers)
def test_each_caller_gets_its_own_rows_or_an_error_and_no_slot_leaks(served, kind, specs):
    root, lifecycle, plane, estimators = served
    estimator = estimators[kind]
    requests = [_rows(spec) for spec in specs]

    async def scenario():
        version = await _load(lifecycle, root, kind)
        model = await plane.resolve(kind, version)
        answers = await asyncio.wait_for(
            asyncio.gather(
                *(plane.infer(_request(rows), kind, version) for rows in requests),
                return_exceptions=True,
            ),
            timeout=120,
        )
        leaked = plane.inflight.count(model)
        # A leaked slot or a wedged batcher shows here: a well-behaved request must pass.
        good = _request(_rows([(False, 0)]))
        after = await asyncio.wait_for(plane.infer(good, kind, version), 60)
        await lifecycle.retire(kind, version)
        return model, answers, leaked, after

    model, answers, leaked, after = asyncio.run(scenario())
    assert leaked == 0
    assert after.outputs[0].name == "predict"
    for rows, answer in zip(requests, answers, strict=True):
        try:
            expected = np.asarray(estimator.predict(rows))
        except BaseException as exc:  # noqa: BLE001 - the estimator's own failure
            assert isinstance(answer, PredictionFailed), (kind, rows, answer)
            assert type(exc).__name__ in str(answer)
            continue
        assert not isinstance(answer, BaseException), (kind, rows, answer)
        (output,) = answer.outputs
        got = np.asarray(output.data.root)
        assert list(output.shape) == list(expected.shape), (kind, rows, output.shape)
        np.testing.assert_array_equal(got.reshape(expected.shape), expected)
    batcher = model._batcher
    assert isinstance(batcher, MicroBatcher)
    assert not batcher._pending and not batcher._running and not batcher._tasks
    if kind in ("good", "slow", "raises"):
        assert batcher.stopped is None


def test_a_stopped_batcher_shows_in_the_config_parameters(served):
    root, lifecycle, plane, _ = served

    async def scenario():
        version = await _load(lifecycle, root, "aggregate")
        model = await plane.resolve("aggregate", version)
        before = model.backend_parameters["batching"]
        rows = [_rows([(True, 0), (False, 0)]), _rows([(False, 0)]), _rows([(True, 0)])]
        await asyncio.gather(*(plane.infer(_request(r), "aggregate", version) for r in rows * 3))
        after = model.backend_parameters["batching"]
        await lifecycle.retire("aggregate", version)
        return before, after, model._batcher.stopped

    before, after, stopped = asyncio.run(scenario())
    assert before == "on (up to 64 rows per call)"
    assert stopped is not None
    assert after == f"stopped ({stopped})"
    assert "output 'predict' has 1 rows for a batch of" in after
