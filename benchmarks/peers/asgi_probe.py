"""The REST ceiling: a bare ASGI app that answers V2 inference for one LogisticRegression.

No framework, no validation, no metrics: uvicorn (httptools, uvloop) parses HTTP, orjson
the V2 JSON, numpy computes ``predict``. It also answers the metadata, config and
readiness calls that perf_analyzer and the harness make, and Triton's binary tensor
extension (``Inference-Header-Content-Length``), which perf_analyzer's HTTP client sends.

    python -m benchmarks.peers.asgi_probe --port 8000 --model light --artifact model.joblib
"""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import Any

import numpy as np
import orjson
import uvicorn

from benchmarks.peers.linear import NumpyLogistic

Scope = dict[str, Any]
JSON_HEADERS = [(b"content-type", b"application/json")]


class Probe:
    def __init__(self, name: str, model: NumpyLogistic):
        self.name = name
        self.model = model
        prefix = f"/v2/models/{name}"
        self.infer_path = prefix + "/infer"
        features = model.n_features
        tensor_in = {"name": "input-0", "datatype": "FP64", "shape": [-1, features]}
        tensor_out = {"name": "predict", "datatype": "INT64", "shape": [-1]}
        self.static = {
            "/v2": orjson.dumps({"name": "asgi-probe", "version": "1", "extensions": []}),
            "/v2/health/ready": b"",
            "/v2/health/live": b"",
            prefix + "/ready": b"",
            prefix: orjson.dumps(
                {
                    "name": name,
                    "versions": ["1"],
                    "platform": "probe",
                    "inputs": [tensor_in],
                    "outputs": [tensor_out],
                }
            ),  # fmt: skip
            prefix + "/config": orjson.dumps(
                {
                    "name": name,
                    "max_batch_size": 0,
                    "input": [
                        {"name": "input-0", "data_type": "TYPE_FP64", "dims": [-1, features]}
                    ],
                    "output": [{"name": "predict", "data_type": "TYPE_INT64", "dims": [-1]}],
                }
            ),  # fmt: skip
        }

    async def __call__(self, scope: Scope, receive: Any, send: Any) -> None:
        if scope["type"] != "http":
            return
        path = scope["path"]
        if scope["method"] == "POST" and path == self.infer_path:
            body = b""
            while True:
                message = await receive()
                body += message.get("body", b"")
                if not message.get("more_body"):
                    break
            header_length = None
            for key, value in scope["headers"]:
                if key == b"inference-header-content-length":
                    header_length = int(value)
            await self._reply(send, 200, self.infer(body, header_length))
            return
        static = self.static.get(path)
        await self._reply(send, 404 if static is None else 200, static or b"")

    def infer(self, body: bytes, header_length: int | None) -> bytes:
        if header_length is None:
            request = orjson.loads(body)
            tensor = request["inputs"][0]
            rows = np.asarray(tensor["data"], dtype=np.float64).reshape(tensor["shape"])
        else:
            request = orjson.loads(body[:header_length])
            tensor = request["inputs"][0]
            rows = np.frombuffer(body, dtype="<f8", offset=header_length).reshape(tensor["shape"])
        labels = self.model.predict(rows)
        output = {"name": "predict", "datatype": "INT64", "shape": [len(labels)],
                  "data": labels.tolist()}  # fmt: skip
        return orjson.dumps({"model_name": self.name, "model_version": "1", "outputs": [output]})

    @staticmethod
    async def _reply(send: Any, status: int, body: bytes) -> None:
        await send({"type": "http.response.start", "status": status, "headers": JSON_HEADERS})
        await send({"type": "http.response.body", "body": body})


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--model", required=True)
    parser.add_argument("--artifact", type=Path, required=True)
    args = parser.parse_args(argv)
    app = Probe(args.model, NumpyLogistic.from_artifact(args.artifact))
    uvicorn.run(app, host="127.0.0.1", port=args.port, http="httptools", loop="uvloop",
                log_level="warning", access_log=False)  # fmt: skip


if __name__ == "__main__":
    main()
