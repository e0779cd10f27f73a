"""The gRPC server: v2serve's handlers in place of MLServer's servicers, with MLServer's
interceptors (Prometheus, access logs) and message-size options kept."""

import logging
from typing import Any

import grpc
from grpc import aio
from mlserver.grpc.interceptors import LoggingInterceptor, PromServerInterceptor
from mlserver.settings import Settings

logger = logging.getLogger("v2serve.grpc")


class GRPCServer:
    def __init__(
        self,
        settings: Settings,
        handlers: list[grpc.GenericRpcHandler],
        interceptors: list[aio.ServerInterceptor] | None = None,
    ):
        self._settings = settings
        self._handlers = handlers
        self._extra_interceptors = interceptors or []
        self._server: aio.Server | None = None

    def _options(self) -> list[tuple[str, Any]]:
        limit = self._settings.grpc_max_message_length
        if limit is None:
            return []
        return [
            ("grpc.max_message_length", limit),
            ("grpc.max_send_message_length", limit),
            ("grpc.max_receive_message_length", limit),
        ]

    def _interceptors(self) -> list[aio.ServerInterceptor]:
        interceptors: list[aio.ServerInterceptor] = list(self._extra_interceptors)
        if self._settings.debug:
            interceptors.append(LoggingInterceptor())
        if self._settings.metrics_endpoint:
            interceptors.append(PromServerInterceptor(enable_handling_time_histogram=True))
        return interceptors

    async def start(self) -> None:
        self._server = aio.server(interceptors=self._interceptors(), options=self._options())
        self._server.add_generic_rpc_handlers(self._handlers)
        self._server.add_insecure_port(f"{self._settings.host}:{self._settings.grpc_port}")
        await self._server.start()
        logger.info("gRPC server running on %s:%s", self._settings.host, self._settings.grpc_port)
        await self._server.wait_for_termination()

    async def stop(self, sig: int | None = None, grace: float = 5.0) -> None:
        if self._server is not None:
            await self._server.stop(grace)
