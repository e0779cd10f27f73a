"""A model's tensor schema: declared in model-settings.json, or derived from the estimator.

Named columns: an estimator fitted on a DataFrame (it has ``feature_names_in_``) takes one
tensor per column, named after the column, shaped ``[-1]`` or ``[-1, 1]``, as MLServer's
PandasCodec and Triton's per-input convention do. Any other estimator takes one 2-D
tensor ``input-0`` of shape ``[-1, n_features]``.
"""

from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
from mlserver.types import MetadataTensor

from .errors import SettingsError

NUMERIC_INPUT = "input-0"
OUTPUT_METHODS = ("predict", "predict_proba", "decision_function", "transform")
DEFAULT_OUTPUT = "predict"

_NUMPY_TO_DATATYPE = {
    "b": "BOOL",
    "i": "INT64",
    "u": "UINT64",
    "f": "FP64",
    "U": "BYTES",
    "S": "BYTES",
    "O": "BYTES",
}


@dataclass(frozen=True)
class TensorSpec:
    name: str
    datatype: str
    shape: tuple[int, ...]

    def to_metadata(self) -> MetadataTensor:
        return MetadataTensor(name=self.name, datatype=self.datatype, shape=list(self.shape))


@dataclass(frozen=True)
class ModelSchema:
    inputs: tuple[TensorSpec, ...]
    outputs: tuple[TensorSpec, ...]
    named_columns: bool = False
    output_names: tuple[str, ...] = field(default=())
    categories: Mapping[str, tuple[str, ...]] = field(default_factory=dict)
    """Columns whose encoder raises on an unknown string: the only values they accept."""
    vocabulary: Mapping[str, tuple[str, ...]] = field(default_factory=dict)
    """Strings every encoder of a column was fitted on, enforced or not (for warm-up)."""

    def __post_init__(self) -> None:
        object.__setattr__(self, "output_names", tuple(o.name for o in self.outputs))

    def input_named(self, name: str) -> TensorSpec | None:
        return next((spec for spec in self.inputs if spec.name == name), None)

    def example_batch(self, rows: int = 1) -> dict[str, np.ndarray]:
        """Warm-up rows built from the schema alone."""
        batch: dict[str, np.ndarray] = {}
        for spec in self.inputs:
            shape = tuple(rows if dim == -1 else dim for dim in spec.shape)
            if spec.datatype == "BYTES":
                known = self.vocabulary.get(spec.name, ("",))
                batch[spec.name] = np.full(shape, known[0], dtype=object)
            else:
                batch[spec.name] = np.zeros(shape, dtype=datatype_to_numpy(spec.datatype))
        return batch


_DTYPES = {
    name: np.dtype(code)
    for name, code in {
        "BOOL": "bool", "INT8": "int8", "INT16": "int16", "INT32": "int32", "INT64": "int64",
        "UINT8": "uint8", "UINT16": "uint16", "UINT32": "uint32", "UINT64": "uint64",
        "FP16": "float16", "FP32": "float32", "FP64": "float64", "BF16": "float32",
        "BYTES": "object",
    }.items()
}  # fmt: skip


def datatype_to_numpy(datatype: str) -> np.dtype:
    return _DTYPES[datatype]


# How each fixed-size datatype is laid out in raw tensor bytes (binary extension, gRPC raw
# contents): little-endian; BF16 travels as the upper 16 bits of a float32.
RAW_DTYPES: dict[str, np.dtype] = {
    name: np.dtype("<u2") if name == "BF16" else dtype.newbyteorder("<")
    for name, dtype in _DTYPES.items()
    if name != "BYTES"
}


def numpy_to_datatype(dtype: np.dtype) -> str:
    return _NUMPY_TO_DATATYPE.get(dtype.kind, "BYTES")


def _final_step(estimator: Any) -> Any:
    steps = getattr(estimator, "steps", None)
    return steps[-1][1] if steps else estimator


def _encoders(estimator: Any) -> Iterator[tuple[list[str], Any, bool]]:
    """(input columns, fitted encoder, whether the encoder sees the raw column)."""
    steps = getattr(estimator, "steps", None) or [("", estimator)]
    first = steps[0][1]
    if hasattr(first, "categories_") and hasattr(first, "feature_names_in_"):
        yield [str(n) for n in first.feature_names_in_], first, True
    for _, step in steps:
        for _, transformer, columns in getattr(step, "transformers_", []):
            if isinstance(columns, str) and columns in ("drop", "passthrough"):
                continue
            names = [columns] if isinstance(columns, str) else list(columns)
            if not all(isinstance(n, str) for n in names):
                continue
            inner = getattr(transformer, "steps", None)
            if hasattr(transformer, "categories_"):
                yield names, transformer, True
            elif inner and hasattr(inner[0][1], "categories_"):
                yield names, inner[0][1], True
            elif inner and hasattr(inner[-1][1], "categories_"):
                yield names, inner[-1][1], False


def _derive_categories(
    estimator: Any,
) -> tuple[dict[str, tuple[str, ...]], dict[str, tuple[str, ...]]]:
    """Enforced categories (an encoder that raises on unknowns sees the column) and all."""
    enforced: dict[str, tuple[str, ...]] = {}
    known: dict[str, tuple[str, ...]] = {}
    for names, encoder, direct in _encoders(estimator):
        strict = direct and getattr(encoder, "handle_unknown", "error") == "error"
        for name, cats in zip(names, encoder.categories_, strict=False):
            strings = tuple(c for c in np.asarray(cats).tolist() if isinstance(c, str))
            if not strings:
                continue
            known.setdefault(name, strings)
            if strict:
                previous = enforced.get(name)
                enforced[name] = (
                    strings if previous is None else tuple(c for c in previous if c in strings)
                )
    return enforced, known


def _derive_inputs(estimator: Any) -> tuple[tuple[TensorSpec, ...], bool]:
    names = getattr(estimator, "feature_names_in_", None)
    if names is not None:
        strings = set(_derive_categories(estimator)[1])
        specs = tuple(
            TensorSpec(str(n), "BYTES" if str(n) in strings else "FP64", (-1,)) for n in names
        )
        return specs, True
    n_features = getattr(estimator, "n_features_in_", None)
    if n_features is None:
        raise SettingsError("schema", "the estimator is not fitted: it has no n_features_in_")
    return (TensorSpec(NUMERIC_INPUT, "FP64", (-1, int(n_features))),), False


def _derive_outputs(estimator: Any) -> tuple[TensorSpec, ...]:
    final = _final_step(estimator)
    classes = getattr(final, "classes_", None)
    outputs = []
    if hasattr(estimator, "predict"):
        if classes is not None:
            outputs.append(
                TensorSpec("predict", numpy_to_datatype(np.asarray(classes).dtype), (-1,))
            )
        else:
            n_outputs = getattr(final, "n_outputs_", 1)
            shape = (-1,) if n_outputs in (None, 1) else (-1, int(n_outputs))
            outputs.append(TensorSpec("predict", "FP64", shape))
    n_classes = len(classes) if classes is not None and np.ndim(classes) == 1 else -1
    if hasattr(estimator, "predict_proba"):
        outputs.append(TensorSpec("predict_proba", "FP64", (-1, n_classes)))
    if hasattr(estimator, "decision_function"):
        shape = (-1,) if n_classes == 2 else (-1, n_classes)
        outputs.append(TensorSpec("decision_function", "FP64", shape))
    if hasattr(estimator, "transform"):
        outputs.append(TensorSpec("transform", "FP64", (-1, -1)))
    return tuple(outputs)


def _contradiction(kind: str, declared: TensorSpec, derived: TensorSpec | None) -> str | None:
    if derived is None:
        return f"declared {kind} '{declared.name}' is not one the estimator has"
    numeric_pair = kind == "input" and "BYTES" not in (declared.datatype, derived.datatype)
    if declared.datatype != derived.datatype and not numeric_pair:
        return (
            f"declared {kind} '{declared.name}' has datatype {declared.datatype}, "
            f"the estimator gives {derived.datatype}"
        )
    if len(declared.shape) != len(derived.shape) or any(
        a != b and -1 not in (a, b) for a, b in zip(declared.shape, derived.shape, strict=True)
    ):
        return (
            f"declared {kind} '{declared.name}' has shape {list(declared.shape)}, "
            f"the estimator gives {list(derived.shape)}"
        )
    return None


def _from_metadata(tensors: Sequence[MetadataTensor]) -> tuple[TensorSpec, ...]:
    return tuple(TensorSpec(t.name, t.datatype, tuple(t.shape)) for t in tensors)


def _reconcile(
    kind: str, declared: tuple[TensorSpec, ...], derived: tuple[TensorSpec, ...]
) -> tuple[TensorSpec, ...]:
    if not declared:
        return derived
    by_name = {spec.name: spec for spec in derived}
    for spec in declared:
        problem = _contradiction(kind, spec, by_name.get(spec.name))
        if problem:
            raise SettingsError("model-settings.json", problem)
    return declared


def derive_schema(
    estimator: Any,
    declared_inputs: Sequence[MetadataTensor] = (),
    declared_outputs: Sequence[MetadataTensor] = (),
) -> ModelSchema:
    """The effective schema; a declaration that contradicts the estimator fails the load."""
    inputs, named_columns = _derive_inputs(estimator)
    if declared_inputs and not named_columns and len(declared_inputs) == 1:
        declared = _from_metadata(declared_inputs)
        renamed = (TensorSpec(declared[0].name, inputs[0].datatype, inputs[0].shape),)
        inputs = _reconcile("input", declared, renamed)
    else:
        inputs = _reconcile("input", _from_metadata(declared_inputs), inputs)
    outputs = _reconcile("output", _from_metadata(declared_outputs), _derive_outputs(estimator))
    categories, vocabulary = _derive_categories(estimator) if named_columns else ({}, {})
    return ModelSchema(
        inputs=inputs,
        outputs=outputs,
        named_columns=named_columns,
        categories=categories,
        vocabulary=vocabulary,
    )
