"""The v2serve server: MLServer 1.7.1 with v2serve's data plane, repository and protocol fixes.

``MLServer.__init__`` builds its own DataPlane, whose Prometheus counters can only be
registered once per process, so V2Server assembles the same parts itself with v2serve's
data plane, registry and repository handlers in place of MLServer's.
"""

import asyncio
import logging

from mlserver import MLServer
from mlserver.metrics import MetricsServer
from mlserver.model import MLModel
from mlserver.parallel import InferencePoolRegistry
from mlserver.registry import MultiModelRegistry
from mlserver.repository.factory import ModelRepositoryFactory
from mlserver.settings import ModelSettings

from .cache import configure as configure_cache
from .dataplane import V2DataPlane
from .errors import ModelLoadFailed
from .extensions.handlers import ExtensionHandlers
from .extensions.statistics import Statistics
from .protocol.control_auth import (
    ControlTokenInterceptor,
    ControlTokenMiddleware,
    resolve_control_token,
)
from .protocol.grpc.health import HealthService, health_handler
from .protocol.grpc.server import GRPCServer
from .protocol.grpc.service import TritonService, triton_handler
from .protocol.http_timeouts import install_http_timeouts
from .protocol.limits import install_body_limit
from .protocol.rest_errors import DefaultJSONContentType, install_rest_error_handlers
from .protocol.rest_extensions import install_extension_routes
from .protocol.rest_fastpath import RestInferFastPath
from .protocol.rest_repository import install_repository_routes
from .protocol.status import install_grpc_status_mapping
from .repository import VersionedRepository
from .repository.controller import RepositoryController
from .repository.inflight import InFlight
from .repository.registry import V2ModelRegistry
from .repository.states import ModelStates, VersionState
from .repository_api import V2RepositoryHandlers
from .settings import ServerConfig, build_cache_settings

logger = logging.getLogger("v2serve.server")


class V2Server(MLServer):
    def __init__(self, config: ServerConfig):
        settings = config.mlserver
        self._settings = settings
        self.options = config.options
        self.states = ModelStates()
        self.inflight = InFlight()
        self._add_signal_handlers()
        if (
            configure_cache(build_cache_settings(settings, self.options))
            and settings.parallel_workers
        ):
            logger.warning("the response cache is off: parallel workers run the models")
        self._metrics_server = MetricsServer(settings) if settings.metrics_endpoint else None
        self._inference_pool_registry = None
        if settings.parallel_workers:
            on_worker_stop = [self._metrics_server.on_worker_stop] if self._metrics_server else []
            self._inference_pool_registry = InferencePoolRegistry(
                settings, on_worker_stop=on_worker_stop
            )
        self._model_registry = self._create_model_registry()
        repository = ModelRepositoryFactory.resolve_model_repository(settings)
        assert isinstance(repository, VersionedRepository)
        self._model_repository = self.repository = repository
        self.statistics = Statistics()
        self._data_plane = V2DataPlane(
            settings,
            self._model_registry,
            self.states,
            self.options,
            self.inflight,
            self.statistics,
        )
        self.extensions = ExtensionHandlers(self._data_plane, self.statistics)
        self.controller = RepositoryController(repository, self, self.states, self.options)
        self._model_repository_handlers = V2RepositoryHandlers(
            repository, self._model_registry, self.controller, self.states
        )
        self._configure_logger()
        self._create_servers()

    def _create_model_registry(self) -> MultiModelRegistry:
        hooks = super()._create_model_registry()
        return V2ModelRegistry(
            on_model_load=hooks._on_model_load,
            on_model_reload=hooks._on_model_reload,
            on_model_unload=hooks._on_model_unload,
            model_initialiser=hooks._model_initialiser,
        )

    def _create_servers(self) -> None:
        install_grpc_status_mapping()
        super()._create_servers()
        repository = self._model_repository_handlers
        token = resolve_control_token(self.options)
        self._grpc_server = GRPCServer(
            self._settings,
            [
                triton_handler(TritonService(self._data_plane, repository, self.extensions)),
                health_handler(HealthService(self._data_plane)),
            ],
            [ControlTokenInterceptor(token)] if token else [],
        )
        app = self._rest_server._app
        install_rest_error_handlers(app)
        install_repository_routes(app, self._model_repository_handlers)
        install_extension_routes(app, self._data_plane, self.extensions)
        app.add_middleware(DefaultJSONContentType)
        app.add_middleware(
            RestInferFastPath,
            data_plane=self._data_plane,
            max_bytes=self.options.max_request_size,
        )
        install_body_limit(app, self.options.max_request_size)
        if token:
            app.add_middleware(ControlTokenMiddleware, token=token)
        install_http_timeouts(
            self._rest_server,
            self.options.http_keep_alive_timeout,
            self.options.http_header_timeout,
        )

    async def load_version(self, model_settings: ModelSettings) -> bool:
        """Load one version; a failure is recorded and logged, never fatal to the server."""
        name, version = model_settings.name, model_settings.version or ""
        if not self.states.has_version_ready(name, version):
            self.states.set(name, version, VersionState.LOADING)
        try:
            loaded = await self._model_registry.load(model_settings)
        except Exception as exc:
            reason = (
                exc.reason if isinstance(exc, ModelLoadFailed) else f"{type(exc).__name__}: {exc}"
            )
            if self.states.has_version_ready(name, version):
                self.states.set(name, version, VersionState.READY, reason)
            else:
                self.states.set(name, version, VersionState.UNAVAILABLE, reason)
            logger.error("model '%s' version %s failed to load: %s", name, version, reason)
            return False
        warning = getattr(loaded, "load_warning", "")
        self.states.set(name, version, VersionState.READY, warning)
        if warning:
            logger.warning("model '%s' version %s: %s", name, version, warning)
        logger.info("model '%s' version %s is ready", name, version)
        return True

    async def retire_version(self, name: str, version: str) -> None:
        """Stop routing to a version at once; unload it once its requests have finished."""
        self.states.set(name, version, VersionState.UNLOADING)
        timeout = self.options.drain_timeout

        async def drained(model: MLModel) -> None:
            if not await self.inflight.drained(model, timeout):
                logger.warning(
                    "model '%s' version %s unloaded with requests in flight", name, version
                )

        assert isinstance(self._model_registry, V2ModelRegistry)
        await self._model_registry.retire(name, version, drained)
        self.states.forget(name, version)
        logger.info("model '%s' version %s is unloaded", name, version)

    async def start(self, models_settings: list[ModelSettings] | None = None) -> None:
        servers = [self._rest_server.start(), self._grpc_server.start()]
        if self._metrics_server:
            servers.append(self._metrics_server.start())
        servers_task = asyncio.gather(*servers)
        if self._settings.load_models_at_startup:
            self.states.expected_models = {m.name for m in self.repository.model_folders()}
            await self.controller.reconcile(settle_all=True)
        if self.options.watch:
            self.controller.start_watching()
        await servers_task

    async def stop(self, sig: int | None = None) -> None:
        await self.controller.stop_watching()
        await super().stop(sig)
