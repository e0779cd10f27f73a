"""The hardened httptools protocol, driven in-process with a fake asyncio transport.

The transport stands in for the socket only: uvicorn's real parser, request cycles and
pipelining run, and a tiny ASGI app answers (slowly when a test holds it).
"""

import asyncio
import json
from collections.abc import Callable, Iterator
from typing import Any

import pytest
from uvicorn.config import Config
from uvicorn.server import ServerState

from runtimes.protocol.http_timeouts import HardenedHttpProtocol, http_protocol
from runtimes.settings import ServerOptions


class FakeTransport(asyncio.Transport):
    def __init__(self) -> None:
        super().__init__()
        self.written = bytearray()
        self.closed = False
        self.reading = True

    def write(self, data: bytes | bytearray | memoryview) -> None:
        assert not self.closed, "written after close"
        self.written += data

    def close(self) -> None:
        self.closed = True

    def is_closing(self) -> bool:
        return self.closed

    def pause_reading(self) -> None:
        self.reading = False

    def resume_reading(self) -> None:
        self.reading = True

    def get_extra_info(self, name: str, default: Any = None) -> Any:
        return {"peername": ("127.0.0.1", 5000), "sockname": ("127.0.0.1", 8080)}.get(name, default)


class App:
    """Answers ``GET /slow`` only once ``release`` is set; everything else at once."""

    def __init__(self) -> None:
        self.release = asyncio.Event()
        self.bodies: list[bytes] = []

    async def __call__(self, scope: Any, receive: Any, send: Any) -> None:
        if scope["type"] != "http":
            return
        body = b""
        while True:
            message = await receive()
            if message["type"] == "http.disconnect":
                return
            body += message.get("body", b"")
            if not message.get("more_body"):
                break
        self.bodies.append(body)
        if scope["path"] == "/slow":
            await self.release.wait()
        payload = scope["path"].encode()
        await send(
            {
                "type": "http.response.start",
                "status": 200,
                "headers": [(b"content-length", str(len(payload)).encode())],
            }
        )
        await send({"type": "http.response.body", "body": payload})


class Connection:
    def __init__(self, protocol: HardenedHttpProtocol, transport: FakeTransport, app: App):
        self.protocol = protocol
        self.transport = transport
        self.app = app

    def send(self, data: bytes) -> None:
        self.protocol.data_received(data)

    def responses(self) -> list[tuple[int, bytes]]:
        """(status, body) of each complete response written so far."""
        found = []
        rest = bytes(self.transport.written)
        while rest:
            head, _, rest = rest.partition(b"\r\n\r\n")
            status = int(head.split(b" ", 2)[1])
            length = next(
                int(line.split(b":")[1])
                for line in head.split(b"\r\n")
                if line.lower().startswith(b"content-length")
            )
            found.append((status, rest[:length]))
            rest = rest[length:]
        return found

    def error(self) -> str:
        status, body = self.responses()[-1]
        assert status >= 400
        return str(json.loads(body)["error"])


def run(coroutine: Any) -> Any:
    return asyncio.run(coroutine)


async def settle(until: Callable[[], bool], timeout: float = 5.0) -> None:
    deadline = asyncio.get_running_loop().time() + timeout
    while not until():
        assert asyncio.get_running_loop().time() < deadline, "condition not met in time"
        await asyncio.sleep(0.005)


def connect(**options: Any) -> Connection:
    app = App()
    config = Config(app=app, lifespan="off", log_level="critical")
    protocol_class = http_protocol(ServerOptions(**options))
    protocol = protocol_class(config=config, server_state=ServerState(), app_state={})
    transport = FakeTransport()
    protocol.connection_made(transport)
    return Connection(protocol, transport, app)


GET = b"GET %s HTTP/1.1\r\nHost: x\r\n\r\n"


@pytest.fixture
def loop() -> Iterator[asyncio.AbstractEventLoop]:
    found = asyncio.new_event_loop()
    yield found
    found.close()


def test_options_reach_the_protocol_class():
    cls = http_protocol(ServerOptions(http_header_timeout=3, max_header_bytes=2048))
    assert (cls.header_timeout, cls.max_header_bytes) == (3, 2048)
    assert issubclass(cls, HardenedHttpProtocol)


def test_a_normal_request_is_served_and_disarms_the_header_timer():
    async def scenario() -> None:
        conn = connect()
        assert conn.protocol._header_timer is not None  # armed on connect
        conn.send(GET % b"/fast")
        assert conn.protocol._header_timer is None
        await settle(lambda: len(conn.responses()) == 1)
        assert conn.responses() == [(200, b"/fast")]
        assert not conn.transport.closed

    run(scenario())


def test_a_pipelined_request_slower_than_the_header_timeout_keeps_its_connection():
    async def scenario() -> None:
        conn = connect(http_header_timeout=0.05)
        conn.send(GET % b"/fast" + GET % b"/slow")
        await settle(lambda: len(conn.responses()) == 1)
        # The slow request runs for several header timeouts; nothing may close under it.
        await asyncio.sleep(0.25)
        assert not conn.transport.closed
        assert conn.protocol._header_timer is None
        conn.app.release.set()
        await settle(lambda: len(conn.responses()) == 2)
        assert conn.responses() == [(200, b"/fast"), (200, b"/slow")]
        assert not conn.transport.closed

    run(scenario())


def test_half_sent_headers_are_closed_after_the_header_timeout():
    async def scenario() -> None:
        conn = connect(http_header_timeout=0.05)
        conn.send(GET % b"/fast")
        await settle(lambda: len(conn.responses()) == 1)
        conn.send(b"GET /fast HTTP/1.1\r\nHo")
        await settle(lambda: conn.transport.closed)
        assert len(conn.responses()) == 1

    run(scenario())


def test_blank_lines_that_begin_no_request_still_start_the_header_timer():
    async def scenario() -> None:
        conn = connect(http_header_timeout=0.05)
        conn.send(GET % b"/fast")
        await settle(lambda: len(conn.responses()) == 1)
        conn.send(b"\r\n")
        await settle(lambda: conn.transport.closed)

    run(scenario())


def test_headers_overdue_behind_a_running_request_close_after_its_response():
    async def scenario() -> None:
        conn = connect(http_header_timeout=0.05)
        conn.send(GET % b"/slow" + b"GET /fast HTTP/1.1\r\nHo")
        await asyncio.sleep(0.2)
        assert not conn.transport.closed  # the slow request is still owed its answer
        conn.app.release.set()
        await settle(lambda: conn.transport.closed)
        assert conn.responses() == [(200, b"/slow")]

    run(scenario())


def test_headers_above_the_limit_get_431_json():
    async def scenario() -> None:
        conn = connect(max_header_bytes=2048)
        headers = b"".join(b"X-%d: %s\r\n" % (i, b"v" * 100) for i in range(30))
        conn.send(b"GET /fast HTTP/1.1\r\n" + headers + b"\r\n")
        assert conn.transport.closed
        assert conn.responses()[0][0] == 431
        assert "max_header_bytes" in conn.error() and "2048" in conn.error()
        assert not conn.app.bodies

    run(scenario())


def test_one_growing_header_line_is_cut_off_at_the_limit():
    async def scenario() -> None:
        conn = connect(max_header_bytes=4096)
        conn.send(b"GET /fast HTTP/1.1\r\nX-Long: ")
        sent = 0
        while not conn.transport.closed:
            conn.send(b"a" * 512)
            sent += 512
            assert sent <= 4096 + 512, "the line grew past the limit"
        assert conn.responses()[0][0] == 431

    run(scenario())


def test_a_head_split_over_reads_counts_every_read():
    async def scenario() -> None:
        conn = connect(max_header_bytes=2048)
        conn.send(b"GET /fast HTTP/1.1\r\n")
        for i in range(40):
            conn.send(b"X-%d: %s\r\n" % (i, b"v" * 60))
            if conn.transport.closed:
                break
        assert conn.responses()[0][0] == 431

    run(scenario())


def test_a_large_body_is_not_counted_as_headers():
    async def scenario() -> None:
        conn = connect(max_header_bytes=2048)
        body = b"x" * 100_000
        conn.send(b"POST /fast HTTP/1.1\r\nHost: x\r\nContent-Length: %d\r\n\r\n" % len(body))
        for start in range(0, len(body), 8192):
            conn.send(body[start : start + 8192])
        await settle(lambda: len(conn.responses()) == 1)
        assert conn.responses() == [(200, b"/fast")]
        assert conn.app.bodies == [body]

    run(scenario())


def test_a_url_above_the_limit_gets_414_json():
    async def scenario() -> None:
        conn = connect(max_url_bytes=1024)
        conn.send(b"GET /" + b"a" * 600)
        assert not conn.transport.closed
        conn.send(b"a" * 600)
        assert conn.transport.closed
        assert conn.responses()[0][0] == 414
        assert "max_url_bytes" in conn.error() and "1024" in conn.error()

    run(scenario())


FRAMING = [
    (b"Content-Length: abc\r\n", "Content-Length"),
    (b"Content-Length: -5\r\n", "Content-Length"),
    (b"Content-Length: 2\r\nContent-Length: 2\r\n", "Duplicate Content-Length"),
    (b"Content-Length: 2\r\nTransfer-Encoding: chunked\r\n", "Transfer-Encoding"),
    (b"X-Nul: a\x00b\r\n", "header value"),
    (b"X\x00Nul: ab\r\n", "header token"),
]


@pytest.mark.parametrize(("headers", "words"), FRAMING)
def test_malformed_framing_gets_400_json(headers, words):
    async def scenario() -> None:
        conn = connect()
        conn.send(b"POST /fast HTTP/1.1\r\nHost: x\r\n" + headers + b"\r\nab")
        assert conn.transport.closed
        assert conn.responses()[0][0] == 400
        assert "malformed HTTP request" in conn.error() and words in conn.error()

    run(scenario())


def test_a_broken_chunked_body_gets_400_json_and_the_app_sees_a_disconnect():
    async def scenario() -> None:
        conn = connect()
        conn.send(b"POST /fast HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n")
        await asyncio.sleep(0.01)  # the app starts and waits for the body
        conn.send(b"zz\r\n")
        assert conn.transport.closed
        assert conn.responses()[0][0] == 400
        assert "chunk size" in conn.error()
        await asyncio.sleep(0.01)
        assert conn.app.bodies == []

    run(scenario())


def test_a_malformed_request_pipelined_behind_a_running_one_is_answered_after_it():
    async def scenario() -> None:
        conn = connect()
        conn.send(GET % b"/slow" + b"POST /fast HTTP/1.1\r\nContent-Length: abc\r\n\r\n")
        assert not conn.transport.closed
        await asyncio.sleep(0.02)
        conn.app.release.set()
        await settle(lambda: conn.transport.closed)
        [first, second] = conn.responses()
        assert first == (200, b"/slow")
        assert second[0] == 400 and "Content-Length" in conn.error()

    run(scenario())


def test_a_refusal_is_rendered_by_the_one_rest_renderer_with_the_errors_headers():
    """Issue 13.4: the protocol's refusals go through ``rest_errors.render_error``, so an
    error's own headers (here ``Retry-After``) and the JSON body are those of every route."""
    from runtimes.errors import TooManyRequests
    from runtimes.protocol.rest_errors import render_error

    async def scenario() -> None:
        conn = connect()
        error = TooManyRequests("m", None, 2)
        conn.protocol._refusal = error
        conn.protocol._send_refusal()
        head, _, body = bytes(conn.transport.written).partition(b"\r\n\r\n")
        lines = head.split(b"\r\n")
        assert lines[0] == b"HTTP/1.1 429 Too Many Requests"
        status, headers, rendered = render_error(error)
        for name, value in headers:
            assert name + b": " + value in lines, (name, lines)
        assert b"retry-after: 1" in lines and b"connection: close" in lines
        assert body == rendered and status == 429
        assert conn.transport.closed

    run(scenario())
