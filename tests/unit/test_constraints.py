"""Declared and derived constraints: compiled at load, checked per request, without a server."""

import numpy as np
import pytest
from mlserver.types import RequestInput

from runtimes.constraints import build_constraints
from runtimes.errors import InvalidInput, SettingsError
from runtimes.examples import iris_v1, wine_columns_v1, wine_strict_v1
from runtimes.schema import derive_schema
from runtimes.settings import parse_model_extra
from runtimes.validation import decode_features

IRIS = derive_schema(iris_v1())
WINE_STRICT = derive_schema(wine_strict_v1())
WINE = derive_schema(wine_columns_v1())
NAMES = ["sl", "sw", "pl", "pw"]


def _constraints(schema, extra, max_batch_size=0):
    return build_constraints(schema, parse_model_extra(extra, "m"), max_batch_size, "m")


def _iris(rows):
    data = np.asarray(rows, dtype=float)
    return [
        RequestInput(
            name="input-0", shape=list(data.shape), datatype="FP64", data=data.ravel().tolist()
        )
    ]


def _wine(colour="medium", alcohol=13.0):
    values = {"alcohol": alcohol, "malic_acid": 2.0, "flavanoids": 2.0, "proline": 700.0}
    inputs = [RequestInput(name=n, shape=[1], datatype="FP64", data=[v]) for n, v in values.items()]
    return [*inputs, RequestInput(name="colour", shape=[1], datatype="BYTES", data=[colour])]


def test_ranges_by_index_and_by_name():
    constraints = _constraints(
        IRIS, {"feature_names": NAMES, "features": {"sl": {"min": 4, "max": 8}, "3": {"max": 3}}}
    )
    decode_features("m", IRIS, _iris([[5, 3, 1, 0.2], [8, 3, 1, 3]]), constraints=constraints)
    with pytest.raises(
        InvalidInput, match=r"feature 'sl' \(column 0\).*\[4, 8\], got 8.5 in row 1"
    ):
        decode_features("m", IRIS, _iris([[5, 3, 1, 0.2], [8.5, 3, 1, 0]]), constraints=constraints)
    with pytest.raises(InvalidInput, match=r"feature '3'.*<= 3, got 3.1 in row 0"):
        decode_features("m", IRIS, _iris([[5, 3, 1, 3.1]]), constraints=constraints)


def test_only_a_minimum():
    constraints = _constraints(IRIS, {"features": {"1": {"min": 0}}})
    with pytest.raises(InvalidInput, match=">= 0, got -1"):
        decode_features("m", IRIS, _iris([[5, -1, 1, 0]]), constraints=constraints)


def test_max_batch_size():
    constraints = _constraints(IRIS, {}, max_batch_size=2)
    decode_features("m", IRIS, _iris([[5, 3, 1, 0]] * 2), constraints=constraints)
    with pytest.raises(InvalidInput, match="max_batch_size: expected at most 2 rows, got 3 rows"):
        decode_features("m", IRIS, _iris([[5, 3, 1, 0]] * 3), constraints=constraints)


def test_derived_categories_are_enforced():
    constraints = _constraints(WINE_STRICT, {})
    decode_features("m", WINE_STRICT, _wine("deep"), constraints=constraints)
    with pytest.raises(InvalidInput, match=r"'colour'.*categories.*'blue' in row 0"):
        decode_features("m", WINE_STRICT, _wine("blue"), constraints=constraints)


def test_declared_categories_narrow_and_column_ranges():
    constraints = _constraints(
        WINE,
        {"features": {"colour": {"categories": ["pale"]}, "alcohol": {"min": 10, "max": 16}}},
    )
    with pytest.raises(InvalidInput, match="'medium'"):
        decode_features("m", WINE, _wine("medium"), constraints=constraints)
    with pytest.raises(InvalidInput, match=r"input 'alcohol' is out of its declared range"):
        decode_features("m", WINE, _wine("pale", alcohol=17), constraints=constraints)


def test_unconstrained_ignore_encoder_accepts_unknown_category():
    decode_features("m", WINE, _wine("blue"), constraints=_constraints(WINE, {}))


@pytest.mark.parametrize(
    ("schema", "extra", "words"),
    [
        (IRIS, {"features": {"9": {"max": 1}}}, ["unknown feature '9'", "0", "3"]),
        (IRIS, {"features": {"sl": {"max": 1}}}, ["unknown feature 'sl'"]),
        (IRIS, {"feature_names": ["a"]}, ["1 names", "4 features"]),
        (IRIS, {"features": {"0": {"categories": ["a"]}}}, ["numeric", "min/max"]),
        (WINE, {"features": {"colour": {"min": 0}}}, ["strings", "categories"]),
        (
            WINE,
            {"features": {"color": {"categories": ["pale"]}}},
            ["unknown feature 'color'", "colour"],
        ),
        (WINE, {"feature_names": ["a"]}, ["feature_names", "named"]),
        (WINE_STRICT, {"features": {"colour": {"categories": ["blue"]}}}, ["['blue']", "unknown"]),
    ],
)
def test_constraints_that_do_not_fit_fail_the_load(schema, extra, words):
    with pytest.raises(SettingsError) as caught:
        _constraints(schema, extra)
    for word in words:
        assert word in str(caught.value)


@pytest.mark.parametrize(
    ("extra", "words"),
    [
        ({"features": {"0": {"mn": 1}}}, ["features.0.mn"]),
        ({"features": {"0": {"min": 2, "max": 1}}}, ["min 2.0 is greater than max 1.0"]),
        ({"features": {"0": {"min": 1, "categories": ["a"]}}}, ["not both"]),
        ({"features": {"0": {"categories": []}}}, ["must not be empty"]),
        ({"features": {"0": {"max": "high"}}}, ["features.0.max"]),
        ({"feature_name": ["a"]}, ["feature_name"]),
    ],
)
def test_feature_settings_are_strict(extra, words):
    with pytest.raises(SettingsError) as caught:
        parse_model_extra(extra, "m")
    for word in words:
        assert word in str(caught.value)
