"""The version lifecycle, in-process: a real V2ModelRegistry, a tiny MLModel, no server."""

import asyncio
import re
from pathlib import Path

from mlserver.settings import ModelParameters, ModelSettings
from prometheus_client import CollectorRegistry

from runtimes.cache import LRUStore, ResponseCache
from runtimes.extensions.statistics import Statistics
from runtimes.observability.metrics import ServingMetrics
from runtimes.repository.lifecycle import relative_to_root
from runtimes.repository.states import VersionState
from runtimes.timings import Phases

from .repository_support import (
    ENTERED,
    GATES,
    RecordingListener,
    TinyModel,
    make_lifecycle,
    reset_gates,
)

RUNTIMES = Path(__file__).resolve().parents[2] / "runtimes"


def _settings(root: Path, name: str, version: int, content: str) -> ModelSettings:
    folder = root / name / str(version)
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "model.joblib").write_text(content)
    return ModelSettings(
        name=name,
        implementation=TinyModel,
        parameters=ModelParameters(version=str(version), uri=str(folder)),
    )


def test_a_load_goes_loading_then_ready_and_tells_the_listeners(tmp_path):
    reset_gates()
    listener = RecordingListener()
    lifecycle = make_lifecycle(tmp_path, listener)

    async def scenario() -> None:
        task = asyncio.create_task(lifecycle.load(_settings(tmp_path, "m", 1, "gate")))
        await ENTERED.setdefault(("m", "1"), asyncio.Event()).wait()
        [status] = lifecycle.states.of_model("m")
        assert status.state is VersionState.LOADING
        assert listener.events == []
        GATES[("m", "1")].set()
        assert await task is True
        model = await lifecycle.registry.get_model("m", "1")
        assert model.ready

    asyncio.run(scenario())
    [status] = lifecycle.states.of_model("m")
    assert status.state is VersionState.READY
    assert listener.events == [("loaded", "m", "1")]


def test_a_failed_load_is_unavailable_with_a_reason_relative_to_the_root(tmp_path):
    listener = RecordingListener()
    lifecycle = make_lifecycle(tmp_path, listener)
    assert asyncio.run(lifecycle.load(_settings(tmp_path, "m", 1, "corrupt"))) is False
    [status] = lifecycle.states.of_model("m")
    assert status.state is VersionState.UNAVAILABLE
    assert "m/1/model.joblib" in status.reason and "corrupt" in status.reason
    assert str(tmp_path) not in status.reason
    assert listener.events == [("failed", "m", "1")]
    assert str(tmp_path) not in listener.reasons[0]


def test_a_failed_reload_keeps_the_ready_version_serving(tmp_path):
    lifecycle = make_lifecycle(tmp_path)

    async def scenario() -> None:
        assert await lifecycle.load(_settings(tmp_path, "m", 1, "ok"))
        first = await lifecycle.registry.get_model("m", "1")
        assert not await lifecycle.load(_settings(tmp_path, "m", 1, "broken now"))
        assert await lifecycle.registry.get_model("m", "1") is first

    asyncio.run(scenario())
    [status] = lifecycle.states.of_model("m")
    assert status.state is VersionState.READY and "broken now" in status.reason


def test_retire_drains_in_flight_requests_then_forgets_the_version_everywhere(tmp_path):
    statistics = Statistics()
    cache = ResponseCache(LRUStore(100, 1 << 20, None))
    registry = CollectorRegistry()
    lifecycle = make_lifecycle(tmp_path, drain_timeout=30)
    metrics = ServingMetrics(lifecycle.states, registry)
    listener = RecordingListener()
    lifecycle.listeners = (statistics, cache, metrics, listener)

    async def scenario() -> None:
        assert await lifecycle.load(_settings(tmp_path, "m", 1, "ok"))
        model = await lifecycle.registry.get_model("m", "1")
        statistics.record("m", "1", 1, True, 1000, Phases())
        cache.lookup(cache.scope("m", "1"), {}, ["v"])
        metrics.succeeded(metrics.series("m", "1"), 1, 1000, Phases())
        lifecycle.inflight.enter(model)
        retiring = asyncio.create_task(lifecycle.retire("m", "1"))
        for _ in range(20):
            await asyncio.sleep(0)
        assert not retiring.done(), "retired with a request in flight"
        [status] = lifecycle.states.of_model("m")
        assert status.state is VersionState.UNLOADING
        assert await lifecycle.registry.get_models("m") == []  # no new request reaches it
        lifecycle.inflight.leave(model)
        await retiring
        assert not model.ready

    asyncio.run(scenario())
    assert lifecycle.states.of_model("m") == []
    assert listener.events == [("loaded", "m", "1"), ("retired", "m", "1")]
    [stats] = statistics.snapshot([("m", "1")], {})["model_stats"]
    assert stats["execution_count"] == 0
    assert cache.statistics("m", "1").miss_count == 0
    assert (
        registry.get_sample_value("v2serve_success_total", {"model": "m", "version": "1"}) is None
    )
    assert (
        registry.get_sample_value(
            "v2serve_model_load_duration_seconds_count", {"model": "m", "version": "1"}
        )
        == 1
    )


def test_a_drain_that_times_out_still_unloads(tmp_path):
    lifecycle = make_lifecycle(tmp_path, drain_timeout=0)

    async def scenario() -> None:
        assert await lifecycle.load(_settings(tmp_path, "m", 1, "ok"))
        model = await lifecycle.registry.get_model("m", "1")
        lifecycle.inflight.enter(model)
        await lifecycle.retire("m", "1")
        assert not model.ready
        lifecycle.inflight.leave(model)

    asyncio.run(scenario())
    assert lifecycle.states.all() == []


def test_refuse_forget_and_remove_model(tmp_path):
    lifecycle = make_lifecycle(tmp_path)
    lifecycle.expect(["m", "n"])
    lifecycle.refuse("m", "2", f"{tmp_path}/m/2 is bad")
    lifecycle.refuse("m", "", "settings are bad")
    assert [(s.version, s.state, s.reason) for s in lifecycle.states.of_model("m")] == [
        ("", VersionState.UNAVAILABLE, "settings are bad"),
        ("2", VersionState.UNAVAILABLE, "m/2 is bad"),
    ]
    lifecycle.forget("m", "")
    assert [s.version for s in lifecycle.states.of_model("m")] == ["2"]
    lifecycle.remove_model("m")
    assert lifecycle.states.of_model("m") == []
    assert lifecycle.states.expected_models == {"n"}


def test_model_locks_are_per_model(tmp_path):
    lifecycle = make_lifecycle(tmp_path)
    assert lifecycle.model_lock("a") is lifecycle.model_lock("a")
    assert lifecycle.model_lock("a") is not lifecycle.model_lock("b")


def test_relative_to_root_cuts_the_root_out():
    root = Path("/srv/models")
    assert relative_to_root("cannot load /srv/models/m/1/x: no", root) == "cannot load m/1/x: no"
    assert relative_to_root("root /srv/models is empty", root) == "root . is empty"
    assert relative_to_root("/srv/models-other/x", root) == "/srv/models-other/x"


def test_only_the_lifecycle_writes_model_states():
    writes = re.compile(r"states\.(set|forget)\(|expected_models\s*(=|\.discard|\.add)")
    offenders = [
        f"{path.relative_to(RUNTIMES)}:{number}"
        for path in RUNTIMES.rglob("*.py")
        if path.name not in {"lifecycle.py", "states.py"} or path.parent.name != "repository"
        for number, line in enumerate(path.read_text().splitlines(), 1)
        if writes.search(line)
    ]
    assert offenders == []
