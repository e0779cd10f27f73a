"""Schema derivation on each kind of estimator in the example repository."""

import pytest
from mlserver.types import MetadataTensor
from sklearn.cluster import KMeans
from sklearn.datasets import load_iris

from runtimes.errors import SettingsError
from runtimes.examples import breast_cancer_v1, diabetes_v1, iris_v1, wine_columns_v1
from runtimes.schema import TensorSpec, derive_schema


def _by_name(specs):
    return {s.name: (s.datatype, s.shape) for s in specs}


def test_classifier():
    schema = derive_schema(iris_v1())
    assert schema.inputs == (TensorSpec("input-0", "FP64", (-1, 4)),)
    assert _by_name(schema.outputs) == {
        "predict": ("INT64", (-1,)),
        "predict_proba": ("FP64", (-1, 3)),
        "decision_function": ("FP64", (-1, 3)),
    }
    assert not schema.named_columns


def test_regressor():
    schema = derive_schema(diabetes_v1())
    assert schema.inputs == (TensorSpec("input-0", "FP64", (-1, 10)),)
    assert _by_name(schema.outputs) == {"predict": ("FP64", (-1,))}


def test_pipeline_binary_classifier():
    schema = derive_schema(breast_cancer_v1())
    assert schema.inputs[0].shape == (-1, 30)
    outputs = _by_name(schema.outputs)
    assert outputs["predict_proba"] == ("FP64", (-1, 2))
    assert "decision_function" not in outputs


def test_named_columns_with_strings():
    estimator = wine_columns_v1()
    schema = derive_schema(estimator)
    assert schema.named_columns
    assert [s.name for s in schema.inputs] == list(estimator.feature_names_in_)
    assert _by_name(schema.inputs)["colour"] == ("BYTES", (-1,))
    assert _by_name(schema.inputs)["alcohol"] == ("FP64", (-1,))


def test_transformer_only_estimator():
    schema = derive_schema(KMeans(n_clusters=2, n_init=1, random_state=0).fit(load_iris().data))
    assert {"predict", "transform"} <= set(schema.output_names)


def test_declared_schema_that_agrees_is_kept():
    declared = [MetadataTensor(name="features", datatype="FP64", shape=[-1, 4])]
    schema = derive_schema(iris_v1(), declared_inputs=declared)
    assert schema.inputs == (TensorSpec("features", "FP64", (-1, 4)),)


@pytest.mark.parametrize(
    ("inputs", "outputs", "words"),
    [
        ([MetadataTensor(name="x", datatype="FP64", shape=[-1, 5])], [], ["[-1, 5]", "[-1, 4]"]),
        ([MetadataTensor(name="x", datatype="BYTES", shape=[-1, 4])], [], ["BYTES"]),
        ([], [MetadataTensor(name="predict", datatype="FP64", shape=[-1])], ["FP64", "INT64"]),
        ([], [MetadataTensor(name="score", datatype="FP64", shape=[-1])], ["score"]),
    ],
)
def test_declared_schema_that_contradicts_fails_with_reason(inputs, outputs, words):
    with pytest.raises(SettingsError) as caught:
        derive_schema(iris_v1(), declared_inputs=inputs, declared_outputs=outputs)
    for word in words:
        assert word in str(caught.value)


def test_unfitted_estimator_is_refused():
    from sklearn.linear_model import LogisticRegression

    with pytest.raises(SettingsError, match="not fitted"):
        derive_schema(LogisticRegression())


def test_categories_from_an_encoder_that_raises_on_unknowns():
    from runtimes.examples import wine_strict_v1

    schema = derive_schema(wine_strict_v1())
    assert schema.categories == {"colour": ("deep", "medium", "pale")}
    assert schema.example_batch()["colour"].tolist() == ["deep"]


def test_ignoring_encoder_gives_vocabulary_but_no_enforced_categories():
    schema = derive_schema(wine_columns_v1())
    assert schema.categories == {}
    assert schema.vocabulary == {"colour": ("deep", "medium", "pale")}


def test_ordinal_encoder_as_first_step_on_a_frame():
    import pandas as pd
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import OrdinalEncoder
    from sklearn.tree import DecisionTreeClassifier

    frame = pd.DataFrame({"size": ["s", "m", "l", "m"], "shade": ["a", "b", "a", "b"]})
    model = make_pipeline(OrdinalEncoder(), DecisionTreeClassifier()).fit(frame, [0, 1, 1, 0])
    schema = derive_schema(model)
    assert _by_name(schema.inputs) == {"size": ("BYTES", (-1,)), "shade": ("BYTES", (-1,))}
    assert schema.categories == {"size": ("l", "m", "s"), "shade": ("a", "b")}
