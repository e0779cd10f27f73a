"""Every path a model's layout or settings name stays inside the repository root.

The layout names the model folder, each version folder and its ``model-settings.json``;
the settings name ``parameters.uri`` and ``parameters.extra.artifact``; the compiled path
reads ``sample.npy`` / ``sample.csv`` next to the artifact. Each is resolved (symlinks and
``..`` followed) and refused when it lands outside the root, before the runtime is asked
to load anything. An absolute ``uri`` or ``artifact`` is refused outright: a repository
must mean the same wherever it is mounted.

Messages name paths relative to the root (or as the settings wrote them), never the
server's absolute paths.
"""

from pathlib import Path, PurePosixPath
from typing import Any

from ..errors import OutsideRepository

ARTIFACT_CANDIDATES = ("model.joblib", "model.skops", "model.pkl")
SAMPLE_FILES = ("sample.npy", "sample.csv")
DEFAULT_ARTIFACT = "model.joblib"


def inside(root: Path, path: Path) -> bool:
    try:
        path.resolve().relative_to(root.resolve())
    except (ValueError, OSError, RuntimeError):  # RuntimeError: a symlink loop
        return False
    return True


def shown(root: Path, path: Path) -> str:
    """``path`` as a client may see it: relative to the root."""
    try:
        return str(path.relative_to(root)) or "."
    except ValueError:
        return path.name


class Containment:
    def __init__(self, root: Path, model: str, version: str | None):
        self.root = root
        self.model = model
        self.version = version

    def require(self, path: Path, what: str) -> Path:
        if not inside(self.root, path):
            raise OutsideRepository(self.model, self.version, what, "leads outside the repository")
        return path

    def declared(self, base: Path, value: str, key: str) -> Path:
        """A path the settings declare, relative to ``base``."""
        if PurePosixPath(value).is_absolute() or Path(value).is_absolute():
            raise OutsideRepository(
                self.model,
                self.version,
                key,
                "is an absolute path; name a path relative to the version folder",
            )
        return self.require(base / value, f"{key} '{value}'")


def check_settings_file(root: Path, model: str, version: str | None, path: Path) -> None:
    Containment(root, model, version).require(path, f"settings file '{shown(root, path)}'")


def check_version(
    root: Path, model: str, version: str, version_path: Path, parameters: dict[str, Any]
) -> Path:
    """Check what one version's settings name; returns the version's ``uri``."""
    contain = Containment(root, model, version)
    contain.require(version_path, f"version folder '{shown(root, version_path)}'")
    declared_uri = parameters.get("uri")
    uri = (
        contain.declared(version_path, declared_uri, "parameters.uri")
        if isinstance(declared_uri, str) and declared_uri
        else version_path
    )
    folder = uri if uri.is_dir() or not uri.exists() else uri.parent
    extra = parameters.get("extra")
    artifact = extra.get("artifact") if isinstance(extra, dict) else None
    if isinstance(artifact, str) and artifact:
        contain.declared(folder, artifact, "parameters.extra.artifact")
    for name in (*ARTIFACT_CANDIDATES, *SAMPLE_FILES):
        for base in {folder, version_path}:
            candidate = base / name
            if candidate.exists() or candidate.is_symlink():
                contain.require(candidate, f"'{shown(root, candidate)}'")
    return uri
