"""CORS for every REST route, from MLServer's ``cors_settings``.

MLServer's CORS middleware sat inside its FastAPI app, behind v2serve's infer route, so a
browser could read ``GET /v2`` but not an inference answer. This layer is the outermost
one: preflights (``OPTIONS`` with ``Access-Control-Request-Method``) are answered here,
before the control token is asked for, and every answer to an allowed origin, errors
included, carries the CORS headers, as Starlette's ``CORSMiddleware`` does.
"""

import re

from mlserver.settings import CORSSettings

from ..errors import CorsRefused
from .asgi import ASGIApp, Message, Receive, Scope, Send, header, respond, respond_error

ALL_METHODS = ("DELETE", "GET", "HEAD", "OPTIONS", "PATCH", "POST", "PUT")
SAFELISTED_HEADERS = frozenset({"accept", "accept-language", "content-language", "content-type"})


class CorsPolicy:
    """What ``cors_settings`` allows, answered per origin, method and header list."""

    def __init__(self, settings: CORSSettings):
        origins = list(settings.allow_origins or [])
        self.any_origin = "*" in origins
        self.origins = frozenset(origins)
        self.origin_regex = (
            re.compile(settings.allow_origin_regex) if settings.allow_origin_regex else None
        )
        methods = [m.upper() for m in settings.allow_methods or []]
        self.methods = ALL_METHODS if "*" in methods else tuple(methods)
        headers = [h.lower() for h in settings.allow_headers or []]
        self.any_header = "*" in headers
        self.headers = SAFELISTED_HEADERS | frozenset(headers)
        self.credentials = bool(settings.allow_credentials)
        self.expose = ", ".join(settings.expose_headers or [])
        self.max_age = settings.max_age

    def allows_origin(self, origin: str) -> bool:
        if self.any_origin or origin in self.origins:
            return True
        return self.origin_regex is not None and self.origin_regex.fullmatch(origin) is not None

    def _origin_headers(self, origin: str) -> list[tuple[bytes, bytes]]:
        if self.any_origin and not self.credentials:
            found = [(b"access-control-allow-origin", b"*")]
        else:
            found = [(b"access-control-allow-origin", origin.encode("latin-1"))]
            found.append((b"vary", b"Origin"))
        if self.credentials:
            found.append((b"access-control-allow-credentials", b"true"))
        return found

    def simple_headers(self, origin: str) -> list[tuple[bytes, bytes]]:
        found = self._origin_headers(origin)
        if self.expose:
            found.append((b"access-control-expose-headers", self.expose.encode("latin-1")))
        return found

    def preflight(
        self, origin: str, method: str, requested: str | None
    ) -> list[tuple[bytes, bytes]]:
        """The preflight answer's headers; CorsRefused names what is not allowed."""
        if not self.allows_origin(origin):
            raise CorsRefused("origin", origin)
        if method.upper() not in self.methods:
            raise CorsRefused("method", method)
        asked = [h.strip().lower() for h in (requested or "").split(",") if h.strip()]
        refused = [h for h in asked if h not in self.headers]
        if refused and not self.any_header:
            raise CorsRefused("headers", ", ".join(refused))
        allowed_headers = ", ".join(asked) if self.any_header else ", ".join(sorted(self.headers))
        found = self._origin_headers(origin)
        found.append((b"access-control-allow-methods", ", ".join(self.methods).encode()))
        if allowed_headers:
            found.append((b"access-control-allow-headers", allowed_headers.encode("latin-1")))
        if self.max_age is not None:
            found.append((b"access-control-max-age", str(self.max_age).encode()))
        return found


class CorsMiddleware:
    def __init__(self, app: ASGIApp, settings: CORSSettings):
        self.app = app
        self.policy = CorsPolicy(settings)

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        origin = header(scope, b"origin") if scope["type"] == "http" else None
        if origin is None:
            await self.app(scope, receive, send)
            return
        requested_method = header(scope, b"access-control-request-method")
        if scope["method"] == "OPTIONS" and requested_method is not None:
            await self._preflight(send, origin, requested_method, scope)
            return
        if not self.policy.allows_origin(origin):
            await self.app(scope, receive, send)
            return
        extra = self.policy.simple_headers(origin)

        async def with_cors(message: Message) -> None:
            if message["type"] == "http.response.start":
                message = {**message, "headers": [*message.get("headers", []), *extra]}
            await send(message)

        await self.app(scope, receive, with_cors)

    async def _preflight(self, send: Send, origin: str, method: str, scope: Scope) -> None:
        try:
            headers = self.policy.preflight(
                origin, method, header(scope, b"access-control-request-headers")
            )
        except CorsRefused as exc:
            await respond_error(send, exc)
            return
        await respond(send, 200, b"", [*headers, (b"content-type", b"text/plain")])
