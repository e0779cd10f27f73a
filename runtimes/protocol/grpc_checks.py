"""gRPC requests checked before MLServer converts them, where a bad one would be a 500.

MLServer 1.7.1 unpacks ``raw_input_contents`` with ``struct`` inside its converter
(``mlserver/raw.py``): a buffer of the wrong length, or fewer buffers than inputs, raises
``struct.error``/``IndexError``, and parameters of the wrong type raise pydantic's
``ValidationError``; each comes back as INTERNAL. The rules live in ``runtimes.validation``;
this adapter only reads them off the protobuf message.
"""

from collections.abc import Callable, Mapping
from typing import Any

from mlserver.grpc import converters
from mlserver.types import InferenceRequest

from ..errors import InvalidPayload
from ..validation import check_parameters, check_raw_tensor


def _values(parameters: Mapping[str, Any]) -> dict[str, Any]:
    values = {}
    for key, parameter in parameters.items():
        choice = parameter.WhichOneof("parameter_choice")
        values[key] = getattr(parameter, choice) if choice else None
    return values


def check_infer_request(request: Any) -> None:
    model = request.model_name
    check_parameters(model, "request", _values(request.parameters))
    for tensor in request.inputs:
        check_parameters(model, f"input '{tensor.name}'", _values(tensor.parameters))
    raw = list(request.raw_input_contents)
    if not raw:
        return
    # As MLServer does: inputs without contents take the raw buffers in order.
    empty = [tensor for tensor in request.inputs if not tensor.contents.ListFields()]
    if len(empty) != len(raw):
        raise InvalidPayload(
            f"model '{model}': {len(raw)} raw_input_contents for {len(empty)} inputs "
            "without contents; expected one per input"
        )
    for tensor, buffer in zip(empty, raw, strict=True):
        check_raw_tensor(model, tensor.name, tensor.datatype, list(tensor.shape), buffer)


def install_grpc_request_checks() -> None:
    converter = converters.ModelInferRequestConverter
    original: Callable[[Any], InferenceRequest] = converter.to_types
    if getattr(original, "_v2serve_checked", False):
        return

    def to_types(cls: type, pb_object: Any) -> InferenceRequest:
        check_infer_request(pb_object)
        return original(pb_object)

    to_types._v2serve_checked = True  # type: ignore[attr-defined]
    converter.to_types = classmethod(to_types)
