"""MLServer's model registry, fixed where it is wrong for a live repository.

- MLServer makes a new version the default before its ``load()`` finishes, so
  unversioned requests reach a model that is not ready. Here the default is always the
  highest *ready* version, compared as integers.
- A retired version leaves the registry at once (new requests no longer reach it) and is
  unloaded only after its in-flight requests have finished.
"""

import asyncio
from collections.abc import Awaitable, Callable

from mlserver.context import model_context
from mlserver.model import MLModel
from mlserver.registry import MultiModelRegistry, SingleModelRegistry
from mlserver.settings import ModelSettings


def version_number(model: MLModel) -> int:
    version = model.version or ""
    return int(version) if version.isdigit() else -1


class ReadyDefaultRegistry(SingleModelRegistry):
    """One model's versions; every unversioned request asks for its default.

    The default is kept between requests (finding it compares every version: about 4%
    of a light model's CPU). It is forgotten whenever a version is registered, removed,
    loaded or unloaded (the only places a version becomes ready), and a kept default that
    is no longer ready or no longer registered is looked up again, so a change made
    elsewhere cannot leave requests on a version that stopped serving."""

    _ready_default: MLModel | None = None

    @property
    def default(self) -> MLModel | None:
        kept = self._ready_default
        if kept is not None and kept.ready and self._versions.get(kept.version or "") is kept:
            return kept
        ready = [m for m in self._versions.values() if m.ready]
        self._ready_default = max(ready, key=version_number, default=None)
        return self._ready_default

    @default.setter
    def default(self, _: MLModel | None) -> None:
        """MLServer assigns a default eagerly; v2serve derives it from readiness instead."""

    def _forget_default(self) -> None:
        self._ready_default = None

    def _refresh_default(self, new_model: MLModel | None = None) -> MLModel | None:
        self._forget_default()
        return self.default

    def _clear_default(self) -> None:
        self._forget_default()

    async def _load_model(self, model: MLModel) -> None:
        try:
            await super()._load_model(model)  # sets ``ready`` after its last registration
        finally:
            self._forget_default()

    async def _reload_model(self, old_model: MLModel, new_model: MLModel) -> None:
        try:
            await super()._reload_model(old_model, new_model)
        finally:
            self._forget_default()

    async def retire(self, version: str, drained: Callable[[MLModel], Awaitable[None]]) -> None:
        model = self._versions.pop(version, None)
        self._forget_default()
        if model is None:
            return
        await drained(model)
        with model_context(model.settings):
            await asyncio.gather(
                *[callback(model) for callback in self._on_model_unload], return_exceptions=True
            )
            model.ready = not await model.unload()
        self._forget_default()


class V2ModelRegistry(MultiModelRegistry):
    async def load(self, model_settings: ModelSettings) -> MLModel:
        if model_settings.name not in self._models:
            self._models[model_settings.name] = ReadyDefaultRegistry(
                model_settings,
                on_model_load=self._on_model_load,
                on_model_reload=self._on_model_reload,
                on_model_unload=self._on_model_unload,
                model_initialiser=self._model_initialiser,
            )
        return await super().load(model_settings)

    async def retire(
        self, name: str, version: str, drained: Callable[[MLModel], Awaitable[None]]
    ) -> None:
        registry = self._models.get(name)
        if not isinstance(registry, ReadyDefaultRegistry):
            return
        await registry.retire(version, drained)
        if registry.empty():
            self._models.pop(name, None)

    def versions_of(self, name: str) -> dict[str, MLModel]:
        registry = self._models.get(name)
        return dict(registry._versions) if registry is not None else {}
