"""Which model format a version folder holds, and the artifact to load for it.

| file in the version folder | format | schema from |
| --- | --- | --- |
| ``MLmodel`` | MLflow (sklearn flavor) | the signature, else the estimator |
| ``model.json`` / ``model.ubj`` | XGBoost booster | the booster |
| ``model.txt`` | LightGBM booster | the booster |
| ``model.joblib`` / ``model.skops`` / ``model.pkl`` | scikit-learn | the estimator |

The first name found, in that order, is the artifact, unless ``parameters.extra.artifact``
names one.
"""

from pathlib import Path

from .mlflow import MLMODEL

XGBOOST_FILES = ("model.json", "model.ubj")
LIGHTGBM_FILES = ("model.txt",)
SKLEARN_FILES = ("model.joblib", "model.skops", "model.pkl")
ARTIFACT_NAMES = (MLMODEL, *XGBOOST_FILES, *LIGHTGBM_FILES, *SKLEARN_FILES)


def format_of(path: Path) -> str:
    """``mlflow``, ``xgboost``, ``lightgbm`` or ``sklearn``, from the artifact's name."""
    if path.name == MLMODEL:
        return "mlflow"
    if path.suffix in (".json", ".ubj"):
        return "xgboost"
    if path.suffix == ".txt":
        return "lightgbm"
    return "sklearn"


def find_artifact(folder: Path, named: str | None) -> Path:
    """The artifact in a version folder: the one named, else the first known name found.

    With none found, the default name is returned, so the load fails naming it."""
    if named is not None:
        return folder / named
    for name in ARTIFACT_NAMES:
        if (folder / name).is_file():
            return folder / name
    return folder / SKLEARN_FILES[0]
