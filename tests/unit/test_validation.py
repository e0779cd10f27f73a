"""Request checks against a schema, without a server."""

import numpy as np
import pandas as pd
import pytest
from mlserver.types import RequestInput, RequestOutput

from runtimes.errors import InvalidInput, InvalidOutput, InvalidPayload
from runtimes.schema import ModelSchema, TensorSpec
from runtimes.validation import decode_features, requested_outputs

NUMERIC = ModelSchema(
    inputs=(TensorSpec("input-0", "FP64", (-1, 3)),),
    outputs=(TensorSpec("predict", "INT64", (-1,)), TensorSpec("predict_proba", "FP64", (-1, 2))),
)
COLUMNS = ModelSchema(
    inputs=(TensorSpec("a", "FP64", (-1,)), TensorSpec("b", "BYTES", (-1,))),
    outputs=(TensorSpec("predict", "INT64", (-1,)),),
    named_columns=True,
)


def _tensor(name="input-0", shape=(2, 3), datatype="FP64", data=None):
    data = list(range(6)) if data is None else data
    return RequestInput(name=name, shape=list(shape), datatype=datatype, data=data)


def test_flat_and_nested_data_decode_alike():
    flat = decode_features("m", NUMERIC, [_tensor()])
    nested = decode_features("m", NUMERIC, [_tensor(data=[[0, 1, 2], [3, 4, 5]])])
    np.testing.assert_array_equal(flat, nested)
    assert flat.dtype == np.float64 and flat.shape == (2, 3)


def test_columns_become_a_dataframe():
    frame = decode_features(
        "m",
        COLUMNS,
        [_tensor("a", (2,), data=[1.5, 2.5]), _tensor("b", (2, 1), "BYTES", data=["x", "y"])],
    )
    assert isinstance(frame, pd.DataFrame)
    assert list(frame.columns) == ["a", "b"] and frame["b"].tolist() == ["x", "y"]


@pytest.mark.parametrize(
    ("inputs", "words"),
    [
        ([_tensor(shape=(2, 2), data=[1, 2, 3, 4])], ["[-1, 3]", "[2, 2]"]),
        ([_tensor(shape=(2, 3), data=[1, 2, 3])], ["6 values", "3 values"]),
        ([_tensor(datatype="FP32")], ["FP64", "FP32"]),
        ([_tensor(datatype="BYTES", data=["a"] * 6)], ["FP64", "BYTES"]),
        ([_tensor(data=[1, 2, float("nan"), 4, 5, 6])], ["NaN"]),
        ([_tensor(data=[1, 2, float("inf"), 4, 5, 6])], ["Inf"]),
        ([_tensor(), _tensor()], ["duplicated"]),
        ([_tensor(name="x")], ["'x'", "unknown"]),
        ([_tensor(shape=(2, 3, 1))], ["wrong shape"]),
        ([_tensor(data=[[1, 2, 3], [4, 5]])], ["ragged"]),
    ],
)
def test_bad_numeric_inputs(inputs, words):
    with pytest.raises(InvalidInput) as caught:
        decode_features("m", NUMERIC, inputs)
    assert "model 'm'" in str(caught.value)
    for word in words:
        assert word in str(caught.value)


def test_nan_is_allowed_when_configured():
    features = decode_features("m", NUMERIC, [_tensor(data=[float("nan")] * 6)], allow_nan=True)
    assert np.isnan(features).all()


def test_missing_and_empty():
    with pytest.raises(InvalidInput, match="'b' is missing"):
        decode_features("m", COLUMNS, [_tensor("a", (1,), data=[1.0])])
    with pytest.raises(InvalidPayload, match="no inputs"):
        decode_features("m", NUMERIC, [])


def test_columns_of_different_lengths():
    with pytest.raises(InvalidInput, match="batch size"):
        decode_features(
            "m",
            COLUMNS,
            [_tensor("a", (2,), data=[1.0, 2.0]), _tensor("b", (1,), "BYTES", data=["x"])],
        )


def test_requested_outputs():
    assert requested_outputs("m", NUMERIC, None) == ["predict"]
    wanted = [RequestOutput(name="predict_proba"), RequestOutput(name="predict")]
    assert requested_outputs("m", NUMERIC, wanted) == ["predict_proba", "predict"]
    with pytest.raises(InvalidOutput, match="'nope'.*predict_proba"):
        requested_outputs("m", NUMERIC, [RequestOutput(name="nope")])
