"""A heavy model served by sklearn batches concurrent requests, and every request still
gets its own rows and the outputs it asked for (MLServer's batcher drops them)."""

from concurrent.futures import ThreadPoolExecutor

import numpy as np
import requests
from sklearn.datasets import load_breast_cancer

MODEL = "breast-cancer-sklearn"


def test_concurrent_requests_with_mixed_outputs(server, estimators):
    assert f"model '{MODEL}' version 1 batches requests" in server.log_text()
    data = load_breast_cancer().data
    estimator = estimators[(MODEL, "1")]

    def ask(index: int):
        rows = data[index : index + 1 + index % 3]
        outputs = [{"name": "predict"}] + ([{"name": "predict_proba"}] if index % 2 else [])
        body = {
            "inputs": [
                {"name": "input-0", "shape": list(rows.shape), "datatype": "FP64",
                 "data": rows.ravel().tolist()}
            ],
            "outputs": outputs,
        }  # fmt: skip
        answer = requests.post(f"{server.base}/v2/models/{MODEL}/infer", json=body, timeout=60)
        return rows, outputs, answer

    with ThreadPoolExecutor(max_workers=16) as pool:
        results = list(pool.map(ask, range(48)))
    for rows, outputs, answer in results:
        assert answer.status_code == 200, answer.text
        served = {o["name"]: np.reshape(o["data"], o["shape"]) for o in answer.json()["outputs"]}
        assert set(served) == {o["name"] for o in outputs}
        np.testing.assert_array_equal(served["predict"], estimator.predict(rows))
        if "predict_proba" in served:
            np.testing.assert_array_equal(served["predict_proba"], estimator.predict_proba(rows))
