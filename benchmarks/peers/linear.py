"""A LogisticRegression as plain numpy: what the ceiling probes compute per request."""

from __future__ import annotations

from pathlib import Path

import joblib
import numpy as np


class NumpyLogistic:
    """``predict`` of a fitted multiclass ``LogisticRegression``: argmax of X·Wᵀ + b."""

    def __init__(self, coef: np.ndarray, intercept: np.ndarray, classes: np.ndarray):
        self.coef_t = np.ascontiguousarray(coef.T, dtype=np.float64)
        self.intercept = np.asarray(intercept, dtype=np.float64)
        self.classes = np.asarray(classes)
        self.n_features = self.coef_t.shape[0]

    @classmethod
    def from_artifact(cls, path: Path) -> NumpyLogistic:
        estimator = joblib.load(path)
        return cls(estimator.coef_, estimator.intercept_, estimator.classes_)

    def predict(self, rows: np.ndarray) -> np.ndarray:
        scores = rows @ self.coef_t + self.intercept
        if scores.shape[1] == 1:  # a binary model keeps one row of coefficients
            return self.classes[(scores[:, 0] > 0).astype(np.intp)]
        return self.classes[scores.argmax(axis=1)]
