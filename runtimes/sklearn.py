"""The scikit-learn runtime: loads an artifact from a version folder and serves it.

The artifact is an sklearn estimator, an MLflow sklearn model, or a native XGBoost or
LightGBM booster wrapped to look like one (``runtimes.formats``)."""

import asyncio
import logging
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import pandas as pd
from mlserver.types import (
    InferenceRequest,
    InferenceResponse,
    MetadataModelResponse,
    MetadataTensor,
    Parameters,
)

from .artifacts import load_artifact
from .batching import MicroBatcher, choose_batcher
from .cache import ModelCache, Results, bind_model_cache
from .cache.key import input_bytes, named_tensors
from .classification import classification_requests
from .compiled.backend import BackendChoice, choose_backend
from .compiled.predictor import run_compiled
from .compiled.tolerance import disagreement
from .constraints import Constraints, build_constraints
from .construct import construct
from .deadlines import Caller, caller_of
from .errors import EstimatorRejectedInput, ModelLoadFailed, SettingsError
from .execution import ModelExecution, start_execution, stop_execution
from .inference import Tensor, build_outputs, build_tensors, run_methods
from .model_uri import resolve_artifact
from .runtime_api import LeanInput, RuntimeDescription, V2Runtime, as_python_lists
from .schema import ModelSchema, derive_schema
from .settings import ModelExtra, parse_model_extra
from .timings import PhaseClock, Phases
from .validation import (
    decode_features,
    decode_single,
    requested_names,
    requested_outputs,
    single_input,
)

logger = logging.getLogger("v2serve.runtime")


class SklearnRuntime(V2Runtime):
    """Also a plain MLServer runtime: under ``mlserver start`` it serves the same answers,
    schema and checks, without what only v2serve's server injects (the response cache)."""

    _estimator: Any
    _schema: ModelSchema
    _extra: ModelExtra
    _constraints: Constraints
    _cache: ModelCache | None = None
    _batcher: MicroBatcher | None = None
    _execution: ModelExecution | None = None
    _backend: BackendChoice
    _labels: Any = None
    _format: str = "sklearn"
    _example: Any = None
    load_warning: str = ""

    async def load(self) -> bool:
        parameters = self._settings.parameters
        artifact: Path | str = "the artifact"
        try:
            self._extra = parse_model_extra(parameters.extra if parameters else None, self.name)
            artifact = resolve_artifact(self._settings, self._extra.artifact)
            loaded = await asyncio.to_thread(
                load_artifact, self.name, self.version, artifact, self._extra
            )
            self._estimator, self.load_warning = loaded.estimator, loaded.warning
            self._format, self._example = loaded.format, loaded.example
            # model-settings.json first, then what the artifact declares (a signature).
            self._schema = derive_schema(
                self._estimator,
                self._settings.inputs or loaded.inputs,
                self._settings.outputs or self._with_derived_outputs(loaded.outputs),
            )
            self._constraints = build_constraints(
                self._schema, self._extra, self._settings.max_batch_size, self.name
            )
            self._check_redactions()
            self._backend = await asyncio.to_thread(
                choose_backend,
                self.name,
                self.version,
                self._estimator,
                self._schema,
                self._extra,
                artifact.parent,
            )
        except ModelLoadFailed:
            raise
        except SettingsError as exc:
            raise ModelLoadFailed(self.name, self.version, str(exc)) from exc
        except Exception as exc:
            reason = f"cannot load {artifact}: {type(exc).__name__}: {exc}"
            raise ModelLoadFailed(self.name, self.version, reason) from exc
        self._settings.inputs = [spec.to_metadata() for spec in self._schema.inputs]
        self._settings.outputs = [spec.to_metadata() for spec in self._schema.outputs]
        self._settings.platform = "sklearn"
        self._labels = getattr(self._estimator, "classes_", None)
        example = (self._example_features(), list(self._schema.output_names[:1]))
        await asyncio.to_thread(self._warm_up, *example)  # off the loop: it may be slow
        if self._example is not None:
            self._verify_example()
        self._cache = bind_model_cache(self.services.response_cache, self._settings)
        self._execution = await start_execution(
            self.name,
            self.version,
            self._extra.execution,
            self._extra.execution_threads,
            self._compute,
            (self._example, example[1]) if self._example is not None else example,
            self.services.executions,
            may_block=self._backend.backend == "sklearn",
        )
        self._batcher = self._choose_batching(example, self._execution)
        self.lean = single_input(self._schema)
        return True

    def _check_redactions(self) -> None:
        log = self._extra.prediction_log
        if log is None:
            return
        inputs = [spec.name for spec in self._schema.inputs]
        unknown = log.unknown_redactions(inputs)
        if unknown:
            raise SettingsError(
                f"model '{self.name}' prediction_log.redact",
                f"{', '.join(map(repr, unknown))} {'is' if len(unknown) == 1 else 'are'} not "
                f"an input of the model (inputs: {', '.join(map(repr, inputs))})",
            )

    def _with_derived_outputs(self, declared: Sequence[MetadataTensor]) -> list[MetadataTensor]:
        """An artifact's declared outputs (an MLflow signature types ``predict``) plus the
        estimator's other methods, which a signature does not describe."""
        if not declared:
            return []
        named = {tensor.name for tensor in declared}
        derived = derive_schema(self._estimator).outputs
        return [*declared, *(spec.to_metadata() for spec in derived if spec.name not in named)]

    def _choose_batching(
        self, example: tuple[Any, list[str]], execution: ModelExecution
    ) -> MicroBatcher | None:
        batcher = choose_batcher(
            self._extra.batching,
            compiled=self._backend.backend != "sklearn",
            compute=self._compute,
            example=example,
            max_rows=self._extra.batch_max_rows,
            model=self.name,
            version=self.version or "",
            execution=execution,
        )
        if batcher is not None and self.services.batchers is not None:
            self.services.batchers.add(batcher)
        if batcher is not None and batcher.stopped is None:
            logger.info("model '%s' version %s batches requests", self.name, self.version)
        return batcher

    async def unload(self) -> bool:
        if self._execution is not None:
            stop_execution(self._execution, self.services.executions)
            self._execution = None
        if self._batcher is not None and self.services.batchers is not None:
            self.services.batchers.remove(self._batcher)
        if self._cache is not None:
            self._cache.release()
            self._cache = None
        return True

    def _example_features(self) -> Any:
        batch = self._schema.example_batch()
        if self._schema.named_columns:
            return pd.DataFrame({name: column.reshape(-1) for name, column in batch.items()})
        return next(iter(batch.values()))

    def _warm_up(self, features: Any, methods: list[str]) -> None:
        """One inference from the schema alone, so a broken artifact never takes traffic."""
        try:
            self._compute(features, methods)
        except EstimatorRejectedInput:
            pass  # zeros or empty strings may be outside a categorical vocabulary
        except Exception as exc:
            raise ModelLoadFailed(
                self.name, self.version, f"warm-up inference failed: {exc}"
            ) from exc

    def _verify_example(self) -> None:
        """The artifact's own example (MLflow's input_example) must give an answer, and the
        same one on the served backend as on the estimator itself."""
        methods = list(self._schema.output_names[:1])
        try:
            served = self._compute(self._example, methods)
            direct = run_methods(self.name, self._estimator, self._example, methods)
        except Exception as exc:
            raise ModelLoadFailed(
                self.name, self.version, f"the model's input_example fails: {exc}"
            ) from exc
        for method in methods:
            problem = disagreement(method, direct[method], served[method])
            if problem is not None:
                raise ModelLoadFailed(
                    self.name, self.version, f"the served backend, on the input_example: {problem}"
                )

    def _compute(self, features: Any, methods: list[str]) -> Results:
        """The compiled path where it was proven equal, sklearn for the rest."""
        results = run_compiled(self.name, self._backend.predictor, features, methods)
        rest = [method for method in methods if method not in results]
        results.update(run_methods(self.name, self._estimator, features, rest))
        return results

    def _leaves_to_sklearn(self, features: Any, methods: list[str]) -> bool:
        """Whether this call runs the estimator's own code: a method the compiled
        predictor does not offer, or features it refuses (non-finite, out of its domain).
        Such a call may be slow whatever the predictor's measured cost (issue 18)."""
        predictor = self._backend.predictor
        if predictor is None:
            return True
        if any(method not in predictor.methods for method in methods):
            return True
        return predictor.feeds(features) is None

    async def _results(
        self,
        features: Any,
        methods: list[str],
        phases: Phases | None = None,
        caller: Caller | None = None,
    ) -> Results:
        """From the cache, the batcher, or a direct call, in that order of preference.
        The answer of a caller who has gone is not cached (runtimes/deadlines.py). A direct
        call runs on the event loop only if it is measured cheap (runtimes.execution)."""
        if self._extra.default_timeout_ms:
            caller = (caller or Caller(self.name, time.monotonic())).with_default(
                self._extra.default_timeout_ms
            )
        cache = self._cache
        lookup = None
        if cache is not None:
            tensors = named_tensors(features, self._schema.inputs[0].name)
            bound = self.services.offload_bytes
            if bound is not None and input_bytes(tensors) > bound:
                lookup = await asyncio.to_thread(cache.lookup, tensors, methods)
            else:
                lookup = cache.lookup(tensors, methods)
            if phases is not None:
                phases.cache_hit = lookup.results is not None
            if lookup.results is not None:
                return lookup.results
        results: Results
        if self._batcher is not None:
            results = await self._batcher.submit(features, methods, caller)
        elif self._execution is not None:
            blocks = self._leaves_to_sklearn(features, methods)
            results = await self._execution.run(
                self._compute, features, methods, caller, may_block=blocks
            )
        else:
            results = self._compute(features, methods)
        if cache is not None and lookup is not None and not (caller and caller.gone()):
            cache.store(lookup, results)
        return results

    async def infer(self, payload: InferenceRequest, phases: Phases) -> InferenceResponse:
        clock = PhaseClock()
        features = decode_features(
            self.name,
            self._schema,
            payload.inputs,
            allow_nan=self._extra.allow_nan,
            constraints=self._constraints,
        )
        methods = requested_outputs(self.name, self._schema, payload.outputs)
        top_k = classification_requests(self.name, payload.outputs)
        phases.input_ns += clock.lap()
        results = await self._results(features, methods, phases, caller_of(payload))
        phases.infer_ns += clock.lap()
        outputs = build_outputs(self.name, results, methods, top_k, self._labels)
        if not self.services.encodes_numpy:
            outputs = [as_python_lists(output) for output in outputs]
        phases.output_ns += clock.lap()
        return construct(
            InferenceResponse,
            {
                "model_name": self.name,
                "model_version": self.version,
                "id": payload.id,
                "parameters": None,
                "outputs": outputs,
            },
        )

    async def infer_lean(
        self, tensor: LeanInput, phases: Phases, caller: Caller | None
    ) -> list[Tensor]:
        """``infer`` of a request holding only ``tensor`` and the outputs it names (none:
        the default output), with no top-k."""
        clock = PhaseClock()
        features = decode_single(
            self.name,
            self._schema,
            tensor.name,
            tensor.datatype,
            tensor.shape,
            tensor.data,
            allow_nan=self._extra.allow_nan,
            constraints=self._constraints,
        )
        methods = requested_names(self.name, self._schema, tensor.outputs)
        phases.input_ns += clock.lap()
        results = await self._results(features, methods, phases, caller)
        phases.infer_ns += clock.lap()
        tensors = build_tensors(self.name, results, methods, {}, self._labels)
        phases.output_ns += clock.lap()
        return tensors

    def describe(self) -> RuntimeDescription:
        if "_backend" not in vars(self):
            # Not loaded in this process: with parallel workers a worker loads its own copy.
            return RuntimeDescription()
        return RuntimeDescription(
            load_warning=self.load_warning,
            backend=self._backend.description,
            parameters=self.backend_parameters,
            response_cache=self._cache is not None,
        )

    @property
    def backend_parameters(self) -> dict[str, str]:
        described = getattr(self._estimator, "describe", None)
        return {
            "format": self._format,
            **(described() if callable(described) else {}),
            "inference_backend": self._backend.backend,
            "verification": self._backend.verification,
            "batching": self._batcher.description if self._batcher else "off",
        }

    async def metadata(self) -> MetadataModelResponse:
        found = await super().metadata()
        values = found.parameters.model_dump(exclude_none=True) if found.parameters else {}
        found.parameters = Parameters(**values, **self.backend_parameters)
        return found
