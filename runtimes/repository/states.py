"""What happened to each model version: loading, ready, unavailable, and why.

Feeds the repository index and readiness; MLServer's registry forgets a version that
failed to load, so the reason would otherwise be lost.
"""

from dataclasses import dataclass
from enum import StrEnum


class VersionState(StrEnum):
    LOADING = "LOADING"
    READY = "READY"
    UNLOADING = "UNLOADING"
    UNAVAILABLE = "UNAVAILABLE"


@dataclass
class VersionStatus:
    model: str
    version: str
    state: VersionState
    reason: str = ""


class ModelStates:
    def __init__(self) -> None:
        self._statuses: dict[tuple[str, str], VersionStatus] = {}
        self.expected_models: set[str] = set()

    def set(self, model: str, version: str, state: VersionState, reason: str = "") -> None:
        self._statuses[(model, version)] = VersionStatus(model, version, state, reason)

    def forget(self, model: str, version: str) -> None:
        self._statuses.pop((model, version), None)

    def of_model(self, model: str) -> list[VersionStatus]:
        return [s for (name, _), s in sorted(self._statuses.items()) if name == model]

    def all(self) -> list[VersionStatus]:
        return [self._statuses[key] for key in sorted(self._statuses)]

    def has_version_ready(self, model: str, version: str) -> bool:
        status = self._statuses.get((model, version))
        return status is not None and status.state is VersionState.READY

    def has_ready_version(self, model: str) -> bool:
        return any(s.state is VersionState.READY for s in self.of_model(model))
