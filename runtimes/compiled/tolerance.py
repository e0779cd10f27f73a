"""What "equal" means between the compiled path and scikit-learn.

Labels (any non-float output) must be identical in value, dtype and shape. Float outputs
(probabilities, regression values, scores) must satisfy ``|onnx - sklearn| <= ATOL + RTOL *
|sklearn|`` element-wise, the rule of ``numpy.testing.assert_allclose``. ONNX Runtime's tree
ensembles sum in float32, so a forest's probabilities carry float32 rounding (measured:
under 1e-7); RTOL covers regression trees whose values are large (float32 keeps about 7
significant digits). Linear models and scalers run in float64 and agree to about 1e-15.
"""

import numpy as np

ATOL = 1e-6
RTOL = 1e-6


def disagreement(method: str, expected: np.ndarray, got: np.ndarray) -> str | None:
    """Why ``got`` does not equal ``expected`` under the rule above, or None if it does."""
    if got.shape != expected.shape:
        return f"{method}: shape {list(got.shape)}, sklearn gives {list(expected.shape)}"
    if got.dtype != expected.dtype:
        return f"{method}: dtype {got.dtype}, sklearn gives {expected.dtype}"
    if expected.dtype.kind in "fc":
        excess = np.abs(got - expected) - (ATOL + RTOL * np.abs(expected))
        if not (excess <= 0).all():
            worst = int(np.nanargmax(np.where(np.isnan(excess), np.inf, excess).reshape(-1)))
            row = np.unravel_index(worst, expected.shape)[0]
            diff = np.abs(got - expected).reshape(-1)[worst]
            return (
                f"{method}: row {row} differs by {diff:.3g}, over the tolerance "
                f"{ATOL:g} + {RTOL:g} * |value|"
            )
        return None
    unequal = expected != got
    if np.ndim(unequal) and unequal.any():
        rows = np.unique(np.nonzero(unequal)[0])
        return f"{method}: {len(rows)} of {len(expected)} rows differ, first row {rows[0]}"
    return None


def max_abs_difference(expected: np.ndarray, got: np.ndarray) -> float:
    if expected.dtype.kind not in "fc" or expected.size == 0:
        return 0.0
    return float(np.max(np.abs(got.astype(np.float64) - expected)))
