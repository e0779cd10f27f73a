"""The standard ``grpc.health.v1.Health`` service, for Kubernetes gRPC probes.

The empty service name reports server readiness; a model name reports that model's.
"""

import asyncio
from collections.abc import AsyncIterator
from typing import Any

import grpc
from grpc_health.v1 import health_pb2

from ...dataplane import V2DataPlane
from ...errors import ModelUnavailable

_SERVING = health_pb2.HealthCheckResponse.SERVING
_NOT_SERVING = health_pb2.HealthCheckResponse.NOT_SERVING
_UNKNOWN = health_pb2.HealthCheckResponse.SERVICE_UNKNOWN


class HealthService:
    def __init__(self, data_plane: V2DataPlane, watch_interval: float = 1.0):
        self.data_plane = data_plane
        self.watch_interval = watch_interval

    async def _status(self, service: str) -> int:
        if not service:
            return _SERVING if await self.data_plane.ready() else _NOT_SERVING
        try:
            return _SERVING if await self.data_plane.model_ready(service) else _NOT_SERVING
        except ModelUnavailable:
            return _UNKNOWN

    async def Check(self, request: Any, context: Any) -> Any:
        status = await self._status(request.service)
        if status == _UNKNOWN:
            await context.abort(grpc.StatusCode.NOT_FOUND, f"unknown service '{request.service}'")
        return health_pb2.HealthCheckResponse(status=status)

    async def Watch(self, request: Any, context: Any) -> AsyncIterator[Any]:
        last = None
        while True:
            status = await self._status(request.service)
            if status != last:
                last = status
                yield health_pb2.HealthCheckResponse(status=status)
            await asyncio.sleep(self.watch_interval)


def health_handler(service: HealthService) -> grpc.GenericRpcHandler:
    request, response = health_pb2.HealthCheckRequest, health_pb2.HealthCheckResponse
    return grpc.method_handlers_generic_handler(
        "grpc.health.v1.Health",
        {
            "Check": grpc.unary_unary_rpc_method_handler(
                service.Check, request.FromString, response.SerializeToString
            ),
            "Watch": grpc.unary_stream_rpc_method_handler(
                service.Watch, request.FromString, response.SerializeToString
            ),
        },
    )
