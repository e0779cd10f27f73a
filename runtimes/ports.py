"""The server's listening ports: bound first, before any model loads, and reported.

Why v2serve binds them itself: a caller that picks a free port, closes it and passes it
to the server races every other process on the machine for it. With port 0 the kernel
chooses while the socket is held, and the caller learns the port from the log line and
the port file (``v2serve start --port-file PATH``), written once every listener is bound.

- REST and metrics: ``listen`` creates the socket, which uvicorn is handed
  (``uvicorn.Server.serve(sockets=...)``), so a port is either ours or a clear error.
- gRPC: ``grpc.aio`` cannot adopt a socket, so ``bind_grpc`` asks the gRPC server to
  bind, with ``grpc.so_reuseport`` off (``GRPC_OPTIONS``). gRPC sets SO_REUSEPORT by
  default, and a second server on the same port then starts without a word and takes
  half the connections.

A port that cannot be bound raises ``CannotListen``, one line that names the address,
the listener and why (``cannot listen on 127.0.0.1:8081 (gRPC): address already in
use``); the CLI prints it and exits 1.
"""

import contextlib
import json
import os
import socket
import tempfile
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Protocol

from .errors import CannotListen

BACKLOG = 2048  # uvicorn's default
GRPC_OPTIONS = [("grpc.so_reuseport", 0)]
"""gRPC server options that make a taken port an error instead of a silent share."""


@dataclass(frozen=True)
class Bound:
    """One listener and the port it holds (the chosen one when port 0 was asked)."""

    name: str
    """``http``, ``grpc`` or ``metrics``: the key in the port file."""
    label: str
    """``REST``, ``gRPC`` or ``metrics``: how messages name it."""
    host: str
    port: int


def _family(host: str) -> socket.AddressFamily:
    # As uvicorn chose: a host with a colon is IPv6, anything else (a name too) IPv4.
    return socket.AF_INET6 if ":" in host else socket.AF_INET


def _reason(exc: OSError) -> str:
    text = os.strerror(exc.errno) if exc.errno else str(exc)
    return text[:1].lower() + text[1:]


def listen(host: str, port: int, label: str, backlog: int = BACKLOG) -> socket.socket:
    """A TCP socket bound to ``host:port`` and listening: connections queue from here on,
    even before the server accepts them. SO_REUSEADDR (as uvicorn sets it) only lets a
    port in TIME_WAIT be reused; another listener on it is still refused."""
    sock = socket.socket(_family(host), socket.SOCK_STREAM)
    try:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.bind((host, port))
        sock.listen(backlog)
    except OSError as exc:
        sock.close()
        raise CannotListen(host, port, label, _reason(exc)) from exc
    return sock


def bound_port(sock: socket.socket) -> int:
    return int(sock.getsockname()[1])


class GrpcBinder(Protocol):
    def add_insecure_port(self, address: str) -> int: ...


def address(host: str, port: int) -> str:
    return f"[{host}]:{port}" if ":" in host else f"{host}:{port}"


def bind_grpc(server: GrpcBinder, host: str, port: int, label: str = "gRPC") -> int:
    """Bind the gRPC server (built with ``GRPC_OPTIONS``) and return the port it holds.

    A fixed port is tried first with a plain socket: gRPC's own failure says only
    "Failed to bind" after logging a C-level line of its own, while the socket says why.
    The trial socket is closed before gRPC binds; if another process takes the port in
    between, gRPC's failure is reported all the same."""
    if port:
        listen(host, port, label, backlog=1).close()
    try:
        chosen = server.add_insecure_port(address(host, port))
    except RuntimeError as exc:
        raise CannotListen(host, port, label, "gRPC could not bind it") from exc
    if not chosen:  # older grpcio returned 0 instead of raising
        raise CannotListen(host, port, label, "gRPC could not bind it")
    return chosen


def describe(bound: Sequence[Bound]) -> str:
    """The log line's list: ``REST 127.0.0.1:40123, gRPC 127.0.0.1:40125, ...``."""
    return ", ".join(f"{b.label} {address(b.host, b.port)}" for b in bound)


def port_file_contents(bound: Sequence[Bound], pid: int) -> dict[str, object]:
    """``{"http": 40123, "grpc": 40125, "metrics": 40127, "host": ..., "pid": ...}``;
    ``metrics`` is null when the metrics endpoint is off."""
    contents: dict[str, object] = {"http": None, "grpc": None, "metrics": None}
    contents.update({b.name: b.port for b in bound})
    contents["host"] = bound[0].host if bound else None
    contents["pid"] = pid
    return contents


def write_port_file(path: Path, bound: Sequence[Bound], pid: int | None = None) -> None:
    """Written to a temporary file beside ``path`` and renamed over it, so that a reader
    polling for the file never sees half of it."""
    contents = port_file_contents(bound, os.getpid() if pid is None else pid)
    path = Path(path)
    descriptor, staging = tempfile.mkstemp(prefix=f".{path.name}.", dir=path.parent or ".")
    try:
        with os.fdopen(descriptor, "w") as sink:
            json.dump(contents, sink)
        os.replace(staging, path)
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(staging)
        raise
