"""The verification set: rows on which the compiled path must equal scikit-learn.

- Schema rows: drawn around the features' location and scale (from the version's sample,
  else from a leading StandardScaler, else 0 and 1), some ten times wider, plus zeros.
- Split rows, for tree models: for every split (up to ``MAX_SPLITS``), a row with that
  feature on the threshold itself, on its float32 rounding and on the float32 values either
  side. Pipelines are walked back to the input through ``inverse_transform``.
- Sample rows: the version folder's ``sample.npy`` (one 2-D array) or ``sample.csv`` (named
  columns, with a header), real data that the random rows cannot imitate.
"""

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
from sklearn.pipeline import Pipeline

from ..schema import ModelSchema
from .convert import ConversionError, final_step

SAMPLE_ARRAY = "sample.npy"
SAMPLE_FRAME = "sample.csv"
MAX_SAMPLE_ROWS = 2000
MAX_SPLITS = 2500
RANDOM_ROWS = 64
SEED = 0


def string_vocabularies(estimator: Any) -> dict[str, np.ndarray]:
    """Known categories per string column, from the encoders a ColumnTransformer fitted."""
    found: dict[str, np.ndarray] = {}
    steps = estimator.steps if isinstance(estimator, Pipeline) else [("", estimator)]
    for _, step in steps:
        for _, transformer, columns in getattr(step, "transformers_", []):
            encoder = final_step(transformer) if not isinstance(transformer, str) else None
            categories = getattr(encoder, "categories_", None)
            if categories is None or isinstance(columns, str):
                continue
            for name, cats in zip(columns, categories, strict=False):
                values = np.asarray(cats)
                if values.dtype.kind in "OUS":
                    found[str(name)] = values.astype(object)
    return found


def load_sample(folder: Path, schema: ModelSchema) -> np.ndarray | pd.DataFrame | None:
    if schema.named_columns:
        path = folder / SAMPLE_FRAME
        if not path.is_file():
            return None
        strings = {s.name: str for s in schema.inputs if s.datatype == "BYTES"}
        frame = pd.read_csv(path, dtype=strings, keep_default_na=False)
        missing = [s.name for s in schema.inputs if s.name not in frame.columns]
        if missing:
            raise ConversionError(SAMPLE_FRAME, f"has no column {missing[0]!r}")
        numeric = {s.name: np.float64 for s in schema.inputs if s.datatype != "BYTES"}
        return frame[[s.name for s in schema.inputs]].head(MAX_SAMPLE_ROWS).astype(numeric)
    path = folder / SAMPLE_ARRAY
    if not path.is_file():
        return None
    array = np.load(path, allow_pickle=False)
    width = schema.inputs[0].shape[-1]
    if array.ndim != 2 or array.shape[1] != width:
        raise ConversionError(SAMPLE_ARRAY, f"has shape {list(array.shape)}, expected [N, {width}]")
    return np.asarray(array[:MAX_SAMPLE_ROWS], dtype=np.float64)


def _location_scale(estimator: Any, width: int, sample: Any) -> tuple[np.ndarray, np.ndarray]:
    if sample is not None and len(sample):
        values = np.asarray(sample, dtype=np.float64)
        scale = values.std(axis=0)
        return values.mean(axis=0), np.where(scale > 0, scale, 1.0)
    first = estimator.steps[0][1] if isinstance(estimator, Pipeline) else estimator
    mean, scale = getattr(first, "mean_", None), getattr(first, "scale_", None)
    if mean is not None and scale is not None and np.shape(mean) == (width,):
        return np.asarray(mean, dtype=np.float64), np.asarray(scale, dtype=np.float64)
    return np.zeros(width), np.ones(width)


def _splits(final: Any) -> Iterator[tuple[int, float]]:
    """(feature, threshold) of every split of a tree model, in the final step's input space."""
    native = getattr(final, "split_points", None)  # a booster (runtimes.formats.boosters)
    if callable(native):
        yield from native()
        return
    trees = (
        [final] if hasattr(final, "tree_") else list(np.ravel(getattr(final, "estimators_", [])))
    )
    for tree in trees:
        structure = getattr(tree, "tree_", None)
        if structure is None:
            continue
        inner = structure.feature >= 0
        yield from zip(
            structure.feature[inner].tolist(), structure.threshold[inner].tolist(), strict=True
        )
    for stage in getattr(final, "_predictors", []):  # HistGradientBoosting
        for predictor in stage:
            nodes = predictor.nodes[~predictor.nodes["is_leaf"].astype(bool)]
            yield from zip(
                nodes["feature_idx"].tolist(), nodes["num_threshold"].tolist(), strict=True
            )


def _around(threshold: float) -> list[float]:
    rounded = np.float32(threshold)
    return [
        threshold,
        float(rounded),
        float(np.nextafter(rounded, np.float32(np.inf))),
        float(np.nextafter(rounded, np.float32(-np.inf))),
    ]


def split_rows(estimator: Any, base: np.ndarray) -> tuple[np.ndarray | None, str]:
    """Rows whose features sit on split thresholds, or None and why not."""
    splits = list(dict.fromkeys(_splits(final_step(estimator))))
    if not splits:
        return None, "no splits"
    if len(splits) > MAX_SPLITS:
        picks = np.linspace(0, len(splits) - 1, MAX_SPLITS).astype(int)
        splits = [splits[i] for i in picks]
    prefix = Pipeline(estimator.steps[:-1]) if isinstance(estimator, Pipeline) else None
    if prefix is not None and not all(hasattr(s, "inverse_transform") for _, s in prefix.steps):
        return None, "split rows not derivable: a step before the trees has no inverse_transform"
    start = prefix.transform(base[None, :])[0] if prefix is not None else base
    rows = []
    for feature, threshold in splits:
        for value in _around(threshold):
            row = np.array(start, dtype=np.float64)
            row[feature] = value
            rows.append(row)
    model_space = np.array(rows)
    inputs = prefix.inverse_transform(model_space) if prefix is not None else model_space
    return np.asarray(inputs, dtype=np.float64), f"{len(splits)} splits"


def verification_rows(
    estimator: Any, schema: ModelSchema, sample: Any
) -> tuple[np.ndarray | pd.DataFrame, str]:
    """The rows, and a short account of where they came from."""
    rng = np.random.default_rng(SEED)
    if schema.named_columns:
        return _named_rows(estimator, schema, sample, rng)
    width = schema.inputs[0].shape[-1]
    location, scale = _location_scale(estimator, width, sample)
    parts = [
        np.zeros((1, width)),
        location[None, :],
        location + scale * rng.standard_normal((RANDOM_ROWS, width)),
        location + 10 * scale * rng.standard_normal((RANDOM_ROWS // 4, width)),
    ]
    account = [f"{sum(len(p) for p in parts)} schema rows"]
    on_splits, why = split_rows(estimator, location)
    if on_splits is not None:
        parts.append(on_splits)
        account.append(f"{len(on_splits)} rows on {why}")
    elif why != "no splits":
        account.append(why)
    if sample is not None:
        parts.append(sample)
        account.append(f"{len(sample)} sample rows")
    return np.concatenate(parts), ", ".join(account)


def _named_rows(
    estimator: Any, schema: ModelSchema, sample: Any, rng: np.random.Generator
) -> tuple[pd.DataFrame, str]:
    vocabularies = string_vocabularies(estimator)
    count = RANDOM_ROWS + RANDOM_ROWS // 4
    columns: dict[str, Any] = {}
    for spec in schema.inputs:
        if spec.datatype == "BYTES":
            vocabulary = vocabularies[spec.name]
            columns[spec.name] = vocabulary[rng.integers(0, len(vocabulary), count)]
        else:
            known = sample[spec.name].to_numpy(dtype=np.float64) if sample is not None else None
            location = known.mean() if known is not None and len(known) else 0.0
            spread = known.std() if known is not None and len(known) and known.std() else 1.0
            columns[spec.name] = location + spread * rng.standard_normal(count)
    frame = pd.DataFrame(columns)
    account = [f"{count} schema rows"]
    if next(_splits(final_step(estimator)), None) is not None:
        account.append("no split rows through a ColumnTransformer")
    if sample is not None:
        frame = pd.concat([frame, sample], ignore_index=True)
        account.append(f"{len(sample)} sample rows")
    return frame, ", ".join(account)
