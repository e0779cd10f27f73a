"""Triton's classification extension: top-k scores with their class labels.

A requested output with ``parameters.classification = k`` comes back as BYTES
``[batch, k]``, each element ``"<score>:<index>[:<label>]"``, highest score first.
"""

from collections.abc import Sequence
from typing import Any

import numpy as np
from mlserver.types import RequestOutput

from .errors import InvalidClassification


def classification_requests(model: str, outputs: Sequence[RequestOutput] | None) -> dict[str, int]:
    wanted: dict[str, int] = {}
    for output in outputs or []:
        value = getattr(output.parameters, "classification", None) if output.parameters else None
        if value is None:
            continue
        if not isinstance(value, int) or isinstance(value, bool) or value < 1:
            raise InvalidClassification(model, output.name, f"expected a count >= 1, got {value!r}")
        wanted[output.name] = value
    return wanted


def classify(model: str, name: str, scores: np.ndarray, k: int, labels: Any) -> np.ndarray:
    if scores.ndim != 2 or scores.dtype.kind not in "fiu":
        raise InvalidClassification(
            model, name, f"needs 2-D numeric scores such as predict_proba, got {scores.ndim}-D"
        )
    k = min(k, scores.shape[1])
    top = np.argsort(-scores, axis=1, kind="stable")[:, :k]
    names = list(labels) if labels is not None and len(labels) == scores.shape[1] else None
    rows = []
    for row, indices in zip(scores, top, strict=True):
        rows.append(
            [f"{row[i]:f}:{i}" + (f":{names[i]}" if names is not None else "") for i in indices]
        )
    return np.array(rows, dtype=object)
