"""The runtime in-process, as plain MLServer hosts it and as v2serve's server does: a real
estimator loaded from a folder, answers compared with the estimator itself."""

import asyncio
import json
import threading
from collections.abc import Mapping, Sequence
from pathlib import Path

import joblib
import numpy as np
import pytest
from mlserver.settings import ModelSettings
from mlserver.types import InferenceRequest
from sklearn.datasets import load_iris
from sklearn.linear_model import LogisticRegression

from runtimes.cache import build_response_cache
from runtimes.cache.backend import CacheScope
from runtimes.cache.lru import LRUStore
from runtimes.cache.responses import Lookup, ResponseCache
from runtimes.errors import InvalidInput, ModelLoadFailed
from runtimes.execution import CallCost
from runtimes.runtime_api import RuntimeServices, description_of
from runtimes.settings import CacheSettings
from runtimes.sklearn import SklearnRuntime
from runtimes.timings import Phases

X, Y = load_iris(return_X_y=True)
ESTIMATOR = LogisticRegression(max_iter=500).fit(X, Y)


def folder_with(tmp_path: Path, **settings: object) -> Path:
    joblib.dump(ESTIMATOR, tmp_path / "model.joblib")
    values = {"name": "iris", "implementation": "runtimes.sklearn.SklearnRuntime", **settings}
    (tmp_path / "model-settings.json").write_text(json.dumps(values))
    return tmp_path / "model-settings.json"


def loaded(path: Path, services: RuntimeServices | None = None) -> SklearnRuntime:
    runtime = SklearnRuntime(ModelSettings.parse_file(str(path)))
    if services is not None:
        runtime.attach(services)
    assert asyncio.run(runtime.load())
    return runtime


def request(rows: np.ndarray, *outputs: str) -> InferenceRequest:
    return InferenceRequest.model_validate(
        {
            "inputs": [
                {"name": "input-0", "datatype": "FP64", "shape": list(rows.shape),
                 "data": rows.reshape(-1).tolist()}
            ],
            "outputs": [{"name": name} for name in outputs],
        }
    )  # fmt: skip


def answer(runtime: SklearnRuntime, rows: np.ndarray, output: str) -> np.ndarray:
    response = asyncio.run(runtime.predict(request(rows, output)))
    (tensor,) = response.outputs
    return np.asarray(tensor.data.root).reshape(tensor.shape)


@pytest.mark.parametrize("uri", ["./model.joblib", "./", None])
def test_predict_and_predict_proba_as_the_estimator(tmp_path, uri, monkeypatch):
    monkeypatch.chdir("/")  # the uri is relative to model-settings.json, not to here
    parameters = {"uri": uri} if uri else {"uri": str(tmp_path)}
    runtime = loaded(folder_with(tmp_path, parameters=parameters))
    rows = X[::15]
    assert answer(runtime, rows, "predict").tolist() == ESTIMATOR.predict(rows).tolist()
    np.testing.assert_allclose(
        answer(runtime, rows, "predict_proba"), ESTIMATOR.predict_proba(rows), rtol=1e-6
    )


def test_metadata_carries_the_derived_schema(tmp_path):
    metadata = asyncio.run(loaded(folder_with(tmp_path, parameters={"uri": "./"})).metadata())
    (tensor,) = metadata.inputs or []
    assert (tensor.name, tensor.datatype, tensor.shape) == ("input-0", "FP64", [-1, 4])
    names = [output.name for output in metadata.outputs or []]
    assert {"predict", "predict_proba"} <= set(names)
    assert metadata.platform == "sklearn"
    assert metadata.parameters is not None
    assert metadata.parameters.model_dump()["format"] == "sklearn"


def test_a_bad_shape_is_refused_naming_the_problem(tmp_path):
    runtime = loaded(folder_with(tmp_path, parameters={"uri": "./"}))
    with pytest.raises(InvalidInput) as caught:
        asyncio.run(runtime.predict(request(X[:2, :3], "predict")))
    assert caught.value.status_code == 400
    assert "input-0" in str(caught.value) and "3" in str(caught.value)


def test_a_missing_uri_fails_the_load_naming_it(tmp_path):
    path = folder_with(tmp_path, parameters={"uri": "./nope.joblib"})
    with pytest.raises(ModelLoadFailed, match="nope.joblib"):
        loaded(path)


def test_without_the_server_there_is_no_cache(tmp_path):
    runtime = loaded(folder_with(tmp_path, parameters={"uri": "./"}))
    described = description_of(runtime)
    assert not described.response_cache
    assert described.parameters["format"] == "sklearn"
    assert described.backend
    phases = Phases()
    response = asyncio.run(runtime.infer(request(X[:1], "predict"), phases))
    assert phases.cache_hit is None
    # MLServer's own REST handler serialises the response with pydantic
    assert json.loads(response.model_dump_json())["outputs"][0]["data"] == [
        ESTIMATOR.predict(X[:1])[0]
    ]


def test_the_injected_cache_answers_the_second_time(tmp_path):
    cache = build_response_cache(CacheSettings(enabled=True))
    runtime = loaded(folder_with(tmp_path, parameters={"uri": "./"}), RuntimeServices(cache))
    assert description_of(runtime).response_cache
    assert not runtime.services.encodes_numpy
    first, second = Phases(), Phases()
    one = asyncio.run(runtime.infer(request(X[:3], "predict"), first))
    two = asyncio.run(runtime.infer(request(X[:3], "predict"), second))
    assert (first.cache_hit, second.cache_hit) == (False, True)
    assert np.asarray(one.outputs[0].data.root).tolist() == ESTIMATOR.predict(X[:3]).tolist()
    assert np.asarray(two.outputs[0].data.root).tolist() == ESTIMATOR.predict(X[:3]).tolist()


class ThreadNotingCache(ResponseCache):
    """The server's cache, noting which thread each lookup (the input's hash) ran on."""

    def __init__(self) -> None:
        super().__init__(LRUStore(100, 1 << 20, None))
        self.threads: list[threading.Thread] = []

    def lookup(
        self, scope: CacheScope, tensors: Mapping[str, np.ndarray], outputs: Sequence[str]
    ) -> Lookup:
        self.threads.append(threading.current_thread())
        return super().lookup(scope, tensors, outputs)


@pytest.mark.parametrize(("bound", "off_loop"), [(0, True), (X[:3].nbytes, False), (None, False)])
def test_inputs_above_the_offload_bound_are_hashed_off_the_event_loop(tmp_path, bound, off_loop):
    """Issue 18: hashing a big input for the cache holds the loop (~90 ms for 40 MB);
    above ``offload_body_bytes`` it runs in a thread, where BLAKE2b releases the lock."""
    cache = ThreadNotingCache()
    services = RuntimeServices(cache, offload_bytes=bound)
    runtime = loaded(folder_with(tmp_path, parameters={"uri": "./"}), services)
    phases = [Phases(), Phases()]
    for each in phases:
        response = asyncio.run(runtime.infer(request(X[:3], "predict"), each))
        assert (
            np.asarray(response.outputs[0].data.root).tolist() == ESTIMATOR.predict(X[:3]).tolist()
        )
    assert [each.cache_hit for each in phases] == [False, True]
    main = threading.main_thread()
    assert [thread is not main for thread in cache.threads] == [off_loop, off_loop]


def test_a_model_that_opts_out_of_the_injected_cache(tmp_path):
    cache = build_response_cache(CacheSettings(enabled=True))
    path = folder_with(tmp_path, parameters={"uri": "./"}, cache_enabled=False)
    assert not description_of(loaded(path, RuntimeServices(cache))).response_cache


def test_infer_fills_the_phases_it_is_given(tmp_path):
    runtime = loaded(folder_with(tmp_path, parameters={"uri": "./"}))
    phases = Phases()
    asyncio.run(runtime.infer(request(X[:4], "predict"), phases))
    assert phases.input_ns > 0 and phases.infer_ns > 0 and phases.output_ns > 0
    assert phases.queue_ns == 0  # the data plane's, not the runtime's


def test_redact_names_that_are_not_inputs_are_refused_at_load_naming_them(tmp_path):
    """A typo in ``redact`` would leave the input it meant in the log, unredacted."""
    log = {"sink": (tmp_path / "log.jsonl").as_uri(), "redact": ["input-0", "ssn", "input_0"]}
    path = folder_with(tmp_path, parameters={"uri": "./", "extra": {"prediction_log": log}})
    runtime = SklearnRuntime(ModelSettings.parse_file(str(path)))
    with pytest.raises(ModelLoadFailed) as caught:
        asyncio.run(runtime.load())
    message = str(caught.value)
    assert "prediction_log.redact" in message
    assert "'ssn', 'input_0' are not an input of the model" in message
    assert "(inputs: 'input-0')" in message


def test_redact_names_of_the_models_inputs_load(tmp_path):
    log = {"sink": (tmp_path / "log.jsonl").as_uri(), "redact": ["input-0"]}
    path = folder_with(tmp_path, parameters={"uri": "./", "extra": {"prediction_log": log}})
    runtime = loaded(path)
    assert answer(runtime, X[:2], "predict").tolist() == ESTIMATOR.predict(X[:2]).tolist()


def test_a_call_the_compiled_graph_leaves_to_sklearn_runs_off_the_loop(tmp_path):
    """Issue 18: the ONNX graph of a gradient-boosted classifier answers predict, not
    decision_function, which sklearn answers; a call asking for it leaves the event loop
    though the model's calls are measured cheap, while a predict call stays on the loop."""
    from sklearn.ensemble import GradientBoostingClassifier

    boosted = GradientBoostingClassifier(n_estimators=5, random_state=0).fit(X, Y)
    joblib.dump(boosted, tmp_path / "model.joblib")
    settings = {"name": "gb", "implementation": "runtimes.sklearn.SklearnRuntime",
                "parameters": {"uri": "./"}}  # fmt: skip
    (tmp_path / "model-settings.json").write_text(json.dumps(settings))
    runtime = loaded(tmp_path / "model-settings.json", RuntimeServices(None))
    execution = runtime._execution
    assert execution is not None and execution.stats.on_loop == 0
    execution.cost = CallCost(1e-6, 0.0)  # measured cheap, whatever this machine's load
    predicted = asyncio.run(runtime.infer(request(X[:2], "predict"), Phases()))
    assert np.asarray(predicted.outputs[0].data.root).tolist() == boosted.predict(X[:2]).tolist()
    assert (execution.stats.on_loop, execution.stats.off_loop) == (1, 0)
    scored = asyncio.run(runtime.infer(request(X[:2], "decision_function"), Phases()))
    np.testing.assert_allclose(
        np.asarray(scored.outputs[0].data.root).reshape(2, -1), boosted.decision_function(X[:2])
    )
    assert (execution.stats.on_loop, execution.stats.off_loop) == (1, 1)
