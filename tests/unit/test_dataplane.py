"""V2DataPlane in-process: readiness, 404s that list versions, 503 loading, 429, in-flight."""

import asyncio
import json
from collections.abc import Callable, Iterator
from pathlib import Path
from time import perf_counter_ns

import pytest
from mlserver.settings import ModelParameters, ModelSettings, Settings
from mlserver.types import InferenceRequest, RequestInput

from runtimes.dataplane import V2DataPlane
from runtimes.errors import InvalidPayload, ModelUnavailable, NotReady, TooManyRequests
from runtimes.extensions.statistics import Statistics
from runtimes.observability.prediction_log import PredictionLog
from runtimes.repository.lifecycle import VersionLifecycle
from runtimes.settings import ServerOptions

from .in_process import release_metrics
from .repository_support import ENTERED, GATES, TinyModel, make_lifecycle, reset_gates

REQUEST = InferenceRequest(
    id="request-1", inputs=[RequestInput(name="x", shape=[1], datatype="FP64", data=[1.0])]
)


@pytest.fixture
def lifecycle(tmp_path: Path) -> VersionLifecycle:
    reset_gates()
    return make_lifecycle(tmp_path)


@pytest.fixture
def make_plane(lifecycle: VersionLifecycle) -> Iterator[Callable[..., V2DataPlane]]:
    made: list[V2DataPlane] = []

    def build(prediction_log: PredictionLog | None = None, **options: object) -> V2DataPlane:
        plane = V2DataPlane(
            Settings(),
            lifecycle.registry,
            lifecycle.states,
            ServerOptions(**options),
            lifecycle.inflight,
            Statistics(),
            prediction_log=prediction_log,
        )
        made.append(plane)
        return plane

    yield build
    for plane in made:
        release_metrics(plane)


@pytest.fixture
def plane(make_plane: Callable[..., V2DataPlane]) -> V2DataPlane:
    return make_plane()


def _settings(root: Path, name: str, version: str, content: str = "ok") -> ModelSettings:
    folder = root / name / version
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "model.joblib").write_text(content)
    return ModelSettings(
        name=name,
        implementation=TinyModel,
        parameters=ModelParameters(version=version, uri=str(folder)),
    )


def test_readiness_is_false_with_no_models_and_strict_waits_for_every_model(
    tmp_path, lifecycle, plane
):
    async def scenario() -> None:
        assert not await plane.ready()
        lifecycle.expect(["a", "b"])
        await lifecycle.load(_settings(tmp_path, "a", "1"))
        assert not await plane.ready()
        await lifecycle.load(_settings(tmp_path, "b", "1", "corrupt"))
        assert not await plane.ready()
        await lifecycle.load(_settings(tmp_path, "b", "1"))
        assert await plane.ready()
        plane.stopping = True
        assert not await plane.ready()

    asyncio.run(scenario())


def test_lenient_readiness_needs_one_ready_and_none_loading(tmp_path, lifecycle, make_plane):
    plane = make_plane(readiness="lenient")

    async def scenario() -> None:
        lifecycle.expect(["a", "b"])
        await lifecycle.load(_settings(tmp_path, "b", "1", "corrupt"))
        assert not await plane.ready()
        await lifecycle.load(_settings(tmp_path, "a", "1"))
        assert await plane.ready()
        loading = asyncio.create_task(lifecycle.load(_settings(tmp_path, "a", "2", "gate")))
        await ENTERED.setdefault(("a", "2"), asyncio.Event()).wait()
        assert not await plane.ready()
        GATES[("a", "2")].set()
        await loading
        assert await plane.ready()

    asyncio.run(scenario())


def test_unknown_models_and_versions_are_404s_that_list_what_exists(tmp_path, lifecycle, plane):
    async def scenario() -> None:
        await lifecycle.load(_settings(tmp_path, "m", "1"))
        await lifecycle.load(_settings(tmp_path, "m", "2"))
        with pytest.raises(ModelUnavailable, match="'nope' not found") as unknown:
            await plane.infer(REQUEST, "nope")
        assert unknown.value.status_code == 404
        with pytest.raises(ModelUnavailable, match=r"no version '5' \(available: 1, 2\)"):
            await plane.infer(REQUEST, "m", "5")
        with pytest.raises(ModelUnavailable, match="available: none"):
            await plane.model_ready("nope", "1")

    asyncio.run(scenario())


def test_a_version_still_loading_is_a_503(tmp_path, lifecycle, plane):
    async def scenario() -> None:
        loading = asyncio.create_task(lifecycle.load(_settings(tmp_path, "m", "1", "gate")))
        await ENTERED.setdefault(("m", "1"), asyncio.Event()).wait()
        with pytest.raises(NotReady) as caught:
            await plane.infer(REQUEST, "m", "1")
        assert caught.value.status_code == 503
        assert not await plane.model_ready("m", "1")
        GATES[("m", "1")].set()
        await loading
        assert await plane.model_ready("m", "1")

    asyncio.run(scenario())


def test_requests_are_counted_in_flight_and_refused_past_the_limit(tmp_path, lifecycle, make_plane):
    plane = make_plane(max_inflight_per_model=1)

    async def scenario() -> None:
        await lifecycle.load(_settings(tmp_path, "m", "1"))
        model = await lifecycle.registry.get_model("m", "1")
        GATES[("m", "predict-1")] = asyncio.Event()
        first = asyncio.create_task(plane.infer(REQUEST, "m"))
        for _ in range(20):
            await asyncio.sleep(0)
        assert lifecycle.inflight.count(model) == 1
        with pytest.raises(TooManyRequests) as caught:
            await plane.infer(REQUEST, "m")
        assert caught.value.status_code == 429
        GATES[("m", "predict-1")].set()
        response = await first
        assert response.id == "request-1" and response.model_version == "1"
        assert lifecycle.inflight.count(model) == 0
        assert (await plane.infer(REQUEST, "m", "1")).outputs[0].data.root == ["1"]

    asyncio.run(scenario())
    [stats] = plane.statistics.snapshot([("m", "1")], {})["model_stats"]
    assert stats["execution_count"] == 2


def test_metadata_lists_the_ready_versions(tmp_path, lifecycle, plane):
    async def scenario() -> None:
        await lifecycle.load(_settings(tmp_path, "m", "2"))
        await lifecycle.load(_settings(tmp_path, "m", "10"))
        metadata = await plane.model_metadata("m")
        assert metadata.versions == ["2", "10"]

    asyncio.run(scenario())


def test_requests_a_known_model_refuses_are_prediction_logged(tmp_path, lifecycle, make_plane):
    """Issue 16: prediction logging covers failures the model never ran too: a version
    it does not serve (404), past its in-flight limit (429), a version still loading
    (503), each under the version asked for. A model that is not loaded has no settings
    to follow: nothing is logged for it."""
    log_file = tmp_path / "predictions.jsonl"
    prediction_log = PredictionLog()
    plane = make_plane(prediction_log=prediction_log, max_inflight_per_model=1)

    def logged(name: str, version: str, content: str = "ok") -> ModelSettings:
        settings = _settings(tmp_path, name, version, content)
        assert settings.parameters is not None
        settings.parameters.extra = {"prediction_log": {"sink": log_file.as_uri()}}
        return settings

    async def scenario() -> None:
        await lifecycle.load(logged("m", "1"))
        with pytest.raises(ModelUnavailable):
            await plane.infer(REQUEST.model_copy(update={"id": "unknown-version"}), "m", "5")
        with pytest.raises(ModelUnavailable):
            await plane.infer(REQUEST.model_copy(update={"id": "unknown-model"}), "nope")
        GATES[("m", "predict-1")] = asyncio.Event()
        first = asyncio.create_task(plane.infer(REQUEST.model_copy(update={"id": "served"}), "m"))
        for _ in range(20):
            await asyncio.sleep(0)
        with pytest.raises(TooManyRequests):
            await plane.infer(REQUEST.model_copy(update={"id": "too-many"}), "m")
        GATES[("m", "predict-1")].set()
        await first
        loading = asyncio.create_task(lifecycle.load(logged("m", "2", "gate")))
        await ENTERED.setdefault(("m", "2"), asyncio.Event()).wait()
        with pytest.raises(NotReady):
            await plane.infer(REQUEST.model_copy(update={"id": "loading"}), "m", "2")
        GATES[("m", "2")].set()
        await loading
        await prediction_log.close()

    asyncio.run(scenario())
    events = [json.loads(line) for line in log_file.read_text().splitlines()]
    responses = {e["id"]: e for e in events if e["type"].endswith(".response")}
    assert set(responses) == {"unknown-version", "served", "too-many", "loading"}
    outcome = {key: (e["status"], e["modelversion"]) for key, e in responses.items()}
    assert outcome["unknown-version"] == (404, "5")
    assert outcome["served"] == (200, "1")
    assert outcome["too-many"] == (429, "")
    assert outcome["loading"] == (503, "2")
    assert "no version '5'" in responses["unknown-version"]["data"]["error"]
    requests = {e["id"]: e for e in events if e["type"].endswith(".request")}
    assert requests["too-many"]["data"]["inputs"][0]["data"] == [1.0]


def test_a_request_its_adapter_refused_is_logged_by_the_model_it_names(
    tmp_path, lifecycle, make_plane
):
    """A body that never became a request (400 in the protocol adapter) is logged with
    no tensors by the named model; one naming no known model is not logged."""
    log_file = tmp_path / "predictions.jsonl"
    prediction_log = PredictionLog()
    plane = make_plane(prediction_log=prediction_log)
    settings = _settings(tmp_path, "m", "1")
    assert settings.parameters is not None
    settings.parameters.extra = {"prediction_log": {"sink": log_file.as_uri()}}

    bad = InvalidPayload("the body is not valid JSON: unexpected end")

    async def scenario() -> None:
        await lifecycle.load(settings)
        await plane.refused("m", None, "undecodable", bad, perf_counter_ns())
        await plane.refused("m", "4", "unknown-version", bad, perf_counter_ns())
        await plane.refused("nope", None, "unknown-model", bad, perf_counter_ns())
        await prediction_log.close()

    asyncio.run(scenario())
    events = [json.loads(line) for line in log_file.read_text().splitlines()]
    responses = {e["id"]: e for e in events if e["type"].endswith(".response")}
    assert set(responses) == {"undecodable", "unknown-version"}
    assert responses["undecodable"]["status"] == 400
    assert responses["undecodable"]["data"]["error"] == str(bad)
    assert responses["unknown-version"]["modelversion"] == "4"
    requests = [e for e in events if e["type"].endswith(".request")]
    assert [e["data"]["inputs"] for e in requests] == [[], []]
