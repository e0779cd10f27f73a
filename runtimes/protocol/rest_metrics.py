"""The Prometheus scrape endpoint on the metrics port (``metrics_port``, ``metrics_endpoint``).

With parallel workers the counters live in files, one per process, and are merged at
scrape time (prometheus_client's multiprocess mode, which MLServer's
``configure_metrics`` switches on); otherwise the process's default registry is served.
Collectors of numbers this process keeps itself (the request series, counted in the main
process's data plane) are added to the merged files with ``include``.
"""

import asyncio

from mlserver.metrics import configure_metrics
from mlserver.settings import Settings
from prometheus_client import CONTENT_TYPE_LATEST, REGISTRY, CollectorRegistry, generate_latest
from prometheus_client.multiprocess import MultiProcessCollector
from prometheus_client.registry import Collector

from ..errors import MethodNotAllowed, NoSuchEndpoint
from .asgi import Receive, Scope, Send, respond, respond_error


class MetricsApp:
    def __init__(self, settings: Settings):
        """Switches prometheus_client to multiprocess values with parallel workers, so it
        must be built before any metric is created."""
        configure_metrics(settings)
        self.path = settings.metrics_endpoint or "/metrics"
        self.multiprocess = bool(settings.parallel_workers)
        self._local: list[Collector] = []

    def include(self, collector: Collector) -> None:
        """Serve ``collector`` beside the workers' files too (it is in ``REGISTRY`` already)."""
        self._local.append(collector)

    def _registry(self) -> CollectorRegistry:
        if not self.multiprocess:
            return REGISTRY
        registry = CollectorRegistry()
        MultiProcessCollector(registry)
        for collector in self._local:
            registry.register(collector)
        return registry

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            return
        path, method = scope["path"], scope["method"]
        if path != self.path:
            await respond_error(send, NoSuchEndpoint(method, path))
        elif method not in ("GET", "HEAD"):
            await respond_error(send, MethodNotAllowed(method, path, ["GET"]))
        else:
            # Off the event loop, which also serves inference: a scrape renders ~100 kB.
            body = await asyncio.to_thread(generate_latest, self._registry())
            await respond(send, 200, body, [(b"content-type", CONTENT_TYPE_LATEST.encode())])
