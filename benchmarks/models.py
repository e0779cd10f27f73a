"""The benchmark's models, repositories and request bodies, trained into a temp dir.

Every server loads the very same files: v2serve from Triton's layout
(``<model>/<N>/model.joblib``), vanilla MLServer from a folder per model with a
``model-settings.json`` naming ``mlserver_sklearn.SKLearnModel``, Triton (PyTriton) and
the probes from the artifact's path. The XGBoost forest is XGBoost's own ``model.json``,
served by v2serve and Triton only (vanilla's sklearn runtime cannot read it).
"""

from __future__ import annotations

import json
import os
import shutil
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import joblib
import numpy as np
from sklearn.datasets import load_breast_cancer, load_iris
from sklearn.ensemble import RandomForestClassifier

from runtimes.examples import iris_v1, iris_v2

LIGHT, HEAVY, SWAP, EXTRA, XGB = "light", "heavy", "swap", "heavy-extra", "xgb"
SKLEARN_SUFFIX = "-sklearn"
NATIVE_SUFFIX = "-native"
"""The XGBoost forest's copy with ``inference_backend: sklearn``: xgboost's own predict."""
BATCH_ROWS = 1000
BIG_ROWS = 20_000
"""The isolation cells' big request to the forest (issue 18): seconds of work for a
scikit-learn forest, a few MB of JSON."""
TRITON_MAX_BATCH = {HEAVY + SKLEARN_SUFFIX: 32_768}
"""Triton's copies that must take a request over its default max batch (1,024): the
forest that the isolation cells load with ``BIG_ROWS``-row requests."""


def heavy_forest() -> Any:
    X, y = load_breast_cancer(return_X_y=True)
    return RandomForestClassifier(n_estimators=200, random_state=0, n_jobs=1).fit(X, y)


def xgboost_forest(path: Path) -> None:
    """200 trees on breast_cancer, saved as XGBoost's own ``model.json``."""
    import xgboost

    X, y = load_breast_cancer(return_X_y=True)
    model = xgboost.XGBClassifier(n_estimators=200, max_depth=6, random_state=0, n_jobs=1)
    model.fit(X, y).save_model(path)


@dataclass(frozen=True)
class Payload:
    """One request, in every encoding a cell may send, plus the answer it must get."""

    name: str
    rows: np.ndarray
    expected: list[Any]
    json_body: Path
    binary_body: Path
    binary_header_length: int
    npy: Path


@dataclass(frozen=True)
class Workspace:
    root: Path
    artifacts: dict[str, Path]
    payloads: dict[str, Payload]
    witness: dict[str, Any]
    """A 1-row body on which light-v1 and light-v2 disagree, and each one's answer: it
    tells which artifact a server is running after a swap."""
    xgb_expected: list[Any]
    """The XGBoost forest's ``predict`` of the heavy-1 payload (which holds the forest's)."""


def prepare(root: Path) -> Workspace:
    artifacts_dir = root / "artifacts"
    artifacts_dir.mkdir(parents=True)
    estimators = {"light-v1": iris_v1(), "light-v2": iris_v2(), "heavy": heavy_forest()}
    artifacts = {}
    for name, estimator in estimators.items():
        artifacts[name] = artifacts_dir / f"{name}.joblib"
        joblib.dump(estimator, artifacts[name])
    artifacts[XGB] = artifacts_dir / "model.json"
    xgboost_forest(artifacts[XGB])
    iris, cancer = load_iris().data, load_breast_cancer().data
    batch = np.resize(iris, (BATCH_ROWS, iris.shape[1]))
    big = np.resize(cancer, (BIG_ROWS, cancer.shape[1]))
    sources = {
        "light-1": (estimators["light-v1"], iris[:1]),
        "heavy-1": (estimators["heavy"], cancer[:1]),
        f"light-{BATCH_ROWS}": (estimators["light-v1"], batch),
        f"heavy-{BIG_ROWS}": (estimators["heavy"], big),
    }
    payloads = {
        name: _payload(root / "bodies", name, estimator, rows)
        for name, (estimator, rows) in sources.items()
    }
    return Workspace(
        root,
        artifacts,
        payloads,
        _witness(estimators, iris),
        _xgb_predict(artifacts[XGB], cancer[:1]),
    )


def _xgb_predict(path: Path, rows: np.ndarray) -> list[Any]:
    import xgboost

    model = xgboost.XGBClassifier()
    model.load_model(path)
    return [int(v) for v in model.predict(rows)]


def _witness(estimators: dict[str, Any], rows: np.ndarray) -> dict[str, Any]:
    first, second = estimators["light-v1"].predict(rows), estimators["light-v2"].predict(rows)
    row = rows[int(np.flatnonzero(first != second)[0])]
    tensor = {"name": "input-0", "shape": [1, len(row)], "datatype": "FP64", "data": row.tolist()}
    return {
        "body": json.dumps({"inputs": [tensor]}).encode(),
        "light-v1": estimators["light-v1"].predict([row]).tolist(),
        "light-v2": estimators["light-v2"].predict([row]).tolist(),
    }


def _payload(folder: Path, name: str, estimator: Any, rows: np.ndarray) -> Payload:
    folder.mkdir(parents=True, exist_ok=True)
    rows = np.ascontiguousarray(rows, dtype=np.float64)
    shape = list(rows.shape)
    # V2 JSON form, flat data, no requested outputs: both servers answer "predict".
    tensor = {"name": "input-0", "shape": shape, "datatype": "FP64", "data": rows.ravel().tolist()}
    json_body = folder / f"{name}.json"
    json_body.write_text(json.dumps({"inputs": [tensor]}))
    # Triton's binary tensor extension: a JSON header, then the raw little-endian bytes.
    raw = rows.astype("<f8").tobytes()
    header = json.dumps(
        {
            "inputs": [
                {
                    "name": "input-0",
                    "shape": shape,
                    "datatype": "FP64",
                    "parameters": {"binary_data_size": len(raw)},
                }
            ]
        }
    ).encode()
    binary_body = folder / f"{name}.bin"
    binary_body.write_bytes(header + raw)
    npy = folder / f"{name}.npy"
    np.save(npy, rows)
    return Payload(
        name=name,
        rows=rows,
        expected=estimator.predict(rows).tolist(),
        json_body=json_body,
        binary_body=binary_body,
        binary_header_length=len(header),
        npy=npy,
    )


def _models(workspace: Workspace) -> dict[str, Path]:
    """Served name -> artifact; the same set on both servers."""
    light, heavy = workspace.artifacts["light-v1"], workspace.artifacts["heavy"]
    return {
        LIGHT: light,
        HEAVY: heavy,
        LIGHT + SKLEARN_SUFFIX: light,
        HEAVY + SKLEARN_SUFFIX: heavy,
        SWAP: light,
        EXTRA: heavy,
    }


def _boosters(workspace: Workspace) -> dict[str, Path]:
    return {XGB: workspace.artifacts[XGB], XGB + NATIVE_SUFFIX: workspace.artifacts[XGB]}


def triton_models(workspace: Workspace) -> dict[str, tuple[str, Path]]:
    """Triton's served name -> (kind, artifact): one copy of each model, plus the forest's
    ``-sklearn`` copy with a bigger max batch (``TRITON_MAX_BATCH``) for the isolation cells."""
    return {
        LIGHT: ("sklearn", workspace.artifacts["light-v1"]),
        HEAVY: ("sklearn", workspace.artifacts["heavy"]),
        HEAVY + SKLEARN_SUFFIX: ("sklearn", workspace.artifacts["heavy"]),
        XGB: ("xgboost", workspace.artifacts[XGB]),
    }


def v2serve_repository(
    workspace: Workspace, root: Path, models: tuple[str, ...] | None = None
) -> Path:
    for name, artifact in {**_models(workspace), **_boosters(workspace)}.items():
        if models is not None and name not in models:
            continue
        (root / name / "1").mkdir(parents=True)
        filename = "model.json" if artifact.suffix == ".json" else "model.joblib"
        shutil.copyfile(artifact, root / name / "1" / filename)
        extra: dict[str, Any] = {}
        if name.endswith((SKLEARN_SUFFIX, NATIVE_SUFFIX)):
            extra["inference_backend"] = "sklearn"
        if name == EXTRA:
            extra["version_policy"] = {"all": {}}
        if extra:
            settings = {"parameters": {"extra": extra}}
            (root / name / "model-settings.json").write_text(json.dumps(settings))
    return root


def vanilla_repository(
    workspace: Workspace, root: Path, models: tuple[str, ...] | None = None, cached: bool = False
) -> Path:
    for name, artifact in _models(workspace).items():
        if models is not None and name not in models:
            continue
        write_vanilla_model(root, name, artifact, cached)
    return root


def write_vanilla_model(root: Path, name: str, artifact: Path, cached: bool = False) -> None:
    folder = root / name
    folder.mkdir(parents=True)
    shutil.copyfile(artifact, folder / "model.joblib")
    settings: dict[str, Any] = {
        "name": name,
        "implementation": "mlserver_sklearn.SKLearnModel",
        "parameters": {"uri": "./model.joblib"},
    }
    if cached:
        # MLServer's ModelSettings.cache_enabled defaults to False, and its data plane
        # caches only models that say true: the server-wide switch alone caches nothing.
        settings["cache_enabled"] = True
    (folder / "model-settings.json").write_text(json.dumps(settings))


def drop_version(staging: Path, model_folder: Path, version: int, artifact: Path) -> Path:
    """A finished version folder renamed into place: v2serve's supported way."""
    folder = staging / f"{model_folder.name}-{version}"
    folder.mkdir(parents=True)
    shutil.copyfile(artifact, folder / "model.joblib")
    target = model_folder / str(version)
    os.rename(folder, target)
    return target


def replace_artifact(model_folder: Path, artifact: Path) -> None:
    """A new model.joblib renamed over the old one, so a reader never sees half a file."""
    temporary = model_folder / ".model.joblib.tmp"
    shutil.copyfile(artifact, temporary)
    os.replace(temporary, model_folder / "model.joblib")
