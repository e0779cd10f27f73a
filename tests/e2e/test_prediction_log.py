"""Prediction logging against real sinks: an HTTP receiver in this process, a JSON-lines
file, a port where nothing listens and a listener that never answers.

The receiver is a plain ``http.server`` on a free port; every event it gets is kept with
its headers and body. Answers are compared with the same estimators run in-process.
"""

import json
import socket
import threading
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from datetime import datetime
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import grpc
import numpy as np
import pandas as pd
import pytest
import requests
import tritonclient.grpc as grpcclient
import tritonclient.http as httpclient
from prometheus_client.parser import text_string_to_metric_families
from sklearn.datasets import load_iris
from tritonclient.grpc import service_pb2, service_pb2_grpc
from tritonclient.utils import InferenceServerException

from runtimes.examples import iris_v1, wine_columns_v1, wine_frame, write_artifact
from tests.harness import wait_until

from .conftest import RunningServer, free_port, start_server, stop_server

X = np.ascontiguousarray(load_iris().data[[0, 77, 149]], dtype=np.float64)
# Values no other request sends, to show that a redacted input never leaves the server.
SECRET = np.array([[5.123456789, 3.987654321, 1.4, 0.2]])
REQUEST_TYPE = "org.kubeflow.serving.inference.request"
RESPONSE_TYPE = "org.kubeflow.serving.inference.response"
STUCK_REQUESTS = 20
DOWN_REQUESTS = 10


@dataclass
class Received:
    path: str
    headers: dict[str, str]
    body: bytes

    @property
    def data(self) -> Any:
        return json.loads(self.body)


@dataclass
class Receiver:
    """A CloudEvents sink: keeps every POST, answers 202 as brokers do."""

    events: list[Received] = field(default_factory=list)
    lock: threading.Lock = field(default_factory=threading.Lock)

    def add(self, event: Received) -> None:
        with self.lock:
            self.events.append(event)

    def find(self, event_id: str) -> list[Received]:
        with self.lock:
            return [e for e in self.events if e.headers.get("ce-id") == event_id]


def _handler(receiver: Receiver) -> type[BaseHTTPRequestHandler]:
    class Handler(BaseHTTPRequestHandler):
        def do_POST(self) -> None:  # noqa: N802 (http.server's name)
            length = int(self.headers.get("content-length", "0"))
            body = self.rfile.read(length)
            headers = {key.lower(): value for key, value in self.headers.items()}
            receiver.add(Received(self.path, headers, body))
            self.send_response(202)
            self.send_header("content-length", "0")
            self.end_headers()

        def log_message(self, format: str, *args: Any) -> None:
            pass

    return Handler


@dataclass
class Logged:
    server: RunningServer
    receiver: Receiver
    file: Path
    estimators: dict[str, Any]


def _settings(sink: str, **options: Any) -> dict[str, Any]:
    return {"parameters": {"extra": {"prediction_log": {"sink": sink, **options}}}}


@pytest.fixture(scope="module")
def logged(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Logged]:
    receiver = Receiver()
    sink = ThreadingHTTPServer(("127.0.0.1", 0), _handler(receiver))
    threading.Thread(target=sink.serve_forever, daemon=True).start()
    events_url = f"http://127.0.0.1:{sink.server_address[1]}"
    # Accepts connections into its backlog and never answers: a sink that hangs.
    black_hole = socket.socket()
    black_hole.bind(("127.0.0.1", 0))
    black_hole.listen(1)
    stuck_url = f"http://127.0.0.1:{black_hole.getsockname()[1]}/events"
    down_url = f"http://127.0.0.1:{free_port()}/events"

    root = tmp_path_factory.mktemp("prediction-log")
    repository = root / "model-repository"
    log_file = root / "events" / "predictions.jsonl"
    log_file.parent.mkdir(parents=True)
    iris, wine = iris_v1(), wine_columns_v1()
    models = {
        "iris-logged": (iris, _settings(f"{events_url}/iris")),
        "iris-redacted": (iris, _settings(f"{events_url}/redacted", redact=["input-0"])),
        "iris-file": (iris, _settings(log_file.as_uri())),
        "iris-down": (iris, _settings(down_url)),
        "iris-stuck": (iris, _settings(stuck_url, queue=1)),
        "iris-quiet": (iris, {}),
        "wine-logged": (wine, _settings(f"{events_url}/wine")),
    }
    for name, (estimator, settings) in models.items():
        write_artifact(estimator, repository / name / "1" / "model.joblib")
        (repository / name / "model-settings.json").write_text(json.dumps(settings))
    server = start_server(root / "server", repository)
    try:
        yield Logged(server, receiver, log_file, {"iris": iris, "wine": wine})
    finally:
        code = stop_server(server)
        sink.shutdown()
        black_hole.close()
    assert code == 0, server.log_text()


def _poll(found: Callable[[], Any], what: str, timeout: float = 60.0) -> Any:
    """The harness's polling loop, with the argument order these tests use."""
    return wait_until(found, timeout, what)


def _pair(receiver: Receiver, event_id: str) -> tuple[Received, Received]:
    events = _poll(
        lambda: (found := receiver.find(event_id)) and len(found) >= 2 and found, event_id
    )
    assert len(events) == 2, [e.headers for e in events]
    by_type = {e.headers["ce-type"]: e for e in events}
    return by_type[REQUEST_TYPE], by_type[RESPONSE_TYPE]


def _metric(server: RunningServer, name: str, model: str) -> float:
    text = requests.get(f"http://127.0.0.1:{server.metrics_port}/metrics", timeout=5).text
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            if sample.name == name and sample.labels == {"model": model, "version": "1"}:
                return float(sample.value)
    return 0.0


def _rest_infer(server: RunningServer, model: str, data: np.ndarray, request_id: str) -> Any:
    client = httpclient.InferenceServerClient(url=server.http_url)
    tensor = httpclient.InferInput("input-0", list(data.shape), "FP64")
    tensor.set_data_from_numpy(data, binary_data=True)
    outputs = [httpclient.InferRequestedOutput("predict_proba", binary_data=True)]
    return client.infer(model, [tensor], outputs=outputs, request_id=request_id)


def _grpc_infer(server: RunningServer, model: str, data: np.ndarray, request_id: str) -> Any:
    client = grpcclient.InferenceServerClient(url=server.grpc_url)
    tensor = grpcclient.InferInput("input-0", list(data.shape), "FP64")
    tensor.set_data_from_numpy(data)
    outputs = [grpcclient.InferRequestedOutput("predict_proba")]
    return client.infer(model, [tensor], outputs=outputs, request_id=request_id)


INFER = {"http": _rest_infer, "grpc": _grpc_infer}


def _check_attributes(event: Received, model: str, event_id: str, event_type: str) -> None:
    headers = event.headers
    assert headers["ce-specversion"] == "1.0"
    assert headers["ce-type"] == event_type
    assert headers["ce-id"] == event_id
    assert headers["ce-source"] == f"/v2/models/{model}/versions/1"
    assert headers["ce-inferenceservicename"] == model
    assert headers["ce-component"] == "predictor"
    assert headers["ce-endpoint"] == "default"
    assert "ce-namespace" in headers
    assert headers["ce-modelversion"] == "1"
    assert headers["content-type"] == "application/json"
    datetime.fromisoformat(headers["ce-time"])


@pytest.mark.parametrize("protocol", ["http", "grpc"])
def test_a_prediction_reaches_the_sink_as_a_request_and_a_response_event(
    logged: Logged, protocol: str
):
    event_id = f"{protocol}-ok"
    answer = INFER[protocol](logged.server, "iris-logged", X, event_id)
    request, response = _pair(logged.receiver, event_id)
    assert request.path == response.path == "/iris"
    _check_attributes(request, "iris-logged", event_id, REQUEST_TYPE)
    _check_attributes(response, "iris-logged", event_id, RESPONSE_TYPE)
    assert response.headers["ce-status"] == "200"
    assert int(response.headers["ce-latencyus"]) > 0
    # Binary tensors (REST) and raw contents (gRPC) arrive decoded, as V2 JSON.
    (tensor,) = request.data["inputs"]
    assert tensor == {
        "name": "input-0",
        "shape": list(X.shape),
        "datatype": "FP64",
        "data": X.reshape(-1).tolist(),
    }
    assert request.data["outputs"] == [{"name": "predict_proba"}]
    body = response.data
    assert body["model_name"] == "iris-logged" and body["model_version"] == "1"
    (output,) = body["outputs"]
    assert output["name"] == "predict_proba" and output["shape"] == [3, 3]
    expected = logged.estimators["iris"].predict_proba(X)
    np.testing.assert_allclose(np.array(output["data"]).reshape(3, 3), expected, rtol=1e-12)
    np.testing.assert_array_equal(
        np.array(output["data"]).reshape(3, 3), answer.as_numpy("predict_proba")
    )


def test_a_bad_request_over_rest_is_logged_with_its_400_and_message(logged: Logged):
    body = {
        "id": "http-bad",
        "inputs": [{"name": "input-0", "shape": [1, 4], "datatype": "FP32", "data": [1, 2, 3, 4]}],
    }
    answer = requests.post(
        f"{logged.server.base}/v2/models/iris-logged/infer", json=body, timeout=10
    )
    assert answer.status_code == 400
    request, response = _pair(logged.receiver, "http-bad")
    assert response.headers["ce-status"] == "400"
    assert response.data["error"] == answer.json()["error"]
    assert request.data["inputs"][0]["data"] == [1, 2, 3, 4]
    assert request.data["inputs"][0]["datatype"] == "FP32"


def test_a_bad_request_over_grpc_is_logged_with_its_400(logged: Logged):
    client = grpcclient.InferenceServerClient(url=logged.server.grpc_url)
    tensor = grpcclient.InferInput("input-0", [1, 4], "FP32")
    tensor.set_data_from_numpy(np.ones((1, 4), dtype=np.float32))
    with pytest.raises(InferenceServerException) as caught:
        client.infer("iris-logged", [tensor], request_id="grpc-bad")
    assert "INVALID_ARGUMENT" in str(caught.value.status())
    request, response = _pair(logged.receiver, "grpc-bad")
    assert response.headers["ce-status"] == "400"
    assert response.data["error"] in str(caught.value.message())
    assert request.data["inputs"][0]["data"] == [1.0, 1.0, 1.0, 1.0]


@pytest.mark.parametrize("protocol", ["http", "grpc"])
def test_a_request_for_a_version_the_model_does_not_serve_is_logged_with_its_404(
    logged: Logged, protocol: str
):
    """Refused before any version ran it (issue 16: failures too), under the version asked
    for; its inputs are in the request event as for a served request."""
    event_id = f"{protocol}-unserved-version"
    if protocol == "http":
        client: Any = httpclient.InferenceServerClient(url=logged.server.http_url)
        tensor: Any = httpclient.InferInput("input-0", list(X.shape), "FP64")
        tensor.set_data_from_numpy(X, binary_data=True)
    else:
        client = grpcclient.InferenceServerClient(url=logged.server.grpc_url)
        tensor = grpcclient.InferInput("input-0", list(X.shape), "FP64")
        tensor.set_data_from_numpy(X)
    with pytest.raises(InferenceServerException) as caught:
        client.infer("iris-logged", [tensor], model_version="7", request_id=event_id)
    assert caught.value.status() in ("404", "StatusCode.NOT_FOUND"), caught.value
    request, response = _pair(logged.receiver, event_id)
    assert response.headers["ce-status"] == "404"
    assert response.headers["ce-modelversion"] == request.headers["ce-modelversion"] == "7"
    assert response.data["error"] in str(caught.value.message())
    assert request.data["inputs"][0]["data"] == X.reshape(-1).tolist()


def test_a_body_that_does_not_decode_is_logged_with_its_400_and_no_tensors(logged: Logged):
    """Refused by the REST adapter before it became a request (issue 16: failures too)."""
    answer = requests.post(
        f"{logged.server.base}/v2/models/iris-logged/infer",
        data=b'{"inputs": [',
        headers={"content-type": "application/json", "x-request-id": "http-undecodable"},
        timeout=10,
    )
    assert answer.status_code == 400
    request, response = _pair(logged.receiver, "http-undecodable")
    assert response.headers["ce-status"] == "400"
    assert response.data["error"] == answer.json()["error"]
    assert request.data["inputs"] == []


def test_a_grpc_message_in_the_wrong_contents_field_is_logged_with_its_400(logged: Logged):
    request = service_pb2.ModelInferRequest(model_name="iris-logged", id="grpc-wrong-field")
    tensor = request.inputs.add(name="input-0", datatype="FP64", shape=[1, 4])
    tensor.contents.fp32_contents.extend([5.1, 3.5, 1.4, 0.2])
    channel = grpc.insecure_channel(logged.server.grpc_url)
    try:
        with pytest.raises(grpc.RpcError) as caught:
            service_pb2_grpc.GRPCInferenceServiceStub(channel).ModelInfer(request, timeout=10)
    finally:
        channel.close()
    assert caught.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    request_event, response = _pair(logged.receiver, "grpc-wrong-field")
    assert response.headers["ce-status"] == "400"
    assert response.data["error"] == caught.value.details()
    assert request_event.data["inputs"] == []


def test_bytes_over_grpc_raw_contents_are_logged_as_strings(logged: Logged):
    frame = wine_frame().iloc[[0, 100]]
    client = grpcclient.InferenceServerClient(url=logged.server.grpc_url)
    tensors = []
    for column in ("alcohol", "malic_acid", "flavanoids", "proline"):
        tensor = grpcclient.InferInput(column, [2], "FP64")
        tensor.set_data_from_numpy(frame[column].to_numpy(dtype=np.float64))
        tensors.append(tensor)
    colour = grpcclient.InferInput("colour", [2], "BYTES")
    colour.set_data_from_numpy(frame["colour"].to_numpy(dtype=object))
    tensors.append(colour)
    client.infer("wine-logged", tensors, request_id="grpc-wine")
    request, response = _pair(logged.receiver, "grpc-wine")
    sent = {tensor["name"]: tensor["data"] for tensor in request.data["inputs"]}
    assert sent["colour"] == frame["colour"].tolist()
    assert sent["proline"] == frame["proline"].tolist()
    columns = ["alcohol", "malic_acid", "flavanoids", "proline", "colour"]
    expected = logged.estimators["wine"].predict(pd.DataFrame({c: sent[c] for c in columns}))
    (predict,) = response.data["outputs"]
    assert predict["data"] == expected.tolist()


@pytest.mark.parametrize("protocol", ["http", "grpc"])
def test_a_redacted_input_never_reaches_the_sink(logged: Logged, protocol: str):
    event_id = f"{protocol}-redacted"
    answer = INFER[protocol](logged.server, "iris-redacted", SECRET, event_id)
    request, response = _pair(logged.receiver, event_id)
    (tensor,) = request.data["inputs"]
    assert tensor["data"] == "[redacted]"
    assert tensor["shape"] == [1, 4] and tensor["datatype"] == "FP64"
    for event in (request, response):
        assert b"5.123456" not in event.body and b"3.987654" not in event.body
    np.testing.assert_array_equal(
        np.array(response.data["outputs"][0]["data"]).reshape(1, 3),
        answer.as_numpy("predict_proba"),
    )


def _lines(path: Path) -> list[dict[str, Any]]:
    if not path.exists():
        return []
    # A line being written may be incomplete: only whole lines are read.
    text = path.read_text()
    return [json.loads(line) for line in text[: text.rfind("\n") + 1].splitlines() if line]


@pytest.mark.parametrize("protocol", ["http", "grpc"])
def test_a_file_sink_gets_one_structured_cloudevent_per_line(logged: Logged, protocol: str):
    event_id = f"{protocol}-file"
    INFER[protocol](logged.server, "iris-file", X, event_id)

    def mine() -> list[dict[str, Any]]:
        found = [event for event in _lines(logged.file) if event["id"] == event_id]
        return found if len(found) == 2 else []

    request, response = _poll(mine, f"two lines for {event_id} in {logged.file}")
    assert (request["type"], response["type"]) == (REQUEST_TYPE, RESPONSE_TYPE)
    for event in (request, response):
        assert event["specversion"] == "1.0"
        assert event["source"] == "/v2/models/iris-file/versions/1"
        assert event["inferenceservicename"] == "iris-file"
        assert event["datacontenttype"] == "application/json"
    assert request["data"]["inputs"][0]["data"] == X.reshape(-1).tolist()
    assert response["status"] == 200
    expected = logged.estimators["iris"].predict_proba(X)
    np.testing.assert_allclose(
        np.array(response["data"]["outputs"][0]["data"]).reshape(3, 3), expected, rtol=1e-12
    )


def test_a_model_without_the_setting_sends_nothing(logged: Logged):
    _rest_infer(logged.server, "iris-quiet", X, "quiet")
    _rest_infer(logged.server, "iris-logged", X, "after-quiet")
    _pair(logged.receiver, "after-quiet")  # the drain is in order: quiet would be before it
    assert logged.receiver.find("quiet") == []
    assert _metric(logged.server, "v2serve_prediction_log_sent_total", "iris-quiet") == 0


def test_a_sink_that_is_down_fails_no_request_and_is_counted(logged: Logged):
    expected = logged.estimators["iris"].predict_proba(X)
    for i in range(DOWN_REQUESTS):
        answer = INFER["http" if i % 2 else "grpc"](logged.server, "iris-down", X, f"down-{i}")
        np.testing.assert_allclose(answer.as_numpy("predict_proba"), expected, rtol=1e-12)

    def settled() -> bool:
        counted = sum(
            _metric(logged.server, f"v2serve_prediction_log_{outcome}_total", "iris-down")
            for outcome in ("sent", "failed", "dropped")
        )
        return counted == DOWN_REQUESTS

    _poll(settled, "every prediction for the dead sink counted")
    assert _metric(logged.server, "v2serve_prediction_log_sent_total", "iris-down") == 0
    assert _metric(logged.server, "v2serve_prediction_log_failed_total", "iris-down") >= 1
    assert "prediction log sink" in logged.server.log_text()


def test_a_sink_that_hangs_does_not_hold_requests_back_and_drops_are_counted(logged: Logged):
    expected = logged.estimators["iris"].predict_proba(X)
    for i in range(STUCK_REQUESTS):
        answer = _rest_infer(logged.server, "iris-stuck", X, f"stuck-{i}")
        np.testing.assert_allclose(answer.as_numpy("predict_proba"), expected, rtol=1e-12)
    # With a queue of one and a sink that never answers, most predictions cannot wait.
    _poll(
        lambda: _metric(logged.server, "v2serve_prediction_log_dropped_total", "iris-stuck") >= 1,
        "a dropped prediction",
    )

    def counted() -> float:
        return sum(
            _metric(logged.server, f"v2serve_prediction_log_{outcome}_total", "iris-stuck")
            for outcome in ("sent", "failed", "dropped")
        )

    _poll(lambda: counted() == STUCK_REQUESTS, "every prediction for the hung sink counted")
    assert _metric(logged.server, "v2serve_prediction_log_sent_total", "iris-stuck") == 0
