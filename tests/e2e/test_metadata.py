"""Model metadata is never empty: inputs, outputs, and the versions served."""

import pytest
import requests

from .clients import make_client, metadata


def _tensors(items):
    return {t["name"]: (t["datatype"], [int(d) for d in t["shape"]]) for t in items}


@pytest.mark.parametrize(
    ("model", "inputs", "outputs", "versions"),
    [
        (
            "iris",
            {"input-0": ("FP64", [-1, 4])},
            {
                "predict": ("INT64", [-1]),
                "predict_proba": ("FP64", [-1, 3]),
                "decision_function": ("FP64", [-1, 3]),
            },
            ["1", "2"],
        ),
        ("diabetes", {"input-0": ("FP64", [-1, 10])}, {"predict": ("FP64", [-1])}, ["1"]),
        (
            "breast-cancer",
            {"input-0": ("FP64", [-1, 30])},
            {"predict": ("INT64", [-1]), "predict_proba": ("FP64", [-1, 2])},
            ["1"],
        ),
    ],
)
def test_metadata_gives_schema_and_versions(server, protocol, model, inputs, outputs, versions):
    found = metadata(protocol, make_client(protocol, server), model)
    assert found["name"] == model
    assert found["versions"] == versions
    assert found["platform"] == "sklearn"
    assert _tensors(found["inputs"]) == inputs
    assert _tensors(found["outputs"]) == outputs


def test_named_columns_are_inputs_with_their_datatypes(server, protocol, estimators):
    found = _tensors(metadata(protocol, make_client(protocol, server), "wine-columns")["inputs"])
    expected_names = list(estimators[("wine-columns", "1")].feature_names_in_)
    assert list(found) == expected_names
    assert found["colour"] == ("BYTES", [-1])
    assert found["alcohol"] == ("FP64", [-1])


def test_versioned_metadata_and_readiness(server):
    assert requests.get(f"{server.base}/v2/models/iris/versions/1").json()["name"] == "iris"
    assert requests.get(f"{server.base}/v2/models/iris/versions/1/ready").status_code == 200
    assert requests.get(f"{server.base}/v2/models/iris/ready").status_code == 200
    assert requests.get(f"{server.base}/v2/health/live").status_code == 200
    assert requests.get(f"{server.base}/v2/health/ready").status_code == 200
