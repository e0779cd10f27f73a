"""Runs the estimator's methods and turns their arrays into V2 response tensors."""

from collections.abc import Sequence
from typing import Any

import numpy as np
from mlserver.types import ResponseOutput

from .errors import EstimatorRejectedInput, PredictionFailed
from .schema import numpy_to_datatype

# Messages with which scikit-learn blames its input rather than itself.
_INPUT_FAULTS = (
    "contains nan",
    "contains infinity",
    "could not convert",
    "found unknown categor",
    "features, but",
    "expected 2d array",
    "found array with",
    "unknown label",
    "is not supported",
    "columns are missing",
)


def run_methods(
    model: str, estimator: Any, features: Any, methods: Sequence[str]
) -> dict[str, np.ndarray]:
    results: dict[str, np.ndarray] = {}
    for method in methods:
        try:
            results[method] = np.asarray(getattr(estimator, method)(features))
        except (ValueError, TypeError, KeyError) as exc:
            if any(fault in str(exc).lower() for fault in _INPUT_FAULTS):
                raise EstimatorRejectedInput(model, method, exc) from exc
            raise PredictionFailed(model, exc) from exc
        except Exception as exc:
            raise PredictionFailed(model, exc) from exc
    return results


def to_response_output(name: str, values: np.ndarray) -> ResponseOutput:
    datatype = numpy_to_datatype(values.dtype)
    if datatype == "BYTES":
        data: list[Any] = [str(v) for v in values.reshape(-1)]
    else:
        if values.dtype.kind == "f":
            values = values.astype(np.float64, copy=False)
        data = values.reshape(-1).tolist()
    return ResponseOutput(name=name, datatype=datatype, shape=list(values.shape), data=data)
