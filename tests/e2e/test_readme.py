"""Every example in the README runs against the live server and matches the estimator."""

import json
import re
import shlex
import subprocess
from pathlib import Path

import numpy as np
import pytest

from runtimes.compiled.tolerance import ATOL, RTOL

ROOT = Path(__file__).resolve().parents[2]
BLOCKS = re.findall(r"```(bash|python)\n(.*?)```", (ROOT / "README.md").read_text(), re.S)
CURL = [code for lang, code in BLOCKS if lang == "bash" and code.startswith("curl")]
PYTHON = [code for lang, code in BLOCKS if lang == "python"]


def _localised(code: str, server) -> str:
    return code.replace("localhost:8080", server.http_url).replace(
        "localhost:8081", server.grpc_url
    )


def _estimator_for(url: str, estimators):
    match = re.search(r"/v2/models/([^/]+)(?:/versions/(\d+))?", url)
    assert match
    model, version = match.group(1), match.group(2)
    versions = sorted((v for (m, v) in estimators if m == model), key=int)
    return estimators[(model, version or versions[-1])]


def test_readme_has_examples():
    assert len(CURL) >= 3 and len(PYTHON) >= 2


@pytest.mark.parametrize("code", CURL, ids=[f"curl-{i}" for i in range(len(CURL))])
def test_curl_examples(server, estimators, code):
    args = shlex.split(_localised(code, server).replace("\\\n", " "))
    completed = subprocess.run(args, capture_output=True, check=True, timeout=30)
    answer = json.loads(completed.stdout)
    url = next(a for a in args if "/v2/models/" in a)
    estimator = _estimator_for(url, estimators)
    if "-d" not in args:
        assert answer["inputs"] and answer["outputs"]
        return
    body = json.loads(args[args.index("-d") + 1])
    X = np.asarray(body["inputs"][0]["data"], dtype=np.float64).reshape(body["inputs"][0]["shape"])
    for output in answer["outputs"]:
        expected = getattr(estimator, output["name"])(X)
        np.testing.assert_allclose(
            np.reshape(output["data"], output["shape"]), expected, rtol=RTOL, atol=ATOL
        )


@pytest.mark.parametrize("code", PYTHON, ids=[f"python-{i}" for i in range(len(PYTHON))])
def test_python_examples(server, estimators, code):
    namespace: dict = {}
    exec(compile(_localised(code, server), "README.md", "exec"), namespace)
    result, X = namespace["result"], namespace["X"]
    model = re.search(r'infer\("([^"]+)"', code).group(1)
    estimator = _estimator_for(f"/v2/models/{model}", estimators)
    compared = []
    for method in ("predict", "predict_proba"):
        served = result.as_numpy(method)
        if served is not None:
            np.testing.assert_allclose(served, getattr(estimator, method)(X), rtol=RTOL, atol=ATOL)
            compared.append(method)
    assert compared, "the example's answer held neither predict nor predict_proba"
