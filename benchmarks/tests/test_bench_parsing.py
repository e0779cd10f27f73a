"""The benchmark's pure parts: wrk output, medians and ratios, the rendered report."""

import json
from pathlib import Path

import pytest

from benchmarks.cells import all_cells, baselines
from benchmarks.loadgen import RestRequest, lua_script, predictions
from benchmarks.report import (
    Environment,
    MemoryRow,
    SwapRow,
    load_raw,
    render_markdown,
    target_rows,
)
from benchmarks.stats import (
    V2SERVE,
    VANILLA,
    LoadResult,
    Measurement,
    compare,
    median,
    parse_wrk,
    percentile,
    ratio,
    summarise,
)

WRK_OUTPUT = """\
Running 5s test @ http://127.0.0.1:40111/v2/models/light/infer
  1 threads and 16 connections
  Thread Stats   Avg      Stdev     Max   +/- Stdev
    Latency     6.41ms    1.20ms  31.02ms   88.10%
    Req/Sec     2.50k   150.00     2.80k    70.00%
  Latency Distribution
     50%    6.20ms
     75%    6.90ms
     90%    7.80ms
     99%   11.07ms
  12503 requests in 5.00s, 4.10MB read
  Socket errors: connect 0, read 2, write 0, timeout 1
  Non-2xx or 3xx responses: 3
Requests/sec:   2500.10
Transfer/sec:    840.00KB
BENCH_JSON {"requests": 12503, "duration_us": 5001000, "bytes": 4299161, "connect": 0, \
"read": 2, "write": 0, "status": 3, "timeout": 1, "p50_us": 6200, "p99_us": 11070, \
"max_us": 31020}
"""

ENV = Environment(
    command="python -m benchmarks",
    date="2026-01-01 00:00 UTC",
    cores=2,
    cpu_model="test cpu",
    load_before=(1.0, 1.0, 1.0),
    load_after=(2.0, 2.0, 2.0),
    duration_s=420.0,
    rounds=2,
    seconds=5,
    warmup=1,
    versions={"mlserver": "1.7.1"},
    commit="abc1234",
)


def _load(ok: int, p50: float = 5.0, p99: float = 10.0, errors: int = 0) -> LoadResult:
    return LoadResult(ok=ok, errors=errors, seconds=5.0, p50_ms=p50, p99_ms=p99)


def _measure(cell: str, server: str, round_: int, ok: int, **kwargs: float) -> Measurement:
    return Measurement(cell, server, round_, _load(ok, **kwargs), cpu_seconds=ok * 0.0004)


def test_wrk_summary_is_read_from_our_done_line() -> None:
    result = parse_wrk(WRK_OUTPUT)
    assert result.ok == 12503 - 3  # a non-2xx reply is a completed request, not a success
    assert result.errors == 3 + 2 + 1
    assert result.seconds == pytest.approx(5.001)
    assert result.p50_ms == pytest.approx(6.2)
    assert result.p99_ms == pytest.approx(11.07)
    assert result.detail == {"non-2xx": 3, "socket read": 2, "socket timeout": 1}


def test_wrk_output_without_the_done_line_is_an_error() -> None:
    with pytest.raises(ValueError, match="BENCH_JSON"):
        parse_wrk("Usage: wrk <options> <url>\n  -c, --connections <N>\n")


def test_the_lua_script_posts_the_body_file_with_its_headers(tmp_path: Path) -> None:
    body = tmp_path / "body.bin"
    request = RestRequest(
        "/v2/models/m/infer",
        body,
        "application/octet-stream",
        (("Inference-Header-Content-Length", "120"),),
    )
    script = lua_script(tmp_path, "s", request).read_text()
    assert 'wrk.method = "POST"' in script
    assert 'wrk.headers["Content-Type"] = "application/octet-stream"' in script
    assert 'wrk.headers["Inference-Header-Content-Length"] = "120"' in script
    assert f'io.open("{body}", "rb")' in script
    assert "BENCH_JSON {" in script and "latency:percentile(99)" in script


@pytest.mark.parametrize(
    ("data", "expected"), [([[0], [2], [1]], [0, 2, 1]), ([0, 2, 1], [0, 2, 1]), ([], [])]
)
def test_predictions_flatten_n_by_1_and_n(data: list, expected: list) -> None:
    answer = {"outputs": [{"name": "predict", "shape": [3, 1], "data": data}]}
    assert predictions(answer) == expected


def test_predictions_of_an_error_body_are_none() -> None:
    assert predictions({"error": "bad"}) is None


def test_percentile_is_nearest_rank() -> None:
    values = [float(v) for v in range(100, 0, -1)]
    assert percentile(values, 50) == 50.0
    assert percentile(values, 99) == 99.0
    assert percentile(values, 100) == 100.0
    assert percentile([3.0], 99) == 3.0
    assert percentile([], 50) == 0.0


def test_median_and_ratio() -> None:
    assert median([3.0, 1.0, 2.0]) == 2.0
    assert median([1.0, 4.0]) == 2.5
    assert median([]) == 0.0
    assert ratio(30.0, 10.0) == 3.0
    assert ratio(1.0, 0.0) is None


def test_summaries_are_medians_over_rounds() -> None:
    cell = "(a) light, REST JSON, c=16"
    items = [
        _measure(cell, VANILLA, 1, 5000, p99=8.0),
        _measure(cell, VANILLA, 2, 6000, p99=12.0),
        _measure(cell, VANILLA, 3, 100000, p99=1.0),
    ]
    (summary,) = summarise(items)
    assert summary.rounds == 3
    assert summary.rps == 1200.0  # median of 1000, 1200, 20000 req/s
    assert summary.p99_ms == 8.0
    assert summary.cpu_ms_per_request == pytest.approx(0.4)
    assert summary.rps_per_round == (1000.0, 1200.0, 20000.0)


def test_comparison_uses_the_mapped_baseline_cell() -> None:
    json_cell, binary_cell = "(d) 1000 rows, REST JSON, c=16", "(d) 1000 rows, REST binary, c=16"
    items = [
        _measure(json_cell, VANILLA, 1, 1000, p99=20.0),
        _measure(json_cell, V2SERVE, 1, 2000, p99=10.0),
        Measurement(binary_cell, VANILLA, 1, None, unsupported="HTTP 500"),
        _measure(binary_cell, V2SERVE, 1, 4000, p99=5.0),
    ]
    by_cell = {
        c.cell: c for c in compare(summarise(items), V2SERVE, VANILLA, baselines(all_cells()))
    }
    assert by_cell[json_cell].throughput == 2.0
    assert by_cell[binary_cell].baseline_cell == json_cell
    assert by_cell[binary_cell].throughput == 4.0
    assert by_cell[binary_cell].p99 == 0.25


def test_targets_say_met_or_by_how_much_missed() -> None:
    cell = "(a) light, REST JSON, c=16"
    items = [_measure(cell, VANILLA, 1, 1000, p99=9.0), _measure(cell, V2SERVE, 1, 2500, p99=6.0)]
    rows = {text: (value, verdict) for text, value, verdict in target_rows(
        compare(summarise(items), V2SERVE, VANILLA)
    )}  # fmt: skip
    assert rows["light REST, 16 conc.: throughput ≥ 5×"] == ("2.50×", "missed: 50% of the target")
    assert rows["light REST, 16 conc.: p99 ≤ 1/3"] == ("0.67×", "missed: 2.0× the allowed p99")
    assert rows["light gRPC, 16 conc.: throughput ≥ 3×"][0] == "n/a"

    faster = [_measure(cell, VANILLA, 1, 1000, p99=9.0), _measure(cell, V2SERVE, 1, 6000, p99=2.0)]
    verdicts = [v for _, _, v in target_rows(compare(summarise(faster), V2SERVE, VANILLA))]
    assert verdicts[:2] == ["met", "met"]


def test_report_renders_tables_notes_and_the_noise_warning() -> None:
    cell, binary = "(a) light, REST JSON, c=16", "(d) 1000 rows, REST binary, c=16"
    items = [
        _measure(cell, VANILLA, 1, 5000),
        _measure(cell, V2SERVE, 1, 15000),
        _measure(cell, VANILLA, 2, 5500),
        _measure(cell, V2SERVE, 2, 14000),
        Measurement(binary, VANILLA, 1, None, unsupported="HTTP 500: Internal Server Error"),
        Measurement(cell, V2SERVE, 3, _load(100, errors=2), note="client used 95% of a core"),
    ]
    swaps = [SwapRow(V2SERVE, 1, "version 2 renamed into place", "served 0.05 s after")]
    memory = [MemoryRow(V2SERVE, 290.0, 300.0, 12.5, "version 2 of heavy-extra")]
    text = render_markdown(items, swaps, memory, baselines(all_cells()), ENV, ["img/ratios.png"])

    assert "2 cores (test cpu)" in text and "shared and noisy" in text
    # v2serve's median 2,800 req/s (3,000, 2,800, 20) over vanilla's 1,050 (1,000, 1,100).
    assert "| (a) light, REST JSON, c=16 | v2serve | same cell | 2.67× |" in text
    assert "| 2,800 | 3,000, 2,800, 20 |" in text  # median and every round, in order
    assert "| (d) 1000 rows, REST binary, c=16 | vanilla MLServer | unsupported: HTTP 500" in text
    assert "client used 95% of a core" in text
    assert "| v2serve | 1 | version 2 renamed into place | served 0.05 s after |" in text
    assert "| v2serve | 290 | 300 | 12.5 | version 2 of heavy-extra |" in text
    assert "![ratios](img/ratios.png)" in text
    assert json.dumps(items[0].to_json())  # the raw results serialise


def test_a_runs_raw_results_load_back_for_re_rendering(tmp_path: Path) -> None:
    items = [_measure("(a) light, REST JSON, c=16", VANILLA, 1, 5000)]
    items.append(Measurement("(d) 1000 rows, REST binary, c=16", V2SERVE, 1, None, unsupported="x"))
    raw = {
        "environment": {**ENV.__dict__},
        "measurements": [m.to_json() for m in items],
        "swaps": [SwapRow(V2SERVE, 1, "a", "b").__dict__],
        "memory": [MemoryRow(VANILLA, 1.0, 2.0, None, "c").__dict__],
    }
    path = tmp_path / "benchmarks.json"
    path.write_text(json.dumps(raw))
    loaded = load_raw(path)
    assert loaded["measurements"] == items
    assert loaded["env"] == ENV
    assert render_markdown(items, [], [], {}, ENV) == render_markdown(
        loaded["measurements"], [], [], {}, loaded["env"]
    )
