"""The lean REST path (one input, no parameters, no requested outputs) answers and refuses
exactly as the full path does: the same status and body bytes, the same error, the same
statistics. Each body is sent through ``RestInfer`` twice, lean and not, on the same
real runtime and data plane."""

import asyncio
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import joblib
import orjson
import pytest
from sklearn.datasets import load_iris
from sklearn.linear_model import LogisticRegression

from runtimes.dataplane import V2DataPlane
from runtimes.protocol.rest_codec import build_request, lean_input
from runtimes.protocol.rest_fastpath import RestInfer
from runtimes.protocol.rest_router import RestRequest

from .in_process import iris_counts, record_full_infers, release_metrics, serve_iris

X, Y = load_iris(return_X_y=True)


def _input(**fields: Any) -> dict[str, Any]:
    tensor = {"name": "input-0", "shape": [1, 4], "datatype": "FP64", "data": X[0].tolist()}
    tensor.update(fields)
    return tensor


BODIES = {
    "one row": {"inputs": [_input()]},
    "three rows, nested": {"inputs": [_input(shape=[3, 4], data=X[:3].tolist())]},
    "with an id": {"id": "r-1", "inputs": [_input()]},
    "ints": {"inputs": [_input(data=[5, 3, 1, 0])]},
    "unknown input": {"inputs": [_input(name="nope")]},
    "wrong datatype": {"inputs": [_input(datatype="FP32")]},
    "wrong shape": {"inputs": [_input(shape=[1, 3], data=[1.0, 2.0, 3.0])]},
    "empty batch": {"inputs": [_input(shape=[0, 4], data=[])]},
    "negative dim": {"inputs": [_input(shape=[-1, 4])]},
    "too few values": {"inputs": [_input(data=[1.0, 2.0])]},
    "strings": {"inputs": [_input(data=["a", "b", "c", "d"])]},
    "booleans": {"inputs": [_input(data=[True, False, True, 1.0])]},
    "nulls": {"inputs": [_input(data=[None, 1.0, 2.0, 3.0])]},
    "ragged": {"inputs": [_input(shape=[2, 4], data=[[1.0, 2.0, 3.0, 4.0], [1.0]])]},
    "huge": {"inputs": [_input(data=[1e309, 1.0, 2.0, 3.0])]},
    "scalar data": {"inputs": [_input(shape=[1, 1], data=1.0)]},
    "bad id": {"id": 7, "inputs": [_input()]},  # not lean: the full path's 400
}


@pytest.fixture
def plane(tmp_path: Path) -> Iterator[V2DataPlane]:
    joblib.dump(LogisticRegression(max_iter=500).fit(X, Y), tmp_path / "model.joblib")
    served, _ = asyncio.run(serve_iris(tmp_path))
    yield served
    release_metrics(served)


def _request(body: bytes, headers: dict[str, str]) -> RestRequest:
    sent = False

    async def receive() -> dict[str, Any]:
        nonlocal sent
        if sent:
            await asyncio.Event().wait()  # an open connection: nothing more arrives
        sent = True
        return {"type": "http.request", "body": body, "more_body": False}

    scope = {"headers": [(k.encode(), v.encode()) for k, v in headers.items()]}
    return RestRequest(scope, receive, {"model": "iris", "version": None}, 1 << 20)


def _answer(plane: V2DataPlane, lean: bool, body: bytes, headers: dict[str, str]) -> Any:
    async def run() -> Any:
        try:
            response = await RestInfer(plane, lean=lean)(_request(body, headers))
        except Exception as exc:  # noqa: BLE001 - the error is the answer compared
            return type(exc), str(exc)
        return response.status, response.body, response.headers

    return asyncio.run(run())


@pytest.mark.parametrize("case", sorted(BODIES))
def test_the_lean_path_answers_as_the_full_path(plane: V2DataPlane, case: str) -> None:
    body = orjson.dumps(BODIES[case])
    headers = {"content-type": "application/json"}
    assert _answer(plane, True, body, headers) == _answer(plane, False, body, headers)


def test_the_lean_path_is_taken_and_counts_as_the_full_path(plane: V2DataPlane) -> None:
    """The full path goes through ``infer``; the lean one must not, and both must leave
    the same statistics (rows, executions) for the served version."""
    full_calls = record_full_infers(plane)
    body = orjson.dumps(BODIES["three rows, nested"])
    headers = {"content-type": "application/json"}
    _answer(plane, True, body, headers)
    assert full_calls == []
    after_lean = iris_counts(plane)
    _answer(plane, False, body, headers)
    assert len(full_calls) == 1
    assert after_lean == (3, 1)
    assert iris_counts(plane) == (6, 2)



@pytest.mark.parametrize("reader", ["tracer", "prediction log"])
def test_a_logged_or_traced_request_takes_the_full_path(
    plane: V2DataPlane, tmp_path: Path, reader: str
) -> None:
    """The prediction log and the tracer read the ``InferenceRequest``: no lean path."""

    async def lean() -> Any:
        if reader == "tracer":
            plane.tracer = object()  # type: ignore[assignment]
        else:
            model = await plane.resolve("iris", None)
            sink = (tmp_path / "log.jsonl").as_uri()
            model.settings.parameters.extra = {"prediction_log": {"sink": sink}}  # type: ignore[union-attr]
        tensor = lean_input(BODIES["one row"])
        assert tensor is not None
        return await plane.infer_lean(tensor, "iris", None, lambda: None, None)  # type: ignore[arg-type]

    assert asyncio.run(lean()) is None


@pytest.mark.parametrize(
    "document",
    [
        {"inputs": [_input()], "parameters": {}},
        {"inputs": [_input()], "outputs": [{"name": "predict"}]},
        {"inputs": [_input(parameters={"binary_data_size": 32})]},
        {"inputs": [_input(), _input(name="x")]},
        {"inputs": [_input(shape=[1, True])]},
        {"inputs": [_input(datatype=None)]},
        {"inputs": [{"name": "input-0", "shape": [1, 4], "datatype": "FP64"}]},
        {"id": 3, "inputs": [_input()]},
        [],
    ],
)
def test_other_bodies_are_not_lean(document: Any) -> None:
    assert lean_input(document) is None


@pytest.mark.parametrize("case", sorted(set(BODIES) - {"bad id"}))
def test_a_lean_body_is_one_build_request_accepts(case: str) -> None:
    """The fallback after ``infer_lean`` declines builds the request outside the
    adapter's refusal handler: it must not raise."""
    document = BODIES[case]
    tensor = lean_input(document)
    assert tensor is not None
    request = build_request("iris", document, b"", {})
    (built,) = request.inputs
    assert (built.name, built.datatype, built.shape) == (
        tensor.name,
        tensor.datatype,
        tensor.shape,
    )
