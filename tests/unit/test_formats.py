"""Model formats (runtimes/formats): boosters and MLflow folders, loaded in-process.

Every answer is compared with the library's own: xgboost's and lightgbm's sklearn
wrappers, and the estimator MLflow saved.
"""

import asyncio
import json
import pickle
import shutil
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

import lightgbm
import numpy as np
import pytest
import xgboost
from mlserver.settings import ModelParameters, ModelSettings
from mlserver.types import InferenceRequest, RequestInput
from sklearn.datasets import load_breast_cancer, load_diabetes, load_iris

from runtimes.errors import ModelLoadFailed
from runtimes.examples import (
    iris_lightgbm,
    iris_mlflow,
    iris_mlflow_array,
    wine_frame,
    wine_mlflow,
    write_version_folder,
)
from runtimes.formats import find_artifact, format_of
from runtimes.formats.mlflow import COLUMN_DATATYPES, MLflowModelRefused, read_mlflow_model
from runtimes.sklearn import SklearnRuntime

IRIS_X, IRIS_Y = load_iris(return_X_y=True)
CANCER_X, CANCER_Y = load_breast_cancer(return_X_y=True)
DIABETES_X, DIABETES_Y = load_diabetes(return_X_y=True)


def load(folder: Path, **extra: Any) -> SklearnRuntime:
    settings = ModelSettings(
        name="m",
        implementation=SklearnRuntime,
        parameters=ModelParameters(uri=str(folder), version="1", extra=extra),
    )
    runtime = SklearnRuntime(settings)
    asyncio.run(runtime.load())
    return runtime


def infer(runtime: SklearnRuntime, rows: np.ndarray, output: str) -> np.ndarray:
    request = InferenceRequest.model_validate(
        {
            "inputs": [
                RequestInput(
                    name="input-0",
                    datatype="FP64",
                    shape=list(rows.shape),
                    data=rows.ravel().tolist(),
                )
            ],
            "outputs": [{"name": output}],
        }
    )
    (result,) = asyncio.run(runtime.predict(request)).outputs
    return np.asarray(result.data.root if hasattr(result.data, "root") else result.data).reshape(
        result.shape
    )


def saved(tmp_path: Path, name: str, save: Callable[[Path], None]) -> Path:
    folder = tmp_path / "1"
    folder.mkdir()
    save(folder / name)
    return folder


BOOSTERS = {
    "xgboost multiclass": (
        lambda: xgboost.XGBClassifier(n_estimators=8, max_depth=3, n_jobs=1).fit(IRIS_X, IRIS_Y),
        "model.json",
        IRIS_X,
    ),
    "xgboost binary ubj": (
        lambda: xgboost.XGBClassifier(n_estimators=8, n_jobs=1).fit(CANCER_X, CANCER_Y),
        "model.ubj",
        CANCER_X,
    ),
    "xgboost regressor": (
        lambda: xgboost.XGBRegressor(n_estimators=8, n_jobs=1).fit(DIABETES_X, DIABETES_Y),
        "model.json",
        DIABETES_X,
    ),
    "lightgbm multiclass": (
        lambda: lightgbm.LGBMClassifier(n_estimators=8, verbose=-1).fit(IRIS_X, IRIS_Y),
        "model.txt",
        IRIS_X,
    ),
    "lightgbm binary": (
        lambda: lightgbm.LGBMClassifier(n_estimators=8, verbose=-1).fit(CANCER_X, CANCER_Y),
        "model.txt",
        CANCER_X,
    ),
    "lightgbm regressor": (
        lambda: lightgbm.LGBMRegressor(n_estimators=8, verbose=-1).fit(DIABETES_X, DIABETES_Y),
        "model.txt",
        DIABETES_X,
    ),
}


def _save_booster(model: Any, path: Path) -> None:
    if isinstance(model, lightgbm.LGBMModel):
        model.booster_.save_model(str(path))
    else:
        model.save_model(path)


@pytest.mark.parametrize("backend", ["sklearn", "auto"])
@pytest.mark.parametrize("case", sorted(BOOSTERS))
def test_booster_answers_equal_the_library(tmp_path: Path, case: str, backend: str) -> None:
    train, filename, data = BOOSTERS[case]
    model = train()
    folder = saved(tmp_path, filename, lambda path: _save_booster(model, path))
    runtime = load(folder, inference_backend=backend)
    rows = data[:25]
    classifier = hasattr(model, "predict_proba")
    outputs = {o.name for o in runtime._settings.outputs}
    assert outputs == ({"predict", "predict_proba"} if classifier else {"predict"})
    assert [i.shape for i in runtime._settings.inputs] == [[-1, data.shape[1]]]
    library = "xgboost" if "xgboost" in case else "lightgbm"
    assert runtime.backend_parameters["format"] == library
    # XGBoost compiles through onnxmltools and verifies on split rows. LightGBM's graph
    # rounds its float64 thresholds to float32, so verification refuses it and the
    # booster answers, as it does with backend "sklearn".
    compiles = backend == "auto" and library == "xgboost"
    assert runtime.backend_parameters["inference_backend"] == ("onnx" if compiles else "sklearn")
    if backend == "auto" and library == "lightgbm":
        assert "rows on" in runtime.backend_parameters["verification"]
    predicted = infer(runtime, rows, "predict")
    if classifier:
        np.testing.assert_array_equal(predicted, model.predict(rows))
    else:
        np.testing.assert_allclose(predicted, model.predict(rows), rtol=1e-6, atol=1e-6)
    if classifier:
        np.testing.assert_allclose(
            infer(runtime, rows, "predict_proba"), model.predict_proba(rows), rtol=1e-6, atol=1e-6
        )


def test_xgboost_softmax_objective_offers_probabilities(tmp_path: Path) -> None:
    model = xgboost.XGBClassifier(n_estimators=5, objective="multi:softmax", n_jobs=1)
    model.fit(IRIS_X, IRIS_Y)
    folder = saved(tmp_path, "model.json", model.save_model)
    runtime = load(folder)
    np.testing.assert_array_equal(
        infer(runtime, IRIS_X[:30], "predict"), model.predict(IRIS_X[:30])
    )
    probabilities = infer(runtime, IRIS_X[:30], "predict_proba")
    np.testing.assert_allclose(probabilities.sum(axis=1), 1.0, rtol=1e-6)


def test_booster_feature_names_reach_the_metadata(tmp_path: Path) -> None:
    frame = load_iris(as_frame=True).data
    frame.columns = ["sl", "sw", "pl", "pw"]
    model = lightgbm.LGBMClassifier(n_estimators=3, verbose=-1).fit(frame, IRIS_Y)
    folder = saved(tmp_path, "model.txt", lambda p: model.booster_.save_model(str(p)))
    assert load(folder).backend_parameters["feature_names"] == "sl,sw,pl,pw"


def test_missing_library_names_the_extra(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    iris_lightgbm(tmp_path / "1")
    monkeypatch.setitem(sys.modules, "lightgbm", None)
    with pytest.raises(ModelLoadFailed, match=r"pip install 'v2serve\[lightgbm\]'"):
        load(tmp_path / "1")


def test_artifact_found_by_name_and_order(tmp_path: Path) -> None:
    assert find_artifact(tmp_path, None).name == "model.joblib"
    (tmp_path / "model.pkl").write_bytes(b"")
    assert find_artifact(tmp_path, None).name == "model.pkl"
    (tmp_path / "model.txt").write_text("")
    assert find_artifact(tmp_path, None).name == "model.txt"
    (tmp_path / "MLmodel").write_text("")
    assert find_artifact(tmp_path, None).name == "MLmodel"
    assert find_artifact(tmp_path, "model.pkl").name == "model.pkl"
    assert [format_of(Path(n)) for n in ("MLmodel", "a.ubj", "b.txt", "c.skops")] == [
        "mlflow",
        "xgboost",
        "lightgbm",
        "sklearn",
    ]


# MLflow ------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def mlflow_models(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Each MLflow example saved once; tests change copies."""
    root = tmp_path_factory.mktemp("mlflow")
    for writer in (iris_mlflow, iris_mlflow_array, wine_mlflow):
        write_version_folder(writer, root / writer.__name__)
    return root


@pytest.fixture
def mlflow_folder(
    mlflow_models: Path, tmp_path: Path
) -> Callable[[Path, Callable[[Path], None]], Path]:
    def copy(target: Path, writer: Callable[[Path], None]) -> Path:
        folder = target / "1"
        shutil.copytree(mlflow_models / writer.__name__, folder)
        return folder

    return copy


def saved_estimator(folder: Path) -> Any:
    import mlflow.sklearn

    return mlflow.sklearn.load_model(str(folder))


def test_mlflow_tensor_signature_plain_array(
    mlflow_folder: Callable[..., Path], tmp_path: Path
) -> None:
    folder = mlflow_folder(tmp_path, iris_mlflow_array)
    assert read_mlflow_model(folder).serialization_format == "cloudpickle"
    runtime = load(folder)
    assert [(i.name, i.datatype, i.shape) for i in runtime._settings.inputs] == [
        ("input-0", "FP64", [-1, 4])
    ]
    assert runtime.backend_parameters["format"] == "mlflow"
    expected = saved_estimator(folder).predict(IRIS_X[::7])
    np.testing.assert_array_equal(infer(runtime, IRIS_X[::7], "predict"), expected)
    # The signature types predict; the estimator's other methods are still offered.
    assert {o.name for o in runtime._settings.outputs} == {
        "predict",
        "predict_proba",
        "decision_function",
    }


def test_mlflow_column_signature_names_and_types(
    mlflow_folder: Callable[..., Path], tmp_path: Path
) -> None:
    folder = mlflow_folder(tmp_path, wine_mlflow)
    found = read_mlflow_model(folder)
    assert [(t.name, t.datatype) for t in found.inputs] == [
        ("alcohol", "FP64"),
        ("malic_acid", "FP64"),
        ("flavanoids", "FP64"),
        ("proline", "FP64"),
        ("colour", "BYTES"),
    ]
    assert found.serialization_format == "skops"
    runtime = load(folder)
    frame = wine_frame()[["alcohol", "malic_acid", "flavanoids", "proline", "colour"]]
    request = InferenceRequest.model_validate(
        {
            "inputs": [
                {
                    "name": column,
                    "datatype": "BYTES" if column == "colour" else "FP64",
                    "shape": [10],
                    "data": frame[column].head(10).tolist(),
                }
                for column in frame.columns
            ]
        }
    )
    (output,) = asyncio.run(runtime.predict(request)).outputs
    expected = saved_estimator(folder).predict(frame.head(10))
    np.testing.assert_array_equal(np.asarray(output.data.root), expected)


def test_mlflow_pipeline_with_spaced_column_names_compiles(
    mlflow_folder: Callable[..., Path], tmp_path: Path
) -> None:
    folder = mlflow_folder(tmp_path, iris_mlflow)
    # A scaler + logistic regression: the closed form by default, ONNX when asked for;
    # both map the spaced column names onto their inputs.
    assert load(folder).backend_parameters["inference_backend"] == "native"
    runtime = load(folder, inference_backend="onnx")
    assert runtime.backend_parameters["inference_backend"] == "onnx"
    names = [i.name for i in runtime._settings.inputs]
    assert names[0] == "sepal length (cm)"


def _rewrite_mlmodel(folder: Path, edit: Callable[[dict[str, Any]], None]) -> None:
    import yaml

    path = folder / "MLmodel"
    document = yaml.safe_load(path.read_text())
    edit(document)
    path.write_text(yaml.safe_dump(document))


def test_mlflow_signature_contradiction_fails_the_load(
    mlflow_folder: Callable[..., Path], tmp_path: Path
) -> None:
    folder = mlflow_folder(tmp_path, iris_mlflow_array)

    def wider(document: dict[str, Any]) -> None:
        spec = [{"type": "tensor", "tensor-spec": {"dtype": "float64", "shape": [-1, 5]}}]
        document["signature"]["inputs"] = json.dumps(spec)

    _rewrite_mlmodel(folder, wider)
    with pytest.raises(ModelLoadFailed, match=r"shape \[-1, 5\].*\[-1, 4\]"):
        load(folder)


class _Tripwire:
    """Unpickling this writes a file: proof that a pickle was executed."""

    def __init__(self, marker: Path):
        self.marker = marker

    def __reduce__(self) -> Any:
        return (Path.write_text, (self.marker, "executed"))


def test_custom_pyfunc_is_refused_and_never_executed(tmp_path: Path) -> None:
    folder = tmp_path / "1"
    folder.mkdir()
    marker = tmp_path / "marker"
    (folder / "python_model.pkl").write_bytes(pickle.dumps(_Tripwire(marker)))
    (folder / "MLmodel").write_text(
        "flavors:\n  python_function:\n    loader_module: mlflow.pyfunc.model\n"
        "    python_model: python_model.pkl\n"
    )
    with pytest.raises(ModelLoadFailed, match="only sklearn-flavored MLflow models"):
        load(folder)
    assert not marker.exists()
    with pytest.raises(MLflowModelRefused):
        read_mlflow_model(folder)


def test_pyfunc_flavor_pointing_at_sklearn_is_served(
    mlflow_folder: Callable[..., Path], tmp_path: Path
) -> None:
    folder = mlflow_folder(tmp_path, iris_mlflow_array)
    expected = saved_estimator(folder).predict(IRIS_X[:9])
    _rewrite_mlmodel(folder, lambda document: document["flavors"].pop("sklearn"))
    runtime = load(folder)
    np.testing.assert_array_equal(infer(runtime, IRIS_X[:9], "predict"), expected)


@pytest.mark.parametrize(
    ("policy", "outcome"), [("refuse_minor", "refused"), ("warn", "warning"), ("ignore", "")]
)
def test_mlflow_pinned_sklearn_version_meets_the_policy(
    mlflow_folder: Callable[..., Path], tmp_path: Path, policy: str, outcome: str
) -> None:
    folder = mlflow_folder(tmp_path, iris_mlflow_array)
    requirements = folder / "requirements.txt"
    requirements.write_text(
        requirements.read_text().replace("scikit-learn==", "scikit-learn==0.24.2 #")
    )
    if outcome == "refused":
        with pytest.raises(ModelLoadFailed, match="0.24.2"):
            load(folder, sklearn_version_policy=policy)
        return
    runtime = load(folder, sklearn_version_policy=policy)
    assert ("0.24.2" in runtime.load_warning) == (outcome == "warning")


def test_mlflow_sha256_pin_applies_to_the_flavor_artifact(
    mlflow_folder: Callable[..., Path], tmp_path: Path
) -> None:
    folder = mlflow_folder(tmp_path, iris_mlflow_array)
    with pytest.raises(ModelLoadFailed, match="sha256"):
        load(folder, sha256="0" * 64)
    import hashlib

    digest = hashlib.sha256((folder / "model.pkl").read_bytes()).hexdigest()
    assert load(folder, sha256=digest).backend_parameters["format"] == "mlflow"


def test_mlflow_input_example_that_fails_fails_the_load(
    mlflow_folder: Callable[..., Path], tmp_path: Path
) -> None:
    folder = mlflow_folder(tmp_path, iris_mlflow_array)
    (folder / "input_example.json").write_text(json.dumps([[1.0, 2.0, 3.0]]))
    with pytest.raises(ModelLoadFailed, match="input_example"):
        load(folder)


@pytest.mark.parametrize("kind", sorted(COLUMN_DATATYPES))
def test_every_mlflow_column_type_maps(
    mlflow_folder: Callable[..., Path], tmp_path: Path, kind: str
) -> None:
    folder = mlflow_folder(tmp_path, iris_mlflow_array)
    spec = [{"type": kind, "name": "x", "required": False}]
    _rewrite_mlmodel(folder, lambda document: document["signature"].update(inputs=json.dumps(spec)))
    found = read_mlflow_model(folder)
    assert [(t.name, t.datatype) for t in found.inputs] == [("x", COLUMN_DATATYPES[kind])]
    assert found.optional_inputs == ("x",)


def test_examples_write_whole_folders(tmp_path: Path) -> None:
    folder = tmp_path / "model" / "1"
    write_version_folder(iris_lightgbm, folder)
    assert sorted(p.name for p in folder.iterdir()) == ["model.txt"]
    assert [p.name for p in folder.parent.iterdir()] == ["1"]
    shutil.rmtree(folder)
