"""Triton's gRPC service definition, vendored (BSD-3, see LICENSE beside this file).

``model_config.proto`` and ``grpc_service.proto`` are copied unchanged from
triton-inference-server/common (``protobuf/``, commit 83adf7c, last changed in b0b5387).
They compile to exactly the descriptors tritonclient 2.73 ships, so the wire format is
Triton's. ``triton_descriptors.pb`` is their compiled ``FileDescriptorSet``, committed so
that the server needs no protobuf compiler at run time; ``python -m
runtimes.protocol.grpc.proto.build`` regenerates it (grpcio-tools, a test dependency), and
a unit test checks that the committed file is what the .proto files compile to.
"""

from pathlib import Path

HERE = Path(__file__).parent
PROTO_FILES = ("model_config.proto", "grpc_service.proto")
DESCRIPTOR_SET = HERE / "triton_descriptors.pb"
