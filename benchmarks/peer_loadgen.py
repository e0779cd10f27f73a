"""Drive a server with perf_analyzer (REST or gRPC) or h2load (gRPC), and measure it.

Neither tool marks where its measured interval starts, so the server's CPU time is read
over the tool's whole run and scaled to the requests it counted: CPU seconds per wall
second, over the throughput. The probe, warm-up and every measured window are under the
same load, so the rate is the measured one.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import requests

from benchmarks.servers import TOOLS, Processes, Server
from benchmarks.stats import LoadResult
from benchmarks.tool_output import parse_h2load, parse_perf_analyzer, perf_analyzer_error

PERF_ANALYZER = TOOLS / "bin" / "perf_analyzer"


@dataclass(frozen=True)
class ToolResult:
    load: LoadResult | None
    server_cpu: float
    """Server CPU seconds attributed to the ``load.ok`` requests."""
    error: str = ""


def max_batch_size(server: Server, model: str) -> int:
    """From the server's model config (REST); a server with no REST side says 0."""
    if not server.http_port:
        return server.max_batch_size
    try:
        response = requests.get(f"{server.base}/v2/models/{model}/config", timeout=10)
        return int(response.json().get("max_batch_size", 0)) if response.ok else 0
    except (requests.RequestException, ValueError):
        return 0


def input_data(rows: np.ndarray, batching: bool) -> dict[str, object]:
    """perf_analyzer's ``--input-data``: with a batching model, shapes omit the batch."""
    shape = list(rows.shape[1:]) if batching else list(rows.shape)
    return {"data": [{"input-0": {"content": rows.ravel().tolist(), "shape": shape}}]}


def perf_analyzer_args(
    model: str, url: str, protocol: str, concurrency: int, seconds: float, data: Path,
    csv: Path, batch: int | None,
) -> list[str]:  # fmt: skip
    # Three windows that always pass the stability check: one run of ``seconds``.
    window_ms = max(500, int(seconds * 1000 / 3))
    args = [
        str(PERF_ANALYZER), "-m", model, "-u", url, "-i", protocol,
        "--concurrency-range", f"{concurrency}:{concurrency}",
        "--measurement-interval", str(window_ms), "--max-trials", "3",
        "--stability-percentage", "999", "--input-data", str(data), "-f", str(csv),
    ]  # fmt: skip
    if batch is not None:
        args += ["-b", str(batch)]
    return args


def run_perf_analyzer(
    processes: Processes,
    server: Server,
    model: str,
    protocol: str,
    rows: np.ndarray,
    concurrency: int,
    seconds: float,
    workdir: Path,
) -> ToolResult:
    batching = max_batch_size(server, model) > 0
    data = workdir / f"pa-{model}-{rows.shape[0]}-{int(batching)}.json"
    data.write_text(json.dumps(input_data(rows, batching)))
    csv = workdir / "pa.csv"
    csv.unlink(missing_ok=True)
    port = server.http_port if protocol == "rest" else server.grpc_port
    args = perf_analyzer_args(
        model, f"127.0.0.1:{port}", "http" if protocol == "rest" else "grpc", concurrency,
        seconds, data, csv, rows.shape[0] if batching else None,
    )  # fmt: skip
    env = {**os.environ, "LD_LIBRARY_PATH": str(TOOLS / "lib")}
    output, cpu, wall, code = _timed(processes, server, args, seconds + 120, env)
    if code != 0 or not csv.exists():
        return ToolResult(None, 0.0, f"perf_analyzer exit {code}: {perf_analyzer_error(output)}")
    load = parse_perf_analyzer(output, csv.read_text())
    return ToolResult(load, cpu / wall * load.seconds)


def write_h2load_body(
    processes: Processes, server: Server, model: str, npy: Path, body: Path
) -> tuple[list[object] | None, str]:
    """Writes the framed request and checks it with one real gRPC call: (predict, error)."""
    args = [
        sys.executable, "-m", "benchmarks.grpc_load", "--url", server.grpc_url,
        "--model", model, "--rows", str(npy), "--raw", "--probe", "--body", str(body),
    ]  # fmt: skip
    process = processes.popen(args, stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
    try:
        output, _ = process.communicate(timeout=120)
    finally:
        processes.stop(process)
    lines = [line for line in output.decode(errors="replace").splitlines() if line.startswith("{")]
    if not lines:
        return None, f"the gRPC probe failed: {output.decode(errors='replace')[-300:]}"
    answer = json.loads(lines[-1])
    return answer.get("predict"), str(answer.get("probe_error", ""))


def h2load_args(
    url: str, body: Path, concurrency: int, seconds: float, warmup: float, log: Path
) -> list[str]:
    # One connection per caller, one stream each: the analogue of wrk's connections.
    return [
        "h2load", f"--data={body}", f"--clients={concurrency}", "--max-concurrent-streams=1",
        "--threads=1", f"--duration={seconds:g}", f"--warm-up-time={max(warmup, 0.1):g}",
        f"--log-file={log}", "--header=content-type: application/grpc", "--header=te: trailers",
        url,
    ]  # fmt: skip


def run_h2load(
    processes: Processes,
    server: Server,
    body: Path,
    concurrency: int,
    seconds: float,
    warmup: float,
    workdir: Path,
) -> ToolResult:
    log = workdir / "h2load.log"
    log.unlink(missing_ok=True)
    url = f"http://{server.grpc_url}/inference.GRPCInferenceService/ModelInfer"
    args = h2load_args(url, body, concurrency, seconds, warmup, log)
    output, cpu, wall, code = _timed(processes, server, args, seconds + warmup + 60)
    if code != 0:
        return ToolResult(None, 0.0, f"h2load exit {code}: {output.strip()[-200:]}")
    load = parse_h2load(output, log.read_text() if log.exists() else "")
    # Only the main duration's requests are counted; warm-up ran under the same load.
    return ToolResult(load, cpu / wall * load.seconds)


def _timed(
    processes: Processes,
    server: Server,
    args: list[str],
    timeout: float,
    env: dict[str, str] | None = None,
) -> tuple[str, float, float, int]:
    """(output, server CPU seconds, wall seconds, exit code) of one tool run."""
    cpu_before, began = server.cpu_seconds(), time.monotonic()
    process = processes.popen(args, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, env=env)
    try:
        output, _ = process.communicate(timeout=timeout)
    except subprocess.TimeoutExpired:
        output = b"timed out"
    finally:
        processes.stop(process)
    wall = time.monotonic() - began
    return (
        output.decode(errors="replace"),
        server.cpu_seconds() - cpu_before,
        wall,
        process.returncode,
    )
