"""Per-process services are the server's, injected, never module globals (issue 13 §5):
two servers' compositions in one process each see only the executors and batchers of the
runtimes they host, in their metrics and in their model configuration."""

import asyncio
import json
from pathlib import Path

import joblib
from mlserver.settings import ModelSettings
from prometheus_client import CollectorRegistry
from sklearn.datasets import load_iris
from sklearn.linear_model import LogisticRegression

from runtimes.batching import LiveBatchers, MicroBatcher
from runtimes.execution import Executions
from runtimes.extensions.config import model_config
from runtimes.observability.metrics import ServingMetrics
from runtimes.repository.states import ModelStates, VersionState
from runtimes.runtime_api import RuntimeServices
from runtimes.sklearn import SklearnRuntime

X, Y = load_iris(return_X_y=True)


class Plane:
    """What ``runtimes.server.V2Server`` composes for one server: its own registries,
    handed to its runtimes and read by its metrics."""

    def __init__(self) -> None:
        self.executions = Executions()
        self.batchers = LiveBatchers()
        self.services = RuntimeServices(executions=self.executions, batchers=self.batchers)
        self.states = ModelStates()
        self.registry = CollectorRegistry()
        self.metrics = ServingMetrics(
            self.states, self.registry, executions=self.executions, batchers=self.batchers
        )

    def host(self, folder: Path, name: str) -> SklearnRuntime:
        joblib.dump(LogisticRegression(max_iter=500).fit(X, Y), folder / "model.joblib")
        settings = {"name": name, "implementation": "runtimes.sklearn.SklearnRuntime",
                    "parameters": {"uri": "./", "version": "1",
                                   "extra": {"batching": "on", "execution": "thread"}}}  # fmt: skip
        (folder / "model-settings.json").write_text(json.dumps(settings))
        runtime = SklearnRuntime(ModelSettings.parse_file(str(folder / "model-settings.json")))
        runtime.attach(self.services)
        assert asyncio.run(runtime.load())
        self.states.set(name, "1", VersionState.READY)
        return runtime

    def shown(self, metric: str) -> set[str]:
        """The models a sample of ``metric`` is labelled with, as the metrics port shows."""
        return {
            sample.labels["model"]
            for family in self.registry.collect()
            for sample in family.samples
            if sample.name == metric
        }


def test_two_planes_in_one_process_see_only_their_own_executors_and_batchers(tmp_path: Path):
    first, second = Plane(), Plane()
    (tmp_path / "a").mkdir()
    (tmp_path / "b").mkdir()
    a = first.host(tmp_path / "a", "a")
    b = second.host(tmp_path / "b", "b")
    try:
        assert [e.model for e in first.executions] == ["a"]
        assert [e.model for e in second.executions] == ["b"]
        assert [batcher.model for batcher in first.batchers.all()] == ["a"]
        assert [batcher.model for batcher in second.batchers.all()] == ["b"]
        for plane, name in ((first, "a"), (second, "b")):
            assert plane.shown("v2serve_executor_threads") == {name}
            assert plane.shown("v2serve_executor_queue_length") == {name}
            assert plane.shown("v2serve_batching_stopped") == {name}
        # The model configuration finds a version's threads only in its own server.
        assert "instance_group" in model_config(a, first.executions)
        assert "instance_group" not in model_config(a, second.executions)
        assert model_config(b, second.executions)["parameters"]["execution"] == {
            "string_value": "thread"
        }
    finally:
        asyncio.run(a.unload())
    assert list(first.executions) == [] and first.batchers.all() == []
    assert first.shown("v2serve_executor_threads") == set()
    assert second.shown("v2serve_executor_threads") == {"b"}  # untouched by a's unload
    asyncio.run(b.unload())
    assert list(second.executions) == []


def test_a_runtime_without_a_server_registers_nowhere(tmp_path: Path):
    """Under plain MLServer or in a parallel worker nobody reads the registries: the
    runtime still runs its calls on its own threads, and no global holds it."""
    plane = Plane()
    (tmp_path / "m").mkdir()
    runtime = plane.host(tmp_path / "m", "m")
    asyncio.run(runtime.unload())
    bare = SklearnRuntime(ModelSettings.parse_file(str(tmp_path / "m" / "model-settings.json")))
    assert asyncio.run(bare.load())
    try:
        assert list(plane.executions) == [] and plane.batchers.all() == []
        assert bare.services.executions is None and bare.services.batchers is None
    finally:
        asyncio.run(bare.unload())


def test_a_reload_keeps_the_newer_batcher_when_the_older_unloads():
    batchers = LiveBatchers()
    old = MicroBatcher(lambda features, methods: {}, 1, model="m", version="1")
    new = MicroBatcher(lambda features, methods: {}, 1, model="m", version="1")
    batchers.add(old)
    batchers.add(new)
    batchers.remove(old)
    assert batchers.all() == [new]
    batchers.remove(new)
    assert batchers.all() == []
