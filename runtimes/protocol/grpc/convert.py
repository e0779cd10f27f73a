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
from ...schema import RAW_DTYPES
from ...validation import check_parameters
from ..tensors import decode_raw, encode_raw
from .message_bulk import Bulk
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


def typed_contents(model: str, tensor: Any, populated: list[tuple[str, Any]]) -> Any:
    """The values of ``tensor``'s ``populated`` typed fields (name, values), refused
    unless in its datatype's own field. Values split off a large message
    (``message_bulk``) are arrays of the field's dtype, cast here to the datatype's."""
    if not populated:
        return []
    expected = CONTENTS_FIELD.get(tensor.datatype)
    sent = [name for name, _ in populated]
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
    values = populated[0][1]
    if isinstance(values, np.ndarray):
        return _as_datatype(model, tensor, values)
    return list(values)


def _as_datatype(model: str, tensor: Any, values: np.ndarray) -> np.ndarray:
    """INT8/16 and UINT8/16 travel in 32-bit fields: cast, and out of range refused as
    validation refuses it among a small message's values."""
    dtype = np.dtype(RAW_DTYPES[tensor.datatype])
    if values.dtype == dtype:
        return values
    limits = np.iinfo(dtype)
    if values.size and (values.min() < limits.min or values.max() > limits.max):
        raise InvalidInput(
            model,
            tensor.name,
            "has values that are not numbers",
            tensor.datatype,
            f"values outside [{limits.min}, {limits.max}]",
        )
    return values.astype(dtype)


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
    request: Any, headers: dict[str, str], bulk: Bulk | None = None
) -> InferenceRequest:
    """Pure: reads ``request`` and builds new objects, so a large one converts in a thread.
    ``bulk``: the values split off a large message (``message_bulk``), which ``request``
    (its remainder) no longer holds."""
    model = request.model_name
    values = read_parameters(request.parameters)
    check_parameters(model, "request", values)
    if bulk is None:
        raw = list(request.raw_input_contents)
        populated = [
            [(field.name, found) for field, found in tensor.contents.ListFields()]
            for tensor in request.inputs
        ]
    else:
        raw, populated = bulk.raw, bulk.contents
    empty = [index for index, fields in enumerate(populated) if not fields]
    if raw and len(raw) != len(empty):
        raise InvalidPayload(
            f"model '{model}': {len(raw)} raw_input_contents for {len(empty)} inputs "
            "without contents; expected one per input"
        )
    buffers = dict(zip(empty, raw, strict=False))
    inputs = []
    for index, tensor in enumerate(request.inputs):
        input_values = read_parameters(tensor.parameters)
        check_parameters(model, f"input '{tensor.name}'", input_values)
        shape = list(tensor.shape)
        buffer = buffers.get(index)
        if buffer is not None:
            data: Any = decode_raw(model, tensor.name, tensor.datatype, shape, buffer)
        else:
            data = typed_contents(model, tensor, populated[index])
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
