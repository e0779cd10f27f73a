"""Triton's gRPC messages, built in a private descriptor pool.

The descriptors come from the vendored .proto files (``proto/``), compiled once into a
committed ``FileDescriptorSet``. They live in a pool of their own because
``mlserver.grpc`` has already registered ``inference.*`` in protobuf's default pool, and a
second registration fails with "duplicate symbol"; the wire format is all clients see.
"""

from functools import cache
from typing import Any

from google.protobuf import descriptor_pb2, descriptor_pool, message_factory

from .proto import DESCRIPTOR_SET

SERVICE_NAME = "inference.GRPCInferenceService"


@cache
def _pool() -> descriptor_pool.DescriptorPool:
    pool = descriptor_pool.DescriptorPool()
    files = descriptor_pb2.FileDescriptorSet.FromString(DESCRIPTOR_SET.read_bytes())
    for file in files.file:  # dependencies first, as protoc writes them
        pool.Add(file)
    return pool


@cache
def message(name: str) -> Any:
    """The class of ``inference.<name>``; nested names take dots (``A.B``)."""
    return message_factory.GetMessageClass(_pool().FindMessageTypeByName(f"inference.{name}"))


def service_methods() -> dict[str, tuple[Any, Any, bool, bool]]:
    """Method name -> (request class, response class, client streams, server streams)."""
    service = _pool().FindServiceByName(SERVICE_NAME)
    return {
        method.name: (
            message_factory.GetMessageClass(method.input_type),
            message_factory.GetMessageClass(method.output_type),
            method.client_streaming,
            method.server_streaming,
        )
        for method in service.methods
    }
