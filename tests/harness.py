"""Real servers for tests and benchmarks: start, wait, stop, with no port races.

v2serve starts on port 0 for REST, gRPC and metrics (``MLSERVER_*_PORT=0``) and writes the
ports the kernel chose to ``--port-file`` once every listener is bound; ``start_server``
reads them from there. Nobody picks a free port, closes it and hopes: on a machine where
other servers start at the same time, that lost the race twice in three runs (issue 13).
Vanilla MLServer cannot take port 0, so ``start_vanilla`` picks ports and starts again
on new ones when a bind fails.

Every wait polls with a deadline (``wait_until``): no fixed sleeps, and timeouts generous
enough for a machine that a CPU-bound process shares.

``benchmarks/`` imports this module; nothing in ``tests/`` imports ``benchmarks/``. This
module imports neither MLServer nor tritonclient (their protobuf symbols clash), so both
e2e tests (tritonclient) and benchmarks can use it.
"""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TypeVar

import requests

ROOT = Path(__file__).resolve().parents[1]
BIN = Path(sys.executable).parent
V2SERVE = BIN / "v2serve"
MLSERVER = BIN / "mlserver"

PORTS_TIMEOUT = 60.0
"""Seconds from spawn to the port file: imports, settings, binding. Models load later."""
READY_TIMEOUT = 120.0
"""Seconds until readiness: the models load on cores that other processes share."""
POLL_INTERVAL = 0.05

T = TypeVar("T")


def wait_until(
    predicate: Callable[[], T], timeout: float, what: str, interval: float = POLL_INTERVAL
) -> T:
    """Poll ``predicate`` until it returns something truthy, and return that; after
    ``timeout`` seconds raise ``AssertionError`` naming ``what`` was awaited."""
    deadline = time.monotonic() + timeout
    while True:
        found = predicate()
        if found:
            return found
        if time.monotonic() >= deadline:
            raise AssertionError(f"not within {timeout}s: {what}")
        time.sleep(interval)


def holds_for(
    predicate: Callable[[], object], seconds: float, what: str, interval: float = 0.1
) -> None:
    """Assert that ``predicate`` stays true for ``seconds``: for what must *not* happen
    (a change nobody watches for), checked throughout the window rather than at its end."""
    deadline = time.monotonic() + seconds
    while True:
        assert predicate(), f"stopped holding: {what}"
        if time.monotonic() >= deadline:
            return
        time.sleep(interval)


def free_port() -> int:
    """A port that was free a moment ago. Racy by nature: prefer port 0 and the port file;
    this stays for callers that must name a port before the server starts."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@dataclass
class RunningServer:
    process: subprocess.Popen[bytes]
    http_port: int
    grpc_port: int
    metrics_port: int
    repository: Path
    log: Path
    port_file: Path | None = None

    @property
    def http_url(self) -> str:
        return f"127.0.0.1:{self.http_port}"

    @property
    def grpc_url(self) -> str:
        return f"127.0.0.1:{self.grpc_port}"

    @property
    def base(self) -> str:
        return f"http://{self.http_url}"

    def log_text(self) -> str:
        return self.log.read_text(errors="replace")


def port_environment(
    http: int | str = 0, grpc: int | str = 0, metrics: int | str = 0
) -> dict[str, str]:
    """``MLSERVER_*`` for the three ports on 127.0.0.1 (they beat settings.json)."""
    return {
        "MLSERVER_HTTP_PORT": str(http),
        "MLSERVER_GRPC_PORT": str(grpc),
        "MLSERVER_METRICS_PORT": str(metrics),
        "MLSERVER_HOST": "127.0.0.1",
    }


def read_port_file(path: Path) -> dict[str, Any] | None:
    """The server's port file, or None while it is not there (it appears whole: the
    server renames it into place)."""
    try:
        return dict(json.loads(path.read_text()))
    except FileNotFoundError:
        return None


def wait_for_port_file(
    process: subprocess.Popen[bytes], path: Path, log: Path, timeout: float = PORTS_TIMEOUT
) -> dict[str, Any]:
    """The ports a v2serve process bound; raises ``RuntimeError`` with its log if it
    exits first or takes longer than ``timeout``."""

    def written() -> dict[str, Any] | None:
        if process.poll() is not None:
            raise RuntimeError(
                f"v2serve exited ({process.returncode}) before binding:\n{_tail(log)}"
            )
        return read_port_file(path)

    try:
        return wait_until(written, timeout, f"the port file {path}")
    except AssertionError as exc:
        raise RuntimeError(f"{exc}\n{_tail(log)}") from None


def _tail(log: Path, chars: int = 6000) -> str:
    try:
        return log.read_text(errors="replace")[-chars:]
    except OSError:
        return "(no log)"


def start_server(
    workdir: Path,
    repository: Path,
    settings: dict[str, Any] | None = None,
    env: Mapping[str, str | None] | None = None,
    extra_args: list[str] | None = None,
    wait_ready: bool = True,
    prefix: list[str] | None = None,
    popen: Callable[..., subprocess.Popen[bytes]] = subprocess.Popen,
) -> RunningServer:
    """``v2serve start`` in ``workdir`` with ``settings`` as its settings.json, on port 0
    (``env`` may name ports: they are still read back from the port file; a value of
    None unsets a variable).

    Returns once the ports are known; with ``wait_ready`` also once the server is ready.
    If the process exits before it binds, ``wait_ready=False`` returns it with ports 0
    (a test of a failed start reads its exit code and log); otherwise it raises.
    ``extra_args`` replaces ``--model-repository REPOSITORY``; ``prefix`` wraps the
    command (``setpriv ...``); ``popen`` lets a caller register the child."""
    workdir.mkdir(parents=True, exist_ok=True)
    settings_dir = workdir / "settings"
    settings_dir.mkdir(exist_ok=True)
    (settings_dir / "settings.json").write_text(json.dumps(settings or {}))
    port_file = workdir / "ports.json"
    port_file.unlink(missing_ok=True)
    merged = {**os.environ, **port_environment(), **(env or {})}
    environment = {key: value for key, value in merged.items() if value is not None}
    log = workdir / "server.log"
    args = [*(prefix or []), str(V2SERVE), "start", "--settings", str(settings_dir)]
    args += extra_args if extra_args is not None else ["--model-repository", str(repository)]
    args += ["--port-file", str(port_file)]
    with log.open("wb") as sink:
        process = popen(args, cwd=workdir, env=environment, stdout=sink, stderr=subprocess.STDOUT)
    server = RunningServer(process, 0, 0, 0, repository, log, port_file)
    try:
        ports = wait_for_port_file(process, port_file, log)
    except RuntimeError:
        if not wait_ready and process.poll() is not None:
            return server
        stop_server(server)
        raise
    server.http_port, server.grpc_port = int(ports["http"]), int(ports["grpc"])
    server.metrics_port = int(ports["metrics"] or 0)
    if wait_ready:
        try:
            wait_until_ready(server)
        except RuntimeError:
            stop_server(server)
            raise
    return server


def _status(url: str, timeout: float = 2.0) -> int:
    try:
        return requests.get(url, timeout=timeout).status_code
    except requests.RequestException:
        return 0


def wait_until_ready(server: RunningServer, timeout: float = READY_TIMEOUT) -> None:
    """Until ``/v2/health/ready`` answers 200; raises ``RuntimeError`` with the log if the
    server exits first or takes longer than ``timeout``. A server whose ports are not
    known yet (started by hand with a port file) gets them from the file first."""
    deadline = time.monotonic() + timeout
    if not server.http_port and server.port_file is not None:
        ports = wait_for_port_file(server.process, server.port_file, server.log, timeout)
        server.http_port, server.grpc_port = int(ports["http"]), int(ports["grpc"])
        server.metrics_port = int(ports["metrics"] or 0)

    def ready() -> bool:
        if server.process.poll() is not None:
            raise RuntimeError(f"v2serve exited early:\n{server.log_text()}")
        return _status(f"{server.base}/v2/health/ready", timeout=5) == 200

    try:
        wait_until(ready, max(0.0, deadline - time.monotonic()), "readiness", interval=0.1)
    except AssertionError:
        raise RuntimeError(f"v2serve not ready after {timeout}s:\n{server.log_text()}") from None


def wait_until_loaded(
    server: RunningServer, timeout: float = READY_TIMEOUT, headers: Mapping[str, str] | None = None
) -> None:
    """Until every version in the repository index is READY. Readiness needs one ready
    version per model, so a model's newer versions may still be loading when the server
    is ready: a small repository gets there before they do, and its unversioned requests
    would be served by an older version. ``headers`` go with the index request (the
    control token, where one guards it)."""

    def loaded() -> bool:
        if server.process.poll() is not None:
            raise RuntimeError(f"v2serve exited early:\n{server.log_text()}")
        try:
            index = requests.post(
                f"{server.base}/v2/repository/index", json={}, headers=headers, timeout=5
            )
        except requests.RequestException:
            return False
        states = [entry.get("state") for entry in index.json()] if index.ok else []
        return bool(states) and all(state == "READY" for state in states)

    try:
        wait_until(loaded, timeout, "every version READY", interval=0.1)
    except AssertionError:
        log = _tail(server.log)
        raise RuntimeError(f"not every version loaded after {timeout}s:\n{log}") from None


def stop_server(server: RunningServer, sig: int = signal.SIGTERM, timeout: float = 30) -> int:
    """Signal the server and wait for its exit code; killed after ``timeout`` seconds."""
    if server.process.poll() is None:
        server.process.send_signal(sig)
        try:
            server.process.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            server.process.kill()
            server.process.wait()
    return server.process.returncode


BIND_FAILURES = ("address already in use", "errno 98", "failed to bind")


def _bind_failed(log: Path) -> bool:
    text = _tail(log, 20_000).lower()
    return any(marker in text for marker in BIND_FAILURES)


def start_vanilla(
    workdir: Path,
    repository: Path,
    models: Sequence[str],
    env: dict[str, str] | None = None,
    attempts: int = 5,
    timeout: float = 180.0,
    popen: Callable[..., subprocess.Popen[bytes]] = subprocess.Popen,
) -> RunningServer:
    """``mlserver start REPOSITORY`` until every model in ``models`` answers its readiness
    probe (vanilla's server-wide probe is true with zero models). MLServer cannot take
    port 0, so its ports are picked, and can be taken by someone else before it binds
    them: a start that fails to bind is retried on new ports, up to ``attempts`` times."""
    workdir.mkdir(parents=True, exist_ok=True)
    for attempt in range(1, attempts + 1):
        ports = free_port(), free_port(), free_port()
        log = workdir / f"server-{attempt}.log"
        environment = {**os.environ, **port_environment(*ports), **(env or {})}
        with log.open("wb") as sink:
            process = popen(
                [str(MLSERVER), "start", str(repository)],
                cwd=workdir,
                env=environment,
                stdout=sink,
                stderr=subprocess.STDOUT,
            )
        server = RunningServer(process, *ports, repository, log)
        try:
            wait_models_ready(server, models, timeout)
            return server
        except RuntimeError:
            bind_failed = _bind_failed(log)
            _stop_vanilla(process)
            if not bind_failed or attempt == attempts:
                raise
    raise AssertionError("unreachable")


def wait_models_ready(server: Any, models: Sequence[str], timeout: float = 180.0) -> None:
    """Until each named model answers ``/v2/models/NAME/ready`` with 200; raises
    ``RuntimeError`` with the log tail if the server exits or ``timeout`` passes. For any
    server with ``process``, ``base`` and ``log``."""
    pending = list(models)

    def all_ready() -> bool:
        if server.process.poll() is not None:
            raise RuntimeError(f"the server exited early:\n{_tail(server.log)}")
        while pending and _status(f"{server.base}/v2/models/{pending[0]}/ready") == 200:
            pending.pop(0)
        return not pending

    try:
        wait_until(all_ready, timeout, f"models {models} ready", interval=0.2)
    except AssertionError:
        raise RuntimeError(f"{pending} not ready after {timeout}s:\n{_tail(server.log)}") from None


def _stop_vanilla(process: subprocess.Popen[bytes], timeout: float = 20) -> None:
    if process.poll() is None:
        process.terminate()
        try:
            process.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()
