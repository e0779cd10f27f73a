"""Trains the example repository from datasets that scikit-learn ships.

Deterministic, offline, and importable without MLServer (the tests use it beside
tritonclient.grpc). Artifacts are written to a temporary name and renamed into place,
the supported way to drop a file into a watched repository.

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
    train_into(Path(sys.argv[1] if len(sys.argv) > 1 else "model-repository"))
