"""Chooses the backend for one model version, per ``inference_backend``, and says why.

``auto`` compiles, verifies and falls back to sklearn with the reason logged; ``onnx``
fails the load with that reason (``CompilationFailed``); ``sklearn`` never compiles.
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
from .domain import tree_guard
from .predictor import CompiledPredictor, OutputForm, offered_methods
from .rows import load_sample, string_vocabularies, verification_rows
from .tolerance import disagreement, max_abs_difference

logger = logging.getLogger("v2serve.compiled")


@dataclass(frozen=True)
class BackendChoice:
    backend: str
    """``onnx`` or ``sklearn``: which path answers ``predict``."""
    verification: str
    """What was verified on which rows, or why the compiled path is not used."""
    predictor: CompiledPredictor | None = None

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


def compile_and_verify(
    estimator: Any, schema: ModelSchema, threads: int, folder: Path | None
) -> tuple[CompiledPredictor, str]:
    """A predictor proven equal to sklearn on the verification set; else ConversionError."""
    _check_supported(schema)
    vocabularies = string_vocabularies(estimator)
    unknown = [
        s.name for s in schema.inputs if s.datatype == "BYTES" and s.name not in vocabularies
    ]
    if unknown:
        raise ConversionError("inputs", f"string column '{unknown[0]}' has no known vocabulary")
    compiled = compile_estimator(estimator, schema, threads)
    methods = offered_methods(estimator, schema, compiled.output_names)
    predictor = CompiledPredictor(
        compiled, schema, vocabularies, methods, guard=tree_guard(estimator)
    )
    try:
        sample = load_sample(folder, schema) if folder is not None else None
        rows, account = verification_rows(estimator, schema, sample)
    except ConversionError:
        raise
    except Exception as exc:
        raise ConversionError("verification rows", f"{type(exc).__name__}: {exc}") from exc
    try:
        expected = {m: np.asarray(getattr(estimator, m)(rows)) for m in methods}
    except BaseException as exc:  # noqa: BLE001 - estimator code, contained (runtimes.inference)
        raise ConversionError(
            "verification", f"sklearn rejected the verification rows: {type(exc).__name__}: {exc}"
        ) from exc
    predictor.forms.update(
        {m: OutputForm(values.dtype, values.shape[1:]) for m, values in expected.items()}
    )
    feeds = predictor.feeds(rows)
    if feeds is None:
        raise ConversionError(
            "verification",
            "the verification rows hold values outside the compiled domain "
            "(NaN, Inf or beyond float32)",
        )
    try:
        got = predictor.run(feeds, methods)
    except Exception as exc:
        raise ConversionError("verification", f"onnxruntime: {type(exc).__name__}: {exc}") from exc
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
    return predictor, f"verified on {len(rows)} rows ({account}): {worst}"


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
    try:
        predictor, verification = compile_and_verify(estimator, schema, extra.onnx_threads, folder)
    except ConversionError as exc:
        if extra.inference_backend == "onnx":
            raise CompilationFailed(model, version, exc.step, exc.problem) from exc
        choice = BackendChoice("sklearn", f"onnx not used: {exc}")
        logger.warning("%s serves %s", where, choice.description)
        return choice
    choice = BackendChoice("onnx", verification, predictor)
    logger.info("%s serves %s", where, choice.description)
    return choice
