"""Chooses the backend for one model version, per ``inference_backend``, and says why.

``auto`` tries the closed form (``native``, linear models and scalers), then ONNX, each
verified against sklearn on the same rows, and falls back to sklearn with the reasons
logged; ``native`` or ``onnx`` fail the load with the reason (``CompilationFailed``);
``sklearn`` never compiles.
"""

import logging
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from ..errors import CompilationFailed
from ..schema import ModelSchema
from ..settings import ModelExtra
from .convert import ConversionError, compile_estimator
from .native import NativePredictor, NotClosedForm, native_predictor
from .predictor import CompiledPredictor, OutputForm, offered_methods
from .rows import load_sample, string_vocabularies, verification_rows
from .tolerance import disagreement, max_abs_difference

logger = logging.getLogger("v2serve.compiled")


@dataclass(frozen=True)
class BackendChoice:
    backend: str
    """``native``, ``onnx`` or ``sklearn``: which path answers ``predict``."""
    verification: str
    """What was verified on which rows, or why the compiled path is not used."""
    predictor: CompiledPredictor | NativePredictor | None = None

    @property
    def description(self) -> str:
        return f"{self.backend}: {self.verification}"


def _check_supported(schema: ModelSchema) -> None:
    if "predict" not in schema.output_names:
        raise ConversionError("outputs", "the estimator has no predict")
    for spec in schema.inputs:
        if spec.datatype not in ("FP64", "BYTES"):
            raise ConversionError(
                "inputs", f"input '{spec.name}' is {spec.datatype}; compiled inference takes FP64"
            )


def compile_onnx(estimator: Any, schema: ModelSchema, threads: int) -> CompiledPredictor:
    """An ONNX Runtime predictor, not yet verified; else ConversionError."""
    _check_supported(schema)
    vocabularies = string_vocabularies(estimator)
    unknown = [
        s.name for s in schema.inputs if s.datatype == "BYTES" and s.name not in vocabularies
    ]
    if unknown:
        raise ConversionError("inputs", f"string column '{unknown[0]}' has no known vocabulary")
    compiled = compile_estimator(estimator, schema, threads)
    methods = offered_methods(estimator, schema, compiled.output_names)
    return CompiledPredictor(compiled, schema, vocabularies, methods)


def compile_native(estimator: Any, schema: ModelSchema) -> NativePredictor:
    """A closed-form predictor, not yet verified; else ConversionError."""
    _check_supported(schema)
    try:
        return native_predictor(estimator, schema)
    except NotClosedForm as exc:
        raise ConversionError("closed form", str(exc)) from exc


def verify(
    predictor: CompiledPredictor | NativePredictor,
    estimator: Any,
    schema: ModelSchema,
    folder: Path | None,
) -> str:
    """Proves ``predictor`` equal to sklearn on the verification rows (ConversionError if
    not) and records sklearn's output dtypes and shapes on it; returns what was verified."""
    methods = predictor.methods
    try:
        sample = load_sample(folder, schema) if folder is not None else None
        rows, account = verification_rows(estimator, schema, sample)
    except ConversionError:
        raise
    except Exception as exc:
        raise ConversionError("verification rows", f"{type(exc).__name__}: {exc}") from exc
    try:
        expected = {m: np.asarray(getattr(estimator, m)(rows)) for m in methods}
    except Exception as exc:
        raise ConversionError(
            "verification", f"sklearn rejected the verification rows: {type(exc).__name__}: {exc}"
        ) from exc
    predictor.forms.update(
        {m: OutputForm(values.dtype, values.shape[1:]) for m, values in expected.items()}
    )
    feeds = predictor.feeds(rows)
    if feeds is None:
        raise ConversionError("verification", "the verification rows hold non-finite values")
    try:
        got = predictor.run(feeds, methods)
    except Exception as exc:
        raise ConversionError("verification", f"{type(exc).__name__}: {exc}") from exc
    for method in methods:
        problem = disagreement(method, expected[method], got[method])
        if problem is not None:
            raise ConversionError("verification", f"{problem} ({account})")
    worst = ", ".join(
        f"{m} max |diff| {max_abs_difference(expected[m], got[m]):.2g}"
        if expected[m].dtype.kind == "f"
        else f"{m} equal"
        for m in methods
    )
    return f"verified on {len(rows)} rows ({account}): {worst}"


def compile_and_verify(
    estimator: Any, schema: ModelSchema, threads: int, folder: Path | None
) -> tuple[CompiledPredictor, str]:
    """An ONNX predictor proven equal to sklearn on the verification set; else ConversionError."""
    predictor = compile_onnx(estimator, schema, threads)
    return predictor, verify(predictor, estimator, schema, folder)


def _verified(
    backend: str, estimator: Any, schema: ModelSchema, extra: ModelExtra, folder: Path | None
) -> BackendChoice:
    predictor: CompiledPredictor | NativePredictor
    if backend == "native":
        predictor = compile_native(estimator, schema)
    else:
        predictor = compile_onnx(estimator, schema, extra.onnx_threads)
    if not predictor.methods:
        raise ConversionError("outputs", "no requested output has a compiled form")
    return BackendChoice(backend, verify(predictor, estimator, schema, folder), predictor)


def choose_backend(
    model: str,
    version: str | None,
    estimator: Any,
    schema: ModelSchema,
    extra: ModelExtra,
    folder: Path | None,
) -> BackendChoice:
    where = f"model '{model}'" + (f" version {version}" if version else "")
    if extra.inference_backend == "sklearn":
        choice = BackendChoice("sklearn", "not compiled (inference_backend 'sklearn')")
        logger.info("%s serves %s", where, choice.description)
        return choice
    candidates = (
        ["native", "onnx"] if extra.inference_backend == "auto" else [extra.inference_backend]
    )
    reasons = []
    for backend in candidates:
        try:
            choice = _verified(backend, estimator, schema, extra, folder)
        except ConversionError as exc:
            if extra.inference_backend != "auto":
                raise CompilationFailed(model, version, exc.step, exc.problem) from exc
            reasons.append(f"{backend} not used: {exc}")
            continue
        logger.info("%s serves %s", where, choice.description)
        return choice
    # The closed form's refusal is expected for most models; ONNX's reason is the one a
    # user acts on, so it comes first.
    choice = BackendChoice("sklearn", "; ".join(reversed(reasons)))
    logger.warning("%s serves %s", where, choice.description)
    return choice
