"""Cells (g) tracing off/on and (h) isolation: their construction, report rows, the OTLP
sink they export to, the background load's summary and the micro-benchmark's output."""

import gzip
import json
from pathlib import Path

import pytest
from opentelemetry.exporter.otlp.proto.common.trace_encoder import encode_spans
from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter
from opentelemetry.sdk.trace import ReadableSpan, TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor, SpanExporter, SpanExportResult

from benchmarks.background import BackgroundResult
from benchmarks.background import summarise as summarise_background
from benchmarks.cells import (
    BIG,
    GROUPS,
    HEAVY_LOAD,
    MAIN,
    TRACED,
    TRACING_KEY,
    Cell,
    Target,
    all_cells,
    isolation_key,
    light_key,
    server_kinds,
)
from benchmarks.models import BIG_ROWS, HEAVY, SKLEARN_SUFFIX, TRITON_MAX_BATCH
from benchmarks.otlp_sink import OtlpSink, Received, Tally, count_spans, decode
from benchmarks.peers.triton_serve import MAX_BATCH, max_batches
from benchmarks.report import (
    MICRO_MEANINGS,
    TRACING_OFF,
    AddedRows,
    BackgroundRow,
    isolation_rows,
    load_raw,
    parse_tracing_cost,
    render_markdown,
    tracing_rows,
)
from benchmarks.stats import (
    TRITON,
    V2SERVE,
    V2SERVE_TRACED,
    VANILLA,
    LoadResult,
    Measurement,
    summarise,
)
from benchmarks.tests.test_bench_parsing import ENV

REST_ISOLATION = isolation_key("rest", "wrk")


def _measure(cell: str, server: str, ok: int, p99: float, cpu_us: float) -> Measurement:
    load = LoadResult(ok=ok, errors=0, seconds=2.0, p50_ms=p99 / 2, p99_ms=p99)
    return Measurement(cell, server, 1, load, cpu_seconds=ok * cpu_us / 1e6)


def _spans(count: int) -> list[ReadableSpan]:
    """Real SDK spans: ``count`` requests, each an ``infer`` root with a ``compute`` child."""
    finished: list[ReadableSpan] = []

    class Keep(SpanExporter):
        def export(self, spans: object) -> SpanExportResult:
            finished.extend(spans)  # type: ignore[call-overload]
            return SpanExportResult.SUCCESS

    provider = TracerProvider()
    provider.add_span_processor(SimpleSpanProcessor(Keep()))
    tracer = provider.get_tracer("test")
    for _ in range(count):
        with tracer.start_as_current_span("infer"):
            with tracer.start_as_current_span("compute"):
                pass
    provider.shutdown()
    return finished


# --- cells -------------------------------------------------------------------------------


def test_the_tracing_cell_runs_v2serve_off_in_main_and_on_in_the_tracing_group() -> None:
    (cell,) = [c for c in all_cells() if c.key == TRACING_KEY]
    assert cell.scenario == "g" and cell.protocol == "rest" and cell.quick
    assert [(t.label, t.kind, t.group) for t in cell.targets] == [
        (V2SERVE, "v2serve", MAIN),
        (V2SERVE_TRACED, "v2serve", TRACED),
    ]
    group = GROUPS[TRACED]
    assert group.env["V2SERVE_TRACING"] == "true"
    assert group.otlp and group.kinds == ("v2serve",)
    # Only the tracing cell uses the tracing group, and with it only the light model.
    assert {c.key for c in all_cells() for t in c.targets if t.group == TRACED} == {TRACING_KEY}
    assert set(group.only or ()) == {t.model for t in cell.targets}


def test_isolation_cells_load_the_sklearn_forest_and_compare_with_their_light_cell() -> None:
    cells = {c.key: c for c in all_cells()}
    isolation = [c for c in cells.values() if c.background is not None]
    assert {c.key for c in isolation} == {REST_ISOLATION, isolation_key("grpc", "h2load")}
    for cell in isolation:
        assert cell.scenario == "h" and cell.quick and cell.concurrency == 16
        assert cell.background == HEAVY_LOAD
        assert {t.label for t in cell.targets} == {VANILLA, V2SERVE, TRITON}
        unloaded = cells[cell.unloaded]
        assert unloaded.background is None
        assert (unloaded.protocol, unloaded.loadgen, unloaded.payload) == (
            cell.protocol,
            cell.loadgen,
            cell.payload,
        )
    assert HEAVY_LOAD.model == HEAVY + SKLEARN_SUFFIX and HEAVY_LOAD.payload == BIG
    # Triton refuses a request over its max batch: the loaded copy must take BIG_ROWS.
    assert TRITON_MAX_BATCH[HEAVY_LOAD.model] >= BIG_ROWS > MAX_BATCH


def test_server_kinds_are_checked_against_their_group() -> None:
    assert server_kinds([c for c in all_cells() if c.key == TRACING_KEY]) == {
        (MAIN, "v2serve"),
        (TRACED, "v2serve"),
    }
    wrong = Cell("x", "g", "rest", "json", "light-1", 1, (Target("v", "vanilla", "light", TRACED),))
    with pytest.raises(ValueError, match="starts only \\['v2serve'\\]"):
        server_kinds([wrong])
    unknown = Cell("x", "g", "rest", "json", "light-1", 1, (Target("v", "v2serve", "l", "nope"),))
    with pytest.raises(ValueError, match="group 'nope'"):
        server_kinds([unknown])


def test_tritons_max_batch_flags_parse_and_refuse_nonsense() -> None:
    assert max_batches(["heavy-sklearn=32768", "a=1"]) == {"heavy-sklearn": 32768, "a": 1}
    assert max_batches([]) == {}
    for bad in ("heavy", "=5", "x=0", "x=-1", "x=big"):
        with pytest.raises(ValueError, match="name=N"):
            max_batches([bad])


# --- report rows -------------------------------------------------------------------------


def test_tracing_rows_give_the_off_cost_verdict_and_the_cells_on_off_ratios() -> None:
    summaries = summarise(
        [
            _measure(TRACING_KEY, V2SERVE, 10_000, p99=4.0, cpu_us=150.0),
            _measure(TRACING_KEY, V2SERVE_TRACED, 8_000, p99=5.0, cpu_us=210.0),
        ]
    )
    rows = tracing_rows(summaries, {TRACING_OFF: 0.25, "on, no traceparent": 70.0})
    table = {what: (figure, verdict) for what, figure, verdict in rows}
    assert table["tracing off: hooks per request (micro-benchmark)"] == (
        "0.25 µs",
        "met (bound 1 µs)",
    )
    assert table["tracing on, no traceparent (micro-benchmark)"][0] == "70.0 µs"
    assert table["cell (g): throughput, tracing on / off"][0] == "0.80×"
    assert table["cell (g): p99, tracing on / off"][0] == "1.25×"
    assert table["cell (g): server CPU per request, tracing on / off"][0] == "1.40×"
    assert table["cell (g): server CPU added per request by tracing on"][0] == "60 µs"


def test_tracing_rows_say_missed_and_not_measured() -> None:
    table = {
        what: (figure, verdict) for what, figure, verdict in tracing_rows([], {TRACING_OFF: 2.5})
    }
    assert table["tracing off: hooks per request (micro-benchmark)"] == (
        "2.50 µs",
        "missed: 2.5× the bound of 1 µs",
    )
    assert table["cell (g): tracing on / off"][0] == "n/a"
    (row,) = [r for r in tracing_rows([], {}) if "micro" in r[0]]
    assert row[1:] == ("n/a", "not run")


def _isolation_measurements() -> list[Measurement]:
    alone = light_key("rest", "wrk", 16)
    return [
        _measure(alone, VANILLA, 2_000, p99=20.0, cpu_us=500.0),
        _measure(alone, V2SERVE, 10_000, p99=4.0, cpu_us=150.0),
        _measure(REST_ISOLATION, VANILLA, 200, p99=900.0, cpu_us=5000.0),
        _measure(REST_ISOLATION, V2SERVE, 6_000, p99=12.0, cpu_us=300.0),
        Measurement(REST_ISOLATION, TRITON, 1, None, unsupported="HTTP 400: too big"),
    ]


def _background() -> list[BackgroundRow]:
    return [
        BackgroundRow.of(REST_ISOLATION, VANILLA, 1, BackgroundResult(2, 0, 4.0, 1800.0, 2100.0)),
        BackgroundRow.of(
            REST_ISOLATION, V2SERVE, 1, BackgroundResult(10, 1, 4.0, 350.0, 500.0, {"HTTP 503": 1})
        ),
    ]


def test_isolation_rows_set_each_server_under_load_beside_its_light_cell_alone() -> None:
    rows = {
        r.server: r
        for r in isolation_rows(summarise(_isolation_measurements()), _background(), all_cells())
    }
    assert set(rows) == {VANILLA, V2SERVE, TRITON}
    v2 = rows[V2SERVE]
    assert (v2.rps, v2.p99_ms, v2.alone_rps, v2.alone_p99_ms) == (3000.0, 12.0, 5000.0, 4.0)
    assert (v2.big_ok, v2.big_errors, v2.big_rps, v2.big_p50_ms) == (10, 1, 2.5, 350.0)
    assert rows[VANILLA].p99_ms == 900.0 and rows[VANILLA].alone_p99_ms == 20.0
    assert rows[TRITON].unsupported == "HTTP 400: too big" and rows[TRITON].alone_rps is None


def test_the_report_renders_both_sections_and_they_survive_a_re_render(tmp_path: Path) -> None:
    items = _isolation_measurements() + [
        _measure(TRACING_KEY, V2SERVE, 10_000, p99=4.0, cpu_us=150.0),
        _measure(TRACING_KEY, V2SERVE_TRACED, 9_000, p99=4.4, cpu_us=180.0),
    ]
    added = AddedRows(
        tracing_cost={TRACING_OFF: 0.3, "on, no traceparent": 65.0},
        spans=Received(posts=3, bytes=2_000_000, spans=40_000, roots=8_000),
        background=tuple(_background()),
    )
    text = render_markdown(items, [], [], {}, ENV, added=added)
    assert "## Tracing off and on (issue 16, cell g)" in text
    assert (
        "| tracing off: hooks per request (micro-benchmark) | 0.30 µs | met (bound 1 µs) |" in text
    )
    assert "| cell (g): throughput, tracing on / off | 0.90× |" in text
    assert "received 8,000 requests' spans (`infer` roots; 40,000 spans in all) in 3 POSTs" in text
    assert "## Isolation: the light model while the forest takes big requests" in text
    # v2serve: 3,000 req/s, p99 12 ms under load; 5,000 and 4 ms alone: 3× the p99.
    assert (
        f"| {REST_ISOLATION} | v2serve | 3,000 | 12.00 | 5,000, 4.00 | 3.00× | 10 (2.50) |" in text
    )
    assert f"| {REST_ISOLATION} | {TRITON} | unsupported: HTTP 400: too big |" in text
    # v2serve over vanilla under load: 30× the throughput, 0.01× the p99.
    assert f"| {REST_ISOLATION} | 30.0× (p99 0.01×) | n/a |" in text

    raw = {
        "environment": {**ENV.__dict__},
        "measurements": [m.to_json() for m in items],
        "swaps": [],
        "memory": [],
        "added": json.loads(json.dumps(added, default=lambda o: o.__dict__)),
    }
    path = tmp_path / "benchmarks.json"
    path.write_text(json.dumps(raw))
    loaded = load_raw(path)
    assert loaded["added"] == added
    assert (
        render_markdown(loaded["measurements"], [], [], {}, loaded["env"], added=loaded["added"])
        == text
    )


def test_a_run_without_the_added_cells_renders_neither_section() -> None:
    items = [_measure(light_key("rest", "wrk", 16), V2SERVE, 1000, p99=3.0, cpu_us=100.0)]
    text = render_markdown(items, [], [], {}, ENV)
    assert "Tracing off and on" not in text and "Isolation:" not in text


def test_a_raw_file_from_before_the_added_cells_loads(tmp_path: Path) -> None:
    raw = {"environment": {**ENV.__dict__}, "measurements": [], "swaps": [], "memory": []}
    path = tmp_path / "benchmarks.json"
    path.write_text(json.dumps(raw))
    assert load_raw(path)["added"] == AddedRows()


def test_the_micro_benchmarks_json_line_is_read_from_its_output() -> None:
    line = json.dumps({TRACING_OFF: 0.21, "on, no traceparent": 71.5})
    assert parse_tracing_cost(f"some warning\n{line}\n") == (
        {TRACING_OFF: 0.21, "on, no traceparent": 71.5},
        "",
    )
    costs, error = parse_tracing_cost("Traceback (most recent call last):\n  ImportError: x\n")
    assert costs == {} and "ImportError" in error
    assert parse_tracing_cost('{"other": 1}')[0] == {}
    assert parse_tracing_cost("")[1] == "no output"


def test_the_report_knows_every_label_of_the_micro_benchmark() -> None:
    from benchmarks.tracing_cost import LABELS, OFF

    assert OFF == TRACING_OFF
    assert set(MICRO_MEANINGS) == set(LABELS) - {OFF}


# --- the background load -----------------------------------------------------------------


def test_the_background_summary_counts_successes_failures_and_latencies() -> None:
    result = summarise_background([0.5, 0.1, 0.3], ["HTTP 503", "ConnectionError", "HTTP 503"], 2.0)
    assert (result.ok, result.errors, result.rps) == (3, 3, 1.5)
    assert result.p50_ms == pytest.approx(300.0) and result.max_ms == pytest.approx(500.0)
    assert result.detail == {"HTTP 503": 2, "ConnectionError": 1}
    empty = summarise_background([], [], 0.0)
    assert (empty.ok, empty.rps, empty.p50_ms, empty.max_ms) == (0, 0.0, 0.0, 0.0)


# --- the OTLP sink -----------------------------------------------------------------------


def test_the_sink_counts_spans_and_roots_in_the_sdks_own_encoding() -> None:
    body = encode_spans(_spans(3)).SerializeToString()
    assert count_spans(body) == (6, 3)
    assert decode(gzip.compress(body), "gzip") == body
    assert decode(body, "") == body
    with pytest.raises(ValueError, match="br"):
        decode(body, "br")


def test_the_tally_answers_200_404_and_400_and_counts_only_what_it_accepted() -> None:
    tally = Tally()
    body = encode_spans(_spans(2)).SerializeToString()
    assert tally.accept("/v1/traces", gzip.compress(body), "gzip") == 200
    assert tally.accept("/v1/metrics", body, "") == 404
    assert tally.accept("/v1/traces", b"\xff\xff\xff not protobuf", "") == 400
    assert tally.accept("/v1/traces", b"not gzip", "gzip") == 400
    received = tally.received
    assert (received.posts, received.spans, received.roots, received.rejected) == (1, 4, 2, 2)
    assert received.bytes == len(gzip.compress(body))


def test_the_sdks_otlp_http_exporter_delivers_to_the_sink() -> None:
    with OtlpSink() as sink:
        assert sink.url.startswith("http://127.0.0.1:") and sink.url.endswith("/v1/traces")
        exporter = OTLPSpanExporter(endpoint=sink.url, timeout=10)
        try:
            assert exporter.export(_spans(5)) == SpanExportResult.SUCCESS
            assert exporter.export(_spans(2)) == SpanExportResult.SUCCESS
        finally:
            exporter.shutdown()
        received = sink.tally.received
    assert (received.posts, received.spans, received.roots, received.rejected) == (2, 14, 7, 0)


def test_the_sink_counts_one_root_per_request_of_v2serves_own_tracer() -> None:
    from benchmarks.tracing_cost import _Keeping, _recorder
    from runtimes.observability.trace_policy import TraceSetting

    keeping = _Keeping()
    tracer, record = _recorder(SimpleSpanProcessor(keeping), TraceSetting(), {})
    try:
        for _ in range(3):
            record()
    finally:
        tracer.shutdown()
    spans, roots = count_spans(encode_spans(keeping.spans).SerializeToString())
    assert roots == 3 and spans == len(keeping.spans) > 3
