"""Which inputs the compiled path may answer: those on which sklearn would answer too.

The backends must agree on which inputs are valid, not only on values. The rule is
decided once, here: the graph answers an input only when it is finite and within
float32's range (``|x| <= 3.4e38``) and, for a tree model (sklearn's trees cast their
features to float32 and refuse what becomes infinite), only when what reaches the trees
is too. Every other input is left to sklearn, which answers or refuses it exactly as the
sklearn backend does, so the status, the message and the values are the same by
construction. Leaving an input to sklearn costs speed, never correctness, so each check
errs towards sklearn:

- a bare model: the raw features;
- a tree behind per-feature scalers (Standard, MinMax, MaxAbs, Robust): their combined
  ``x * scale + offset``, in closed form, with a margin for rounding;
- a tree behind any other steps: those steps run in sklearn, on the request, and their
  output is checked as sklearn's tree would check it.
"""

from collections.abc import Callable
from typing import Any

import numpy as np
import pandas as pd
from sklearn.pipeline import Pipeline
from sklearn.preprocessing import MaxAbsScaler, MinMaxScaler, RobustScaler, StandardScaler

from .convert import FLOAT32_TREES, final_step

FLOAT32_MAX = float(np.finfo(np.float32).max)
# sklearn's own arithmetic differs from the closed form by a few float64 ulps.
_AFFINE_LIMIT = FLOAT32_MAX * (1 - 1e-9)

Guard = Callable[[Any], bool]
"""Extra admission test on the request's features; None when the raw check suffices."""


def in_domain(values: np.ndarray) -> bool:
    """Finite and within float32's range; NaN fails the comparison, so it is out too."""
    return bool((np.abs(values) <= FLOAT32_MAX).all())


def _affine(step: Any) -> tuple[np.ndarray | float, np.ndarray | float] | None:
    """``(scale, offset)`` with ``step.transform(x) == x * scale + offset``, if it is one."""
    if isinstance(step, StandardScaler):
        mean = step.mean_ if step.mean_ is not None else 0.0
        scale = step.scale_ if step.scale_ is not None else 1.0
        return 1.0 / scale, -mean / scale
    if isinstance(step, RobustScaler):
        center = step.center_ if step.center_ is not None else 0.0
        scale = step.scale_ if step.scale_ is not None else 1.0
        return 1.0 / scale, -center / scale
    if isinstance(step, MinMaxScaler) and not step.clip:
        return step.scale_, step.min_
    if isinstance(step, MaxAbsScaler):
        return 1.0 / step.scale_, 0.0
    return None


def _affine_guard(steps: list[Any]) -> Guard | None:
    scale: np.ndarray | float = 1.0
    offset: np.ndarray | float = 0.0
    for step in steps:
        found = _affine(step)
        if found is None:
            return None
        step_scale, step_offset = found
        scale = np.multiply(scale, step_scale)
        offset = np.multiply(offset, step_scale) + step_offset

    def admits(features: Any) -> bool:
        reached = np.asarray(features, dtype=np.float64) * scale + offset
        return bool((np.abs(reached) <= _AFFINE_LIMIT).all())

    return admits


def _prefix_guard(prefix: Any) -> Guard:
    def admits(features: Any) -> bool:
        try:
            reached = prefix.transform(features)
            dense = reached.toarray() if hasattr(reached, "toarray") else reached
            with np.errstate(over="ignore", invalid="ignore"):
                return bool(np.isfinite(np.asarray(dense, dtype=np.float32)).all())
        except Exception:  # noqa: BLE001 - sklearn decides what its own steps refuse
            return False

    return admits


def tree_guard(estimator: Any) -> Guard | None:
    """The extra check for a float32 tree behind other steps; None where none is needed."""
    if not isinstance(estimator, Pipeline) or len(estimator.steps) < 2:
        return None
    if not isinstance(final_step(estimator), FLOAT32_TREES):
        return None
    steps = [step for _, step in estimator.steps[:-1] if step not in (None, "passthrough")]
    if not steps:
        return None
    prefix = _prefix_guard(estimator[:-1])
    affine = _affine_guard(steps)
    if affine is None:
        return prefix

    def admits(features: Any) -> bool:
        # Columns by name go through sklearn's own steps, which select them by name.
        return prefix(features) if isinstance(features, pd.DataFrame) else affine(features)

    return admits
