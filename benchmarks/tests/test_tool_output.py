"""perf_analyzer's and h2load's output, read; the tools' command lines and bodies; the
probes' numpy model against scikit-learn. Fixtures are the tools' real output (2.51, 1.52)."""

import json
from pathlib import Path

import numpy as np
import pytest
from sklearn.datasets import load_breast_cancer, load_iris
from sklearn.linear_model import LogisticRegression

from benchmarks.peer_loadgen import h2load_args, input_data, perf_analyzer_args
from benchmarks.peers.linear import NumpyLogistic
from benchmarks.tool_output import (
    grpc_frame,
    parse_h2load,
    parse_perf_analyzer,
    perf_analyzer_error,
)

PA_STDOUT = """\
 Successfully read data for 1 stream/streams with 1 step/steps.
*** Measurement Settings ***
  Batch size: 1
  Service Kind: TRITON
  Using "time_windows" mode for stabilization
  Measurement window: 1000 msec

Request concurrency: 4
  Client: 
    Request count: 643
    Throughput: 176.383 infer/sec
    Avg latency: 22430 usec (standard deviation 15663 usec)
    p50 latency: 18040 usec
    p99 latency: 98144 usec
  Server: 
    Inference count: 647
    Execution count: 341
    Successful request count: 647

Inferences/Second vs. Client Average Batch Latency
Concurrency: 4, throughput: 176.383 infer/sec, latency 22430 usec
"""

PA_CSV = """\
Concurrency,Inferences/Second,Client Send,Network+Server Send/Recv,Server Queue,\
Server Compute Input,Server Compute Infer,Server Compute Output,Client Recv,p50 latency,\
p90 latency,p95 latency,p99 latency
4,176.383,17,4347,7284,65,10114,597,4,18040,33865,49152,98144
"""

H2_STDOUT = """\
starting benchmark...
spawning thread #0: 4 total client(s). Timing-based test with 1s of warm-up time and 3s \
of main duration for measurements.
Application protocol: h2c
Main benchmark duration is over for thread #0. Stopping all clients.

finished in 3.99s, 123.00 req/s, 11.05KB/s
requests: 369 total, 369 started, 369 done, 369 succeeded, 0 failed, 0 errored, 0 timeout
status codes: 369 2xx, 0 3xx, 0 4xx, 0 5xx
traffic: 33.16KB (33953) total, 1.98KB (2025) headers (space savings 95.65%), 26.39KB \
(27025) data
"""


def test_perf_analyzer_reads_the_csv_and_the_clients_request_count() -> None:
    result = parse_perf_analyzer(PA_STDOUT, PA_CSV)
    assert result.ok == 643  # the client's count, not the server's 647
    assert result.seconds == pytest.approx(643 / 176.383)
    assert result.p50_ms == pytest.approx(18.04)
    assert result.p99_ms == pytest.approx(98.144)
    assert result.errors == 0


def test_perf_analyzer_without_a_measurement_is_an_error() -> None:
    header = PA_CSV.splitlines()[0] + "\n"
    with pytest.raises(ValueError, match="no measurement"):
        parse_perf_analyzer("error: failed to get model config", header)
    with pytest.raises(ValueError, match="request count"):
        parse_perf_analyzer("Throughput: 1 infer/sec", PA_CSV)


@pytest.mark.parametrize(
    ("stdout", "reason"),
    [
        (
            " Successfully read data\nerror: failed to get model config: Method not found!\n",
            "error: failed to get model config: Method not found!",
        ),
        ("Thread [0] had error: deadline exceeded\nmore\n", "Thread [0] had error: deadline"),
        ("something odd\n\nlast words\n", "last words"),
        ("", "no output"),
    ],
)
def test_perf_analyzer_error_names_its_complaint(stdout: str, reason: str) -> None:
    assert perf_analyzer_error(stdout).startswith(reason)


def test_h2load_counts_2xx_over_the_main_duration_and_reads_latencies_from_its_log() -> None:
    log = "".join(f"1796229778870966\t200\t{us}\n" for us in range(1000, 101000, 1000))
    log += "1796229778870999\t-1\t5\n"  # a failed stream has no latency
    result = parse_h2load(H2_STDOUT, log)
    assert result.ok == 369
    assert result.seconds == pytest.approx(369 / 123.0)  # not the 3.99 s with warm-up
    assert result.p50_ms == pytest.approx(50.0)
    assert result.p99_ms == pytest.approx(99.0)
    assert result.errors == 0 and result.detail == {}


def test_h2load_failures_and_non_2xx_are_errors() -> None:
    stdout = H2_STDOUT.replace(
        "369 succeeded, 0 failed, 0 errored, 0 timeout",
        "360 succeeded, 5 failed, 3 errored, 1 timeout",
    ).replace("369 2xx, 0 3xx, 0 4xx, 0 5xx", "350 2xx, 0 3xx, 4 4xx, 6 5xx")
    result = parse_h2load(stdout, "")
    assert result.ok == 350
    assert result.errors == 5 + 3 + 1 + 10
    assert result.detail == {"failed": 5, "errored": 3, "timeout": 1, "non-2xx": 10}
    assert result.p99_ms == 0.0


def test_h2load_output_that_is_not_its_summary_is_an_error() -> None:
    with pytest.raises(ValueError, match="h2load"):
        parse_h2load("h2load: unrecognized option '--bogus'\n", "")


def test_a_grpc_frame_is_flag_length_message() -> None:
    frame = grpc_frame(b"\x0a\x05light")
    assert frame[0] == 0
    assert int.from_bytes(frame[1:5], "big") == 7
    assert frame[5:] == b"\x0a\x05light"


def test_perf_analyzer_input_data_omits_the_batch_dimension_only_for_batching_models() -> None:
    rows = np.arange(8, dtype=np.float64).reshape(2, 4)
    plain = input_data(rows, batching=False)["data"][0]["input-0"]  # type: ignore[index]
    batched = input_data(rows, batching=True)["data"][0]["input-0"]  # type: ignore[index]
    assert plain == {"content": list(range(8)), "shape": [2, 4]}
    assert batched["shape"] == [4]
    json.dumps(plain)


def test_perf_analyzer_args_make_one_run_of_three_windows(tmp_path: Path) -> None:
    args = perf_analyzer_args(
        "light", "127.0.0.1:1", "grpc", 16, 6.0, tmp_path / "d.json", tmp_path / "o.csv", None
    )
    joined = " ".join(args)
    assert "--concurrency-range 16:16" in joined
    assert "--measurement-interval 2000" in joined and "--max-trials 3" in joined
    assert "-i grpc" in joined and "-b" not in args
    batched = perf_analyzer_args(
        "light", "127.0.0.1:1", "http", 1, 6.0, tmp_path / "d.json", tmp_path / "o.csv", 1000
    )
    assert batched[-2:] == ["-b", "1000"]


def test_h2load_args_send_grpc_headers_one_stream_per_connection(tmp_path: Path) -> None:
    args = h2load_args("http://127.0.0.1:1/x", tmp_path / "b", 16, 4, 1, tmp_path / "l")
    assert "--clients=16" in args and "--max-concurrent-streams=1" in args
    assert "--header=content-type: application/grpc" in args
    assert "--header=te: trailers" in args
    assert "--duration=4" in args and "--warm-up-time=1" in args
    assert args[-1] == "http://127.0.0.1:1/x"


@pytest.mark.parametrize("loader", [load_iris, load_breast_cancer])
def test_the_probes_numpy_model_predicts_as_sklearn(loader: object) -> None:
    X, y = loader(return_X_y=True)  # type: ignore[operator]
    X = (X - X.mean(axis=0)) / X.std(axis=0)  # scaled: the fit converges quickly
    estimator = LogisticRegression(max_iter=1000).fit(X, y)
    model = NumpyLogistic(estimator.coef_, estimator.intercept_, estimator.classes_)
    np.testing.assert_array_equal(model.predict(X), estimator.predict(X))
