"""v2serve's REST router: a table of V2 routes in front of small endpoints, on raw ASGI.

MLServer's FastAPI app spent about half of a small request's time in routing,
dependency solving and middlewares, mounted routes that are not V2 (``generate``, the
``*_stream`` routes, Swagger pages) and answered its own 404/405 as ``{"detail"}``,
which tritonclient cannot read. Here a route is a method, a path regex with named groups
and an endpoint; the first route whose path and method match serves. A path that no
route knows is a JSON 404, a known path with another method a JSON 405 with ``Allow``.
Every exception an endpoint raises is answered by the one renderer (``rest_errors``).
"""

import re
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

import orjson

from ..errors import MethodNotAllowed, NoSuchEndpoint
from .asgi import Receive, Scope, Send, read_body, respond, respond_error
from .rest_errors import JSON_CONTENT_TYPE, Headers

MODEL = r"/v2/models/(?P<model>[^/]+)(?:/versions/(?P<version>[^/]+))?"
"""A model path, with or without ``/versions/{v}``: the groups ``model`` and ``version``."""


@dataclass(frozen=True)
class RestRequest:
    scope: Scope
    receive: Receive
    params: dict[str, str | None]
    max_bytes: int

    def header(self, name: str) -> str | None:
        wanted = name.encode("latin-1")
        for key, value in self.scope["headers"]:
            if key == wanted:
                return str(value.decode("latin-1"))
        return None

    async def body(self) -> bytes:
        return await read_body(self.receive, self.max_bytes)


@dataclass
class RestResponse:
    status: int = 200
    body: bytes = b""
    headers: Headers = field(default_factory=list)


def json_response(content: Any, status: int = 200) -> RestResponse:
    return RestResponse(status, orjson.dumps(content), [JSON_CONTENT_TYPE])


Endpoint = Callable[[RestRequest], Awaitable[RestResponse]]


@dataclass(frozen=True)
class Route:
    method: str
    path: str
    """A regex matched against the whole path; named groups become ``params``."""
    endpoint: Endpoint


class RestRouter:
    def __init__(self, routes: Sequence[Route], max_bytes: int):
        self.routes = [(re.compile(f"^{route.path}$"), route) for route in routes]
        self.max_bytes = max_bytes

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            return  # no websockets; uvicorn runs without lifespan events
        path = _route_path(scope)
        method = scope["method"]
        try:
            endpoint, params = self._match(method, path)
            response = await endpoint(RestRequest(scope, receive, params, self.max_bytes))
        except Exception as exc:  # noqa: BLE001 - every failure is answered as JSON
            await respond_error(send, exc, where=f"{method} {path}")
            return
        await respond(send, response.status, response.body, response.headers)

    def _match(self, method: str, path: str) -> tuple[Endpoint, dict[str, str | None]]:
        wanted = "GET" if method == "HEAD" else method
        allowed: list[str] = []
        for pattern, route in self.routes:
            match = pattern.match(path)
            if match is None:
                continue
            if route.method == wanted:
                return route.endpoint, match.groupdict()
            allowed.append(route.method)
        if allowed:
            raise MethodNotAllowed(method, path, allowed)
        raise NoSuchEndpoint(method, path)


def _route_path(scope: Scope) -> str:
    """The path below ``root_path``, without one trailing slash (MLServer redirected it)."""
    path: str = scope["path"]
    root = scope.get("root_path", "")
    if root and path.startswith(root):
        path = path[len(root) :]
    if len(path) > 1 and path.endswith("/"):
        path = path[:-1]
    return path
