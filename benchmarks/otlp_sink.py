"""A local OTLP/HTTP receiver that accepts spans and drops them: where the tracing-on
server of cell (g) exports, so that its exporter does the work it does in production
(serialise, POST, read the answer) without a collector on the machine.

It answers ``POST /v1/traces`` with 200 and an empty ``ExportTraceServiceResponse`` (the
empty protobuf message is zero bytes), and counts what came: requests, bytes, spans and
root spans (``infer``), so the report can say that spans really arrived. Anything else is
404 (another path) or 400 (a body that is not an ``ExportTraceServiceRequest``).

    with OtlpSink() as sink:
        env["OTEL_EXPORTER_OTLP_TRACES_ENDPOINT"] = sink.url
"""

from __future__ import annotations

import gzip
import threading
import zlib
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from types import TracebackType
from typing import Any

from google.protobuf.message import DecodeError
from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import ExportTraceServiceRequest

TRACES_PATH = "/v1/traces"
ROOT_SPAN = "infer"
"""v2serve's span per request (runtimes/observability/tracing.py)."""


@dataclass(frozen=True)
class Received:
    posts: int = 0
    bytes: int = 0
    spans: int = 0
    roots: int = 0
    rejected: int = 0


def decode(body: bytes, encoding: str) -> bytes:
    """The body as sent before ``Content-Encoding`` (OTLP allows gzip, and deflate here)."""
    encoding = encoding.strip().lower()
    if encoding in ("", "identity"):
        return body
    if encoding == "gzip":
        return gzip.decompress(body)
    if encoding == "deflate":
        return zlib.decompress(body)
    raise ValueError(f"unsupported Content-Encoding '{encoding}'")


def count_spans(body: bytes) -> tuple[int, int]:
    """(spans, root spans named ``infer``) in one ``ExportTraceServiceRequest``."""
    request = ExportTraceServiceRequest.FromString(body)
    spans = roots = 0
    for resource in request.resource_spans:
        for scope in resource.scope_spans:
            spans += len(scope.spans)
            roots += sum(
                1 for span in scope.spans if span.name == ROOT_SPAN and not span.parent_span_id
            )
    return spans, roots


class Tally:
    """What the sink has received, updated by its request threads."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._received = Received()

    def accept(self, path: str, body: bytes, encoding: str) -> int:
        """The HTTP status for one POST, counting what it carried."""
        if path.split("?", 1)[0] != TRACES_PATH:
            return 404
        try:
            spans, roots = count_spans(decode(body, encoding))
        except (DecodeError, ValueError, OSError, zlib.error):
            with self._lock:
                self._received = _add(self._received, rejected=1)
            return 400
        with self._lock:
            self._received = _add(
                self._received, posts=1, bytes=len(body), spans=spans, roots=roots
            )
        return 200

    @property
    def received(self) -> Received:
        with self._lock:
            return self._received


def _add(base: Received, **more: int) -> Received:
    return Received(
        **{key: getattr(base, key) + more.get(key, 0) for key in Received.__annotations__}
    )


class _Handler(BaseHTTPRequestHandler):
    tally: Tally
    protocol_version = "HTTP/1.1"  # keep-alive: the exporter reuses its connection

    def do_POST(self) -> None:  # noqa: N802 - http.server's name
        length = int(self.headers.get("Content-Length") or 0)
        body = self.rfile.read(length)
        status = self.tally.accept(self.path, body, self.headers.get("Content-Encoding", ""))
        self.send_response(status)
        self.send_header("Content-Type", "application/x-protobuf")
        self.send_header("Content-Length", "0")
        self.end_headers()

    def log_message(self, format: str, *args: Any) -> None:
        pass  # one line per export would drown the bench's own output


class OtlpSink:
    """The receiver on 127.0.0.1, a free port, in a daemon thread of this process."""

    def __init__(self) -> None:
        self.tally = Tally()
        handler = type("Handler", (_Handler,), {"tally": self.tally})
        self._server = ThreadingHTTPServer(("127.0.0.1", 0), handler)
        self._server.daemon_threads = True
        self._thread = threading.Thread(target=self._server.serve_forever, daemon=True)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self._server.server_address[1]}{TRACES_PATH}"

    def start(self) -> OtlpSink:
        self._thread.start()
        return self

    def stop(self) -> None:
        if self._thread.is_alive():
            self._server.shutdown()
        self._server.server_close()
        self._thread.join(timeout=10)

    def __enter__(self) -> OtlpSink:
        return self.start()

    def __exit__(
        self,
        kind: type[BaseException] | None,
        value: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        self.stop()
