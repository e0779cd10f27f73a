"""The soak engine: mixed REST and gRPC traffic against several models, with bad requests
and version drops, while the server's memory and file descriptors are watched.

Run for 30 s by ``tests/e2e/test_soak.py`` and for 5 minutes by ``make soak``
(``benchmarks/soak.py``, a thin command line over ``soak`` here).

Starts its own v2serve (``tests/harness.py``, port 0) with iris, diabetes and breast-cancer.
Client threads (REST and gRPC through tritonclient) send requests back to back, one in
ten of them bad (a wrong datatype or shape, an unknown output); every ``--drop-every``
seconds a new iris version is renamed into the repository and the old one retires.

Reports the good requests that failed or answered differently from the estimator run
in-process (target 0), bad requests answered with anything but a 4xx, the server's RSS
after warm-up against the end (target growth under 10%), and its open file descriptors.
"""

import os
import random
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import tritonclient.grpc as grpcclient
import tritonclient.http as httpclient
from sklearn.datasets import load_breast_cancer, load_diabetes, load_iris
from tritonclient.utils import InferenceServerException

from runtimes.examples import (
    EXAMPLES,
    breast_cancer_v1,
    diabetes_v1,
    iris_v1,
    iris_v2,
    write_artifact,
)
from tests.harness import RunningServer, start_server, stop_server

IRIS_VERSIONS = [iris_v1(), iris_v2()]  # version N serves IRIS_VERSIONS[N % 2]
ESTIMATORS = {"diabetes": diabetes_v1(), "breast-cancer": breast_cancer_v1()}
ROWS = {
    "iris": load_iris().data,
    "diabetes": load_diabetes().data,
    "breast-cancer": load_breast_cancer().data,
}


COUNTS = ("good", "good_failed", "wrong", "bad", "bad_misanswered", "by_protocol", "samples")


@dataclass
class Tally:
    good: int = 0
    good_failed: int = 0
    wrong: int = 0
    bad: int = 0
    bad_misanswered: int = 0
    by_protocol: dict[str, int] = field(default_factory=dict)
    samples: list[str] = field(default_factory=list)
    lock: threading.Lock = field(default_factory=threading.Lock, repr=False)

    def note(self, counter: str, protocol: str, sample: str = "") -> None:
        with self.lock:
            setattr(self, counter, getattr(self, counter) + 1)
            self.by_protocol[protocol] = self.by_protocol.get(protocol, 0) + 1
            if sample and len(self.samples) < 10:
                self.samples.append(sample)


def _expected(model: str, version: str, rows: np.ndarray) -> np.ndarray:
    if model == "iris":
        return IRIS_VERSIONS[int(version) % 2].predict(rows)
    return ESTIMATORS[model].predict(rows)


def _request(protocol: str, model: str, rows: np.ndarray, bad: str | None) -> tuple[Any, Any]:
    module: Any = httpclient if protocol == "http" else grpcclient
    datatype = "FP32" if bad == "datatype" else "FP64"
    data = rows.astype(np.float32) if bad == "datatype" else rows
    if bad == "shape":
        data = data[:, :-1]
    tensor = module.InferInput("input-0", list(data.shape), datatype)
    kwargs = {"binary_data": random.random() < 0.5} if protocol == "http" else {}
    tensor.set_data_from_numpy(np.ascontiguousarray(data), **kwargs)
    output = "no-such-output" if bad == "output" else "predict"
    requested = module.InferRequestedOutput(output, **kwargs)
    return [tensor], [requested]


def _client_loop(server: RunningServer, protocol: str, stop: threading.Event, tally: Tally) -> None:
    module: Any = httpclient if protocol == "http" else grpcclient
    url = server.http_url if protocol == "http" else server.grpc_url
    client = module.InferenceServerClient(url=url)
    rng = random.Random(hash(protocol) ^ threading.get_ident())
    while not stop.is_set():
        model = rng.choice(sorted(ROWS))
        start = rng.randrange(0, len(ROWS[model]) - 4)
        rows = np.ascontiguousarray(ROWS[model][start : start + rng.randint(1, 4)])
        bad = rng.choice(["datatype", "shape", "output"]) if rng.random() < 0.1 else None
        inputs, outputs = _request(protocol, model, rows, bad)
        try:
            result = client.infer(model, inputs, outputs=outputs)
        except InferenceServerException as exc:
            if bad is None:
                tally.note("good_failed", protocol, f"{protocol} {model}: {exc}")
            else:
                status = str(exc.status() or "")
                ok = status in ("400", "StatusCode.INVALID_ARGUMENT")
                tally.note("bad" if ok else "bad_misanswered", protocol, "" if ok else str(exc))
            continue
        except Exception as exc:  # noqa: BLE001 - a transport failure is a failed request
            tally.note("good_failed" if bad is None else "bad_misanswered", protocol, repr(exc))
            continue
        if bad is not None:
            tally.note("bad_misanswered", protocol, f"{protocol} {model} {bad}: answered")
            continue
        response = result.get_response()
        version = response["model_version"] if protocol == "http" else response.model_version
        got = result.as_numpy("predict").reshape(-1)
        want = _expected(model, version, rows).reshape(-1)
        if got.shape != want.shape or not np.allclose(got, want, rtol=1e-6, atol=1e-6):
            tally.note("wrong", protocol, f"{protocol} {model} v{version}: {got} != {want}")
        else:
            tally.note("good", protocol)


def _process_figures(pid: int) -> dict[str, int]:
    status = Path(f"/proc/{pid}/status").read_text()
    rss_kb = next(int(line.split()[1]) for line in status.splitlines() if line.startswith("VmRSS"))
    return {"rss_kb": rss_kb, "open_fds": len(os.listdir(f"/proc/{pid}/fd"))}


def _drop_version(repository: Path, version: int) -> None:
    model_dir = repository / "iris"
    staging = model_dir / f".staging-{version}"
    write_artifact(IRIS_VERSIONS[version % 2], staging / "model.joblib")
    os.rename(staging, model_dir / str(version))


def soak(
    workdir: Path, duration: float, drop_every: float, clients: int, warmup: float
) -> dict[str, Any]:
    repository = workdir / "repo"
    for model, versions in EXAMPLES.items():
        if model != "iris":
            for version, train in versions.items():
                write_artifact(train(), repository / model / str(version) / "model.joblib")
    _drop_version(repository, 1)
    server = start_server(workdir / "server", repository)
    tally, stop = Tally(), threading.Event()
    threads = [
        threading.Thread(target=_client_loop, args=(server, protocol, stop, tally), daemon=True)
        for protocol in ("http", "grpc")
        for _ in range(clients)
    ]
    figures: dict[str, Any] = {}
    started = time.monotonic()
    try:
        for thread in threads:
            thread.start()
        next_version, next_drop = 2, started + drop_every
        warmed = False
        while (now := time.monotonic()) < started + duration:
            if not warmed and now >= started + warmup:
                figures["after_warmup"] = _process_figures(server.process.pid)
                warmed = True
            if now >= next_drop:
                _drop_version(repository, next_version)
                next_version, next_drop = next_version + 1, next_drop + drop_every
            time.sleep(0.1)
        stop.set()
        for thread in threads:
            thread.join(timeout=30)
        figures["at_end"] = _process_figures(server.process.pid)
        figures["versions_dropped"] = next_version - 2
    finally:
        stop.set()
        exit_code = stop_server(server)
    before, after = figures["after_warmup"]["rss_kb"], figures["at_end"]["rss_kb"]
    counts = {k: getattr(tally, k) for k in COUNTS}
    return {
        "duration_s": duration,
        "drop_every_s": drop_every,
        "clients_per_protocol": clients,
        **counts,
        **figures,
        "rss_growth_pct": round(100.0 * (after - before) / before, 2),
        "server_exit_code": exit_code,
    }
