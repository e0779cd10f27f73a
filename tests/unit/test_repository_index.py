"""The index's reason for a model folder with no version listed (runtimes.repository_api)."""

from pathlib import Path

from runtimes.repository.layout import ModelFolder
from runtimes.repository_api import not_loaded_reason


def test_an_empty_folder_says_there_is_nothing_to_load(tmp_path: Path) -> None:
    empty = ModelFolder("empty", tmp_path / "empty")
    empty.path.mkdir()
    assert not_loaded_reason(empty, held=False) == (
        "not loaded: the folder has no model-settings.json and no version folder"
    )


def test_a_folder_with_settings_or_versions_is_only_not_loaded(tmp_path: Path) -> None:
    with_settings = ModelFolder("a", tmp_path / "a")
    with_settings.path.mkdir()
    (with_settings.path / "model-settings.json").write_text("{}")
    with_versions = ModelFolder("b", tmp_path / "b", versions={1: tmp_path / "b" / "1"})
    assert not_loaded_reason(with_settings, held=False) == "not loaded"
    assert not_loaded_reason(with_versions, held=False) == "not loaded"


def test_an_unloaded_model_says_so_whatever_its_folder_holds(tmp_path: Path) -> None:
    assert not_loaded_reason(ModelFolder("c", tmp_path / "c"), held=True) == "unloaded"
