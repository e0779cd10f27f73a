"""``docs/benchmarks.md`` and ``docs/img/*.png`` from one run's measurements.

``render_markdown`` is pure (unit-tested); ``write_report`` adds the plots (matplotlib,
Agg backend, imported only there).
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from benchmarks.stats import (
    V2SERVE,
    V2SERVE_SKLEARN,
    VANILLA,
    Comparison,
    LoadResult,
    Measurement,
    Summary,
    compare,
    summarise,
)

SERIES = (VANILLA, V2SERVE, V2SERVE_SKLEARN)
COLOURS = {VANILLA: "#7f7f7f", V2SERVE: "#1f77b4", V2SERVE_SKLEARN: "#9ecae1"}


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


@dataclass(frozen=True)
class Target:
    """A target from issue 8: candidate/vanilla on ``metric`` compared with ``bound``."""

    cell: str
    metric: str
    """throughput (at least ``bound``) or p99 (at most ``bound``)"""
    bound: float
    text: str


TARGETS = (
    Target(
        "(a) light, REST JSON, c=16", "throughput", 5.0, "light REST, 16 conc.: throughput ≥ 5×"
    ),
    Target("(a) light, REST JSON, c=16", "p99", 1 / 3, "light REST, 16 conc.: p99 ≤ 1/3"),
    Target("(b) light, gRPC, c=16", "throughput", 3.0, "light gRPC, 16 conc.: throughput ≥ 3×"),
    Target("(c) heavy, REST JSON, c=64", "throughput", 10.0, "heavy, 64 conc.: throughput ≥ 10×"),
    Target(
        "(d) 1000 rows, REST binary, c=16",
        "throughput",
        3.0,
        "1,000 rows, REST binary vs vanilla JSON: ≥ 3×",
    ),
)


def _x(value: float | None) -> str:
    if value is None:
        return "n/a"
    return f"{value:.2f}×" if value < 10 else f"{value:.1f}×"


def _n(value: float, digits: int = 0) -> str:
    return f"{value:,.{digits}f}"


def target_rows(comparisons: Sequence[Comparison]) -> list[tuple[str, str, str]]:
    """(target, measured ratio, verdict) for each of issue 8's targets."""
    index = {(c.cell, c.candidate): c for c in comparisons}
    rows = []
    for target in TARGETS:
        found = index.get((target.cell, V2SERVE))
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


def render_markdown(
    measurements: Sequence[Measurement],
    swaps: Sequence[SwapRow],
    memory: Sequence[MemoryRow],
    baseline_cells: dict[str, str],
    env: Environment,
    plots: Sequence[str] = (),
) -> str:
    summaries = summarise(measurements)
    comparisons = [
        c
        for candidate in (V2SERVE, V2SERVE_SKLEARN)
        for c in compare(summaries, candidate, VANILLA, baseline_cells)
    ]
    out = [
        "# Benchmarks: v2serve against vanilla MLServer 1.7.1",
        "",
        f"Written by `{env.command}` (`make bench`) on {env.date}, commit `{env.commit}`, "
        f"in {env.duration_s / 60:.1f} min. Regenerate it rather than edit it.",
        "",
        "**The machine is shared and noisy**: "
        f"{env.cores} cores ({env.cpu_model}), shared by the servers, the load generators "
        "and other work running at the same time (load average "
        f"{_load(env.load_before)} before the run, {_load(env.load_after)} after). "
        "Absolute numbers move from run to run; the v2serve/vanilla ratios from the same "
        "run and the medians over rounds are what count.",
        "",
        "## Targets (issue 8)",
        "",
        "| target | v2serve / vanilla | verdict |",
        "| --- | --- | --- |",
    ]
    out += [
        f"| {text} | {value} | {verdict} |" for text, value, verdict in target_rows(comparisons)
    ]
    out += [
        "",
        "## Ratios",
        "",
        "Medians over rounds, candidate / vanilla MLServer in the same cell (throughput: "
        "higher is better; p99 and CPU per request: lower is better).",
        "",
        "| cell | candidate | compared with vanilla's | throughput | p99 | CPU / request |",
        "| --- | --- | --- | --- | --- | --- |",
    ]
    for c in comparisons:
        against = "same cell" if c.baseline_cell == c.cell else c.baseline_cell
        out.append(
            f"| {c.cell} | {c.candidate} | {against} | {_x(c.throughput)} | {_x(c.p99)} "
            f"| {_x(c.cpu_per_request)} |"
        )
    out += [
        "",
        "## Results",
        "",
        "req/s counts successful answers only. CPU ms/req is the server process's "
        "utime+stime (from /proc) over the measured interval divided by the requests it "
        "answered; RSS is the server's after the cell.",
        "",
        "| cell | server | req/s (median) | req/s per round | p50 ms | p99 ms | CPU ms/req "
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
            "Both servers hold the same six models (light, heavy, their sklearn-backend "
            "names, the swap model and a second heavy one).",
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
        f"{s.p99_ms:.2f} | {s.cpu_ms_per_request:.3f} | {s.errors} | {_n(s.rss_mb)} |"
    )


def _method(env: Environment) -> list[str]:
    versions = ", ".join(f"{k} {v}" for k, v in env.versions.items())
    return [
        f"- **Rounds**: {env.rounds} per cell, each {env.seconds:g} s measured after "
        f"{env.warmup:g} s of warm-up; within a round every cell runs vanilla, then v2serve "
        "(then v2serve with the sklearn backend), so the servers alternate A B A B.",
        "- **Vanilla MLServer**: `mlserver start DIR`, a `model-settings.json` per model "
        "with `mlserver_sklearn.SKLearnModel`, `settings.json` with `parallel_workers: 0` "
        "(in-process inference) and `debug: false` (no access logs); metrics on, all else "
        "MLServer's defaults.",
        "- **v2serve**: `v2serve start --model-repository DIR --settings DIR` with an empty "
        "`settings.json` (its defaults: `inference_backend: auto`, so compiled where proven "
        "equal). The *sklearn backend* rows are copies of the same artifact with "
        '`"inference_backend": "sklearn"`: the compiled path off.',
        "- **Models**, trained by the harness, the same joblib file for both: *light* = "
        "LogisticRegression on iris, *heavy* = RandomForest, 200 trees, on breast_cancer; "
        "1-row requests unless the cell says 1,000 rows (the light model). No requested "
        "outputs, so both answer `predict`. Each server's first answer per cell is checked "
        "against the estimator run in-process.",
        "- **REST load**: wrk, 1 thread, N connections, a Lua script that POSTs the same body "
        "(V2 JSON, or Triton's binary tensor extension with `Inference-Header-Content-Length`) "
        "and prints wrk's own summary and latency percentiles as JSON. A cell a server "
        "cannot serve (its probe request fails) is reported as unsupported.",
        "- **gRPC load**: `python -m benchmarks.grpc_load`, one process, N concurrent "
        "grpc.aio callers on one channel, tritonclient's generated stubs, "
        "`ModelInfer` with typed `contents` (1 row) or `raw_input_contents` (1,000 rows); "
        "counts successes, errors by status code, and latencies.",
        "- **Cache (e)**: a second pair of servers with `MLSERVER_CACHE_ENABLED=true`, the "
        "heavy model only, the identical body on every request. Vanilla's model also says "
        '`"cache_enabled": true` in its model-settings.json: MLServer caches only models '
        "that opt in (`ModelSettings.cache_enabled` defaults to false), while v2serve "
        "caches every model once the switch is on.",
        "- **Swap (f)**: v2serve gets version N+1 as a finished folder renamed into "
        "`swap/N+1`; vanilla gets a new `model.joblib` renamed over the old one and "
        "`POST /v2/repository/models/swap/load`. Afterwards a row on which the two "
        "artifacts disagree tells whether the server answers as the new one.",
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
) -> Path:
    images = folder / "img"
    images.mkdir(parents=True, exist_ok=True)
    summaries = summarise(measurements)
    comparisons = [
        c
        for candidate in (V2SERVE, V2SERVE_SKLEARN)
        for c in compare(summaries, candidate, VANILLA, baseline_cells)
    ]
    plots = plot(summaries, comparisons, images)
    relative = [str(p.relative_to(folder)) for p in plots]
    target = folder / "benchmarks.md"
    target.write_text(render_markdown(measurements, swaps, memory, baseline_cells, env, relative))
    raw = {
        "environment": asdict(env),
        "measurements": [m.to_json() for m in measurements],
        "swaps": [asdict(s) for s in swaps],
        "memory": [asdict(m) for m in memory],
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
    return {
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

        fig, ax = plt.subplots(figsize=(10, 0.62 * len(cells) + 1.8))
        height = 0.8 / len(SERIES)
        values = [getattr(s, value) for s in summaries if s.rounds > 0 and getattr(s, value) > 0]
        low = min(values, default=1.0) / 2
        for offset, series in enumerate(SERIES):
            ys, xs = [], []
            for row, cell in enumerate(cells):
                found = index.get((cell, series))
                y = row + (offset - 1) * height
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
        "ms of utime+stime per request (log)",
        ".3f",
    )

    fig, ax = plt.subplots(figsize=(10, 0.5 * len(cells) + 1.8))
    found_any = {V2SERVE: False, V2SERVE_SKLEARN: False}
    by_cell = {(c.cell, c.candidate): c for c in comparisons}
    ratios = [c.throughput for c in comparisons if c.throughput]
    for offset, candidate in enumerate((V2SERVE, V2SERVE_SKLEARN)):
        for row, cell in enumerate(cells):
            found = by_cell.get((cell, candidate))
            if found is None or found.throughput is None:
                continue
            bar = ax.barh(
                row + (offset - 0.5) * 0.4,
                found.throughput,
                height=0.4,
                color=COLOURS[candidate],
                label=None if found_any[candidate] else candidate,
            )
            found_any[candidate] = True
            note = "" if found.baseline_cell == cell else " (vs vanilla JSON)"
            ax.bar_label(bar, labels=[f"{found.throughput:.2f}×{note}"], fontsize=7, padding=2)
    for target in TARGETS:
        if target.metric == "throughput" and target.cell in cells:
            ax.plot(target.bound, cells.index(target.cell), marker="|", color="red", markersize=18)
    ax.axvline(1.0, color="black", linewidth=0.8)
    _cell_axis(ax, cells)
    ax.set_xscale("log")
    ax.set_xlim(min([0.5, *ratios]) / 1.5, max([10.0, *ratios]) * 3)
    ax.set_xlabel("throughput, candidate / vanilla MLServer (log); red ticks: issue 8 targets")
    ax.set_title("Throughput ratio against vanilla MLServer, same run")
    ax.legend(loc="upper center", bbox_to_anchor=(0.5, -0.5 / len(cells) - 0.06), ncol=2,
              fontsize=8)  # fmt: skip
    save(fig, "ratios.png")
    return paths


def _cell_axis(ax: Any, cells: list[str]) -> None:
    ax.set_yticks(range(len(cells)), cells, fontsize=8)
    ax.invert_yaxis()
    ax.grid(axis="x", which="both", alpha=0.25)
