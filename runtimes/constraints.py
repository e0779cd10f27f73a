"""Declared and derived value constraints, compiled once at load and checked per request.

Keys of ``parameters.extra.features``:

- a model with named columns: the column's name;
- a model with one 2-D numeric input: the column index (``"0"``, ``"1"``, ...) or a name
  from ``parameters.extra.feature_names``.

Numeric features take ``min``/``max`` (inclusive), string features ``categories``.
Categories derived from an encoder with ``handle_unknown="error"`` apply unless declared;
declared ones must be a subset of the encoder's, since others would fail in the estimator.
"""

from collections.abc import Mapping
from dataclasses import dataclass, field

import numpy as np

from .errors import InvalidInput, SettingsError
from .schema import ModelSchema, TensorSpec
from .settings import FeatureConstraint, ModelExtra


@dataclass(frozen=True)
class NumericRange:
    """Inclusive bounds per column of one input (one column for a named-column input)."""

    labels: tuple[str, ...]
    low: np.ndarray
    high: np.ndarray


@dataclass(frozen=True)
class Constraints:
    max_batch_size: int = 0
    """0: no limit, as MLServer's ``ModelSettings.max_batch_size`` default."""
    ranges: Mapping[str, NumericRange] = field(default_factory=dict)
    categories: Mapping[str, frozenset[str]] = field(default_factory=dict)

    def check(self, model: str, arrays: Mapping[str, np.ndarray]) -> None:
        for name, bounds in self.ranges.items():
            _check_range(model, name, bounds, arrays[name])
        for name, allowed in self.categories.items():
            for row, value in enumerate(arrays[name].reshape(-1)):
                if value not in allowed:
                    raise InvalidInput(
                        model,
                        name,
                        "has a value outside its categories",
                        f"one of {sorted(allowed)}",
                        f"{value!r} in row {row}",
                    )


def _check_range(model: str, name: str, bounds: NumericRange, array: np.ndarray) -> None:
    values = array if array.ndim == 2 else array.reshape(-1, 1)
    outside = (values < bounds.low) | (values > bounds.high)
    if not outside.any():
        return
    row, column = (int(i) for i in np.argwhere(outside)[0])
    label = bounds.labels[column]
    low, high = bounds.low[column], bounds.high[column]
    if low == -np.inf:
        expected = f"values <= {high:g}"
    elif high == np.inf:
        expected = f"values >= {low:g}"
    else:
        expected = f"values in [{low:g}, {high:g}]"
    raise InvalidInput(
        model,
        name,
        f"feature {label} is out of its declared range"
        if label
        else "is out of its declared range",
        expected,
        f"{values[row, column]:g} in row {row}",
    )


def _feature_columns(
    schema: ModelSchema, extra: ModelExtra, source: str
) -> dict[str, tuple[TensorSpec, int]]:
    """Every key ``features`` may use, mapped to (input, column)."""
    if schema.named_columns:
        if extra.feature_names is not None:
            raise SettingsError(
                source, "feature_names is only for a 2-D numeric input; columns are named already"
            )
        return {spec.name: (spec, 0) for spec in schema.inputs}
    spec = schema.inputs[0]
    n_features = spec.shape[-1] if len(spec.shape) == 2 else -1
    keys = {str(i): (spec, i) for i in range(max(n_features, 0))}
    if extra.feature_names is not None:
        if len(extra.feature_names) != n_features:
            raise SettingsError(
                source,
                f"feature_names has {len(extra.feature_names)} names, "
                f"input '{spec.name}' has {n_features} features",
            )
        keys.update({n: (spec, i) for i, n in enumerate(extra.feature_names)})
    return keys


def build_constraints(
    schema: ModelSchema, extra: ModelExtra, max_batch_size: int, source: str
) -> Constraints:
    """Compile the declared constraints; one that names no feature fails the load."""
    columns = _feature_columns(schema, extra, source)
    ranges: dict[str, tuple[list[str], list[float], list[float]]] = {}
    categories = {name: frozenset(cats) for name, cats in schema.categories.items()}
    for key, rule in extra.features.items():
        if key not in columns:
            raise SettingsError(
                source,
                f"parameters.extra.features: unknown feature '{key}' "
                f"(features: {sorted(columns, key=_natural)})",
            )
        spec, column = columns[key]
        if rule.categories is not None:
            categories[spec.name] = _declared_categories(schema, spec, key, rule, source)
            continue
        if spec.datatype == "BYTES":
            raise SettingsError(
                source, f"feature '{key}' holds strings: use categories, not min/max"
            )
        width = spec.shape[-1] if not schema.named_columns else 1
        labels, low, high = ranges.setdefault(
            spec.name,
            (
                [""] if schema.named_columns else [f"'{i}'" for i in range(width)],
                [-np.inf] * width,
                [np.inf] * width,
            ),
        )
        if not schema.named_columns:
            named = key == str(column)
            labels[column] = f"'{key}'" if named else f"'{key}' (column {column})"
        low[column] = rule.min if rule.min is not None else -np.inf
        high[column] = rule.max if rule.max is not None else np.inf
    return Constraints(
        max_batch_size=max_batch_size,
        ranges={
            name: NumericRange(tuple(labels), np.asarray(low), np.asarray(high))
            for name, (labels, low, high) in ranges.items()
        },
        categories=categories,
    )


def _declared_categories(
    schema: ModelSchema, spec: TensorSpec, key: str, rule: FeatureConstraint, source: str
) -> frozenset[str]:
    if spec.datatype != "BYTES":
        raise SettingsError(source, f"feature '{key}' is numeric: use min/max, not categories")
    declared = frozenset(rule.categories or ())
    derived = schema.categories.get(spec.name)
    if derived is not None and not declared <= set(derived):
        unknown = sorted(declared - set(derived))
        raise SettingsError(
            source,
            f"feature '{key}': categories {unknown} are unknown to the estimator's encoder "
            f"(it knows {list(derived)})",
        )
    return declared


def _natural(key: str) -> tuple[int, str]:
    return (int(key), "") if key.isdigit() else (1 << 30, key)
