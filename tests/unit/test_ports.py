"""Binding the server's ports (``runtimes.ports``), without a server: port 0, a taken
port as one line, gRPC without SO_REUSEPORT, and the port file written whole."""

import asyncio
import json
import os
import socket
from collections.abc import Iterator
from pathlib import Path

import pytest
from grpc import aio
from mlserver.settings import Settings

from runtimes.errors import CannotListen
from runtimes.ports import (
    GRPC_OPTIONS,
    Bound,
    bind_grpc,
    bound_port,
    describe,
    listen,
    port_file_contents,
    write_port_file,
)
from runtimes.protocol.grpc.server import GRPCServer

HOST = "127.0.0.1"


@pytest.fixture
def taken() -> Iterator[int]:
    """A port held listening with SO_REUSEPORT, as another gRPC server holds its own."""
    with socket.socket() as holder:
        holder.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT, 1)
        holder.bind((HOST, 0))
        holder.listen()
        yield holder.getsockname()[1]


def _open_fds() -> int:
    return len(os.listdir("/proc/self/fd"))


def test_port_zero_binds_a_free_port_that_accepts_connections():
    sock = listen(HOST, 0, "REST")
    try:
        port = bound_port(sock)
        assert port > 0
        # Listening already: a client connects before anyone accepts.
        with socket.create_connection((HOST, port), timeout=5):
            pass
    finally:
        sock.close()


def test_two_listeners_on_port_zero_get_different_ports():
    first, second = listen(HOST, 0, "REST"), listen(HOST, 0, "metrics")
    try:
        assert bound_port(first) != bound_port(second)
    finally:
        first.close()
        second.close()


def test_a_taken_port_is_one_line_that_names_it_and_leaks_no_socket(taken: int):
    before = _open_fds()
    with pytest.raises(CannotListen) as caught:
        listen(HOST, taken, "REST")
    assert str(caught.value) == f"cannot listen on {HOST}:{taken} (REST): address already in use"
    assert (caught.value.host, caught.value.port, caught.value.listener) == (HOST, taken, "REST")
    assert "\n" not in str(caught.value)
    assert _open_fds() == before


def test_an_address_that_is_not_ours_says_why():
    with pytest.raises(CannotListen) as caught:
        listen("192.0.2.1", 0, "REST")  # TEST-NET-1: on no interface of this machine
    assert str(caught.value).startswith("cannot listen on 192.0.2.1:0 (REST): ")
    assert "assign" in str(caught.value)  # "cannot assign requested address"


def test_ipv6_addresses_are_bracketed():
    error = CannotListen("::1", 8081, "gRPC", "address already in use")
    assert str(error) == "cannot listen on [::1]:8081 (gRPC): address already in use"
    assert describe([Bound("grpc", "gRPC", "::1", 8081)]) == "gRPC [::1]:8081"


class FakeBinder:
    """Stands in for ``aio.Server.add_insecure_port``: records what it was asked."""

    def __init__(self, answer: int | Exception):
        self.answer = answer
        self.asked: list[str] = []

    def add_insecure_port(self, address: str) -> int:
        self.asked.append(address)
        if isinstance(self.answer, Exception):
            raise self.answer
        return self.answer


def test_grpc_port_zero_returns_the_port_grpc_chose():
    binder = FakeBinder(40123)
    assert bind_grpc(binder, HOST, 0) == 40123
    assert binder.asked == [f"{HOST}:0"]


def test_a_taken_grpc_port_is_named_before_grpc_is_asked(taken: int):
    binder = FakeBinder(taken)
    with pytest.raises(CannotListen) as caught:
        bind_grpc(binder, HOST, taken)
    assert str(caught.value) == f"cannot listen on {HOST}:{taken} (gRPC): address already in use"
    assert binder.asked == []


@pytest.mark.parametrize("answer", [RuntimeError("Failed to bind to address"), 0])
def test_a_grpc_bind_failure_is_cannot_listen(answer: int | Exception):
    with pytest.raises(CannotListen, match=r"\(gRPC\): gRPC could not bind it"):
        bind_grpc(FakeBinder(answer), HOST, 0)


def test_grpc_options_refuse_a_port_another_server_shares(taken: int):
    """gRPC's default (SO_REUSEPORT on) binds beside the holder without a word; ours not."""

    async def scenario() -> tuple[int, str]:
        shared = aio.server().add_insecure_port(f"{HOST}:{taken}")
        try:
            aio.server(options=GRPC_OPTIONS).add_insecure_port(f"{HOST}:{taken}")
        except RuntimeError as exc:
            return shared, str(exc)
        return shared, ""

    shared, refused = asyncio.run(scenario())
    assert shared == taken  # what the option is for
    assert "Failed to bind" in refused


def test_the_grpc_server_binds_port_zero_and_refuses_a_taken_port():
    async def scenario() -> None:
        settings = Settings(host=HOST, grpc_port=0, metrics_endpoint=None, debug=False)
        first = GRPCServer(settings, [])
        port = first.bind()
        assert port > 0 and first.port == port
        second = GRPCServer(settings.model_copy(update={"grpc_port": port}), [])
        with pytest.raises(CannotListen, match=f"{HOST}:{port} \\(gRPC\\)"):
            second.bind()

    asyncio.run(scenario())


def test_the_port_file_is_written_whole_and_replaces_an_old_one(tmp_path: Path):
    path = tmp_path / "ports.json"
    path.write_text("stale")
    bound = [
        Bound("http", "REST", HOST, 40001),
        Bound("grpc", "gRPC", HOST, 40002),
        Bound("metrics", "metrics", HOST, 40003),
    ]
    write_port_file(path, bound, pid=1234)
    assert json.loads(path.read_text()) == {
        "http": 40001,
        "grpc": 40002,
        "metrics": 40003,
        "host": HOST,
        "pid": 1234,
    }
    assert sorted(p.name for p in tmp_path.iterdir()) == ["ports.json"]  # no staging left


def test_metrics_off_is_null_in_the_port_file():
    contents = port_file_contents(
        [Bound("http", "REST", HOST, 1), Bound("grpc", "gRPC", HOST, 2)], 7
    )
    assert contents["metrics"] is None and contents["http"] == 1 and contents["grpc"] == 2


def test_a_port_file_that_cannot_be_written_leaves_nothing_behind(tmp_path: Path):
    target = tmp_path / "ports.json"
    target.mkdir()  # a folder where the file should go: the rename fails
    with pytest.raises(OSError):
        write_port_file(target, [Bound("http", "REST", HOST, 1)])
    assert sorted(p.name for p in tmp_path.iterdir()) == ["ports.json"]


def test_the_log_line_lists_every_listener():
    bound = [Bound("http", "REST", HOST, 1), Bound("grpc", "gRPC", "0.0.0.0", 2)]
    assert describe(bound) == "REST 127.0.0.1:1, gRPC 0.0.0.0:2"
