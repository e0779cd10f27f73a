"""Prediction logging in-process: CloudEvents attributes and types, tensors decoded from
every wire format, redaction, seeded sampling, and the bounded queue's counting."""

import asyncio
import json
import math
import random
import struct
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from mlserver.model import MLModel
from mlserver.settings import ModelParameters, ModelSettings
from mlserver.types import (
    InferenceRequest,
    InferenceResponse,
    Parameters,
    RequestInput,
    ResponseOutput,
)
from prometheus_client import CollectorRegistry

from runtimes.errors import InvalidInput, SettingsError
from runtimes.observability.metrics import PredictionLogMetrics
from runtimes.observability.prediction_events import (
    REDACTED,
    REQUEST_TYPE,
    RESPONSE_TYPE,
    Origin,
    Prediction,
    prediction_events,
    tensor_values,
)
from runtimes.observability.prediction_log import PredictionLog, SinkWarnings
from runtimes.protocol.grpc.convert import to_inference_request
from runtimes.protocol.grpc.messages import message
from runtimes.protocol.rest_codec import parse_request
from runtimes.settings import parse_model_extra

X = np.array([[5.1, 3.5, 1.4, 0.2], [6.7, 3.0, 5.2, 2.3]])
ORIGIN = Origin(namespace="ns")


def _model(name: str = "m", version: str = "3", **log: Any) -> MLModel:
    extra = {"prediction_log": log} if log else {}
    return MLModel(
        ModelSettings(
            name=name,
            implementation=MLModel,
            parameters=ModelParameters(version=version, extra=extra),
        )
    )


def _request(request_id: str = "req-1", data: Any = None) -> InferenceRequest:
    values = X.reshape(-1).tolist() if data is None else data
    return InferenceRequest(
        id=request_id,
        inputs=[RequestInput(name="input-0", shape=[2, 4], datatype="FP64", data=values)],
    )


def _response() -> InferenceResponse:
    return InferenceResponse(
        model_name="m",
        model_version="3",
        outputs=[
            ResponseOutput(name="predict", shape=[2], datatype="INT64", data=np.array([0, 2]))
        ],
    )


def _prediction(
    payload: InferenceRequest | None = None,
    response: InferenceResponse | None = None,
    error: BaseException | None = None,
) -> Prediction:
    return Prediction(
        model="m",
        version="3",
        payload=payload or _request(),
        response=response if response is not None or error is not None else _response(),
        error=error,
        latency_ns=2_500_000,
        finished=1_700_000_000.25,
    )


def _events(prediction: Prediction, redact: frozenset[str] = frozenset()) -> list[dict[str, Any]]:
    return [json.loads(e.structured()) for e in prediction_events(prediction, redact, ORIGIN)]


# The events themselves.


def test_request_and_response_events_carry_kserve_types_and_attributes_and_pair_by_id():
    request, response = prediction_events(_prediction(), frozenset(), ORIGIN)
    for event in (request, response):
        headers = event.http_headers()
        assert headers["ce-specversion"] == "1.0"
        assert headers["ce-id"] == "req-1"
        assert headers["ce-source"] == "/v2/models/m/versions/3"
        assert headers["ce-inferenceservicename"] == "m"
        assert headers["ce-namespace"] == "ns"
        assert headers["ce-component"] == "predictor"
        assert headers["ce-endpoint"] == "default"
        assert headers["ce-modelversion"] == "3"
        assert headers["content-type"] == "application/json"
    assert request.http_headers()["ce-type"] == REQUEST_TYPE
    assert response.http_headers()["ce-type"] == RESPONSE_TYPE
    assert response.http_headers()["ce-status"] == "200"
    assert response.http_headers()["ce-latencyus"] == "2500"
    # The request event is stamped when the request arrived, the response when it left.
    arrived = datetime.fromisoformat(str(request.attributes["time"]))
    left = datetime.fromisoformat(str(response.attributes["time"]))
    assert left.timestamp() == 1_700_000_000.25
    assert left - arrived == timedelta(microseconds=2500)
    assert str(response.attributes["time"]).endswith("Z")
    assert "status" not in request.attributes


def test_structured_mode_embeds_the_v2_bodies_as_json():
    request, response = _events(_prediction())
    assert request["type"] == REQUEST_TYPE and request["datacontenttype"] == "application/json"
    assert request["data"]["inputs"] == [
        {"name": "input-0", "shape": [2, 4], "datatype": "FP64", "data": X.reshape(-1).tolist()}
    ]
    assert response["data"]["outputs"][0]["data"] == [0, 2]
    assert response["data"]["model_version"] == "3"
    assert response["data"]["id"] == request["data"]["id"] == "req-1"


def test_x_request_id_wins_and_a_request_without_any_id_gets_one_shared_by_both_events():
    payload = _request()
    payload.parameters = Parameters(headers={"x-request-id": "from-header", "authorization": "s"})
    request, response = _events(_prediction(payload))
    assert request["id"] == response["id"] == "from-header"
    assert "parameters" not in request["data"], "headers are never logged"
    anonymous = _request(request_id=None)  # type: ignore[arg-type]
    request, response = _events(_prediction(anonymous))
    assert request["id"] == response["id"] and len(request["id"]) == 36


def test_header_values_are_percent_encoded_as_the_http_binding_says():
    request, _ = prediction_events(_prediction(_request('id é%"x')), frozenset(), ORIGIN)
    assert request.http_headers()["ce-id"] == "id %C3%A9%25%22x"


def test_a_failure_carries_its_message_and_status():
    error = InvalidInput("m", "input-0", "has the wrong datatype", "FP64", "FP32")
    _, response = _events(_prediction(error=error))
    assert response["status"] == 400
    assert response["data"]["error"] == str(error)
    assert "outputs" not in response["data"]
    _, crashed = _events(_prediction(error=ZeroDivisionError("boom")))
    assert crashed["status"] == 500
    assert crashed["data"]["error"] == "internal error: ZeroDivisionError: boom"
    _, gone = _events(_prediction(error=asyncio.CancelledError()))
    assert gone["status"] == 499


# Tensors, whatever the wire format.


def test_binary_tensor_data_over_rest_is_decoded_into_the_event():
    raw = np.ascontiguousarray(X, dtype="<f8").tobytes()
    header = json.dumps(
        {
            "id": "bin",
            "inputs": [
                {
                    "name": "input-0",
                    "shape": [2, 4],
                    "datatype": "FP64",
                    "parameters": {"binary_data_size": len(raw)},
                }
            ],
            "outputs": [{"name": "predict", "parameters": {"binary_data": True}}],
        }
    ).encode()
    payload = parse_request("m", header + raw, str(len(header)), {})
    request, _ = _events(_prediction(payload))
    tensor = request["data"]["inputs"][0]
    assert tensor["data"] == X.reshape(-1).tolist()
    assert "parameters" not in tensor, "binary_data_size is a wire detail"
    assert request["data"]["outputs"] == [{"name": "predict"}]


def test_grpc_raw_contents_and_bytes_are_decoded_into_the_event():
    grpc_request = message("ModelInferRequest")(model_name="m", id="raw")
    grpc_request.inputs.add(name="input-0", datatype="FP32", shape=[2, 4])
    grpc_request.raw_input_contents.append(X.astype("<f4").tobytes())
    grpc_request.inputs.add(name="colour", datatype="BYTES", shape=[2])
    words = [b"pale", "d\u00e9ep".encode()]
    grpc_request.raw_input_contents.append(b"".join(struct.pack("<I", len(w)) + w for w in words))
    payload = to_inference_request(grpc_request, {})
    request, _ = _events(_prediction(payload))
    numbers, colours = request["data"]["inputs"]
    assert numbers["data"] == X.astype(np.float32).reshape(-1).tolist()
    assert colours["data"] == ["pale", "d\u00e9ep"]


def test_non_finite_floats_nested_lists_and_non_utf8_bytes_stay_representable():
    assert tensor_values(np.array([1.5, np.nan, np.inf, -np.inf])) == [
        1.5, "NaN", "Infinity", "-Infinity",
    ]  # fmt: skip
    assert tensor_values([[1, 2], [3, float("nan")]]) == [1, 2, 3, "NaN"]
    assert tensor_values(np.array([b"ok", b"\xff\x00"], dtype=object)) == [
        "ok",
        {"b64": "/wA="},
    ]
    assert tensor_values(np.array([True, False])) == [True, False]
    assert tensor_values(np.array([2**64 - 1], dtype=np.uint64)) == [2**64 - 1]
    assert tensor_values(np.array([1.5], dtype=np.float16)) == [1.5]
    response = InferenceResponse(
        model_name="m",
        outputs=[
            ResponseOutput(name="predict", shape=[2], datatype="FP64", data=np.array([np.nan, 1]))
        ],
    )
    _, event = _events(_prediction(response=response))
    assert event["data"]["outputs"][0]["data"] == ["NaN", 1.0]
    assert not any(isinstance(v, float) and math.isnan(v) for v in event["data"]["outputs"][0])


# Redaction.


def test_a_redacted_input_is_replaced_by_the_marker_and_its_values_never_leave():
    payload = _request(data=[123.456789] * 8)
    payload.inputs.append(RequestInput(name="kept", shape=[1], datatype="INT64", data=[7]))
    request, response = prediction_events(_prediction(payload), frozenset({"input-0"}), ORIGIN)
    body = json.loads(request.data)
    assert body["inputs"][0] == {
        "name": "input-0",
        "shape": [2, 4],
        "datatype": "FP64",
        "data": REDACTED,
    }
    assert body["inputs"][1]["data"] == [7]
    assert b"123.456" not in request.data and b"123.456" not in request.structured()


def test_an_error_that_names_a_redacted_input_is_hidden():
    error = InvalidInput("m", "input-0", "is out of range", "at most 8", "123.456789")
    _, response = _events(_prediction(error=error), frozenset({"input-0"}))
    assert "123.456" not in json.dumps(response)
    assert response["data"]["error"].startswith(REDACTED)
    assert response["status"] == 400


# Settings.


@pytest.mark.parametrize(
    ("log", "phrase"),
    [
        ({"sink": "ftp://host/x"}, "prediction_log.sink"),
        ({"sink": "file://relative/log.jsonl"}, "absolute path"),
        ({"sink": "file:///var/log/"}, "directory"),
        ({"sink": "http:///no-host"}, "no host"),
        ({"sink": "http://h/p", "sample": 1.5}, "prediction_log.sample"),
        ({"sink": "http://h/p", "queue": 0}, "prediction_log.queue"),
        ({"sink": "http://h/p", "redact": ["a", "a"]}, "twice"),
        ({"sink": "http://h/p", "smaple": 0.5}, "prediction_log.smaple"),
        ({"sample": 0.5}, "prediction_log.sink"),
    ],
)
def test_bad_settings_are_a_load_error_naming_the_key(log: dict[str, Any], phrase: str):
    with pytest.raises(SettingsError) as caught:
        parse_model_extra({"prediction_log": log}, "m")
    assert phrase in str(caught.value)


def test_a_file_sink_names_its_path():
    settings = parse_model_extra({"prediction_log": {"sink": "file:///tmp/a%20b.jsonl"}}, "m")
    assert settings.prediction_log is not None
    assert settings.prediction_log.file_path == Path("/tmp/a b.jsonl")


# The queue, sampling and the drain, with a file sink.


def _log(seed: int = 0) -> tuple[PredictionLog, PredictionLogMetrics]:
    metrics = PredictionLogMetrics(CollectorRegistry())
    return PredictionLog(metrics, rng=random.Random(seed), environ={}), metrics


def _count(metrics: PredictionLogMetrics, outcome: str, model: str = "m") -> float:
    value = metrics.registry.get_sample_value(
        f"v2serve_prediction_log_{outcome}_total", {"model": model, "version": "3"}
    )
    return value or 0.0


def _lines(path: Path) -> list[dict[str, Any]]:
    return [json.loads(line) for line in path.read_text().splitlines()]


def test_a_model_without_the_setting_logs_nothing_and_is_looked_at_once():
    log, metrics = _log()
    model = _model()

    async def scenario() -> None:
        for _ in range(3):
            log.offer(model, _request(), _response(), None, 1000)
        await log.close()

    asyncio.run(scenario())
    assert len(log._entries) == 1
    assert log._queue is None
    assert all(_count(metrics, o) == 0 for o in ("sent", "failed", "dropped"))


def test_sampling_follows_the_seeded_generator(tmp_path: Path):
    path = tmp_path / "log.jsonl"
    log, metrics = _log(seed=7)
    model = _model(sink=path.as_uri(), sample=0.3, queue=1000)
    draws = random.Random(7)
    expected = [f"r{i}" for i in range(200) if draws.random() < 0.3]

    async def scenario() -> None:
        for i in range(200):
            log.offer(model, _request(f"r{i}"), _response(), None, 1000)
        await log.close()

    asyncio.run(scenario())
    logged = [event["id"] for event in _lines(path) if event["type"] == REQUEST_TYPE]
    assert logged == expected
    assert 0 < len(expected) < 200
    assert _count(metrics, "sent") == len(expected)


def test_a_full_queue_drops_and_counts_without_waiting(tmp_path: Path):
    path = tmp_path / "log.jsonl"
    log, metrics = _log()
    model = _model(sink=path.as_uri(), queue=2)

    async def scenario() -> None:
        # No await between offers: the drain has not run, so the queue fills.
        for i in range(5):
            log.offer(model, _request(f"r{i}"), _response(), None, 1000)
        assert _count(metrics, "dropped") == 3
        await log.close()

    asyncio.run(scenario())
    events = _lines(path)
    assert [(e["type"], e["id"]) for e in events] == [
        (REQUEST_TYPE, "r0"), (RESPONSE_TYPE, "r0"), (REQUEST_TYPE, "r1"), (RESPONSE_TYPE, "r1"),
    ]  # fmt: skip
    assert _count(metrics, "sent") == 2
    assert _count(metrics, "failed") == 0


def test_failures_are_logged_too_and_an_unwritable_file_counts_as_failed(tmp_path: Path):
    good, bad = tmp_path / "log.jsonl", tmp_path / "missing" / "log.jsonl"
    log, metrics = _log()
    logged, broken = _model("m", sink=good.as_uri()), _model("n", sink=bad.as_uri())
    error = InvalidInput("m", "input-0", "has the wrong datatype", "FP64", "FP32")

    async def scenario() -> None:
        log.offer(logged, _request(), None, error, 1000)
        log.offer(broken, _request(), _response(), None, 1000)
        await log.close()

    asyncio.run(scenario())
    request, response = _lines(good)
    assert response["status"] == 400 and response["data"]["error"] == str(error)
    assert _count(metrics, "sent", "m") == 1
    assert _count(metrics, "failed", "n") == 1


def test_after_close_predictions_are_dropped_and_counted(tmp_path: Path):
    log, metrics = _log()
    model = _model(sink=(tmp_path / "log.jsonl").as_uri())

    async def scenario() -> None:
        await log.close()
        log.offer(model, _request(), _response(), None, 1000)

    asyncio.run(scenario())
    assert _count(metrics, "dropped") == 1
    assert not (tmp_path / "log.jsonl").exists()


def test_close_bounds_the_flush_and_counts_what_is_left_as_dropped(tmp_path: Path):
    log, metrics = _log()
    model = _model(sink=(tmp_path / "log.jsonl").as_uri(), queue=10)
    release = asyncio.Event()

    async def stuck(item: Any) -> bool:
        await release.wait()
        return True

    log._deliver = stuck  # type: ignore[method-assign]

    async def scenario() -> None:
        for i in range(4):
            log.offer(model, _request(f"r{i}"), _response(), None, 1000)
        await log.close(timeout=0.01)

    asyncio.run(scenario())
    assert _count(metrics, "dropped") == 4
    assert _count(metrics, "sent") == 0


def test_sink_warnings_are_rate_limited_and_say_how_many_were_held_back(caplog):
    now = [100.0]
    warnings = SinkWarnings(interval=30.0, clock=lambda: now[0])
    assert warnings.failed("http://sink", "refused")
    assert not warnings.failed("http://sink", "refused")
    assert not warnings.failed("http://sink", "refused")
    assert warnings.failed("http://other", "refused")
    now[0] += 31
    with caplog.at_level("WARNING", logger="v2serve.prediction_log"):
        assert warnings.failed("http://sink", "refused")
    assert "2 more failures" in caplog.records[-1].getMessage()
