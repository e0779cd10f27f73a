"""The lean gRPC path (one input, no parameters, no requested outputs) answers and refuses
exactly as the full path does: the same ModelInferResponse bytes, or the same status code
and message, and the same statistics. Each request goes through ModelInfer (and
ModelStreamInfer) of two services on one real data plane and runtime, lean and not."""

import asyncio
import struct
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from types import SimpleNamespace
from typing import Any

import joblib
import numpy as np
import pytest
from grpc import aio
from sklearn.datasets import load_iris
from sklearn.linear_model import LogisticRegression

from runtimes.dataplane import V2DataPlane
from runtimes.extensions.handlers import ExtensionHandlers
from runtimes.extensions.statistics import Statistics
from runtimes.protocol.grpc.convert import to_inference_request
from runtimes.protocol.grpc.lean import lean_input
from runtimes.protocol.grpc.messages import SERVICE_NAME, message
from runtimes.protocol.grpc.service import TritonService, triton_handler
from tests.unit.grpc_context import FakeContext

from .in_process import iris_counts, record_full_infers, release_metrics, serve_iris

X, Y = load_iris(return_X_y=True)


def _request(
    rows: np.ndarray = X[:1],
    raw: list[bytes] | None = None,
    datatype: str = "FP64",
    shape: list[int] | None = None,
    name: str = "input-0",
    model: str = "iris",
    **fields: Any,
) -> Any:
    """A ModelInferRequest of one input, its values raw unless ``raw`` says otherwise
    (``[]``: none); ``fields`` go to the tensor's typed contents."""
    request = message("ModelInferRequest")(model_name=model)
    tensor = request.inputs.add(
        name=name, datatype=datatype, shape=list(rows.shape) if shape is None else shape
    )
    for field, values in fields.items():
        getattr(tensor.contents, field).extend(values)
    request.raw_input_contents.extend([rows.astype("<f8").tobytes()] if raw is None else raw)
    return request


def _bytes_elements(values: list[bytes]) -> bytes:
    return b"".join(struct.pack("<I", len(value)) + value for value in values)


def _with(request: Any, change: Callable[[Any], None]) -> Any:
    change(request)
    return request


REQUESTS: dict[str, Callable[[], Any]] = {
    "one row": lambda: _request(),
    "three rows": lambda: _request(X[:3]),
    "with an id": lambda: _with(_request(), lambda r: setattr(r, "id", "r-1")),
    "model version": lambda: _with(_request(), lambda r: setattr(r, "model_version", "1")),
    "unknown version": lambda: _with(_request(), lambda r: setattr(r, "model_version", "9")),
    "typed fp64": lambda: _request(raw=[], fp64_contents=X[0].tolist()),
    "typed in the wrong field": lambda: _request(raw=[], fp32_contents=X[0].tolist()),
    "typed too few": lambda: _request(raw=[], fp64_contents=[1.0, 2.0]),
    "no values": lambda: _request(raw=[]),
    "raw beside typed": lambda: _request(fp64_contents=X[0].tolist()),
    "two raw buffers": lambda: _request(raw=[b"\0" * 32, b"\0" * 32]),
    "wrong datatype": lambda: _request(raw=[X[0].astype("<f4").tobytes()], datatype="FP32"),
    "unknown datatype": lambda: _request(datatype="FP99"),
    "wrong shape": lambda: _request(raw=[X[0, :3].astype("<f8").tobytes()], shape=[1, 3]),
    "unknown input": lambda: _request(name="nope"),
    "raw size mismatch": lambda: _request(raw=[b"\0" * 24]),
    "empty batch": lambda: _request(raw=[b""], shape=[0, 4]),
    "negative dim": lambda: _request(shape=[-1, 4]),
    "non-finite": lambda: _request(np.array([[np.inf, 1.0, 2.0, 3.0]])),
    "BYTES raw": lambda: _request(raw=[_bytes_elements([b"1", b"2"] * 2)], datatype="BYTES"),
    "BYTES typed": lambda: _request(raw=[], datatype="BYTES", bytes_contents=[b"1"] * 4),
    "BOOL raw": lambda: _request(raw=[bytes([1, 0, 1, 1])], datatype="BOOL", shape=[1, 4]),
    "BOOL typed": lambda: _request(raw=[], datatype="BOOL", bool_contents=[True] * 4),
    "unknown model": lambda: _request(model="nope"),
    # perf_analyzer's request: every output the metadata lists, and one ignored parameter.
    "as perf_analyzer asks": lambda: _with(_request(X[:2]), _as_perf_analyzer),
    "two outputs": lambda: _with(_request(), lambda r: _outputs(r, "predict_proba", "predict")),
    "an output twice": lambda: _with(_request(), lambda r: _outputs(r, "predict", "predict")),
    "an unknown output": lambda: _with(_request(), lambda r: _outputs(r, "nope")),
    "unknown input and output": lambda: _with(_request(name="x"), lambda r: _outputs(r, "nope")),
}


def _outputs(request: Any, *names: str) -> None:
    for name in names:
        request.outputs.add(name=name)


def _as_perf_analyzer(request: Any) -> None:
    _outputs(request, "decision_function", "predict", "predict_proba")
    request.parameters["triton_enable_empty_final_response"].bool_param = False


@dataclass
class Served:
    loop: asyncio.AbstractEventLoop
    plane: V2DataPlane
    lean: TritonService
    full: TritonService


@pytest.fixture(scope="module")
def served(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Served]:
    folder = tmp_path_factory.mktemp("iris")
    joblib.dump(LogisticRegression(max_iter=500).fit(X, Y), folder / "model.joblib")
    loop = asyncio.new_event_loop()
    plane, repository = loop.run_until_complete(serve_iris(folder))
    extensions = ExtensionHandlers(plane, Statistics())
    yield Served(
        loop,
        plane,
        TritonService(plane, repository, extensions),
        TritonService(plane, repository, extensions, lean=False),
    )
    release_metrics(plane)
    loop.close()


def _handler(service: TritonService, name: str) -> Any:
    details = SimpleNamespace(method=f"/{SERVICE_NAME}/{name}", invocation_metadata=())
    return triton_handler(service).service(details)


def _answer(
    served: Served, service: TritonService, request: Any, remaining: float | None = None
) -> Any:
    """ModelInfer as the server runs it: the reply's bytes, or the status the client sees.
    ``remaining``: the client's gRPC deadline, in seconds from now."""

    async def run() -> Any:
        context = FakeContext((("x-request-id", "h-1"),), time_remaining=remaining)
        try:
            reply = await _handler(service, "ModelInfer").unary_unary(
                request.SerializeToString(), context
            )
        except aio.AbortError:
            return context.aborted
        return reply.SerializeToString()

    return served.loop.run_until_complete(run())


def _streamed(served: Served, service: TritonService, requests: list[Any]) -> list[bytes]:
    async def run() -> list[bytes]:
        async def wires() -> Any:
            for request in requests:
                yield request.SerializeToString()

        replies = _handler(service, "ModelStreamInfer").stream_stream(wires(), FakeContext())
        return [reply.SerializeToString() async for reply in replies]

    return served.loop.run_until_complete(run())


@pytest.mark.parametrize("case", sorted(REQUESTS))
def test_the_lean_path_answers_as_the_full_path(served: Served, case: str) -> None:
    request = REQUESTS[case]()
    lean, full = _answer(served, served.lean, request), _answer(served, served.full, request)
    assert lean == full
    if case in ("one row", "three rows", "typed fp64", "with an id", "as perf_analyzer asks"):
        assert isinstance(lean, bytes)  # an answer, not two equal refusals


def test_a_passed_grpc_deadline_refuses_as_the_full_path(served: Served) -> None:
    """The lean path's caller carries the gRPC deadline: a call whose deadline has passed
    is dropped before the model, as on the full path."""
    request = REQUESTS["one row"]()
    lean = _answer(served, served.lean, request, remaining=-1.0)
    assert lean == _answer(served, served.full, request, remaining=-1.0)
    assert not isinstance(lean, bytes)


def test_the_lean_stream_answers_as_the_full_stream(served: Served) -> None:
    requests = [REQUESTS[case]() for case in sorted(REQUESTS)]
    assert _streamed(served, served.lean, requests) == _streamed(served, served.full, requests)




def test_the_lean_path_is_taken_and_counts_as_the_full_path(served: Served) -> None:
    """The full path goes through ``infer``; the lean one must not, and both must add the
    same statistics (rows, executions) for the served version."""
    before = iris_counts(served.plane)
    calls = record_full_infers(served.plane)
    try:
        request = REQUESTS["three rows"]()
        _answer(served, served.lean, request)
        assert calls == []
        after_lean = iris_counts(served.plane)
        _answer(served, served.full, request)
        assert len(calls) == 1
    finally:
        del served.plane.infer  # the instance attribute: the method again
    assert after_lean == (before[0] + 3, before[1] + 1)
    assert iris_counts(served.plane) == (before[0] + 6, before[1] + 2)


def _parameter(request: Any) -> None:
    request.parameters["content_type"].string_param = "np"


def _input_parameter(request: Any) -> None:
    request.inputs[0].parameters["content_type"].string_param = "np"


def _output_parameter(request: Any) -> None:
    request.outputs.add(name="predict_proba").parameters["classification"].int64_param = 2


def _empty_final_response_as_text(request: Any) -> None:
    request.parameters["triton_enable_empty_final_response"].string_param = "false"


def _empty_final_response_and_timeout(request: Any) -> None:
    request.parameters["triton_enable_empty_final_response"].bool_param = False
    request.parameters["timeout"].int64_param = 10_000_000


def _second_input(request: Any) -> None:
    request.inputs.add(name="x", datatype="FP64", shape=[1, 4])
    request.raw_input_contents.append(X[0].astype("<f8").tobytes())


DECLINED = {
    "request parameters": _parameter,
    "input parameters": _input_parameter,
    "output parameters": _output_parameter,
    "the ignored parameter as text": _empty_final_response_as_text,
    "the ignored parameter and a timeout": _empty_final_response_and_timeout,
    "two inputs": _second_input,
}


@pytest.mark.parametrize("case", sorted(DECLINED))
def test_other_requests_take_the_full_path(served: Served, case: str) -> None:
    request = _with(_request(), DECLINED[case])
    assert lean_input(request) is None
    calls = record_full_infers(served.plane)
    try:
        _answer(served, served.lean, request)
    finally:
        del served.plane.infer
    assert len(calls) == 1


@pytest.mark.parametrize("case", sorted(REQUESTS))
def test_a_lean_request_is_one_the_full_path_converts(case: str) -> None:
    """The fallback after ``infer_lean`` declines converts outside the refusal handler:
    whatever ``lean_input`` accepted, ``to_inference_request`` must accept too."""
    request = REQUESTS[case]()
    try:
        tensor = lean_input(request)
    except Exception:  # noqa: BLE001 - a refusal: the full path's own, compared above
        return
    if tensor is not None:
        (converted,) = to_inference_request(request, {}).inputs
        assert (converted.name, converted.datatype, converted.shape) == (
            tensor.name,
            tensor.datatype,
            tensor.shape,
        )


def test_perf_analyzers_request_takes_the_lean_path(served: Served) -> None:
    """perf_analyzer names every output and sends ``triton_enable_empty_final_response``
    on each request (issue 15): such a request is lean, and answers as the full path."""
    request = REQUESTS["as perf_analyzer asks"]()
    tensor = lean_input(request)
    assert tensor is not None
    assert tensor.outputs == ("decision_function", "predict", "predict_proba")
    calls = record_full_infers(served.plane)
    try:
        reply = _answer(served, served.lean, request)
    finally:
        del served.plane.infer
    assert calls == [] and isinstance(reply, bytes)
    answer = message("ModelInferResponse").FromString(reply)
    assert [output.name for output in answer.outputs] == list(tensor.outputs)
