"""The standard ``grpc.health.v1.Health`` service, for Kubernetes gRPC probes.

The empty service name reports server readiness; a model name reports that model's.
``Check`` of an unknown model is NOT_FOUND, as the health protocol asks. ``Watch`` sends
the status at once and again each time it changes, polling the data plane's readiness (a
few set look-ups) every ``watch_interval`` seconds; an unknown model is SERVICE_UNKNOWN
and stays watched, so a model that appears later turns SERVING. Once the server is
stopping, the watch sends NOT_SERVING and ends, so that it does not hold the shutdown for
its whole grace period.
"""

import asyncio
from collections.abc import AsyncIterator
from typing import Any

import grpc
from grpc_health.v1 import health_pb2

from ...dataplane import V2DataPlane
from ...errors import ModelUnavailable
from .errors import abort

_SERVING = health_pb2.HealthCheckResponse.SERVING
_NOT_SERVING = health_pb2.HealthCheckResponse.NOT_SERVING
_UNKNOWN = health_pb2.HealthCheckResponse.SERVICE_UNKNOWN


class HealthService:
    def __init__(self, data_plane: V2DataPlane, watch_interval: float = 0.5):
        self.data_plane = data_plane
        self.watch_interval = watch_interval

    async def _status(self, service: str) -> int:
        if self.data_plane.stopping:
            return _NOT_SERVING  # the model too: its traffic is being drained
        if not service:
            return _SERVING if await self.data_plane.ready() else _NOT_SERVING
        try:
            return _SERVING if await self.data_plane.model_ready(service) else _NOT_SERVING
        except ModelUnavailable:
            return _UNKNOWN

    async def Check(self, request: Any, context: Any) -> Any:
        try:
            status = await self._status(request.service)
            if status == _UNKNOWN:
                raise ModelUnavailable(request.service)
        except Exception as exc:  # noqa: BLE001 - rendered once, in grpc.errors
            await abort(context, exc)
        return health_pb2.HealthCheckResponse(status=status)

    async def Watch(self, request: Any, context: Any) -> AsyncIterator[Any]:
        last = None
        while True:
            stopping = self.data_plane.stopping  # read before the status it implies
            try:
                status = await self._status(request.service)
            except Exception as exc:  # noqa: BLE001 - rendered once, in grpc.errors
                await abort(context, exc)
            if status != last:
                last = status
                yield health_pb2.HealthCheckResponse(status=status)
            if stopping:
                return  # NOT_SERVING is sent; an open watch must not hold up the shutdown
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
