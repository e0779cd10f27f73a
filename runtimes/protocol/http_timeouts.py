"""Explicit REST connection timeouts, so idle or half-sent connections cannot pile up.

uvicorn closes an idle keep-alive connection after ``timeout_keep_alive``, but it starts
that timer only after a response: a connection that never sends a request, or sends
half its headers, stays open for ever (slowloris). Each such connection costs a file
descriptor, not the event loop, so it does not block other requests; still, enough of
them exhaust the descriptors. Here the HTTP protocol also gives every request
``header_timeout`` seconds, counted from the connection (or the previous response), to
complete its headers, and closes the connection otherwise.
"""

import asyncio

from ..platform import HttpToolsProtocol


class HeaderTimeoutProtocol(HttpToolsProtocol):
    """uvicorn's httptools protocol (several times faster than its h11 one) with a timer
    on each request's headers."""

    header_timeout: float = 10.0
    _header_timer: asyncio.TimerHandle | None = None

    def _arm_header_timer(self) -> None:
        self._cancel_header_timer()
        self._header_timer = self.loop.call_later(self.header_timeout, self._headers_overdue)

    def _cancel_header_timer(self) -> None:
        if self._header_timer is not None:
            self._header_timer.cancel()
            self._header_timer = None

    def _headers_overdue(self) -> None:
        self._header_timer = None
        if not self.transport.is_closing():
            self.transport.close()

    def connection_made(self, transport: asyncio.Transport) -> None:  # type: ignore[override]
        super().connection_made(transport)
        self._arm_header_timer()

    def on_headers_complete(self) -> None:
        self._cancel_header_timer()
        super().on_headers_complete()

    def on_response_complete(self) -> None:
        super().on_response_complete()
        if not self.transport.is_closing():
            self._arm_header_timer()

    def connection_lost(self, exc: Exception | None) -> None:
        self._cancel_header_timer()
        super().connection_lost(exc)


def header_timeout_protocol(header_timeout: float) -> type[HeaderTimeoutProtocol]:
    """The protocol class for ``uvicorn.Config(http=...)``, with this header timeout."""
    return type(
        "HeaderTimeoutProtocol", (HeaderTimeoutProtocol,), {"header_timeout": header_timeout}
    )
