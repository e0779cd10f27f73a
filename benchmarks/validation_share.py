"""Validation's share of a 1-row iris request, in-process.

Times ``decode_features`` + ``requested_outputs`` (with a model's constraints) against the
whole ``SklearnRuntime.predict`` on the same request, and prints medians and the ratio.

    .venv/bin/python benchmarks/validation_share.py [runs]
"""

import asyncio
import statistics
import sys
import tempfile
import time
from pathlib import Path

from mlserver.settings import ModelParameters, ModelSettings
from mlserver.types import InferenceRequest

from runtimes.examples import iris_v2, write_artifact
from runtimes.sklearn import SklearnRuntime
from runtimes.validation import decode_features, requested_outputs

REQUEST = InferenceRequest.model_validate(
    {
        "inputs": [
            {"name": "input-0", "shape": [1, 4], "datatype": "FP64", "data": [5.1, 3.5, 1.4, 0.2]}
        ]
    }
)
EXTRA = {"features": {"0": {"min": 0, "max": 10}, "3": {"max": 5}}}


def _median_us(call, runs: int) -> float:
    times = []
    for _ in range(runs):
        start = time.perf_counter_ns()
        call()
        times.append(time.perf_counter_ns() - start)
    return statistics.median(times) / 1000


async def main(runs: int) -> None:
    with tempfile.TemporaryDirectory() as folder:
        write_artifact(iris_v2(), Path(folder) / "model.joblib")
        settings = ModelSettings(
            name="iris",
            implementation=SklearnRuntime,
            parameters=ModelParameters(uri=folder, extra=EXTRA),
        )
        runtime = SklearnRuntime(settings)
        await runtime.load()

    def validate() -> None:
        decode_features("iris", runtime._schema, REQUEST.inputs, constraints=runtime._constraints)
        requested_outputs("iris", runtime._schema, REQUEST.outputs)

    for _ in range(200):  # warm caches
        validate()
        await runtime.predict(REQUEST)
    validation = _median_us(validate, runs)
    predict_times = []
    for _ in range(runs):
        start = time.perf_counter_ns()
        await runtime.predict(REQUEST)
        predict_times.append(time.perf_counter_ns() - start)
    whole = statistics.median(predict_times) / 1000
    print(f"runs: {runs}")
    print(f"validation (decode_features + requested_outputs): {validation:.1f} us median")
    print(f"SklearnRuntime.predict (whole):                   {whole:.1f} us median")
    print(f"share: {100 * validation / whole:.1f}%")


if __name__ == "__main__":
    asyncio.run(main(int(sys.argv[1]) if len(sys.argv) > 1 else 5000))
