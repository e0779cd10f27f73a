"""The gRPC server: v2serve's handlers in place of MLServer's servicers, MLServer's
message-size options kept, and v2serve's own call observer for metrics and the access log
(``observe.py``: MLServer's interceptor broke every streaming handler).

``bind`` comes apart from ``serve`` so that the server binds every port (``runtimes.ports``:
port 0, no SO_REUSEPORT) before any model loads, and reports the port it holds."""

import asyncio
import logging
from typing import Any

import grpc
from grpc import aio
from mlserver.settings import Settings
from prometheus_client import REGISTRY, CollectorRegistry

from ...ports import GRPC_OPTIONS, bind_grpc
from .observe import CallObserver, GrpcMetrics, ObservedHandlers

logger = logging.getLogger("v2serve.grpc")


class GRPCServer:
    def __init__(
        self,
        settings: Settings,
        handlers: list[grpc.GenericRpcHandler],
        interceptors: list[aio.ServerInterceptor] | None = None,
        registry: CollectorRegistry = REGISTRY,
    ):
        self._settings = settings
        self._handlers = handlers
        self._extra_interceptors = interceptors or []
        self.metrics = GrpcMetrics(registry) if settings.metrics_endpoint else None
        self._server: aio.Server | None = None
        self.port: int | None = None
        self.started = asyncio.Event()

    def _options(self) -> list[tuple[str, Any]]:
        limit = self._settings.grpc_max_message_length
        if limit is None:
            return list(GRPC_OPTIONS)
        return [
            *GRPC_OPTIONS,
            ("grpc.max_message_length", limit),
            ("grpc.max_send_message_length", limit),
            ("grpc.max_receive_message_length", limit),
        ]

    def _observed(self) -> tuple[list[aio.ServerInterceptor], list[grpc.GenericRpcHandler]]:
        """The interceptors and handlers, observed (metrics, access log) where asked.

        Without other interceptors the handlers observe their own calls (no interceptor
        runs per call); behind the control token the observer is the first interceptor,
        so that calls it refuses are counted and logged too."""
        if self.metrics is None and not self._settings.debug:
            return self._extra_interceptors, self._handlers
        observer = CallObserver(self.metrics, access_log=self._settings.debug)
        if self._extra_interceptors:
            return [observer, *self._extra_interceptors], self._handlers
        return [], [ObservedHandlers(handlers, observer) for handlers in self._handlers]

    def bind(self) -> int:
        """Bind ``grpc_port`` (0: any free port) and return the port held; raises
        ``CannotListen`` when it is taken. Calls are not served until ``serve``."""
        interceptors, handlers = self._observed()
        self._server = aio.server(interceptors=interceptors, options=self._options())
        self._server.add_generic_rpc_handlers(handlers)
        self.port = bind_grpc(self._server, self._settings.host, self._settings.grpc_port)
        return self.port

    async def serve(self) -> None:
        """Serve on the bound port until stopped; ``started`` is set once calls are served."""
        if self._server is None:
            self.bind()
        assert self._server is not None
        await self._server.start()
        self.started.set()
        logger.info("gRPC server running on %s:%s", self._settings.host, self.port)
        await self._server.wait_for_termination()

    async def start(self) -> None:
        """``bind`` then ``serve``."""
        await self.serve()

    async def stop(self, sig: int | None = None, grace: float = 5.0) -> None:
        if self._server is not None:
            await self._server.stop(grace)
