"""v2serve's gRPC call observer keeps each handler's kind, counts and logs every call, the
same whether it runs as an interceptor or wraps each method's handler once (the server's
choice without a control token); every test runs both ways."""

import asyncio
import logging
from collections.abc import AsyncIterator
from types import SimpleNamespace
from typing import Any

import grpc
import pytest
from grpc import aio
from prometheus_client import CollectorRegistry

from runtimes.errors import ModelUnavailable
from runtimes.protocol.grpc.errors import abort
from runtimes.protocol.grpc.observe import CallObserver, GrpcMetrics, ObservedHandlers
from tests.unit.grpc_context import FakeContext


async def _unary(request: Any, context: Any) -> Any:
    if request == "bad":
        await abort(context, ModelUnavailable("nope"))
    return request * 2


async def _server_stream(request: Any, context: Any) -> AsyncIterator[Any]:
    for item in range(request):
        yield item


async def _client_stream(requests: AsyncIterator[Any], context: Any) -> Any:
    return sum([r async for r in requests])


async def _bidi(requests: AsyncIterator[Any], context: Any) -> AsyncIterator[Any]:
    async for request in requests:
        yield -request


HANDLERS = {
    "Unary": grpc.unary_unary_rpc_method_handler(_unary),
    "ServerStream": grpc.unary_stream_rpc_method_handler(_server_stream),
    "ClientStream": grpc.stream_unary_rpc_method_handler(_client_stream),
    "Bidi": grpc.stream_stream_rpc_method_handler(_bidi),
}


@pytest.fixture(params=["interceptor", "handlers"])
def way(request: pytest.FixtureRequest) -> str:
    return str(request.param)


def observing(observer: CallObserver, way: str, service: str = "test.Service") -> Any:
    """An async function from a method's name to its observed handler, observed ``way``."""
    if way == "interceptor":

        async def intercepted(method: str) -> grpc.RpcMethodHandler:
            async def continuation(details: Any) -> grpc.RpcMethodHandler:
                return HANDLERS[details.method.rsplit("/", 1)[-1]]

            details = SimpleNamespace(method=f"/{service}/{method}", invocation_metadata=())
            return await observer.intercept_service(continuation, details)

        return intercepted
    handlers = ObservedHandlers(grpc.method_handlers_generic_handler(service, HANDLERS), observer)

    async def wrapped(method: str) -> grpc.RpcMethodHandler:
        details = SimpleNamespace(method=f"/{service}/{method}", invocation_metadata=())
        return handlers.service(details)

    return wrapped


async def _items(*items: Any) -> AsyncIterator[Any]:
    for item in items:
        yield item


def _value(registry: CollectorRegistry, name: str, method: str, **labels: str) -> float | None:
    return registry.get_sample_value(
        name, {"grpc_service": "test.Service", "grpc_method": method, **labels}
    )


def test_every_handler_kind_keeps_its_kind_and_is_counted(caplog, way):
    registry = CollectorRegistry()
    observed = observing(CallObserver(GrpcMetrics(registry), access_log=True), way)

    async def main() -> list[Any]:
        unary = await observed("Unary")
        server_stream = await observed("ServerStream")
        client_stream = await observed("ClientStream")
        bidi = await observed("Bidi")
        assert unary.unary_unary and server_stream.unary_stream
        assert client_stream.stream_unary and bidi.stream_stream
        context = FakeContext()
        with pytest.raises(aio.AbortError):
            await unary.unary_unary("bad", context)
        return [
            await unary.unary_unary(21, FakeContext()),
            [item async for item in server_stream.unary_stream(3, FakeContext())],
            await client_stream.stream_unary(_items(1, 2, 3), FakeContext()),
            [item async for item in bidi.stream_stream(_items(1, 2), FakeContext())],
        ]

    with caplog.at_level(logging.INFO, logger="v2serve.grpc.access"):
        assert asyncio.run(main()) == [42, [0, 1, 2], 6, [-1, -2]]
    assert _value(registry, "grpc_server_started_total", "Unary", grpc_type="UNARY") == 2
    for code in ("OK", "NOT_FOUND"):
        assert _value(registry, "grpc_server_handled_total", "Unary", grpc_type="UNARY",
                      grpc_code=code) == 1  # fmt: skip
    assert _value(registry, "grpc_server_handling_seconds_count", "Unary", grpc_type="UNARY") == 2
    streams = {"ServerStream": ("SERVER_STREAMING", 0, 3), "ClientStream":
               ("CLIENT_STREAMING", 3, 0), "Bidi": ("BIDI_STREAMING", 2, 2)}  # fmt: skip
    for method, (kind, received, sent) in streams.items():
        labels = {"grpc_type": kind}
        assert _value(registry, "grpc_server_msg_received_total", method, **labels) == received
        assert _value(registry, "grpc_server_msg_sent_total", method, **labels) == sent
        assert _value(registry, "grpc_server_handled_total", method, **labels,
                      grpc_code="OK") == 1  # fmt: skip
    logged = [r.getMessage() for r in caplog.records]
    assert any("/test.Service/Unary NOT_FOUND" in line for line in logged)
    assert sum("/test.Service/" in line for line in logged) == 5


def test_a_stream_closed_by_the_client_is_cancelled(way):
    registry = CollectorRegistry()
    observed = observing(CallObserver(GrpcMetrics(registry), access_log=False), way)

    async def main() -> None:
        handler = await observed("ServerStream")
        stream = handler.unary_stream(10, FakeContext())
        assert await anext(stream) == 0
        await stream.aclose()

    asyncio.run(main())
    labels = {"grpc_type": "SERVER_STREAMING", "grpc_code": "CANCELLED"}
    assert _value(registry, "grpc_server_handled_total", "ServerStream", **labels) == 1


def test_health_checks_are_not_logged_and_nothing_without_metrics(caplog, way):
    observed = observing(CallObserver(None, access_log=True), way, "grpc.health.v1.Health")

    async def main() -> Any:
        handler = await observed("Unary")
        return await handler.unary_unary(1, FakeContext())

    with caplog.at_level(logging.INFO, logger="v2serve.grpc.access"):
        assert asyncio.run(main()) == 2
    assert not caplog.records


def test_each_method_is_wrapped_once_and_unknown_methods_stay_unknown():
    generic = grpc.method_handlers_generic_handler("test.Service", HANDLERS)
    handlers = ObservedHandlers(generic, CallObserver(None, access_log=False))

    def details(method: str) -> Any:
        return SimpleNamespace(method=f"/test.Service/{method}", invocation_metadata=())

    first = handlers.service(details("Unary"))
    assert first is handlers.service(details("Unary"))
    assert first is not HANDLERS["Unary"] and first.unary_unary is not None
    assert handlers.service(details("Missing")) is None
