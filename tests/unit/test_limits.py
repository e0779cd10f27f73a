"""The body-size middleware, driven as a plain ASGI app (no server, no HTTP client)."""

import asyncio
import json

from runtimes.protocol.limits import BodySizeLimit


async def _echo_length(scope, receive, send):
    """An app that reads the whole body, as FastAPI does, then answers its length."""
    size = 0
    while True:
        message = await receive()
        if message["type"] == "http.disconnect":
            raise RuntimeError("client went away")
        size += len(message.get("body", b""))
        if not message.get("more_body"):
            break
    await send({"type": "http.response.start", "status": 200, "headers": []})
    await send({"type": "http.response.body", "body": str(size).encode()})


def _run(chunks, headers=(), limit=10):
    pending = [
        {"type": "http.request", "body": c, "more_body": i < len(chunks) - 1}
        for i, c in enumerate(chunks)
    ]
    read = []
    sent = []

    async def receive():
        message = pending.pop(0)
        read.append(message)
        return message

    async def send(message):
        sent.append(message)

    scope = {"type": "http", "method": "POST", "headers": list(headers)}
    asyncio.run(BodySizeLimit(_echo_length, max_bytes=limit)(scope, receive, send))
    return sent[0]["status"], sent[1]["body"], len(read)


def test_small_bodies_pass():
    assert _run([b"12345", b"67890"])[:2] == (200, b"10")


def test_declared_length_over_the_limit_reads_nothing():
    status, body, read = _run([b"x" * 11], headers=[(b"content-length", b"11")])
    assert (status, read) == (413, 0)
    assert "11 bytes exceeds the limit of 10" in json.loads(body)["error"]


def test_streamed_body_stops_at_the_limit():
    status, body, read = _run([b"x" * 6, b"x" * 6, b"x" * 6, b"x" * 6])
    assert (status, read) == (413, 2)
    assert "exceeds the limit of 10" in json.loads(body)["error"]
