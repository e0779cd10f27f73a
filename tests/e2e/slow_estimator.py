"""Estimators that are slow on purpose, pickled into test repositories.

The server imports this module when it unpickles them, so it runs with the repository
root on PYTHONPATH. Nothing here may import MLServer.
"""

import operator
import time
from typing import Any

import numpy as np
from sklearn.base import BaseEstimator, ClassifierMixin
from sklearn.linear_model import LogisticRegression


class SlowClassifier(ClassifierMixin, BaseEstimator):
    """LogisticRegression whose predict sleeps first, so requests stay in flight."""

    def __init__(self, delay: float = 0.1):
        self.delay = delay

    def fit(self, X: np.ndarray, y: np.ndarray) -> "SlowClassifier":
        self.inner_ = LogisticRegression(max_iter=1000).fit(X, y)
        self.classes_ = self.inner_.classes_
        self.n_features_in_ = X.shape[1]
        return self

    def predict(self, X: np.ndarray) -> np.ndarray:
        time.sleep(self.delay)
        return self.inner_.predict(X)


class _Sleep:
    def __init__(self, seconds: float):
        self.seconds = seconds

    def __reduce__(self) -> tuple[Any, ...]:
        return (time.sleep, (self.seconds,))


class SlowToUnpickle:
    """Unpickles into ``estimator`` after sleeping; needs only the standard library to load."""

    def __init__(self, estimator: Any, seconds: float):
        self.estimator = estimator
        self.seconds = seconds

    def __reduce__(self) -> tuple[Any, ...]:
        return (operator.getitem, ((_Sleep(self.seconds), self.estimator), 1))
