"""Pure parts of the benchmark: parsing load-generator output, medians, ratios.

Nothing here starts a process or reads a clock, so it is unit-tested
(``tests/unit/test_bench_parsing.py``).
"""

from __future__ import annotations

import json
import statistics
from collections.abc import Iterable, Sequence
from dataclasses import asdict, dataclass, field

WRK_MARKER = "BENCH_JSON "

VANILLA = "vanilla MLServer"
V2SERVE = "v2serve"
V2SERVE_SKLEARN = "v2serve, sklearn backend"
"""``inference_backend: sklearn``: the compiled path off (for XGBoost, xgboost's own)."""
V2SERVE_TRACED = "v2serve, tracing on"
"""``V2SERVE_TRACING=true``, exporting every request's spans over OTLP/HTTP."""
TRITON = "Triton (PyTriton)"
PROBE = "ceiling probe"
"""The bare ASGI app (REST cells) or the bare grpc.aio servicer (gRPC cells)."""
SERVERS = (VANILLA, V2SERVE, V2SERVE_SKLEARN, V2SERVE_TRACED, TRITON, PROBE)


@dataclass(frozen=True)
class LoadResult:
    """What one load generator saw over one measured interval."""

    ok: int
    errors: int
    seconds: float
    p50_ms: float
    p99_ms: float
    detail: dict[str, int] = field(default_factory=dict)
    """Error counts by kind (HTTP non-2xx, socket errors, gRPC status codes)."""


@dataclass(frozen=True)
class Measurement:
    """One server, one cell, one round."""

    cell: str
    server: str
    round: int
    load: LoadResult | None
    cpu_seconds: float = 0.0
    rss_mb: float = 0.0
    unsupported: str = ""
    """Why the server could not serve this cell at all (empty when it could)."""
    note: str = ""

    @property
    def rps(self) -> float:
        if self.load is None or self.load.seconds <= 0:
            return 0.0
        return self.load.ok / self.load.seconds

    @property
    def cpu_ms_per_request(self) -> float:
        if self.load is None or self.load.ok == 0:
            return 0.0
        return self.cpu_seconds / self.load.ok * 1e3

    def to_json(self) -> dict[str, object]:
        return asdict(self)


def parse_wrk(output: str) -> LoadResult:
    """The summary that our Lua ``done()`` prints, in wrk's own units (µs)."""
    for line in output.splitlines():
        if line.startswith(WRK_MARKER):
            summary = json.loads(line[len(WRK_MARKER) :])
            break
    else:
        raise ValueError(f"no {WRK_MARKER.strip()} line in wrk output:\n{output}")
    socket_errors = {kind: int(summary[kind]) for kind in ("connect", "read", "write", "timeout")}
    non_2xx = int(summary["status"])
    # wrk counts a non-2xx reply as a completed request; socket errors are not requests.
    ok = int(summary["requests"]) - non_2xx
    detail = {"non-2xx": non_2xx, **{f"socket {k}": v for k, v in socket_errors.items()}}
    return LoadResult(
        ok=ok,
        errors=non_2xx + sum(socket_errors.values()),
        seconds=int(summary["duration_us"]) / 1e6,
        p50_ms=int(summary["p50_us"]) / 1e3,
        p99_ms=int(summary["p99_us"]) / 1e3,
        detail={k: v for k, v in detail.items() if v},
    )


def percentile(values: Sequence[float], q: float) -> float:
    """Nearest-rank percentile (q in 0..100), as wrk reports them."""
    if not values:
        return 0.0
    ordered = sorted(values)
    rank = max(1, -(-len(ordered) * q // 100))
    return float(ordered[int(min(rank, len(ordered))) - 1])


def median(values: Iterable[float]) -> float:
    data = list(values)
    return float(statistics.median(data)) if data else 0.0


def ratio(numerator: float, denominator: float) -> float | None:
    """``None`` when the denominator is missing: a ratio must never divide by zero."""
    if denominator <= 0 or numerator < 0:
        return None
    return numerator / denominator


@dataclass(frozen=True)
class Summary:
    """Medians over the rounds of one server in one cell."""

    cell: str
    server: str
    rounds: int
    rps: float
    p50_ms: float
    p99_ms: float
    cpu_ms_per_request: float
    rss_mb: float
    errors: int
    rps_per_round: tuple[float, ...]
    unsupported: str = ""


def summarise(measurements: Iterable[Measurement]) -> list[Summary]:
    """One summary per (cell, server), in first-seen order."""
    groups: dict[tuple[str, str], list[Measurement]] = {}
    for item in measurements:
        groups.setdefault((item.cell, item.server), []).append(item)
    summaries = []
    for (cell, server), items in groups.items():
        served = [m for m in items if m.load is not None]
        reasons = sorted({m.unsupported for m in items if m.unsupported})
        summaries.append(
            Summary(
                cell=cell,
                server=server,
                rounds=len(served),
                rps=median(m.rps for m in served),
                p50_ms=median(m.load.p50_ms for m in served if m.load),
                p99_ms=median(m.load.p99_ms for m in served if m.load),
                cpu_ms_per_request=median(m.cpu_ms_per_request for m in served),
                rss_mb=max((m.rss_mb for m in served), default=0.0),
                errors=sum(m.load.errors for m in served if m.load),
                rps_per_round=tuple(m.rps for m in served),
                unsupported="; ".join(reasons) if not served else "",
            )
        )
    return summaries


@dataclass(frozen=True)
class Comparison:
    """A candidate's medians over a baseline's, for one cell."""

    cell: str
    candidate: str
    baseline_cell: str
    throughput: float | None
    p99: float | None
    cpu_per_request: float | None
    baseline: str = VANILLA


def compare(
    summaries: Sequence[Summary],
    candidate: str,
    baseline: str,
    baseline_cell: dict[str, str] | None = None,
) -> list[Comparison]:
    """candidate/baseline for every cell where the candidate served.

    ``baseline_cell`` maps a cell to the one whose baseline it is compared against when
    the baseline cannot serve the cell itself (v2serve's binary REST against vanilla's
    JSON); a baseline that served the cell is compared in it.
    """
    index = {(s.cell, s.server): s for s in summaries}
    comparisons = []
    for item in summaries:
        if item.server != candidate or item.rounds == 0:
            continue
        own = index.get((item.cell, baseline))
        against = item.cell
        if own is None or own.rounds == 0:
            against = (baseline_cell or {}).get(item.cell, item.cell)
        base = index.get((against, baseline))
        if base is None or base.rounds == 0:
            continue
        comparisons.append(
            Comparison(
                cell=item.cell,
                candidate=candidate,
                baseline_cell=against,
                throughput=ratio(item.rps, base.rps),
                p99=ratio(item.p99_ms, base.p99_ms),
                cpu_per_request=ratio(item.cpu_ms_per_request, base.cpu_ms_per_request),
                baseline=baseline,
            )
        )
    return comparisons
