"""Safer artifacts against a real server: sha256 pins, the sklearn version recorded in a
pickle, and .skops files with a trusted-types list."""

import hashlib
import json
import os
import pickle
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import sklearn
import skops.io as sio
from sklearn.linear_model import LogisticRegression

from runtimes.examples import write_artifact
from tests.faulty import FailsOnRows, iris_fitted

from .conftest import RunningServer, start_server, stop_server
from .reliability import IRIS, PYTHONPATH, index, rest_infer, wait_for

IRIS_LR = iris_fitted(LogisticRegression(max_iter=1000))
IRIS_LR_V2 = iris_fitted(LogisticRegression(C=0.05, max_iter=1000))
FAILS = iris_fitted(FailsOnRows())


def other_minor(version: str) -> str:
    major, minor, *rest = version.split(".")
    changed = str(int(minor) - 1) if int(minor) > 0 else str(int(minor) + 1)
    return ".".join([major, changed, *rest])


def pickle_with_recorded_version(estimator: Any, recorded: str) -> bytes:
    """Pickle the estimator, then rewrite the scikit-learn version that the pickle records."""
    data = pickle.dumps(estimator)
    running = sklearn.__version__.encode()
    assert len(recorded) == len(running) and data.count(running) == 1
    return data.replace(running, recorded.encode())


def _settings(folder: Path, extra: dict[str, Any]) -> None:
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "model-settings.json").write_text(json.dumps({"parameters": {"extra": extra}}))


@pytest.fixture(scope="module")
def artifact_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RunningServer]:
    root = tmp_path_factory.mktemp("artifacts")
    repo = root / "repo"
    write_artifact(IRIS_LR, repo / "pinned" / "1" / "model.joblib")
    digest = hashlib.sha256((repo / "pinned" / "1" / "model.joblib").read_bytes()).hexdigest()
    _settings(repo / "pinned" / "1", {"sha256": digest})

    old = pickle_with_recorded_version(IRIS_LR, other_minor(sklearn.__version__))
    for name, policy in (("old-minor", None), ("old-minor-warn", "warn")):
        (repo / name / "1").mkdir(parents=True)
        (repo / name / "1" / "model.joblib").write_bytes(old)
        if policy:
            _settings(repo / name, {"sklearn_version_policy": policy})

    for name, estimator, trusted in (
        ("skops-plain", IRIS_LR, []),
        ("skops-untrusted", FAILS, []),
        ("skops-trusted", FAILS, ["tests.faulty.FailsOnRows"]),
    ):
        (repo / name / "1").mkdir(parents=True)
        sio.dump(estimator, repo / name / "1" / "model.skops")
        extra: dict[str, Any] = {"artifact": "model.skops", "inference_backend": "sklearn"}
        _settings(repo / name, {**extra, "trusted_types": trusted} if trusted else extra)

    env = {**PYTHONPATH, "V2SERVE_READINESS": "lenient"}
    server = start_server(root / "server", repo, env=env)
    yield server
    assert stop_server(server) == 0, server.log_text()


def _predicted(server: RunningServer, model: str, version: str | None = None) -> list[int]:
    answer = rest_infer(server.base, model, IRIS, version)
    assert answer.status_code == 200, answer.text
    assert answer.json()["model_version"] == (version or answer.json()["model_version"])
    return list(answer.json()["outputs"][0]["data"])


def test_a_pinned_version_loads_and_a_tampered_one_is_refused(artifact_server):
    assert _predicted(artifact_server, "pinned") == IRIS_LR.predict(IRIS).tolist()
    model_dir = artifact_server.repository / "pinned"
    staging = model_dir / ".staging-2"
    write_artifact(IRIS_LR_V2, staging / "model.joblib")
    _settings(staging, {"sha256": hashlib.sha256(b"the artifact that was reviewed").hexdigest()})
    os.rename(staging, model_dir / "2")

    entry = wait_for(
        lambda: (
            index(artifact_server.base).get(("pinned", "2"), {}).get("state") == "UNAVAILABLE"
            and index(artifact_server.base)[("pinned", "2")]
        ),
        "the tampered version listed unavailable",
    )
    assert "pinned/2/model.joblib" in entry["reason"], entry
    assert str(artifact_server.repository) not in entry["reason"], "reasons are root-relative"
    assert "sha256" in entry["reason"]
    answer = rest_infer(artifact_server.base, "pinned", IRIS)
    assert answer.json()["model_version"] == "1"
    assert "sha256" in artifact_server.log_text()


def test_a_pickle_from_another_sklearn_minor_is_refused(artifact_server):
    entry = index(artifact_server.base)[("old-minor", "1")]
    assert entry["state"] == "UNAVAILABLE"
    assert other_minor(sklearn.__version__) in entry["reason"], entry
    assert sklearn.__version__ in entry["reason"]
    assert "refuse_minor" in entry["reason"]
    assert rest_infer(artifact_server.base, "old-minor", IRIS).status_code == 404
    assert "sklearn_version_policy=refuse_minor" in artifact_server.log_text()


def test_the_warn_policy_serves_it_and_says_so(artifact_server):
    entry = index(artifact_server.base)[("old-minor-warn", "1")]
    assert entry["state"] == "READY"
    assert entry["reason"].startswith("warning: pickled with scikit-learn"), entry
    assert _predicted(artifact_server, "old-minor-warn") == IRIS_LR.predict(IRIS).tolist()
    log = artifact_server.log_text()
    assert "model 'old-minor-warn' version 1: warning: pickled with scikit-learn" in log


def test_a_skops_artifact_of_default_trusted_types_serves(artifact_server):
    assert _predicted(artifact_server, "skops-plain") == IRIS_LR.predict(IRIS).tolist()


def test_a_skops_artifact_with_untrusted_types_is_refused_naming_them(artifact_server):
    entry = index(artifact_server.base)[("skops-untrusted", "1")]
    assert entry["state"] == "UNAVAILABLE"
    assert "tests.faulty.FailsOnRows" in entry["reason"], entry
    assert "trusted_types" in entry["reason"]


def test_a_skops_artifact_with_its_types_trusted_serves(artifact_server):
    assert _predicted(artifact_server, "skops-trusted") == FAILS.predict(IRIS).tolist()
