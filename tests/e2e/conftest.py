"""A real v2serve server, started once per test session on free ports.

This process imports ``tritonclient.grpc``, whose protobuf symbols clash with
``mlserver.grpc``: nothing here may import MLServer or the runtimes that use it.
"""

import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import joblib
import pytest
import requests

from runtimes.examples import (
    EXAMPLES,
    FORMAT_EXAMPLES,
    TEST_EXAMPLES,
    TEST_FORMAT_EXAMPLES,
    train_into,
    write_formats_into,
)

ROOT = Path(__file__).resolve().parents[2]
V2SERVE = Path(sys.executable).parent / "v2serve"


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@dataclass
class RunningServer:
    process: subprocess.Popen[bytes]
    http_port: int
    grpc_port: int
    metrics_port: int
    repository: Path
    log: Path

    @property
    def http_url(self) -> str:
        return f"127.0.0.1:{self.http_port}"

    @property
    def grpc_url(self) -> str:
        return f"127.0.0.1:{self.grpc_port}"

    @property
    def base(self) -> str:
        return f"http://{self.http_url}"

    def log_text(self) -> str:
        return self.log.read_text(errors="replace")


def build_repository(target: Path) -> Path:
    """The example repository's settings, trained artifacts, plus models only tests use."""
    shutil.copytree(ROOT / "model-repository", target, ignore=shutil.ignore_patterns("*.joblib"))
    train_into(target, EXAMPLES)
    train_into(target, TEST_EXAMPLES)
    write_formats_into(target, {**FORMAT_EXAMPLES, **TEST_FORMAT_EXAMPLES})
    # A folder holding nothing but a pickled estimator is served with defaults.
    bare = target / "bare" / "1"
    bare.mkdir(parents=True)
    shutil.copy(target / "iris" / "1" / "model.joblib", bare / "model.joblib")
    for name, entry in CONSTRAINED_MODELS.items():
        settings = {key: value for key, value in entry.items() if key != "_artifact"}
        artifact = target / entry["_artifact"] / "model.joblib"
        if artifact.parent != target / name / "1":
            (target / name / "1").mkdir(parents=True)
            shutil.copy(artifact, target / name / "1" / "model.joblib")
        (target / name / "model-settings.json").write_text(json.dumps(settings))
    # The forest forced onto each inference backend (docs/compiled.md).
    for backend in ("onnx", "sklearn"):
        forced = target / f"breast-cancer-{backend}"
        (forced / "1").mkdir(parents=True)
        shutil.copy(target / "breast-cancer" / "1" / "model.joblib", forced / "1" / "model.joblib")
        settings = {"parameters": {"extra": {"inference_backend": backend}}}
        (forced / "model-settings.json").write_text(json.dumps(settings))
    # Iris declared with every numeric datatype, for the tritonclient conformance tests.
    for datatype in DATATYPES:
        typed = target / f"iris-{datatype.lower()}"
        (typed / "1").mkdir(parents=True)
        shutil.copy(target / "iris" / "1" / "model.joblib", typed / "1" / "model.joblib")
        tensor = {"name": "input-0", "datatype": datatype, "shape": [-1, 4]}
        (typed / "model-settings.json").write_text(json.dumps({"inputs": [tensor]}))
    return target


# BF16 is decoded, but MLServer's metadata datatypes have no BF16 for a model to declare.
DATATYPES = [
    "FP16", "FP32", "FP64", "INT8", "INT16", "INT32", "INT64",
    "UINT8", "UINT16", "UINT32", "UINT64", "BOOL",
]  # fmt: skip


# Models with declared constraints (issue 4); "_artifact" names the trained one they reuse.
IRIS_FEATURES = ["sepal_length", "sepal_width", "petal_length", "petal_width"]
CONSTRAINED_MODELS: dict[str, dict[str, Any]] = {
    "iris-limited": {
        "_artifact": "iris/1",
        "max_batch_size": 2,
        "parameters": {
            "extra": {
                "feature_names": IRIS_FEATURES,
                "features": {"sepal_length": {"min": 4, "max": 8}, "3": {"max": 3}},
            }
        },
    },
    "wine-strict": {
        "_artifact": "wine-strict/1",
        "parameters": {"extra": {"features": {"alcohol": {"min": 10, "max": 16}}}},
    },
    "wine-declared": {
        "_artifact": "wine-columns/1",
        "parameters": {"extra": {"features": {"colour": {"categories": ["pale", "medium"]}}}},
    },
}


def start_server(
    workdir: Path,
    repository: Path,
    settings: dict[str, Any] | None = None,
    env: dict[str, str] | None = None,
    extra_args: list[str] | None = None,
    wait_ready: bool = True,
    prefix: list[str] | None = None,
) -> RunningServer:
    workdir.mkdir(parents=True, exist_ok=True)
    settings_dir = workdir / "settings"
    settings_dir.mkdir(exist_ok=True)
    (settings_dir / "settings.json").write_text(json.dumps(settings or {}))
    http_port, grpc_port, metrics_port = free_port(), free_port(), free_port()
    environment = {
        **os.environ,
        "MLSERVER_HTTP_PORT": str(http_port),
        "MLSERVER_GRPC_PORT": str(grpc_port),
        "MLSERVER_METRICS_PORT": str(metrics_port),
        "MLSERVER_HOST": "127.0.0.1",
        **(env or {}),
    }
    log = workdir / "server.log"
    args = [*(prefix or []), str(V2SERVE), "start", "--settings", str(settings_dir)]
    args += extra_args if extra_args is not None else ["--model-repository", str(repository)]
    with log.open("wb") as sink:
        process = subprocess.Popen(
            args, cwd=workdir, env=environment, stdout=sink, stderr=subprocess.STDOUT
        )
    server = RunningServer(process, http_port, grpc_port, metrics_port, repository, log)
    if wait_ready:
        try:
            wait_until_ready(server)
        except RuntimeError:
            stop_server(server)
            raise
    return server


def wait_until_ready(server: RunningServer, timeout: float = 90.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if server.process.poll() is not None:
            raise RuntimeError(f"v2serve exited early:\n{server.log_text()}")
        try:
            if requests.get(f"{server.base}/v2/health/ready", timeout=1).status_code == 200:
                return
        except requests.RequestException:
            pass
        time.sleep(0.2)
    raise RuntimeError(f"v2serve not ready after {timeout}s:\n{server.log_text()}")


def stop_server(server: RunningServer, sig: int = signal.SIGTERM, timeout: float = 30) -> int:
    if server.process.poll() is None:
        server.process.send_signal(sig)
        try:
            server.process.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            server.process.kill()
            server.process.wait()
    return server.process.returncode


@pytest.fixture(scope="session")
def repository(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return build_repository(tmp_path_factory.mktemp("repo") / "model-repository")


@pytest.fixture(scope="session")
def server(tmp_path_factory: pytest.TempPathFactory, repository: Path) -> Iterator[RunningServer]:
    # The settings file names ports that the environment overrides: env beats file.
    workdir = tmp_path_factory.mktemp("server")
    running = start_server(
        workdir, repository, settings={"http_port": free_port(), "grpc_port": free_port()}
    )
    yield running
    assert stop_server(running) == 0, running.log_text()


@pytest.fixture(scope="session")
def estimators(repository: Path) -> dict[tuple[str, str], Any]:
    """The same artifacts the server loads, run in-process to compare answers."""
    return {
        (path.parts[-3], path.parts[-2]): joblib.load(path)
        for path in repository.glob("*/*/model.joblib")
    }


@pytest.fixture(params=["http", "grpc"])
def protocol(request: pytest.FixtureRequest) -> str:
    return str(request.param)
