"""The v2serve server: MLServer 1.7.1 with v2serve's data plane, repository and protocol fixes.

``MLServer.__init__`` builds its own DataPlane, whose Prometheus counters can only be
registered once per process, so V2Server assembles the same parts itself with
``V2DataPlane`` in place of MLServer's.
"""

import asyncio
import logging

from mlserver import MLServer
from mlserver.handlers import ModelRepositoryHandlers
from mlserver.metrics import MetricsServer
from mlserver.parallel import InferencePoolRegistry
from mlserver.repository.factory import ModelRepositoryFactory
from mlserver.settings import ModelSettings, Settings

from .cache import configure as configure_cache
from .dataplane import V2DataPlane
from .errors import ModelLoadFailed
from .protocol.rest_errors import DefaultJSONContentType, install_rest_error_handlers
from .protocol.status import install_grpc_status_mapping
from .repository import VersionedRepository
from .repository.states import ModelStates, VersionState
from .settings import build_cache_settings

logger = logging.getLogger("v2serve.server")


class V2Server(MLServer):
    def __init__(self, settings: Settings):
        self._settings = settings
        self.states = ModelStates()
        self._add_signal_handlers()
        if configure_cache(build_cache_settings(settings)) and settings.parallel_workers:
            logger.warning("the response cache is off: parallel workers run the models")
        self._metrics_server = MetricsServer(settings) if settings.metrics_endpoint else None
        self._inference_pool_registry = None
        if settings.parallel_workers:
            on_worker_stop = [self._metrics_server.on_worker_stop] if self._metrics_server else []
            self._inference_pool_registry = InferencePoolRegistry(
                settings, on_worker_stop=on_worker_stop
            )
        self._model_registry = self._create_model_registry()
        self._model_repository = ModelRepositoryFactory.resolve_model_repository(settings)
        self._data_plane = V2DataPlane(settings, self._model_registry, self.states)
        self._model_repository_handlers = ModelRepositoryHandlers(
            repository=self._model_repository, model_registry=self._model_registry
        )
        self._configure_logger()
        self._create_servers()

    def _create_servers(self) -> None:
        install_grpc_status_mapping()
        super()._create_servers()
        app = self._rest_server._app
        install_rest_error_handlers(app)
        app.add_middleware(DefaultJSONContentType)

    @property
    def repository(self) -> VersionedRepository:
        assert isinstance(self._model_repository, VersionedRepository)
        return self._model_repository

    async def load_version(self, model_settings: ModelSettings) -> bool:
        """Load one version; a failure is recorded and logged, never fatal to the server."""
        name, version = model_settings.name, model_settings.version or ""
        self.states.set(name, version, VersionState.LOADING)
        try:
            await self._model_registry.load(model_settings)
        except Exception as exc:
            reason = (
                exc.reason if isinstance(exc, ModelLoadFailed) else f"{type(exc).__name__}: {exc}"
            )
            self.states.set(name, version, VersionState.UNAVAILABLE, reason)
            logger.error("model '%s' version %s is unavailable: %s", name, version, reason)
            return False
        self.states.set(name, version, VersionState.READY)
        return True

    async def discover(self) -> list[ModelSettings]:
        found = await self.repository.list()
        self.states.expected_models = {m.name for m in self.repository.model_folders()}
        for name, error in self.repository.settings_errors.items():
            self.states.set(name, "", VersionState.UNAVAILABLE, str(error))
        return found

    async def start(self, models_settings: list[ModelSettings] | None = None) -> None:
        if models_settings is None:
            models_settings = await self.discover() if self._settings.load_models_at_startup else []
        servers = [self._rest_server.start(), self._grpc_server.start()]
        if self._metrics_server:
            servers.append(self._metrics_server.start())
        servers_task = asyncio.gather(*servers)
        await asyncio.gather(*(self.load_version(ms) for ms in models_settings))
        await servers_task
