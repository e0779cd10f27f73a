"""The closed-form predictor equals scikit-learn on every estimator it takes, refuses the
ones it does not evaluate, and is what ``auto`` chooses for linear models."""

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from hypothesis.extra.numpy import arrays
from sklearn.base import is_classifier
from sklearn.datasets import load_breast_cancer, load_diabetes, load_iris
from sklearn.ensemble import RandomForestClassifier
from sklearn.linear_model import (
    ElasticNet,
    LinearRegression,
    LogisticRegression,
    Ridge,
    RidgeClassifier,
    SGDClassifier,
    SGDRegressor,
)
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import MaxAbsScaler, MinMaxScaler, StandardScaler
from sklearn.svm import LinearSVR

from runtimes.compiled.backend import choose_backend, compile_native, verify
from runtimes.compiled.convert import ConversionError
from runtimes.compiled.tolerance import disagreement
from runtimes.errors import CompilationFailed
from runtimes.schema import derive_schema
from runtimes.settings import ModelExtra


def _fit(estimator, loader, two_d_target=False):
    X, y = loader(return_X_y=True)
    if two_d_target:
        y = np.column_stack([y, -y])
    return estimator.fit(X, y), X


FITTED = {
    "binary logistic": lambda: _fit(
        make_pipeline(StandardScaler(), LogisticRegression(max_iter=1000)), load_breast_cancer
    ),
    "multiclass logistic, scaled": lambda: _fit(
        make_pipeline(StandardScaler(), LogisticRegression(max_iter=1000)), load_iris
    ),
    "min-max + max-abs + ridge classifier": lambda: _fit(
        make_pipeline(MinMaxScaler(), MaxAbsScaler(), RidgeClassifier()), load_iris
    ),
    "sgd classifier": lambda: _fit(
        make_pipeline(StandardScaler(), SGDClassifier(random_state=0)), load_iris
    ),
    "linear regression": lambda: _fit(LinearRegression(), load_diabetes),
    "ridge, two targets": lambda: _fit(Ridge(), load_diabetes, two_d_target=True),
    "elastic net": lambda: _fit(ElasticNet(alpha=0.01), load_diabetes),
    "linear svr": lambda: _fit(
        make_pipeline(StandardScaler(), LinearSVR(max_iter=10000)), load_diabetes
    ),
    "sgd regressor": lambda: _fit(
        make_pipeline(StandardScaler(), SGDRegressor(random_state=0)), load_diabetes
    ),
}


def _agrees(estimator, predictor, rows):
    got = predictor.run(predictor.feeds(rows), predictor.methods)
    for method in predictor.methods:
        expected = np.asarray(getattr(estimator, method)(rows))
        assert disagreement(method, expected, got[method]) is None, method


@pytest.mark.parametrize("label", FITTED)
def test_auto_serves_the_closed_form_and_it_equals_sklearn(label):
    estimator, X = FITTED[label]()
    choice = choose_backend("m", "1", estimator, derive_schema(estimator), ModelExtra(), None)
    assert choice.backend == "native", choice.verification
    _agrees(estimator, choice.predictor, X)
    # Rows far from the training data: large magnitudes, negative zero, subnormals.
    odd = np.vstack(
        [X[:3] * 1e6, -X[:3], np.full((1, X.shape[1]), -0.0), np.full((1, X.shape[1]), 5e-324)]
    )
    _agrees(estimator, choice.predictor, odd)


SCALED_LOGISTIC, _ = FITTED["multiclass logistic, scaled"]()
SCALED_PREDICTOR = compile_native(SCALED_LOGISTIC, derive_schema(SCALED_LOGISTIC))
verify(SCALED_PREDICTOR, SCALED_LOGISTIC, derive_schema(SCALED_LOGISTIC), None)


@settings(max_examples=60, deadline=None)
@given(arrays(np.float64, (5, 4), elements=st.floats(-1e6, 1e6, allow_nan=False)))
def test_random_rows_agree_on_a_scaled_logistic_regression(rows):
    _agrees(SCALED_LOGISTIC, SCALED_PREDICTOR, rows)


def test_logistic_regression_offers_probabilities_and_others_do_not():
    logistic, _ = FITTED["binary logistic"]()
    ridge, _ = FITTED["min-max + max-abs + ridge classifier"]()
    assert compile_native(logistic, derive_schema(logistic)).methods == (
        "predict",
        "predict_proba",
        "decision_function",
    )
    assert compile_native(ridge, derive_schema(ridge)).methods == ("predict", "decision_function")


@pytest.mark.parametrize("label", FITTED)
def test_every_classifier_answers_decision_function_itself(label):
    """perf_analyzer asks for every output in the metadata; one left to sklearn made every
    call cost sklearn's. Its equality with sklearn is the test above (all methods)."""
    estimator, _ = FITTED[label]()
    schema = derive_schema(estimator)
    offered = "decision_function" in compile_native(estimator, schema).methods
    assert offered == ("decision_function" in schema.output_names and is_classifier(estimator))


class Shifted(LogisticRegression):
    """A subclass that overrides predict: the closed form must not stand in for it."""

    def predict(self, X):
        return super().predict(X)[::-1].copy()


@pytest.mark.parametrize(
    ("estimator", "named"),
    [
        (Shifted(max_iter=1000), "Shifted"),
        (make_pipeline(MinMaxScaler(clip=True), LogisticRegression(max_iter=1000)), "clip=True"),
        (RandomForestClassifier(n_estimators=3, random_state=0), "RandomForestClassifier"),
    ],
)
def test_what_has_no_closed_form_is_refused_by_name(estimator, named):
    estimator, _ = _fit(estimator, load_iris)
    with pytest.raises(ConversionError, match=named):
        compile_native(estimator, derive_schema(estimator))


def test_forcing_native_on_a_forest_fails_the_load_and_says_why():
    forest, _ = _fit(RandomForestClassifier(n_estimators=3, random_state=0), load_iris)
    with pytest.raises(CompilationFailed, match="closed form"):
        choose_backend(
            "m", "1", forest, derive_schema(forest), ModelExtra(inference_backend="native"), None
        )


def test_non_finite_rows_are_left_to_sklearn():
    estimator, X = FITTED["linear regression"]()
    predictor = compile_native(estimator, derive_schema(estimator))
    rows = X[:2].copy()
    rows[1, 3] = np.nan
    assert predictor.feeds(rows) is None
    rows[1, 3] = np.inf
    assert predictor.feeds(rows) is None
    assert predictor.feeds(X[:2]) is not None


def test_onnx_stays_available_when_asked_for():
    estimator, X = FITTED["linear regression"]()
    choice = choose_backend(
        "m", "1", estimator, derive_schema(estimator), ModelExtra(inference_backend="onnx"), None
    )
    assert choice.backend == "onnx"
    _agrees(estimator, choice.predictor, X)
