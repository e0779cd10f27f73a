"""Estimators that misbehave on purpose, pickled into test repositories.

Importable by the server (the tests put the project root on its PYTHONPATH) and
free of MLServer imports, so the e2e process may import it beside tritonclient.grpc.
"""

import time
from typing import Any

import numpy as np
from sklearn.base import BaseEstimator, ClassifierMixin
from sklearn.datasets import load_iris
from sklearn.linear_model import LogisticRegression


class FailsOnRows(ClassifierMixin, BaseEstimator):
    """A LogisticRegression that raises for any row whose first feature exceeds ``threshold``."""

    def __init__(self, threshold: float = 100.0):
        self.threshold = threshold

    def fit(self, X: Any, y: Any) -> "FailsOnRows":
        self.inner_ = LogisticRegression(max_iter=1000).fit(X, y)
        self.classes_ = self.inner_.classes_
        self.n_features_in_ = self.inner_.n_features_in_
        return self

    def predict(self, X: Any) -> np.ndarray:
        rows = np.asarray(X)
        if (rows[:, 0] > self.threshold).any():
            raise ArithmeticError(f"a row over {self.threshold} in feature 0")
        return self.inner_.predict(rows)


class Slow(ClassifierMixin, BaseEstimator):
    """A LogisticRegression that sleeps ``seconds`` in every predict, to hold requests in flight."""

    def __init__(self, seconds: float = 1.0):
        self.seconds = seconds

    def fit(self, X: Any, y: Any) -> "Slow":
        self.inner_ = LogisticRegression(max_iter=1000).fit(X, y)
        self.classes_ = self.inner_.classes_
        self.n_features_in_ = self.inner_.n_features_in_
        return self

    def predict(self, X: Any) -> np.ndarray:
        time.sleep(self.seconds)
        return self.inner_.predict(np.asarray(X))


def iris_fitted(estimator: Any) -> Any:
    X, y = load_iris(return_X_y=True)
    return estimator.fit(X, y)


def non_finite_regressor() -> Any:
    """A plain LinearRegression whose first coefficient is +Inf: a row [1, 0, 0, 0] predicts
    +Inf, [-1, 0, 0, 0] -Inf and [0, 0, 0, 0] NaN (0 x Inf). It pickles as sklearn's own
    class, so a server loads it without this module."""
    from sklearn.linear_model import LinearRegression

    X, y = load_iris(return_X_y=True)
    model = LinearRegression().fit(X, y.astype(float))
    model.coef_ = np.array([np.inf, 0.0, 0.0, 0.0])
    model.intercept_ = 0.0
    return model
