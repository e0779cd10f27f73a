"""Serving the HTTP servers without uvicorn's signal handling, the start-up and the
shutdown order.

Start-up (``V2Server.start``): every port is bound first (``runtimes.ports``: port 0 means
any free port), then REST, gRPC and metrics serve, the ports are logged and written to
``--port-file``, and only then do models load. Liveness answers from the first moment a
port is reported, while a slow model still loads; readiness waits for the models. A
taken port stops the start before anything else runs, with one line that names it.

uvicorn's ``Server.serve`` swaps in its own SIGINT/SIGTERM handlers while it serves and
re-raises the signal when it stops. With the REST and metrics servers both doing so, a
SIGTERM reached the metrics server, then REST, and only then the server's own handler:
REST stopped accepting before anything else could happen, in an order nobody chose.
Here the HTTP servers leave signals alone, and ``V2Server.stop`` runs the shutdown:

1. readiness turns false (REST ``/v2/health/ready``, gRPC ServerReady and Health);
2. for ``shutdown_delay`` seconds everything is still served, so that load balancers
   that watch readiness stop routing here first;
3. REST and gRPC stop accepting; requests in flight get ``shutdown_grace`` seconds;
4. the inference pool (parallel workers) closes, then the metrics listener;
5. ``V2Server.start`` returns and the process exits 0.
"""

import logging
import socket
from typing import Any

import uvicorn
from mlserver.settings import Settings

from .platform import SignalFreeServer
from .protocol.asgi import ASGIApp
from .protocol.http_timeouts import http_protocol
from .settings import ServerOptions

logger = logging.getLogger("v2serve.server")


def _uvicorn_config(app: ASGIApp, settings: Settings, port: int, **extra: Any) -> uvicorn.Config:
    # lifespan off: the app is a plain router; v2serve starts and stops its own parts.
    kwargs: dict[str, Any] = {"host": settings.host, "port": port, "lifespan": "off"}
    kwargs["access_log"] = settings.debug
    if settings.logging_settings:
        kwargs["log_config"] = settings.logging_settings
    return uvicorn.Config(app, **kwargs, **extra)


def rest_config(app: ASGIApp, settings: Settings, options: ServerOptions) -> uvicorn.Config:
    """The REST listener: v2serve's hardened protocol (header timeout, header and URL
    limits, framing errors in JSON) and keep-alive, and
    ``shutdown_grace`` for requests in flight once it is told to exit."""
    return _uvicorn_config(
        app,
        settings,
        settings.http_port,
        root_path=settings.root_path,
        http=http_protocol(options),
        timeout_keep_alive=options.http_keep_alive_timeout,
        timeout_graceful_shutdown=options.shutdown_grace,
    )


def metrics_config(app: ASGIApp, settings: Settings) -> uvicorn.Config:
    return _uvicorn_config(app, settings, settings.metrics_port)


def http_server(config: uvicorn.Config) -> uvicorn.Server:
    """A uvicorn server that leaves signals to ``V2Server`` (see above)."""
    return SignalFreeServer(config)


async def serve_http(server: uvicorn.Server, sock: socket.socket) -> None:
    """Serve on ``sock``, bound and listening already (``runtimes.ports.listen``); the
    config's port is then only what was asked for, 0 included."""
    logger.info("HTTP server running on http://%s:%s", server.config.host, sock.getsockname()[1])
    await server.serve(sockets=[sock])


def stop_http(server: uvicorn.Server, force: bool = False) -> None:
    """Close the listener; requests in flight get ``timeout_graceful_shutdown`` unless
    ``force`` cancels them."""
    server.should_exit = True
    if force:
        server.force_exit = True
