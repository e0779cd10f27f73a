"""Served predictions equal the same estimator run in-process, over both protocols.

Labels are compared exactly. Float outputs within the compiled path's documented tolerance
(docs/compiled.md): the example models are served by ONNX Runtime where verified equal.
"""

import numpy as np
import pytest
from sklearn.datasets import load_breast_cancer, load_diabetes, load_iris

from runtimes.compiled.tolerance import ATOL, RTOL
from runtimes.examples import wine_frame

from .clients import infer, make_client


def _rows(X: np.ndarray, count: int = 7) -> np.ndarray:
    return np.ascontiguousarray(X[:: max(1, len(X) // count)][:count], dtype=np.float64)


@pytest.mark.parametrize("version", ["1", "2"])
def test_iris_versions_match_their_estimators(server, estimators, protocol, version):
    X = _rows(load_iris().data)
    client = make_client(protocol, server)
    result = infer(protocol, client, "iris", {"input-0": X}, ["predict", "predict_proba"], version)
    estimator = estimators[("iris", version)]
    np.testing.assert_array_equal(result.as_numpy("predict"), estimator.predict(X))
    np.testing.assert_allclose(
        result.as_numpy("predict_proba"), estimator.predict_proba(X), rtol=RTOL, atol=ATOL
    )


def test_unversioned_request_is_served_by_the_highest_version(server, estimators, protocol):
    X = _rows(load_iris().data, 50)
    client = make_client(protocol, server)
    result = infer(protocol, client, "iris", {"input-0": X}, ["predict_proba"])
    np.testing.assert_allclose(
        result.as_numpy("predict_proba"),
        estimators[("iris", "2")].predict_proba(X),
        rtol=RTOL,
        atol=ATOL,
    )
    assert not np.allclose(
        result.as_numpy("predict_proba"), estimators[("iris", "1")].predict_proba(X)
    )


def test_default_output_is_predict(server, estimators, protocol):
    X = _rows(load_iris().data)
    result = infer(protocol, make_client(protocol, server), "iris", {"input-0": X})
    np.testing.assert_array_equal(result.as_numpy("predict"), estimators[("iris", "2")].predict(X))
    assert result.as_numpy("predict_proba") is None


def test_regressor(server, estimators, protocol):
    X = _rows(load_diabetes().data)
    result = infer(protocol, make_client(protocol, server), "diabetes", {"input-0": X})
    np.testing.assert_allclose(
        result.as_numpy("predict"), estimators[("diabetes", "1")].predict(X), rtol=RTOL, atol=ATOL
    )


def test_pipeline_with_predict_proba(server, estimators, protocol):
    X = _rows(load_breast_cancer().data)
    client = make_client(protocol, server)
    result = infer(protocol, client, "breast-cancer", {"input-0": X}, ["predict", "predict_proba"])
    estimator = estimators[("breast-cancer", "1")]
    np.testing.assert_array_equal(result.as_numpy("predict"), estimator.predict(X))
    np.testing.assert_allclose(
        result.as_numpy("predict_proba"), estimator.predict_proba(X), rtol=RTOL, atol=ATOL
    )


def test_column_transformer_takes_one_tensor_per_named_column(server, estimators, protocol):
    frame = wine_frame().iloc[::20]
    estimator = estimators[("wine-columns", "1")]
    columns = list(estimator.feature_names_in_)
    inputs = {
        name: frame[name].to_numpy(dtype=object if name == "colour" else np.float64)
        for name in columns
    }
    client = make_client(protocol, server)
    result = infer(protocol, client, "wine-columns", inputs, ["predict", "predict_proba"])
    np.testing.assert_array_equal(result.as_numpy("predict"), estimator.predict(frame[columns]))
    np.testing.assert_allclose(
        result.as_numpy("predict_proba"),
        estimator.predict_proba(frame[columns]),
        rtol=RTOL,
        atol=ATOL,
    )
