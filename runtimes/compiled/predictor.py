"""Runs a verified ONNX Runtime session and answers as scikit-learn would.

Outputs keep sklearn's dtype and shape, recorded from sklearn's own answers during
verification: labels keep the classes' dtype, regression values and probabilities come
back float64 and 1-D where sklearn's are. Requests the graph could answer differently
from sklearn (NaN or Inf when ``allow_nan`` is on, or a string outside an encoder's
vocabulary, which sklearn may reject) are left to sklearn: ``feeds`` returns None.
"""

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any, Protocol

import numpy as np
import pandas as pd

from ..errors import PredictionFailed
from ..schema import ModelSchema
from .convert import Compiled

# The graph's outputs in order: the label (or regression value) first, then the
# probabilities for classifiers with predict_proba.
COMPILED_METHODS = ("predict", "predict_proba")


@dataclass(frozen=True)
class OutputForm:
    dtype: np.dtype
    trailing: tuple[int, ...]
    """The shape after the batch dimension."""


@dataclass
class CompiledPredictor:
    compiled: Compiled
    schema: ModelSchema
    vocabularies: dict[str, np.ndarray]
    methods: tuple[str, ...]
    forms: dict[str, OutputForm] = field(default_factory=dict)

    def feeds(self, features: np.ndarray | pd.DataFrame) -> dict[str, np.ndarray] | None:
        if not isinstance(features, pd.DataFrame):
            array = np.asarray(features, dtype=np.float64)
            return {self.compiled.input_names[0]: array} if np.isfinite(array).all() else None
        feeds: dict[str, np.ndarray] = {}
        # The graph's inputs follow the schema's order; skl2onnx renames columns whose
        # names are not identifiers ("sepal length (cm)" -> "sepal_length__cm_").
        for spec, graph_input in zip(self.schema.inputs, self.compiled.input_names, strict=True):
            column = features[spec.name].to_numpy()
            if spec.datatype == "BYTES":
                if not np.isin(column, self.vocabularies[spec.name]).all():
                    return None
                feeds[graph_input] = column.astype(object).reshape(-1, 1)
            else:
                values = column.astype(np.float64).reshape(-1, 1)
                if not np.isfinite(values).all():
                    return None
                feeds[graph_input] = values
        return feeds

    def raw(self, feeds: dict[str, np.ndarray], methods: Sequence[str]) -> dict[str, np.ndarray]:
        names = [self.compiled.output_names[COMPILED_METHODS.index(m)] for m in methods]
        return dict(zip(methods, self.compiled.session.run(names, feeds), strict=True))

    def run(self, feeds: dict[str, np.ndarray], methods: Sequence[str]) -> dict[str, np.ndarray]:
        rows = len(next(iter(feeds.values())))
        return {
            method: np.asarray(values)
            .reshape((rows, *self.forms[method].trailing))
            .astype(self.forms[method].dtype, copy=False)
            for method, values in self.raw(feeds, methods).items()
        }


def offered_methods(
    estimator: Any, schema: ModelSchema, output_names: Sequence[str]
) -> tuple[str, ...]:
    """The sklearn methods the graph answers: predict, and predict_proba where both have it."""
    offered = [m for m in COMPILED_METHODS[: len(output_names)] if m in schema.output_names]
    return tuple(m for m in offered if hasattr(estimator, m))


class Predictor(Protocol):
    """What the runtime calls on a verified predictor, ONNX (above) or closed form (native)."""

    methods: tuple[str, ...]

    def feeds(self, features: np.ndarray | pd.DataFrame) -> dict[str, np.ndarray] | None: ...

    def run(
        self, feeds: dict[str, np.ndarray], methods: Sequence[str]
    ) -> dict[str, np.ndarray]: ...


def run_compiled(
    model: str, predictor: Predictor | None, features: Any, methods: Sequence[str]
) -> dict[str, np.ndarray]:
    """The requested methods the compiled path answers; the rest are left to sklearn."""
    wanted = [m for m in methods if predictor is not None and m in predictor.methods]
    if predictor is None or not wanted:
        return {}
    feeds = predictor.feeds(features)
    if feeds is None:
        return {}
    try:
        return predictor.run(feeds, wanted)
    except Exception as exc:
        raise PredictionFailed(model, exc) from exc
