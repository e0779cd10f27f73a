"""Triton's gRPC service and the health service, called directly over a real data plane.

The data plane, registry and runtime are MLServer's and v2serve's own, in-process: only
the ``ServicerContext`` is a stand-in (``grpc_context.FakeContext``).
"""

import asyncio
import struct
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import grpc
import joblib
import numpy as np
import pytest
from grpc import aio
from grpc_health.v1 import health_pb2
from sklearn.datasets import load_iris
from sklearn.linear_model import LogisticRegression

from runtimes.dataplane import V2DataPlane
from runtimes.extensions.handlers import ExtensionHandlers
from runtimes.extensions.statistics import Statistics
from runtimes.protocol.control_auth import ControlTokenInterceptor
from runtimes.protocol.grpc.health import HealthService
from runtimes.protocol.grpc.messages import SERVICE_NAME, message
from runtimes.protocol.grpc.service import TritonService, triton_handler
from runtimes.protocol.offload import BodyOffload
from runtimes.repository.states import VersionState
from tests.unit.grpc_context import FakeContext

from .in_process import release_metrics, serve_iris

X, Y = load_iris(return_X_y=True)
ROW = X[:2]


@pytest.fixture(scope="module")
def artifact(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Any]:
    folder = tmp_path_factory.mktemp("iris")
    estimator = LogisticRegression(max_iter=500).fit(X, Y)
    joblib.dump(estimator, folder / "model.joblib")
    return folder, estimator


@dataclass
class Served:
    loop: asyncio.AbstractEventLoop
    plane: V2DataPlane
    service: TritonService

    def run(self, body: Callable[["Served"], Awaitable[Any]]) -> Any:
        return self.loop.run_until_complete(body(self))


async def _serve(folder: Path) -> tuple[V2DataPlane, TritonService]:
    plane, repository = await serve_iris(folder)
    return plane, TritonService(plane, repository, ExtensionHandlers(plane, Statistics()))


@pytest.fixture(scope="module")
def module_served(artifact: tuple[Path, Any]) -> Iterator[Served]:
    """One data plane per module: MLServer's DataPlane registers its Prometheus counters
    in the default registry, once per process; they are unregistered at the end."""
    loop = asyncio.new_event_loop()
    plane, service = loop.run_until_complete(_serve(artifact[0]))
    yield Served(loop, plane, service)
    release_metrics(plane)
    loop.close()


@pytest.fixture
def served(module_served: Served) -> Served:
    """The module's plane with iris ready and the server not stopping, whatever a test did."""
    module_served.plane.states.set("iris", "1", VersionState.READY)
    module_served.plane.stopping = False
    return module_served


def _infer_request(model: str = "iris", request_id: str = "", rows: np.ndarray = ROW) -> Any:
    request = message("ModelInferRequest")(model_name=model, id=request_id)
    tensor = request.inputs.add(name="input-0", datatype="FP64", shape=list(rows.shape))
    tensor.contents.fp64_contents.extend(rows.ravel().tolist())
    return request


def _unary(service: TritonService, name: str) -> Callable[[Any, Any], Awaitable[Any]]:
    """The handler the server would run for ``name``, error rendering included."""
    details = SimpleNamespace(method=f"/{SERVICE_NAME}/{name}", invocation_metadata=())
    handler = triton_handler(service).service(details)
    assert handler is not None and handler.unary_unary is not None
    return handler.unary_unary


async def _aborted(call: Awaitable[Any], context: FakeContext) -> tuple[grpc.StatusCode, str]:
    with pytest.raises(aio.AbortError):
        await call
    assert context.aborted is not None
    return context.aborted


def test_model_infer_answers_with_the_estimators_predictions(served, artifact):
    async def body(env: Served) -> Any:
        context = FakeContext((("x-request-id", "r1"),))
        wire = _infer_request().SerializeToString()  # ModelInfer parses its own message
        return await _unary(env.service, "ModelInfer")(wire, context)

    reply = served.run(body)
    expected = artifact[1].predict(ROW)
    assert reply.model_name == "iris" and reply.model_version == "1"
    served = np.frombuffer(reply.raw_output_contents[0], dtype=expected.dtype)
    np.testing.assert_array_equal(served, expected)


@pytest.mark.parametrize(
    ("model", "code", "words"),
    [
        ("nope", grpc.StatusCode.NOT_FOUND, ["'nope' not found"]),
        ("n" * 20_000, grpc.StatusCode.NOT_FOUND, ["n" * 150 + "…' not found"]),
    ],
)
def test_model_infer_errors_are_rendered_with_their_code(served, model, code, words):
    async def body(env: Served) -> Any:
        context = FakeContext()
        handler = _unary(env.service, "ModelInfer")
        return await _aborted(handler(_infer_request(model).SerializeToString(), context), context)

    got_code, details = served.run(body)
    assert got_code is code
    assert len(details) < 1000
    for word in words:
        assert word in details


def test_typed_contents_in_the_wrong_field_are_invalid_argument(served):
    async def body(env: Served) -> Any:
        request = _infer_request()
        tensor = request.inputs[0]
        tensor.contents.ClearField("fp64_contents")
        tensor.contents.fp32_contents.extend(ROW.ravel().tolist())
        context = FakeContext()
        wire = request.SerializeToString()
        return await _aborted(_unary(env.service, "ModelInfer")(wire, context), context)

    code, details = served.run(body)
    assert code is grpc.StatusCode.INVALID_ARGUMENT
    assert all(w in details for w in ("input-0", "FP64", "fp64_contents", "fp32_contents"))


@pytest.fixture
def offloading(served: Served) -> Iterator[Served]:
    """The service with every message above 0 bytes split in the helper process."""
    ordinary = served.service.offload
    served.service.offload = BodyOffload(0)
    try:
        yield served
    finally:
        served.service.offload.close()
        served.service.offload = ordinary


def _unpacked(request: Any) -> bytes:
    """``request`` with its one input's FP64 values unpacked (one field per value), which
    parsers must accept and only the helper process reads when large."""
    tensor = request.inputs[0]
    values = list(tensor.contents.fp64_contents)
    tensor.ClearField("contents")
    contents = b"".join(b"\x39" + struct.pack("<d", value) for value in values)
    body = tensor.SerializeToString() + b"\x2a" + _varint(len(contents)) + contents
    del request.inputs[:]
    return request.SerializeToString() + b"\x2a" + _varint(len(body)) + body


def _varint(value: int) -> bytes:
    out = bytearray()
    while value > 0x7F:
        out.append(value & 0x7F | 0x80)
        value >>= 7
    return bytes([*out, value])


@pytest.mark.parametrize(("encoding", "in_helper"), [("packed", False), ("unpacked", True)])
def test_a_large_message_split_off_the_loop_answers_as_a_small_one(
    offloading, artifact, encoding, in_helper
):
    """Packed values are scanned in a thread; unpacked ones are parsed in the helper."""
    rows = np.repeat(X, 13, axis=0)  # unpacked: 150 KB of contents

    async def body(env: Served) -> Any:
        request = _infer_request(rows=rows)
        wire = request.SerializeToString() if encoding == "packed" else _unpacked(request)
        return await _unary(env.service, "ModelInfer")(wire, FakeContext())

    reply = offloading.run(body)
    assert (offloading.service.offload._pool is not None) is in_helper
    expected = artifact[1].predict(rows)
    np.testing.assert_array_equal(
        np.frombuffer(reply.raw_output_contents[0], dtype=expected.dtype), expected
    )


@pytest.mark.parametrize("large", [False, True])
def test_bytes_that_are_not_a_message_are_invalid_argument(served, large):
    if large:
        served.service.offload.threshold, ordinary = 0, served.service.offload.threshold

    async def body(env: Served) -> Any:
        context = FakeContext()
        return await _aborted(_unary(env.service, "ModelInfer")(b"\xff\xff", context), context)

    try:
        code, details = served.run(body)
    finally:
        if large:
            served.service.offload.threshold = ordinary
            served.service.offload.close()
    assert code is grpc.StatusCode.INVALID_ARGUMENT
    assert "not a ModelInferRequest" in details and "pars" in details


def test_unsupported_methods_are_unimplemented(served):
    async def body(env: Served) -> Any:
        context = FakeContext()
        request = message("SystemSharedMemoryStatusRequest")()
        call = _unary(env.service, "SystemSharedMemoryStatus")(request, context)
        return await _aborted(call, context)

    code, details = served.run(body)
    assert code is grpc.StatusCode.UNIMPLEMENTED and "SystemSharedMemoryStatus" in details


async def _requests(*requests: Any) -> AsyncIterator[bytes]:
    """The stream's messages as the server receives them: ModelStreamInfer parses its own."""
    for request in requests:
        yield request if isinstance(request, bytes) else request.SerializeToString()


def test_stream_errors_are_in_stream_and_carry_the_requests_id(served):
    async def body(env: Served) -> list[Any]:
        stream = env.service.ModelStreamInfer(
            _requests(_infer_request(request_id="a"), _infer_request("nope", "b"),
                      _infer_request(request_id="c")),  # fmt: skip
            FakeContext(),
        )
        return [reply async for reply in stream]

    replies = served.run(body)
    assert [r.infer_response.id for r in replies] == ["a", "b", "c"]
    assert [r.error_message for r in replies][::2] == ["", ""]
    assert replies[1].error_message == "model 'nope' not found"


def test_a_stream_message_that_does_not_parse_is_an_in_stream_error(served):
    async def body(env: Served) -> list[Any]:
        stream = env.service.ModelStreamInfer(
            _requests(b"\xff\xff", _infer_request(request_id="c")), FakeContext()
        )
        return [reply async for reply in stream]

    replies = served.run(body)
    assert [r.infer_response.id for r in replies] == ["", "c"]
    assert "not a ModelInferRequest" in replies[0].error_message
    assert replies[1].error_message == ""


def test_health_check_and_unknown_service(served):
    async def body(env: Served) -> Any:
        health = HealthService(env.plane)
        server = await health.Check(health_pb2.HealthCheckRequest(service=""), FakeContext())
        model = await health.Check(health_pb2.HealthCheckRequest(service="iris"), FakeContext())
        context = FakeContext()
        unknown = health.Check(health_pb2.HealthCheckRequest(service="nope"), context)
        return server.status, model.status, await _aborted(unknown, context)

    server, model, (code, details) = served.run(body)
    assert server == model == health_pb2.HealthCheckResponse.SERVING
    assert code is grpc.StatusCode.NOT_FOUND and "nope" in details


def test_health_watch_streams_changes_and_ends_when_the_server_stops(served):
    async def body(env: Served) -> list[int]:
        health = HealthService(env.plane, watch_interval=0.001)
        watch = health.Watch(health_pb2.HealthCheckRequest(service=""), FakeContext())
        seen = [(await anext(watch)).status]
        env.plane.states.set("iris", "1", VersionState.LOADING)
        seen.append((await anext(watch)).status)
        env.plane.states.set("iris", "1", VersionState.READY)
        seen.append((await anext(watch)).status)
        env.plane.stopping = True
        seen += [reply.status async for reply in watch]  # NOT_SERVING, then the end
        return seen

    serving, not_serving = (
        health_pb2.HealthCheckResponse.SERVING,
        health_pb2.HealthCheckResponse.NOT_SERVING,
    )
    assert served.run(body) == [serving, not_serving, serving, not_serving]


def test_watch_of_an_unknown_model_is_service_unknown(served):
    async def body(env: Served) -> int:
        watch = HealthService(env.plane).Watch(health_pb2.HealthCheckRequest(service="nope"), None)
        return (await anext(watch)).status

    assert served.run(body) == health_pb2.HealthCheckResponse.SERVICE_UNKNOWN


def test_control_token_refusal_is_rendered_as_unauthenticated():
    async def main() -> tuple[grpc.StatusCode, str]:
        interceptor = ControlTokenInterceptor("secret")
        details = SimpleNamespace(
            method=f"/{SERVICE_NAME}/RepositoryModelUnload",
            invocation_metadata=(("authorization", "Bearer wrong"),),
        )

        async def continuation(_: Any) -> Any:
            raise AssertionError("a refused call must not reach the service")

        handler = await interceptor.intercept_service(continuation, details)
        context = FakeContext()
        return await _aborted(handler.unary_unary(b"", context), context)

    code, details = asyncio.run(main())
    assert code is grpc.StatusCode.UNAUTHENTICATED
    assert "RepositoryModelUnload" in details and "wrong token" in details
    assert "secret" not in details


def test_every_guarded_method_is_unary_as_the_refusal_handler_is():
    from runtimes.protocol.control_auth import GUARDED_GRPC_METHODS
    from runtimes.protocol.grpc.messages import service_methods

    methods = service_methods()
    assert GUARDED_GRPC_METHODS <= set(methods)
    assert not [m for m in GUARDED_GRPC_METHODS if methods[m][2] or methods[m][3]]
