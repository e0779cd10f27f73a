"""Runs the estimator's methods and turns their arrays into V2 response tensors.

Estimator code is contained here: whatever it raises, ``BaseException`` included
(``KeyboardInterrupt``, ``SystemExit``, ``MemoryError``, ``GeneratorExit``), becomes a
``PredictionFailed`` naming it. Left alone, a ``KeyboardInterrupt`` or ``SystemExit``
raised in a request's task stops the event loop and ends the process. The server's own
SIGINT never arrives as an exception in estimator code: it is a loop signal handler
(``V2Server``), so containing them here cannot swallow a real shutdown.
"""

from collections.abc import Mapping, Sequence
from typing import Any, NamedTuple

import numpy as np
from mlserver.types import ResponseOutput, TensorData

from .classification import classify
from .construct import construct
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
        except BaseException as exc:  # noqa: BLE001 - see the module docstring
            raise PredictionFailed(model, exc) from exc
    return results


_CANONICAL = {"f": np.float64, "i": np.int64, "u": np.uint64, "b": np.bool_}


class Tensor(NamedTuple):
    """A response tensor without MLServer's types: what the lean REST path renders."""

    name: str
    datatype: str
    shape: list[int]
    values: np.ndarray


def to_tensor(name: str, values: np.ndarray) -> Tensor:
    """The array in its canonical dtype (64-bit numbers, objects for text) and its V2 type."""
    canonical = _CANONICAL.get(values.dtype.kind)
    if canonical is not None:
        values = values.astype(canonical, copy=False)
    elif values.dtype.kind != "O":
        values = values.astype(object)
    return Tensor(name, numpy_to_datatype(values.dtype), list(values.shape), values)


def build_tensors(
    model: str,
    results: Mapping[str, np.ndarray],
    methods: Sequence[str],
    top_k: dict[str, int],
    labels: Any,
) -> list[Tensor]:
    tensors = []
    for name in methods:
        values = results[name]
        if name in top_k:
            values = classify(model, name, values, top_k[name], labels)
        tensors.append(to_tensor(name, values))
    return tensors


def build_outputs(
    model: str,
    results: Mapping[str, np.ndarray],
    methods: Sequence[str],
    top_k: dict[str, int],
    labels: Any,
) -> list[ResponseOutput]:
    return [
        construct(
            ResponseOutput,
            {
                "name": tensor.name,
                "datatype": tensor.datatype,
                "shape": tensor.shape,
                "data": construct(TensorData, {"root": tensor.values}),
                "parameters": None,
            },
        )
        for tensor in build_tensors(model, results, methods, top_k, labels)
    ]
