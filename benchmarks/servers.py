"""Start the servers side by side (vanilla MLServer, v2serve, Triton through PyTriton, the
ceiling probes), and read their CPU time and RSS.

Every process started here is registered in ``Processes`` and killed (its whole process
group) when the run ends, whatever happened. This process never imports MLServer: the
gRPC load generator's protobufs would clash with ``mlserver.grpc``.
"""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path

from benchmarks.peers.triton_serve import MAX_BATCH
from tests.harness import free_port, port_environment, wait_models_ready

BIN = Path(sys.executable).parent
ROOT = Path(__file__).resolve().parents[1]
TOOLS = ROOT / ".bench-tools"
PYTRITON_PYTHON = TOOLS / "pytriton" / "bin" / "python"
CLOCK_TICKS = os.sysconf("SC_CLK_TCK")


class Processes:
    """Every child this run started; ``stop_all`` ends them, each by its own group id."""

    def __init__(self) -> None:
        self._children: list[subprocess.Popen[bytes]] = []
        self.interrupt_first: list[subprocess.Popen[bytes]] = []
        """Children stopped with SIGINT to the leader first (see ``stop``)."""

    def popen(self, args: list[str], **kwargs: object) -> subprocess.Popen[bytes]:
        # A new session per child: its group id is its pid, so only it and its own
        # children are signalled.
        process = subprocess.Popen(args, start_new_session=True, **kwargs)  # type: ignore[call-overload]
        self._children.append(process)
        return process

    def stop(
        self, process: subprocess.Popen[bytes], timeout: float = 20, leader_only: bool = False
    ) -> None:
        """SIGTERM to the child's group (SIGINT to the child alone with ``leader_only``, for
        PyTriton, which stops its tritonserver and cleans its workspace itself), then
        SIGKILL to whatever is left in the group."""
        if process.poll() is None:
            try:
                if leader_only:
                    os.kill(process.pid, signal.SIGINT)
                else:
                    os.killpg(process.pid, signal.SIGTERM)
                process.wait(timeout=timeout)
            except subprocess.TimeoutExpired:
                os.killpg(process.pid, signal.SIGKILL)
                process.wait()
            except ProcessLookupError:
                pass
        # Anything the child left in its group (a worker) goes too.
        try:
            os.killpg(process.pid, signal.SIGKILL)
        except (ProcessLookupError, PermissionError):
            pass

    def stop_all(self) -> None:
        for process in reversed(self._children):
            self.stop(process, leader_only=process in self.interrupt_first)
        self._children.clear()


@dataclass
class Server:
    name: str
    process: subprocess.Popen[bytes]
    http_port: int
    grpc_port: int
    metrics_port: int
    repository: Path
    log: Path
    max_batch_size: int = 0
    """What the server's model config says (perf_analyzer's shapes depend on it)."""

    @property
    def base(self) -> str:
        return f"http://127.0.0.1:{self.http_port}"

    @property
    def grpc_url(self) -> str:
        return f"127.0.0.1:{self.grpc_port}"

    def cpu_seconds(self) -> float:
        return sum(_cpu_seconds(pid) for pid in _tree(self.process.pid))

    def rss_mb(self) -> float:
        return sum(_rss_kb(pid) for pid in _tree(self.process.pid)) / 1024


def _tree(pid: int) -> list[int]:
    """The process and its descendants (MLServer may fork workers)."""
    found, queue = [], [pid]
    while queue:
        current = queue.pop()
        found.append(current)
        for task in Path(f"/proc/{current}/task").glob("*/children"):
            try:
                queue += [int(child) for child in task.read_text().split()]
            except OSError:
                continue
    return found


def _cpu_seconds(pid: int) -> float:
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return 0.0
    # Fields after the parenthesised command name; utime and stime are fields 14 and 15.
    fields = stat[stat.rindex(")") + 2 :].split()
    return (int(fields[11]) + int(fields[12])) / CLOCK_TICKS


def _rss_kb(pid: int) -> int:
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith("VmRSS:"):
                return int(line.split()[1])
    except OSError:
        pass
    return 0


def start_vanilla(
    processes: Processes, name: str, workdir: Path, repository: Path, env: dict[str, str]
) -> Server:
    """``mlserver start DIR``: in-process inference, debug (access logs) off, metrics on."""
    (repository / "settings.json").write_text(json.dumps({"debug": False, "parallel_workers": 0}))
    return _start(
        processes, name, workdir, repository, [str(BIN / "mlserver"), "start", str(repository)], env
    )


def start_v2serve(
    processes: Processes, name: str, workdir: Path, repository: Path, env: dict[str, str]
) -> Server:
    """``v2serve start`` with default settings (an empty settings.json)."""
    settings = workdir / "settings"
    settings.mkdir(parents=True, exist_ok=True)
    (settings / "settings.json").write_text("{}")
    args = [str(BIN / "v2serve"), "start", "--model-repository", str(repository)]
    return _start(processes, name, workdir, repository, args + ["--settings", str(settings)], env)


def _start(
    processes: Processes,
    name: str,
    workdir: Path,
    repository: Path,
    args: list[str],
    env: dict[str, str],
) -> Server:
    workdir.mkdir(parents=True, exist_ok=True)
    http, grpc, metrics = free_port(), free_port(), free_port()
    log = workdir / "server.log"
    with log.open("wb") as sink:
        process = processes.popen(
            args,
            cwd=workdir,
            env={**os.environ, **port_environment(http, grpc, metrics), **env},
            stdout=sink,
            stderr=subprocess.STDOUT,
        )
    return Server(name, process, http, grpc, metrics, repository, log)


def wait_ready(server: Server, models: list[str], timeout: float = 180.0) -> None:
    """The harness's wait for every named model's readiness probe (vanilla's server-wide
    probe is true with zero models), naming the server that failed."""
    try:
        wait_models_ready(server, models, timeout)
    except RuntimeError as exc:
        raise RuntimeError(f"{server.name}: {exc}") from None


def start_triton(
    processes: Processes,
    name: str,
    workdir: Path,
    models: dict[str, tuple[str, Path]],
    max_batch: dict[str, int] | None = None,
) -> Server:
    """``benchmarks/peers/triton_serve.py`` in the PyTriton venv: tritonserver 2.51;
    ``max_batch`` names the models whose max batch is not ``MAX_BATCH``."""
    script = ROOT / "benchmarks" / "peers" / "triton_serve.py"
    args = [str(PYTRITON_PYTHON), str(script)]
    for model, (kind, artifact) in models.items():
        args += ["--model", f"{model}={kind}:{artifact}"]
    for model, size in (max_batch or {}).items():
        args += ["--max-batch", f"{model}={size}"]
    server = _start_peer(processes, name, workdir, args, ["--http-port", "--grpc-port"])
    processes.interrupt_first.append(server.process)
    server.max_batch_size = MAX_BATCH
    return server


def start_probe(
    processes: Processes, name: str, workdir: Path, protocol: str, model: str, artifact: Path
) -> Server:
    """The bare ASGI app (``rest``) or the bare grpc.aio servicer (``grpc``)."""
    module = "benchmarks.peers.asgi_probe" if protocol == "rest" else "benchmarks.peers.grpc_probe"
    args = [sys.executable, "-m", module, "--model", model, "--artifact", str(artifact)]
    return _start_peer(
        processes, name, workdir, args, ["--port", None] if protocol == "rest" else [None, "--port"]
    )


def _start_peer(
    processes: Processes,
    name: str,
    workdir: Path,
    args: list[str],
    port_flags: list[str | None],
) -> Server:
    """A peer told its ports by flags: (HTTP flag, gRPC flag), None for a port it lacks;
    Triton's metrics port goes with ``--metrics-port``."""
    workdir.mkdir(parents=True, exist_ok=True)
    http, grpc, metrics = free_port(), free_port(), free_port()
    for flag, port in zip(port_flags, (http, grpc), strict=True):
        if flag:
            args = args + [flag, str(port)]
    if args[0] == str(PYTRITON_PYTHON):
        args += ["--metrics-port", str(metrics)]
    log = workdir / "server.log"
    with log.open("wb") as sink:
        process = processes.popen(
            args, cwd=ROOT, stdout=sink, stderr=subprocess.STDOUT, env={**os.environ}
        )
    return Server(
        name,
        process,
        http if port_flags[0] else 0,
        grpc if port_flags[1] else 0,
        metrics,
        workdir,
        log,
    )


def wait_port(server: Server, port: int, timeout: float = 60.0) -> None:
    """Ready means the port accepts a connection (the gRPC probe has no HTTP side)."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if server.process.poll() is not None:
            raise RuntimeError(f"{server.name} exited early:\n{server.log.read_text()[-4000:]}")
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=1):
                return
        except OSError:
            time.sleep(0.2)
    raise RuntimeError(f"{server.name}: port {port} closed after {timeout}s")
