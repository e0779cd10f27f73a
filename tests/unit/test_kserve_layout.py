"""KServe's layouts of /mnt/models, and the settings each one yields."""

import asyncio
import json

import pytest

from runtimes.errors import SettingsError
from runtimes.repository.kserve import (
    Layout,
    detect_layout,
    injected_model_name,
    single_model_folder,
)
from runtimes.repository.repository import VersionedRepository


def _touch(path):
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(b"")


@pytest.mark.parametrize(
    ("files", "layout"),
    [
        (["iris/1/model.joblib", "iris/2/model.joblib", "diabetes/1/model.joblib"], "repository"),
        (["iris/model-settings.json", "iris/1/model.joblib"], "repository"),
        (["1/model.joblib", "3/model.joblib"], "versioned-model"),
        (["model-settings.json", "2/model.joblib", "lost+found/x"], "versioned-model"),
        (["model.joblib"], "single-artifact"),
        (["model-settings.json", "estimator.joblib"], "single-artifact"),
        (["model.joblib.tmp", "iris/1/model.joblib"], "repository"),
        ([".1/model.joblib", "iris/1/model.joblib"], "repository"),
        ([], "repository"),
    ],
)
def test_layout_is_detected_from_the_root(tmp_path, files, layout):
    for rel in files:
        _touch(tmp_path / rel)
    assert detect_layout(tmp_path) is Layout(layout)


def test_a_missing_root_is_an_empty_repository(tmp_path):
    assert detect_layout(tmp_path / "absent") is Layout.REPOSITORY
    assert single_model_folder(tmp_path / "absent", "iris") is None


def test_versioned_model_is_named_by_the_injected_name(tmp_path):
    for rel in ["1/model.joblib", "10/model.joblib", "2/model.joblib"]:
        _touch(tmp_path / rel)
    folder = single_model_folder(tmp_path, "sklearn-iris")
    assert folder is not None
    assert folder.name == "sklearn-iris"
    assert sorted(folder.versions) == [1, 2, 10]
    assert folder.versions[10] == tmp_path / "10"


def test_single_artifact_is_version_one_at_the_root(tmp_path):
    _touch(tmp_path / "model.joblib")
    folder = single_model_folder(tmp_path, "sklearn-iris")
    assert folder is not None
    assert (folder.name, folder.versions) == ("sklearn-iris", {1: tmp_path})


def test_without_an_injected_name_the_folder_name_is_used(tmp_path):
    root = tmp_path / "models"
    _touch(root / "model.joblib")
    folder = single_model_folder(root, None)
    assert folder is not None and folder.name == "models"


def test_a_repository_root_is_left_to_the_triton_layout(tmp_path):
    _touch(tmp_path / "iris" / "1" / "model.joblib")
    assert single_model_folder(tmp_path, "sklearn-iris") is None


@pytest.mark.parametrize(
    ("environ", "expected"),
    [({}, None), ({"MLSERVER_MODEL_NAME": ""}, None), ({"MLSERVER_MODEL_NAME": "iris"}, "iris")],
)
def test_injected_name(environ, expected):
    assert injected_model_name(environ) == expected


def test_an_invalid_injected_name_is_rejected_by_name():
    with pytest.raises(SettingsError, match="MLSERVER_MODEL_NAME") as raised:
        injected_model_name({"MLSERVER_MODEL_NAME": "../etc"})
    assert "../etc" in str(raised.value)


# KServe injects these for MLServer-typed runtimes; MLServer's ModelSettings reads them too.
KSERVE_ENV = {"MLSERVER_MODEL_NAME": "sklearn-iris", "MLSERVER_MODEL_URI": "/mnt/models"}


@pytest.fixture
def kserve_env(monkeypatch):
    for key, value in KSERVE_ENV.items():
        monkeypatch.setenv(key, value)


def _served(repository):
    return [
        (s.name, s.version, s.parameters.uri)
        for model in repository.model_folders()
        for s in repository.settings_for(model)
    ]


def test_versioned_mount_serves_each_version_from_its_own_folder(tmp_path, kserve_env):
    for rel in ["1/model.joblib", "2/model.joblib"]:
        _touch(tmp_path / rel)
    (tmp_path / "model-settings.json").write_text(
        json.dumps({"parameters": {"extra": {"version_policy": {"all": {}}}}})
    )
    served = _served(VersionedRepository(str(tmp_path)))
    assert served == [
        ("sklearn-iris", "1", str(tmp_path / "1")),
        ("sklearn-iris", "2", str(tmp_path / "2")),
    ]


def test_single_artifact_mount_is_served_as_version_one(tmp_path, kserve_env):
    _touch(tmp_path / "model.joblib")
    assert _served(VersionedRepository(str(tmp_path))) == [("sklearn-iris", "1", str(tmp_path))]


def test_single_artifact_settings_at_the_root_apply(tmp_path, kserve_env):
    _touch(tmp_path / "estimator.joblib")
    (tmp_path / "model-settings.json").write_text(
        json.dumps({"parameters": {"extra": {"artifact": "estimator.joblib"}}})
    )
    repository = VersionedRepository(str(tmp_path))
    [model] = repository.model_folders()
    [settings] = repository.settings_for(model)
    assert settings.parameters.extra["artifact"] == "estimator.joblib"
    assert settings.parameters.uri == str(tmp_path)


def test_repository_mount_keeps_folder_names_despite_the_injected_name(tmp_path, kserve_env):
    _touch(tmp_path / "iris" / "1" / "model.joblib")
    _touch(tmp_path / "diabetes" / "1" / "model.joblib")
    served = _served(VersionedRepository(str(tmp_path)))
    assert served == [
        ("diabetes", "1", str(tmp_path / "diabetes" / "1")),
        ("iris", "1", str(tmp_path / "iris" / "1")),
    ]


def test_find_uses_the_injected_name(tmp_path, kserve_env):
    _touch(tmp_path / "3" / "model.joblib")
    repository = VersionedRepository(str(tmp_path))
    [settings] = asyncio.run(repository.find("sklearn-iris"))
    assert (settings.version, settings.parameters.uri) == ("3", str(tmp_path / "3"))
