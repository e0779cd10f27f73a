"""Triton's gRPC messages to and from MLServer's types, tensors straight to numpy.

Parameters of all five kinds (bool, int64, string, double, uint64) survive the trip;
MLServer's own converter drops double and uint64. Inputs without typed contents take the
``raw_input_contents`` buffers in order, as in MLServer and Triton.

Typed contents must sit in the one field of the tensor's datatype (``CONTENTS_FIELD``), as
Triton requires: FP64 values sent in ``fp32_contents`` would otherwise be cast silently
(5.1 becomes 5.0999999). FP16 and BF16 have no typed field and travel raw.
"""

from collections.abc import Mapping
from typing import Any

import numpy as np
from mlserver.types import (
    InferenceRequest,
    InferenceResponse,
    Parameters,
    RequestInput,
    RequestOutput,
    TensorData,
)

from ...construct import construct, empty_parameters
from ...errors import InvalidInput, InvalidPayload
from ...validation import check_parameters
from ..tensors import decode_raw, encode_raw
from .messages import message

_UINT64_FROM = 2**63
CONTENTS_FIELD = {
    "BOOL": "bool_contents",
    "INT8": "int_contents", "INT16": "int_contents", "INT32": "int_contents",
    "INT64": "int64_contents",
    "UINT8": "uint_contents", "UINT16": "uint_contents", "UINT32": "uint_contents",
    "UINT64": "uint64_contents",
    "FP32": "fp32_contents",
    "FP64": "fp64_contents",
    "BYTES": "bytes_contents",
}  # fmt: skip


# Fixed-width typed contents that a large message reads straight from the wire: one
# packed field of little-endian values after its one-byte tag and varint length.
_PACKED_DTYPES: dict[str, np.dtype] = {"FP64": np.dtype("<f8"), "FP32": np.dtype("<f4")}


def message_size(request: Any) -> int:
    """About the bytes of a ModelInferRequest's tensors; ``ByteSize()`` walks every value
    (0.5 s for 32 MB), this only reads lengths."""
    size = sum(map(len, request.raw_input_contents))
    for tensor in request.inputs:
        for _, values in tensor.contents.ListFields():
            size += 8 * len(values)
    return size


def _packed_values(contents: Any, dtype: np.dtype) -> np.ndarray:
    wire = contents.SerializeToString()
    offset = 1
    while wire[offset] & 0x80:
        offset += 1
    return np.frombuffer(wire, dtype=dtype, offset=offset + 1)


def typed_contents(model: str, tensor: Any, large: bool = False) -> Any:
    """The values of ``tensor.contents``, refused unless in its datatype's own field.
    For a large message, FP64 and FP32 values come as an array read from the wire
    (Python floats for millions of values cost seconds)."""
    populated = tensor.contents.ListFields()
    if not populated:
        return []
    expected = CONTENTS_FIELD.get(tensor.datatype)
    sent = [descriptor.name for descriptor, _ in populated]
    if sent != [expected]:
        raise InvalidInput(
            model,
            tensor.name,
            "contents",
            f"{tensor.datatype} values in {expected}"
            if expected
            else f"raw_input_contents, as datatype '{tensor.datatype}' has no typed field",
            f"values in {', '.join(sent)}",
        )
    if large and tensor.datatype in _PACKED_DTYPES:
        return _packed_values(tensor.contents, _PACKED_DTYPES[tensor.datatype])
    return list(populated[0][1])


def read_parameters(parameters: Mapping[str, Any]) -> dict[str, Any]:
    values = {}
    for key, parameter in parameters.items():
        choice = parameter.WhichOneof("parameter_choice")
        values[key] = getattr(parameter, choice) if choice else None
    return values


def write_parameters(target: Any, values: Mapping[str, Any]) -> None:
    for key, value in values.items():
        if isinstance(value, bool):
            target[key].bool_param = value
        elif isinstance(value, int):
            if value >= _UINT64_FROM:
                target[key].uint64_param = value
            else:
                target[key].int64_param = value
        elif isinstance(value, float):
            target[key].double_param = value
        elif value is not None:
            target[key].string_param = str(value)


def _parameters(values: dict[str, Any]) -> Parameters | None:
    return Parameters.model_construct(**values) if values else None


def to_inference_request(
    request: Any, headers: dict[str, str], large: bool = False
) -> InferenceRequest:
    """Pure: reads ``request`` and builds new objects, so a large one converts in a thread."""
    model = request.model_name
    values = read_parameters(request.parameters)
    check_parameters(model, "request", values)
    raw = list(request.raw_input_contents)
    empty = [tensor for tensor in request.inputs if not tensor.contents.ListFields()]
    if raw and len(raw) != len(empty):
        raise InvalidPayload(
            f"model '{model}': {len(raw)} raw_input_contents for {len(empty)} inputs "
            "without contents; expected one per input"
        )
    buffers = dict(zip((id(t) for t in empty), raw, strict=False))
    inputs = []
    for tensor in request.inputs:
        input_values = read_parameters(tensor.parameters)
        check_parameters(model, f"input '{tensor.name}'", input_values)
        shape = list(tensor.shape)
        buffer = buffers.get(id(tensor))
        if buffer is not None:
            data: Any = decode_raw(model, tensor.name, tensor.datatype, shape, buffer)
        else:
            data = typed_contents(model, tensor, large)
        inputs.append(
            construct(
                RequestInput,
                {
                    "name": tensor.name,
                    "shape": shape,
                    "datatype": tensor.datatype,
                    "parameters": _parameters(input_values),
                    "data": construct(TensorData, {"root": data}),
                },
            )
        )
    outputs = [
        construct(
            RequestOutput,
            {"name": output.name, "parameters": _parameters(read_parameters(output.parameters))},
        )
        for output in request.outputs
    ]
    parameters = Parameters.model_construct(**values) if values else empty_parameters()
    parameters.headers = headers
    return construct(
        InferenceRequest,
        {
            "id": request.id or None,
            "parameters": parameters,
            "inputs": inputs,
            "outputs": outputs or None,
        },
    )


def to_infer_response(response: InferenceResponse) -> Any:
    """Outputs go back as raw contents, as Triton sends them."""
    reply = message("ModelInferResponse")(
        model_name=response.model_name,
        model_version=response.model_version or "",
        id=response.id or "",
    )
    for output in response.outputs:
        values = np.asarray(getattr(output.data, "root", output.data))
        tensor = reply.outputs.add(name=output.name, datatype=output.datatype, shape=output.shape)
        if output.parameters is not None:
            write_parameters(tensor.parameters, output.parameters.model_extra or {})
        reply.raw_output_contents.append(encode_raw(values))
    if response.parameters is not None:
        write_parameters(reply.parameters, response.parameters.model_extra or {})
    return reply
