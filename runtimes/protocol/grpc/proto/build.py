"""Compile the vendored .proto files into ``triton_descriptors.pb``.

``json_name`` is cleared, as protoc's Python generator does, so the set is byte for byte
the descriptors that tritonclient's generated modules embed. Serialization is
deterministic, so rebuilding an unchanged .proto gives the same bytes.
"""

import sys
import tempfile
from collections.abc import Iterable
from pathlib import Path

from google.protobuf import descriptor_pb2

from . import DESCRIPTOR_SET, HERE, PROTO_FILES


def _clear_json_names(messages: Iterable[descriptor_pb2.DescriptorProto]) -> None:
    for message in messages:
        for field in (*message.field, *message.extension):
            field.ClearField("json_name")
        _clear_json_names(message.nested_type)


def compile_descriptor_set() -> bytes:
    from grpc_tools import protoc  # build-time only: not a runtime dependency

    with tempfile.TemporaryDirectory() as folder:
        out = Path(folder) / "set.pb"
        status = protoc.main(
            ["protoc", f"-I{HERE}", f"--descriptor_set_out={out}", *PROTO_FILES]
        )
        if status != 0:
            raise RuntimeError(f"protoc failed with status {status}")
        files = descriptor_pb2.FileDescriptorSet.FromString(out.read_bytes())
    for file in files.file:
        _clear_json_names(file.message_type)
    return files.SerializeToString(deterministic=True)


def main() -> int:
    DESCRIPTOR_SET.write_bytes(compile_descriptor_set())
    print(f"wrote {DESCRIPTOR_SET}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
