"""Sending a whole response from raw ASGI layers (the fast path and the guards in front
of MLServer's app), so each of them answers errors in the same ``{"error"}`` shape."""

import orjson
from mlserver.errors import MLServerError
from starlette.types import Send

Headers = list[tuple[bytes, bytes]]


async def respond(send: Send, status: int, body: bytes, headers: Headers) -> None:
    await send(
        {
            "type": "http.response.start",
            "status": status,
            "headers": [*headers, (b"content-length", str(len(body)).encode())],
        }
    )
    await send({"type": "http.response.body", "body": body})


async def respond_error(send: Send, error: MLServerError, headers: Headers | None = None) -> None:
    body = orjson.dumps({"error": str(error)})
    content_type = (b"content-type", b"application/json")
    await respond(send, error.status_code, body, [content_type, *(headers or [])])
