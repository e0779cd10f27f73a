"""Serving the HTTP servers without uvicorn's signal handling, and the shutdown order.

uvicorn's ``Server.serve`` swaps in its own SIGINT/SIGTERM handlers while it serves and
re-raises the signal when it stops. With MLServer's REST and metrics servers both doing
so, a SIGTERM reached the metrics server, then REST, and only then MLServer's handler:
REST stopped accepting before anything else could happen, in an order nobody chose.
Here the HTTP servers leave signals alone, and ``V2Server.stop`` runs the shutdown:

1. readiness turns false (REST ``/v2/health/ready``, gRPC ServerReady and Health);
2. for ``shutdown_delay`` seconds everything is still served, so that load balancers
   that watch readiness stop routing here first;
3. REST and gRPC stop accepting; requests in flight get ``shutdown_grace`` seconds;
4. the inference pool (parallel workers) closes, then the metrics server;
5. ``V2Server.start`` returns and the process exits 0.
"""

import contextlib
import logging
from collections.abc import Iterator

import uvicorn
from mlserver.metrics import MetricsServer
from mlserver.rest import RESTServer

logger = logging.getLogger("v2serve.server")


class SignalFreeServer(uvicorn.Server):
    @contextlib.contextmanager
    def capture_signals(self) -> Iterator[None]:
        yield


async def serve_http(server: RESTServer | MetricsServer, grace: float | None = None) -> None:
    """MLServer's ``start()`` for its REST and metrics servers, minus the signal capture.

    ``grace`` bounds how long uvicorn waits for requests in flight once told to exit.
    """
    config = server._get_config()
    config.timeout_graceful_shutdown = grace
    server._server = SignalFreeServer(config)
    logger.info("HTTP server running on http://%s:%s", config.host, config.port)
    await server._server.serve()
