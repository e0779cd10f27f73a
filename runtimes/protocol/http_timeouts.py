"""The REST connection's HTTP/1.1 protocol: uvicorn's httptools one (several times faster
than its h11 one), hardened where a client can hold or break a connection before any ASGI
code runs.

- **Header timeout.** uvicorn times only idle keep-alive connections, and starts that
  timer after a response: a connection that never sends a request, or sends half its
  headers, stays open for ever (slowloris). Here a request's headers must be complete
  within ``header_timeout`` seconds of its first bytes (or of the connection). The timer
  runs only while headers are being read: never while a request is served, so a slow
  request pipelined behind another keeps its connection. If headers are overdue while an
  earlier request still runs, the connection is closed once that response is sent.
- **Header and URL limits.** llhttp has none, and httptools joins the pieces of an
  unfinished header line by concatenation: one endless header line was buffered to
  70-80 MB and stalled every other request. The head (request line and headers) is
  capped at ``max_header_bytes`` (431) and the URL at ``max_url_bytes`` (414), counted
  as the bytes arrive, so an endless line is cut off at the limit (plus at most the one
  read that crossed it).
- **Malformed framing** (``Content-Length: abc``, two Content-Lengths, Content-Length
  with Transfer-Encoding, a NUL in a header...) gets a 400 ``{"error"}`` that names
  llhttp's reason, not uvicorn's plain-text "Invalid HTTP request received.".

Every refusal is JSON ``{"error"}`` with ``connection: close``, answered in order: a
refused request pipelined behind one still running is answered after that response. The
only exception is a body that breaks once its own response has started: that connection
is closed, as there is nothing valid left to say on it.

The counting is per read (headers are added up only when a read could cross the limit),
never per byte or per header in Python. It relies on
uvicorn's HttpToolsProtocol internals (``parser``, ``cycle``, ``pipeline``, ``url``,
``flow``, ``server_state``); tests/unit/test_http_protocol.py drives the class with a
fake transport, so an upgrade that moves them fails there.
"""

import asyncio
import http
import logging

import httptools

from ..errors import HeadersTooLarge, MalformedRequest, URLTooLong, V2ServeError
from ..platform import HttpToolsProtocol
from ..settings import ServerOptions
from .rest_errors import render_error

logger = logging.getLogger("v2serve.rest")


class _Refused(Exception):
    """Raised from a parser callback to stop llhttp; the refusal itself is on the protocol."""


class HardenedHttpProtocol(HttpToolsProtocol):
    header_timeout: float = ServerOptions.model_fields["http_header_timeout"].default
    max_header_bytes: int = ServerOptions.model_fields["max_header_bytes"].default
    max_url_bytes: int = ServerOptions.model_fields["max_url_bytes"].default

    # Per-connection state; class-level defaults, set on the instance as it changes.
    _header_timer: asyncio.TimerHandle | None = None
    _in_headers = False
    """Between a message's first byte and the end of its headers."""
    _at_boundary = True
    """No message is half-read: the next byte begins a new one."""
    _messages_begun = 0
    _head_stream_bytes = 0
    """Bytes of the reads known to lie wholly inside the head being read, an unfinished
    header line (which httptools is still joining) included."""
    _read_bytes = 0
    """Size of the read being parsed."""
    _headers_overdue = False
    _refusal: V2ServeError | None = None

    # Header timer

    def _arm_header_timer(self) -> None:
        self._cancel_header_timer()
        self._header_timer = self.loop.call_later(self.header_timeout, self._on_header_timeout)

    def _cancel_header_timer(self) -> None:
        if self._header_timer is not None:
            self._header_timer.cancel()
            self._header_timer = None

    def _serving(self) -> bool:
        """A request whose headers are complete has not been answered yet (``cycle`` is
        the latest such request, so the ones before it are queued or running)."""
        return self.cycle is not None and not self.cycle.response_complete

    def _on_header_timeout(self) -> None:
        self._header_timer = None
        if self._serving():
            self._headers_overdue = True  # close once the responses owed before it are sent
        elif not self.transport.is_closing():
            self.transport.close()

    # asyncio protocol

    def connection_made(self, transport: asyncio.Transport) -> None:  # type: ignore[override]
        super().connection_made(transport)
        self._arm_header_timer()

    def connection_lost(self, exc: Exception | None) -> None:
        self._cancel_header_timer()
        super().connection_lost(exc)

    def data_received(self, data: bytes) -> None:
        if self._refusal is not None:
            return  # the parser stopped at the refused request; nothing after it is read
        self._unset_keepalive_if_required()
        began, from_boundary = self._messages_begun, self._at_boundary
        self._read_bytes = len(data)
        try:
            self.parser.feed_data(data)
        except httptools.HttpParserUpgrade:
            if self._should_upgrade():
                self.handle_websocket_upgrade()
            else:
                self._unsupported_upgrade_warning()
            return
        except httptools.HttpParserError as exc:
            self._refuse(self._refusal or MalformedRequest(str(exc)))
            return
        if self._in_headers:
            new_messages = self._messages_begun - began
            if new_messages == 0 or (new_messages == 1 and from_boundary):
                self._head_stream_bytes += len(data)
                if self._head_stream_bytes > self.max_header_bytes:
                    self._refuse(HeadersTooLarge(self._head_stream_bytes, self.max_header_bytes))
                    return
            if self._header_timer is None:
                self._arm_header_timer()
        elif self._header_timer is None and not self._serving() and not self.transport.is_closing():
            self._arm_header_timer()  # bytes that begin no request (blank lines) start it too

    # httptools callbacks

    def on_message_begin(self) -> None:
        super().on_message_begin()
        self._in_headers = True
        self._at_boundary = False
        self._messages_begun += 1
        self._head_stream_bytes = 0

    def on_url(self, url: bytes) -> None:
        self.url += url
        if len(self.url) > self.max_url_bytes:
            self._refusal = URLTooLong(len(self.url), self.max_url_bytes)
            raise _Refused

    def on_headers_complete(self) -> None:
        # The read that ends the head is not in _head_stream_bytes (it may hold a body
        # too); only when that read could take the head past the limit are the parsed
        # headers added up, so a normal request pays one comparison.
        if self._head_stream_bytes + self._read_bytes > self.max_header_bytes:
            size = len(self.url) + sum(len(name) + len(value) + 4 for name, value in self.headers)
            if size > self.max_header_bytes:
                self._refusal = HeadersTooLarge(size, self.max_header_bytes)
                raise _Refused
        self._in_headers = False
        self._headers_overdue = False
        self._cancel_header_timer()
        super().on_headers_complete()

    def on_message_complete(self) -> None:
        self._at_boundary = True
        super().on_message_complete()

    def on_response_complete(self) -> None:
        more_queued = bool(self.pipeline)
        super().on_response_complete()
        if more_queued or self.transport.is_closing():
            return
        if self._refusal is not None:
            self._send_refusal()
        elif self._headers_overdue and self._in_headers:
            self.transport.close()

    # Refusals

    def _refuse(self, error: V2ServeError) -> None:
        """Answer ``error`` and close, after the responses owed before it."""
        in_headers = self._in_headers
        self._in_headers = False
        self._cancel_header_timer()
        self._refusal = error
        self.flow.pause_reading()
        cycle = self.cycle
        if cycle is None or cycle.response_complete:
            self._send_refusal()
            return
        queued = [entry for entry in self.pipeline if entry[0] is cycle]
        if queued:
            # Its body broke while it waited behind a running request: it never runs,
            # and the refusal is sent when the requests before it are answered.
            self.pipeline.remove(queued[0])
            return
        if in_headers:
            return  # an earlier request is running; on_response_complete answers this one
        # The refused request's own body broke while its app runs: the app now reads
        # http.disconnect and whatever it sends is dropped.
        cycle.disconnected = True
        cycle.message_event.set()
        if cycle.response_started:
            logger.warning("closing a REST connection: %s", error)
            self.transport.close()
        else:
            self._send_refusal()

    def _send_refusal(self) -> None:
        error = self._refusal
        assert error is not None
        if self.transport.is_closing():
            return
        logger.warning("refused a REST request: %s", error)
        # The one REST renderer: the same body and headers (the error's own included) as
        # every route; only the status line and framing are written here.
        status, headers, body = render_error(error)
        head = [f"HTTP/1.1 {status} {http.HTTPStatus(status).phrase}\r\n".encode()]
        for name, value in [*self.server_state.default_headers, *headers]:
            head += [name, b": ", value, b"\r\n"]
        head += [
            b"content-length: %d\r\n" % len(body),
            b"connection: close\r\n\r\n",
            body,
        ]
        self.transport.write(b"".join(head))
        self.transport.close()


def http_protocol(options: ServerOptions) -> type[HardenedHttpProtocol]:
    """The protocol class for uvicorn's ``Config(http=...)``, configured from ``options``."""
    settings = {
        "header_timeout": options.http_header_timeout,
        "max_header_bytes": options.max_header_bytes,
        "max_url_bytes": options.max_url_bytes,
    }
    return type("HardenedHttpProtocol", (HardenedHttpProtocol,), settings)
