"""Server-side cost of one small inference, in-process, without the network.

Builds a V2Server on the example repository and calls its ASGI app (REST) and its Triton
gRPC service's ``ModelInfer`` (raw FP64 contents, as tritonclient and h2load send them)
directly, so the number is v2serve's own per-request time (parsing, validation,
inference, encoding, metrics, statistics), free of the load generator's share of the
cores and of uvicorn's and grpcio's. Wall-clock medians over many calls, and CPU time per
call (``time.process_time``), which a machine shared with other work disturbs less.

    python -m benchmarks.fastpath_cost [model-repository]
"""

import asyncio
import statistics
import sys
import time
from pathlib import Path

BODY = b'{"inputs":[{"name":"input-0","shape":[1,4],"datatype":"FP64","data":[5.1,3.5,1.4,0.2]}]}'


async def _call(app, path: str, body: bytes) -> int:
    scope = {
        "type": "http", "method": "POST", "path": path, "raw_path": path.encode(),
        "query_string": b"", "headers": [(b"content-type", b"application/json")],
        "http_version": "1.1", "scheme": "http", "server": ("127.0.0.1", 80),
        "client": ("127.0.0.1", 1), "root_path": "",
    }  # fmt: skip
    sent = False
    status = 0

    async def receive():
        nonlocal sent
        if sent:
            return {"type": "http.disconnect"}
        sent = True
        return {"type": "http.request", "body": body, "more_body": False}

    async def send(message):
        nonlocal status
        if message["type"] == "http.response.start":
            status = message["status"]

    await app(scope, receive, send)
    return status


def _report(label: str, samples: list[int], cpu_seconds: float) -> None:
    calls = len(samples)
    print(
        f"{label}: median {statistics.median(samples) / 1000:.1f} us per request "
        f"(p90 {sorted(samples)[int(calls * 0.9)] / 1000:.1f} us), "
        f"CPU {cpu_seconds / calls * 1e6:.1f} us per request, {calls} calls"
    )


async def _grpc_cost(server, calls: int) -> None:
    """``ModelInfer`` on the service the gRPC server serves, with a stand-in context."""
    import numpy as np

    from runtimes.protocol.grpc.messages import message
    from runtimes.protocol.grpc.service import TritonService
    from tests.unit.grpc_context import FakeContext

    service = TritonService(server.data_plane, server.repository_handlers, server.extensions)
    request = message("ModelInferRequest")(model_name="iris")
    tensor = request.inputs.add(name="input-0", datatype="FP64")
    tensor.shape.extend([1, 4])
    request.raw_input_contents.append(np.array([5.1, 3.5, 1.4, 0.2], "<f8").tobytes())
    wire = request.SerializeToString()  # ModelInfer parses its own message
    await service.ModelInfer(wire, FakeContext())
    samples = []
    cpu = time.process_time()
    for _ in range(calls):
        started = time.perf_counter_ns()
        await service.ModelInfer(wire, FakeContext())
        samples.append(time.perf_counter_ns() - started)
    _report("iris gRPC ModelInfer", samples, time.process_time() - cpu)


async def main(repository: str, calls: int = 5000) -> None:
    from runtimes.server import V2Server
    from runtimes.settings import build_server_config

    config = build_server_config(None, repository, environ={"V2SERVE_WATCH": "false"})
    server = V2Server(config)
    await server.controller.reconcile(settle_all=True)
    app = server.rest_app
    for model in ("iris", "breast-cancer"):
        path = f"/v2/models/{model}/infer"
        body = (
            BODY
            if model == "iris"
            else BODY.replace(b"[1,4]", b"[1,30]").replace(
                b"[5.1,3.5,1.4,0.2]", str([0.1] * 30).replace(" ", "").encode()
            )
        )
        assert await _call(app, path, body) == 200
        samples = []
        cpu = time.process_time()
        for _ in range(calls):
            started = time.perf_counter_ns()
            await _call(app, path, body)
            samples.append(time.perf_counter_ns() - started)
        _report(f"{model} REST", samples, time.process_time() - cpu)
    await _grpc_cost(server, calls)


if __name__ == "__main__":
    asyncio.run(main(sys.argv[1] if len(sys.argv) > 1 else str(Path("model-repository"))))
