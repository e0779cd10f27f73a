"""In-process latency per call: scikit-learn vs the compiled paths (ONNX Runtime, and the
closed form for linear models).

Times the estimator method, ``CompiledPredictor.run`` and, where the model has one,
``NativePredictor.run`` on the same rows, one call at a time, and prints medians. Not a
test: numbers depend on the machine and its load; compare the columns of one run.

    .venv/bin/python benchmarks/compiled_speed.py [--calls 2000]
"""

import argparse
import statistics
import time
from collections.abc import Callable
from typing import Any

import numpy as np
from sklearn.datasets import load_breast_cancer, load_iris, load_wine
from sklearn.linear_model import LogisticRegression
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import StandardScaler

from runtimes.compiled.backend import compile_and_verify, compile_native, verify
from runtimes.compiled.convert import ConversionError
from runtimes.examples import breast_cancer_v1, iris_v1
from runtimes.schema import derive_schema


def wine_scaler_lr() -> Any:
    X, y = load_wine(return_X_y=True)
    return make_pipeline(StandardScaler(), LogisticRegression(max_iter=1000)).fit(X, y)


def xgboost_forest() -> Any:
    """The XGBoost example's kind of model, 200 trees, as its booster adapter serves it."""
    import tempfile
    from pathlib import Path

    import xgboost

    from runtimes.formats.boosters import load_xgboost

    X, y = load_breast_cancer(return_X_y=True)
    model = xgboost.XGBClassifier(n_estimators=200, max_depth=6, random_state=0, n_jobs=1)
    with tempfile.TemporaryDirectory() as folder:
        path = Path(folder) / "model.json"
        model.fit(X, y).save_model(path)
        return load_xgboost(path.read_bytes(), path.name)


def median_us(call: Callable[[], Any], calls: int) -> float:
    for _ in range(min(50, calls)):
        call()
    times = []
    for _ in range(calls):
        start = time.perf_counter_ns()
        call()
        times.append(time.perf_counter_ns() - start)
    return statistics.median(times) / 1000


def _compare(
    label: str, method: str, estimator: Any, predictor: Any, native: Any, X: Any, calls: int
) -> str:
    if len(X) > 1:
        calls = max(20, calls // len(X))
    # A 1-row forest call costs milliseconds in sklearn: fewer calls keep the run short.
    sklearn_calls = min(calls, 300)
    sk = median_us(lambda: getattr(estimator, method)(X), sklearn_calls)
    ox = median_us(lambda: predictor.run(predictor.feeds(X), [method]), calls)
    if native is None or method not in native.methods:
        return f"| {label} | {method} | {sk:,.0f} | {ox:,.1f} | | {sk / ox:,.2f}× |"
    nat = median_us(lambda: native.run(native.feeds(X), [method]), calls)
    return f"| {label} | {method} | {sk:,.0f} | {ox:,.1f} | {nat:,.1f} | {sk / nat:,.2f}× |"


def _native(estimator: Any) -> Any:
    schema = derive_schema(estimator)
    try:
        predictor = compile_native(estimator, schema)
        verify(predictor, estimator, schema, None)
    except ConversionError:
        return None
    return predictor


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--calls", type=int, default=2000)
    args = parser.parse_args()
    scenarios = [
        (
            "breast-cancer forest (100 trees), 1 row",
            breast_cancer_v1(),
            load_breast_cancer().data,
            1,
        ),
        (
            "breast-cancer forest (100 trees), 512 rows",
            breast_cancer_v1(),
            load_breast_cancer().data,
            512,
        ),
        ("XGBoost booster (200 trees), 1 row", xgboost_forest(), load_breast_cancer().data, 1),
        ("XGBoost booster (200 trees), 512 rows", xgboost_forest(), load_breast_cancer().data, 512),
        ("iris LogisticRegression, 1 row", iris_v1(), load_iris().data, 1),
        ("iris LogisticRegression, 512 rows", iris_v1(), load_iris().data, 512),
        ("wine StandardScaler + LR, 1 row", wine_scaler_lr(), load_wine().data, 1),
    ]
    print(
        "| scenario | method | sklearn (or the booster's library) µs | onnx µs | native µs |"
        " speed-up of the served path |\n| --- | --- | --- | --- | --- | --- |"
    )
    for label, estimator, data, rows in scenarios:
        predictor, _ = compile_and_verify(estimator, derive_schema(estimator), 1, None)
        native = _native(estimator)
        X = np.ascontiguousarray(np.resize(data, (rows, data.shape[1])), dtype=np.float64)
        for method in ("predict", "predict_proba"):
            print(_compare(label, method, estimator, predictor, native, X, args.calls))


if __name__ == "__main__":
    main()
