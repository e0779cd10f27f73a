"""Every applicable tritonclient method, over HTTP and gRPC, sync and asyncio, with the
client's defaults (binary tensor data on). Answers are compared with the estimator."""

import asyncio
import queue

import numpy as np
import pytest
import tritonclient.grpc as grpcclient
import tritonclient.grpc.aio as grpcaio
import tritonclient.http as httpclient
import tritonclient.http.aio as httpaio
from sklearn.datasets import load_iris
from tritonclient.utils import InferenceServerException

from runtimes.compiled.tolerance import ATOL, RTOL

from .conftest import DATATYPES

MODULES = {"http": httpclient, "grpc": grpcclient}
# Halves are exact in every float type down to FP16 and BF16.
ROWS = np.round(load_iris().data[::30] * 2) / 2
NUMPY = {
    "FP16": np.float16, "FP32": np.float32, "FP64": np.float64, "BF16": np.float32,
    "INT8": np.int8, "INT16": np.int16, "INT32": np.int32, "INT64": np.int64,
    "UINT8": np.uint8, "UINT16": np.uint16, "UINT32": np.uint32, "UINT64": np.uint64,
    "BOOL": np.bool_,
}  # fmt: skip


def _client(protocol, server):
    url = server.http_url if protocol == "http" else server.grpc_url
    return MODULES[protocol].InferenceServerClient(url=url)


def _inputs(protocol, X, datatype="FP64"):
    tensor = MODULES[protocol].InferInput("input-0", list(X.shape), datatype)
    tensor.set_data_from_numpy(X)
    return [tensor]


def _rows_as(datatype):
    values = ROWS if datatype != "BOOL" else ROWS > 3
    if datatype.startswith(("INT", "UINT")):
        values = np.round(values)
    return np.ascontiguousarray(values.astype(NUMPY[datatype]))


def test_health_and_server_metadata(server, protocol):
    client = _client(protocol, server)
    assert client.is_server_live() and client.is_server_ready()
    assert client.is_model_ready("iris") and client.is_model_ready("iris", "1")
    assert not client.is_model_ready("nope")
    found = client.get_server_metadata()
    extensions = found["extensions"] if protocol == "http" else list(found.extensions)
    assert {"binary_tensor_data", "classification", "model_repository", "statistics"} <= set(
        extensions
    )
    assert {"model_configuration"} <= set(extensions)


def test_model_config(server, protocol):
    client = _client(protocol, server)
    config = client.get_model_config("iris")
    config = (
        config if protocol == "http" else client.get_model_config("iris", as_json=True)["config"]
    )
    assert config["name"] == "iris"
    assert config["input"][0]["data_type"] == "TYPE_FP64"
    assert [int(d) for d in config["input"][0]["dims"]] == [-1, 4]
    outputs = {o["name"]: o["data_type"] for o in config["output"]}
    assert outputs["predict"] == "TYPE_INT64" and outputs["predict_proba"] == "TYPE_FP64"
    assert int(config["version_policy"]["latest"]["num_versions"]) == 2


@pytest.mark.parametrize("datatype", DATATYPES)
def test_infer_every_datatype_with_defaults(server, estimators, protocol, datatype):
    X = _rows_as(datatype)
    client = _client(protocol, server)
    result = client.infer(f"iris-{datatype.lower()}", _inputs(protocol, X, datatype))
    expected = estimators[("iris", "1")].predict(X.astype(np.float64))
    np.testing.assert_array_equal(result.as_numpy("predict"), expected)


def test_bytes_columns_with_defaults(server, estimators, protocol):
    from runtimes.examples import wine_frame

    frame = wine_frame().iloc[::40]
    estimator = estimators[("wine-columns", "1")]
    module = MODULES[protocol]
    tensors = []
    for name in estimator.feature_names_in_:
        values = frame[name].to_numpy(dtype=object if name == "colour" else np.float64)
        tensor = module.InferInput(name, [len(values)], "BYTES" if name == "colour" else "FP64")
        tensor.set_data_from_numpy(values)
        tensors.append(tensor)
    result = _client(protocol, server).infer("wine-columns", tensors)
    np.testing.assert_array_equal(
        result.as_numpy("predict"), estimator.predict(frame[list(estimator.feature_names_in_)])
    )


def test_mixed_binary_and_json_inputs_and_outputs(server, estimators):
    from runtimes.examples import wine_frame

    frame = wine_frame().iloc[::40]
    estimator = estimators[("wine-columns", "1")]
    tensors = []
    for index, name in enumerate(estimator.feature_names_in_):
        values = frame[name].to_numpy(dtype=object if name == "colour" else np.float64)
        tensor = httpclient.InferInput(name, [len(values)], "BYTES" if name == "colour" else "FP64")
        tensor.set_data_from_numpy(values, binary_data=index % 2 == 0)
        tensors.append(tensor)
    outputs = [
        httpclient.InferRequestedOutput("predict", binary_data=True),
        httpclient.InferRequestedOutput("predict_proba", binary_data=False),
    ]
    client = _client("http", server)
    result = client.infer("wine-columns", tensors, outputs=outputs)
    X = frame[list(estimator.feature_names_in_)]
    np.testing.assert_array_equal(result.as_numpy("predict"), estimator.predict(X))
    np.testing.assert_allclose(
        result.as_numpy("predict_proba"), estimator.predict_proba(X), rtol=RTOL, atol=ATOL
    )


def test_async_infer(server, estimators, protocol):
    client = _client(protocol, server)
    X = ROWS.astype(np.float64)
    if protocol == "http":
        result = client.async_infer("iris", _inputs(protocol, X)).get_result()
    else:
        answers: queue.Queue = queue.Queue()
        client.async_infer(
            "iris", _inputs(protocol, X), lambda result, error: answers.put((result, error))
        )
        result, error = answers.get(timeout=10)
        assert error is None
    np.testing.assert_array_equal(result.as_numpy("predict"), estimators[("iris", "2")].predict(X))


def test_stream_infer_calls_back_for_answers_and_errors(server, estimators):
    client = _client("grpc", server)
    answers: queue.Queue = queue.Queue()
    client.start_stream(callback=lambda result, error: answers.put((result, error)))
    try:
        X = ROWS.astype(np.float64)
        client.async_stream_infer("iris", _inputs("grpc", X))
        client.async_stream_infer("nope", _inputs("grpc", X))
        client.async_stream_infer("iris", _inputs("grpc", X), model_version="1")
        got = [answers.get(timeout=10) for _ in range(3)]
    finally:
        client.stop_stream()
    (first, e1), (failed, e2), (third, e3) = got
    assert e1 is None and e3 is None and failed is None
    assert "nope" in str(e2)
    np.testing.assert_array_equal(first.as_numpy("predict"), estimators[("iris", "2")].predict(X))
    np.testing.assert_array_equal(third.as_numpy("predict"), estimators[("iris", "1")].predict(X))


def test_classification(server, estimators, protocol):
    X = ROWS.astype(np.float64)
    module = MODULES[protocol]
    outputs = [module.InferRequestedOutput("predict_proba", class_count=2)]
    result = _client(protocol, server).infer("iris", _inputs(protocol, X), outputs=outputs)
    estimator = estimators[("iris", "2")]
    proba = estimator.predict_proba(X)
    for row, entries in zip(proba, result.as_numpy("predict_proba"), strict=True):
        top = np.argsort(-row)[:2]
        parsed = [entry.decode().split(":") for entry in entries]
        assert [int(p[1]) for p in parsed] == list(top)
        assert [p[2] for p in parsed] == [str(estimator.classes_[i]) for i in top]
        np.testing.assert_allclose([float(p[0]) for p in parsed], row[top], atol=1e-6)


def test_statistics_count_the_inferences(server, protocol):
    client = _client(protocol, server)

    def counts():
        stats = client.get_inference_statistics("diabetes", "1")
        stats = (
            stats
            if protocol == "http"
            else client.get_inference_statistics("diabetes", "1", as_json=True)
        )
        [entry] = stats["model_stats"]
        return int(entry.get("inference_count", 0)), int(entry.get("execution_count", 0)), entry

    before_inferences, before_executions, _ = counts()
    X = np.zeros((3, 10))
    for _ in range(2):
        client.infer("diabetes", _inputs(protocol, X))
    after_inferences, after_executions, entry = counts()
    assert after_inferences - before_inferences == 6
    assert after_executions - before_executions == 2
    assert int(entry["inference_stats"]["success"]["count"]) >= 2
    assert int(entry["inference_stats"]["compute_infer"]["ns"]) > 0
    assert any(int(b["batch_size"]) == 3 for b in entry["batch_stats"])
    everything = client.get_inference_statistics()
    everything = everything if protocol == "http" else client.get_inference_statistics(as_json=True)
    assert {"iris", "diabetes"} <= {e["name"] for e in everything["model_stats"]}


def test_repository_index_load_unload(server, protocol):
    client = _client(protocol, server)
    index = client.get_model_repository_index()
    index = (
        index if protocol == "http" else client.get_model_repository_index(as_json=True)["models"]
    )
    states = {(m["name"], m.get("version", "")): m["state"] for m in index}
    assert states[("bare", "1")] == "READY"
    client.unload_model("bare")
    assert not client.is_model_ready("bare")
    client.load_model("bare")
    assert client.is_model_ready("bare")


def test_unsupported_calls_answer_unimplemented(server):
    client = _client("grpc", server)
    for call in (client.get_system_shared_memory_status, client.get_cuda_shared_memory_status):
        with pytest.raises(InferenceServerException) as caught:
            call()
        assert caught.value.status() == "StatusCode.UNIMPLEMENTED"


def test_parameters_of_every_kind_are_accepted(server, estimators, protocol):
    X = ROWS.astype(np.float64)
    parameters = {"flag": True, "count": 3, "name": "x", "ratio": 0.5}
    result = _client(protocol, server).infer(
        "iris", _inputs(protocol, X), parameters=parameters, priority=2
    )
    np.testing.assert_array_equal(result.as_numpy("predict"), estimators[("iris", "2")].predict(X))


@pytest.mark.parametrize("protocol_name", ["http", "grpc"])
def test_asyncio_clients(server, estimators, protocol_name):
    X = ROWS.astype(np.float64)
    module = MODULES[protocol_name]

    async def run():
        if protocol_name == "http":
            client = httpaio.InferenceServerClient(url=server.http_url)
        else:
            client = grpcaio.InferenceServerClient(url=server.grpc_url)
        try:
            assert await client.is_server_ready()
            assert await client.is_model_ready("iris")
            await client.get_model_metadata("iris")
            await client.get_model_config("iris")
            tensor = module.InferInput("input-0", list(X.shape), "FP64")
            tensor.set_data_from_numpy(X)
            result = await client.infer("iris", [tensor])
            await client.get_inference_statistics("iris")
            return result.as_numpy("predict")
        finally:
            await client.close()

    served = asyncio.run(run())
    np.testing.assert_array_equal(served, estimators[("iris", "2")].predict(X))
