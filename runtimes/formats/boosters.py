"""Native XGBoost and LightGBM models, served through the same runtime as scikit-learn.

A booster saved with ``save_model`` (``model.json`` / ``model.ubj`` for XGBoost,
``model.txt`` for LightGBM) is wrapped in a small estimator-shaped adapter: ``predict``,
``predict_proba`` where the objective classifies, ``n_features_in_`` and ``classes_``. The
rest of v2serve (schema derivation, validation, the cache, batching, compiled inference)
then treats it like any fitted estimator, with no second code path.

Answers are the library's own: ``predict_proba`` is the booster's probability output,
``predict`` its argmax (or ``p > 0.5`` for a binary objective), as the libraries' own
sklearn wrappers compute them. xgboost and lightgbm are optional extras; a folder that
needs a missing one fails to load with a message that names the extra.
"""

import importlib
import json
from collections.abc import Callable, Iterator
from typing import Any

import numpy as np
from onnx import ModelProto, TensorProto, helper

from ..schema import NUMERIC_INPUT

# onnxmltools' converters support opsets up to 15 (ai.onnx.ml 3 keeps double thresholds).
BOOSTER_OPSET = 15


class MissingExtra(Exception):
    """The library a model file needs is not installed."""

    def __init__(self, library: str, filename: str):
        super().__init__(
            f"{filename} is a {library} model, and {library} is not installed: "
            f"pip install 'v2serve[{library}]'"
        )


def _import(library: str, filename: str) -> Any:
    try:
        return importlib.import_module(library)
    except ImportError as exc:
        raise MissingExtra(library, filename) from exc


class BoosterModel:
    """A regressor-shaped booster: ``predict`` is the booster's own output."""

    def __init__(
        self,
        library: str,
        objective: str,
        n_features: int,
        feature_names: list[str] | None,
        raw: Callable[[np.ndarray], np.ndarray],
        graph: Callable[[], ModelProto],
        splits: Callable[[], Iterator[tuple[int, float]]],
    ):
        self.library = library
        self.objective = objective
        self.n_features_in_ = n_features
        self.booster_feature_names = feature_names
        self._raw = raw
        self._graph = graph
        self.split_points = splits
        """(feature, threshold) of every split: the compiled path is verified on rows that
        sit on them (``runtimes.compiled.rows``), where a float32 cast would show."""

    def predict(self, features: Any) -> np.ndarray:
        return self._raw(np.asarray(features))

    def describe(self) -> dict[str, str]:
        """For the model's metadata parameters."""
        described = {"format": self.library, "objective": self.objective}
        if self.booster_feature_names:
            described["feature_names"] = ",".join(self.booster_feature_names)
        return described

    def onnx_graph(self) -> ModelProto:
        """The booster as ONNX, fed float64 features like every v2serve graph.

        XGBoost compares float32 features with float32 thresholds, so the graph casts its
        float64 input to float32 first: the same comparison XGBoost makes. LightGBM
        compares float64 features with float64 thresholds, which onnxmltools' graph rounds
        to float32; the verification on split rows sees the difference and LightGBM's own
        predict answers (``runtimes.compiled.backend``)."""
        return _with_float64_ends(self._graph())


class BoosterClassifier(BoosterModel):
    """A classifying objective: the booster gives probabilities, ``predict`` the label."""

    def __init__(self, n_classes: int, *args: Any):
        super().__init__(*args)
        self.classes_ = np.arange(max(n_classes, 2))

    def predict_proba(self, features: Any) -> np.ndarray:
        scores = np.asarray(self._raw(np.asarray(features)), dtype=np.float64)
        if scores.ndim == 1:
            return np.column_stack([1.0 - scores, scores])
        return scores

    def predict(self, features: Any) -> np.ndarray:
        scores = np.asarray(self._raw(np.asarray(features)))
        if scores.ndim == 1:
            return self.classes_[(scores > 0.5).astype(np.int64)]
        return self.classes_[np.argmax(scores, axis=1)]


def _with_float64_ends(graph: ModelProto) -> ModelProto:
    """A float64 input named like v2serve's numeric tensor, cast to the float32 one, and
    float32 outputs cast to float64 at the very end, so the graph's own arithmetic stays
    in the float32 its converter wrote."""
    (original,) = graph.graph.input
    fed = helper.make_tensor_value_info(
        NUMERIC_INPUT, TensorProto.DOUBLE, [None, original.type.tensor_type.shape.dim[1].dim_value]
    )
    cast = helper.make_node("Cast", [NUMERIC_INPUT], [original.name], to=TensorProto.FLOAT)
    nodes = [cast, *graph.graph.node]
    del graph.graph.node[:]
    graph.graph.node.extend(nodes)
    del graph.graph.input[:]
    graph.graph.input.append(fed)
    for output in graph.graph.output:
        dims = output.type.tensor_type.shape.dim
        if dims:
            dims[0].dim_param = "N"  # some converters declare a batch of 1
        if output.type.tensor_type.elem_type != TensorProto.FLOAT:
            continue
        inner = f"{output.name}_float32"
        for node in graph.graph.node:
            node.output[:] = [inner if name == output.name else name for name in node.output]
            node.input[:] = [inner if name == output.name else name for name in node.input]
        graph.graph.node.append(
            helper.make_node("Cast", [inner], [output.name], to=TensorProto.DOUBLE)
        )
        output.type.tensor_type.elem_type = TensorProto.DOUBLE
    return graph


def _float_input(n_features: int) -> list[tuple[str, Any]]:
    from onnxmltools.convert.common.data_types import FloatTensorType

    return [("features", FloatTensorType([None, n_features]))]


# xgboost objectives whose output is a probability per row (or per row and class).
_XGBOOST_CLASSIFYING = ("binary:logistic", "multi:softprob")


def load_xgboost(data: bytes, filename: str) -> BoosterModel:
    xgb = _import("xgboost", filename)
    booster = xgb.Booster()
    booster.load_model(bytearray(data))
    learner = json.loads(booster.save_config())["learner"]
    objective = str(learner["objective"]["name"])
    n_classes = int(float(learner["learner_model_param"].get("num_class") or 0))
    if objective == "multi:softmax":
        # Probabilities, from which predict takes the argmax as softmax's label does.
        booster.set_param({"objective": "multi:softprob"})
        objective = "multi:softprob"
    n_features = int(booster.num_features())

    def raw(features: np.ndarray) -> np.ndarray:
        return np.asarray(booster.inplace_predict(features, validate_features=False))

    def graph() -> ModelProto:
        import onnxmltools

        return onnxmltools.convert_xgboost(
            booster, initial_types=_float_input(n_features), target_opset=BOOSTER_OPSET
        )

    names = list(booster.feature_names or [])

    def splits() -> Iterator[tuple[int, float]]:
        index = {name: i for i, name in enumerate(names)}
        for tree in booster.get_dump(dump_format="json"):
            yield from _xgboost_splits(json.loads(tree), index)

    common = ("xgboost", objective, n_features, names or None)
    if objective in _XGBOOST_CLASSIFYING:
        return BoosterClassifier(n_classes, *common, raw, graph, splits)
    return BoosterModel(*common, raw, graph, splits)


def _xgboost_splits(node: dict[str, Any], index: dict[str, int]) -> Iterator[tuple[int, float]]:
    if "split" in node:
        feature = node["split"]
        position = index[feature] if feature in index else int(str(feature).lstrip("f"))
        yield position, float(node["split_condition"])
    for child in node.get("children", ()):
        yield from _xgboost_splits(child, index)


_LIGHTGBM_CLASSIFYING = ("binary", "multiclass", "multiclassova", "cross_entropy")


def load_lightgbm(data: bytes, filename: str) -> BoosterModel:
    lgb = _import("lightgbm", filename)
    booster = lgb.Booster(model_str=data.decode("utf-8"))
    objective = str(booster.dump_model(num_iteration=0).get("objective") or "regression")
    n_features = int(booster.num_feature())
    names = [str(n) for n in booster.feature_name()]
    named = names != [f"Column_{i}" for i in range(len(names))]

    def raw(features: np.ndarray) -> np.ndarray:
        return np.asarray(booster.predict(features))

    def graph() -> ModelProto:
        import onnxmltools

        return onnxmltools.convert_lightgbm(
            booster,
            initial_types=_float_input(n_features),
            target_opset=BOOSTER_OPSET,
            zipmap=False,
        )

    def splits() -> Iterator[tuple[int, float]]:
        for tree in booster.dump_model()["tree_info"]:
            yield from _lightgbm_splits(tree["tree_structure"])

    common = ("lightgbm", objective, n_features, names if named else None)
    if objective.split()[0] in _LIGHTGBM_CLASSIFYING:
        classes = int(booster.num_model_per_iteration())
        return BoosterClassifier(classes, *common, raw, graph, splits)
    return BoosterModel(*common, raw, graph, splits)


def _lightgbm_splits(node: dict[str, Any]) -> Iterator[tuple[int, float]]:
    if "split_feature" in node and isinstance(node.get("threshold"), int | float):
        yield int(node["split_feature"]), float(node["threshold"])
    for side in ("left_child", "right_child"):
        if side in node:
            yield from _lightgbm_splits(node[side])
