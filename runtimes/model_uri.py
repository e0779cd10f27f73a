"""Where a model's artifact is: ``parameters.uri`` resolved the way MLServer resolves it.

MLServer's rule (``mlserver.utils.get_model_uri``, which its own sklearn runtime uses):

- a relative uri is relative to the folder of the ``model-settings.json`` it was read
  from; settings built in code or from the environment (KServe's ``MLSERVER_MODEL_URI``)
  have no file, and their relative uri is relative to the working directory;
- a uri that names a file is the artifact;
- a uri that names a folder is searched for the well-known artifact names (here
  ``runtimes.formats.ARTIFACT_NAMES``, in that order), unless ``parameters.extra.artifact``
  names one inside it;
- a uri that is neither is an error.

``mlserver start`` fills a missing uri with the settings file's own folder.
v2serve's server hands the runtime an absolute uri that its repository has already
resolved and contained (``runtimes.repository.containment``), so both hosts go through
this one function. Only local files are read: another scheme (``s3://``, ``gs://``) is
refused with a message, as KServe's storage initializer downloads to a local folder first.
"""

import urllib.parse
from pathlib import Path

from mlserver.settings import ModelSettings
from mlserver.utils import to_absolute_path

from .errors import SettingsError
from .formats import ARTIFACT_NAMES, find_artifact


def _source(settings: ModelSettings) -> str:
    return f"model '{settings.name}'"


def model_path(settings: ModelSettings) -> Path:
    """The file or folder that ``parameters.uri`` names, made absolute as MLServer does."""
    uri = settings.parameters.uri if settings.parameters else None
    if not uri:
        raise SettingsError(
            _source(settings), "parameters.uri is not set; name the artifact or its folder"
        )
    parsed = urllib.parse.urlparse(uri, scheme="file")
    if parsed.scheme != "file":
        raise SettingsError(
            _source(settings),
            f"parameters.uri '{uri}' is not a local path; v2serve reads artifacts from local files",
        )
    return Path(to_absolute_path(settings, parsed.path)).absolute()


def resolve_artifact(settings: ModelSettings, named: str | None) -> Path:
    """The artifact to load: the file the uri names, or the one found in its folder.

    ``named`` is ``parameters.extra.artifact``, relative to the uri's folder. A uri that
    names a file and an ``artifact`` as well is refused: the two would disagree."""
    path = model_path(settings)
    if path.is_file():
        if named is not None:
            raise SettingsError(
                _source(settings),
                f"parameters.uri names the file '{path.name}' and parameters.extra.artifact names "
                f"'{named}'; name the artifact in one of them",
            )
        return path
    if path.is_dir():
        return find_artifact(path, named)
    raise SettingsError(
        _source(settings),
        f"parameters.uri '{settings.parameters.uri if settings.parameters else ''}' "
        f"resolves to {path}, "
        f"which is neither a file nor a folder (a folder holds one of {', '.join(ARTIFACT_NAMES)})",
    )
