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
    """A LogisticRegression that sleeps ``seconds`` in every predict of real rows, to hold
    requests in flight.

    A call whose rows are all zeros answers at once: the server's warm-up and load-time
    probes build such rows from the schema, and at ``seconds`` each they made every load
    (and every reload in a new worker) take several seconds. A server would now measure
    the model as fast, so its settings pin ``batching`` and ``execution`` to what a slow
    model is given (``SLOW_SETTINGS``)."""

    def __init__(self, seconds: float = 1.0):
        self.seconds = seconds

    def fit(self, X: Any, y: Any) -> "Slow":
        self.inner_ = LogisticRegression(max_iter=1000).fit(X, y)
        self.classes_ = self.inner_.classes_
        self.n_features_in_ = self.inner_.n_features_in_
        return self

    def predict(self, X: Any) -> np.ndarray:
        rows = np.asarray(X)
        if rows.any():
            time.sleep(self.seconds)
        return self.inner_.predict(rows)


SLOW_SETTINGS = {"inference_backend": "sklearn", "batching": "on", "execution": "thread"}
"""``parameters.extra`` for a ``Slow`` model: what ``auto`` chooses for a model whose warm-up
takes seconds (batched, and off the event loop), stated rather than measured."""


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


class Misbehaves(ClassifierMixin, BaseEstimator):
    """A LogisticRegression whose ``predict`` misbehaves as ``kind`` says, but only in a
    call holding a row whose first feature is at least ``trigger``: the warm-up and the
    batcher's load-time probe send zeros and see a well-behaved model, so it is batched.

    ``rows``: one row too few; ``aggregate``: one value for the whole call (its sum);
    ``scalar``: a 0-d value; ``slow``: sleeps ``seconds``, then answers right; ``good``:
    never misbehaves. Its answer depends only on the rows of the call, so the same
    estimator run on one caller's rows alone says what that caller must get.
    """

    def __init__(self, kind: str = "good", trigger: float = 5.0, seconds: float = 0.0):
        self.kind = kind
        self.trigger = trigger
        self.seconds = seconds

    def fit(self, X: Any, y: Any) -> "Misbehaves":
        self.inner_ = LogisticRegression(max_iter=1000).fit(X, y)
        self.classes_ = self.inner_.classes_
        self.n_features_in_ = self.inner_.n_features_in_
        return self

    def predict(self, X: Any) -> Any:
        rows = np.asarray(X, dtype=float)
        values = self.inner_.predict(rows)
        if self.kind == "slow":
            time.sleep(self.seconds)
        if not (rows[:, 0] >= self.trigger).any():
            return values
        if self.kind == "rows":
            return values[:-1]
        if self.kind == "aggregate":
            return np.array([values.sum()])
        if self.kind == "scalar":
            return np.int64(values.sum())
        return values


def _recurse(depth: int) -> int:
    return _recurse(depth + 1) + 1


# What ``Raises`` raises, chosen by a row's second feature; None: a real, deep recursion.
RAISED: dict[int, type[BaseException] | None] = {
    0: KeyboardInterrupt,
    1: SystemExit,
    2: None,
    3: MemoryError,
    4: GeneratorExit,
    5: RecursionError,
    6: ArithmeticError,
}
RAISED_NAMES = {
    key: "RecursionError" if cls is None else cls.__name__ for key, cls in RAISED.items()
}


class Raises(ClassifierMixin, BaseEstimator):
    """A LogisticRegression that, for a row whose first feature is at least ``trigger``,
    raises what ``RAISED`` lists under that row's second feature (``BaseException``s
    included: ``KeyboardInterrupt``, ``SystemExit``, a real ``RecursionError``, ...)."""

    def __init__(self, trigger: float = 100.0):
        self.trigger = trigger

    def fit(self, X: Any, y: Any) -> "Raises":
        self.inner_ = LogisticRegression(max_iter=1000).fit(X, y)
        self.classes_ = self.inner_.classes_
        self.n_features_in_ = self.inner_.n_features_in_
        return self

    def predict(self, X: Any) -> np.ndarray:
        rows = np.asarray(X, dtype=float)
        for row in rows:
            if row[0] >= self.trigger:
                raised = RAISED[int(row[1]) % len(RAISED)]
                if raised is None:
                    _recurse(0)
                else:
                    raise raised(f"the estimator raised {raised.__name__}")
        return self.inner_.predict(rows)
