"""``make bench``: v2serve against vanilla MLServer 1.7.1, a real Triton (PyTriton) and two
ceiling probes, in one run, on this machine.

Starts every server on free 127.0.0.1 ports (plus a pair with the response cache on, and
v2serve with tracing on, exporting to a local OTLP sink), drives each cell with the same
load generator for all of them, interleaved (A B C D, A B C D, ...), the isolation cells
under a background load of big requests, and writes ``docs/benchmarks.md`` and
``docs/img/*.png``. ``make bench`` first installs the tools (``benchmarks/install-tools.sh``).

    python -m benchmarks            # 2 rounds, 3 s cells after 1 s warm-up
    python -m benchmarks --quick    # 1 round, 2 s cells, few cells, into build/bench-quick/
    python -m benchmarks --quick --only abgh --out /tmp/q   # light, tracing, isolation
    python -m benchmarks --render docs/benchmarks.json   # the report again, no load
"""

from __future__ import annotations

import argparse
import functools
import json
import os
import platform
import shlex
import signal
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from importlib.metadata import version
from pathlib import Path
from typing import Any

import requests

from benchmarks import models
from benchmarks.background import BackgroundLoad
from benchmarks.cells import (
    GROUPS,
    H2LOAD,
    MAIN,
    PERF_ANALYZER,
    TRACING_KEY,
    WRK,
    Background,
    Cell,
    Target,
    all_cells,
    baselines,
    server_kinds,
)  # fmt: skip
from benchmarks.loadgen import RestRequest, lua_script, predictions, probe_rest, run_wrk
from benchmarks.otlp_sink import OtlpSink
from benchmarks.peer_loadgen import PERF_ANALYZER as PERF_ANALYZER_BIN
from benchmarks.peer_loadgen import run_h2load, run_perf_analyzer, write_h2load_body
from benchmarks.report import (
    AddedRows,
    BackgroundRow,
    Environment,
    MemoryRow,
    SwapRow,
    load_raw,
    parse_tracing_cost,
    write_report,
)  # fmt: skip
from benchmarks.servers import (
    PYTRITON_PYTHON,
    TOOLS,
    Processes,
    Server,
    start_probe,
    start_triton,
    start_v2serve,
    start_vanilla,
    wait_port,
    wait_ready,
)  # fmt: skip
from benchmarks.stats import LoadResult, Measurement

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
    broken: dict[tuple[str, str], str] = field(default_factory=dict)
    """Servers that did not start, and why: their cells are reported as unsupported."""
    checked: dict[tuple[str, str], str] = field(default_factory=dict)
    """(cell, server) -> the note of its first answer's check, once checked."""
    bodies: dict[tuple[str, str, str], Path] = field(default_factory=dict)
    background: list[BackgroundRow] = field(default_factory=list)
    sink: OtlpSink | None = None
    """The OTLP receiver of the groups that trace, started with their servers."""


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="1 round, 2 s cells")
    parser.add_argument("--rounds", type=int)
    # wrk takes whole seconds only.
    parser.add_argument("--seconds", type=int, help="measured seconds per cell")
    parser.add_argument("--warmup", type=int, help="warm-up seconds per cell")
    parser.add_argument(
        "--only", default="", help="scenario letters to run, e.g. 'ab' (g: tracing, h: isolation)"
    )
    parser.add_argument("--out", type=Path, help="folder for benchmarks.md and img/")
    parser.add_argument(
        "--render", type=Path, help="re-render the report from a run's benchmarks.json, no load"
    )
    args = parser.parse_args(argv)
    args.argv = sys.argv[1:] if argv is None else argv
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
            raw["added"],
        )
        print(f"wrote {out / 'benchmarks.md'}", flush=True)
        return
    args.rounds = args.rounds or (1 if args.quick else 2)
    args.seconds = min(args.seconds or (2 if args.quick else 3), 30)
    args.warmup = args.warmup if args.warmup is not None else 1
    args.out = args.out or (ROOT / "build" / "bench-quick" if args.quick else ROOT / "docs")

    # A SIGTERM (make interrupted, a timeout) must still reach the finally below.
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))
    processes = Processes()
    run: Run | None = None
    started = time.time()
    load_before = os.getloadavg()
    try:
        with tempfile.TemporaryDirectory(prefix="v2serve-bench-") as tmp:
            print(f"training models into {tmp}", flush=True)
            run = Run(args, models.prepare(Path(tmp)), processes)
            measurements, memory = _benchmark(run)
            _stop_servers(run)
            added = _added_rows(run, measurements)
    finally:
        processes.stop_all()
        if run is not None and run.sink is not None:
            run.sink.stop()
    assert run is not None  # an exception in the try block has left already
    environment = _environment(args, started, load_before)
    write_report(
        args.out, measurements, run.swaps, memory, baselines(all_cells()), environment, added
    )
    print(f"wrote {args.out / 'benchmarks.md'}", flush=True)


def _benchmark(run: Run) -> tuple[list[Measurement], list[MemoryRow]]:
    cells = [
        c
        for c in all_cells()
        if (not run.args.only or c.scenario in run.args.only) and (c.quick or not run.args.quick)
    ]
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
    """Every server the cells need, all started before any is waited for (Triton is slow)."""
    tmp = run.workspace.root
    needed = {(t.group, t.kind, c.protocol) for c in cells for t in c.targets}
    kinds = server_kinds(cells)
    waits: list[tuple[Server, Callable[[Server], None]]] = []
    if (MAIN, "triton") in kinds:
        if PYTRITON_PYTHON.exists():
            served = models.triton_models(run.workspace)
            server = start_triton(
                run.processes, "Triton (PyTriton)", tmp / "run-triton", served,
                models.TRITON_MAX_BATCH,
            )  # fmt: skip
            run.servers[(MAIN, "triton")] = server
            waits.append((server, lambda s: wait_ready(s, sorted(served), 300)))
        else:
            run.broken[(MAIN, "triton")] = f"no PyTriton venv at {PYTRITON_PYTHON} (make bench)"
    for protocol in ("rest", "grpc"):
        if (MAIN, "probe", protocol) in needed:
            server = start_probe(
                run.processes, f"probe ({protocol})", tmp / f"run-probe-{protocol}", protocol,
                models.LIGHT, run.workspace.artifacts["light-v1"],
            )  # fmt: skip
            run.servers[(MAIN, f"probe-{protocol}")] = server
            if protocol == "rest":
                waits.append((server, lambda s: wait_ready(s, [models.LIGHT])))
            else:
                waits.append((server, lambda s: wait_port(s, s.grpc_port)))
    for group in sorted({group for group, _ in kinds}):
        spec = GROUPS[group]
        env = dict(spec.env)
        if spec.otlp:
            if run.sink is None:
                run.sink = OtlpSink().start()
            env["OTEL_EXPORTER_OTLP_TRACES_ENDPOINT"] = run.sink.url
        for kind in ("vanilla", "v2serve"):
            if (group, kind) not in kinds:
                continue
            if kind == "vanilla":
                repository = models.vanilla_repository(
                    run.workspace, tmp / f"vanilla-{group}", spec.only,
                    cached="MLSERVER_CACHE_ENABLED" in spec.env,
                )  # fmt: skip
                label, start = "vanilla MLServer", start_vanilla
            else:
                repository = models.v2serve_repository(
                    run.workspace, tmp / f"v2serve-{group}", spec.only
                )
                label, start = "v2serve", start_v2serve
            server = start(
                run.processes, f"{label} ({group})", tmp / f"run-{kind}-{group}", repository, env
            )
            run.servers[(group, kind)] = server
            names = sorted(_served(repository))
            waits.append((server, functools.partial(_wait_models, names=names)))
    for server, wait in waits:
        print(f"waiting for {server.name}", flush=True)
        try:
            wait(server)
        except RuntimeError as exc:
            key = next(k for k, v in run.servers.items() if v is server)
            if key[1] in ("vanilla", "v2serve"):
                raise
            # A peer that cannot start is reported, not fatal: the rest of the run counts.
            run.broken[key] = str(exc).splitlines()[0][:200]
            print(f"{server.name} did not start: {exc}", flush=True)


def _added_rows(run: Run, measurements: list[Measurement]) -> AddedRows:
    """What cells (g) and (h) report beside their measurements: the background's counts,
    the OTLP sink's, and ``benchmarks.tracing_cost``'s µs per request, run in its own
    process once every server has stopped (it imports MLServer, and wants the cores)."""
    costs: dict[str, float] = {}
    if any(m.cell == TRACING_KEY for m in measurements):
        print("measuring the per-request cost of tracing (benchmarks.tracing_cost)", flush=True)
        costs, error = tracing_costs(run.processes, run.args.quick)
        if error:
            print(f"benchmarks.tracing_cost failed: {error}", flush=True)
    return AddedRows(
        tracing_cost=costs,
        spans=run.sink.tally.received if run.sink is not None else None,
        background=tuple(run.background),
    )


def tracing_costs(processes: Processes, quick: bool) -> tuple[dict[str, float], str]:
    """(label -> µs per request, why not) from ``python -m benchmarks.tracing_cost --json``."""
    args = [sys.executable, "-m", "benchmarks.tracing_cost", "--json"] + (["--quick"] * quick)
    process = processes.popen(args, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, cwd=ROOT)
    try:
        output, _ = process.communicate(timeout=600)
    except subprocess.TimeoutExpired:
        output = b"timed out after 600 s"
    finally:
        processes.stop(process)
    return parse_tracing_cost(output.decode(errors="replace"))


def _wait_models(server: Server, names: list[str]) -> None:
    wait_ready(server, names)


def _served(repository: Path) -> list[str]:
    return [path.name for path in repository.iterdir() if path.is_dir()]


def _server_key(cell: Cell, target: Target) -> tuple[str, str]:
    kind = f"probe-{cell.protocol}" if target.kind == "probe" else target.kind
    return (target.group, kind)


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
    key = _server_key(cell, target)
    known = run.unsupported.get((cell.key, target.label)) or run.broken.get(key)
    if known:
        return Measurement(cell.key, target.label, round_number, None, unsupported=known)
    server = run.servers[key]
    problem = _check(run, cell, target, server)
    if problem:
        run.unsupported[(cell.key, target.label)] = problem
        return Measurement(cell.key, target.label, round_number, None, unsupported=problem)
    note = run.checked[(cell.key, target.label)]
    load, cpu, error = _drive(run, cell, target, server, round_number)
    if load is None:
        # A tool that cannot drive this server at all (perf_analyzer against vanilla).
        run.unsupported[(cell.key, target.label)] = error
        return Measurement(cell.key, target.label, round_number, None, unsupported=error)
    return Measurement(cell.key, target.label, round_number, load, cpu, server.rss_mb(), note=note)


def _expected(run: Run, cell: Cell, target: Target) -> list[Any]:
    if target.model.startswith(models.XGB):
        return run.workspace.xgb_expected
    return run.workspace.payloads[cell.payload].expected


def _check(run: Run, cell: Cell, target: Target, server: Server) -> str:
    """Once per (cell, server): one real request, its answer checked. Returns why the
    server cannot serve the cell (empty if it can); the check's note goes in ``checked``."""
    if (cell.key, target.label) in run.checked:
        return ""
    if cell.background is not None:
        problem = _check_background(run, cell.background, server)
        if problem:
            return problem
    if cell.protocol == "rest":
        request = _request(run, cell, target.model)
        status, answer = probe_rest(server, request)
        if status != 200:
            return f"HTTP {status}: {_short(answer)}"
        served = predictions(answer)
    else:
        body_key = (cell.payload, target.model, server.name)
        body = run.workspace.root / f"grpc-{len(run.bodies)}.bin"
        served, error = write_h2load_body(
            run.processes, server, target.model, run.workspace.payloads[cell.payload].npy, body
        )
        if error:
            return error
        run.bodies[body_key] = body
    expected = _expected(run, cell, target)
    differs = served is not None and served != expected and not cell.swap
    run.checked[(cell.key, target.label)] = (
        "answer differs from the in-process estimator" if differs else ""
    )
    return ""


def _check_background(run: Run, background: Background, server: Server) -> str:
    """Whether the server answers the background's big request, and answers it right: a
    server that refuses it would be measured without the load the cell is about."""
    payload = run.workspace.payloads[background.payload]
    status, answer = probe_rest(
        server, RestRequest(f"/v2/models/{background.model}/infer", payload.json_body)
    )
    if status != 200:
        rows = f"{len(payload.rows):,}"
        return f"the background's {rows}-row request: HTTP {status}: {_short(answer)}"
    if predictions(answer) != payload.expected:
        return "the background's big request was answered unlike the in-process estimator"
    return ""


def _drive(
    run: Run, cell: Cell, target: Target, server: Server, round_number: int
) -> tuple[LoadResult | None, float, str]:
    """(load, server CPU seconds over it, why not), under the cell's background load if it
    has one (started before the warm-up, stopped after the measured interval)."""
    if cell.background is None:
        return _drive_tool(run, cell, target, server, round_number)
    body = run.workspace.payloads[cell.background.payload].json_body.read_bytes()
    url = f"{server.base}/v2/models/{cell.background.model}/infer"
    with BackgroundLoad(url, body, cell.background.callers) as background:
        outcome = _drive_tool(run, cell, target, server, round_number)
    assert background.result is not None
    run.background.append(
        BackgroundRow.of(cell.key, target.label, round_number, background.result)
    )
    return outcome


def _drive_tool(
    run: Run, cell: Cell, target: Target, server: Server, round_number: int
) -> tuple[LoadResult | None, float, str]:
    """(load, server CPU seconds over it, why not) from the cell's load generator."""
    args = run.args
    payload = run.workspace.payloads[cell.payload]
    workdir = run.workspace.root
    if cell.loadgen == PERF_ANALYZER:
        result = run_perf_analyzer(
            run.processes, server, target.model, cell.protocol, payload.rows, cell.concurrency,
            args.seconds, workdir,
        )  # fmt: skip
        return result.load, result.server_cpu, result.error
    if cell.loadgen == H2LOAD:
        body = run.bodies[(cell.payload, target.model, server.name)]
        result = run_h2load(
            run.processes, server, body, cell.concurrency, args.seconds, args.warmup, workdir
        )
        return result.load, result.server_cpu, result.error
    assert cell.loadgen == WRK and cell.protocol == "rest", cell
    request = _request(run, cell, target.model)
    script_key = (cell.key, target.model)
    if script_key not in run.scripts:
        run.scripts[script_key] = lua_script(workdir, f"script-{len(run.scripts)}", request)
    during = (lambda: _swap(run, server, target, round_number)) if cell.swap else None
    load, cpu = run_wrk(
        run.processes, server, run.scripts[script_key], request.path,
        cell.concurrency, args.seconds, args.warmup, during,
    )  # fmt: skip
    return load, cpu, ""


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
        if group != MAIN or kind not in ("vanilla", "v2serve"):
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
        command=shlex.join(["python", "-m", "benchmarks", *args.argv]),
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
            "h2load": _first_line(["h2load", "--version"]),
            "perf_analyzer": _first_line(
                [str(PERF_ANALYZER_BIN), "--version"], {"LD_LIBRARY_PATH": str(TOOLS / "lib")}
            ),
            "tritonserver": "2.51.0 (nvidia-pytriton 0.7.0)",
        },
        commit=commit,
    )


def _first_line(args: list[str], env: dict[str, str] | None = None) -> str:
    try:
        done = subprocess.run(
            args, capture_output=True, text=True, env={**os.environ, **(env or {})}, timeout=30
        )
    except (OSError, subprocess.TimeoutExpired):
        return "not installed"
    return (done.stdout or done.stderr).strip().split("\n")[0]


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
