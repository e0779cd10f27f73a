"""In-process serving for unit tests, no sockets: a model served by the real runtime,
registry and data plane (for the tests that call the REST app, the gRPC service or the
tracer directly), and the process-wide state those tests must put back."""

import logging
from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from mlserver.handlers import ModelRepositoryHandlers
from mlserver.registry import MultiModelRegistry
from mlserver.repository import SchemalessModelRepository
from mlserver.settings import ModelSettings, Settings
from prometheus_client import REGISTRY
from prometheus_client.metrics import MetricWrapperBase

from runtimes.dataplane import V2DataPlane
from runtimes.extensions.statistics import Statistics
from runtimes.repository.inflight import InFlight
from runtimes.repository.states import ModelStates, VersionState
from runtimes.settings import ServerOptions
from runtimes.sklearn import SklearnRuntime


async def serve_iris(
    folder: Path, ready: bool = False
) -> tuple[V2DataPlane, ModelRepositoryHandlers]:
    """Version 1 of model ``iris`` from ``folder/model.joblib``, and the repository handlers
    over ``folder``. ``ready`` also records the version READY, as the server's lifecycle
    would (the tracer reads the served version's state)."""
    registry = MultiModelRegistry()
    settings = ModelSettings(
        name="iris", implementation=SklearnRuntime, parameters={"uri": str(folder), "version": "1"}
    )
    await registry.load(settings)
    states = ModelStates()
    states.expected_models.add("iris")
    if ready:
        states.set("iris", "1", VersionState.READY)
    plane = V2DataPlane(Settings(), registry, states, ServerOptions(), InFlight(), Statistics())
    repository = ModelRepositoryHandlers(SchemalessModelRepository(str(folder)), registry)
    return plane, repository


def release_metrics(plane: V2DataPlane) -> None:
    """MLServer's DataPlane registers its Prometheus counters in the default registry at
    construction, once per process: unregister them so another plane can be built."""
    for value in vars(plane).values():
        if isinstance(value, MetricWrapperBase):
            REGISTRY.unregister(value)


@contextmanager
def loggers_restored(names: Iterable[str]) -> Iterator[None]:
    """Puts back the handlers, level and propagation of the named loggers, which
    ``dictConfig`` and ``LogControl`` change process-wide."""
    saved = {
        name: (list(log.handlers), log.level, log.propagate)
        for name, log in ((n, logging.getLogger(n)) for n in names)
    }
    try:
        yield
    finally:
        for name, (handlers, level, propagate) in saved.items():
            log = logging.getLogger(name)
            log.handlers[:] = handlers
            log.setLevel(level)
            log.propagate = propagate


def iris_counts(plane: V2DataPlane) -> tuple[int, int]:
    """Rows inferred and executions of iris version 1, from the plane's statistics."""
    (stats,) = plane.statistics.snapshot([("iris", "1")], {})["model_stats"]
    return stats["inference_count"], stats["execution_count"]


def record_full_infers(plane: V2DataPlane) -> list[object]:
    """The arguments of every ``plane.infer`` call from now on: the full path's entry, which
    a lean request must not take."""
    calls: list[object] = []
    infer = plane.infer

    async def counted(*args: Any, **kwargs: Any) -> Any:
        calls.append(args)
        return await infer(*args, **kwargs)

    plane.infer = counted  # type: ignore[method-assign]
    return calls

