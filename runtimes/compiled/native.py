"""Closed-form numpy predictors for linear models, scalers and Pipelines of them.

ONNX Runtime costs about 25 µs a call even for a model that numpy evaluates in a few
microseconds (issue 15), so a linear model is cheaper served by the formula sklearn itself
uses: ``X @ coef_.T + intercept_`` after the scalers, then the class or probability rule
(a classifier's ``decision_function`` is those scores themselves: perf_analyzer asks for
every output the metadata lists, and one output left to sklearn made each call cost
sklearn's, and sent the model's calls off the event loop).
Only the exact classes listed here are taken (a subclass may override ``predict``), the
arithmetic is sklearn's own in float64, and the result is verified at load against the
estimator on the same rows as the ONNX path, with the same fallback (backend.py).
"""

import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pandas as pd
from scipy.special import expit
from sklearn.linear_model import (
    ElasticNet,
    Lasso,
    LinearRegression,
    LogisticRegression,
    Ridge,
    RidgeClassifier,
    SGDClassifier,
    SGDRegressor,
)
from sklearn.pipeline import Pipeline
from sklearn.preprocessing import MaxAbsScaler, MinMaxScaler, StandardScaler
from sklearn.svm import LinearSVC, LinearSVR

from ..schema import ModelSchema
from .predictor import OutputForm

Transform = Callable[[np.ndarray], np.ndarray]

REGRESSORS = (LinearRegression, Ridge, Lasso, ElasticNet, LinearSVR, SGDRegressor)
CLASSIFIERS = (LogisticRegression, RidgeClassifier, LinearSVC, SGDClassifier)


class NotClosedForm(Exception):
    """The estimator has a step this module does not evaluate; the message names it."""


def _standard(scaler: StandardScaler) -> Transform:
    mean, scale = scaler.mean_, scaler.scale_

    def transform(x: np.ndarray) -> np.ndarray:
        if mean is not None:
            x = x - mean
        return x / scale if scale is not None else x

    return transform


def _min_max(scaler: MinMaxScaler) -> Transform:
    if scaler.clip:
        raise NotClosedForm("MinMaxScaler with clip=True")
    scale, offset = scaler.scale_, scaler.min_
    return lambda x: x * scale + offset


def _max_abs(scaler: MaxAbsScaler) -> Transform:
    scale = scaler.scale_
    return lambda x: x / scale


SCALERS: dict[type, Callable[[Any], Transform]] = {
    StandardScaler: _standard,
    MinMaxScaler: _min_max,
    MaxAbsScaler: _max_abs,
}


_SMALL = 32


def finite(array: np.ndarray) -> bool:
    """Every value finite. For a few values a Python loop is cheaper than numpy's ufunc
    and reduction (as in ``runtimes.validation``)."""
    if array.size <= _SMALL:
        return all(map(math.isfinite, array.flat))
    return bool(np.isfinite(array).all())


def _steps(estimator: Any) -> list[Any]:
    if type(estimator) is Pipeline:
        return [step for _, step in estimator.steps if step not in (None, "passthrough")]
    return [estimator]


@dataclass
class NativePredictor:
    """The same three members as ``CompiledPredictor``: ``methods``, ``feeds``, ``run``."""

    schema: ModelSchema
    transforms: list[Transform]
    coef: np.ndarray
    intercept: np.ndarray | float
    classes: np.ndarray | None
    methods: tuple[str, ...]
    forms: dict[str, OutputForm] = field(default_factory=dict)
    input_names: list[str] = field(default_factory=list)

    def feeds(self, features: np.ndarray | pd.DataFrame) -> dict[str, np.ndarray] | None:
        """The features as one float64 matrix, or None where sklearn must answer
        (non-finite values, which sklearn refuses or handles its own way)."""
        if isinstance(features, pd.DataFrame):
            array = features[self.input_names].to_numpy(dtype=np.float64)
        else:
            array = np.asarray(features, dtype=np.float64)
        if array.ndim != 2 or not finite(array):
            return None
        return {"x": array}

    def _decision(self, x: np.ndarray) -> np.ndarray:
        for transform in self.transforms:
            x = transform(x)
        scores = x @ self.coef.T + self.intercept
        # A classifier's decision_function is 1-D for two classes; a regressor keeps the
        # shape of its coef_ (a 2-D target of one column stays 2-D).
        if self.classes is not None and scores.ndim == 2 and scores.shape[1] == 1:
            return scores.reshape(-1)
        return scores

    def run(self, feeds: dict[str, np.ndarray], methods: Sequence[str]) -> dict[str, np.ndarray]:
        scores = self._decision(feeds["x"])
        results: dict[str, np.ndarray] = {}
        for method in methods:
            if method == "predict":
                results[method] = self._predict(scores)
            elif method == "predict_proba":
                results[method] = self._probabilities(scores)
            elif method == "decision_function":
                results[method] = scores
        return results

    def _predict(self, scores: np.ndarray) -> np.ndarray:
        if self.classes is None:
            values = scores
        elif scores.ndim == 1:
            values = self.classes.take((scores > 0).astype(np.intp))
        else:
            values = self.classes.take(scores.argmax(axis=1))
        form = self.forms.get("predict")
        return values.astype(form.dtype, copy=False) if form is not None else values

    def _probabilities(self, scores: np.ndarray) -> np.ndarray:
        # LogisticRegression (sklearn >= 1.8): expit for two classes, and for more the
        # softmax of sklearn.utils.extmath, step for step, on plain numpy arrays.
        if scores.ndim == 1:
            positive = expit(scores)
            return np.stack([1 - positive, positive], axis=1)
        scores = scores - scores.max(axis=1).reshape((-1, 1))
        np.exp(scores, out=scores)
        scores /= scores.sum(axis=1).reshape((-1, 1))
        return scores


def native_predictor(estimator: Any, schema: ModelSchema) -> NativePredictor:
    """A closed-form predictor for ``estimator``, or NotClosedForm naming the step that is not."""
    steps = _steps(estimator)
    *transformers, final = steps
    transforms = []
    for step in transformers:
        build = SCALERS.get(type(step))
        if build is None:
            raise NotClosedForm(f"{type(step).__name__} has no closed form here")
        transforms.append(build(step))
    if type(final) not in (*REGRESSORS, *CLASSIFIERS):
        raise NotClosedForm(f"{type(final).__name__} has no closed form here")
    if any(spec.datatype != "FP64" for spec in schema.inputs):
        raise NotClosedForm("closed forms take FP64 inputs only")
    classifier = type(final) in CLASSIFIERS
    methods = ["predict"] if "predict" in schema.output_names else []
    if type(final) is LogisticRegression and "predict_proba" in schema.output_names:
        methods.append("predict_proba")
    if classifier and "decision_function" in schema.output_names:
        methods.append("decision_function")
    return NativePredictor(
        schema=schema,
        transforms=transforms,
        coef=np.asarray(final.coef_, dtype=np.float64),
        intercept=final.intercept_,
        classes=np.asarray(final.classes_) if classifier else None,
        methods=tuple(methods),
        input_names=[spec.name for spec in schema.inputs],
    )
