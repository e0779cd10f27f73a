"""V2 REST bodies, JSON and binary (Triton's binary tensor data extension), both ways.

A request's JSON header may be followed by binary tensor data; its length is in the
``Inference-Header-Content-Length`` header and each binary input says its size in
``parameters.binary_data_size``. Outputs come back binary when the request asks for it
(``binary_data_output``, or ``binary_data`` on a requested output), as tritonclient does
by default, and as JSON otherwise.

Parsing is strict, as Triton's: the binary part must be consumed exactly, and the
extension's flags must be JSON booleans (the string ``"false"`` would be truthy). JSON has
no NaN or Infinity, so a non-finite output asked for as JSON is an error naming it,
never orjson's silent ``null``.
"""

import math
from typing import Any

import numpy as np
import orjson
from mlserver.types import (
    InferenceRequest,
    InferenceResponse,
    Parameters,
    RequestInput,
    RequestOutput,
    TensorData,
)

from ..construct import construct, empty_parameters
from ..errors import InvalidInput, InvalidPayload, NonFiniteOutput
from ..inference import Tensor
from ..runtime_api import LeanInput
from ..validation import check_parameters
from .tensors import decode_raw, encode_raw

HEADER_LENGTH = "inference-header-content-length"
# The binary tensor data extension's flags, and the V2 sequence flags: JSON booleans only.
BOOLEAN_PARAMETERS = ("binary_data", "binary_data_output", "sequence_start", "sequence_end")


def _parameters(model: str, value: Any, where: str) -> Parameters | None:
    if value is None:
        return None
    check_parameters(model, where, value)
    for key in BOOLEAN_PARAMETERS:
        flag = value.get(key)
        if flag is not None and not isinstance(flag, bool):
            raise InvalidPayload(
                f"model '{model}': {where} parameter '{key}' must be a JSON boolean, "
                f"got {type(flag).__name__} {flag!r}"
            )
    return Parameters.model_construct(**value)


def _shape(model: str, name: str, value: Any) -> list[int]:
    if not isinstance(value, list) or not all(
        isinstance(d, int) and not isinstance(d, bool) for d in value
    ):
        raise InvalidInput(model, name, "has an invalid shape", "a list of integers", repr(value))
    return value


class _BinaryReader:
    def __init__(self, blob: bytes | memoryview):
        self.blob = blob
        self.offset = 0

    def take(self, name: str, size: Any) -> bytes | memoryview:
        if not isinstance(size, int) or isinstance(size, bool) or size < 0:
            raise InvalidPayload(f"input '{name}': binary_data_size must be a non-negative integer")
        if self.offset + size > len(self.blob):
            raise InvalidPayload(
                f"input '{name}': binary_data_size {size} runs past the end of the body "
                f"({len(self.blob) - self.offset} binary bytes left)"
            )
        chunk = self.blob[self.offset : self.offset + size]
        self.offset += size
        return chunk

    def check_consumed(self) -> None:
        left = len(self.blob) - self.offset
        if left:
            raise InvalidPayload(
                f"{left} bytes of binary data follow the last binary input; the "
                "binary_data_size of the inputs must add up to the body after the JSON header "
                "(Inference-Header-Content-Length)"
            )


def _input(model: str, item: Any, binary: _BinaryReader) -> RequestInput:
    if not isinstance(item, dict) or not isinstance(item.get("name"), str):
        raise InvalidPayload("each input must be an object with a string 'name'")
    name = item["name"]
    datatype = item.get("datatype")
    if not isinstance(datatype, str):
        raise InvalidInput(model, name, "has no datatype", "a V2 datatype", repr(datatype))
    shape = _shape(model, name, item.get("shape"))
    parameters = _parameters(model, item.get("parameters"), f"input '{name}'")
    size = (item.get("parameters") or {}).get("binary_data_size")
    if size is not None:
        raw = binary.take(name, size)
        # BYTES elements must be bytes; fixed-width values are read in place (no copy).
        raw = bytes(raw) if datatype == "BYTES" else raw
        data: Any = decode_raw(model, name, datatype, shape, raw)
    elif "data" in item:
        data = item["data"]
    else:
        raise InvalidInput(model, name, "has no data", "'data' or binary_data_size", "neither")
    return construct(
        RequestInput,
        {
            "name": name,
            "shape": shape,
            "datatype": datatype,
            "parameters": parameters,
            "data": construct(TensorData, {"root": data}),
        },
    )


def _output(model: str, item: Any) -> RequestOutput:
    if not isinstance(item, dict) or not isinstance(item.get("name"), str):
        raise InvalidPayload("each requested output must be an object with a string 'name'")
    name = item["name"]
    parameters = _parameters(model, item.get("parameters"), f"output '{name}'")
    return construct(RequestOutput, {"name": name, "parameters": parameters})


def parse_request(
    model: str, body: bytes, header_length: str | None, headers: dict[str, str]
) -> InferenceRequest:
    json_part, binary = split_body(body, header_length)
    return build_request(model, load_json(json_part), binary, headers)


def split_body(body: bytes, header_length: str | None) -> tuple[bytes, bytes | memoryview]:
    """The JSON header and the binary tensor data after it (empty without the header).
    The binary part is a view: copying megabytes holds the interpreter lock."""
    json_part, binary = body, memoryview(b"")
    if header_length is not None:
        try:
            length = int(header_length)
        except ValueError as exc:
            raise InvalidPayload(f"Inference-Header-Content-Length is not a number: {exc}") from exc
        if not 0 <= length <= len(body):
            raise InvalidPayload(
                f"Inference-Header-Content-Length {length} does not fit a body of {len(body)} bytes"
            )
        json_part, binary = body[:length], memoryview(body)[length:]
    return json_part, binary


def load_json(json_part: bytes) -> Any:
    try:
        return orjson.loads(json_part)
    except orjson.JSONDecodeError as exc:
        raise InvalidPayload(f"the body is not valid JSON: {exc}") from exc


def build_request(
    model: str, document: Any, binary: bytes | memoryview, headers: dict[str, str]
) -> InferenceRequest:
    """The request from a parsed body; input data may already be numpy (``json_bulk``)."""
    if not isinstance(document, dict):
        raise InvalidPayload(f"the body must be a JSON object, got {type(document).__name__}")
    inputs = document.get("inputs")
    if not isinstance(inputs, list):
        raise InvalidPayload("'inputs' must be a list of tensors")
    outputs = document.get("outputs")
    if outputs is not None and not isinstance(outputs, list):
        raise InvalidPayload("'outputs' must be a list")
    request_id = document.get("id")
    if request_id is not None and not isinstance(request_id, str):
        raise InvalidPayload("'id' must be a string")
    reader = _BinaryReader(binary)
    parameters = _parameters(model, document.get("parameters"), "the request")
    parameters = parameters if parameters is not None else empty_parameters()
    parameters.headers = headers
    decoded = [_input(model, item, reader) for item in inputs]
    reader.check_consumed()
    return construct(
        InferenceRequest,
        {
            "id": request_id,
            "parameters": parameters,
            "inputs": decoded,
            "outputs": [_output(model, item) for item in outputs] if outputs is not None else None,
        },
    )


_LEAN_KEYS = frozenset({"inputs", "id"})
_LEAN_INPUT_KEYS = frozenset({"name", "datatype", "shape", "data"})


def lean_input(document: Any) -> LeanInput | None:
    """The one input of the commonest body, ``{"inputs": [{name, datatype, shape, data}]}``
    (an ``id`` allowed; no parameters, no requested outputs, no binary part), with every
    field ``build_request`` checks already well-formed; None for any other body, which
    then takes ``build_request`` (and its errors). The data is checked by the runtime."""
    if type(document) is not dict or not _LEAN_KEYS.issuperset(document):
        return None
    inputs = document.get("inputs")
    request_id = document.get("id")
    if (
        type(inputs) is not list
        or len(inputs) != 1
        or not (request_id is None or type(request_id) is str)
    ):
        return None
    item = inputs[0]
    if type(item) is not dict or item.keys() != _LEAN_INPUT_KEYS:
        return None
    name, datatype, shape = item["name"], item["datatype"], item["shape"]
    if type(name) is not str or type(datatype) is not str or type(shape) is not list:
        return None
    if not all(type(d) is int for d in shape):
        return None
    return LeanInput(name, datatype, shape, item["data"])


def render_lean(model: str, version: str | None, request_id: Any, tensors: list[Tensor]) -> bytes:
    """``render_response`` of a lean request's answer: JSON outputs (a lean request asks
    for no binary ones), byte for byte the same body."""
    outputs = [
        {
            "name": tensor.name,
            "datatype": tensor.datatype,
            "shape": tensor.shape,
            "data": _json_data(model, tensor.name, tensor.values),
        }
        for tensor in tensors
    ]
    document: dict[str, Any] = {"model_name": model, "model_version": version, "outputs": outputs}
    if request_id is not None:
        document["id"] = request_id
    return orjson.dumps(document, option=orjson.OPT_SERIALIZE_NUMPY)


def _extra(parameters: Parameters | None) -> dict[str, Any]:
    """The keys beyond ``content_type`` and ``headers``. Read from the dict: ``getattr``
    of a key that is not there raises inside pydantic's ``__getattr__``, which cost a
    few percent of a small request."""
    return (parameters.model_extra or {}) if parameters is not None else {}


def _wants_binary(request: InferenceRequest) -> tuple[bool, dict[str, bool]]:
    default = bool(_extra(request.parameters).get("binary_data_output", False))
    per_output: dict[str, bool] = {}
    for output in request.outputs or []:
        flag = _extra(output.parameters).get("binary_data")
        if flag is not None:
            per_output[output.name] = bool(flag)
    return default, per_output


def _json_data(model: str, name: str, values: Any) -> Any:
    if isinstance(values, np.ndarray):
        flat = values.reshape(-1)
        if flat.dtype.kind in "OUS":
            return [v.decode() if isinstance(v, bytes) else str(v) for v in flat]
        if flat.dtype.kind in "fc" and not np.isfinite(flat).all():
            raise NonFiniteOutput(model, name)
        return flat
    if isinstance(values, list) and not _finite_list(values):
        raise NonFiniteOutput(model, name)
    return values


def _finite_list(values: list[Any]) -> bool:
    for value in values:
        if isinstance(value, float) and not math.isfinite(value):
            return False
        if isinstance(value, list) and not _finite_list(value):
            return False
    return True


def render_response(
    request: InferenceRequest, response: InferenceResponse
) -> tuple[bytes, int | None]:
    """The body, and the JSON header's length when binary outputs follow it."""
    default, per_output = _wants_binary(request)
    outputs: list[dict[str, Any]] = []
    blobs: list[bytes] = []
    for output in response.outputs:
        values = getattr(output.data, "root", output.data)
        entry: dict[str, Any] = {
            "name": output.name,
            "datatype": output.datatype,
            "shape": output.shape,
        }
        params = dict(output.parameters.model_extra or {}) if output.parameters else {}
        if per_output.get(output.name, default):
            blob = encode_raw(np.asarray(values))
            blobs.append(blob)
            params["binary_data_size"] = len(blob)
        else:
            entry["data"] = _json_data(response.model_name, output.name, values)
        if params:
            entry["parameters"] = params
        outputs.append(entry)
    document: dict[str, Any] = {
        "model_name": response.model_name,
        "model_version": response.model_version,
        "outputs": outputs,
    }
    if response.id is not None:
        document["id"] = response.id
    extra = dict(response.parameters.model_extra or {}) if response.parameters else {}
    if response.parameters and response.parameters.content_type:
        extra["content_type"] = response.parameters.content_type
    if extra:
        document["parameters"] = extra
    header = orjson.dumps(document, option=orjson.OPT_SERIALIZE_NUMPY)
    if not blobs:
        return header, None
    return header + b"".join(blobs), len(header)
