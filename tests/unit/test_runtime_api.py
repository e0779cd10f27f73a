"""The server's view of a runtime: defaults for a foreign MLModel, the timed entry, and
services attached by the model initialiser."""

import asyncio

from mlserver import MLModel
from mlserver.settings import ModelSettings
from mlserver.types import InferenceRequest, InferenceResponse

from runtimes.cache import build_response_cache
from runtimes.runtime_api import (
    NO_SERVICES,
    RuntimeDescription,
    RuntimeServices,
    V2Runtime,
    description_of,
    initialiser,
    timed_entry,
)
from runtimes.settings import CacheSettings
from runtimes.timings import Phases

REQUEST = InferenceRequest(inputs=[])


def answer(name: str) -> InferenceResponse:
    return InferenceResponse(model_name=name, outputs=[])


class Foreign(MLModel):
    """Any other MLServer runtime: only MLModel's contract."""

    async def predict(self, payload: InferenceRequest) -> InferenceResponse:
        return answer("predict")


class Ours(V2Runtime):
    async def infer(self, payload: InferenceRequest, phases: Phases) -> InferenceResponse:
        phases.infer_ns = 7
        return answer("infer")

    def describe(self) -> RuntimeDescription:
        return RuntimeDescription(backend="onnx", response_cache=True)


def settings(cls: type, **values: object) -> ModelSettings:
    return ModelSettings(name="m", implementation=cls, **values)


def test_a_foreign_model_gets_the_empty_description():
    assert description_of(Foreign(settings(Foreign))) == RuntimeDescription()
    assert description_of(Ours(settings(Ours))).backend == "onnx"


def test_the_timed_entry_fills_phases_of_our_runtime_only():
    phases = Phases()
    ours = asyncio.run(timed_entry(Ours(settings(Ours)), REQUEST, phases))
    assert (ours.model_name, phases.infer_ns) == ("infer", 7)
    untouched = Phases()
    foreign = asyncio.run(timed_entry(Foreign(settings(Foreign)), REQUEST, untouched))
    assert (foreign.model_name, untouched) == ("predict", Phases())


def test_predict_is_the_mlserver_entry_of_our_runtime():
    assert asyncio.run(Ours(settings(Ours)).predict(REQUEST)).model_name == "infer"


class Wrapped(Ours):
    """As MLServer's ``load_batching`` leaves it: ``predict`` goes through its batcher."""

    async def predict(self, payload: InferenceRequest) -> InferenceResponse:
        return answer("batched")


def test_behind_mlserver_adaptive_batching_the_entry_is_predict():
    """MLServer's batcher wraps ``predict``; calling ``infer`` would bypass it."""
    batched = Wrapped(settings(Wrapped, max_batch_size=8, max_batch_time=0.01))
    assert asyncio.run(timed_entry(batched, REQUEST, Phases())).model_name == "batched"
    for values in ({"max_batch_size": 8}, {"max_batch_time": 0.01}, {}):
        model = Wrapped(settings(Wrapped, **values))
        assert asyncio.run(timed_entry(model, REQUEST, Phases())).model_name == "infer"


def test_the_initialiser_attaches_services_to_our_runtime():
    services = RuntimeServices(build_response_cache(CacheSettings(enabled=True)))
    ours = initialiser(services)(settings(Ours))
    assert isinstance(ours, Ours) and ours.services is services
    foreign = initialiser(services)(settings(Foreign))
    assert isinstance(foreign, Foreign) and not hasattr(foreign, "services")


def test_a_runtime_nobody_attached_has_no_services():
    assert Ours(settings(Ours)).services is NO_SERVICES
    assert NO_SERVICES.response_cache is None


def test_an_unloaded_runtime_describes_nothing():
    """With parallel workers the server holds an instance that a worker loads, not it."""
    from runtimes.sklearn import SklearnRuntime

    assert description_of(SklearnRuntime(settings(SklearnRuntime))) == RuntimeDescription()
