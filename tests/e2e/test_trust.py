"""Issue 14 against a real server: estimators that break the batcher's row contract or
raise BaseExceptions, over REST and gRPC; 1e300 on a compiled forest, over both; SIGINT
exits 0."""

import json
import shutil
import signal
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np
import pytest
import requests
import tritonclient.grpc as grpcclient
from tritonclient.utils import InferenceServerException

from runtimes.examples import write_artifact
from tests.faulty import RAISED_NAMES, Misbehaves, Raises, iris_fitted

from .conftest import start_server, stop_server


@pytest.fixture(scope="module")
def trust_server(tmp_path_factory, repository):
    root = tmp_path_factory.mktemp("trust") / "repo"
    for kind in ("aggregate", "scalar"):
        artifact = root / kind / "1" / "model.joblib"
        write_artifact(iris_fitted(Misbehaves(kind, trigger=5.0)), artifact)
        settings = {"parameters": {"extra": {"batching": "on", "inference_backend": "sklearn"}}}
        (root / kind / "model-settings.json").write_text(json.dumps(settings))
    write_artifact(iris_fitted(Raises()), root / "raises" / "1" / "model.joblib")
    shutil.copytree(repository / "breast-cancer-onnx", root / "breast-cancer-onnx")
    shutil.copytree(repository / "breast-cancer-sklearn", root / "breast-cancer-sklearn")
    running = start_server(tmp_path_factory.mktemp("trust-server"), root,
                           env={"PYTHONPATH": str(Path(__file__).resolve().parents[2])})
    yield running
    assert stop_server(running, sig=signal.SIGINT) == 0, running.log_text()


def _body(rows):
    rows = np.asarray(rows, dtype=float)
    return {"inputs": [{"name": "input-0", "datatype": "FP64", "shape": list(rows.shape),
                        "data": rows.ravel().tolist()}]}  # fmt: skip


@pytest.mark.parametrize("kind", ["aggregate", "scalar"])
def test_misbehaving_batched_estimator_answers_each_caller_its_own(trust_server, kind):
    estimator = iris_fitted(Misbehaves(kind, trigger=5.0))
    cases = [[[6.0 if i % 3 == 0 else 4.5, 3.0, 1.4, 0.2]] * (1 + i % 2) for i in range(48)]

    def ask(rows):
        url = f"{trust_server.base}/v2/models/{kind}/infer"
        return rows, requests.post(url, json=_body(rows), timeout=60)

    def ask_grpc(rows):
        client = grpcclient.InferenceServerClient(trust_server.grpc_url)
        try:
            tensor = grpcclient.InferInput("input-0", [len(rows), 4], "FP64")
            tensor.set_data_from_numpy(np.asarray(rows, dtype=float))
            return rows, client.infer(kind, [tensor]).as_numpy("predict")
        finally:
            client.close()

    # REST and gRPC callers in one burst: they share the batcher, so a mix-up would cross.
    with ThreadPoolExecutor(max_workers=16) as pool:
        pending = [pool.submit(ask_grpc if i % 2 else ask, rows) for i, rows in enumerate(cases)]
        answers = [future.result() for future in pending]
    for rows, answer in answers[0::2]:
        assert answer.status_code == 200, answer.text
        (output,) = answer.json()["outputs"]
        expected = np.asarray(estimator.predict(np.asarray(rows)))
        assert output["shape"] == list(expected.shape)
        np.testing.assert_array_equal(np.reshape(output["data"], expected.shape), expected)
    for rows, values in answers[1::2]:
        expected = np.asarray(estimator.predict(np.asarray(rows)))
        assert values.shape == expected.shape, (rows, values)
        np.testing.assert_array_equal(values, expected)
    config = requests.get(f"{trust_server.base}/v2/models/{kind}/config", timeout=10).json()
    assert config["parameters"]["batching"]["string_value"].startswith("stopped (")
    metrics = requests.get(f"http://127.0.0.1:{trust_server.metrics_port}/metrics", timeout=10)
    assert f'v2serve_batching_stopped{{model="{kind}",version="1"}} 1.0' in metrics.text
    # No slot leaked: a later burst is not refused with 429.
    with ThreadPoolExecutor(max_workers=8) as pool:
        later = list(pool.map(ask, cases[:16]))
    assert all(a.status_code == 200 for _, a in later)


@pytest.mark.parametrize("which", sorted(RAISED_NAMES))
def test_base_exceptions_are_500_internal_and_the_server_lives(trust_server, which):
    row = [[200.0, float(which), 1.0, 1.0]]
    answer = requests.post(f"{trust_server.base}/v2/models/raises/infer", json=_body(row),
                           timeout=60)  # fmt: skip
    assert answer.status_code == 500, answer.text
    assert RAISED_NAMES[which] in answer.json()["error"]
    client = grpcclient.InferenceServerClient(trust_server.grpc_url)
    tensor = grpcclient.InferInput("input-0", [1, 4], "FP64")
    tensor.set_data_from_numpy(np.asarray(row))
    with pytest.raises(InferenceServerException) as caught:
        client.infer("raises", [tensor])
    assert caught.value.status() == "StatusCode.INTERNAL"
    assert RAISED_NAMES[which] in caught.value.message()
    assert trust_server.process.poll() is None
    ok = requests.post(f"{trust_server.base}/v2/models/raises/infer",
                       json=_body([[5.0, 3.0, 1.4, 0.2]]), timeout=60)  # fmt: skip
    assert ok.status_code == 200, ok.text


@pytest.mark.parametrize("value", [1e300, -1e300])
def test_beyond_float32_on_a_compiled_forest_is_400_like_sklearn(trust_server, value):
    row = [[value] + [1.0] * 29]
    answers = [
        requests.post(f"{trust_server.base}/v2/models/{m}/infer", json=_body(row), timeout=60)
        for m in ("breast-cancer-sklearn", "breast-cancer-onnx")
    ]
    assert [a.status_code for a in answers] == [400, 400], [a.text for a in answers]
    assert "rejected the input" in answers[1].json()["error"]


@pytest.mark.parametrize("value", [1e300, -1e300])
def test_beyond_float32_on_a_compiled_forest_is_invalid_argument_over_grpc(trust_server, value):
    client = grpcclient.InferenceServerClient(trust_server.grpc_url)
    tensor = grpcclient.InferInput("input-0", [1, 30], "FP64")
    tensor.set_data_from_numpy(np.asarray([[value] + [1.0] * 29]))
    refusals = []
    for model in ("breast-cancer-sklearn", "breast-cancer-onnx"):
        with pytest.raises(InferenceServerException) as caught:
            client.infer(model, [tensor])
        refusals.append((caught.value.status(), "rejected the input" in caught.value.message()))
    assert refusals == [("StatusCode.INVALID_ARGUMENT", True)] * 2, refusals
