"""The vendored Triton protos: compiled set committed, equal to tritonclient's, no
tritonclient at run time."""

import subprocess
import sys
import textwrap

from google.protobuf import descriptor_pb2

from runtimes.protocol.grpc.proto import DESCRIPTOR_SET, PROTO_FILES
from runtimes.protocol.grpc.proto.build import compile_descriptor_set


def _committed() -> descriptor_pb2.FileDescriptorSet:
    return descriptor_pb2.FileDescriptorSet.FromString(DESCRIPTOR_SET.read_bytes())


def _run(code: str) -> str:
    done = subprocess.run(
        [sys.executable, "-c", textwrap.dedent(code)], capture_output=True, text=True, timeout=60
    )
    assert done.returncode == 0, done.stderr
    return done.stdout


def test_committed_set_is_what_the_protos_compile_to():
    assert compile_descriptor_set() == DESCRIPTOR_SET.read_bytes(), (
        "rebuild with: python -m runtimes.protocol.grpc.proto.build"
    )


def test_committed_set_equals_tritonclients_descriptors():
    # tritonclient.grpc cannot share a process with mlserver.grpc (duplicate symbols).
    out = _run(
        """
        import tritonclient.grpc.model_config_pb2 as config
        import tritonclient.grpc.service_pb2 as service
        for module in (config, service):
            print(module.DESCRIPTOR.serialized_pb.hex())
        """
    )
    theirs = [bytes.fromhex(line) for line in out.split()]
    ours = _committed().file
    assert [f.name for f in ours] == list(PROTO_FILES)
    assert [f.SerializeToString() for f in ours] == theirs


def test_messages_import_without_tritonclient():
    out = _run(
        """
        import sys
        sys.modules["tritonclient"] = None  # any import of it now raises ImportError
        from runtimes.protocol.grpc.messages import message, service_methods
        request = message("ModelInferRequest")(model_name="m", id="7")
        assert "ModelStreamInfer" in service_methods()
        print(type(request).FromString(request.SerializeToString()).id)
        print("tritonclient" in sys.modules and sys.modules["tritonclient"] is not None)
        """
    )
    assert out.split() == ["7", "False"]
