"""A request's deadline and caller, read from the wire: the ``Caller`` each adapter attaches.

- Triton's ``timeout`` request parameter (its schedule-policy extension): an int64 of
  microseconds, which tritonclient's ``infer(timeout=...)`` sends in the JSON body's
  ``parameters`` over REST and as ``int64_param`` over gRPC. 0 means "the model's
  default", as in Triton. Anything but a non-negative integer is a 400 that names it.
- The gRPC deadline (``context.time_remaining()``); the earlier of the two wins.
- Whether the caller is gone: ``context.cancelled()`` over gRPC (a cancelled call, or one
  whose deadline passed), and over REST the ASGI ``http.disconnect`` that a closed
  connection leaves for ``receive()``.
"""

from collections.abc import Callable, Coroutine, Mapping
from typing import Any

from mlserver.types import Parameters

from ..deadlines import Caller, Deadline, earliest
from ..errors import InvalidPayload, clip
from .asgi import Receive

TIMEOUT_PARAMETER = "timeout"


def timeout_seconds(model: str, parameters: Parameters | None) -> float | None:
    """Triton's ``timeout`` parameter in seconds; None when absent or 0."""
    extra = parameters.__pydantic_extra__ if parameters is not None else None
    value = extra.get(TIMEOUT_PARAMETER) if extra else None
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, int) or value < 0:
        raise InvalidPayload(
            f"model '{clip(model)}': request parameter '{TIMEOUT_PARAMETER}' must be a "
            f"non-negative integer of microseconds, got {type(value).__name__} {clip(repr(value))}"
        )
    return value / 1_000_000 if value else None


def parameter_deadline(
    model: str, parameters: Parameters | None, arrived: float
) -> Deadline | None:
    seconds = timeout_seconds(model, parameters)
    return None if seconds is None else Deadline(arrived + seconds)


def rest_caller(
    model: str, parameters: Parameters | None, arrived: float, receive: Receive
) -> Caller:
    return Caller(
        model, arrived, parameter_deadline(model, parameters, arrived), disconnected(receive)
    )


def grpc_caller(model: str, parameters: Parameters | None, arrived: float, context: Any) -> Caller:
    remaining = context.time_remaining()
    grpc_deadline = None if remaining is None else Deadline(arrived + remaining)
    deadline = earliest(parameter_deadline(model, parameters, arrived), grpc_deadline)
    return Caller(model, arrived, deadline, context.cancelled)


def disconnected(receive: Receive) -> Callable[[], bool]:
    """A probe for a closed REST connection, to call once the body has been read.

    After the body, the only message left for ``receive()`` is ``http.disconnect``, and
    uvicorn hands it over without suspending once the connection is lost. So the probe
    steps ``receive()`` once: finished means gone; suspended means the connection is
    open, and the step is undone (closing the coroutine removes its waiter). No task is
    started for a request that never asks.
    """

    def gone() -> bool:
        pending = receive()
        if not isinstance(pending, Coroutine):
            return False
        step: Coroutine[Any, Any, Any] = pending
        try:
            step.send(None)
        except StopIteration as finished:
            message = finished.value
            return isinstance(message, Mapping) and message.get("type") == "http.disconnect"
        except Exception:  # noqa: BLE001 - a probe never fails the request it looks at
            return False
        step.close()
        return False

    return gone
