"""Additions to MLServer's DataPlane, shared by REST and gRPC.

- Readiness is honest: false with zero models, and false until every model found at
  start-up has a ready version (MLServer says ready with none, SeldonIO/MLServer#2056).
- Unknown models and versions are 404s that list the versions that exist; a version that
  is still loading is a 503, not MLServer's 400.
- Requests are counted in flight per version, so a retired version drains before unload,
  and past ``max_inflight_per_model`` a request is refused at once (429) instead of queued.
- Model metadata lists the model's served versions (MLServer returns its dependency list).
- A request whose deadline passed, or whose caller left, before it reached its model is
  dropped here (``runtimes.deadlines``); one cancelled after its deadline counts as a
  timeout in statistics, metrics and the log.
"""

import asyncio
from collections.abc import Awaitable, Callable
from functools import partial
from time import perf_counter_ns
from typing import TYPE_CHECKING, TypeVar

from mlserver.context import model_context
from mlserver.errors import ModelNotFound
from mlserver.handlers import DataPlane
from mlserver.model import MLModel
from mlserver.registry import MultiModelRegistry
from mlserver.settings import Settings
from mlserver.types import InferenceRequest, InferenceResponse, MetadataModelResponse

from .deadlines import Caller, caller_of
from .errors import ModelUnavailable, NotReady, TooManyRequests
from .extensions.statistics import Statistics
from .inference import Tensor
from .observability.observer import RequestObserver, batch_size, request_id
from .observability.prediction_log import PredictionLog
from .repository.inflight import InFlight
from .repository.registry import version_number
from .repository.states import ModelStates, VersionState
from .repository.workers import worker_failure
from .runtime_api import LeanInput, lean_entry, timed_entry
from .settings import ServerOptions
from .timings import Phases

Answer = TypeVar("Answer")

if TYPE_CHECKING:  # OpenTelemetry's SDK is imported only when tracing is on
    from .observability.tracing import RequestTracer


class V2DataPlane(DataPlane):
    def __init__(
        self,
        settings: Settings,
        model_registry: MultiModelRegistry,
        states: ModelStates,
        options: ServerOptions,
        inflight: InFlight,
        statistics: Statistics,
        observer: RequestObserver | None = None,
        tracer: "RequestTracer | None" = None,
        prediction_log: PredictionLog | None = None,
    ):
        super().__init__(settings=settings, model_registry=model_registry)
        # MLServer's cache shares entries across models; the runtime's (runtimes.cache) replaces it.
        self._response_cache = None
        self.states = states
        self.options = options
        self.inflight = inflight
        self.statistics = statistics
        self.parallel_workers = bool(settings.parallel_workers)
        self.observer = observer or RequestObserver()
        self.tracer = tracer
        """None with tracing off: then a request costs one check."""
        self.prediction_log = prediction_log or PredictionLog()
        self.stopping = False
        """Set on SIGTERM: readiness is false from then on."""

    async def available_versions(self, name: str) -> list[str]:
        try:
            models = await self._model_registry.get_models(name)
        except ModelNotFound:
            return []
        ready = sorted((m for m in models if m.ready and m.version), key=version_number)
        return [str(m.version) for m in ready]

    async def resolve(self, name: str, version: str | None) -> MLModel:
        try:
            model = await self._model_registry.get_model(name, version or None)
        except ModelNotFound as exc:
            available = await self.available_versions(name)
            if not available and not version:
                raise ModelUnavailable(name) from exc
            raise ModelUnavailable(name, version, available) from exc
        return model

    async def _admit(self, name: str, version: str | None) -> MLModel:
        """The ready version that will serve, unless it already has too many in flight."""
        return self._admitted(await self.resolve(name, version), name, version)

    def _admitted(self, model: MLModel, name: str, version: str | None) -> MLModel:
        if not model.ready:
            raise NotReady(name, version)
        limit = self.options.max_inflight_per_model
        if limit and self.inflight.count(model) >= limit:
            raise TooManyRequests(name, version, limit)
        return model

    async def ready(self) -> bool:
        if self.stopping:
            return False
        expected = self.states.expected_models
        if not expected:
            return False
        if self.options.readiness == "strict":
            return all(self.states.has_ready_version(name) for name in expected)
        statuses = self.states.all()
        loading = any(s.state is VersionState.LOADING for s in statuses)
        return not loading and any(s.state is VersionState.READY for s in statuses)

    async def model_ready(self, name: str, version: str | None = None) -> bool:
        return (await self.resolve(name, version)).ready

    async def model_metadata(self, name: str, version: str | None = None) -> MetadataModelResponse:
        await self.resolve(name, version)
        metadata = await super().model_metadata(name, version or None)
        metadata.versions = await self.available_versions(name)
        return metadata

    async def infer(
        self,
        payload: InferenceRequest,
        name: str,
        version: str | None = None,
        received_ns: int | None = None,
        protocol: str = "",
    ) -> InferenceResponse:
        """MLServer's infer without its per-request costs that v2serve replaces: its
        Prometheus summary (labelled with the requested version, not the served one) and
        CloudEvents headers. Each phase is timed for statistics, metrics, the log and the
        trace; ``received_ns`` (``perf_counter_ns``) and ``protocol`` tell the trace when
        and how the adapter received the request."""

        async def call(model: MLModel, phases: Phases) -> InferenceResponse:
            with model_context(model.settings):
                response = await timed_entry(model, payload, phases)
            response.id = payload.id
            return response

        return await self._serve(
            name,
            version,
            None,
            caller_of(payload),
            batch_size(payload),
            partial(request_id, payload),
            payload,
            call,
            received_ns,
            protocol,
        )

    async def infer_lean(
        self,
        tensor: LeanInput,
        name: str,
        version: str | None,
        request_id_of: Callable[[], str | None],
        caller: Caller,
    ) -> tuple[MLModel, list[Tensor]] | None:
        """``infer`` of a request with one input and nothing else, without its MLServer
        objects: the served version and its output tensors. None, having done nothing,
        where the request needs those objects (tracing on, a model that logs predictions
        or is not lean, an unknown model's 404): the caller then takes ``infer``. Our
        runtime runs no MLServer code that reads ``model_context``, so none is entered."""
        if self.tracer is not None:
            return None
        try:
            model = await self.resolve(name, version)
        except ModelUnavailable:
            return None
        runtime = lean_entry(model)
        if runtime is None or self.prediction_log.logs(model):
            return None

        async def call(model: MLModel, phases: Phases) -> tuple[MLModel, list[Tensor]]:
            return model, await runtime.infer_lean(tensor, phases, caller)

        rows = int(tensor.shape[0]) if tensor.shape else 1
        return await self._serve(
            name, version, model, caller, rows, request_id_of, None, call, None, ""
        )

    async def _serve(
        self,
        name: str,
        version: str | None,
        resolved: MLModel | None,
        caller: Caller | None,
        rows: int,
        request_id_of: Callable[[], str | None],
        payload: InferenceRequest | None,
        call: Callable[[MLModel, Phases], Awaitable[Answer]],
        received_ns: int | None,
        protocol: str,
    ) -> Answer:
        """One request from admission to its statistics, metrics, log, trace and prediction
        log; ``call`` runs it on the admitted version. ``payload`` is None only on the lean
        path, which tracing and the prediction log never take."""
        started = perf_counter_ns()
        phases = Phases()
        model: MLModel | None = None
        answered = False  # set once the model answered: success
        answer: Answer | None = None
        error: BaseException | None = None
        # A known model that refused the request before a version took it (404 for a
        # version it does not serve, 429, 503): its prediction log records the refusal.
        refused_by: MLModel | None = resolved
        try:
            if refused_by is None:
                try:
                    refused_by = await self.resolve(name, version)
                except ModelUnavailable:
                    refused_by = await self._default_instance(name)
                    raise
            model = self._admitted(refused_by, name, version)
            self.observer.started(model)
            self.inflight.enter(model)
            try:
                if caller is not None and caller.expired():
                    raise caller.dropped("before reaching the model")
                phases.queue_ns = perf_counter_ns() - started
                try:
                    answer = await call(model, phases)
                except Exception as exc:
                    failure = worker_failure(name, exc) if self.parallel_workers else None
                    if failure is None:
                        raise
                    raise failure from exc
                answered = True
                return answer
            finally:
                self.inflight.leave(model)
        except BaseException as exc:
            error = exc
            if isinstance(exc, asyncio.CancelledError):
                timed_out = caller.timed_out("the call was cancelled") if caller else None
                error = timed_out or exc
            raise
        finally:
            elapsed = perf_counter_ns() - started
            if model is not None:
                self.statistics.record(
                    model.name, model.version or "", rows, answered, elapsed, phases
                )
            self.observer.ended(name, model, rows, request_id_of, error, elapsed, phases)
            if payload is not None:
                if self.tracer is not None:
                    self.tracer.record(
                        name, model, payload, error, started, elapsed, phases, received_ns, protocol
                    )
                response = answer if isinstance(answer, InferenceResponse) else None
                if model is not None:
                    self.prediction_log.offer(model, payload, response, error, elapsed)
                elif refused_by is not None:
                    self.prediction_log.offer(
                        refused_by, payload, None, error, elapsed, version=version or ""
                    )

    async def refused(
        self,
        name: str,
        version: str | None,
        request_id: str | None,
        error: BaseException,
        received_ns: int,
    ) -> None:
        """A request its protocol adapter refused before it became one (a body or message
        that does not decode, 400; too large, 413): prediction-logged, with no tensors,
        by the model it names, if that model is known and logs predictions."""
        try:
            model = await self.resolve(name, version)
        except ModelUnavailable:
            model = await self._default_instance(name)
        if model is None:
            return
        payload = InferenceRequest.model_construct(
            id=request_id or None, parameters=None, inputs=[], outputs=None
        )
        elapsed = perf_counter_ns() - received_ns
        self.prediction_log.offer(model, payload, None, error, elapsed, version=version or "")

    async def _default_instance(self, name: str) -> MLModel | None:
        """The instance an unversioned request to ``name`` would reach, if any is loaded."""
        try:
            return await self._model_registry.get_model(name)
        except ModelNotFound:
            return None
