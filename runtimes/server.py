"""The v2serve server: MLServer 1.7.1 with v2serve's data plane, repository and protocol fixes.

``MLServer.__init__`` builds its own DataPlane, whose Prometheus counters can only be
registered once per process, so V2Server assembles the same parts itself with v2serve's
data plane, registry and repository handlers in place of MLServer's.
"""

import asyncio
import logging

from mlserver import MLServer
from mlserver.metrics import MetricsServer
from mlserver.parallel import InferencePoolRegistry
from mlserver.registry import MultiModelRegistry
from mlserver.repository.factory import ModelRepositoryFactory
from mlserver.server import HANDLED_SIGNALS
from mlserver.settings import ModelSettings

from .cache import configure as configure_cache
from .cache import response_cache
from .dataplane import V2DataPlane
from .extensions.handlers import ExtensionHandlers
from .extensions.statistics import Statistics
from .lifecycle import serve_http
from .observability.logs import RequestLog, with_logging_config
from .observability.metrics import ServingMetrics
from .observability.observer import RequestObserver
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
from .repository.lifecycle import VersionLifecycle
from .repository.registry import V2ModelRegistry
from .repository.states import ModelStates
from .repository_api import V2RepositoryHandlers
from .settings import ServerConfig, build_cache_settings

logger = logging.getLogger("v2serve.server")


class V2Server(MLServer):
    def __init__(self, config: ServerConfig):
        settings = with_logging_config(config.mlserver, config.options)
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
        # After MetricsServer, which switches prometheus_client to multiprocess values.
        self.metrics = ServingMetrics(self.states) if settings.metrics_endpoint else None
        self._stopping = False
        self._serving: list[asyncio.Future[None]] = []
        self._data_plane = V2DataPlane(
            settings,
            self._model_registry,
            self.states,
            self.options,
            self.inflight,
            self.statistics,
            RequestObserver(
                self.states, self.metrics, RequestLog() if self.options.log_requests else None
            ),
        )
        self.extensions = ExtensionHandlers(self._data_plane, self.statistics)
        assert isinstance(self._model_registry, V2ModelRegistry)
        self.lifecycle = VersionLifecycle(
            self._model_registry,
            self.states,
            self.inflight,
            drain_timeout=self.options.drain_timeout,
            root=repository.root,
            listeners=[
                listener
                for listener in (self.statistics, self.metrics, response_cache())
                if listener is not None
            ],
        )
        self.controller = RepositoryController(repository, self.lifecycle, self.options)
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

    async def start(self, models_settings: list[ModelSettings] | None = None) -> None:
        grace = self.options.shutdown_grace
        servers = [serve_http(self._rest_server, grace), self._grpc_server.start()]
        if self._metrics_server:
            servers.append(serve_http(self._metrics_server))
        self._serving = [asyncio.ensure_future(server) for server in servers]
        servers_task = asyncio.gather(*self._serving)
        if self._settings.load_models_at_startup:
            self.lifecycle.expect(m.name for m in self.repository.model_folders())
            await self.controller.reconcile(settle_all=True)
        if self.options.watch and not self._stopping:
            self.controller.start_watching()
        await servers_task

    def _add_signal_handlers(self) -> None:
        loop = asyncio.get_event_loop()
        for sig in HANDLED_SIGNALS:
            loop.add_signal_handler(sig, self._on_signal, sig)

    def _on_signal(self, sig: int) -> None:
        """Readiness turns false in the signal callback itself, before any other request
        is served; the rest of the shutdown runs as a task."""
        data_plane = getattr(self, "_data_plane", None)
        if data_plane is not None:
            data_plane.stopping = True
        asyncio.ensure_future(self.stop(sig=sig))

    async def stop(self, sig: int | None = None) -> None:
        """Graceful: see ``runtimes.lifecycle``. A second signal stops without waiting."""
        if self._stopping:
            logger.warning("second stop signal: in-flight requests are cancelled")
            self._rest_server._server.should_exit = self._rest_server._server.force_exit = True
            await self._grpc_server.stop(sig, grace=0)
            return
        self._stopping = True
        self._data_plane.stopping = True
        options = self.options
        logger.info(
            "stopping: readiness is false; listeners close in %ss, then in-flight requests "
            "get up to %ss",
            options.shutdown_delay,
            options.shutdown_grace,
        )
        await self.controller.stop_watching()
        if options.shutdown_delay:
            await asyncio.sleep(options.shutdown_delay)
        await self._rest_server.stop(sig)
        await self._grpc_server.stop(sig, grace=options.shutdown_grace)
        if self._serving:
            await asyncio.wait(self._serving[:2])
        if self._inference_pool_registry:
            await self._inference_pool_registry.close()
        if self._metrics_server:
            await self._metrics_server.stop(sig)
        logger.info("stopped")
