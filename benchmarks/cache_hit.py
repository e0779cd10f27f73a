"""Response cache: a hit against a miss on a heavy model, over REST on loopback.

Starts its own v2serve (``MLSERVER_CACHE_ENABLED=true``, ``tests/harness.py``, port 0) with a
200-tree RandomForest, 1 row per request, ``predict_proba``:

- hit:      the same row every time (after one warm-up miss);
- miss:     a new row every time, so each request looks up, runs the forest and stores;
- uncached: the same artifact in a model that opts out (``cache_enabled: false``).

Latency: sequential requests on one keep-alive session, median and p90.
Throughput: a few client processes, each with its own session, for a fixed request
count; the clients share the machine's cores with the server, so this is a floor.

    .venv/bin/python -m benchmarks.cache_hit [--requests 400] [--clients 3]
"""

import argparse
import json
import statistics
import tempfile
import time
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path

import joblib
import numpy as np
import requests
from sklearn.datasets import load_breast_cancer
from sklearn.ensemble import RandomForestClassifier

from tests.harness import start_server, stop_server

ROWS = load_breast_cancer().data


def _repository(root: Path) -> Path:
    X, y = load_breast_cancer(return_X_y=True)
    forest = RandomForestClassifier(n_estimators=200, random_state=0, n_jobs=1).fit(X, y)
    # Served by sklearn, so a miss costs what the heavy forest costs; compiled (the
    # default), a miss is already microseconds and the cache has little left to save.
    sklearn = {"parameters": {"extra": {"inference_backend": "sklearn"}}}
    uncached = {**sklearn, "cache_enabled": False}
    for name, settings in (("rf200", sklearn), ("rf200-uncached", uncached)):
        folder = root / name / "1"
        folder.mkdir(parents=True)
        joblib.dump(forest, folder / "model.joblib")
        (root / name / "model-settings.json").write_text(json.dumps(settings))
    return root


def _body(row: np.ndarray) -> bytes:
    tensor = {"name": "input-0", "shape": [1, len(row)], "datatype": "FP64", "data": row.tolist()}
    return json.dumps({"inputs": [tensor], "outputs": [{"name": "predict_proba"}]}).encode()


def _rows(kind: str, count: int, offset: int) -> list[bytes]:
    if kind == "miss":
        # A distinct row per request: scaled by a unique factor, never repeated in a run.
        return [_body(ROWS[0] * (1 + (offset + i + 1) * 1e-9)) for i in range(count)]
    return [_body(ROWS[0])] * count


def _run(url: str, bodies: list[bytes]) -> list[float]:
    session = requests.Session()
    headers = {"Content-Type": "application/json"}
    latencies = []
    for body in bodies:
        started = time.perf_counter()
        response = session.post(url, data=body, headers=headers, timeout=30)
        latencies.append(time.perf_counter() - started)
        response.raise_for_status()
    return latencies


def _cache_counts(metrics_port: int) -> str:
    text = requests.get(f"http://127.0.0.1:{metrics_port}/metrics", timeout=5).text
    return " ".join(
        line for line in text.splitlines() if line.startswith("v2serve_cache_") and "rf200" in line
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--requests", type=int, default=400, help="per case and phase")
    parser.add_argument("--clients", type=int, default=3, help="client processes for throughput")
    args = parser.parse_args()
    count = min(args.requests, 5000)

    with tempfile.TemporaryDirectory() as tmp:
        repository = _repository(Path(tmp) / "model-repository")
        server = start_server(
            Path(tmp) / "server",
            repository,
            env={"MLSERVER_CACHE_ENABLED": "true", "MLSERVER_CACHE_SIZE": str(20 * count)},
        )
        try:
            cases = {"hit": "rf200", "miss": "rf200", "uncached": "rf200-uncached"}
            results = {}
            offset = 0
            for kind, model in cases.items():
                url = f"{server.base}/v2/models/{model}/infer"
                _run(url, _rows(kind, 20, offset))  # warm-up (and the hit case's one miss)
                offset += 20
                latencies = _run(url, _rows(kind, count, offset))
                offset += count
                per_client = count // args.clients
                batches = [
                    _rows(kind, per_client, offset + i * per_client) for i in range(args.clients)
                ]
                offset += per_client * args.clients
                started = time.perf_counter()
                with ProcessPoolExecutor(args.clients) as pool:
                    list(pool.map(_run, [url] * args.clients, batches))
                elapsed = time.perf_counter() - started
                results[kind] = {
                    "median_ms": statistics.median(latencies) * 1e3,
                    "p90_ms": statistics.quantiles(latencies, n=10)[-1] * 1e3,
                    "req_per_s": per_client * args.clients / elapsed,
                }
            print(f"{'case':<9} {'median ms':>10} {'p90 ms':>8} {'req/s':>8}")
            for kind, row in results.items():
                print(
                    f"{kind:<9} {row['median_ms']:>10.2f} {row['p90_ms']:>8.2f} "
                    f"{row['req_per_s']:>8.0f}"
                )
            hit, miss = results["hit"], results["miss"]
            print(
                f"miss/hit median latency: {miss['median_ms'] / hit['median_ms']:.1f}x, "
                f"hit/miss throughput: {hit['req_per_s'] / miss['req_per_s']:.1f}x"
            )
            print(_cache_counts(server.metrics_port))
        finally:
            stop_server(server)


if __name__ == "__main__":
    main()
