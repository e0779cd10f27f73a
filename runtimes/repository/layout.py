"""Folder layout of a Triton-style repository: ``<repo>/<model>/<N>/``.

Pure functions over the file system, so they can be tested without a server.
"""

import logging
import os
import re
from dataclasses import dataclass, field
from pathlib import Path

logger = logging.getLogger("v2serve.repository")

MODEL_SETTINGS_FILENAME = "model-settings.json"
_VERSION_NAME = re.compile(r"^[1-9][0-9]*$")
_MODEL_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]*$")
MAX_NAME_BYTES = 255
"""A model name is a folder name: longer than a file name can be, it names nothing."""
_TEMPORARY_SUFFIXES = (".tmp", ".part", ".partial", ".swp", "~")

_warned: set[Path] = set()


def is_temporary(name: str) -> bool:
    """Names that editors, copy tools and atomic writers use while a file is incomplete."""
    return name.startswith((".", "~", "_tmp", "tmp")) or name.endswith(_TEMPORARY_SUFFIXES)


def is_valid_model_name(name: str) -> bool:
    return (
        bool(_MODEL_NAME.match(name)) and ".." not in name and len(name.encode()) <= MAX_NAME_BYTES
    )


@dataclass(frozen=True)
class ModelFolder:
    name: str
    path: Path
    versions: dict[int, Path] = field(default_factory=dict)
    root: Path | None = None
    """The repository root that every path of this model must stay inside."""

    @property
    def repository_root(self) -> Path:
        return self.root if self.root is not None else self.path.parent

    @property
    def settings_file(self) -> Path | None:
        candidate = self.path / MODEL_SETTINGS_FILENAME
        return candidate if candidate.is_file() else None


def _warn_once(path: Path, message: str) -> None:
    if path not in _warned:
        _warned.add(path)
        logger.warning(message)


def scan_model(path: Path, root: Path | None = None) -> ModelFolder:
    """Version folders are listed even when they lead outside ``root``: the repository
    index then shows them refused, with the reason (``containment``)."""
    versions: dict[int, Path] = {}
    for child in sorted(path.iterdir()):
        if is_temporary(child.name) or not child.is_dir():
            continue
        if _VERSION_NAME.match(child.name):
            versions[int(child.name)] = child
        else:
            _warn_once(child, f"ignoring '{child}': version folders are positive integers")
    return ModelFolder(name=path.name, path=path, versions=versions, root=root)


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
        models.append(scan_model(child, root))
    return models


Fingerprint = tuple[tuple[str, int, int], ...]


def fingerprint(path: Path, root: Path | None = None) -> Fingerprint:
    """(relative path, size, mtime) of every file under ``path``: any write changes it.

    Symlinked folders inside are not descended into, and a ``path`` that leads outside
    ``root`` is not walked at all (only its link is fingerprinted): a version folder
    symlinked to ``/usr`` must not stall the scan.
    """
    if root is not None and escapes(root, path):
        try:
            link = path.lstat()
        except OSError:
            return ()
        return ((".", link.st_size, link.st_mtime_ns),)
    entries = []
    for folder, dirs, files in os.walk(path, followlinks=False):
        dirs[:] = [d for d in dirs if not is_temporary(d)]
        base = Path(folder)
        relative_folder = base.relative_to(path)
        for name in sorted(files):
            if is_temporary(name):
                continue
            child = base / name
            try:
                stat = child.stat()
            except OSError:
                continue  # removed while scanning: the next scan sees the change
            entries.append((str(relative_folder / name), stat.st_size, stat.st_mtime_ns))
    return tuple(sorted(entries))


def escapes(root: Path, path: Path) -> bool:
    """A symlink (or ``..``) that leads outside the repository root."""
    try:
        path.resolve().relative_to(root.resolve())
    except ValueError:
        return True
    return False
