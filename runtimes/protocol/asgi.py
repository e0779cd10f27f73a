"""Raw ASGI plumbing shared by the router, the infer route and the guards in front of
them: reading a bounded body and sending a whole response, errors through the one
renderer (``rest_errors``)."""

from collections.abc import Awaitable, Callable, MutableMapping
from typing import Any

from ..errors import InvalidPayload, RequestTooLarge
from .rest_errors import Headers, render_error

Scope = MutableMapping[str, Any]
Message = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[Message]]
Send = Callable[[Message], Awaitable[None]]
ASGIApp = Callable[[Scope, Receive, Send], Awaitable[None]]


async def respond(send: Send, status: int, body: bytes, headers: Headers) -> None:
    await send(
        {
            "type": "http.response.start",
            "status": status,
            "headers": [*headers, (b"content-length", str(len(body)).encode())],
        }
    )
    await send({"type": "http.response.body", "body": body})


async def respond_error(
    send: Send, error: BaseException, headers: Headers | None = None, where: str = ""
) -> None:
    """Answer ``error`` as rendered once for every path, plus any path-specific headers."""
    status, rendered, body = render_error(error, where)
    await respond(send, status, body, [*rendered, *(headers or [])])


async def read_body(receive: Receive, limit: int) -> bytes:
    """The whole request body, refused with 413 the moment it passes ``limit`` bytes."""
    chunks: list[bytes] = []
    size = 0
    while True:
        message = await receive()
        if message["type"] != "http.request":
            raise InvalidPayload("the client went away before sending the whole body")
        chunk = message.get("body", b"")
        size += len(chunk)
        if size > limit:
            raise RequestTooLarge(size, limit)
        chunks.append(chunk)
        if not message.get("more_body", False):
            return b"".join(chunks)


def header(scope: Scope, name: bytes) -> str | None:
    for key, value in scope["headers"]:
        if key == name:
            return str(value.decode("latin-1"))
    return None
