"""The gRPC ceiling: a bare ``grpc.aio`` servicer that answers ``ModelInfer`` with numpy.

The messages come from v2serve's vendored protos (their committed ``FileDescriptorSet``),
built in a private pool; the handlers are registered generically, with no interceptor,
no metrics and no validation. Rows come from ``raw_input_contents`` (or typed ``contents``),
``predict`` goes back as ``raw_output_contents``. It also answers the readiness, metadata
and config calls that perf_analyzer makes.

    python -m benchmarks.peers.grpc_probe --port 8001 --model light --artifact model.joblib
"""

from __future__ import annotations

import argparse
import asyncio
from pathlib import Path
from typing import Any

import grpc
import numpy as np
from google.protobuf import descriptor_pb2, descriptor_pool, message_factory

from benchmarks.peers.linear import NumpyLogistic

ROOT = Path(__file__).resolve().parents[2]
DESCRIPTORS = ROOT / "runtimes" / "protocol" / "grpc" / "proto" / "triton_descriptors.pb"
SERVICE = "inference.GRPCInferenceService"


def service_classes() -> dict[str, tuple[Any, Any]]:
    """Method name -> (request class, response class) of the vendored service."""
    pool = descriptor_pool.DescriptorPool()
    for file in descriptor_pb2.FileDescriptorSet.FromString(DESCRIPTORS.read_bytes()).file:
        pool.Add(file)
    service = pool.FindServiceByName(SERVICE)
    return {
        method.name: (
            message_factory.GetMessageClass(method.input_type),
            message_factory.GetMessageClass(method.output_type),
        )
        for method in service.methods
    }


class Servicer:
    def __init__(self, name: str, model: NumpyLogistic, classes: dict[str, tuple[Any, Any]]):
        self.name = name
        self.model = model
        self.classes = classes

    def _response(self, method: str, **fields: Any) -> Any:
        return self.classes[method][1](**fields)

    async def ModelInfer(self, request: Any, context: Any) -> Any:  # noqa: N802
        tensor = request.inputs[0]
        shape = tuple(tensor.shape)
        if request.raw_input_contents:
            rows = np.frombuffer(request.raw_input_contents[0], dtype="<f8").reshape(shape)
        else:
            rows = np.asarray(tensor.contents.fp64_contents, dtype=np.float64).reshape(shape)
        labels = self.model.predict(rows).astype("<i8")
        response = self._response(
            "ModelInfer", model_name=self.name, model_version="1", id=request.id
        )
        output = response.outputs.add()
        output.name, output.datatype = "predict", "INT64"
        output.shape.append(len(labels))
        response.raw_output_contents.append(labels.tobytes())
        return response

    async def ServerLive(self, request: Any, context: Any) -> Any:  # noqa: N802
        return self._response("ServerLive", live=True)

    async def ServerReady(self, request: Any, context: Any) -> Any:  # noqa: N802
        return self._response("ServerReady", ready=True)

    async def ModelReady(self, request: Any, context: Any) -> Any:  # noqa: N802
        return self._response("ModelReady", ready=request.name == self.name)

    async def ServerMetadata(self, request: Any, context: Any) -> Any:  # noqa: N802
        return self._response("ServerMetadata", name="grpc-probe", version="1")

    async def ModelMetadata(self, request: Any, context: Any) -> Any:  # noqa: N802
        response = self._response("ModelMetadata", name=self.name, versions=["1"], platform="probe")
        tensor = response.inputs.add(name="input-0", datatype="FP64")
        tensor.shape.extend([-1, self.model.n_features])
        response.outputs.add(name="predict", datatype="INT64").shape.append(-1)
        return response

    async def ModelConfig(self, request: Any, context: Any) -> Any:  # noqa: N802
        response = self._response("ModelConfig")
        config = response.config
        config.name, config.max_batch_size = self.name, 0
        tensor = config.input.add(name="input-0", data_type=12)  # TYPE_FP64
        tensor.dims.extend([-1, self.model.n_features])
        config.output.add(name="predict", data_type=9).dims.append(-1)  # TYPE_INT64
        return response

    async def ModelStatistics(self, request: Any, context: Any) -> Any:  # noqa: N802
        return self._response("ModelStatistics")


def handler(servicer: Servicer, classes: dict[str, tuple[Any, Any]]) -> grpc.GenericRpcHandler:
    methods = {}
    for name, (request_class, response_class) in classes.items():
        function = getattr(servicer, name, None)
        if function is not None:
            methods[name] = grpc.unary_unary_rpc_method_handler(
                function,
                request_deserializer=request_class.FromString,
                response_serializer=response_class.SerializeToString,
            )
    return grpc.method_handlers_generic_handler(SERVICE, methods)


async def serve(port: int, name: str, artifact: Path) -> None:
    classes = service_classes()
    servicer = Servicer(name, NumpyLogistic.from_artifact(artifact), classes)
    server = grpc.aio.server()
    server.add_generic_rpc_handlers((handler(servicer, classes),))
    server.add_insecure_port(f"127.0.0.1:{port}")
    await server.start()
    await server.wait_for_termination()


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--model", required=True)
    parser.add_argument("--artifact", type=Path, required=True)
    args = parser.parse_args(argv)
    asyncio.run(serve(args.port, args.model, args.artifact))


if __name__ == "__main__":
    main()
