"""Estimator -> ONNX graph -> ONNX Runtime session, with sklearn's float semantics kept.

scikit-learn's trees (decision trees, forests, extra trees, gradient boosting) cast the
features to float32 and compare them with float64 thresholds. A graph fed float32 stores
float32 thresholds (a rounding that moves rows on a split); a graph fed float64 compares
float64 features (one tree's vote differed, issue 7). So tree models are converted with
float64 inputs, Cast(float32) and Cast(float64) in front of the trees, and float64
thresholds: exactly sklearn's comparison. Everything else runs in float64 throughout.
"""

from dataclasses import dataclass
from typing import Any

import numpy as np
import onnxruntime as ort
from onnx import ModelProto, TensorProto, helper
from skl2onnx import to_onnx
from skl2onnx._supported_operators import sklearn_operator_name_map
from skl2onnx.common.data_types import DoubleTensorType, StringTensorType
from skl2onnx.sklapi import CastTransformer
from sklearn.base import is_classifier
from sklearn.ensemble import (
    ExtraTreesClassifier,
    ExtraTreesRegressor,
    GradientBoostingClassifier,
    GradientBoostingRegressor,
    RandomForestClassifier,
    RandomForestRegressor,
)
from sklearn.pipeline import Pipeline
from sklearn.tree import BaseDecisionTree

from ..schema import NUMERIC_INPUT, ModelSchema

# Opsets that skl2onnx 1.20 tests and ONNX Runtime 1.2x runs; ai.onnx.ml 3 is the first
# whose tree ensembles keep float64 thresholds.
TARGET_OPSET = {"": 18, "ai.onnx.ml": 3}

FLOAT32_TREES = (
    BaseDecisionTree,
    RandomForestClassifier,
    RandomForestRegressor,
    ExtraTreesClassifier,
    ExtraTreesRegressor,
    GradientBoostingClassifier,
    GradientBoostingRegressor,
)


class ConversionError(Exception):
    """Why an estimator has no ONNX graph; ``step`` names the part that failed."""

    def __init__(self, step: str, problem: str):
        self.step = step
        self.problem = problem
        super().__init__(f"{step}: {problem}")


@dataclass(frozen=True)
class Compiled:
    session: ort.InferenceSession
    input_names: tuple[str, ...]
    """The graph's inputs: one per named column, else the one numeric tensor."""
    output_names: tuple[str, ...]


def final_step(estimator: Any) -> Any:
    return estimator.steps[-1][1] if isinstance(estimator, Pipeline) else estimator


def _leaves(estimator: Any, path: str) -> list[tuple[str, Any]]:
    if isinstance(estimator, Pipeline):
        return [leaf for name, step in estimator.steps for leaf in _leaves(step, name)]
    children = getattr(estimator, "transformers_", None) or getattr(
        estimator, "transformer_list", None
    )
    if children is not None:
        return [
            leaf
            for name, child, *_ in children
            if not isinstance(child, str)
            for leaf in _leaves(child, f"{path}/{name}" if path else name)
        ]
    return [(path or type(estimator).__name__, estimator)]


def unconvertible_step(estimator: Any) -> str | None:
    """The first step skl2onnx has no converter for, as "name (Class)", or None."""
    for path, leaf in _leaves(estimator, ""):
        if type(leaf) not in sklearn_operator_name_map:
            return f"step '{path}' ({type(leaf).__name__})"
    return None


def _cast(dtype: type, width: int) -> CastTransformer:
    return CastTransformer(dtype=dtype).fit(np.zeros((1, width)))


def with_float32_casts(estimator: Any, width: int) -> Any:
    """The same fitted steps, with sklearn's float32 cast made explicit before trees."""
    final = final_step(estimator)
    if not isinstance(final, FLOAT32_TREES):
        return estimator
    casts = [("cast_float32", _cast(np.float32, width)), ("cast_float64", _cast(np.float64, width))]
    if isinstance(estimator, Pipeline):
        return Pipeline([*estimator.steps[:-1], *casts, estimator.steps[-1]])
    return Pipeline([*casts, ("model", estimator)])


# ai.onnx.ml tree ensembles (opset 3) take float64 features and thresholds but emit
# float32 scores, as Normalizer always does, while skl2onnx declares float64 for float64
# inputs: ONNX Runtime then refuses the graph. Those outputs are cast to float64 here.
_FLOAT32_OUTPUT = {"TreeEnsembleRegressor": 0, "TreeEnsembleClassifier": 1, "Normalizer": 0}


def cast_float32_outputs(graph: ModelProto) -> ModelProto:
    nodes = []
    for node in graph.graph.node:
        nodes.append(node)
        index = _FLOAT32_OUTPUT.get(node.op_type)
        if node.domain != "ai.onnx.ml" or index is None or len(node.output) <= index:
            continue
        score = node.output[index]
        node.output[index] = f"{score}_float32"
        nodes.append(helper.make_node("Cast", [node.output[index]], [score], to=TensorProto.DOUBLE))
    del graph.graph.node[:]
    graph.graph.node.extend(nodes)
    del graph.graph.value_info[:]
    for output in graph.graph.output:
        if output.type.tensor_type.elem_type == TensorProto.FLOAT:
            output.type.tensor_type.elem_type = TensorProto.DOUBLE
    return graph


def _initial_types(schema: ModelSchema) -> list[tuple[str, Any]]:
    if schema.named_columns:
        return [
            (
                spec.name,
                StringTensorType([None, 1])
                if spec.datatype == "BYTES"
                else DoubleTensorType([None, 1]),
            )
            for spec in schema.inputs
        ]
    (spec,) = schema.inputs
    return [(NUMERIC_INPUT, DoubleTensorType([None, spec.shape[-1]]))]


def _width_after_prefix(estimator: Any, schema: ModelSchema) -> int:
    final = final_step(estimator)
    return int(getattr(final, "n_features_in_", schema.inputs[0].shape[-1]))


def compile_estimator(estimator: Any, schema: ModelSchema, threads: int) -> Compiled:
    """Convert and open a session; raises ConversionError naming the failing step."""
    if hasattr(estimator, "onnx_graph"):
        return open_session(_native_graph(estimator), threads)
    missing = unconvertible_step(estimator)
    if missing is not None:
        raise ConversionError("conversion", f"{missing} has no ONNX converter in skl2onnx")
    convertible = with_float32_casts(estimator, _width_after_prefix(estimator, schema))
    final = final_step(estimator)
    # Plain arrays instead of a list of dicts; converters without probabilities refuse it.
    wants_zipmap_off = is_classifier(final) and hasattr(final, "predict_proba")
    options = {type(final): {"zipmap": False}} if wants_zipmap_off else None
    try:
        graph = to_onnx(
            convertible,
            initial_types=_initial_types(schema),
            options=options,
            target_opset=TARGET_OPSET,
        )
    except Exception as exc:
        raise ConversionError("conversion", f"skl2onnx: {type(exc).__name__}: {exc}") from exc
    return open_session(cast_float32_outputs(graph), threads)


def _native_graph(estimator: Any) -> ModelProto:
    """A booster's own graph (``runtimes.formats.boosters``), from onnxmltools."""
    try:
        graph: ModelProto = estimator.onnx_graph()
    except ImportError as exc:
        raise ConversionError("conversion", f"onnxmltools is not installed: {exc}") from exc
    except Exception as exc:
        raise ConversionError("conversion", f"onnxmltools: {type(exc).__name__}: {exc}") from exc
    return graph


def open_session(graph: ModelProto, threads: int) -> Compiled:
    options_ = ort.SessionOptions()
    options_.intra_op_num_threads = threads
    options_.inter_op_num_threads = 1
    options_.execution_mode = ort.ExecutionMode.ORT_SEQUENTIAL
    # Spinning workers burn a core while idle; on a small box that starves the server.
    options_.add_session_config_entry("session.intra_op.allow_spinning", "0")
    try:
        session = ort.InferenceSession(
            graph.SerializeToString(),
            options_,
            providers=["CPUExecutionProvider"],
        )
    except Exception as exc:
        raise ConversionError("onnxruntime session", f"{type(exc).__name__}: {exc}") from exc
    return Compiled(
        session=session,
        input_names=tuple(i.name for i in session.get_inputs()),
        output_names=tuple(o.name for o in session.get_outputs()),
    )
