"""The sklearn and compiled backends of one model agree on every input: same status and
error class, equal values (runtimes/compiled/tolerance.py) where both answer.

Both backends are real ``SklearnRuntime``s loaded in-process from the same artifact
(``inference_backend: sklearn`` and ``onnx``); requests go through ``predict``, validation
included. Inputs mix ordinary rows with what adversaries send: values beyond float32's
range, subnormals, -0.0, huge integers, NaN and Inf.
"""

import asyncio
from pathlib import Path

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from mlserver.settings import ModelParameters, ModelSettings
from mlserver.types import InferenceRequest, RequestInput

from runtimes.compiled.tolerance import disagreement
from runtimes.errors import V2ServeError
from runtimes.examples import EXAMPLES, write_artifact
from runtimes.sklearn import SklearnRuntime

MODELS = {
    "breast-cancer": (EXAMPLES["breast-cancer"][1], 30),
    "iris": (EXAMPLES["iris"][1], 4),
    "diabetes": (EXAMPLES["diabetes"][1], 10),
}


def _load(folder: Path, backend: str) -> SklearnRuntime:
    settings = ModelSettings(
        name="m",
        implementation=SklearnRuntime,
        parameters=ModelParameters(
            uri=str(folder), version="1", extra={"inference_backend": backend, "batching": "off"}
        ),
    )
    runtime = SklearnRuntime(settings)
    asyncio.run(runtime.load())
    return runtime


@pytest.fixture(scope="module")
def backends(tmp_path_factory: pytest.TempPathFactory):
    loaded = {}
    for name, (train, _) in MODELS.items():
        folder = tmp_path_factory.mktemp(name) / "1"
        write_artifact(train(), folder / "model.joblib")
        compiled = _load(folder, "onnx")
        assert compiled.backend_parameters["inference_backend"] == "onnx"
        loaded[name] = (_load(folder, "sklearn"), compiled)
    return loaded


def _answer(runtime: SklearnRuntime, rows: list[list[float]], output: str):
    request = InferenceRequest(
        inputs=[
            RequestInput(
                name="input-0",
                datatype="FP64",
                shape=[len(rows), len(rows[0])],
                data=[value for row in rows for value in row],
            )
        ],
        outputs=[{"name": output}],
    )
    try:
        (result,) = asyncio.run(runtime.predict(request)).outputs
    except V2ServeError as exc:
        return exc.status_code, type(exc).__name__, None
    return 200, "", np.asarray(result.data.root)


ADVERSARIAL = [
    1e300, -1e300, 3.5e38, -3.5e38, float(np.finfo(np.float32).max), 3.0e38, 1e37,
    5e-324, 1e-310, float(np.finfo(np.float64).tiny), -0.0, 0.0,
    2**63, -(2**63), 2**64 + 1, 10**20, float("nan"), float("inf"), float("-inf"),
]  # fmt: skip
values = st.one_of(
    st.sampled_from(ADVERSARIAL),
    st.floats(allow_nan=True, allow_infinity=True, allow_subnormal=True),
    st.floats(-50, 50),
    st.integers(-(2**70), 2**70),
)


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(data=st.data())
def test_backends_agree_on_status_and_values(backends, data):
    name = data.draw(st.sampled_from(sorted(MODELS)))
    width = MODELS[name][1]
    rows = data.draw(
        st.lists(st.lists(values, min_size=width, max_size=width), min_size=1, max_size=3)
    )
    reference, compiled = backends[name]
    outputs = ["predict"] + (["predict_proba"] if name != "diabetes" else [])
    for output in outputs:
        expected = _answer(reference, rows, output)
        got = _answer(compiled, rows, output)
        assert got[:2] == expected[:2], (name, output, rows, expected[:2], got[:2])
        if expected[2] is not None:
            want, have = expected[2], got[2]
            # Identical values (inf == inf, nan where nan) agree; the rest within tolerance.
            same = (want == have) | (np.isnan(want) & np.isnan(have))
            problem = disagreement(output, np.where(same, 0, want), np.where(same, 0, have))
            assert problem is None, (name, output, rows, problem)


@pytest.mark.parametrize("value", [1e300, -1e300, 1e40])
def test_beyond_float32_is_refused_by_both_backends_of_a_forest(backends, value):
    reference, compiled = backends["breast-cancer"]
    row = [[value] + [1.0] * 29]
    expected = _answer(reference, row, "predict")
    assert expected[:2] == (400, "EstimatorRejectedInput")
    assert _answer(compiled, row, "predict")[:2] == expected[:2]
