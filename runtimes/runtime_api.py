"""What v2serve's server needs from a runtime, declared once.

MLServer's contract for a runtime is ``MLModel``: ``load``, ``predict``, ``metadata``,
``unload``. That is all a runtime needs under plain ``mlserver start``, and all that
v2serve's server asks of a foreign ``MLModel`` (another MLServer runtime named in
``implementation``, or MLServer's ``ParallelModel`` proxy when parallel workers run the
models). A ``V2Runtime`` offers the server a little more, and this module is the one
place where that "more" is written down, instead of the server discovering attributes
with ``getattr``:

- ``attach(services)``: the per-process services the server owns (the response cache,
  the registries of live executors and batchers its metrics and model configuration read),
  handed over after construction and before ``load()``. MLServer's registry builds the
  runtime from its settings alone (``implementation(settings)``), so the server injects
  them through the registry's model initialiser (``initialiser``). Nothing attaches under
  plain ``mlserver start`` or in a parallel worker: the runtime then runs with
  ``RuntimeServices()``, no cache, and never needs the server.
- ``infer(payload, phases)``: ``predict`` with the request's phase timings filled in
  explicitly. ``predict(payload)`` stays the MLServer entry; it calls ``infer`` with
  timings nobody reads. When MLServer's adaptive batching wraps ``predict``, the server
  calls ``predict`` so that the batcher sees every request (``timed_entry``).
- ``describe()``: what the repository index, the logs and the model configuration say
  about the loaded version (its load warning, its backend). ``description_of`` gives a
  foreign ``MLModel`` the empty description.

- ``infer_lean(tensor, phases, caller)``: the lean entry, for the commonest request (one
  input, no parameters; outputs, if any, named without parameters) of a runtime whose
  ``lean`` is true: the input's fields straight from the wire (REST's JSON, or a gRPC
  message's raw or typed values as an array), the named outputs' arrays back (none
  named: the default output), and no ``InferenceRequest``,
  ``RequestInput`` or ``InferenceResponse`` built. It answers and refuses as ``infer``
  does (tests/unit/test_lean_path.py, test_grpc_lean.py); the data plane takes it only
  where nothing else needs those objects (``lean_entry``).
"""

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
from mlserver.model import MLModel
from mlserver.settings import ModelSettings
from mlserver.types import InferenceRequest, InferenceResponse, ResponseOutput, TensorData

from .batching import LiveBatchers
from .cache.responses import ResponseCache
from .deadlines import Caller
from .execution import Executions
from .inference import Tensor
from .timings import Phases


@dataclass(frozen=True)
class RuntimeServices:
    """Per-process services the server owns and shares with every runtime it hosts."""

    response_cache: ResponseCache | None = None
    """The server's response cache; None when it is off or there is no v2serve server."""
    encodes_numpy: bool = False
    """The server's protocol adapters encode numpy arrays held in response tensors.
    MLServer's own REST and gRPC codecs need Python lists (``as_python_lists``)."""
    executions: Executions | None = None
    """Where a runtime registers its executor, for the server's metrics and model
    configuration; None: nobody reads them (plain MLServer, a parallel worker)."""
    batchers: LiveBatchers | None = None
    """Where a runtime registers its batcher, for the server's metrics; None likewise."""
    offload_bytes: int | None = None
    """Decoded inputs above this many bytes are hashed for the response cache off the
    event loop (the server's ``offload_body_bytes``): BLAKE2b releases the interpreter
    lock, so 40 MB no longer holds every request for ~90 ms. None: always on the loop."""


NO_SERVICES = RuntimeServices()


@dataclass(frozen=True)
class RuntimeDescription:
    """What a loaded version reports about itself; empty for a foreign ``MLModel``."""

    load_warning: str = ""
    """A problem the load let through (an artifact from another scikit-learn)."""
    backend: str = ""
    """Which backend answers and why, e.g. ``onnx: verified on 8460 rows (...)``."""
    parameters: Mapping[str, str] = field(default_factory=dict)
    """Format and backend facts for metadata and the model configuration."""
    response_cache: bool = False
    """Whether this version's answers are cached."""


@dataclass(frozen=True, slots=True)
class LeanInput:
    """The one input of a lean request, as the wire gave it: JSON data, or the array a
    gRPC message's values decode to (not yet checked against the model)."""

    name: str
    datatype: str
    shape: Sequence[int]
    data: Any
    outputs: tuple[str, ...] = ()
    """The outputs asked for by name, none with parameters; empty: the default output."""


class V2Runtime(MLModel):
    """An MLServer runtime that v2serve's server can also inject into and time."""

    _services: RuntimeServices = NO_SERVICES
    lean: bool = False
    """Whether ``infer_lean`` serves this loaded version."""

    def attach(self, services: RuntimeServices) -> None:
        """Called by the server before ``load()``; never under plain MLServer."""
        self._services = services

    @property
    def services(self) -> RuntimeServices:
        return self._services

    def describe(self) -> RuntimeDescription:
        return RuntimeDescription()

    async def infer(self, payload: InferenceRequest, phases: Phases) -> InferenceResponse:
        """One inference, with ``phases`` (input, infer, output, cache hit) filled in."""
        raise NotImplementedError

    async def infer_lean(
        self, tensor: LeanInput, phases: Phases, caller: Caller | None
    ) -> list[Tensor]:
        """``infer`` of a request with this one input and nothing else: its outputs."""
        raise NotImplementedError

    async def predict(self, payload: InferenceRequest) -> InferenceResponse:
        return await self.infer(payload, Phases())


def as_python_lists(output: ResponseOutput) -> ResponseOutput:
    """A response tensor whose data MLServer's pydantic serialisation can write."""
    values = output.data.root
    if not isinstance(values, np.ndarray):
        return output
    return ResponseOutput.model_construct(
        name=output.name,
        datatype=output.datatype,
        shape=output.shape,
        data=TensorData.model_construct(root=values.reshape(-1).tolist()),
        parameters=output.parameters,
    )


def description_of(model: MLModel) -> RuntimeDescription:
    return model.describe() if isinstance(model, V2Runtime) else RuntimeDescription()


def batched_by_mlserver(settings: ModelSettings) -> bool:
    """MLServer's ``load_batching`` hook wraps ``predict`` exactly when this holds."""
    return settings.max_batch_size > 1 and settings.max_batch_time > 0


async def timed_entry(
    model: MLModel, payload: InferenceRequest, phases: Phases
) -> InferenceResponse:
    """The server's call into a runtime: ``infer`` where it can fill timings, else
    ``predict`` (a foreign model, or one behind MLServer's adaptive batcher)."""
    if isinstance(model, V2Runtime) and not batched_by_mlserver(model.settings):
        return await model.infer(payload, phases)
    return await model.predict(payload)


def lean_entry(model: MLModel) -> V2Runtime | None:
    """The runtime if the server may call its ``infer_lean``: ours, lean, and not behind
    MLServer's adaptive batcher (which must see every request as ``predict``)."""
    if isinstance(model, V2Runtime) and model.lean and not batched_by_mlserver(model.settings):
        return model
    return None


def initialiser(services: RuntimeServices) -> Callable[[ModelSettings], MLModel]:
    """MLServer's model initialiser (``implementation(settings)``), then ``attach``."""

    def initialise(settings: ModelSettings) -> MLModel:
        model = settings.implementation(settings)
        if isinstance(model, V2Runtime):
            model.attach(services)
        return model

    return initialise
