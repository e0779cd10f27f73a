"""gRPC-only behaviour against the session server: health Watch, in-stream errors with the
request's id, typed contents in the datatype's own field, bounded error messages, and the
server's own gRPC request metrics."""

import asyncio
import queue
import time
from typing import Any

import grpc
import numpy as np
import pytest
import requests
import tritonclient.grpc as grpcclient
import tritonclient.grpc.aio as grpcaio
from grpc_health.v1 import health_pb2, health_pb2_grpc
from prometheus_client.parser import text_string_to_metric_families
from tritonclient.grpc import service_pb2, service_pb2_grpc
from tritonclient.utils import InferenceServerException

SERVING = health_pb2.HealthCheckResponse.SERVING
ROW = [5.1, 3.5, 1.4, 0.2]
LONG_NAME = "m" * 20_000


def _watch(server: Any, service: str) -> tuple[grpc.Channel, Any]:
    channel = grpc.insecure_channel(server.grpc_url)
    stub = health_pb2_grpc.HealthStub(channel)
    return channel, stub.Watch(health_pb2.HealthCheckRequest(service=service), timeout=60)


def test_watch_streams_the_servers_readiness(server):
    channel, responses = _watch(server, "")
    try:
        assert next(responses).status == SERVING
    finally:
        responses.cancel()
        channel.close()


def test_watch_follows_a_model_through_unload_and_load(server):
    client = grpcclient.InferenceServerClient(url=server.grpc_url)
    channel, responses = _watch(server, "bare")
    try:
        assert next(responses).status == SERVING
        client.unload_model("bare")
        assert next(responses).status != SERVING
        client.load_model("bare")
        assert next(responses).status == SERVING
    finally:
        responses.cancel()
        channel.close()
        client.load_model("bare")
        client.close()


def test_watch_of_an_unknown_model_is_service_unknown_and_check_is_not_found(server):
    channel, responses = _watch(server, "no-such-model")
    try:
        assert next(responses).status == health_pb2.HealthCheckResponse.SERVICE_UNKNOWN
        stub = health_pb2_grpc.HealthStub(channel)
        with pytest.raises(grpc.RpcError) as caught:
            stub.Check(health_pb2.HealthCheckRequest(service="no-such-model"), timeout=10)
        assert caught.value.code() is grpc.StatusCode.NOT_FOUND
        assert "no-such-model" in caught.value.details()
    finally:
        responses.cancel()
        channel.close()


def _request(model: str, request_id: str) -> Any:
    request = service_pb2.ModelInferRequest(model_name=model, id=request_id)
    tensor = request.inputs.add(name="input-0", datatype="FP64", shape=[1, 4])
    tensor.contents.fp64_contents.extend(ROW)
    return request


def test_stream_errors_carry_the_requests_id(server, estimators):
    channel = grpc.insecure_channel(server.grpc_url)
    stub = service_pb2_grpc.GRPCInferenceServiceStub(channel)
    sent = [_request("iris", "good-1"), _request("no-such-model", "bad-2"),
            _request("iris", "good-3")]  # fmt: skip
    try:
        replies = list(stub.ModelStreamInfer(iter(sent), timeout=30))
    finally:
        channel.close()
    assert [r.infer_response.id for r in replies] == ["good-1", "bad-2", "good-3"]
    assert [bool(r.error_message) for r in replies] == [False, True, False]
    assert "no-such-model" in replies[1].error_message
    expected = estimators[("iris", "2")].predict(np.array([ROW]))
    served = np.frombuffer(replies[0].infer_response.raw_output_contents[0], dtype=expected.dtype)
    assert served.tolist() == expected.tolist()


def test_tritonclient_stream_reports_the_error_and_goes_on(server):
    results: queue.Queue[tuple[Any, Any]] = queue.Queue()
    client = grpcclient.InferenceServerClient(url=server.grpc_url)
    client.start_stream(callback=lambda result, error: results.put((result, error)))
    try:
        for model, request_id in (("no-such-model", "a"), ("iris", "b")):
            tensor = grpcclient.InferInput("input-0", [1, 4], "FP64")
            tensor.set_data_from_numpy(np.array([ROW]))
            client.async_stream_infer(model, [tensor], request_id=request_id)
        first, second = results.get(timeout=30), results.get(timeout=30)
    finally:
        client.stop_stream()
        client.close()
    assert first[0] is None and "no-such-model" in first[1].message()
    assert second[1] is None and second[0].get_response().id == "b"


WRONG_FIELDS = ["fp32_contents", "int64_contents", "int_contents", "uint64_contents",
                "uint_contents", "bool_contents", "bytes_contents"]  # fmt: skip


@pytest.mark.parametrize("field", WRONG_FIELDS)
def test_fp64_values_in_another_contents_field_are_refused(server, field):
    request = service_pb2.ModelInferRequest(model_name="iris")
    tensor = request.inputs.add(name="input-0", datatype="FP64", shape=[1, 4])
    values = [b"5"] * 4 if field == "bytes_contents" else [True] * 4 if field == "bool_contents" \
        else [5] * 4  # fmt: skip
    getattr(tensor.contents, field).extend(values)
    channel = grpc.insecure_channel(server.grpc_url)
    try:
        with pytest.raises(grpc.RpcError) as caught:
            service_pb2_grpc.GRPCInferenceServiceStub(channel).ModelInfer(request, timeout=10)
    finally:
        channel.close()
    assert caught.value.code() is grpc.StatusCode.INVALID_ARGUMENT
    for word in ("input-0", "FP64", "fp64_contents", field):
        assert word in caught.value.details()


def _clipped(message: str) -> None:
    assert "m" * 150 in message and "…" in message
    assert len(message) < 1000


def test_a_huge_model_name_stays_not_found_over_grpc(server):
    client = grpcclient.InferenceServerClient(url=server.grpc_url)
    tensor = grpcclient.InferInput("input-0", [1, 4], "FP64")
    tensor.set_data_from_numpy(np.array([ROW]))
    try:
        for call in (lambda: client.infer(LONG_NAME, [tensor]),
                     lambda: client.get_model_metadata(LONG_NAME)):  # fmt: skip
            with pytest.raises(InferenceServerException) as caught:
                call()
            assert caught.value.status() == "StatusCode.NOT_FOUND", caught.value.message()
            _clipped(caught.value.message())
    finally:
        client.close()


def test_a_huge_model_name_stays_not_found_over_grpc_aio(server):
    async def run() -> InferenceServerException:
        client = grpcaio.InferenceServerClient(url=server.grpc_url)
        try:
            await client.get_model_metadata(LONG_NAME)
        except InferenceServerException as exc:
            return exc
        finally:
            await client.close()
        raise AssertionError("no error")

    caught = asyncio.run(run())
    assert caught.status() == "StatusCode.NOT_FOUND", caught.message()
    _clipped(caught.message())


def test_a_huge_model_name_is_a_json_404_over_rest(server):
    body = {"inputs": [{"name": "input-0", "shape": [1, 4], "datatype": "FP64", "data": ROW}]}
    # Under max_url_bytes (16 KiB), so the name itself reaches the router and its 404.
    name = LONG_NAME[:10_000]
    response = requests.post(f"{server.base}/v2/models/{name}/infer", json=body, timeout=10)
    assert response.status_code == 404, response.text[:300]
    _clipped(response.json()["error"])


def _samples(server: Any) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    text = requests.get(f"http://127.0.0.1:{server.metrics_port}/metrics", timeout=5).text
    return {
        (sample.name, tuple(sorted(sample.labels.items()))): sample.value
        for family in text_string_to_metric_families(text)
        for sample in family.samples
        if sample.name.startswith("grpc_server_")
    }


def test_grpc_calls_are_counted_by_method_kind_and_code(server):
    def value(samples: dict, name: str, **labels: str) -> float:
        return samples.get((name, tuple(sorted(labels.items()))), 0.0)

    infer = {"grpc_service": "inference.GRPCInferenceService", "grpc_method": "ModelInfer",
             "grpc_type": "UNARY"}  # fmt: skip
    watch = {"grpc_service": "grpc.health.v1.Health", "grpc_method": "Watch",
             "grpc_type": "SERVER_STREAMING"}  # fmt: skip
    before = _samples(server)
    client = grpcclient.InferenceServerClient(url=server.grpc_url)
    tensor = grpcclient.InferInput("input-0", [1, 4], "FP64")
    tensor.set_data_from_numpy(np.array([ROW]))
    client.infer("iris", [tensor])
    with pytest.raises(InferenceServerException):
        client.infer("no-such-model", [tensor])
    client.close()
    channel, responses = _watch(server, "")
    next(responses)
    responses.cancel()
    channel.close()
    cancelled = {**watch, "grpc_code": "CANCELLED"}
    deadline = time.monotonic() + 10  # the cancelled watch is counted once the server sees it
    after = _samples(server)
    while value(after, "grpc_server_handled_total", **cancelled) == value(
        before, "grpc_server_handled_total", **cancelled
    ) and time.monotonic() < deadline:
        time.sleep(0.05)
        after = _samples(server)

    def grew(name: str, by: float, **labels: str) -> None:
        assert value(after, name, **labels) - value(before, name, **labels) == by, (name, labels)

    grew("grpc_server_started_total", 2, **infer)
    grew("grpc_server_handled_total", 1, **infer, grpc_code="OK")
    grew("grpc_server_handled_total", 1, **infer, grpc_code="NOT_FOUND")
    grew("grpc_server_handling_seconds_count", 2, **infer)
    grew("grpc_server_started_total", 1, **watch)
    grew("grpc_server_msg_sent_total", 1, **watch)
    grew("grpc_server_handled_total", 1, **watch, grpc_code="CANCELLED")
