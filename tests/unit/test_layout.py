"""Folder parsing of the Triton layout and the settings built from it."""

import json
import logging

import pytest

from runtimes.errors import SettingsError
from runtimes.repository.layout import scan_repository
from runtimes.repository.repository import VersionedRepository


def _touch(path):
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(b"")


def test_scan_finds_integer_versions_and_ignores_the_rest(tmp_path, caplog):
    for rel in [
        "m/1/model.joblib",
        "m/10/model.joblib",
        "m/2/model.joblib",
        "m/v3/model.joblib",
        "m/0/model.joblib",
        "m/.4/model.joblib",
        "m/5.tmp/model.joblib",
        ".hidden/1/model.joblib",
        "other/1/model.joblib",
    ]:
        _touch(tmp_path / rel)
    (tmp_path / "README").write_text("not a model")
    with caplog.at_level(logging.WARNING, logger="v2serve.repository"):
        models = {m.name: m for m in scan_repository(tmp_path)}
    assert set(models) == {"m", "other"}
    assert sorted(models["m"].versions) == [1, 2, 10]
    warned = caplog.text
    assert "v3" in warned and "'" in warned
    assert ".4" not in warned and "5.tmp" not in warned and ".hidden" not in warned


def test_settings_take_names_from_folders(tmp_path):
    _touch(tmp_path / "iris" / "1" / "model.joblib")
    _touch(tmp_path / "iris" / "2" / "model.joblib")
    (tmp_path / "iris" / "model-settings.json").write_text(
        json.dumps({"name": "wrong", "parameters": {"extra": {"version_policy": {"all": {}}}}})
    )
    (tmp_path / "iris" / "2" / "model-settings.json").write_text(
        json.dumps({"parameters": {"extra": {"allow_nan": True}}})
    )
    repository = VersionedRepository(str(tmp_path))
    [model] = repository.model_folders()
    settings = repository.settings_for(model)
    assert [(s.name, s.version) for s in settings] == [("iris", "1"), ("iris", "2")]
    assert settings[0].parameters.uri == str(tmp_path / "iris" / "1")
    assert settings[1].parameters.extra["allow_nan"] is True
    assert settings[1].parameters.extra["version_policy"] == {"all": {}}
    assert settings[0].implementation_ == "runtimes.sklearn.SklearnRuntime"


def test_default_policy_serves_the_latest(tmp_path):
    for v in (1, 2, 3):
        _touch(tmp_path / "m" / str(v) / "model.joblib")
    repository = VersionedRepository(str(tmp_path))
    [model] = repository.model_folders()
    assert [s.version for s in repository.settings_for(model)] == ["3"]


def test_bad_settings_name_the_key(tmp_path):
    _touch(tmp_path / "m" / "1" / "model.joblib")
    (tmp_path / "m" / "model-settings.json").write_text(json.dumps({"max_batch_sise": 3}))
    repository = VersionedRepository(str(tmp_path))
    [model] = repository.model_folders()
    with pytest.raises(SettingsError, match="max_batch_sise"):
        repository.settings_for(model)


def test_fingerprint_changes_with_any_write_and_skips_temporaries(tmp_path):
    from runtimes.repository.layout import fingerprint

    (tmp_path / "model.joblib").write_bytes(b"a")
    before = fingerprint(tmp_path)
    (tmp_path / ".model.joblib.tmp").write_bytes(b"partial")
    assert fingerprint(tmp_path) == before
    (tmp_path / "model.joblib").write_bytes(b"ab")
    assert fingerprint(tmp_path) != before


def test_symlinked_model_that_escapes_is_ignored(tmp_path):
    outside = tmp_path / "outside"
    _touch(outside / "1" / "model.joblib")
    root = tmp_path / "repo"
    root.mkdir()
    (root / "sneaky").symlink_to(outside)
    _touch(root / "fine" / "1" / "model.joblib")
    assert [m.name for m in scan_repository(root)] == ["fine"]
