"""A bearer token in front of the control APIs, over REST and gRPC.

Anyone who can reach the port could otherwise unload every model. As Triton's
``--http-restricted-api``, one token guards the repository (index, load, unload),
statistics, model configuration, and the trace and log settings; inference, metadata and
health stay open. The token is compared in constant time and never written to a message
or a log.
"""

import hmac
import re
from collections.abc import Awaitable, Callable
from typing import Any

import grpc
from grpc import aio
from starlette.types import ASGIApp, Receive, Scope, Send

from ..errors import SettingsError, Unauthenticated
from ..settings import ServerOptions
from .asgi import respond_error
from .grpc.errors import abort

_GUARDED_PATHS = re.compile(
    r"^/v2/(?:repository(?:/.*)?|models/stats/?"
    r"|models/[^/]+(?:/versions/[^/]+)?/(?:stats|config)/?"
    r"|(?:models/[^/]+/)?trace/setting/?|logging/?)$"
)
GUARDED_GRPC_METHODS = frozenset(
    {
        "RepositoryIndex",
        "RepositoryModelLoad",
        "RepositoryModelUnload",
        "ModelStatistics",
        "ModelConfig",
        "TraceSetting",
        "LogSettings",
    }
)


def resolve_control_token(options: ServerOptions) -> str | None:
    """The token from the option, else from the file it names; None leaves the APIs open."""
    if options.control_token is not None:
        token = options.control_token.get_secret_value().strip()
        source = "control_token"
    elif options.control_token_file is not None:
        try:
            token = options.control_token_file.read_text().strip()
        except OSError as exc:
            raise SettingsError("control_token_file", f"cannot be read: {exc.strerror}") from exc
        source = f"control_token_file {options.control_token_file}"
    else:
        return None
    if not token:
        raise SettingsError(source, "the control token is empty")
    return token


def _check(expected: str, api: str, authorization: str | None) -> None:
    if authorization is None:
        raise Unauthenticated(api, "no authorization header")
    scheme, _, presented = authorization.partition(" ")
    if scheme.lower() != "bearer":
        raise Unauthenticated(api, "another scheme than Bearer")
    if not hmac.compare_digest(presented.strip().encode(), expected.encode()):
        raise Unauthenticated(api, "a wrong token")


class ControlTokenMiddleware:
    """Answers 401 ``{"error"}`` on a guarded REST route without the right bearer token."""

    def __init__(self, app: ASGIApp, token: str):
        self.app = app
        self.token = token

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "http":
            path = scope["path"]
            root = scope.get("root_path", "")
            if root and path.startswith(root):
                path = path[len(root) :]
            if _GUARDED_PATHS.match(path):
                header = next(
                    (v.decode("latin-1") for k, v in scope["headers"] if k == b"authorization"),
                    None,
                )
                try:
                    _check(self.token, path, header)
                except Unauthenticated as exc:
                    await _refuse(send, exc)
                    return
        await self.app(scope, receive, send)


async def _refuse(send: Send, exc: Unauthenticated) -> None:
    await respond_error(send, exc)  # the error carries its WWW-Authenticate header


class ControlTokenInterceptor(aio.ServerInterceptor):
    """UNAUTHENTICATED for a guarded gRPC method without ``authorization: Bearer <token>``."""

    def __init__(self, token: str):
        self.token = token

    async def intercept_service(
        self,
        continuation: Callable[[grpc.HandlerCallDetails], Awaitable[grpc.RpcMethodHandler]],
        handler_call_details: grpc.HandlerCallDetails,
    ) -> grpc.RpcMethodHandler:
        method = handler_call_details.method.rsplit("/", 1)[-1]
        if method in GUARDED_GRPC_METHODS:
            metadata = dict(handler_call_details.invocation_metadata or ())
            header = metadata.get("authorization")
            try:
                _check(self.token, method, header if isinstance(header, str) else None)
            except Unauthenticated as exc:
                return _refusing_handler(exc)
        return await continuation(handler_call_details)


def _refusing_handler(exc: Unauthenticated) -> grpc.RpcMethodHandler:
    """Every guarded method is unary, so the refusal is a unary handler."""

    async def refuse(request: Any, context: Any) -> Any:
        await abort(context, exc)

    return grpc.unary_unary_rpc_method_handler(refuse)
