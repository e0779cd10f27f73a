"""Drive a server with wrk (REST) or the grpc.aio client (gRPC) and measure it.

Each run is: a probe (one request, checked), a warm-up, then the measured interval, with
the server's CPU time read from /proc just before and just after it.
"""

from __future__ import annotations

import json
import subprocess
import sys
import threading
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import requests

from benchmarks.servers import Processes, Server
from benchmarks.stats import LoadResult, parse_wrk

LUA = """\
wrk.method = "POST"
wrk.headers["Content-Type"] = "{content_type}"
{extra_headers}
local body = assert(io.open("{body}", "rb"))
wrk.body = body:read("*a")
body:close()

done = function(summary, latency, requests)
  local e = summary.errors
  io.write(string.format(
    '{marker}{{"requests": %d, "duration_us": %d, "bytes": %d, "connect": %d, ' ..
    '"read": %d, "write": %d, "status": %d, "timeout": %d, "p50_us": %.0f, ' ..
    '"p99_us": %.0f, "max_us": %.0f}}\\n',
    summary.requests, summary.duration, summary.bytes, e.connect, e.read, e.write,
    e.status, e.timeout, latency:percentile(50), latency:percentile(99), latency.max))
end
"""


@dataclass(frozen=True)
class RestRequest:
    path: str
    body: Path
    content_type: str = "application/json"
    headers: tuple[tuple[str, str], ...] = ()


def lua_script(folder: Path, name: str, request: RestRequest) -> Path:
    extra = "\n".join(f'wrk.headers["{key}"] = "{value}"' for key, value in request.headers)
    script = folder / f"{name}.lua"
    script.write_text(
        LUA.format(
            content_type=request.content_type,
            extra_headers=extra,
            body=request.body,
            marker="BENCH_JSON ",
        )
    )
    return script


def probe_rest(server: Server, request: RestRequest) -> tuple[int, Any]:
    headers = {"Content-Type": request.content_type, **dict(request.headers)}
    response = requests.post(
        server.base + request.path, data=request.body.read_bytes(), headers=headers, timeout=60
    )
    try:
        return response.status_code, response.json()
    except ValueError:
        return response.status_code, response.text[:300]


def predictions(answer: Any) -> list[Any] | None:
    """The ``predict`` output of a V2 JSON response, flattened ([N, 1] or [N])."""
    try:
        for output in answer["outputs"]:
            if output["name"] == "predict":
                data = output["data"]
                return (
                    [item for sub in data for item in sub]
                    if data and isinstance(data[0], list)
                    else list(data)
                )
    except (KeyError, TypeError, IndexError):
        return None
    return None


def run_wrk(
    processes: Processes,
    server: Server,
    script: Path,
    path: str,
    connections: int,
    seconds: float,
    warmup: float,
    during: Callable[[], None] | None = None,
) -> tuple[LoadResult, float]:
    """(result, server CPU seconds over the measured interval).

    ``during`` runs in a thread started with the measured interval (a version swap).
    """
    url = server.base + path
    if warmup > 0:
        _wrk(processes, script, url, connections, warmup)
    cpu_before = server.cpu_seconds()
    worker = threading.Thread(target=during) if during else None
    if worker:
        worker.start()
    try:
        output = _wrk(processes, script, url, connections, seconds)
    finally:
        if worker:
            worker.join()
    return parse_wrk(output), server.cpu_seconds() - cpu_before


def _wrk(processes: Processes, script: Path, url: str, connections: int, seconds: float) -> str:
    # One wrk thread: a few thousand requests per second need far less than a core, and
    # the server gets the rest of the machine.
    args = [
        "wrk", "-t1", f"-c{connections}", f"-d{seconds}s", "--timeout", "10s",
        "--latency", "-s", str(script), url,
    ]  # fmt: skip
    process = processes.popen(args, stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
    try:
        output, _ = process.communicate(timeout=seconds + 60)
    finally:
        processes.stop(process)
    return output.decode(errors="replace")


@dataclass(frozen=True)
class GrpcResult:
    load: LoadResult | None
    server_cpu: float
    client_cpu: float
    probe_error: str = ""


def run_grpc(
    processes: Processes,
    server: Server,
    model: str,
    rows: Path,
    concurrency: int,
    seconds: float,
    warmup: float,
    raw: bool,
) -> GrpcResult:
    args = [
        sys.executable, "-m", "benchmarks.grpc_load", "--url", server.grpc_url,
        "--model", model, "--rows", str(rows), "--concurrency", str(concurrency),
        "--seconds", str(seconds), "--warmup", str(warmup),
    ]  # fmt: skip
    if raw:
        args.append("--raw")
    process = processes.popen(args, stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
    assert process.stdout is not None
    cpu_before = cpu_after = 0.0
    result: dict[str, Any] = {}
    other: list[str] = []
    timer = threading.Timer(warmup + seconds + 90, lambda: processes.stop(process))
    timer.start()
    try:
        for raw_line in process.stdout:
            line = raw_line.decode().strip()
            if line == "MEASURE":
                cpu_before = server.cpu_seconds()
            elif line == "DONE":
                cpu_after = server.cpu_seconds()
            elif line.startswith("{"):
                result = json.loads(line)
            else:
                other.append(line)
        process.wait()
    finally:
        timer.cancel()
        processes.stop(process)
    if "probe_error" in result:
        return GrpcResult(None, 0.0, 0.0, probe_error=str(result["probe_error"]))
    if not result:
        lines = "\n".join(other[-40:])
        raise RuntimeError(f"gRPC load generator failed:\n{lines}")
    errors = {str(k): int(v) for k, v in result["errors"].items()}
    load = LoadResult(
        ok=int(result["ok"]),
        errors=sum(errors.values()),
        seconds=float(result["seconds"]),
        p50_ms=float(result["p50_ms"]),
        p99_ms=float(result["p99_ms"]),
        detail=errors,
    )
    return GrpcResult(load, cpu_after - cpu_before, float(result["client_cpu_seconds"]))
