"""MLServer ``ModelRepository`` over the Triton layout.

Names come from folders and versions from integer sub-folders, never from MLServer's
glob of ``model-settings.json`` (which turns a folder ``2/`` into a model called "2").
"""

from __future__ import annotations

import builtins
import logging
import os
from pathlib import Path
from typing import Any

from mlserver.repository import ModelRepository
from mlserver.settings import ModelSettings

from ..errors import ModelLoadFailed, ModelUnavailable, SettingsError
from ..settings import (
    DEFAULT_RUNTIME,
    VersionPolicy,
    parse_model_extra,
    parse_model_settings,
    read_json_object,
)
from .containment import check_settings_file, check_version
from .kserve import injected_model_name, single_model_folder
from .layout import MODEL_SETTINGS_FILENAME, ModelFolder, is_valid_model_name, scan_repository

logger = logging.getLogger("v2serve.repository")


def _merge(base: dict[str, Any], override: dict[str, Any]) -> dict[str, Any]:
    merged = dict(base)
    for key, value in override.items():
        if isinstance(value, dict) and isinstance(merged.get(key), dict):
            merged[key] = _merge(merged[key], value)
        else:
            merged[key] = value
    return merged


def model_values(model: ModelFolder) -> dict[str, Any]:
    settings_file = model.settings_file
    if settings_file is None:
        return {}
    check_settings_file(model.repository_root, model.name, None, settings_file)
    return read_json_object(settings_file)


def version_settings(
    model: ModelFolder, version: int, shared_values: dict[str, Any]
) -> ModelSettings:
    """Settings for one version: the model's file, overridden by the version's own.

    Raises ``OutsideRepository`` when a path they name leaves the repository root.
    """
    root = model.repository_root
    version_path = model.versions[version]
    values = dict(shared_values)
    version_file = version_path / MODEL_SETTINGS_FILENAME
    source = str(model.settings_file or model.path)
    check_version(root, model.name, str(version), version_path, {})
    if version_file.is_file():
        check_settings_file(root, model.name, str(version), version_file)
        values = _merge(values, read_json_object(version_file))
        source = str(version_file)
    declared_name = values.get("name")
    if declared_name and declared_name != model.name:
        logger.warning(
            "%s names the model '%s'; serving it as '%s', its folder name",
            source,
            declared_name,
            model.name,
        )
    parameters = dict(values.get("parameters") or {})
    parameters["version"] = str(version)
    # KServe injects MLSERVER_MODEL_URI for the mount root; a version's own folder wins
    # unless its settings name a uri relative to it.
    parameters["uri"] = str(check_version(root, model.name, str(version), version_path, parameters))
    values = {
        **values,
        "name": model.name,
        "implementation": values.get("implementation", DEFAULT_RUNTIME),
        "parameters": parameters,
    }
    return parse_model_settings(values, source)


def version_policy(model: ModelFolder, shared_values: dict[str, Any]) -> VersionPolicy:
    extra = (shared_values.get("parameters") or {}).get("extra")
    return parse_model_extra(extra, str(model.settings_file or model.path)).version_policy


class VersionedRepository(ModelRepository):
    def __init__(self, root: str, **_: Any):
        self.root = Path(root).resolve()
        # Read once at start-up: KServe names a single model mounted at the root.
        self.single_model_name = injected_model_name(os.environ)

    def model_folders(self) -> list[ModelFolder]:
        single = single_model_folder(self.root, self.single_model_name)
        return [single] if single is not None else scan_repository(self.root)

    def settings_for(self, model: ModelFolder) -> list[ModelSettings]:
        values = model_values(model)
        versions = version_policy(model, values).select(model.versions)
        return [version_settings(model, v, values) for v in versions]

    async def list(self) -> list[ModelSettings]:
        found: list[ModelSettings] = []
        for model in self.model_folders():
            try:
                found.extend(self.settings_for(model))
            except (SettingsError, ModelLoadFailed) as exc:
                logger.error("skipping model '%s': %s", model.name, exc)
        return found

    async def find(self, name: str) -> builtins.list[ModelSettings]:
        if not is_valid_model_name(name):
            raise ModelUnavailable(name)
        for model in self.model_folders():
            if model.name == name:
                return self.settings_for(model)
        raise ModelUnavailable(name)
