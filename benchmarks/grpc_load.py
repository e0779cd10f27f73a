"""A gRPC load generator: N concurrent callers on one grpc.aio channel, bounded by time.

Uses tritonclient's generated stubs (``tritonclient.grpc.service_pb2_grpc``), so it speaks
exactly the KServe V2 gRPC protocol. Runs in its own process (started by the harness):
it must never share one with ``mlserver.grpc``.

Protocol with the harness, on stdout: ``MEASURE`` when the warm-up is over, ``DONE``
when the measured interval is over, then one JSON line with the results. A first call
that fails prints ``{"probe_error": ...}`` and exits 0.

    python -m benchmarks.grpc_load --url 127.0.0.1:8081 --model light --rows rows.npy \
        --concurrency 16 --seconds 5 --warmup 1 [--raw]

``--probe`` makes one call and prints ``{"predict": [...]}`` (or ``{"probe_error": ...}``);
``--body FILE`` also writes the request as one gRPC frame, h2load's body for the cell.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import resource
import sys
import time
from collections import Counter

import grpc
import numpy as np
from tritonclient.grpc import service_pb2, service_pb2_grpc

from benchmarks.stats import percentile

MAX_MESSAGE = 64 * 1024 * 1024


def build_request(model: str, rows: np.ndarray, raw: bool) -> service_pb2.ModelInferRequest:
    request = service_pb2.ModelInferRequest(model_name=model)
    tensor = request.inputs.add()
    tensor.name, tensor.datatype = "input-0", "FP64"
    tensor.shape.extend(rows.shape)
    if raw:
        request.raw_input_contents.append(rows.astype("<f8").tobytes())
    else:
        tensor.contents.fp64_contents.extend(rows.ravel().tolist())
    return request


async def _callers(
    stub: service_pb2_grpc.GRPCInferenceServiceStub,
    request: service_pb2.ModelInferRequest,
    concurrency: int,
    seconds: float,
) -> tuple[list[float], Counter[str], float]:
    latencies: list[float] = []
    errors: Counter[str] = Counter()
    started = time.perf_counter()
    deadline = started + seconds

    async def caller() -> None:
        while time.perf_counter() < deadline:
            sent = time.perf_counter()
            try:
                await stub.ModelInfer(request, timeout=30)
                latencies.append(time.perf_counter() - sent)
            except grpc.aio.AioRpcError as exc:
                errors[exc.code().name] += 1

    await asyncio.gather(*(caller() for _ in range(concurrency)))
    return latencies, errors, time.perf_counter() - started


async def run(args: argparse.Namespace) -> dict[str, object]:
    rows = np.load(args.rows)
    request = build_request(args.model, rows, args.raw)
    options = [
        ("grpc.max_send_message_length", MAX_MESSAGE),
        ("grpc.max_receive_message_length", MAX_MESSAGE),
    ]
    async with grpc.aio.insecure_channel(args.url, options=options) as channel:
        stub = service_pb2_grpc.GRPCInferenceServiceStub(channel)
        try:
            await stub.ModelInfer(request, timeout=30)
        except grpc.aio.AioRpcError as exc:
            return {"probe_error": f"{exc.code().name}: {exc.details()}"}
        if args.warmup > 0:
            await _callers(stub, request, args.concurrency, args.warmup)
        print("MEASURE", flush=True)
        cpu_before = _cpu()
        latencies, errors, elapsed = await _callers(stub, request, args.concurrency, args.seconds)
        cpu = _cpu() - cpu_before
        print("DONE", flush=True)
    return {
        "ok": len(latencies),
        "errors": dict(errors),
        "seconds": elapsed,
        "p50_ms": percentile(latencies, 50) * 1e3,
        "p99_ms": percentile(latencies, 99) * 1e3,
        "client_cpu_seconds": cpu,
    }


def predict_values(response: service_pb2.ModelInferResponse) -> list[object] | None:
    """The ``predict`` output of a response, flattened, raw or typed."""
    dtypes = {"INT64": "<i8", "INT32": "<i4", "FP64": "<f8", "FP32": "<f4", "BOOL": "?"}
    for index, output in enumerate(response.outputs):
        if output.name != "predict":
            continue
        if response.raw_output_contents:
            raw = response.raw_output_contents[index]
            return np.frombuffer(raw, dtype=dtypes[output.datatype]).tolist()
        contents = output.contents
        for kind in ("int64_contents", "int_contents", "fp64_contents", "bool_contents"):
            values = list(getattr(contents, kind))
            if values:
                return values
        return []
    return None


async def probe(args: argparse.Namespace) -> dict[str, object]:
    rows = np.load(args.rows)
    request = build_request(args.model, rows, args.raw)
    if args.body:
        from benchmarks.tool_output import grpc_frame

        with open(args.body, "wb") as sink:
            sink.write(grpc_frame(request.SerializeToString()))
    options = [("grpc.max_receive_message_length", MAX_MESSAGE)]
    async with grpc.aio.insecure_channel(args.url, options=options) as channel:
        stub = service_pb2_grpc.GRPCInferenceServiceStub(channel)
        try:
            response = await stub.ModelInfer(request, timeout=30)
        except grpc.aio.AioRpcError as exc:
            return {"probe_error": f"{exc.code().name}: {exc.details()}"}
    return {"predict": predict_values(response)}


def _cpu() -> float:
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--url", required=True)
    parser.add_argument("--model", required=True)
    parser.add_argument("--rows", required=True, help="a .npy file: the request's rows")
    parser.add_argument("--concurrency", type=int, default=16)
    parser.add_argument("--seconds", type=float, default=5.0)
    parser.add_argument("--warmup", type=float, default=1.0)
    parser.add_argument("--raw", action="store_true", help="raw_input_contents, not contents")
    parser.add_argument("--probe", action="store_true", help="one call, print its predict")
    parser.add_argument("--body", help="with --probe: write the request here, gRPC-framed")
    args = parser.parse_args(argv)
    result = asyncio.run(probe(args) if args.probe else run(args))
    sys.stdout.write(json.dumps(result) + "\n")


if __name__ == "__main__":
    main()
