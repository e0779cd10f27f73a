"""The artifact checks without a server: hash pins, the sklearn version policy, skops types."""

import hashlib
import pickle
from pathlib import Path

import joblib
import pytest
import sklearn
import skops.io as sio
from sklearn.linear_model import LogisticRegression

from runtimes.artifacts import load_artifact
from runtimes.errors import ArtifactRefused
from runtimes.settings import ModelExtra
from tests.faulty import FailsOnRows, iris_fitted

MODEL = iris_fitted(LogisticRegression(max_iter=1000))


def _other(version: str, part: int) -> str:
    pieces = version.split(".")
    pieces[part] = (
        str(int(pieces[part]) - 1) if int(pieces[part]) > 0 else str(int(pieces[part]) + 1)
    )
    return ".".join(pieces)


def _pickled_as(tmp_path: Path, recorded: str) -> Path:
    data = pickle.dumps(MODEL)
    running = sklearn.__version__.encode()
    assert len(recorded) == len(running)
    path = tmp_path / "model.joblib"
    path.write_bytes(data.replace(running, recorded.encode()))
    return path


def test_a_matching_hash_loads(tmp_path: Path):
    path = tmp_path / "model.joblib"
    joblib.dump(MODEL, path)
    extra = ModelExtra(sha256=hashlib.sha256(path.read_bytes()).hexdigest().upper())
    loaded = load_artifact("m", "1", path, extra)
    assert loaded.warning == "" and loaded.estimator.get_params() == MODEL.get_params()


def test_a_different_hash_is_refused_naming_file_and_digests(tmp_path: Path):
    path = tmp_path / "model.joblib"
    joblib.dump(MODEL, path)
    with pytest.raises(ArtifactRefused) as refused:
        load_artifact("m", "1", path, ModelExtra(sha256="0" * 64))
    assert str(path) in str(refused.value) and "0" * 64 in str(refused.value)
    assert hashlib.sha256(path.read_bytes()).hexdigest() in str(refused.value)


def test_a_hash_that_is_not_hex_is_a_settings_error():
    with pytest.raises(ValueError):
        ModelExtra(sha256="not-a-digest")


@pytest.mark.parametrize(
    "policy,part,outcome",
    [
        ("refuse_minor", 1, "refused"),
        ("refuse_minor", 0, "refused"),
        ("refuse_minor", 2, "warning"),
        ("warn", 1, "warning"),
        ("ignore", 1, ""),
    ],
)
def test_the_sklearn_version_policy(tmp_path: Path, policy: str, part: int, outcome: str):
    recorded = _other(sklearn.__version__, part)
    path = _pickled_as(tmp_path, recorded)
    extra = ModelExtra.model_validate({"sklearn_version_policy": policy})
    if outcome == "refused":
        with pytest.raises(ArtifactRefused, match=recorded):
            load_artifact("m", "1", path, extra)
        return
    loaded = load_artifact("m", "1", path, extra)
    assert (recorded in loaded.warning) == (outcome == "warning")
    assert loaded.warning.startswith("warning") == (outcome == "warning")


def test_skops_refuses_untrusted_types_and_loads_trusted_ones(tmp_path: Path):
    path = tmp_path / "model.skops"
    sio.dump(iris_fitted(FailsOnRows()), path)
    with pytest.raises(ArtifactRefused, match="tests.faulty.FailsOnRows"):
        load_artifact("m", "1", path, ModelExtra(artifact="model.skops"))
    extra = ModelExtra(artifact="model.skops", trusted_types=["tests.faulty.FailsOnRows"])
    assert isinstance(load_artifact("m", "1", path, extra).estimator, FailsOnRows)
