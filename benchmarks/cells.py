"""The benchmark's cells: which request, over which protocol, driven by which load
generator, how many callers, to whom.

Scenario letters follow issues 8 and 15: (a) light REST, (b) light gRPC, (c) 200-tree
forests (scikit-learn's and XGBoost's), (d) 1,000 rows, (e) cache hits, (f) a version swap
under load; then issue 16's (g) tracing off and on, and issue 18's (h) the light model
while a heavy model of the same server takes big requests. Every server in a cell gets the
same body from the same load generator, one after the other (vanilla, v2serve, ..., Triton,
the probe), in every round.

Rows that other issues add go in ``ADDED_CELLS`` at the bottom: a cell names its servers
by ``Target``; a new server variant (tracing on, say) is a new ``Group`` in ``GROUPS``.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from benchmarks.models import (
    BATCH_ROWS,
    BIG_ROWS,
    HEAVY,
    LIGHT,
    NATIVE_SUFFIX,
    SKLEARN_SUFFIX,
    SWAP,
    XGB,
)  # fmt: skip
from benchmarks.stats import PROBE, TRITON, V2SERVE, V2SERVE_SKLEARN, V2SERVE_TRACED, VANILLA

MAIN, CACHED, TRACED = "main", "cache", "tracing"

WRK, PERF_ANALYZER, H2LOAD = "wrk", "perf_analyzer", "h2load"


@dataclass(frozen=True)
class Group:
    """A set of servers started with the same switches, for the cells that name it."""

    name: str
    env: dict[str, str] = field(default_factory=dict)
    """Environment of vanilla's and v2serve's processes (``MLSERVER_*`` settings)."""
    kinds: tuple[str, ...] = ("vanilla", "v2serve")
    only: tuple[str, ...] | None = None
    """The models this group serves (None: all of them)."""
    otlp: bool = False
    """Its servers export spans to the run's OTLP sink (``benchmarks/otlp_sink.py``), whose
    URL is known only once the sink listens: ``run.py`` adds the endpoint to ``env``."""


GROUPS = {
    MAIN: Group(MAIN, kinds=("vanilla", "v2serve", "triton", "probe")),
    CACHED: Group(CACHED, {"MLSERVER_CACHE_ENABLED": "true"}, only=(HEAVY,)),
    # v2serve's own switch; the exporter's protocol is OTLP's default, said out loud.
    TRACED: Group(
        TRACED,
        {"V2SERVE_TRACING": "true", "OTEL_EXPORTER_OTLP_TRACES_PROTOCOL": "http/protobuf"},
        kinds=("v2serve",),
        only=(LIGHT,),
        otlp=True,
    ),
}


@dataclass(frozen=True)
class Background:
    """Big requests to another model of the same server, for as long as a cell's load
    generator runs (its warm-up and measured interval): ``callers`` closed loops over REST
    JSON, one request in flight each, so the load is bounded whatever the server's speed."""

    model: str
    payload: str
    callers: int


@dataclass(frozen=True)
class Target:
    label: str
    """The column this run reports under (vanilla, v2serve, Triton, the probe, ...)."""
    kind: str
    """Which server answers: vanilla, v2serve, triton or probe (ASGI or grpc.aio, by the
    cell's protocol)."""
    model: str
    group: str = MAIN


@dataclass(frozen=True)
class Cell:
    key: str
    scenario: str
    protocol: str
    """rest | grpc"""
    encoding: str
    """json | binary (REST); raw (gRPC); perf_analyzer chooses its own (binary, raw)"""
    payload: str
    concurrency: int
    targets: tuple[Target, ...]
    loadgen: str = WRK
    baseline: str = ""
    """Key of the cell whose vanilla result is this cell's denominator (default: itself)."""
    swap: bool = False
    background: Background | None = None
    unloaded: str = ""
    """Key of the same cell without the background load (its servers' light p99 alone)."""
    quick: bool = False
    """Part of a ``--quick`` run."""


def _targets(
    model: str,
    vanilla: bool = True,
    sklearn: bool = False,
    triton: bool = True,
    probe: bool = False,
    group: str = MAIN,
    native: str = SKLEARN_SUFFIX,
) -> tuple[Target, ...]:
    targets = [Target(VANILLA, "vanilla", model, group)] if vanilla else []
    targets.append(Target(V2SERVE, "v2serve", model, group))
    if sklearn:
        targets.append(Target(V2SERVE_SKLEARN, "v2serve", model + native, group))
    if triton:
        targets.append(Target(TRITON, "triton", model, group))
    if probe:
        targets.append(Target(PROBE, "probe", LIGHT, group))
    return tuple(targets)


BATCH = f"light-{BATCH_ROWS}"


def light_key(protocol: str, loadgen: str, concurrency: int) -> str:
    scenario, what = ("a", "REST JSON") if protocol == "rest" else ("b", "gRPC raw")
    if loadgen == PERF_ANALYZER:
        what = what.split()[0]  # perf_analyzer picks its own encoding
    return f"({scenario}) light, {what}, {loadgen}, c={concurrency}"


def all_cells() -> list[Cell]:
    cells = []
    for protocol, loadgens in (("rest", (WRK, PERF_ANALYZER)), ("grpc", (PERF_ANALYZER, H2LOAD))):
        for loadgen in loadgens:
            for c in (1, 16):
                cells.append(
                    Cell(light_key(protocol, loadgen, c), "a" if protocol == "rest" else "b",
                         protocol, "json" if protocol == "rest" else "raw", "light-1", c,
                         _targets(LIGHT, sklearn=c == 16 and loadgen == WRK, probe=True),
                         loadgen=loadgen, quick=c == 16)
                )  # fmt: skip
    json_batch = f"(d) {BATCH_ROWS} rows, REST JSON, wrk, c=16"
    cells += [
        Cell("(c) forest, REST JSON, wrk, c=16", "c", "rest", "json", "heavy-1", 16,
             _targets(HEAVY, sklearn=True), quick=True),
        Cell("(c) forest, REST, perf_analyzer, c=16", "c", "rest", "json", "heavy-1", 16,
             _targets(HEAVY, vanilla=False, sklearn=True), loadgen=PERF_ANALYZER),
        Cell("(c) XGBoost forest, REST JSON, wrk, c=16", "c", "rest", "json", "heavy-1", 16,
             _targets(XGB, vanilla=False, sklearn=True, native=NATIVE_SUFFIX), quick=True),
        Cell(json_batch, "d", "rest", "json", BATCH, 16, _targets(LIGHT)),
        Cell(f"(d) {BATCH_ROWS} rows, REST binary, wrk, c=16", "d", "rest", "binary", BATCH, 16,
             _targets(LIGHT), baseline=json_batch),
        Cell(f"(d) {BATCH_ROWS} rows, gRPC raw, h2load, c=16", "d", "grpc", "raw", BATCH, 16,
             _targets(LIGHT), loadgen=H2LOAD),
        Cell("(e) forest, cache hits, REST JSON, wrk, c=16", "e", "rest", "json", "heavy-1", 16,
             _targets(HEAVY, triton=False, group=CACHED)),
        Cell("(f) light, version swap, REST JSON, wrk, c=16", "f", "rest", "json", "light-1",
             16, _targets(SWAP, triton=False), swap=True),
    ]  # fmt: skip
    return cells + ADDED_CELLS


TRACING_KEY = "(g) light, tracing off/on, REST JSON, wrk, c=16"
BIG = f"heavy-{BIG_ROWS}"
HEAVY_LOAD = Background(HEAVY + SKLEARN_SUFFIX, BIG, callers=2)
"""The forest on the scikit-learn backend on every server (vanilla's only backend, Triton's
Python backend), so the heavy work is the same estimator call everywhere."""


def isolation_key(protocol: str, loadgen: str) -> str:
    what = "REST JSON" if protocol == "rest" else "gRPC raw"
    return f"(h) light, forest busy with {BIG_ROWS} rows, {what}, {loadgen}, c=16"


def _added_cells() -> list[Cell]:
    tracing = Cell(
        TRACING_KEY, "g", "rest", "json", "light-1", 16,
        (Target(V2SERVE, "v2serve", LIGHT), Target(V2SERVE_TRACED, "v2serve", LIGHT, TRACED)),
        quick=True,
    )  # fmt: skip
    isolation = [
        Cell(isolation_key(protocol, loadgen), "h", protocol,
             "json" if protocol == "rest" else "raw", "light-1", 16, _targets(LIGHT),
             loadgen=loadgen, background=HEAVY_LOAD, unloaded=light_key(protocol, loadgen, 16),
             quick=True)
        for protocol, loadgen in (("rest", WRK), ("grpc", H2LOAD))
    ]  # fmt: skip
    return [tracing, *isolation]


ADDED_CELLS: list[Cell] = _added_cells()
"""Rows other issues add, measured after the ones above in every round:
- (g) issue 16's tracing off and on: v2serve in MAIN (off) and in the "tracing" group (on,
  exporting to the run's OTLP sink), one after the other on the same light cell;
- (h) issue 18's "light model p99 while a heavy model is loaded with big requests": the
  light cells at c=16 whose servers also carry ``HEAVY_LOAD`` while they are measured."""


def server_kinds(cells: list[Cell]) -> set[tuple[str, str]]:
    """(group, kind) of every server the cells name, each checked against its group."""
    found = {(target.group, target.kind) for cell in cells for target in cell.targets}
    for group, kind in sorted(found):
        if group not in GROUPS:
            raise ValueError(f"a cell names group '{group}', which GROUPS does not define")
        if kind not in GROUPS[group].kinds:
            raise ValueError(
                f"a cell names a {kind} server in group '{group}', which starts only "
                f"{list(GROUPS[group].kinds)}"
            )
    return found


def baselines(cells: list[Cell]) -> dict[str, str]:
    return {cell.key: cell.baseline for cell in cells if cell.baseline}
