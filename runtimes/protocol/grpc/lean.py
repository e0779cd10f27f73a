"""The lean gRPC path (issue 15): the commonest ModelInferRequest without MLServer's objects.

A request with one input, its values in ``raw_input_contents`` (or in its datatype's one
typed field), no parameters (but the one perf_analyzer always sends, ``IGNORED_PARAMETER``)
and outputs asked for by name alone, if any, goes from the message to the
runtime's ``infer_lean`` (``V2DataPlane.infer_lean``) and its arrays straight into a
ModelInferResponse: no ``InferenceRequest``, ``RequestInput`` or ``InferenceResponse``.
The values are read by the same functions as ``convert.to_inference_request`` in the same
order, and the reply is built as ``convert.to_infer_response`` builds it, so the answers,
bytes and errors are the full path's (tests/unit/test_grpc_lean.py).
"""

from typing import Any

from ...inference import Tensor
from ...runtime_api import LeanInput
from ..tensors import decode_raw, encode_raw
from .convert import typed_contents
from .messages import message


def lean_input(request: Any) -> LeanInput | None:
    """The one input of a lean request, its values decoded (a refusal raised as the full
    path raises it); None for any other request, which then takes the full path."""
    if (
        len(request.inputs) != 1
        or not _ignored_parameters(request.parameters)
        or len(request.raw_input_contents) > 1
        or any(output.parameters for output in request.outputs)
    ):
        return None
    tensor = request.inputs[0]
    if tensor.parameters:
        return None
    populated = [(field.name, found) for field, found in tensor.contents.ListFields()]
    shape = list(tensor.shape)
    if request.raw_input_contents:
        if populated:  # raw values beside typed ones: the full path's refusal
            return None
        data: Any = decode_raw(
            request.model_name, tensor.name, tensor.datatype, shape, request.raw_input_contents[0]
        )
    else:
        data = typed_contents(request.model_name, tensor, populated)
    outputs = tuple(output.name for output in request.outputs)
    return LeanInput(tensor.name, tensor.datatype, shape, data, outputs)


IGNORED_PARAMETER = "triton_enable_empty_final_response"
"""perf_analyzer sends it (false) on every request: it asks a decoupled model's stream for
an empty last response, which the full path ignores too, so it does not stop a request
from being lean. Any other request parameter (``timeout``, tracing, ...) does."""


def _ignored_parameters(parameters: Any) -> bool:
    if not parameters:
        return True
    if len(parameters) != 1 or IGNORED_PARAMETER not in parameters:
        return False
    return parameters[IGNORED_PARAMETER].WhichOneof("parameter_choice") == "bool_param"


def lean_response(model: str, version: str | None, request_id: str, tensors: list[Tensor]) -> Any:
    """``to_infer_response`` of a lean request's answer: raw outputs, no parameters."""
    reply = message("ModelInferResponse")(
        model_name=model, model_version=version or "", id=request_id
    )
    for tensor in tensors:
        reply.outputs.add(name=tensor.name, datatype=tensor.datatype, shape=tensor.shape)
        reply.raw_output_contents.append(encode_raw(tensor.values))
    return reply
