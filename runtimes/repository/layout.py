"""Folder layout of a Triton-style repository: ``<repo>/<model>/<N>/``.

Pure functions over the file system, so they can be tested without a server.
"""

import logging
import re
from dataclasses import dataclass, field
from pathlib import Path

logger = logging.getLogger("v2serve.repository")

MODEL_SETTINGS_FILENAME = "model-settings.json"
_VERSION_NAME = re.compile(r"^[1-9][0-9]*$")
_MODEL_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]*$")
_TEMPORARY_SUFFIXES = (".tmp", ".part", ".partial", ".swp", "~")

_warned: set[Path] = set()


def is_temporary(name: str) -> bool:
    """Names that editors, copy tools and atomic writers use while a file is incomplete."""
    return name.startswith((".", "~", "_tmp", "tmp")) or name.endswith(_TEMPORARY_SUFFIXES)


def is_valid_model_name(name: str) -> bool:
    return bool(_MODEL_NAME.match(name)) and ".." not in name


@dataclass(frozen=True)
class ModelFolder:
    name: str
    path: Path
    versions: dict[int, Path] = field(default_factory=dict)

    @property
    def settings_file(self) -> Path | None:
        candidate = self.path / MODEL_SETTINGS_FILENAME
        return candidate if candidate.is_file() else None


def _warn_once(path: Path, message: str) -> None:
    if path not in _warned:
        _warned.add(path)
        logger.warning(message)


def scan_model(path: Path) -> ModelFolder:
    versions: dict[int, Path] = {}
    for child in sorted(path.iterdir()):
        if is_temporary(child.name) or not child.is_dir():
            continue
        if _VERSION_NAME.match(child.name):
            versions[int(child.name)] = child
        else:
            _warn_once(child, f"ignoring '{child}': version folders are positive integers")
    return ModelFolder(name=path.name, path=path, versions=versions)


def scan_repository(root: Path) -> list[ModelFolder]:
    """Every model folder under ``root``; other entries are ignored."""
    if not root.is_dir():
        return []
    models = []
    for child in sorted(root.iterdir()):
        if is_temporary(child.name) or not child.is_dir():
            continue
        if not is_valid_model_name(child.name):
            _warn_once(child, f"ignoring '{child}': not a valid model name")
            continue
        if escapes(root, child):
            _warn_once(child, f"ignoring '{child}': it leads outside the repository")
            continue
        models.append(scan_model(child))
    return models


Fingerprint = tuple[tuple[str, int, int], ...]


def fingerprint(path: Path) -> Fingerprint:
    """(relative path, size, mtime) of every file under ``path``: any write changes it."""
    entries = []
    for child in sorted(path.rglob("*")):
        relative = child.relative_to(path)
        if any(is_temporary(part) for part in relative.parts):
            continue
        try:
            stat = child.stat()
        except OSError:
            continue  # removed while scanning: the next scan sees the change
        if child.is_file():
            entries.append((str(relative), stat.st_size, stat.st_mtime_ns))
    return tuple(entries)


def escapes(root: Path, path: Path) -> bool:
    """A symlink (or ``..``) that leads outside the repository root."""
    try:
        path.resolve().relative_to(root.resolve())
    except ValueError:
        return True
    return False
