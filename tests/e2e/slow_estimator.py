"""Estimators that are slow on purpose, pickled into test repositories.

The server imports this module when it unpickles them, so it runs with the repository
root on PYTHONPATH. Nothing here may import MLServer.
"""

import operator
import os
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


HOLD = 1000
"""A first feature of ``HOLD + k`` marks a row with the tag k (``GatedClassifier``)."""


class GatedClassifier(ClassifierMixin, BaseEstimator):
    """LogisticRegression that logs every call and holds the ones a test marks.

    The rows whose first feature is ``HOLD + k`` carry the tag k. Every call appends
    ``start <tags>`` to ``<gate>/calls`` before it predicts and ``end <tags>`` after;
    a call holding a tag k waits until the file ``<gate>/release-k`` exists (at most two
    minutes). So a test knows when a request is running, keeps it running as long as it
    needs, and can prove that another one never ran.
    """

    def __init__(self, gate: str = ""):
        self.gate = gate

    def fit(self, X: np.ndarray, y: np.ndarray) -> "GatedClassifier":
        self.inner_ = LogisticRegression(max_iter=1000).fit(X, y)
        self.classes_ = self.inner_.classes_
        self.n_features_in_ = X.shape[1]
        return self

    def predict(self, X: np.ndarray) -> np.ndarray:
        tags = sorted({int(v) - HOLD for v in np.asarray(X)[:, 0] if v >= HOLD})
        self._log("start", tags)
        deadline = time.monotonic() + 120
        while tags and time.monotonic() < deadline:
            if all(os.path.exists(os.path.join(self.gate, f"release-{t}")) for t in tags):
                break
            time.sleep(0.005)
        try:
            return self.inner_.predict(X)
        finally:
            self._log("end", tags)

    def _log(self, event: str, tags: list[int]) -> None:
        if self.gate:
            with open(os.path.join(self.gate, "calls"), "a") as calls:
                calls.write(f"{event} {' '.join(map(str, tags))}\n")
