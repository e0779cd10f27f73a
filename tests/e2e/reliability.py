"""Helpers shared by the reliability tests: waiting on the index, raw REST infer."""

from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import requests
from sklearn.datasets import load_iris

from tests.harness import wait_until

ROOT = Path(__file__).resolve().parents[2]
IRIS = np.ascontiguousarray(load_iris().data[::10], dtype=np.float64)
PYTHONPATH = {"PYTHONPATH": str(ROOT)}


def wait_for(predicate: Callable[[], Any], what: str, timeout: float = 60.0) -> Any:
    """The harness's polling loop, with the argument order these tests use."""
    return wait_until(predicate, timeout, what)


def index(base: str, headers: dict[str, str] | None = None) -> dict[tuple[str, str], dict]:
    found = requests.post(f"{base}/v2/repository/index", headers=headers or {}, timeout=10)
    found.raise_for_status()
    return {(m["name"], m["version"]): m for m in found.json()}


def rest_infer(
    base: str, model: str, rows: np.ndarray, version: str | None = None, timeout: float = 30
) -> requests.Response:
    path = f"/v2/models/{model}" + (f"/versions/{version}" if version else "") + "/infer"
    body = {
        "inputs": [
            {"name": "input-0", "shape": list(rows.shape), "datatype": "FP64",
             "data": rows.tolist()}
        ]
    }  # fmt: skip
    return requests.post(base + path, json=body, timeout=timeout)
