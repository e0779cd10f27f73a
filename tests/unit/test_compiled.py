"""The compiled path equals scikit-learn where it serves, and falls back where it does not."""

import logging

import numpy as np
import pandas as pd
import pytest
from sklearn.base import BaseEstimator, TransformerMixin
from sklearn.datasets import load_iris
from sklearn.linear_model import LogisticRegression
from sklearn.pipeline import Pipeline

from runtimes.compiled.backend import choose_backend, compile_and_verify
from runtimes.compiled.rows import split_rows
from runtimes.compiled.tolerance import disagreement
from runtimes.errors import CompilationFailed, ModelLoadFailed
from runtimes.examples import EXAMPLES, TEST_EXAMPLES
from runtimes.schema import derive_schema
from runtimes.settings import ModelExtra

from .estimator_catalogue import CASES, Case


def _assert_agrees(estimator, predictor, rows):
    got = predictor.run(predictor.feeds(rows), predictor.methods)
    for method in predictor.methods:
        expected = np.asarray(getattr(estimator, method)(rows))
        assert disagreement(method, expected, got[method]) is None


def _held_out_of_example(estimator):
    width = estimator.n_features_in_ if not hasattr(estimator, "feature_names_in_") else None
    if width is None:
        from runtimes.examples import wine_frame

        return wine_frame()[list(estimator.feature_names_in_)]
    from sklearn import datasets

    for loader in (datasets.load_iris, datasets.load_diabetes, datasets.load_breast_cancer):
        X = loader().data
        if X.shape[1] == width:
            return X
    raise AssertionError(f"no dataset with {width} features")


EXAMPLE_MODELS = [
    (f"{name}/{version}", train)
    for examples in (EXAMPLES, TEST_EXAMPLES)
    for name, versions in examples.items()
    for version, train in versions.items()
]


@pytest.mark.parametrize(("label", "train"), EXAMPLE_MODELS, ids=[m[0] for m in EXAMPLE_MODELS])
def test_every_example_model_compiles_and_agrees(label, train):
    estimator = train()
    predictor, _ = compile_and_verify(estimator, derive_schema(estimator), 1, None)
    assert "predict" in predictor.methods
    _assert_agrees(estimator, predictor, _held_out_of_example(estimator))


@pytest.mark.parametrize("case", CASES, ids=[c.name for c in CASES])
def test_catalogue_backend_and_agreement(case: Case):
    estimator, held_out = case.build()
    schema = derive_schema(estimator)
    choice = choose_backend("m", "1", estimator, schema, ModelExtra(), None)
    assert choice.backend == case.expected, choice.verification
    if choice.predictor is None:
        return
    _assert_agrees(estimator, choice.predictor, held_out)
    if not isinstance(held_out, pd.DataFrame):
        on_splits, _ = split_rows(estimator, np.asarray(held_out).mean(axis=0))
        if on_splits is not None:
            _assert_agrees(estimator, choice.predictor, on_splits)


def test_split_rows_sit_on_thresholds_of_a_bare_tree():
    case = next(c for c in CASES if c.name == "DecisionTreeRegressor")
    tree, held_out = case.build()
    rows, why = split_rows(tree, np.asarray(held_out).mean(axis=0))
    assert rows is not None, why
    structure = tree.tree_
    inner = structure.feature >= 0
    for feature, threshold in zip(
        structure.feature[inner], structure.threshold[inner], strict=True
    ):
        assert (rows[:, feature] == threshold).any()


class Doubler(TransformerMixin, BaseEstimator):
    """A custom step that skl2onnx has no converter for."""

    def fit(self, X, y=None):
        self.n_features_in_ = np.asarray(X).shape[1]
        return self

    def transform(self, X):
        return np.asarray(X) * 2.0


def _custom_pipeline():
    X, y = load_iris(return_X_y=True)
    model = Pipeline([("double", Doubler()), ("classify", LogisticRegression(max_iter=500))])
    return model.fit(X, y)


def test_unconvertible_step_falls_back_under_auto(caplog):
    estimator = _custom_pipeline()
    with caplog.at_level(logging.WARNING, logger="v2serve.compiled"):
        choice = choose_backend(
            "custom", "1", estimator, derive_schema(estimator), ModelExtra(), None
        )
    assert choice.backend == "sklearn"
    assert choice.predictor is None
    assert "step 'double' (Doubler)" in choice.verification
    assert "Doubler" in caplog.text


def test_unconvertible_step_fails_the_load_under_onnx():
    estimator = _custom_pipeline()
    extra = ModelExtra(inference_backend="onnx")
    with pytest.raises(CompilationFailed) as failure:
        choose_backend("custom", "3", estimator, derive_schema(estimator), extra, None)
    assert isinstance(failure.value, ModelLoadFailed)
    assert failure.value.status_code == 422
    assert "model 'custom' version 3" in str(failure.value)
    assert "step 'double' (Doubler) has no ONNX converter" in str(failure.value)


def test_verification_failure_fails_the_load_under_onnx():
    case = next(c for c in CASES if c.name == "HistGradientBoostingRegressor")
    estimator, _ = case.build()
    extra = ModelExtra(inference_backend="onnx")
    with pytest.raises(CompilationFailed, match="verification: predict: row"):
        choose_backend("hgb", None, estimator, derive_schema(estimator), extra, None)


def test_sklearn_backend_never_compiles():
    estimator = EXAMPLES["breast-cancer"][1]()
    extra = ModelExtra(inference_backend="sklearn")
    choice = choose_backend("bc", "1", estimator, derive_schema(estimator), extra, None)
    assert (choice.backend, choice.predictor) == ("sklearn", None)


def test_sample_file_joins_the_verification_rows(tmp_path):
    estimator = EXAMPLES["breast-cancer"][1]()
    sample = _held_out_of_example(estimator)[:40]
    np.save(tmp_path / "sample.npy", sample)
    _, verification = compile_and_verify(estimator, derive_schema(estimator), 1, tmp_path)
    assert "40 sample rows" in verification


def test_sample_csv_for_named_columns(tmp_path):
    estimator = TEST_EXAMPLES["wine-columns"][1]()
    _held_out_of_example(estimator)[:25].to_csv(tmp_path / "sample.csv", index=False)
    _, verification = compile_and_verify(estimator, derive_schema(estimator), 1, tmp_path)
    assert "25 sample rows" in verification


def test_unknown_category_and_nan_are_left_to_sklearn():
    estimator = TEST_EXAMPLES["wine-columns"][1]()
    predictor, _ = compile_and_verify(estimator, derive_schema(estimator), 1, None)
    frame = _held_out_of_example(estimator)[:3].copy()
    assert predictor.feeds(frame) is not None
    frame.loc[0, "colour"] = "ultraviolet"
    assert predictor.feeds(frame) is None
    numeric = EXAMPLES["iris"][1]()
    predictor, _ = compile_and_verify(numeric, derive_schema(numeric), 1, None)
    assert predictor.feeds(np.array([[1.0, 2.0, np.nan, 4.0]])) is None


def test_outputs_keep_sklearn_dtypes_and_shapes():
    estimator = EXAMPLES["diabetes"][1]()
    predictor, _ = compile_and_verify(estimator, derive_schema(estimator), 1, None)
    X = _held_out_of_example(estimator)[:5]
    got = predictor.run(predictor.feeds(X), ["predict"])["predict"]
    assert (got.dtype, got.shape) == (np.dtype(np.float64), (5,))


def test_disagreement_reports_labels_and_values():
    labels = np.array([0, 1, 2])
    assert disagreement("predict", labels, labels.copy()) is None
    assert "1 of 3 rows differ" in disagreement("predict", labels, np.array([0, 2, 2]))
    assert "dtype" in disagreement("predict", labels, labels.astype(np.int32))
    values = np.array([[0.25, 0.75]])
    assert disagreement("predict_proba", values, values + 5e-7) is None
    assert "differs by" in disagreement("predict_proba", values, values + 1e-4)


def test_backend_options_are_strict():
    from runtimes.errors import SettingsError
    from runtimes.settings import parse_model_extra

    assert parse_model_extra({}, "m").inference_backend == "auto"
    assert parse_model_extra({"onnx_threads": 2}, "m").onnx_threads == 2
    with pytest.raises(SettingsError, match="inference_backend"):
        parse_model_extra({"inference_backend": "tensorrt"}, "m")
    with pytest.raises(SettingsError, match="onnx_threads"):
        parse_model_extra({"onnx_threads": 0}, "m")
