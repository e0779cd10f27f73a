"""The repository extension (index, load, unload), shared by REST and gRPC.

MLServer's index ignores versions (SeldonIO/MLServer#957) and reports states as
"State.READY" over gRPC; this one lists every version with a plain state and the reason.
"""

from pathlib import Path

from mlserver.handlers import ModelRepositoryHandlers
from mlserver.registry import MultiModelRegistry
from mlserver.types import (
    RepositoryIndexRequest,
    RepositoryIndexResponse,
    RepositoryIndexResponseItem,
)

from .errors import InvalidModelName
from .repository import VersionedRepository
from .repository.controller import RepositoryController
from .repository.layout import MAX_NAME_BYTES, ModelFolder, escapes, is_valid_model_name
from .repository.states import ModelStates, VersionState


def check_model_name(root: Path, name: str) -> None:
    """Reject names that could reach outside the repository: a 400, never a lookup."""
    if len(name.encode()) > MAX_NAME_BYTES:
        raise InvalidModelName(name, f"longer than {MAX_NAME_BYTES} bytes, the file-name limit")
    if not is_valid_model_name(name):
        raise InvalidModelName(name, "use letters, digits, '.', '_' and '-' only")
    candidate = root / name
    if candidate.is_symlink() and escapes(root, candidate):
        raise InvalidModelName(name, "it leads outside the repository")


def _item(name: str, version: str, state: str, reason: str) -> RepositoryIndexResponseItem:
    # model_construct keeps the state a plain string, which MLServer's gRPC converter
    # passes through with str(); the State enum would come out as "State.READY".
    return RepositoryIndexResponseItem.model_construct(
        name=name, version=version or None, state=state, reason=reason
    )


def not_loaded_reason(model: ModelFolder, held: bool) -> str:
    """Why a model folder has no version in the index: unloaded by request, or nothing in
    it to load (an empty folder keeps a strict server unready, so the index says why)."""
    if held:
        return "unloaded"
    if not model.versions and model.settings_file is None:
        return "not loaded: the folder has no model-settings.json and no version folder"
    return "not loaded"


class V2RepositoryHandlers(ModelRepositoryHandlers):
    def __init__(
        self,
        repository: VersionedRepository,
        model_registry: MultiModelRegistry,
        controller: RepositoryController,
        states: ModelStates,
    ):
        super().__init__(repository=repository, model_registry=model_registry)
        self.root = repository.root
        self.controller = controller
        self.states = states

    async def index(self, payload: RepositoryIndexRequest) -> RepositoryIndexResponse:
        items = [_item(s.model, s.version, s.state.value, s.reason) for s in self.states.all()]
        listed = {s.model for s in self.states.all()}
        for model in self.controller.repository.model_folders():
            if model.name not in listed:
                reason = not_loaded_reason(model, model.name in self.controller.held)
                items.append(_item(model.name, "", VersionState.UNAVAILABLE.value, reason))
        if payload.ready:
            items = [item for item in items if item.state == VersionState.READY.value]
        items.sort(key=lambda item: (item.name, int(item.version or 0)))
        return RepositoryIndexResponse.model_construct(root=items)

    async def load(self, name: str) -> bool:
        check_model_name(self.root, name)
        await self.controller.load_model(name)
        return True

    async def unload(self, name: str) -> bool:
        check_model_name(self.root, name)
        await self.controller.unload_model(name)
        return True
