"""The one gRPC error renderer: every gRPC path turns an exception into a status here.

Unary calls, the health service, the control-token interceptor and in-stream errors of
ModelStreamInfer all use ``grpc_status``, so a class of error has one code (from the HTTP
status it carries, ``runtimes.protocol.status``) and one wording whatever path raised it.
The message is bounded: gRPC sends it in a trailer, and a trailer over the client's
metadata limit replaces the real status with RESOURCE_EXHAUSTED "Stream removed".
"""

import logging
from typing import Any, NoReturn

import grpc
from grpc import aio
from mlserver.errors import MLServerError

from ...errors import DETAIL_LIMIT, clip
from ..status import GRPC_CODE_BY_HTTP_STATUS

logger = logging.getLogger("v2serve.grpc")
MESSAGE_LIMIT = DETAIL_LIMIT


def grpc_status(exc: BaseException) -> tuple[grpc.StatusCode, str]:
    """The code and message ``exc`` is answered with; INTERNAL for what is not ours."""
    if isinstance(exc, MLServerError):
        code = GRPC_CODE_BY_HTTP_STATUS.get(exc.status_code, grpc.StatusCode.UNKNOWN)
        return code, clip(exc, MESSAGE_LIMIT)
    return grpc.StatusCode.INTERNAL, clip(
        f"internal error: {type(exc).__name__}: {exc}", MESSAGE_LIMIT
    )


def log_unexpected(exc: BaseException) -> None:
    if not isinstance(exc, MLServerError):
        logger.error("unexpected error on a gRPC call", exc_info=exc)


async def abort(context: Any, exc: BaseException) -> NoReturn:
    """End the call with ``exc``'s status; an abort already under way passes through."""
    if isinstance(exc, aio.AbortError):
        raise exc
    log_unexpected(exc)
    code, message = grpc_status(exc)
    await context.abort(code, message)
    raise AssertionError("ServicerContext.abort returned")  # it always raises
