"""The benchmark's cells: which request, over which protocol, how many callers, to whom.

Scenario letters follow issue 8: (a) light REST, (b) light gRPC, (c) heavy REST,
(d) 1,000 rows, (e) cache hits, (f) a version swap under load; plus the compiled path
off (v2serve's ``inference_backend: sklearn`` copy of the same model) in (a) and (c).
"""

from __future__ import annotations

from dataclasses import dataclass

from benchmarks.models import BATCH_ROWS, HEAVY, LIGHT, SKLEARN_SUFFIX, SWAP
from benchmarks.stats import V2SERVE, V2SERVE_SKLEARN, VANILLA

MAIN, CACHED = "main", "cache"


@dataclass(frozen=True)
class Target:
    label: str
    """The column this run reports under (vanilla, v2serve, v2serve with sklearn)."""
    kind: str
    """Which server process answers: "vanilla" or "v2serve"."""
    model: str
    group: str = MAIN
    """The main pair of servers, or the pair started with the cache switched on."""


@dataclass(frozen=True)
class Cell:
    key: str
    scenario: str
    protocol: str
    """rest | grpc"""
    encoding: str
    """json | binary (REST); contents | raw (gRPC)"""
    payload: str
    concurrency: int
    targets: tuple[Target, ...]
    baseline: str = ""
    """Key of the cell whose vanilla result is this cell's denominator (default: itself)."""
    swap: bool = False


def _pair(model: str, group: str = MAIN, sklearn: bool = False) -> tuple[Target, ...]:
    targets = [Target(VANILLA, "vanilla", model, group), Target(V2SERVE, "v2serve", model, group)]
    if sklearn:
        targets.append(Target(V2SERVE_SKLEARN, "v2serve", model + SKLEARN_SUFFIX, group))
    return tuple(targets)


BATCH = f"light-{BATCH_ROWS}"


def all_cells() -> list[Cell]:
    cells = []
    for c in (1, 16, 64):
        cells.append(
            Cell(f"(a) light, REST JSON, c={c}", "a", "rest", "json", "light-1", c,
                 _pair(LIGHT, sklearn=c == 16))
        )  # fmt: skip
    for c in (1, 16, 64):
        cells.append(
            Cell(f"(b) light, gRPC, c={c}", "b", "grpc", "contents", "light-1", c, _pair(LIGHT))
        )
    for c in (16, 64):
        cells.append(
            Cell(f"(c) heavy, REST JSON, c={c}", "c", "rest", "json", "heavy-1", c,
                 _pair(HEAVY, sklearn=True))
        )  # fmt: skip
    json_batch = f"(d) {BATCH_ROWS} rows, REST JSON, c=16"
    cells += [
        Cell(json_batch, "d", "rest", "json", BATCH, 16, _pair(LIGHT)),
        Cell(f"(d) {BATCH_ROWS} rows, REST binary, c=16", "d", "rest", "binary", BATCH, 16,
             _pair(LIGHT), baseline=json_batch),
        Cell(f"(d) {BATCH_ROWS} rows, gRPC raw, c=16", "d", "grpc", "raw", BATCH, 16,
             _pair(LIGHT)),
        Cell("(e) heavy, cache hits, REST, c=16", "e", "rest", "json", "heavy-1", 16,
             _pair(HEAVY, group=CACHED)),
        Cell("(f) light, version swap, REST, c=16", "f", "rest", "json", "light-1", 16,
             _pair(SWAP), swap=True),
    ]  # fmt: skip
    return cells


def baselines(cells: list[Cell]) -> dict[str, str]:
    return {cell.key: cell.baseline for cell in cells if cell.baseline}
