"""``make bench``: v2serve against vanilla MLServer 1.7.1, in one run, on this machine.

Starts both servers on free 127.0.0.1 ports (plus a pair with the response cache on),
drives each cell with the same load generator for both, interleaved (A B, A B, ...),
and writes ``docs/benchmarks.md`` and ``docs/img/*.png``.

    python -m benchmarks            # 2 rounds, 5 s cells after 1 s warm-up
    python -m benchmarks --quick    # 1 round, 2 s cells, written to build/bench-quick/
    python -m benchmarks --render docs/benchmarks.json   # the report again, no load
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import signal
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass, field
from importlib.metadata import version
from pathlib import Path
from typing import Any

import requests

from benchmarks import models
from benchmarks.cells import CACHED, MAIN, Cell, Target, all_cells, baselines
from benchmarks.loadgen import RestRequest, lua_script, predictions, probe_rest, run_grpc, run_wrk
from benchmarks.report import Environment, MemoryRow, SwapRow, load_raw, write_report
from benchmarks.servers import Processes, Server, start_v2serve, start_vanilla, wait_ready
from benchmarks.stats import Measurement

ROOT = Path(__file__).resolve().parents[1]


@dataclass
class Run:
    args: argparse.Namespace
    workspace: models.Workspace
    processes: Processes
    servers: dict[tuple[str, str], Server] = field(default_factory=dict)
    unsupported: dict[tuple[str, str], str] = field(default_factory=dict)
    swaps: list[SwapRow] = field(default_factory=list)
    next_version: int = 2
    scripts: dict[tuple[str, str], Path] = field(default_factory=dict)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="1 round, 2 s cells")
    parser.add_argument("--rounds", type=int)
    # wrk takes whole seconds only.
    parser.add_argument("--seconds", type=int, help="measured seconds per cell")
    parser.add_argument("--warmup", type=int, help="warm-up seconds per cell")
    parser.add_argument("--only", default="", help="scenario letters to run, e.g. 'ab'")
    parser.add_argument("--out", type=Path, help="folder for benchmarks.md and img/")
    parser.add_argument(
        "--render", type=Path, help="re-render the report from a run's benchmarks.json, no load"
    )
    args = parser.parse_args(argv)
    if args.render:
        raw = load_raw(args.render)
        out = args.out or args.render.parent
        write_report(
            out,
            raw["measurements"],
            raw["swaps"],
            raw["memory"],
            baselines(all_cells()),
            raw["env"],
        )
        print(f"wrote {out / 'benchmarks.md'}", flush=True)
        return
    args.rounds = args.rounds or (1 if args.quick else 2)
    args.seconds = min(args.seconds or (2 if args.quick else 5), 30)
    args.warmup = args.warmup if args.warmup is not None else 1
    args.out = args.out or (ROOT / "build" / "bench-quick" if args.quick else ROOT / "docs")

    # A SIGTERM (make interrupted, a timeout) must still reach the finally below.
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))
    processes = Processes()
    started = time.time()
    load_before = os.getloadavg()
    try:
        with tempfile.TemporaryDirectory(prefix="v2serve-bench-") as tmp:
            print(f"training models into {tmp}", flush=True)
            run = Run(args, models.prepare(Path(tmp)), processes)
            measurements, memory = _benchmark(run)
            _stop_servers(run)
    finally:
        processes.stop_all()
    environment = _environment(args, started, load_before)
    write_report(args.out, measurements, run.swaps, memory, baselines(all_cells()), environment)
    print(f"wrote {args.out / 'benchmarks.md'}", flush=True)


def _benchmark(run: Run) -> tuple[list[Measurement], list[MemoryRow]]:
    cells = [c for c in all_cells() if not run.args.only or c.scenario in run.args.only]
    _start_servers(run, cells)
    start_rss = {key: server.rss_mb() for key, server in run.servers.items()}
    measurements = []
    for round_number in range(1, run.args.rounds + 1):
        for cell in cells:
            for target in cell.targets:
                item = _measure(run, cell, target, round_number)
                measurements.append(item)
                print(_line(item), flush=True)
    memory = _memory(run, start_rss)
    return measurements, memory


def _start_servers(run: Run, cells: list[Cell]) -> None:
    tmp = run.workspace.root
    groups = {target.group for cell in cells for target in cell.targets}
    cache_env = {"MLSERVER_CACHE_ENABLED": "true"}
    for group in sorted(groups):
        env = cache_env if group == CACHED else {}
        only = [models.HEAVY] if group == CACHED else None
        vanilla_repo = models.vanilla_repository(
            run.workspace, tmp / f"vanilla-{group}", only, cached=group == CACHED
        )
        v2_repo = models.v2serve_repository(run.workspace, tmp / f"v2serve-{group}", only)
        run.servers[(group, "vanilla")] = start_vanilla(
            run.processes, f"vanilla MLServer ({group})", tmp / f"run-vanilla-{group}",
            vanilla_repo, env,
        )  # fmt: skip
        run.servers[(group, "v2serve")] = start_v2serve(
            run.processes, f"v2serve ({group})", tmp / f"run-v2serve-{group}", v2_repo, env
        )
    for (group, _), server in run.servers.items():
        names = [models.HEAVY] if group == CACHED else sorted(_served(server.repository))
        print(f"waiting for {server.name}: {', '.join(names)}", flush=True)
        wait_ready(server, names)


def _served(repository: Path) -> list[str]:
    return [path.name for path in repository.iterdir() if path.is_dir()]


def _stop_servers(run: Run) -> None:
    for server in run.servers.values():
        run.processes.stop(server.process)


def _request(run: Run, cell: Cell, model: str) -> RestRequest:
    payload = run.workspace.payloads[cell.payload]
    path = f"/v2/models/{model}/infer"
    if cell.encoding == "binary":
        return RestRequest(
            path,
            payload.binary_body,
            "application/octet-stream",
            (("Inference-Header-Content-Length", str(payload.binary_header_length)),),
        )
    return RestRequest(path, payload.json_body)


def _measure(run: Run, cell: Cell, target: Target, round_number: int) -> Measurement:
    server = run.servers[(target.group, target.kind)]
    known = run.unsupported.get((cell.key, target.label))
    if known:
        return Measurement(cell.key, target.label, round_number, None, unsupported=known)
    args = run.args
    note = ""
    if cell.protocol == "rest":
        request = _request(run, cell, target.model)
        status, answer = probe_rest(server, request)
        if status != 200:
            reason = f"HTTP {status}: {_short(answer)}"
            run.unsupported[(cell.key, target.label)] = reason
            return Measurement(cell.key, target.label, round_number, None, unsupported=reason)
        served = predictions(answer)
        expected = run.workspace.payloads[cell.payload].expected
        if served is not None and served != expected and not cell.swap:
            note = "answer differs from the in-process estimator"
        script_key = (cell.key, target.model)
        if script_key not in run.scripts:
            name = f"script-{len(run.scripts)}"
            run.scripts[script_key] = lua_script(run.workspace.root, name, request)
        during = (lambda: _swap(run, server, target, round_number)) if cell.swap else None
        load, cpu = run_wrk(
            run.processes, server, run.scripts[script_key], request.path,
            cell.concurrency, args.seconds, args.warmup, during,
        )  # fmt: skip
    else:
        rows = run.workspace.payloads[cell.payload].npy
        result = run_grpc(
            run.processes, server, target.model, rows, cell.concurrency,
            args.seconds, args.warmup, raw=cell.encoding == "raw",
        )  # fmt: skip
        if result.load is None:
            run.unsupported[(cell.key, target.label)] = result.probe_error
            return Measurement(
                cell.key, target.label, round_number, None, unsupported=result.probe_error
            )
        load, cpu = result.load, result.server_cpu
        # One Python client process: when it used most of a core, it may be the limit.
        if result.client_cpu > 0.8 * load.seconds:
            note = f"client used {result.client_cpu / load.seconds:.0%} of a core"
    return Measurement(cell.key, target.label, round_number, load, cpu, server.rss_mb(), note=note)


def _swap(run: Run, server: Server, target: Target, round_number: int) -> None:
    """Mid-interval: v2serve gets a new version folder; vanilla a new artifact + load."""
    time.sleep(run.args.seconds * 0.4)
    # Odd rounds bring light-v2, even rounds light-v1 back.
    artifact = run.workspace.artifacts["light-v2" if round_number % 2 else "light-v1"]
    model_folder = server.repository / target.model
    began = time.perf_counter()
    if target.kind == "v2serve":
        version = run.next_version
        run.next_version += 1
        models.drop_version(run.workspace.root / "staging", model_folder, version, artifact)
        body = run.workspace.payloads["light-1"].json_body.read_bytes()
        served = _wait_for_version(server, target.model, body, str(version), timeout=30)
        action = f"version {version} renamed into place"
        outcome = (
            f"served {time.perf_counter() - began:.2f} s after the rename"
            if served
            else "not served within 30 s"
        )
    else:
        models.replace_artifact(model_folder, artifact)
        response = requests.post(
            f"{server.base}/v2/repository/models/{target.model}/load", timeout=60
        )
        action = "artifact replaced, POST .../load"
        outcome = (
            f"load answered HTTP {response.status_code} in {time.perf_counter() - began:.2f} s"
        )
    new = "light-v2" if round_number % 2 else "light-v1"
    outcome += "; " + _which_artifact(run, server, target.model, new)
    run.swaps.append(SwapRow(target.label, round_number, action, outcome))


def _which_artifact(run: Run, server: Server, model: str, new: str) -> str:
    """Whether the server now answers as the new artifact, on a row where the two differ."""
    witness = run.workspace.witness
    response = requests.post(
        f"{server.base}/v2/models/{model}/infer",
        data=witness["body"],
        headers={"Content-Type": "application/json"},
        timeout=10,
    )
    served = predictions(response.json()) if response.status_code == 200 else None
    if served == witness[new]:
        return "then answers as the new artifact"
    return f"then answers {served} (HTTP {response.status_code}), new artifact: {witness[new]}"


def _wait_for_version(server: Server, model: str, body: bytes, wanted: str, timeout: float) -> bool:
    deadline = time.monotonic() + timeout
    headers = {"Content-Type": "application/json"}
    while time.monotonic() < deadline:
        try:
            answer = requests.post(
                f"{server.base}/v2/models/{model}/infer", data=body, headers=headers, timeout=5
            ).json()
            if str(answer.get("model_version")) == wanted:
                return True
        except (requests.RequestException, ValueError):
            pass
        time.sleep(0.01)
    return False


def _memory(run: Run, start_rss: dict[tuple[str, str], float]) -> list[MemoryRow]:
    """RSS after the load, and the growth from loading one more copy of the heavy model."""
    rows = []
    for (group, kind), server in run.servers.items():
        if group != MAIN:
            continue
        before = server.rss_mb()
        heavy = run.workspace.artifacts["heavy"]
        began = time.perf_counter()
        if kind == "v2serve":
            models.drop_version(
                run.workspace.root / "staging", server.repository / models.EXTRA, 2, heavy
            )
            how = f"version 2 of `{models.EXTRA}` (policy `all`) renamed into place"
            url = f"{server.base}/v2/models/{models.EXTRA}/versions/2/ready"
        else:
            name = models.EXTRA + "-2"
            models.write_vanilla_model(server.repository, name, heavy)
            status = requests.post(
                f"{server.base}/v2/repository/models/{name}/load", timeout=120
            ).status_code
            # A load by name reloads every version of that name, so a second name it is.
            how = f"a second model `{name}`, same artifact, POST .../load: HTTP {status}"
            url = f"{server.base}/v2/models/{name}/ready"
        ready = _wait_ok(url, timeout=120)
        loaded_in = time.perf_counter() - began
        time.sleep(1.0)
        after = server.rss_mb()
        rows.append(
            MemoryRow(
                server=server.name.split(" (")[0],
                start_mb=start_rss[(group, kind)],
                after_load_mb=before,
                extra_version_mb=after - before if ready else None,
                how=how + (f", ready in {loaded_in:.2f} s" if ready else ", never ready"),
            )
        )
    return rows


def _wait_ok(url: str, timeout: float) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            if requests.get(url, timeout=2).status_code == 200:
                return True
        except requests.RequestException:
            pass
        time.sleep(0.1)
    return False


def _short(answer: Any) -> str:
    text = answer if isinstance(answer, str) else json.dumps(answer)
    return text[:120]


def _line(item: Measurement) -> str:
    if item.load is None:
        return f"[{item.round}] {item.cell:<40} {item.server:<26} unsupported: {item.unsupported}"
    return (
        f"[{item.round}] {item.cell:<40} {item.server:<26} {item.rps:>8.0f} req/s  "
        f"p50 {item.load.p50_ms:7.2f} ms  p99 {item.load.p99_ms:7.2f} ms  "
        f"cpu {item.cpu_ms_per_request:6.3f} ms/req  errors {item.load.errors}"
        + (f"  ({item.note})" if item.note else "")
    )


def _environment(
    args: argparse.Namespace, started: float, load_before: tuple[float, ...]
) -> Environment:
    wrk = subprocess.run(["wrk", "-v"], capture_output=True, text=True).stdout.split("\n")[0]
    commit = subprocess.run(
        ["git", "rev-parse", "--short", "HEAD"], capture_output=True, text=True, cwd=ROOT
    ).stdout.strip()
    return Environment(
        command="python -m benchmarks" + (" --quick" if args.quick else ""),
        date=time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime(started)),
        cores=os.cpu_count() or 0,
        cpu_model=_cpu_model(),
        load_before=load_before,
        load_after=os.getloadavg(),
        duration_s=time.time() - started,
        rounds=args.rounds,
        seconds=args.seconds,
        warmup=args.warmup,
        versions={
            "python": platform.python_version(),
            "mlserver": version("mlserver"),
            "mlserver-sklearn": version("mlserver-sklearn"),
            "scikit-learn": version("scikit-learn"),
            "onnxruntime": version("onnxruntime"),
            "tritonclient": version("tritonclient"),
            "wrk": wrk.split(" [")[0] or "wrk",
        },
        commit=commit,
    )


def _cpu_model() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor()


if __name__ == "__main__":
    main()
