"""The REST inference route, served in front of MLServer's FastAPI stack.

About half of vanilla MLServer's time per small request goes to the FastAPI/Starlette
stack (routing, dependency solving, pydantic body parsing, middlewares). Inference is the
hot path, so this ASGI layer answers ``POST /v2/models/{m}[/versions/{v}]/infer`` itself:
orjson and numpy straight from the body, the same DataPlane and runtime behind it, the
same ``{"error"}`` shapes. Every other route falls through to MLServer's app.
"""

import logging
import re
import zlib

import orjson
from mlserver.errors import MLServerError
from starlette.types import ASGIApp, Receive, Scope, Send

from ..dataplane import V2DataPlane
from ..errors import InvalidPayload, RequestTooLarge, TooManyRequests
from .asgi import respond
from .rest_codec import HEADER_LENGTH, parse_request, render_response

logger = logging.getLogger("v2serve.rest")
_INFER = re.compile(r"^/v2/models/([^/]+)(?:/versions/([^/]+))?/infer$")
_JSON = b"application/json"
_BINARY = b"application/octet-stream"


async def _read_body(receive: Receive, limit: int) -> bytes:
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


def _decompress(body: bytes, encoding: str, limit: int) -> bytes:
    try:
        if encoding == "gzip":
            decompressor = zlib.decompressobj(16 + zlib.MAX_WBITS)
        elif encoding == "deflate":
            decompressor = zlib.decompressobj()
        else:
            raise InvalidPayload(f"unsupported Content-Encoding '{encoding}'")
        data = decompressor.decompress(body, limit + 1)
    except zlib.error as exc:
        raise InvalidPayload(f"the {encoding} body cannot be decompressed: {exc}") from exc
    if len(data) > limit:
        raise RequestTooLarge(len(data), limit)
    # Exactly one complete member and nothing after it: zlib stops at the end of the
    # first, and whatever follows (a second member, trailing bytes) would be ignored.
    if not decompressor.eof:
        raise InvalidPayload(f"the {encoding} body is truncated")
    if decompressor.unused_data:
        raise InvalidPayload(
            f"{len(decompressor.unused_data)} bytes follow the end of the {encoding} stream; "
            "a body must be exactly one compressed member"
        )
    return data


def _error(exc: Exception) -> tuple[int, bytes]:
    if isinstance(exc, MLServerError):
        return exc.status_code, orjson.dumps({"error": str(exc)})
    logger.error("unexpected error on the REST infer route", exc_info=exc)
    return 500, orjson.dumps({"error": f"internal error: {type(exc).__name__}: {exc}"})


class RestInferFastPath:
    def __init__(self, app: ASGIApp, data_plane: V2DataPlane, max_bytes: int):
        self.app = app
        self.data_plane = data_plane
        self.max_bytes = max_bytes

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "http" and scope["method"] == "POST":
            match = _INFER.match(scope["path"])
            if match is not None:
                await self._infer(scope, receive, send, match.group(1), match.group(2))
                return
        await self.app(scope, receive, send)

    async def _infer(
        self, scope: Scope, receive: Receive, send: Send, model: str, version: str | None
    ) -> None:
        headers = {
            key.decode("latin-1"): value.decode("latin-1") for key, value in scope["headers"]
        }
        try:
            body = await _read_body(receive, self.max_bytes)
            encoding = headers.get("content-encoding", "identity").lower()
            if encoding != "identity":
                body = _decompress(body, encoding, self.max_bytes)
            request = parse_request(model, body, headers.get(HEADER_LENGTH), headers)
            response = await self.data_plane.infer(request, model, version)
            payload, header_length = render_response(request, response)
        except Exception as exc:  # noqa: BLE001 - every failure becomes a JSON error
            status, payload = _error(exc)
            error_headers = [(b"content-type", _JSON)]
            if isinstance(exc, TooManyRequests):
                error_headers.append((b"retry-after", str(exc.retry_after_seconds).encode()))
            await respond(send, status, payload, error_headers)
            return
        extra: list[tuple[bytes, bytes]] = []
        if response.parameters is not None and response.parameters.headers:
            extra = [
                (k.lower().encode(), str(v).encode())
                for k, v in response.parameters.headers.items()
            ]
        if header_length is None:
            await respond(send, 200, payload, [(b"content-type", _JSON), *extra])
        else:
            length = (HEADER_LENGTH.encode(), str(header_length).encode())
            await respond(send, 200, payload, [(b"content-type", _BINARY), length, *extra])
