"""Loading an artifact safely enough to know what was loaded.

- The file is read once into memory; the SHA-256 pin (``parameters.extra.sha256``) is
  checked on those bytes and the same bytes are loaded, so a file swapped between the
  check and the load cannot slip through.
- ``.skops`` artifacts load without pickle: skops lists the types the file would build,
  and any type beyond skops' defaults that ``trusted_types`` does not name refuses the load.
- scikit-learn records its version in every estimator it pickles and warns on unpickling
  under another version (``InconsistentVersionWarning``). The warning is caught during the
  one load, so the recorded version is read without unpickling twice; the policy then
  refuses a different major.minor, warns, or says nothing.

A joblib/pickle artifact still runs arbitrary code when loaded: the hash pins *which*
file runs, not what it does (docs/reliability.md).

XGBoost and LightGBM files load from the same checked bytes; an MLflow folder's sklearn
artifact is loaded like any other, and the scikit-learn version its ``MLmodel`` or
environment files record is held to the same policy (``runtimes.formats``).
"""

import hashlib
import io
import threading
import warnings
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import joblib
import sklearn
from mlserver.types import MetadataTensor
from sklearn.exceptions import InconsistentVersionWarning

from .errors import ArtifactRefused
from .formats import format_of
from .formats.boosters import MissingExtra, load_lightgbm, load_xgboost
from .formats.mlflow import MLflowModelRefused, read_mlflow_model
from .settings import ModelExtra

SKOPS_SUFFIX = ".skops"

# Unpickling imports modules; two threads importing the same module at once trip
# importlib's deadlock detection (_DeadlockError), so artifacts load one at a time. The
# lock also keeps the process-wide warning filter below to one load at a time.
_LOAD_LOCK = threading.Lock()


@dataclass(frozen=True)
class LoadedArtifact:
    estimator: Any
    warning: str
    """A version mismatch that the policy let through, for the index reason and the log."""
    format: str = "sklearn"
    inputs: tuple[MetadataTensor, ...] = ()
    """The schema the artifact declares (an MLflow signature), before model-settings.json."""
    outputs: tuple[MetadataTensor, ...] = ()
    example: Any = None
    """Rows the artifact ships as an example (MLflow's input_example), or None."""


def _major_minor(version: str) -> tuple[str, ...]:
    return tuple(version.split(".")[:2])


def _deserialize(data: bytes, path: Path, extra: ModelExtra, refuse: Any) -> Any:
    kind = format_of(path)
    try:
        if kind == "xgboost":
            return load_xgboost(data, path.name)
        if kind == "lightgbm":
            return load_lightgbm(data, path.name)
    except MissingExtra as exc:
        raise refuse("format", str(exc)) from exc
    if path.suffix != SKOPS_SUFFIX:
        return joblib.load(io.BytesIO(data))
    import skops.io as sio

    untrusted = sio.get_untrusted_types(data=data)
    refused = sorted(set(untrusted) - set(extra.trusted_types))
    if refused:
        raise refuse(
            "skops trusted_types",
            f"untrusted types {refused}; add the ones you trust to parameters.extra.trusted_types",
        )
    return sio.loads(data, trusted=untrusted)


def load_artifact(model: str, version: str | None, path: Path, extra: ModelExtra) -> LoadedArtifact:
    if format_of(path) == "mlflow":
        return _load_mlflow(model, version, path, extra)
    return _load_file(model, version, path, extra)


def _load_mlflow(model: str, version: str | None, path: Path, extra: ModelExtra) -> LoadedArtifact:
    try:
        found = read_mlflow_model(path.parent)
    except MLflowModelRefused as exc:
        raise ArtifactRefused(model, version, str(path), "MLflow flavor", str(exc)) from exc
    loaded = _load_file(model, version, found.artifact, extra, found.sklearn_versions)
    return LoadedArtifact(
        loaded.estimator,
        loaded.warning,
        "mlflow",
        tuple(found.inputs),
        tuple(found.outputs),
        example_rows(found.example, found.example_columns),
    )


def example_rows(example: Any, columns: tuple[str, ...]) -> Any:
    """MLflow's example as the estimator takes it: a DataFrame for named columns."""
    if example is None:
        return None
    if columns:
        import pandas as pd

        return pd.DataFrame(example, columns=list(columns))
    return example


def _load_file(
    model: str,
    version: str | None,
    path: Path,
    extra: ModelExtra,
    declared_versions: tuple[str, ...] = (),
) -> LoadedArtifact:
    def refuse(check: str, problem: str) -> ArtifactRefused:
        return ArtifactRefused(model, version, str(path), check, problem)

    data = path.read_bytes()
    if extra.sha256 is not None:
        digest = hashlib.sha256(data).hexdigest()
        if digest != extra.sha256.lower():
            raise refuse("sha256", f"expected {extra.sha256.lower()}, got {digest}")
    with _LOAD_LOCK, warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always", InconsistentVersionWarning)
        estimator = _deserialize(data, path, extra, refuse)
    recorded = sorted(
        {
            w.message.original_sklearn_version
            for w in caught
            if isinstance(w.message, InconsistentVersionWarning)
        }
        | set(declared_versions)
    )
    return LoadedArtifact(estimator, _version_outcome(recorded, extra, refuse), format_of(path))


def _version_outcome(recorded: list[str], extra: ModelExtra, refuse: Any) -> str:
    running = sklearn.__version__
    if recorded == [running] or not recorded or extra.sklearn_version_policy == "ignore":
        return ""
    problem = f"pickled with scikit-learn {', '.join(recorded)}, the server runs {running}"
    other_minor = any(_major_minor(v) != _major_minor(running) for v in recorded)
    if other_minor and extra.sklearn_version_policy == "refuse_minor":
        raise refuse(
            "sklearn_version_policy=refuse_minor",
            f"{problem}; retrain or re-export it, or set sklearn_version_policy to 'warn'",
        )
    return f"warning: {problem} (sklearn_version_policy={extra.sklearn_version_policy})"
