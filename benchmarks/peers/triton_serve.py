"""A real Triton (``tritonserver`` 2.51 inside PyTriton 0.7.0) serving the benchmark's models.

Run by the harness with the PyTriton venv's interpreter (``.bench-tools/pytriton``), never
imported: that venv has numpy<2, PyTriton and the model libraries, nothing of v2serve.
Each model is bound as a ``@batch`` function that calls the very artifact v2serve serves
and returns only ``predict``, so both servers do the same work; Triton's dynamic batcher
merges concurrent requests.

    python benchmarks/peers/triton_serve.py --http-port 8000 --grpc-port 8001 \
        --metrics-port 8002 --model light=sklearn:/path/model.joblib --model ... \
        [--max-batch heavy-sklearn=32768]
"""

from __future__ import annotations

import argparse
import os
import signal
import sysconfig
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np

MAX_BATCH = 1024
"""The 1,000-row cell's request is one batch: Triton refuses a request over this size."""


def _load(kind: str, path: Path) -> tuple[Callable[[np.ndarray], np.ndarray], int]:
    """(predict, number of features) of an artifact, as the libraries compute ``predict``."""
    if kind == "xgboost":
        import xgboost

        booster = xgboost.Booster()
        booster.load_model(str(path))

        def predict_xgb(rows: np.ndarray) -> np.ndarray:
            probability = booster.inplace_predict(rows)
            if probability.ndim == 2:
                return probability.argmax(axis=1).astype(np.int64)
            return (probability > 0.5).astype(np.int64)

        return predict_xgb, booster.num_features()
    import joblib

    estimator = joblib.load(path)
    return estimator.predict, int(estimator.n_features_in_)


def _infer_function(predict: Callable[[np.ndarray], np.ndarray]) -> Any:
    from pytriton.decorators import batch

    @batch
    def infer(**inputs: np.ndarray) -> dict[str, np.ndarray]:
        rows = inputs["input-0"]
        return {"predict": np.asarray(predict(rows)).astype(np.int64).reshape(-1, 1)}

    return infer


def max_batches(specs: list[str]) -> dict[str, int]:
    """``--max-batch name=N`` flags as {name: N}: models that take requests over MAX_BATCH."""
    found = {}
    for spec in specs:
        name, _, size = spec.partition("=")
        if not name or not size.isdigit() or int(size) < 1:
            raise ValueError(f"--max-batch wants name=N with N >= 1, got '{spec}'")
        found[name] = int(size)
    return found


def _interrupt(*_: object) -> None:
    raise KeyboardInterrupt


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--http-port", type=int, required=True)
    parser.add_argument("--grpc-port", type=int, required=True)
    parser.add_argument("--metrics-port", type=int, required=True)
    parser.add_argument(
        "--model", action="append", default=[], help="name=kind:path, kind sklearn|xgboost"
    )
    parser.add_argument(
        "--max-batch", action="append", default=[], help=f"name=N (default {MAX_BATCH})"
    )
    args = parser.parse_args(argv)
    batches = max_batches(args.max_batch)
    # The Python backend's stub links libpython3.11 dynamically; without this it finds the
    # system's 3.11.2 instead of this interpreter's and every model fails to load.
    libdir = sysconfig.get_config_var("LIBDIR")
    os.environ["LD_LIBRARY_PATH"] = ":".join(
        p for p in (libdir, os.environ.get("LD_LIBRARY_PATH", "")) if p
    )

    from pytriton.model_config import DynamicBatcher, ModelConfig, Tensor
    from pytriton.triton import Triton, TritonConfig, TritonSecurityConfig

    config = TritonConfig(
        http_address="127.0.0.1",
        http_port=args.http_port,
        grpc_address="127.0.0.1",
        grpc_port=args.grpc_port,
        metrics_port=args.metrics_port,
        log_verbose=0,
    )
    # perf_analyzer reads statistics, which PyTriton otherwise puts behind a random token.
    security = TritonSecurityConfig(
        restricted_endpoints=["shared-memory", "model-repository", "trace", "logging"]
    )
    triton = Triton(config=config, security_config=security)
    for spec in args.model:
        name, rest = spec.split("=", 1)
        kind, path = rest.split(":", 1)
        predict, features = _load(kind, Path(path))
        triton.bind(
            model_name=name,
            infer_func=_infer_function(predict),
            inputs=[Tensor(name="input-0", dtype=np.float64, shape=(features,))],
            outputs=[Tensor(name="predict", dtype=np.int64, shape=(1,))],
            config=ModelConfig(
                max_batch_size=batches.get(name, MAX_BATCH), batcher=DynamicBatcher()
            ),
            strict=False,
        )
    signal.signal(signal.SIGTERM, _interrupt)
    try:
        triton.serve()
    finally:
        triton.stop()


if __name__ == "__main__":
    main()
