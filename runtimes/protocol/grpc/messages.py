"""Triton's gRPC messages, built in a private descriptor pool.

tritonclient ships Triton's protos compiled, but importing ``tritonclient.grpc`` registers
``inference.*`` in protobuf's default pool, where ``mlserver.grpc`` has already registered
the same names ("duplicate symbol"). The serialized descriptors are read from tritonclient's
generated files without importing them, and their classes live in a pool of their own;
the wire format is all that clients see.
"""

import ast
import importlib.util
from functools import cache
from pathlib import Path
from typing import Any

from google.protobuf import descriptor_pb2, descriptor_pool, message_factory

_FILES = ("model_config_pb2.py", "service_pb2.py")
SERVICE_NAME = "inference.GRPCInferenceService"


def _serialized_descriptor(source: Path) -> bytes:
    for node in ast.walk(ast.parse(source.read_text())):
        if isinstance(node, ast.Call) and getattr(node.func, "attr", "") == "AddSerializedFile":
            value = ast.literal_eval(node.args[0])
            assert isinstance(value, bytes)
            return value
    raise RuntimeError(f"no serialized descriptor in {source}")


@cache
def _pool() -> descriptor_pool.DescriptorPool:
    spec = importlib.util.find_spec("tritonclient")
    assert spec is not None and spec.submodule_search_locations
    folder = Path(next(iter(spec.submodule_search_locations))) / "grpc"
    pool = descriptor_pool.DescriptorPool()
    for name in _FILES:
        pool.Add(
            descriptor_pb2.FileDescriptorProto.FromString(_serialized_descriptor(folder / name))
        )
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
