"""Faults survived by a real server: an estimator that raises, slow and half-sent
connections, a read-only repository, and a log on a full disk.

The corrupt artifact swapped in under load is in test_repository.py; a killed
parallel-inference worker and a version folder deleted with requests in flight are in
test_workers.py.
"""

import json
import os
import shutil
import socket
import tempfile
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest
import tritonclient.grpc as grpcclient
from tritonclient.utils import InferenceServerException

from runtimes.examples import write_artifact
from tests.faulty import SLOW_SETTINGS, FailsOnRows, Slow, iris_fitted

from .conftest import RunningServer, start_server, stop_server
from .reliability import IRIS, PYTHONPATH, rest_infer, wait_for

FAILS = iris_fitted(FailsOnRows(threshold=100.0))
BAD_ROWS = np.array([[5.1, 3.5, 1.4, 0.2], [1000.0, 3.0, 5.2, 2.3]])
# Slower than the module server's 1 s header timeout. Batched, so predict runs off the
# event loop and the loop's timers fire while it sleeps.
SLOW = iris_fitted(Slow(seconds=1.3))


def _repository(root: Path) -> Path:
    write_artifact(FAILS, root / "fails" / "1" / "model.joblib")
    settings = {"parameters": {"extra": {"inference_backend": "sklearn"}}}
    (root / "fails" / "model-settings.json").write_text(json.dumps(settings))
    return root


def _with_slow_model(root: Path) -> Path:
    write_artifact(SLOW, root / "slow" / "1" / "model.joblib")
    settings = {"parameters": {"extra": SLOW_SETTINGS}}
    (root / "slow" / "model-settings.json").write_text(json.dumps(settings))
    return root


@pytest.fixture(scope="module")
def faulty(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RunningServer]:
    root = tmp_path_factory.mktemp("faults")
    env = {**PYTHONPATH, "V2SERVE_HTTP_HEADER_TIMEOUT": "1", "V2SERVE_HTTP_KEEP_ALIVE_TIMEOUT": "2"}
    server = start_server(root / "server", _with_slow_model(_repository(root / "repo")), env=env)
    yield server
    assert stop_server(server) == 0, server.log_text()


def test_an_estimator_that_raises_fails_that_request_only_over_rest(faulty):
    failed = rest_infer(faulty.base, "fails", BAD_ROWS)
    assert failed.status_code == 500
    message = failed.json()["error"]
    assert "model 'fails'" in message and "ArithmeticError" in message, message
    good = rest_infer(faulty.base, "fails", IRIS)
    assert good.status_code == 200
    assert good.json()["outputs"][0]["data"] == FAILS.predict(IRIS).tolist()


def test_an_estimator_that_raises_fails_that_request_only_over_grpc(faulty):
    client = grpcclient.InferenceServerClient(url=faulty.grpc_url)

    def tensor(rows: np.ndarray) -> list[grpcclient.InferInput]:
        found = grpcclient.InferInput("input-0", list(rows.shape), "FP64")
        found.set_data_from_numpy(rows)
        return [found]

    with pytest.raises(InferenceServerException) as failed:
        client.infer("fails", tensor(BAD_ROWS))
    assert failed.value.status() == "StatusCode.INTERNAL"
    assert "model 'fails'" in failed.value.message()
    result = client.infer("fails", tensor(IRIS))
    np.testing.assert_array_equal(result.as_numpy("predict"), FAILS.predict(IRIS))


def _open(server: RunningServer, payload: bytes) -> socket.socket:
    sock = socket.create_connection(("127.0.0.1", server.http_port), timeout=30)
    if payload:
        sock.sendall(payload)
    return sock


def _closed_by_server(sock: socket.socket) -> bool:
    try:
        return sock.recv(1024) == b""
    except ConnectionResetError:
        return True


def test_idle_and_half_sent_connections_do_not_block_a_good_request(faulty):
    half_headers = b"POST /v2/models/iris/infer HTTP/1.1\r\nHost: x\r\nContent-Type: appl"
    half_body = (
        b"POST /v2/models/fails/infer HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
        b'Content-Length: 4000\r\n\r\n{"inputs": ['
    )
    idle = [_open(faulty, b"") for _ in range(10)]
    slow_headers = [_open(faulty, half_headers) for _ in range(10)]
    slow_bodies = [_open(faulty, half_body) for _ in range(10)]
    try:
        good = rest_infer(faulty.base, "fails", IRIS, timeout=10)
        assert good.status_code == 200
        # The header timeout (1 s here) closes the connections that never finished headers.
        for sock in idle + slow_headers:
            assert _closed_by_server(sock)
        # A half-sent body holds its connection until the client goes away (docs/reliability.md).
        assert rest_infer(faulty.base, "fails", IRIS, timeout=10).status_code == 200
    finally:
        for sock in idle + slow_headers + slow_bodies:
            sock.close()


def _read_responses(sock: socket.socket, count: int) -> list[tuple[bytes, bytes]]:
    """(status line, body) of ``count`` responses with Content-Length, read in order."""
    found: list[tuple[bytes, bytes]] = []
    buffer = b""
    while len(found) < count:
        while b"\r\n\r\n" not in buffer:
            part = sock.recv(65536)
            assert part, f"closed after {len(found)} of {count} responses: {buffer!r}"
            buffer += part
        head, _, buffer = buffer.partition(b"\r\n\r\n")
        [length] = [
            int(line.split(b":")[1])
            for line in head.split(b"\r\n")
            if line.lower().startswith(b"content-length:")
        ]
        while len(buffer) < length:
            part = sock.recv(65536)
            assert part, "closed in the middle of a response body"
            buffer += part
        found.append((head.split(b"\r\n")[0], buffer[:length]))
        buffer = buffer[length:]
    return found


def test_pipelined_requests_slower_than_the_header_timeout_are_all_answered(faulty):
    """Issue 14.3: two pipelined requests that each take longer than the header timeout
    (1 s here). The header timer used to be re-armed by the first response and to close
    the connection under the second."""
    body = json.dumps(
        {"inputs": [{"name": "input-0", "shape": list(IRIS.shape), "datatype": "FP64",
                     "data": IRIS.tolist()}]}
    ).encode()  # fmt: skip
    request = (
        b"POST /v2/models/slow/infer HTTP/1.1\r\nHost: x\r\n"
        b"Content-Type: application/json\r\nContent-Length: %d\r\n\r\n" % len(body)
    ) + body
    sock = _open(faulty, request + request)
    try:
        answers = _read_responses(sock, 2)
        expected = SLOW.predict(IRIS).tolist()
        for status_line, payload in answers:
            assert b" 200 " in status_line, (status_line, payload)
            assert json.loads(payload)["outputs"][0]["data"] == expected
        # The connection is still usable: a third request on it is answered.
        sock.sendall(b"GET /v2/health/live HTTP/1.1\r\nHost: x\r\n\r\n")
        assert b" 200 " in _read_responses(sock, 1)[0][0]
    finally:
        sock.close()


def test_an_idle_keep_alive_connection_is_closed(faulty):
    sock = _open(faulty, b"GET /v2/health/live HTTP/1.1\r\nHost: x\r\n\r\n")
    try:
        assert b"200 OK" in sock.recv(4096)
        assert _closed_by_server(sock)
    finally:
        sock.close()


SETPRIV = shutil.which("setpriv")


@pytest.fixture
def open_tmp() -> Iterator[Path]:
    """A folder other users can reach (pytest's tmp_path is private to root)."""
    base = Path(tempfile.mkdtemp(prefix="v2serve-readonly-"))
    yield base
    shutil.rmtree(base, ignore_errors=True)


def test_a_read_only_repository_is_served(open_tmp):
    """Owned by root and read-only to the server's user, as a KServe model mount is."""
    if os.geteuid() != 0 or SETPRIV is None:
        pytest.skip("needs root and setpriv to run the server as a user who cannot write")
    tmp_path = open_tmp
    repo = _repository(tmp_path / "repo")
    for node in [tmp_path, *tmp_path.rglob("*")]:
        node.chmod(0o755 if node.is_dir() else 0o644)
    workdir = tmp_path / "server"
    workdir.mkdir()
    os.chown(workdir, 1000, 1000)
    prefix = [SETPRIV, "--reuid=1000", "--regid=1000", "--clear-groups"]
    server = start_server(workdir, repo, env=PYTHONPATH, prefix=prefix)
    try:
        assert rest_infer(server.base, "fails", IRIS).status_code == 200
        write_artifact(FAILS, tmp_path / "staging" / "model.joblib")
        (tmp_path / "staging").chmod(0o755)
        (tmp_path / "staging" / "model.joblib").chmod(0o644)  # mkstemp made it 0600
        os.rename(tmp_path / "staging", repo / "fails" / "2")
        wait_for(
            lambda: rest_infer(server.base, "fails", IRIS).json().get("model_version") == "2",
            "a version dropped into the read-only repository served",
        )
        assert "Permission denied" not in server.log_text()
    finally:
        assert stop_server(server) == 0, server.log_text()


def test_a_log_on_a_full_disk_does_not_stop_serving(tmp_path):
    """stdout and stderr on /dev/full: every log write fails with ENOSPC."""
    if not Path("/dev/full").exists():
        pytest.skip("no /dev/full")
    prefix = ["/bin/sh", "-c", 'exec "$@" >/dev/full 2>&1', "sh"]
    server = start_server(
        tmp_path / "server", _repository(tmp_path / "repo"), env=PYTHONPATH, prefix=prefix
    )
    try:
        assert rest_infer(server.base, "fails", IRIS).status_code == 200
        for _ in range(20):  # error paths log too
            assert rest_infer(server.base, "fails", BAD_ROWS).status_code == 500
            assert rest_infer(server.base, "nope", IRIS).status_code == 404
        client = grpcclient.InferenceServerClient(url=server.grpc_url)
        assert client.is_server_ready()
        assert rest_infer(server.base, "fails", IRIS).status_code == 200
        assert server.process.poll() is None
    finally:
        code = stop_server(server)
    assert code in (0, 120), code  # 120: Python could not flush stdout at exit
