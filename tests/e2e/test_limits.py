"""The request body limit (default 64 MiB, as Triton): 413 JSON before the body is read."""

import json
import socket

import numpy as np
import tritonclient.grpc as grpcclient

LIMIT = 64 * 1024 * 1024


def _post_headers(server, headers: str) -> socket.socket:
    sock = socket.create_connection(("127.0.0.1", server.http_port), timeout=10)
    sock.sendall(
        f"POST /v2/models/iris/infer HTTP/1.1\r\nHost: test\r\n"
        f"Content-Type: application/json\r\n{headers}\r\n".encode()
    )
    return sock


def _read_response(sock: socket.socket) -> tuple[int, dict]:
    received = b""
    while b"\r\n\r\n" not in received or not received.rstrip().endswith(b"}"):
        chunk = sock.recv(65536)
        if not chunk:
            break
        received += chunk
    head, _, body = received.partition(b"\r\n\r\n")
    return int(head.split()[1]), json.loads(body)


def test_declared_length_over_limit_is_refused_before_the_body(server):
    # Only the headers are sent: the answer cannot depend on reading the body.
    with _post_headers(server, f"Content-Length: {LIMIT + 1}\r\n") as sock:
        status, body = _read_response(sock)
    assert status == 413
    assert str(LIMIT) in body["error"] and str(LIMIT + 1) in body["error"]


def test_chunked_body_is_counted_while_it_streams(server):
    chunk = b" " * (1 << 20)
    with _post_headers(server, "Transfer-Encoding: chunked\r\n") as sock:
        try:
            for _ in range(LIMIT // len(chunk) + 1):
                sock.sendall(b"%x\r\n" % len(chunk) + chunk + b"\r\n")
        except (BrokenPipeError, ConnectionResetError):
            pass  # the server answered and closed once the limit was passed
        status, body = _read_response(sock)
    assert status == 413
    assert "exceeds the limit" in body["error"]


def test_grpc_accepts_messages_above_grpcs_4mib_default(server, estimators):
    rows = np.tile(np.array([[5.1, 3.5, 1.4, 0.2], [6.7, 3.0, 5.2, 2.3]]), (80_000, 1))
    assert rows.nbytes > 4 * 1024 * 1024
    tensor = grpcclient.InferInput("input-0", list(rows.shape), "FP64")
    tensor.set_data_from_numpy(rows)
    client = grpcclient.InferenceServerClient(url=server.grpc_url)
    result = client.infer("iris", [tensor])
    expected = estimators[("iris", "2")].predict(rows)
    np.testing.assert_array_equal(result.as_numpy("predict").reshape(-1), expected)
