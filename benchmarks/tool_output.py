"""Reading what perf_analyzer and h2load print: pure functions, unit-tested.

wrk's summary is read by ``stats.parse_wrk`` (our Lua ``done()`` prints it as JSON).
"""

from __future__ import annotations

import csv
import io
import re

from benchmarks.stats import LoadResult, percentile


def parse_perf_analyzer(stdout: str, csv_text: str) -> LoadResult:
    """perf_analyzer's last measurement: throughput and percentiles from its ``-f`` CSV
    (µs), the request count from the ``Client:`` block of its stdout.

    perf_analyzer averages its stable windows; ``seconds`` is the count over the
    throughput, the time those requests took."""
    rows = list(csv.DictReader(io.StringIO(csv_text)))
    if not rows:
        raise ValueError(f"perf_analyzer wrote no measurement:\n{stdout[-2000:]}")
    row = rows[-1]
    throughput = float(row["Inferences/Second"])
    counts = re.findall(r"Request count:\s*(\d+)", stdout)
    if not counts or throughput <= 0:
        raise ValueError(f"no request count or no throughput in perf_analyzer's output:\n{stdout}")
    ok = int(counts[-1])
    return LoadResult(
        ok=ok,
        errors=0,
        seconds=ok / throughput,
        p50_ms=float(row["p50 latency"]) / 1e3,
        p99_ms=float(row["p99 latency"]) / 1e3,
    )


def perf_analyzer_error(stdout: str) -> str:
    """The first line of perf_analyzer's own complaint, for a cell it could not run."""
    for line in stdout.splitlines():
        text = line.strip()
        if text.lower().startswith(("error", "failed", "thread [")) or "error:" in text.lower():
            return text[:200]
    lines = [line.strip() for line in stdout.splitlines() if line.strip()]
    return lines[-1][:200] if lines else "no output"


_H2_FINISHED = re.compile(r"finished in [\d.]+m?s, ([\d.]+) req/s,")
_H2_REQUESTS = re.compile(
    r"requests: (\d+) total, (\d+) started, (\d+) done, (\d+) succeeded, (\d+) failed, "
    r"(\d+) errored, (\d+) timeout"
)
_H2_STATUS = re.compile(r"status codes: (\d+) 2xx, (\d+) 3xx, (\d+) 4xx, (\d+) 5xx")


def parse_h2load(stdout: str, log: str) -> LoadResult:
    """h2load's summary (duration, counts) and percentiles from its ``--log-file``.

    The log has one tab-separated row per request: start (µs since the epoch), HTTP
    status (-1 for a failed stream), µs until the end of the response. h2load cannot read
    gRPC's status, which travels in trailers: the harness checks one call with a real
    client first."""
    # "finished in" counts the warm-up too; req/s is over the main duration only, which
    # is what the counts and the log cover.
    finished = _H2_FINISHED.search(stdout)
    requests = _H2_REQUESTS.search(stdout)
    status = _H2_STATUS.search(stdout)
    if not (finished and requests and status):
        raise ValueError(f"not h2load's summary:\n{stdout[-2000:]}")
    rate = float(finished.group(1))
    failed, errored, timeout = (int(requests.group(i)) for i in (5, 6, 7))
    non_2xx = sum(int(status.group(i)) for i in (2, 3, 4))
    latencies = []
    for line in log.splitlines():
        fields = line.split("\t")
        if len(fields) >= 3 and fields[1] != "-1":
            latencies.append(int(fields[2]) / 1e3)
    detail = {"failed": failed, "errored": errored, "timeout": timeout, "non-2xx": non_2xx}
    ok = int(status.group(1))
    return LoadResult(
        ok=ok,
        errors=failed + errored + timeout + non_2xx,
        seconds=ok / rate if rate > 0 else 0.0,
        p50_ms=percentile(latencies, 50),
        p99_ms=percentile(latencies, 99),
        detail={k: v for k, v in detail.items() if v},
    )


def grpc_frame(message: bytes) -> bytes:
    """One gRPC message on the wire: not compressed (0), big-endian length, the bytes."""
    return b"\x00" + len(message).to_bytes(4, "big") + message
