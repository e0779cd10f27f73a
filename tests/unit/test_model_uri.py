"""parameters.uri resolved as MLServer 1.7.1's get_model_uri does, for our artifact names."""

import json
from pathlib import Path

import pytest
from mlserver.settings import ModelParameters, ModelSettings

from runtimes.errors import SettingsError
from runtimes.formats import ARTIFACT_NAMES
from runtimes.model_uri import model_path, resolve_artifact

IMPLEMENTATION = "runtimes.sklearn.SklearnRuntime"


def settings_file(folder: Path, **parameters: str) -> ModelSettings:
    """Settings read from a model-settings.json, as ``mlserver start`` reads them."""
    path = folder / "model-settings.json"
    path.write_text(
        json.dumps({"name": "m", "implementation": IMPLEMENTATION, "parameters": parameters})
    )
    return ModelSettings.parse_file(str(path))


def in_code(uri: str | None) -> ModelSettings:
    return ModelSettings(
        name="m", implementation=IMPLEMENTATION, parameters=ModelParameters(uri=uri)
    )


@pytest.fixture
def folder(tmp_path: Path) -> Path:
    model = tmp_path / "models" / "m"
    model.mkdir(parents=True)
    (model / "model.joblib").write_bytes(b"x")
    return model


@pytest.mark.parametrize("uri", ["./", ".", "./model.joblib", "model.joblib"])
def test_relative_to_the_settings_file_not_the_working_directory(
    folder, tmp_path, uri, monkeypatch
):
    elsewhere = tmp_path / "cwd"
    elsewhere.mkdir()
    monkeypatch.chdir(elsewhere)
    assert resolve_artifact(settings_file(folder, uri=uri), None) == folder / "model.joblib"


def test_a_folder_uri_in_a_parent(folder):
    (folder / "sub").mkdir()
    found = resolve_artifact(settings_file(folder / "sub", uri="../"), None)
    assert found == folder / "model.joblib"


def test_absolute_uri_as_given(folder, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    assert resolve_artifact(in_code(str(folder)), None) == folder / "model.joblib"
    assert resolve_artifact(in_code(f"file://{folder}/model.joblib"), None) == (
        folder / "model.joblib"
    )


def test_settings_without_a_file_are_relative_to_the_working_directory(folder, monkeypatch):
    monkeypatch.chdir(folder.parent)
    assert resolve_artifact(in_code("m"), None) == folder / "model.joblib"


@pytest.mark.parametrize("name", ARTIFACT_NAMES)
def test_each_known_name_is_found_in_a_folder(tmp_path, name):
    (tmp_path / name).write_text("x")
    assert resolve_artifact(settings_file(tmp_path, uri="./"), None) == tmp_path / name


def test_the_first_known_name_wins(tmp_path):
    for name in ("model.pkl", "model.skops"):
        (tmp_path / name).write_text("x")
    assert resolve_artifact(settings_file(tmp_path, uri="./"), None).name == "model.skops"


def test_the_named_artifact_is_relative_to_the_uri_folder(folder):
    (folder / "sub").mkdir()
    (folder / "sub" / "other.pkl").write_bytes(b"x")
    settings = settings_file(folder, uri="./sub")
    assert resolve_artifact(settings, "other.pkl") == folder / "sub" / "other.pkl"


def test_a_file_uri_and_a_named_artifact_disagree(folder):
    with pytest.raises(SettingsError, match="name the artifact in one of them"):
        resolve_artifact(settings_file(folder, uri="./model.joblib"), "model.pkl")


def test_an_empty_folder_names_the_default_artifact(tmp_path):
    found = resolve_artifact(settings_file(tmp_path, uri="./"), None)
    assert found == tmp_path / "model.joblib"
    assert not found.exists()


def test_a_missing_path_is_refused_naming_it(folder):
    with pytest.raises(SettingsError, match=r"'\./nope\.joblib' resolves to .*nope\.joblib"):
        resolve_artifact(settings_file(folder, uri="./nope.joblib"), None)


@pytest.mark.parametrize("uri", [None, ""])
def test_no_uri_is_refused(uri):
    with pytest.raises(SettingsError, match="parameters.uri is not set"):
        model_path(in_code(uri))


def test_a_remote_uri_is_refused():
    with pytest.raises(SettingsError, match="'s3://bucket/m' is not a local path"):
        model_path(in_code("s3://bucket/m"))
