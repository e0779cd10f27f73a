"""Additions to MLServer's DataPlane, shared by REST and gRPC.

- Readiness is honest: false with zero models, and false until every model found at
  start-up has a ready version (MLServer says ready with none, SeldonIO/MLServer#2056).
- Unknown models and versions are 404s that list the versions that exist.
- Model metadata lists the model's served versions (MLServer returns its dependency list).
"""

from mlserver.errors import ModelNotFound
from mlserver.handlers import DataPlane
from mlserver.model import MLModel
from mlserver.registry import MultiModelRegistry
from mlserver.settings import Settings
from mlserver.types import InferenceRequest, InferenceResponse, MetadataModelResponse

from .errors import ModelUnavailable
from .repository.states import ModelStates


def _version_key(version: str | None) -> tuple[int, str]:
    text = version or ""
    return (int(text), "") if text.isdigit() else (-1, text)


class V2DataPlane(DataPlane):
    def __init__(self, settings: Settings, model_registry: MultiModelRegistry, states: ModelStates):
        super().__init__(settings=settings, model_registry=model_registry)
        # MLServer's cache shares entries across models; the runtime's (runtimes.cache) replaces it.
        self._response_cache = None
        self.states = states

    async def available_versions(self, name: str) -> list[str]:
        try:
            models = await self._model_registry.get_models(name)
        except ModelNotFound:
            return []
        versions = {m.version for m in models if m.ready and m.version}
        return sorted(versions, key=_version_key)

    async def resolve(self, name: str, version: str | None) -> MLModel:
        try:
            return await self._model_registry.get_model(name, version or None)
        except ModelNotFound as exc:
            available = await self.available_versions(name)
            if not available and not version:
                raise ModelUnavailable(name) from exc
            raise ModelUnavailable(name, version, available) from exc

    async def ready(self) -> bool:
        expected = self.states.expected_models
        if not expected:
            return False
        return all(self.states.has_ready_version(name) for name in expected)

    async def model_ready(self, name: str, version: str | None = None) -> bool:
        return (await self.resolve(name, version)).ready

    async def model_metadata(self, name: str, version: str | None = None) -> MetadataModelResponse:
        await self.resolve(name, version)
        metadata = await super().model_metadata(name, version or None)
        metadata.versions = await self.available_versions(name)
        return metadata

    async def infer(
        self, payload: InferenceRequest, name: str, version: str | None = None
    ) -> InferenceResponse:
        await self.resolve(name, version)
        return await super().infer(payload, name, version or None)
