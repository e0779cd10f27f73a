"""``docs/benchmarks.md`` and ``docs/img/*.png`` from one run's measurements.

``render_markdown`` is pure (unit-tested); ``write_report`` adds the plots (matplotlib,
Agg backend, imported only there).
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from benchmarks.background import BackgroundResult
from benchmarks.cells import PERF_ANALYZER, TRACING_KEY, Cell, all_cells, light_key
from benchmarks.models import BIG_ROWS
from benchmarks.otlp_sink import Received
from benchmarks.stats import (
    PROBE,
    SERVERS,
    TRITON,
    V2SERVE,
    V2SERVE_SKLEARN,
    V2SERVE_TRACED,
    VANILLA,
    Comparison,
    LoadResult,
    Measurement,
    Summary,
    compare,
    median,
    ratio,
    summarise,
)

SERIES = SERVERS
COLOURS = {
    VANILLA: "#7f7f7f",
    V2SERVE: "#1f77b4",
    V2SERVE_SKLEARN: "#9ecae1",
    V2SERVE_TRACED: "#ff7f0e",
    TRITON: "#76b900",
    PROBE: "#d62728",
}
PAIRS = (
    (V2SERVE, VANILLA),
    (V2SERVE, TRITON),
    (V2SERVE, PROBE),
    (V2SERVE, V2SERVE_SKLEARN),
    (V2SERVE_SKLEARN, TRITON),
    (TRITON, VANILLA),
)
"""The ratios reported for every cell (candidate / baseline), where both served."""


@dataclass(frozen=True)
class Environment:
    command: str
    date: str
    cores: int
    cpu_model: str
    load_before: tuple[float, ...]
    load_after: tuple[float, ...]
    duration_s: float
    rounds: int
    seconds: float
    warmup: float
    versions: dict[str, str]
    commit: str


@dataclass(frozen=True)
class SwapRow:
    server: str
    round: int
    action: str
    outcome: str


@dataclass(frozen=True)
class MemoryRow:
    server: str
    start_mb: float
    after_load_mb: float
    extra_version_mb: float | None
    how: str


@dataclass(frozen=True, kw_only=True)
class BackgroundRow(BackgroundResult):
    """The big requests one server answered while one isolation cell measured it."""

    cell: str
    server: str
    round: int

    @classmethod
    def of(
        cls, cell: str, server: str, round_number: int, result: BackgroundResult
    ) -> BackgroundRow:
        return cls(**asdict(result), cell=cell, server=server, round=round_number)


@dataclass(frozen=True)
class AddedRows:
    """What cells (g) and (h) report beside their measurements."""

    tracing_cost: dict[str, float] = field(default_factory=dict)
    """``benchmarks.tracing_cost``: µs per request by label (empty: not run, or failed)."""
    spans: Received | None = None
    """What the OTLP sink received from the tracing-on server over the whole run."""
    background: tuple[BackgroundRow, ...] = ()


TRACING_OFF = "off (hooks only)"
"""``benchmarks.tracing_cost.OFF``: the figure issue 16 bounds."""
TRACING_OFF_BOUND_US = 1.0
MICRO_MEANINGS = {
    "on, no traceparent": "per request: its spans built and queued (exporter left out)",
    "on, with traceparent": "the same, under a client's `traceparent`",
    "on, level OFF": "per request of a model whose trace level is OFF",
    "on, rate 1000": "per request not picked by `trace_rate` 1000",
    "on, OTLP encoding": "per request, on top: the exporter's protobuf encoding of its spans "
    "(on the batch processor's thread, holding the GIL)",
}
"""What each of ``benchmarks.tracing_cost``'s figures covers (its labels)."""


def parse_tracing_cost(output: str) -> tuple[dict[str, float], str]:
    """(label -> µs, why not) from ``benchmarks.tracing_cost --json``'s output: its last
    line that is a JSON object."""
    for line in reversed(output.strip().splitlines()):
        if line.startswith("{"):
            try:
                found = json.loads(line)
            except ValueError:
                break
            if isinstance(found, dict) and TRACING_OFF in found:
                return {str(k): float(v) for k, v in found.items()}, ""
            break
    return {}, output.strip()[-300:] or "no output"


@dataclass(frozen=True)
class Target:
    """A target from issue 15: candidate/baseline on ``metric``, compared with ``bound``."""

    cell: str
    metric: str
    """throughput (at least ``bound``) or p99 (at most ``bound``)"""
    bound: float
    text: str
    candidate: str = V2SERVE
    baseline: str = VANILLA


def _targets() -> tuple[Target, ...]:
    rest16 = light_key("rest", "wrk", 16)
    targets = [
        Target(rest16, "throughput", 0.5, "light REST, c=16 (wrk): ≥ 50% of the bare ASGI probe",
               baseline=PROBE),
        Target(rest16, "throughput", 8.0, "light REST, c=16 (wrk): ≥ 8× vanilla"),
        Target(rest16, "p99", 1.0, "light REST, c=16 (wrk): p99 ≤ Triton's", baseline=TRITON),
    ]  # fmt: skip
    for loadgen in (PERF_ANALYZER, "h2load"):
        grpc16 = light_key("grpc", loadgen, 16)
        targets.append(
            Target(grpc16, "throughput", 0.6,
                   f"light gRPC, c=16 ({loadgen}): ≥ 60% of the bare grpc.aio probe",
                   baseline=PROBE)
        )  # fmt: skip
    targets.append(
        Target(light_key("grpc", "h2load", 16), "throughput", 3.0,
               "light gRPC, c=16 (h2load): ≥ 3× vanilla")
    )  # fmt: skip
    for protocol, loadgens in (
        ("rest", ("wrk", PERF_ANALYZER)),
        ("grpc", (PERF_ANALYZER, "h2load")),
    ):
        for loadgen in loadgens:
            for c in (1, 16):
                targets.append(
                    Target(light_key(protocol, loadgen, c), "throughput", 1.5,
                           f"light {'REST' if protocol == 'rest' else 'gRPC'}, c={c} "
                           f"({loadgen}): ≥ 1.5× Triton", baseline=TRITON)
                )  # fmt: skip
    for loadgen, cell in (
        ("wrk", "(c) forest, REST JSON, wrk, c=16"),
        (PERF_ANALYZER, "(c) forest, REST, perf_analyzer, c=16"),
    ):
        targets += [
            Target(cell, "throughput", 3.0,
                   f"200-tree forest, c=16 ({loadgen}): compiled ≥ 3× Triton", baseline=TRITON),
            Target(cell, "throughput", 1.0,
                   f"200-tree forest, c=16 ({loadgen}): sklearn backend ≥ 1× Triton",
                   candidate=V2SERVE_SKLEARN, baseline=TRITON),
        ]  # fmt: skip
    targets += [
        Target("(d) 1000 rows, REST binary, wrk, c=16", "throughput", 2.0,
               "1,000 rows, REST binary (wrk): ≥ 2× Triton", baseline=TRITON),
        Target("(d) 1000 rows, gRPC raw, h2load, c=16", "throughput", 2.0,
               "1,000 rows, gRPC raw (h2load): ≥ 2× Triton", baseline=TRITON),
    ]  # fmt: skip
    known = {cell.key for cell in all_cells()}
    assert all(t.cell in known for t in targets), "a target names a cell that does not exist"
    return tuple(targets)


TARGETS = _targets()


def _x(value: float | None) -> str:
    if value is None:
        return "n/a"
    return f"{value:.2f}×" if value < 10 else f"{value:.1f}×"


def _n(value: float, digits: int = 0) -> str:
    return f"{value:,.{digits}f}"


def all_comparisons(
    summaries: Sequence[Summary], baseline_cells: dict[str, str]
) -> list[Comparison]:
    return [
        c
        for candidate, baseline in PAIRS
        for c in compare(summaries, candidate, baseline, baseline_cells)
    ]


def target_rows(comparisons: Sequence[Comparison]) -> list[tuple[str, str, str]]:
    """(target, measured ratio, verdict) for each of issue 15's targets."""
    index = {(c.cell, c.candidate, c.baseline): c for c in comparisons}
    rows = []
    for target in TARGETS:
        found = index.get((target.cell, target.candidate, target.baseline))
        value = None if found is None else getattr(found, target.metric)
        if value is None:
            rows.append((target.text, "n/a", "not measured (unsupported or not run)"))
            continue
        met = value >= target.bound if target.metric == "throughput" else value <= target.bound
        if met:
            verdict = "met"
        elif target.metric == "throughput":
            verdict = f"missed: {value / target.bound:.0%} of the target"
        else:
            verdict = f"missed: {value / target.bound:.1f}× the allowed p99"
        rows.append((target.text, _x(value), verdict))
    return rows


def _pair_cell(found: Comparison | None) -> str:
    if found is None or found.throughput is None:
        return ""
    p99 = f" (p99 {_x(found.p99)})" if found.p99 is not None else ""
    mapped = "" if found.baseline_cell == found.cell else "†"
    return f"{_x(found.throughput)}{mapped}{p99}"


def tracing_rows(
    summaries: Sequence[Summary], costs: dict[str, float]
) -> list[tuple[str, str, str]]:
    """(what, figure, verdict or meaning) for issue 16's tracing cost: the micro-benchmark's
    µs per request, then cell (g)'s on/off ratios of the same v2serve."""
    rows = []
    off = costs.get(TRACING_OFF)
    if off is None:
        rows.append(("tracing off: hooks per request (micro-benchmark)", "n/a", "not run"))
    else:
        verdict = (
            f"met (bound {TRACING_OFF_BOUND_US:g} µs)"
            if off <= TRACING_OFF_BOUND_US
            else f"missed: {off / TRACING_OFF_BOUND_US:.1f}× the bound of "
            f"{TRACING_OFF_BOUND_US:g} µs"
        )
        rows.append(("tracing off: hooks per request (micro-benchmark)", f"{off:.2f} µs", verdict))
    for label, value in costs.items():
        if label != TRACING_OFF:
            meaning = MICRO_MEANINGS.get(label, "per request")
            rows.append((f"tracing {label} (micro-benchmark)", f"{value:.1f} µs", meaning))
    index = {(s.cell, s.server): s for s in summaries}
    base, traced = index.get((TRACING_KEY, V2SERVE)), index.get((TRACING_KEY, V2SERVE_TRACED))
    if base is None or traced is None or base.rounds == 0 or traced.rounds == 0:
        rows.append(("cell (g): tracing on / off", "n/a", "not measured (unsupported or not run)"))
        return rows
    for what, on, off_value, meaning in (
        ("throughput", traced.rps, base.rps, "higher is better; 1× is free"),
        ("p99", traced.p99_ms, base.p99_ms, "lower is better; 1× is free"),
        ("server CPU per request", traced.cpu_ms_per_request, base.cpu_ms_per_request,
         "lower is better; 1× is free"),
    ):  # fmt: skip
        rows.append((f"cell (g): {what}, tracing on / off", _x(ratio(on, off_value)), meaning))
    added_us = (traced.cpu_ms_per_request - base.cpu_ms_per_request) * 1e3
    rows.append(
        ("cell (g): server CPU added per request by tracing on", f"{added_us:,.0f} µs",
         "spans built, batched, serialised and POSTed to the sink")
    )  # fmt: skip
    return rows


@dataclass(frozen=True)
class IsolationRow:
    """One server in one isolation cell: the light model under load, and alone."""

    cell: str
    server: str
    rps: float
    p99_ms: float
    alone_rps: float | None
    alone_p99_ms: float | None
    big_ok: int
    big_errors: int
    big_rps: float
    big_p50_ms: float
    unsupported: str = ""


def isolation_rows(
    summaries: Sequence[Summary], background: Sequence[BackgroundRow], cells: Sequence[Cell]
) -> list[IsolationRow]:
    """Per isolation cell and server, in the cell's order: the light model's medians under
    the background load, the same server's in the cell without it, and what the background
    got answered (summed over rounds)."""
    index = {(s.cell, s.server): s for s in summaries}
    rows = []
    for cell in cells:
        if cell.background is None:
            continue
        for target in cell.targets:
            loaded = index.get((cell.key, target.label))
            if loaded is None:
                continue
            alone = index.get((cell.unloaded, target.label))
            served = alone is not None and alone.rounds > 0
            mine = [b for b in background if b.cell == cell.key and b.server == target.label]
            seconds = sum(b.seconds for b in mine)
            ok = sum(b.ok for b in mine)
            rows.append(
                IsolationRow(
                    cell=cell.key,
                    server=target.label,
                    rps=loaded.rps,
                    p99_ms=loaded.p99_ms,
                    alone_rps=alone.rps if served and alone else None,
                    alone_p99_ms=alone.p99_ms if served and alone else None,
                    big_ok=ok,
                    big_errors=sum(b.errors for b in mine),
                    big_rps=ok / seconds if seconds > 0 else 0.0,
                    big_p50_ms=median(b.p50_ms for b in mine if b.ok),
                    unsupported=loaded.unsupported if loaded.rounds == 0 else "",
                )
            )
    return rows


def _tracing_section(summaries: Sequence[Summary], added: AddedRows) -> list[str]:
    out = [
        "",
        "## Tracing off and on (issue 16, cell g)",
        "",
        "The same v2serve light model, REST JSON, wrk at c=16, twice in every round: the MAIN "
        "server (tracing off, the default) and one started with `V2SERVE_TRACING=true`, "
        "exporting every request's spans over OTLP/HTTP (the SDK's batch processor, its "
        "defaults) to a local sink that accepts and drops them (`benchmarks/otlp_sink.py`). "
        "The per-request figures come from `python -m benchmarks.tracing_cost`, run in its "
        "own process after the servers stopped: what the hooks cost with tracing off; with "
        "it on, building and queueing one request's spans, and separately the OTLP "
        "exporter's encoding of them. The cell's CPU per request includes both, and the "
        "POST.",
        "",
        "| what | figure | verdict |",
        "| --- | --- | --- |",
    ]
    out += [f"| {a} | {b} | {c} |" for a, b, c in tracing_rows(summaries, added.tracing_cost)]
    if added.spans is not None:
        spans = added.spans
        out += [
            "",
            f"The sink received {spans.roots:,} requests' spans (`infer` roots; {spans.spans:,} "
            f"spans in all) in {spans.posts:,} POSTs, {spans.bytes / 1e6:,.1f} MB"
            + (f"; it refused {spans.rejected:,} bodies" if spans.rejected else "")
            + ". The batch processor drops spans when its queue (2,048) is full, so this can be "
            "fewer than the requests answered.",
        ]
    return out


def _isolation_section(
    summaries: Sequence[Summary], added: AddedRows, comparisons: Sequence[Comparison]
) -> list[str]:
    rows = isolation_rows(summaries, added.background, all_cells())
    if not rows:
        return []
    out = [
        "",
        "## Isolation: the light model while the forest takes big requests (issue 18, cell h)",
        "",
        "Each server's light model measured as in its c=16 light cell, while two callers keep "
        "sending the same big REST JSON request to the 200-tree forest of the same server "
        "(scikit-learn backend everywhere; one request in flight per caller, started before "
        "the warm-up and waited for after the measured interval). *alone* is the same "
        "server's light cell without that load, in the same run. CPU µs/req in the results "
        "table includes the big requests' work.",
        "",
        "| cell | server | light req/s | light p99 ms | alone: req/s, p99 ms | p99 loaded / alone "
        "| big requests answered (req/s) | big request p50 ms | big errors |",
        "| --- | --- | --- | --- | --- | --- | --- | --- | --- |",
    ]
    for r in rows:
        if r.unsupported:
            out.append(f"| {r.cell} | {r.server} | unsupported: {r.unsupported} | | | | | | |")
            continue
        alone = (
            "n/a"
            if r.alone_rps is None or r.alone_p99_ms is None
            else f"{_n(r.alone_rps)}, {r.alone_p99_ms:.2f}"
        )
        slower = _x(ratio(r.p99_ms, r.alone_p99_ms or 0.0))
        out.append(
            f"| {r.cell} | {r.server} | {_n(r.rps)} | {r.p99_ms:.2f} | {alone} | {slower} | "
            f"{r.big_ok:,} ({r.big_rps:.2f}) | {_n(r.big_p50_ms)} | {r.big_errors:,} |"
        )
    index = {(c.cell, c.candidate, c.baseline): c for c in comparisons}
    out += [
        "",
        "v2serve against the others under that load (light throughput ratio, and in brackets "
        "its p99 ratio, lower is better for v2serve):",
        "",
        f"| cell | v2serve / {VANILLA} | v2serve / {TRITON} |",
        "| --- | --- | --- |",
    ]
    for cell in dict.fromkeys(r.cell for r in rows):
        pairs = [_pair_cell(index.get((cell, V2SERVE, b))) or "n/a" for b in (VANILLA, TRITON)]
        out.append(f"| {cell} | " + " | ".join(pairs) + " |")
    return out


def render_markdown(
    measurements: Sequence[Measurement],
    swaps: Sequence[SwapRow],
    memory: Sequence[MemoryRow],
    baseline_cells: dict[str, str],
    env: Environment,
    plots: Sequence[str] = (),
    added: AddedRows | None = None,
) -> str:
    summaries = summarise(measurements)
    comparisons = all_comparisons(summaries, baseline_cells)
    out = [
        "# Benchmarks: v2serve against vanilla MLServer 1.7.1, Triton and the ceiling of Python",
        "",
        f"Written by `{env.command}` (`make bench`) on {env.date}, commit `{env.commit}`, "
        f"in {env.duration_s / 60:.1f} min. Regenerate it rather than edit it.",
        "",
        "**The machine is shared and noisy**: "
        f"{env.cores} cores ({env.cpu_model}), shared by the servers, the load generators "
        "and other work running at the same time (load average "
        f"{_load(env.load_before)} before the run, {_load(env.load_after)} after). "
        "Absolute numbers move from run to run; only the ratios between servers in the same "
        "run, driven by the same load generator, and the medians over rounds count.",
        "",
        "## Targets (issue 15)",
        "",
        "| target | ratio | verdict |",
        "| --- | --- | --- |",
    ]
    out += [
        f"| {text} | {value} | {verdict} |" for text, value, verdict in target_rows(comparisons)
    ]
    out += [
        "",
        "## Ratios",
        "",
        "Medians over rounds, same cell, same load generator: throughput of the first over "
        "the second (higher is better for the first), and in brackets the p99 ratio (lower "
        "is better for the first). † compared with vanilla's JSON cell, which vanilla "
        "answers where it cannot answer this one. For the XGBoost forest the *sklearn "
        "backend* is xgboost's own predict.",
        "",
        "| cell | " + " | ".join(f"{a} / {b}" for a, b in PAIRS) + " |",
        "| --- |" + " --- |" * len(PAIRS),
    ]
    index = {(c.cell, c.candidate, c.baseline): c for c in comparisons}
    for cell in dict.fromkeys(s.cell for s in summaries):
        row = [_pair_cell(index.get((cell, a, b))) for a, b in PAIRS]
        if any(row):
            out.append(f"| {cell} | " + " | ".join(row) + " |")
    out += [
        "",
        "## Results",
        "",
        "req/s counts successful answers only. CPU µs/req is the server's utime+stime (its "
        "whole process tree, from /proc) per request answered: over wrk's measured interval, "
        "or over perf_analyzer's and h2load's whole run scaled to the requests they counted "
        "(CPU seconds per wall second over the throughput: warm-up windows under the same "
        "load do not inflate it; the idle start-up before the first request lowers it, by "
        "3-4% when sampled every 100 ms on a perf_analyzer run of this bench).",
        "",
        "| cell | server | req/s (median) | req/s per round | p50 ms | p99 ms | CPU µs/req "
        "| errors | RSS MB |",
        "| --- | --- | --- | --- | --- | --- | --- | --- | --- |",
    ]
    for s in summaries:
        out.append(_result_row(s))
    notes = sorted({(m.cell, m.server, m.note) for m in measurements if m.note})
    if notes:
        out += ["", "Notes from the run:", ""]
        out += [f"- {cell}, {server}: {note}" for cell, server, note in notes]
    if swaps:
        out += [
            "",
            "## Version swap under load (f)",
            "",
            "wrk keeps 16 connections busy on the model; 40% into the measured interval the "
            "model is replaced. Errors during the interval are in the results table, row (f).",
            "",
            "| server | round | what was done | outcome |",
            "| --- | --- | --- | --- |",
        ]
        out += [f"| {s.server} | {s.round} | {s.action} | {s.outcome} |" for s in swaps]
    if memory:
        out += [
            "",
            "## Memory",
            "",
            "Vanilla and v2serve hold the same six scikit-learn models (light, heavy, their "
            "sklearn-backend names, the swap model and a second heavy one); v2serve also "
            "the two XGBoost copies.",
            "",
            "| server | RSS at start, MB | RSS after the load, MB | + one more heavy version, MB "
            "| how |",
            "| --- | --- | --- | --- | --- |",
        ]
        for m in memory:
            extra = "n/a" if m.extra_version_mb is None else _n(m.extra_version_mb, 1)
            out.append(
                f"| {m.server} | {_n(m.start_mb)} | {_n(m.after_load_mb)} | {extra} | {m.how} |"
            )
    added = added or AddedRows()
    if any(s.cell == TRACING_KEY for s in summaries) or added.tracing_cost:
        out += _tracing_section(summaries, added)
    out += _isolation_section(summaries, added, comparisons)
    out += ["", "## How it was run", ""] + _method(env)
    if plots:
        out += ["", "## Plots", ""]
        out += [f"![{Path(p).stem}]({p})" for p in plots]
    return "\n".join(out) + "\n"


def _load(values: tuple[float, ...]) -> str:
    return " / ".join(f"{v:.2f}" for v in values)


def _result_row(s: Summary) -> str:
    if s.rounds == 0:
        return f"| {s.cell} | {s.server} | unsupported: {s.unsupported} | | | | | | |"
    per_round = ", ".join(_n(v) for v in s.rps_per_round)
    return (
        f"| {s.cell} | {s.server} | {_n(s.rps)} | {per_round} | {s.p50_ms:.2f} | "
        f"{s.p99_ms:.2f} | {_n(s.cpu_ms_per_request * 1e3)} | {s.errors} | {_n(s.rss_mb)} |"
    )


def _method(env: Environment) -> list[str]:
    versions = ", ".join(f"{k} {v}" for k, v in env.versions.items())
    return [
        f"- **Rounds**: {env.rounds} per cell, each {env.seconds:g} s measured after "
        f"{env.warmup:g} s of warm-up (perf_analyzer: three windows of a third of that); "
        "within a round every cell runs its servers one after the other (vanilla, v2serve, "
        "v2serve with the sklearn backend, Triton, the probe), so they alternate A B C D.",
        "- **Vanilla MLServer**: `mlserver start DIR`, a `model-settings.json` per model "
        "with `mlserver_sklearn.SKLearnModel`, `settings.json` with `parallel_workers: 0` "
        "(in-process inference) and `debug: false` (no access logs); metrics on, all else "
        "MLServer's defaults.",
        "- **v2serve**: `v2serve start --model-repository DIR --settings DIR` with an empty "
        "`settings.json` (its defaults: `inference_backend: auto`, so compiled where proven "
        "equal). The *sklearn backend* rows are copies of the same artifact with "
        '`"inference_backend": "sklearn"`: the compiled path off (for XGBoost: xgboost\'s '
        "own `inplace_predict`).",
        "- **Triton**: `tritonserver` 2.51 as PyTriton 0.7.0 bundles it, in its own venv "
        "(`.bench-tools/pytriton`, numpy<2, the same scikit-learn and xgboost versions), "
        "`benchmarks/peers/triton_serve.py`: each model bound as a `@batch` function that "
        "calls the same artifact's `predict` and returns only `predict`, "
        "`max_batch_size` 1024 with Triton's dynamic batcher, its Python backend (one stub "
        "process per model talking to PyTriton's process). Triton answers `predict` as "
        "`[N, 1]`, v2serve as `[N]`: the same values.",
        "- **Ceiling probes** (`benchmarks/peers/`): a bare ASGI app on uvicorn (httptools, "
        "uvloop) with orjson, and a bare `grpc.aio` servicer on v2serve's vendored protos "
        "(`raw_input_contents` in, `raw_output_contents` out), both computing the light "
        "model's LogisticRegression `predict` with numpy (argmax of X·Wᵀ + b) and nothing "
        "else: no validation, no metrics, no logs. They serve only the light model.",
        "- **Models**, trained by the harness, the same files for every server: *light* = "
        "LogisticRegression on iris, *forest* = RandomForest, 200 trees, on breast_cancer; "
        "*XGBoost forest* = XGBClassifier, 200 trees, depth 6, on breast_cancer, XGBoost's "
        "own `model.json`. 1-row requests unless the cell says 1,000 rows (the light model). "
        "No requested outputs in the bodies of wrk and h2load, so every server answers "
        "`predict` (perf_analyzer chooses its own, below). Each server's first "
        "answer per cell is checked against the estimator run in-process.",
        "- **wrk** (REST): 1 thread, N connections, a Lua script that POSTs the same body "
        "(V2 JSON, or Triton's binary tensor extension with `Inference-Header-Content-Length`) "
        "and prints wrk's own summary and latency percentiles as JSON.",
        "- **perf_analyzer** 2.51 (REST and gRPC; `tritonclient` 2.51's binary, which runs "
        "on glibc 2.36): `--concurrency-range N:N`, three measurement windows, "
        "`--stability-percentage 999` (on a shared 2-core box the windows are never "
        "stable; three it is), `--input-data` with the same rows. It reads the model's "
        "config, so it cannot drive vanilla MLServer (no config endpoint): those cells are "
        "reported as unsupported. It sends binary tensors over REST and "
        "`raw_input_contents` over gRPC, and asks for *every output the model's metadata "
        "lists*, binary (REST) or raw (gRPC): from v2serve's light model `predict`, "
        "`predict_proba` and `decision_function`, from Triton only the `predict` it binds, "
        "so in these cells v2serve computes and sends three outputs to Triton's one. It "
        "reads metadata, config and statistics before it starts and statistics around each "
        "window. Over REST it holds one HTTP/1.1 connection per concurrent caller; over "
        "gRPC its callers share channels (16 callers, as seen: 3 HTTP/2 connections, 5-6 "
        "streams), where h2load opens one connection per caller. Its client is CPU-heavy: "
        "compare servers within a cell, not across load generators.",
        "- **h2load** (gRPC; Debian's nghttp2-client): N connections, one stream each, one "
        "thread, the same gRPC-framed `ModelInferRequest` (`raw_input_contents`) on every "
        "call, latencies from its `--log-file`. It cannot read `grpc-status` (trailers), so "
        "the same request is first sent once with a real gRPC client and its answer checked.",
        "- **A server that cannot serve a cell** (its check request fails, or the load "
        "generator cannot drive it) is reported as unsupported, with the reason.",
        "- **Cache (e)**: a second pair of servers with `MLSERVER_CACHE_ENABLED=true`, the "
        "heavy model only, the identical body on every request. Vanilla's model also says "
        '`"cache_enabled": true` in its model-settings.json: MLServer caches only models '
        "that opt in (`ModelSettings.cache_enabled` defaults to false), while v2serve "
        "caches every model once the switch is on.",
        "- **Swap (f)**: v2serve gets version N+1 as a finished folder renamed into "
        "`swap/N+1`; vanilla gets a new `model.joblib` renamed over the old one and "
        "`POST /v2/repository/models/swap/load`. Afterwards a row on which the two "
        "artifacts disagree tells whether the server answers as the new one.",
        "- **Tracing (g)**: a second v2serve (light model only) with `V2SERVE_TRACING=true` "
        "and `OTEL_EXPORTER_OTLP_TRACES_ENDPOINT` at `benchmarks/otlp_sink.py`, a local "
        "OTLP/HTTP receiver in the bench process that answers every `POST /v1/traces` with "
        "200 and counts the spans; the OTel SDK's defaults otherwise (batch processor, "
        "`parentbased_always_on`: every request traced). No client `traceparent`.",
        "- **Isolation (h)**: while a light cell at c=16 runs (warm-up and measured interval), "
        f"two threads of the bench post a {BIG_ROWS:,}-row REST JSON request (about 5 MB) to "
        "the forest's `heavy-sklearn` copy on the same server, each waiting for its answer "
        "before sending again; the first answer is checked against the estimator. Triton's "
        "`heavy-sklearn` has `max_batch_size` 32,768 so that it accepts the request.",
        "- **Memory**: RSS (VmRSS of the server and its children) at start, after all cells, "
        "and the growth from loading one more copy of the heavy forest.",
        f"- **Versions**: {versions}.",
    ]


def write_report(
    folder: Path,
    measurements: Sequence[Measurement],
    swaps: Sequence[SwapRow],
    memory: Sequence[MemoryRow],
    baseline_cells: dict[str, str],
    env: Environment,
    added: AddedRows | None = None,
) -> Path:
    added = added or AddedRows()
    images = folder / "img"
    images.mkdir(parents=True, exist_ok=True)
    summaries = summarise(measurements)
    comparisons = all_comparisons(summaries, baseline_cells)
    plots = plot(summaries, comparisons, images)
    relative = [str(p.relative_to(folder)) for p in plots]
    target = folder / "benchmarks.md"
    target.write_text(
        render_markdown(measurements, swaps, memory, baseline_cells, env, relative, added)
    )
    raw = {
        "environment": asdict(env),
        "measurements": [m.to_json() for m in measurements],
        "swaps": [asdict(s) for s in swaps],
        "memory": [asdict(m) for m in memory],
        "added": asdict(added),
    }
    (folder / "benchmarks.json").write_text(json.dumps(raw, indent=1))
    return target


def load_raw(path: Path) -> dict[str, Any]:
    """A run's ``benchmarks.json`` back as report inputs, to re-render without re-running."""
    raw = json.loads(path.read_text())
    measurements = [
        Measurement(**{**m, "load": LoadResult(**m["load"]) if m["load"] else None})
        for m in raw["measurements"]
    ]
    env = raw["environment"]
    # Runs from before cells (g) and (h) have no "added".
    extra = raw.get("added") or {}
    added = AddedRows(
        tracing_cost={str(k): float(v) for k, v in (extra.get("tracing_cost") or {}).items()},
        spans=Received(**extra["spans"]) if extra.get("spans") else None,
        background=tuple(BackgroundRow(**row) for row in extra.get("background") or ()),
    )
    return {
        "added": added,
        "measurements": measurements,
        "swaps": [SwapRow(**s) for s in raw["swaps"]],
        "memory": [MemoryRow(**m) for m in raw["memory"]],
        "env": Environment(
            **{
                **env,
                "load_before": tuple(env["load_before"]),
                "load_after": tuple(env["load_after"]),
            }
        ),
    }


def plot(
    summaries: Sequence[Summary], comparisons: Sequence[Comparison], folder: Path
) -> list[Path]:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    cells = list(dict.fromkeys(s.cell for s in summaries))
    index = {(s.cell, s.server): s for s in summaries}
    paths = []

    def save(fig: Any, name: str) -> None:
        fig.tight_layout()
        paths.append(folder / name)
        fig.savefig(paths[-1], dpi=110)
        plt.close(fig)

    def grouped(name: str, title: str, value: str, xlabel: str, digits: str) -> None:
        def label(x: float) -> str:
            return format(x, ",.0f") if x >= 100 else format(x, digits)

        fig, ax = plt.subplots(figsize=(11, 0.9 * len(cells) + 1.8))
        height = 0.8 / len(SERIES)
        values = [getattr(s, value) for s in summaries if s.rounds > 0 and getattr(s, value) > 0]
        low = min(values, default=1.0) / 2
        for offset, series in enumerate(SERIES):
            ys, xs = [], []
            for row, cell in enumerate(cells):
                found = index.get((cell, series))
                y = row + (offset - (len(SERIES) - 1) / 2) * height
                if found is None:
                    continue
                if found.rounds == 0:
                    ax.text(low * 1.05, y, f"{series}: unsupported", va="center", fontsize=7)
                    continue
                ys.append(y)
                xs.append(getattr(found, value))
            bars = ax.barh(ys, xs, height=height, color=COLOURS[series], label=series)
            ax.bar_label(bars, labels=[label(x) for x in xs], fontsize=7, padding=2)
        _cell_axis(ax, cells)
        ax.set_xscale("log")
        ax.set_xlim(low, max(values, default=1.0) * 3)
        ax.set_xlabel(xlabel)
        ax.set_title(title)
        ax.legend(loc="upper center", bbox_to_anchor=(0.5, -0.5 / len(cells) - 0.06), ncol=3,
                  fontsize=8)  # fmt: skip
        save(fig, name)

    grouped("throughput.png", "Throughput, median over rounds", "rps", "requests/s (log)", ".3g")
    grouped("latency_p99.png", "p99 latency, median over rounds", "p99_ms", "ms (log)", ",.3g")
    grouped(
        "cpu_per_request.png",
        "Server CPU time per request, median over rounds",
        "cpu_ms_per_request",
        "ms of utime+stime per request, whole process tree (log)",
        ".3f",
    )

    baselines = (VANILLA, TRITON, PROBE)
    fig, ax = plt.subplots(figsize=(11, 0.7 * len(cells) + 1.8))
    by_cell = {(c.cell, c.candidate, c.baseline): c for c in comparisons}
    ratios = [c.throughput for c in comparisons if c.throughput and c.candidate == V2SERVE]
    height = 0.8 / len(baselines)
    for offset, baseline in enumerate(baselines):
        labelled = False
        for row, cell in enumerate(cells):
            found = by_cell.get((cell, V2SERVE, baseline))
            if found is None or found.throughput is None:
                continue
            bar = ax.barh(
                row + (offset - 1) * height,
                found.throughput,
                height=height,
                color=COLOURS[baseline],
                label=None if labelled else f"v2serve / {baseline}",
            )
            labelled = True
            note = "" if found.baseline_cell == cell else " (vs JSON)"
            ax.bar_label(bar, labels=[f"{found.throughput:.2f}×{note}"], fontsize=7, padding=2)
    for target in TARGETS:
        if target.metric == "throughput" and target.candidate == V2SERVE and target.cell in cells:
            y = cells.index(target.cell) + (baselines.index(target.baseline) - 1) * height
            ax.plot(target.bound, y, marker="|", color="red", markersize=10)
    ax.axvline(1.0, color="black", linewidth=0.8)
    _cell_axis(ax, cells)
    ax.set_xscale("log")
    ax.set_xlim(min([0.1, *ratios]) / 1.5, max([10.0, *ratios]) * 3)
    ax.set_xlabel("throughput, v2serve / the other server (log); red ticks: issue 15 targets")
    ax.set_title("v2serve's throughput against vanilla MLServer, Triton and the probe, same run")
    ax.legend(loc="upper center", bbox_to_anchor=(0.5, -0.5 / len(cells) - 0.06), ncol=3,
              fontsize=8)  # fmt: skip
    save(fig, "ratios.png")
    return paths


def _cell_axis(ax: Any, cells: list[str]) -> None:
    ax.set_yticks(range(len(cells)), cells, fontsize=8)
    ax.invert_yaxis()
    ax.grid(axis="x", which="both", alpha=0.25)
