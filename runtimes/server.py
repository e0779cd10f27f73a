"""The v2serve server: a composition root, not a subclass of MLServer.

It assembles MLServer's public parts (``Settings``, ``ModelSettings``, ``MLModel``, the
``MultiModelRegistry`` that ``V2ModelRegistry`` extends, ``InferencePoolRegistry`` for
parallel workers, ``DataPlane`` that ``V2DataPlane`` extends) with v2serve's own:
repository and controller, REST router, gRPC service, metrics endpoint, and plain
uvicorn servers. The few private names this still needs sit in ``runtimes.platform``.
"""

import asyncio
import logging
import os
import signal
import socket
from pathlib import Path
from typing import TYPE_CHECKING

import uvicorn
from mlserver.batching import load_batching
from mlserver.logging import configure_logger
from mlserver.parallel import InferencePoolRegistry
from mlserver.parallel.worker import Worker
from mlserver.settings import ModelSettings

from .batching import LiveBatchers
from .cache import build_response_cache, publish_metrics
from .dataplane import V2DataPlane
from .errors import CannotListen
from .execution import Executions
from .extensions.handlers import ExtensionHandlers
from .extensions.log_settings import LogSettings
from .extensions.statistics import Statistics
from .extensions.trace_settings import TraceSettings
from .lifecycle import http_server, metrics_config, rest_config, serve_http, stop_http
from .observability.logs import LogControl, RequestLog, with_logging_config
from .observability.metrics import PredictionLogMetrics, ServingMetrics
from .observability.observer import RequestObserver
from .observability.prediction_log import PredictionLog
from .observability.trace_policy import TracePolicy, TraceSetting
from .platform import stop_metrics
from .ports import Bound, bound_port, describe, listen, write_port_file
from .protocol.asgi import ASGIApp
from .protocol.control_auth import ControlTokenInterceptor, resolve_control_token
from .protocol.grpc.health import HealthService, health_handler
from .protocol.grpc.server import GRPCServer
from .protocol.grpc.service import TritonService, triton_handler
from .protocol.offload import BodyOffload
from .protocol.rest_app import build_rest_app
from .protocol.rest_metrics import MetricsApp
from .repository import VersionedRepository
from .repository.controller import RepositoryController
from .repository.inflight import InFlight
from .repository.lifecycle import VersionLifecycle
from .repository.registry import V2ModelRegistry
from .repository.states import ModelStates
from .repository_api import V2RepositoryHandlers
from .runtime_api import RuntimeServices, initialiser
from .settings import ServerConfig, build_cache_settings

if TYPE_CHECKING:  # OpenTelemetry's SDK is imported only when tracing is on
    from .observability.tracing import RequestTracer

logger = logging.getLogger("v2serve.server")

HANDLED_SIGNALS = (signal.SIGINT, signal.SIGTERM, signal.SIGQUIT)


def build_registry(
    pool: InferencePoolRegistry | None, services: RuntimeServices
) -> V2ModelRegistry:
    """MLServer's load hooks, less its custom REST handlers (v2serve serves only V2
    routes): models go to the worker pool if there is one, and get adaptive batching.
    In-process runtimes get the server's services; a worker's runtime gets none."""
    if pool is None:
        return V2ModelRegistry(
            on_model_load=[load_batching],
            on_model_reload=[],
            on_model_unload=[],
            model_initialiser=initialiser(services),
        )
    return V2ModelRegistry(
        on_model_load=[pool.load_model, load_batching],
        on_model_reload=[pool.reload_model],
        on_model_unload=[pool.unload_model],
        model_initialiser=pool.model_initialiser,
    )


class V2Server:
    def __init__(self, config: ServerConfig):
        settings = with_logging_config(config.mlserver, config.options)
        self.settings = settings
        self.options = config.options
        self.log_control = LogControl.from_settings(config.mlserver, config.options)
        self.trace_policy = TracePolicy(
            TraceSetting(level="TIMESTAMPS" if self.options.tracing else "OFF")
        )
        self.tracer: RequestTracer | None = None
        if self.options.tracing:
            from .observability import tracing

            if tracing.sdk_disabled(os.environ):
                logger.warning("tracing is on, but OTEL_SDK_DISABLED=true: no spans")
            else:
                self.tracer = tracing.build_tracer(self.trace_policy)
        self.states = ModelStates()
        self.inflight = InFlight()
        self.response_cache = build_response_cache(build_cache_settings(settings, self.options))
        if self.response_cache is not None:
            publish_metrics(self.response_cache)
            if settings.parallel_workers:
                logger.warning("the response cache is off: parallel workers run the models")
        # First: it switches prometheus_client to multiprocess values with parallel workers.
        self.metrics_app = MetricsApp(settings) if settings.metrics_endpoint else None
        self.pool: InferencePoolRegistry | None = None
        if settings.parallel_workers:
            self.pool = InferencePoolRegistry(settings, on_worker_stop=[self._worker_stopped])
        # This server's live executors and batchers: its metrics and model configuration
        # read them, and only the runtimes it hosts register there.
        self.executions = Executions()
        self.batchers = LiveBatchers()
        self._model_registry = build_registry(
            self.pool,
            RuntimeServices(
                response_cache=self.response_cache,
                encodes_numpy=True,
                executions=self.executions,
                batchers=self.batchers,
                offload_bytes=self.options.offload_body_bytes,
            ),
        )
        self.repository = VersionedRepository(settings.model_repository_root)
        self.statistics = Statistics()
        self.metrics = (
            ServingMetrics(self.states, executions=self.executions, batchers=self.batchers)
            if settings.metrics_endpoint
            else None
        )
        if self.metrics is not None and self.metrics_app is not None:
            self.metrics_app.include(self.metrics.requests)
        self.prediction_log = PredictionLog(
            PredictionLogMetrics() if settings.metrics_endpoint else None
        )
        self._stopping = False
        self._serving: list[asyncio.Future[None]] = []
        self.data_plane = V2DataPlane(
            settings,
            self._model_registry,
            self.states,
            self.options,
            self.inflight,
            self.statistics,
            RequestObserver(
                self.states, self.metrics, RequestLog() if self.options.log_requests else None
            ),
            self.tracer,
            self.prediction_log,
        )
        self.extensions = ExtensionHandlers(
            self.data_plane, self.statistics, self.response_cache, self.executions
        )
        self.trace_settings = TraceSettings(
            self.trace_policy, self.data_plane, tracing=self.options.tracing
        )
        self.log_settings = LogSettings(self.log_control)
        self.lifecycle = VersionLifecycle(
            self._model_registry,
            self.states,
            self.inflight,
            drain_timeout=self.options.drain_timeout,
            root=self.repository.root,
            listeners=[
                listener
                for listener in (
                    self.statistics,
                    self.metrics,
                    self.response_cache,
                    self.prediction_log,
                )
                if listener is not None
            ],
        )
        self.controller = RepositoryController(self.repository, self.lifecycle, self.options)
        self.repository_handlers = V2RepositoryHandlers(
            self.repository, self._model_registry, self.controller, self.states
        )
        configure_logger(settings)
        token = resolve_control_token(self.options)
        # One helper process decodes large bodies for both protocols (protocol/offload.py).
        self.offload = BodyOffload(self.options.offload_body_bytes)
        self.grpc_server = GRPCServer(
            settings,
            [
                triton_handler(
                    TritonService(
                        self.data_plane,
                        self.repository_handlers,
                        self.extensions,
                        self.trace_settings,
                        self.log_settings,
                        self.offload,
                    )
                ),
                health_handler(HealthService(self.data_plane)),
            ],
            [ControlTokenInterceptor(token)] if token else [],
        )
        self.rest_app: ASGIApp = build_rest_app(
            self.data_plane,
            self.extensions,
            self.repository_handlers,
            self.options.max_request_size,
            control_token=token,
            cors=settings.cors_settings,
            trace_settings=self.trace_settings,
            log_settings=self.log_settings,
            offload=self.offload,
        )
        self.rest_server = http_server(rest_config(self.rest_app, settings, self.options))
        self.metrics_server: uvicorn.Server | None = None
        if self.metrics_app is not None:
            self.metrics_server = http_server(metrics_config(self.metrics_app, settings))
        self._add_signal_handlers()

    async def _worker_stopped(self, worker: Worker) -> None:
        """A dead worker's multiprocess metric files go, as MLServer's metrics server did."""
        if worker.pid:
            await stop_metrics(self.settings, worker.pid)

    async def start(
        self, models_settings: list[ModelSettings] | None = None, port_file: Path | None = None
    ) -> None:
        """Bind every port, serve, report the ports (log line, ``port_file``), then load
        the models: liveness answers while they load (``runtimes.lifecycle``)."""
        bound, sockets = self._listen()
        if self._stopping:  # a signal came while binding
            for sock in sockets:
                sock.close()
            return
        servers = [serve_http(self.rest_server, sockets[0]), self.grpc_server.serve()]
        if self.metrics_server is not None:
            servers.append(serve_http(self.metrics_server, sockets[1]))
        self._serving = [asyncio.ensure_future(server) for server in servers]
        servers_task = asyncio.gather(*self._serving)
        await self._until_serving()
        logger.info("listening: %s", describe(bound))
        if port_file is not None:
            write_port_file(port_file, bound)
        if self.settings.load_models_at_startup:
            self.lifecycle.expect(m.name for m in self.repository.model_folders())
            await self.controller.reconcile(settle_all=True)
        if self.options.watch and not self._stopping:
            self.controller.start_watching()
        await servers_task

    def _listen(self) -> tuple[list[Bound], list[socket.socket]]:
        """REST, gRPC, then metrics; if one port is taken, those already bound close and
        ``CannotListen`` names it."""
        host = self.settings.host
        sockets: list[socket.socket] = []
        try:
            sockets.append(listen(host, self.settings.http_port, "REST"))
            bound = [Bound("http", "REST", host, bound_port(sockets[0]))]
            bound.append(Bound("grpc", "gRPC", host, self.grpc_server.bind()))
            if self.metrics_server is not None:
                sockets.append(listen(host, self.settings.metrics_port, "metrics"))
                bound.append(Bound("metrics", "metrics", host, bound_port(sockets[1])))
        except CannotListen:
            for sock in sockets:
                sock.close()
            raise
        return bound, sockets

    async def _until_serving(self) -> None:
        """Until uvicorn has taken its sockets and gRPC has started; a server that fails
        on the way raises here instead of leaving the start waiting."""
        http = [self.rest_server, *([self.metrics_server] if self.metrics_server else [])]
        while not (all(s.started for s in http) and self.grpc_server.started.is_set()):
            failed = [task for task in self._serving if task.done()]
            if failed:
                failed[0].result()
                return  # a server that returned: it was told to stop
            await asyncio.sleep(0.01)

    def _add_signal_handlers(self) -> None:
        loop = asyncio.get_event_loop()
        for sig in HANDLED_SIGNALS:
            loop.add_signal_handler(sig, self._on_signal, sig)

    def _on_signal(self, sig: int) -> None:
        """Readiness turns false in the signal callback itself, before any other request
        is served; the rest of the shutdown runs as a task."""
        self.data_plane.stopping = True
        asyncio.ensure_future(self.stop(sig=sig))

    async def stop(self, sig: int | None = None) -> None:
        """Graceful: see ``runtimes.lifecycle``. A second signal stops without waiting."""
        if self._stopping:
            logger.warning("second stop signal: in-flight requests are cancelled")
            stop_http(self.rest_server, force=True)
            await self.grpc_server.stop(sig, grace=0)
            return
        self._stopping = True
        self.data_plane.stopping = True
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
        stop_http(self.rest_server)
        await self.grpc_server.stop(sig, grace=options.shutdown_grace)
        if self._serving:
            await asyncio.wait(self._serving[:2])
        await self.prediction_log.close()
        self.offload.close()
        if self.pool is not None:
            await self.pool.close()
        if self.metrics_server is not None:
            stop_http(self.metrics_server)
            if self.settings.parallel_workers:
                await stop_metrics(self.settings, os.getpid())
        logger.info("stopped")
