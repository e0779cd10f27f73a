"""KServe's single-model layouts of the mount at ``/mnt/models``.

KServe's storage initializer copies a ``storageUri`` into ``/mnt/models`` and an
MLServer-typed runtime gets ``MLSERVER_MODEL_NAME`` (the InferenceService's name). What
lands there is one of:

- a v2serve repository, ``<model>/<N>/model.joblib``: served as it is, by folder names;
- one model's folder, ``<N>/model.joblib`` (and maybe ``model-settings.json``): served
  under the injected name, versions from the integer folders;
- one artifact, ``model.joblib`` (and maybe ``model-settings.json``): served under the
  injected name as version 1.

Pure functions over the file system, so they can be tested without a server.
"""

import logging
from collections.abc import Mapping
from enum import StrEnum
from pathlib import Path

from ..errors import SettingsError
from ..formats import ARTIFACT_NAMES
from .layout import (
    _VERSION_NAME,
    MODEL_SETTINGS_FILENAME,
    ModelFolder,
    is_temporary,
    is_valid_model_name,
    scan_model,
)

logger = logging.getLogger("v2serve.repository")

MODEL_NAME_VARIABLE = "MLSERVER_MODEL_NAME"
UNVERSIONED_VERSION = 1


class Layout(StrEnum):
    REPOSITORY = "repository"
    VERSIONED_MODEL = "versioned-model"
    SINGLE_ARTIFACT = "single-artifact"


def detect_layout(root: Path) -> Layout:
    """Integer folders at the root make it one model; an artifact or settings file too.

    A repository root never holds ``model-settings.json`` or ``model.joblib`` itself, and
    its children are named after models, which are not integers in practice.
    """
    if not root.is_dir():
        return Layout.REPOSITORY
    children = [c for c in root.iterdir() if not is_temporary(c.name)]
    if any(c.is_dir() and _VERSION_NAME.match(c.name) for c in children):
        return Layout.VERSIONED_MODEL
    artifacts = (*ARTIFACT_NAMES, MODEL_SETTINGS_FILENAME)
    if any((root / name).is_file() for name in artifacts):
        return Layout.SINGLE_ARTIFACT
    return Layout.REPOSITORY


def injected_model_name(environ: Mapping[str, str]) -> str | None:
    """The name KServe gives a single model; checked once, at start-up."""
    name = environ.get(MODEL_NAME_VARIABLE, "").strip()
    if not name:
        return None
    if not is_valid_model_name(name):
        raise SettingsError(MODEL_NAME_VARIABLE, f"'{name}' is not a valid model name")
    return name


def single_model_folder(root: Path, model_name: str | None) -> ModelFolder | None:
    """``root`` as one model, or None when it is a repository of models."""
    layout = detect_layout(root)
    if layout is Layout.REPOSITORY:
        return None
    name = model_name or root.name
    if layout is Layout.VERSIONED_MODEL:
        folder = scan_model(root, root)
        return ModelFolder(name=name, path=root, versions=folder.versions, root=root)
    return ModelFolder(name=name, path=root, versions={UNVERSIONED_VERSION: root}, root=root)
