"""A real v2serve server, started once per test session on port 0 (``tests/harness.py``).

This process imports ``tritonclient.grpc``, whose protobuf symbols clash with
``mlserver.grpc``: nothing here may import MLServer or the runtimes that use it.

``start_server``, ``stop_server``, ``wait_until_ready``, ``RunningServer``, ``free_port``,
``ROOT`` and ``V2SERVE`` live in the harness and are imported from here too.
"""

import json
import shutil
import socket
from collections.abc import Iterable, Iterator
from pathlib import Path
from typing import Any

import joblib
import pytest

from runtimes.examples import (
    EXAMPLES,
    FORMAT_EXAMPLES,
    TEST_EXAMPLES,
    TEST_FORMAT_EXAMPLES,
    train_into,
    write_artifact,
    write_formats_into,
)
from tests.faulty import non_finite_regressor
from tests.harness import (
    ROOT,
    V2SERVE,
    RunningServer,
    free_port,
    holds_for,
    start_server,
    stop_server,
    wait_until,
    wait_until_ready,
)

__all__ = [
    "ROOT",
    "V2SERVE",
    "RunningServer",
    "build_repository",
    "copy_models",
    "free_port",
    "holds_for",
    "start_server",
    "stop_server",
    "wait_until",
    "wait_until_ready",
]


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
    # Outputs of +Inf, -Inf and NaN, which JSON cannot carry (binary and gRPC can).
    write_artifact(non_finite_regressor(), target / "non-finite" / "1" / "model.joblib")
    settings = {"parameters": {"extra": {"inference_backend": "sklearn"}}}
    (target / "non-finite" / "model-settings.json").write_text(json.dumps(settings))
    # Iris declared with every numeric datatype, for the tritonclient conformance tests.
    for datatype in DATATYPES:
        typed = target / f"iris-{datatype.lower()}"
        (typed / "1").mkdir(parents=True)
        shutil.copy(target / "iris" / "1" / "model.joblib", typed / "1" / "model.joblib")
        tensor = {"name": "input-0", "datatype": datatype, "shape": [-1, 4]}
        (typed / "model-settings.json").write_text(json.dumps({"inputs": [tensor]}))
    return target


def copy_models(repository: Path, target: Path, names: Iterable[str]) -> Path:
    """A repository of only ``names``, copied from the session's trained one.

    Loading is most of a server's start-up (every model is converted and verified), so a
    server started for a handful of tests loads only the models they call: the full
    repository takes several times as long, and training it again longer still."""
    for name in names:
        shutil.copytree(repository / name, target / name)
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


# The session server's CORS policy (tests/e2e/test_rest_routes.py); clients that send no
# Origin header see no difference.
CORS_ORIGIN = "https://app.example"
CORS: dict[str, Any] = {
    "allow_origins": [CORS_ORIGIN],
    "allow_origin_regex": r"https://[a-z]+\.trusted\.example",
    "allow_methods": ["GET", "POST"],
    "allow_headers": ["content-type", "inference-header-content-length"],
    "expose_headers": ["inference-header-content-length"],
    "max_age": 321,
}


@pytest.fixture(scope="session")
def repository(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return build_repository(tmp_path_factory.mktemp("repo") / "model-repository")


@pytest.fixture(scope="session")
def file_ports() -> Iterator[dict[str, int]]:
    """Ports the session server's settings.json names, held listening by this process for
    the session: the environment's port 0 must win (a server that took these would fail
    to start), which ``test_environment_beats_settings_file`` checks."""
    held = []
    for _ in range(2):
        sock = socket.socket()
        sock.bind(("127.0.0.1", 0))
        sock.listen()
        held.append(sock)
    yield {"http_port": held[0].getsockname()[1], "grpc_port": held[1].getsockname()[1]}
    for sock in held:
        sock.close()


@pytest.fixture(scope="session")
def server(
    tmp_path_factory: pytest.TempPathFactory, repository: Path, file_ports: dict[str, int]
) -> Iterator[RunningServer]:
    workdir = tmp_path_factory.mktemp("server")
    running = start_server(workdir, repository, settings={**file_ports, "cors_settings": CORS})
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
