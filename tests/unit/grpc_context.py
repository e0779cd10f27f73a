"""A small stand-in for ``grpc.aio.ServicerContext``: what a handler reads and how it aborts.

Not a fake server: handlers are called directly, and ``abort`` raises ``AbortError`` as
grpc.aio's does, after recording the code and details the client would have seen.
"""

from typing import Any

import grpc
from grpc import aio


class FakeContext:
    def __init__(
        self, metadata: tuple[tuple[str, str], ...] = (), time_remaining: float | None = None
    ):
        self.metadata = metadata
        self.remaining = time_remaining
        self.is_cancelled = False
        self.aborted: tuple[grpc.StatusCode, str] | None = None
        self._code: grpc.StatusCode | None = None

    def invocation_metadata(self) -> tuple[tuple[str, str], ...]:
        return self.metadata

    async def abort(self, code: grpc.StatusCode, details: str = "") -> Any:
        if self.aborted is not None:
            raise RuntimeError("abort called twice")
        self.aborted = (code, details)
        self._code = code
        raise aio.AbortError()

    def code(self) -> grpc.StatusCode | None:
        return self._code

    def time_remaining(self) -> float | None:
        """The client's gRPC deadline, in seconds from now; None without one."""
        return self.remaining

    def cancelled(self) -> bool:
        return self.is_cancelled
