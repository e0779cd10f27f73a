"""A cap on REST request bodies, enforced before the body is read into memory.

A declared ``Content-Length`` above the limit is refused at once; a chunked body is counted
as it streams and refused the moment it passes the limit. Either way the answer is 413
``{"error"}`` and the application never sees the rest of the body.
"""

from starlette.types import ASGIApp, Message, Receive, Scope, Send

from ..errors import RequestTooLarge
from ..settings import DEFAULT_MAX_REQUEST_SIZE
from .asgi import respond_error


class BodySizeLimit:
    def __init__(self, app: ASGIApp, max_bytes: int = DEFAULT_MAX_REQUEST_SIZE):
        self.app = app
        self.max_bytes = max_bytes

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        declared = _content_length(scope)
        if declared is not None and declared > self.max_bytes:
            await _refuse(send, declared, self.max_bytes)
            return

        received = 0
        refused = False

        async def counted_receive() -> Message:
            nonlocal received, refused
            if refused:
                return {"type": "http.disconnect"}
            message = await receive()
            if message["type"] == "http.request":
                received += len(message.get("body", b""))
                if received > self.max_bytes:
                    refused = True
                    await _refuse(send, received, self.max_bytes)
                    return {"type": "http.disconnect"}
            return message

        async def guarded_send(message: Message) -> None:
            if not refused:
                await send(message)

        try:
            await self.app(scope, counted_receive, guarded_send)
        except Exception:
            # The app fails on the disconnect we fed it; the 413 has been sent already.
            if not refused:
                raise


def _content_length(scope: Scope) -> int | None:
    for key, value in scope["headers"]:
        if key == b"content-length":
            try:
                return int(value)
            except ValueError:
                return None
    return None


async def _refuse(send: Send, size: int, limit: int) -> None:
    await respond_error(send, RequestTooLarge(size, limit), [(b"connection", b"close")])

