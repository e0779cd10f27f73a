"""Request deadlines, and whether the caller is still there to hear the answer.

A request's deadline comes from the gRPC deadline, Triton's ``timeout`` request parameter
(parsed in ``runtimes.protocol.timeouts``), or the model's ``default_timeout_ms``,
whichever is earliest. What the layers below the protocol adapters do with it:

- A request whose deadline passes while it *waits* (admission in the data plane, the
  batching queue, a model's executor queue) is dropped before it runs: 504 over REST,
  DEADLINE_EXCEEDED over gRPC. Its rows never reach the estimator.
- A request that is already *running* completes: the estimator's work cannot be
  interrupted, and the answer still goes to a caller who waited for it.
- The answer of a caller who is *gone* (a cancelled gRPC call, a closed REST connection)
  is not stored in the response cache, and a gone caller's request that still waits is
  dropped too (answered 499 / CANCELLED, which nobody reads).

The deadline travels explicitly: each adapter attaches a ``Caller`` to the request it
builds (``attach``), and the data plane and the runtime read it back (``caller_of``).
The clock is ``time.monotonic``, CLOCK_MONOTONIC on Linux, which every process of the
host shares: a deadline pickled to a parallel-inference worker means the same there
(the probe of the caller's connection does not travel; it stays in the serving process).
"""

import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from mlserver.types import InferenceRequest

from .errors import CallerGone, DeadlineExceeded, V2ServeError

_ATTRIBUTE = "_v2serve_caller"
"""Where the caller sits on an InferenceRequest: not a field, so never dumped."""


@dataclass(frozen=True, slots=True)
class Deadline:
    """The moment, on ``time.monotonic()``'s clock, after which a request is not worth running."""

    expires_at: float

    @classmethod
    def after(cls, seconds: float, now: float | None = None) -> "Deadline":
        return cls((time.monotonic() if now is None else now) + seconds)

    def expired(self, now: float | None = None) -> bool:
        return (time.monotonic() if now is None else now) >= self.expires_at

    def remaining(self, now: float | None = None) -> float:
        """Seconds left, never negative."""
        return max(0.0, self.expires_at - (time.monotonic() if now is None else now))


def earliest(*deadlines: Deadline | None) -> Deadline | None:
    given = [deadline for deadline in deadlines if deadline is not None]
    return min(given, key=lambda deadline: deadline.expires_at) if given else None


def _present() -> bool:
    return False


class Caller:
    """One request's caller, as the data plane and the runtime see it.

    ``gone`` is a cheap probe of the caller's connection, asked only where it matters
    (when a queued request is taken, before an answer is cached), never polled.
    """

    __slots__ = ("model", "arrived", "deadline", "_gone")

    def __init__(
        self,
        model: str,
        arrived: float,
        deadline: Deadline | None = None,
        gone: Callable[[], bool] = _present,
    ):
        self.model = model
        self.arrived = arrived
        """``time.monotonic()`` when the server started on the request."""
        self.deadline = deadline
        self._gone = gone

    def gone(self) -> bool:
        return self._gone()

    def with_default(self, timeout_ms: int | None) -> "Caller":
        """This caller, with the model's default deadline if the request brought none."""
        if self.deadline is not None or not timeout_ms:
            return self
        deadline = Deadline(self.arrived + timeout_ms / 1000)
        return Caller(self.model, self.arrived, deadline, self._gone)

    def expired(self, now: float | None = None) -> bool:
        return self.deadline is not None and self.deadline.expired(now)

    def abandoned(self, now: float | None = None) -> bool:
        """Whether a request that has not started yet should be dropped instead of run."""
        return self.expired(now) or self.gone()

    def dropped(self, where: str, now: float | None = None) -> V2ServeError:
        """The error a request dropped ``where`` (e.g. "in the batching queue") is answered with."""
        waited = (time.monotonic() if now is None else now) - self.arrived
        if self.deadline is not None and self.deadline.expired(now):
            allowed = self.deadline.expires_at - self.arrived
            return DeadlineExceeded(
                self.model, allowed, waited, f"it was dropped {where} and not run"
            )
        return CallerGone(self.model, waited, where)

    def timed_out(self, outcome: str, now: float | None = None) -> DeadlineExceeded | None:
        """What a request that ended with ``outcome`` (e.g. cancelled by gRPC) counts as,
        if its deadline had passed: a timeout, not a caller who changed their mind.

        The client's clock starts before the server's (the gRPC deadline is sent as a
        relative timeout, read on arrival), so a client that gives up at its deadline is
        seen cancelling up to a transit time early: within CANCEL_GRACE of the deadline,
        a cancellation is that deadline's."""
        moment = time.monotonic() if now is None else now
        if self.deadline is None or not self.deadline.expired(moment + CANCEL_GRACE):
            return None
        waited = moment - self.arrived
        return DeadlineExceeded(
            self.model, self.deadline.expires_at - self.arrived, waited, outcome
        )

    def __reduce__(self) -> tuple[Any, ...]:
        # The probe reads this process's connection; another process gets the deadline only.
        return (Caller, (self.model, self.arrived, self.deadline))

    def __repr__(self) -> str:
        return f"Caller({self.model!r}, arrived={self.arrived}, deadline={self.deadline})"


CANCEL_GRACE = 0.25
"""Seconds before its deadline within which a cancelled call counts as timed out."""


def attach(payload: InferenceRequest, caller: Caller) -> None:
    """Give the request built by a protocol adapter its caller."""
    # Straight into the instance's __dict__, where pydantic's own __setattr__ would put an
    # undeclared underscore name too, at a quarter of its cost (this runs on every request).
    object.__setattr__(payload, _ATTRIBUTE, caller)


def caller_of(payload: InferenceRequest) -> Caller | None:
    """The caller an adapter attached, or None (a request built elsewhere, e.g. by MLServer)."""
    found = payload.__dict__.get(_ATTRIBUTE)
    return found if isinstance(found, Caller) else None
