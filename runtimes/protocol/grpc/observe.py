"""v2serve's gRPC call observer: request metrics and the access log, for every handler kind,
wrapped around each method's handler once (``ObservedHandlers``) or, behind another
interceptor, as the first interceptor (``CallObserver``).

MLServer's ``PromServerInterceptor`` wraps every handler as a unary coroutine, so a
unary-stream method such as ``grpc.health.v1.Health/Watch`` failed at once ("object
async_generator can't be used in 'await' expression"). This one keeps each handler's
kind. The metrics keep py-grpc-prometheus's names (``grpc_server_started_total``,
``grpc_server_handled_total``, ``grpc_server_handling_seconds``, and for streams
``grpc_server_msg_received_total`` / ``grpc_server_msg_sent_total``), so existing dashboards
still read them; they are plain integers per method, rendered only when scraped, so a call
costs a few additions rather than label look-ups.
"""

import asyncio
import bisect
import logging
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from dataclasses import dataclass, field
from typing import Any

import grpc
from grpc import aio
from prometheus_client import REGISTRY, CollectorRegistry
from prometheus_client.core import CounterMetricFamily, HistogramMetricFamily, Metric
from prometheus_client.registry import Collector

logger = logging.getLogger("v2serve.grpc.access")
HEALTH_RPCS = ("/grpc.health.v1.Health/", "/ServerLive", "/ServerReady")
SECONDS_BUCKETS = (
    0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05,
    0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0,
)  # fmt: skip
_CODE_BY_VALUE = {code.value[0]: code for code in grpc.StatusCode}


@dataclass
class MethodCounts:
    """What one method has seen since start-up."""

    grpc_type: str
    service: str
    method: str
    started: int = 0
    handled: dict[str, int] = field(default_factory=dict)
    received: int = 0
    sent: int = 0
    buckets: list[int] = field(default_factory=lambda: [0] * (len(SECONDS_BUCKETS) + 1))
    seconds: float = 0.0

    def finished(self, code: grpc.StatusCode, seconds: float) -> None:
        self.handled[code.name] = self.handled.get(code.name, 0) + 1
        self.buckets[bisect.bisect_left(SECONDS_BUCKETS, seconds)] += 1
        self.seconds += seconds


class GrpcMetrics(Collector):
    def __init__(self, registry: CollectorRegistry = REGISTRY):
        self._methods: dict[str, MethodCounts] = {}
        registry.register(self)

    def counts(self, full_method: str, grpc_type: str) -> MethodCounts:
        found = self._methods.get(full_method)
        if found is None:
            service, _, method = full_method.lstrip("/").rpartition("/")
            found = self._methods[full_method] = MethodCounts(grpc_type, service, method)
        return found

    def collect(self) -> Iterator[Metric]:
        labels = ["grpc_type", "grpc_service", "grpc_method"]
        started = CounterMetricFamily(
            "grpc_server_started", "Total number of RPCs started on the server.", labels=labels
        )
        handled = CounterMetricFamily(
            "grpc_server_handled",
            "Total number of RPCs completed on the server, regardless of success or failure.",
            labels=[*labels, "grpc_code"],
        )
        received = CounterMetricFamily(
            "grpc_server_msg_received",
            "Total number of RPC stream messages received on the server.",
            labels=labels,
        )
        sent = CounterMetricFamily(
            "grpc_server_msg_sent",
            "Total number of gRPC stream messages sent by the server.",
            labels=labels,
        )
        seconds = HistogramMetricFamily(
            "grpc_server_handling_seconds",
            "Histogram of response latency (seconds) of gRPC that had been application-level "
            "handled by the server.",
            labels=labels,
        )
        for counts in list(self._methods.values()):
            values = [counts.grpc_type, counts.service, counts.method]
            started.add_metric(values, counts.started)
            for code, count in sorted(counts.handled.items()):
                handled.add_metric([*values, code], count)
            if counts.grpc_type != "UNARY":
                received.add_metric(values, counts.received)
                sent.add_metric(values, counts.sent)
            cumulative, total = [], 0
            for bound, count in zip((*SECONDS_BUCKETS, float("inf")), counts.buckets, strict=True):
                total += count
                cumulative.append((str(bound) if bound != float("inf") else "+Inf", total))
            seconds.add_metric(values, cumulative, counts.seconds)
        yield from (started, handled, received, sent, seconds)


def _grpc_type(handler: grpc.RpcMethodHandler) -> str:
    if handler.request_streaming and handler.response_streaming:
        return "BIDI_STREAMING"
    if handler.request_streaming:
        return "CLIENT_STREAMING"
    return "SERVER_STREAMING" if handler.response_streaming else "UNARY"


def _final_code(context: Any, error: BaseException | None) -> grpc.StatusCode:
    if isinstance(error, asyncio.CancelledError | GeneratorExit):  # the client went away
        return grpc.StatusCode.CANCELLED
    code = context.code()
    if isinstance(code, grpc.StatusCode):
        return code
    if isinstance(code, int):
        return _CODE_BY_VALUE.get(code, grpc.StatusCode.UNKNOWN)
    return grpc.StatusCode.OK if error is None else grpc.StatusCode.UNKNOWN


class _Call:
    """One RPC being observed: counts on the way in, a code and a duration on the way out."""

    def __init__(self, counts: MethodCounts | None, method: str, log: bool):
        self.counts = counts
        self.method = method
        self.log = log
        self.begun = time.perf_counter()
        if counts is not None:
            counts.started += 1

    def received(self) -> None:
        if self.counts is not None:
            self.counts.received += 1

    def sent(self) -> None:
        if self.counts is not None:
            self.counts.sent += 1

    def finished(self, context: Any, error: BaseException | None) -> None:
        seconds = time.perf_counter() - self.begun
        code = _final_code(context, error)
        if self.counts is not None:
            self.counts.finished(code, seconds)
        if self.log:
            logger.info("%s %s %.3fms", self.method, code.name, seconds * 1000)


class CallObserver(aio.ServerInterceptor):
    """Counts every call in ``metrics`` (when given) and logs it when ``access_log``.

    Health checks are counted but never logged: probes would drown the access log.
    """

    def __init__(self, metrics: GrpcMetrics | None, access_log: bool):
        self.metrics = metrics
        self.access_log = access_log

    async def intercept_service(
        self,
        continuation: Callable[[grpc.HandlerCallDetails], Awaitable[grpc.RpcMethodHandler]],
        handler_call_details: grpc.HandlerCallDetails,
    ) -> grpc.RpcMethodHandler:
        handler = await continuation(handler_call_details)
        if handler is None:
            return handler
        return self.observe(handler_call_details.method, handler)

    def observe(self, method: str, handler: grpc.RpcMethodHandler) -> grpc.RpcMethodHandler:
        """``handler`` of ``method`` with each of its calls counted and logged."""
        kind = _grpc_type(handler)
        log = self.access_log and not any(rpc in method for rpc in HEALTH_RPCS)
        counts = self.metrics.counts(method, kind) if self.metrics is not None else None

        def call() -> _Call:
            return _Call(counts, method, log)

        return wrap_handler(handler, call)


class ObservedHandlers(grpc.GenericRpcHandler):
    """``handlers`` with every call observed as ``CallObserver`` observes it, each method's
    handler wrapped once, on its first call: an interceptor runs a coroutine and builds a
    new handler on every call, which cost a few percent of a small inference. The server
    uses this unless another interceptor (the control token) may refuse a call before any
    handler runs; then the observer stays the first interceptor, so refusals are counted.

    ``handlers`` must answer a method with the same handler on every call, as
    ``grpc.method_handlers_generic_handler`` does."""

    def __init__(self, handlers: grpc.GenericRpcHandler, observer: CallObserver):
        self.handlers = handlers
        self.observer = observer
        self._observed: dict[str, grpc.RpcMethodHandler] = {}

    def service(self, handler_call_details: grpc.HandlerCallDetails) -> Any:
        method = handler_call_details.method
        found = self._observed.get(method)
        if found is None:
            handler = self.handlers.service(handler_call_details)
            if handler is None:
                return None
            found = self._observed[method] = self.observer.observe(method, handler)
        return found


def wrap_handler(handler: grpc.RpcMethodHandler, begin: Callable[[], _Call]) -> Any:
    """``handler`` with each call observed, of the same kind as ``handler``."""
    options = {
        "request_deserializer": handler.request_deserializer,
        "response_serializer": handler.response_serializer,
    }
    if handler.unary_unary:
        return grpc.unary_unary_rpc_method_handler(_unary(handler.unary_unary, begin), **options)
    if handler.stream_unary:
        return grpc.stream_unary_rpc_method_handler(
            _unary(handler.stream_unary, begin, counts_requests=True), **options
        )
    if handler.unary_stream:
        return grpc.unary_stream_rpc_method_handler(
            _streaming(handler.unary_stream, begin), **options
        )
    return grpc.stream_stream_rpc_method_handler(
        _streaming(handler.stream_stream, begin, counts_requests=True), **options
    )


async def _counted(requests: AsyncIterator[Any], call: _Call) -> AsyncIterator[Any]:
    async for request in requests:
        call.received()
        yield request


def _unary(behavior: Any, begin: Callable[[], _Call], counts_requests: bool = False) -> Any:
    async def observed(request: Any, context: Any) -> Any:
        call = begin()
        if counts_requests:
            request = _counted(request, call)
        try:
            response = await behavior(request, context)
        except BaseException as exc:
            call.finished(context, exc)
            raise
        call.finished(context, None)
        return response

    return observed


def _streaming(behavior: Any, begin: Callable[[], _Call], counts_requests: bool = False) -> Any:
    async def observed(request: Any, context: Any) -> AsyncIterator[Any]:
        call = begin()
        if counts_requests:
            request = _counted(request, call)
        try:
            responses = behavior(request, context)
            if hasattr(responses, "__aiter__"):
                async for response in responses:
                    call.sent()
                    yield response
            else:  # a coroutine that writes with context.write
                await responses
        except BaseException as exc:
            call.finished(context, exc)
            raise
        call.finished(context, None)

    return observed
