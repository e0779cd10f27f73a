"""The cache key: what must change it, and what must not."""

import numpy as np
import pandas as pd
import pytest
from mlserver.types import RequestInput

from runtimes.cache.key import named_tensors, request_digest
from runtimes.schema import ModelSchema, TensorSpec
from runtimes.validation import decode_features

SCHEMA = ModelSchema(
    inputs=(TensorSpec("input-0", "FP64", (-1, 2)),),
    outputs=(TensorSpec("predict", "INT64", (-1,)),),
)


def _digest(data, shape=(1, 2), outputs=("predict",)) -> bytes:
    tensor = RequestInput(name="input-0", datatype="FP64", shape=list(shape), data=data)
    features = decode_features("m", SCHEMA, [tensor])
    return request_digest(named_tensors(features, "input-0"), list(outputs))


def test_json_integer_and_float_spellings_are_one_key():
    assert _digest([0, 1]) == _digest([0.0, 1.0]) == _digest([[0, 1.0]])


@pytest.mark.parametrize(
    "other",
    [
        {"data": [1, 0]},
        {"data": [0, 1e-300]},
        {"data": [0, 1], "outputs": ("predict_proba",)},
        {"data": [0, 1], "outputs": ("predict", "predict_proba")},
    ],
)
def test_data_shape_and_outputs_change_the_key(other):
    assert _digest(**other) != _digest([0, 1])


def test_output_order_changes_the_key():
    tensors = {"x": np.zeros((1, 2))}
    assert request_digest(tensors, ["a", "b"]) != request_digest(tensors, ["b", "a"])


def test_dtype_name_and_shape_change_the_key():
    base = request_digest({"x": np.zeros(2)}, ["p"])
    assert request_digest({"x": np.zeros((2, 1))}, ["p"]) != base
    assert request_digest({"x": np.zeros(2, dtype=np.int64)}, ["p"]) != base
    assert request_digest({"y": np.zeros(2)}, ["p"]) != base


def test_string_columns_are_delimited():
    one = request_digest({"c": np.array(["ab", "c"], dtype=object)}, ["p"])
    two = request_digest({"c": np.array(["a", "bc"], dtype=object)}, ["p"])
    assert one != two


def test_frame_columns_are_named_tensors():
    frame = pd.DataFrame({"a": [1.0, 2.0], "colour": ["red", "blue"]})
    tensors = named_tensors(frame, "unused")
    assert list(tensors) == ["a", "colour"]
    np.testing.assert_array_equal(tensors["a"], [1.0, 2.0])
    changed = frame.assign(colour=["red", "green"])
    assert request_digest(tensors, ["p"]) != request_digest(named_tensors(changed, "u"), ["p"])
