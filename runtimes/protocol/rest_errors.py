"""The one REST error renderer: every path (router, infer, guards, control API) answers
an error as JSON ``{"error": "..."}``, as the V2 spec says, with the status and the
headers the error carries (``Retry-After``, ``WWW-Authenticate``).

An exception outside the hierarchy is a bug: it is logged with its traceback and
answered as a 500 with one wording, the same as the gRPC service's.
"""

import logging

import orjson
from mlserver.errors import MLServerError

from ..errors import V2ServeError

logger = logging.getLogger("v2serve.rest")

Headers = list[tuple[bytes, bytes]]
JSON_CONTENT_TYPE = (b"content-type", b"application/json")


def unexpected_error_message(exc: BaseException) -> str:
    return f"internal error: {type(exc).__name__}: {exc}"


def render_error(exc: BaseException, where: str = "") -> tuple[int, Headers, bytes]:
    """(status, headers, body) for any exception; ``where`` names the route in the log."""
    if isinstance(exc, MLServerError):
        status = exc.status_code
        message = str(exc)
    else:
        logger.error("unexpected error on %s", where or "a REST route", exc_info=exc)
        status = 500
        message = unexpected_error_message(exc)
    headers = [JSON_CONTENT_TYPE]
    if isinstance(exc, V2ServeError):
        headers.extend((k.encode("latin-1"), v.encode("latin-1")) for k, v in exc.headers.items())
    return status, headers, orjson.dumps({"error": message})
