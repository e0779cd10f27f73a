"""Trains the example repository from datasets that scikit-learn ships.

Deterministic, offline, and importable without MLServer (the tests use it beside
tritonclient.grpc). Artifacts are written to a temporary name and renamed into place,
the supported way to drop a file into a watched repository. Examples in other formats
(an XGBoost booster, an MLflow model folder) write a whole version folder under a
temporary name and rename it; xgboost, lightgbm and mlflow are imported only here, at
set-up, never by the server.

    python -m runtimes.examples model-repository
"""

import os
import sys
import tempfile
from collections.abc import Callable
from pathlib import Path
from typing import Any

import joblib
import pandas as pd
from sklearn.compose import ColumnTransformer
from sklearn.datasets import load_breast_cancer, load_diabetes, load_iris, load_wine
from sklearn.ensemble import RandomForestClassifier
from sklearn.linear_model import LogisticRegression, Ridge
from sklearn.pipeline import Pipeline, make_pipeline
from sklearn.preprocessing import OneHotEncoder, StandardScaler


def iris_v1() -> Any:
    X, y = load_iris(return_X_y=True)
    return LogisticRegression(max_iter=1000).fit(X, y)


def iris_v2() -> Any:
    X, y = load_iris(return_X_y=True)
    return LogisticRegression(C=0.05, max_iter=1000).fit(X, y)


def diabetes_v1() -> Any:
    X, y = load_diabetes(return_X_y=True)
    return Ridge(alpha=0.5).fit(X, y)


def breast_cancer_v1() -> Any:
    X, y = load_breast_cancer(return_X_y=True)
    forest = RandomForestClassifier(n_estimators=100, random_state=0)
    return make_pipeline(StandardScaler(), forest).fit(X, y)


def wine_frame() -> pd.DataFrame:
    """Wine with a string column, for a ColumnTransformer over named columns."""
    frame = load_wine(as_frame=True).frame
    frame["colour"] = pd.cut(
        frame["color_intensity"], bins=[0, 3, 6, 20], labels=["pale", "medium", "deep"]
    ).astype(str)
    return frame


def wine_columns_v1() -> Any:
    frame = wine_frame()
    numeric = ["alcohol", "malic_acid", "flavanoids", "proline"]
    features = ColumnTransformer(
        [
            ("num", StandardScaler(), numeric),
            ("cat", OneHotEncoder(handle_unknown="ignore"), ["colour"]),
        ]
    )
    model = Pipeline([("features", features), ("classify", LogisticRegression(max_iter=1000))])
    return model.fit(frame[[*numeric, "colour"]], frame["target"])


def wine_strict_v1() -> Any:
    """As wine_columns_v1, with an encoder that raises on an unknown colour."""
    frame = wine_frame()
    numeric = ["alcohol", "malic_acid", "flavanoids", "proline"]
    features = ColumnTransformer(
        [
            ("num", StandardScaler(), numeric),
            ("cat", OneHotEncoder(handle_unknown="error"), ["colour"]),
        ]
    )
    model = Pipeline([("features", features), ("classify", LogisticRegression(max_iter=1000))])
    return model.fit(frame[[*numeric, "colour"]], frame["target"])


EXAMPLES: dict[str, dict[int, Callable[[], Any]]] = {
    "iris": {1: iris_v1, 2: iris_v2},
    "diabetes": {1: diabetes_v1},
    "breast-cancer": {1: breast_cancer_v1},
}

TEST_EXAMPLES: dict[str, dict[int, Callable[[], Any]]] = {
    "wine-columns": {1: wine_columns_v1},
    "wine-strict": {1: wine_strict_v1},
}


def breast_cancer_xgboost(folder: Path) -> None:
    """An XGBoost classifier in XGBoost's own JSON format (``save_model``)."""
    import xgboost

    X, y = load_breast_cancer(return_X_y=True)
    model = xgboost.XGBClassifier(n_estimators=50, max_depth=4, random_state=0, n_jobs=1)
    folder.mkdir(parents=True)
    model.fit(X, y).save_model(folder / "model.json")


def iris_lightgbm(folder: Path) -> None:
    """A LightGBM multiclass booster in LightGBM's text format (``save_model``)."""
    import lightgbm

    X, y = load_iris(return_X_y=True)
    model = lightgbm.LGBMClassifier(n_estimators=20, random_state=0, n_jobs=1, verbose=-1)
    folder.mkdir(parents=True)
    model.fit(X, y).booster_.save_model(str(folder / "model.txt"))


def _save_mlflow(estimator: Any, folder: Path, example: Any, **options: Any) -> None:
    import warnings

    import mlflow.sklearn
    import sklearn
    from mlflow.models import infer_signature

    # Naming the requirements spares MLflow a subprocess that infers them (seconds each).
    requirements = [f"scikit-learn=={sklearn.__version__}"]
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        signature = infer_signature(example, estimator.predict(example))
        mlflow.sklearn.save_model(
            estimator,
            str(folder),
            signature=signature,
            input_example=example[:2],
            pip_requirements=requirements,
            **options,
        )


def iris_mlflow(folder: Path) -> None:
    """A Pipeline over named columns, saved by ``mlflow.sklearn.save_model``."""
    frame = load_iris(as_frame=True).frame
    X, y = frame.drop(columns="target"), frame["target"]
    model = make_pipeline(StandardScaler(), LogisticRegression(max_iter=1000)).fit(X, y)
    _save_mlflow(model, folder, X)


def iris_mlflow_array(folder: Path) -> None:
    """A plain-array model with a tensor signature, pickled with cloudpickle."""
    X, y = load_iris(return_X_y=True)
    model = LogisticRegression(max_iter=1000).fit(X, y)
    _save_mlflow(model, folder, X, serialization_format="cloudpickle")


def wine_mlflow(folder: Path) -> None:
    """A DataFrame with a string column through a ColumnTransformer Pipeline, in MLflow."""
    frame = wine_frame()
    _save_mlflow(
        wine_columns_v1(),
        folder,
        frame[["alcohol", "malic_acid", "flavanoids", "proline", "colour"]],
    )


# Version folders written whole, by format: model -> version -> writer of the folder.
FORMAT_EXAMPLES: dict[str, dict[int, Callable[[Path], None]]] = {
    "breast-cancer-xgboost": {1: breast_cancer_xgboost},
    "iris-mlflow": {1: iris_mlflow},
}

TEST_FORMAT_EXAMPLES: dict[str, dict[int, Callable[[Path], None]]] = {
    "iris-lightgbm": {1: iris_lightgbm},
    "iris-mlflow-array": {1: iris_mlflow_array},
    "wine-mlflow": {1: wine_mlflow},
}


def write_version_folder(writer: Callable[[Path], None], folder: Path) -> None:
    """Write under a temporary name beside ``folder``, then rename it into place."""
    folder.parent.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(dir=folder.parent, prefix=".tmp-"))
    staging.rmdir()  # writers create the folder themselves (MLflow insists on it)
    writer(staging)
    os.replace(staging, folder)


def write_formats_into(
    root: Path, examples: dict[str, dict[int, Callable[[Path], None]]] = FORMAT_EXAMPLES
) -> None:
    for model, versions in examples.items():
        for version, writer in versions.items():
            folder = root / model / str(version)
            if not folder.exists():
                write_version_folder(writer, folder)


def write_artifact(estimator: Any, path: Path) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, temporary = tempfile.mkstemp(dir=path.parent, prefix=".tmp-", suffix=".joblib")
    os.close(fd)
    joblib.dump(estimator, temporary)
    os.replace(temporary, path)


def train_into(root: Path, examples: dict[str, dict[int, Callable[[], Any]]] = EXAMPLES) -> None:
    for model, versions in examples.items():
        for version, train in versions.items():
            artifact = root / model / str(version) / "model.joblib"
            if not artifact.exists():
                write_artifact(train(), artifact)


if __name__ == "__main__":
    target = Path(sys.argv[1] if len(sys.argv) > 1 else "model-repository")
    train_into(target)
    write_formats_into(target)
