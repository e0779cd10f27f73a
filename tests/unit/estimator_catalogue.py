"""Estimators in common use, fitted on datasets scikit-learn ships, with held-out rows.

Shared by the compiled-inference tests and ``benchmarks/compiled_coverage.py`` (which
prints the coverage table in docs/compiled.md). ``expected`` is the backend the
estimator gets under ``inference_backend: auto``, as measured; a change is a test failure.
"""

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import numpy as np
import pandas as pd
from sklearn.compose import ColumnTransformer
from sklearn.datasets import load_breast_cancer, load_diabetes, load_iris, load_wine
from sklearn.decomposition import PCA
from sklearn.ensemble import (
    ExtraTreesClassifier,
    GradientBoostingClassifier,
    GradientBoostingRegressor,
    HistGradientBoostingClassifier,
    HistGradientBoostingRegressor,
    RandomForestClassifier,
    RandomForestRegressor,
)
from sklearn.linear_model import Lasso, LinearRegression, LogisticRegression, Ridge
from sklearn.naive_bayes import GaussianNB
from sklearn.neighbors import KNeighborsClassifier, KNeighborsRegressor
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import MinMaxScaler, OneHotEncoder, OrdinalEncoder, StandardScaler
from sklearn.svm import SVC, SVR, LinearSVC
from sklearn.tree import DecisionTreeClassifier, DecisionTreeRegressor

from runtimes.examples import wine_frame


@dataclass(frozen=True)
class Case:
    name: str
    build: Callable[[], tuple[Any, Any]]
    """Returns the fitted estimator and held-out rows it never saw."""
    expected: str
    note: str = ""


def _split(X: Any, y: Any) -> tuple[Any, Any, Any]:
    train = np.arange(len(y)) % 2 == 0
    return X[train], y[train], X[~train]


def _on(dataset: Callable[..., Any], estimator: Any) -> Callable[[], tuple[Any, Any]]:
    def build() -> tuple[Any, Any]:
        X, y = dataset(return_X_y=True)
        X_train, y_train, held_out = _split(X, y)
        return estimator.fit(X_train, y_train), held_out

    return build


def _wine_columns(final: Any, encoder: Any) -> Callable[[], tuple[Any, Any]]:
    def build() -> tuple[Any, Any]:
        frame = wine_frame()
        numeric = ["alcohol", "malic_acid", "flavanoids", "proline"]
        features = ColumnTransformer(
            [("num", StandardScaler(), numeric), ("cat", encoder, ["colour"])]
        )
        X, y = frame[[*numeric, "colour"]], frame["target"].to_numpy()
        train = np.arange(len(y)) % 2 == 0
        model = make_pipeline(features, final).fit(X[train], y[train])
        return model, X[~train].reset_index(drop=True)

    return build


def _string_labels() -> tuple[Any, Any]:
    X, y = load_iris(return_X_y=True)
    names = np.array(["setosa", "versicolor", "virginica"])[y]
    X_train, y_train, held_out = _split(X, names)
    return LogisticRegression(max_iter=1000).fit(X_train, y_train), held_out


def _one_hot_numeric() -> tuple[Any, Any]:
    X, y = load_iris(return_X_y=True)
    binned = np.round(X).astype(np.float64)
    X_train, y_train, _ = _split(binned, y)
    model = make_pipeline(OneHotEncoder(handle_unknown="ignore"), LogisticRegression(max_iter=500))
    return model.fit(X_train, y_train), binned[1::2]


CASES: list[Case] = [
    Case("LogisticRegression", _on(load_iris, LogisticRegression(max_iter=1000)), "native"),
    Case("LogisticRegression, string labels", _string_labels, "native"),
    Case("LinearRegression", _on(load_diabetes, LinearRegression()), "native"),
    Case("Ridge", _on(load_diabetes, Ridge()), "native"),
    Case("Lasso", _on(load_diabetes, Lasso(alpha=0.1)), "native"),
    Case(
        "StandardScaler + LogisticRegression",
        _on(load_wine, make_pipeline(StandardScaler(), LogisticRegression(max_iter=1000))),
        "native",
    ),
    Case(
        "MinMaxScaler + PCA + LogisticRegression",
        _on(load_wine, make_pipeline(MinMaxScaler(), PCA(5), LogisticRegression(max_iter=1000))),
        "onnx",
    ),
    Case(
        "DecisionTreeClassifier",
        _on(load_breast_cancer, DecisionTreeClassifier(random_state=0)),
        "onnx",
    ),
    Case(
        "DecisionTreeRegressor", _on(load_diabetes, DecisionTreeRegressor(random_state=0)), "onnx"
    ),
    Case(
        "StandardScaler + RandomForestClassifier",
        _on(
            load_breast_cancer,
            make_pipeline(StandardScaler(), RandomForestClassifier(50, random_state=0)),
        ),
        "onnx",
    ),
    Case(
        "RandomForestRegressor",
        _on(load_diabetes, RandomForestRegressor(50, random_state=0)),
        "onnx",
    ),
    Case("ExtraTreesClassifier", _on(load_wine, ExtraTreesClassifier(50, random_state=0)), "onnx"),
    Case(
        "GradientBoostingClassifier, binary",
        _on(load_breast_cancer, GradientBoostingClassifier(n_estimators=50, random_state=0)),
        "onnx",
    ),
    Case(
        "GradientBoostingClassifier, 3 classes",
        _on(load_wine, GradientBoostingClassifier(n_estimators=50, random_state=0)),
        "onnx",
    ),
    Case(
        "GradientBoostingRegressor",
        _on(load_diabetes, GradientBoostingRegressor(n_estimators=50, random_state=0)),
        "onnx",
    ),
    Case(
        "HistGradientBoostingClassifier",
        _on(load_breast_cancer, HistGradientBoostingClassifier(max_iter=30, random_state=0)),
        "sklearn",
        "converts; rows on split thresholds disagree, so verification refuses it",
    ),
    Case(
        "HistGradientBoostingRegressor",
        _on(load_diabetes, HistGradientBoostingRegressor(max_iter=30, random_state=0)),
        "sklearn",
        "converts; rows on split thresholds disagree, so verification refuses it",
    ),
    Case("SVC, rbf, probability", _on(load_iris, SVC(probability=True, random_state=0)), "onnx"),
    Case(
        "LinearSVC",
        _on(load_iris, make_pipeline(StandardScaler(), LinearSVC())),
        "native",
        "skl2onnx cannot convert it with float64 inputs; the closed form serves it",
    ),
    Case(
        "SVR",
        _on(load_diabetes, SVR()),
        "sklearn",
        "skl2onnx converts; ONNX Runtime has no float64 SVMRegressor to run it",
    ),
    Case("KNeighborsClassifier", _on(load_iris, KNeighborsClassifier()), "onnx"),
    Case("KNeighborsRegressor", _on(load_diabetes, KNeighborsRegressor()), "onnx"),
    Case("GaussianNB", _on(load_iris, GaussianNB()), "onnx"),
    Case(
        "OneHotEncoder (numeric) + LogisticRegression",
        _one_hot_numeric,
        "sklearn",
        "known categories agree; unknown ones (handle_unknown='ignore') do not",
    ),
    Case(
        "ColumnTransformer(scaler, OneHotEncoder on strings) + LogisticRegression",
        _wine_columns(LogisticRegression(max_iter=1000), OneHotEncoder(handle_unknown="ignore")),
        "onnx",
    ),
    Case(
        "ColumnTransformer(scaler, OrdinalEncoder on strings) + RandomForestClassifier",
        _wine_columns(RandomForestClassifier(30, random_state=0), OrdinalEncoder()),
        "onnx",
    ),
]


def as_frame(rows: Any) -> Any:
    return rows if isinstance(rows, pd.DataFrame) else np.asarray(rows, dtype=np.float64)
