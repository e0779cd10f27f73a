"""One logged prediction as two CloudEvents, in the types and attributes of KServe's
inference logger (kserve/kserve ``pkg/logger``), so the same consumers read both.

- Types ``org.kubeflow.serving.inference.request`` and ``.response``; both events of a
  prediction carry the request id as ``id`` (as KServe's do), so they pair up.
- KServe's extensions ``inferenceservicename`` (the model), ``namespace``, ``component``
  and ``endpoint``; v2serve adds ``modelversion`` (the version that served, or the one
  asked for, "" for none, by a request refused before a version took it) to both, and
  ``status`` (the HTTP status answered) and ``latencyus`` (data-plane latency) to the
  response event.
- ``data`` is the V2 JSON body, with every tensor decoded to a flat, row-major ``data``
  list whatever the client sent (JSON, binary tensors, gRPC typed or raw contents), never
  opaque base64. JSON has no NaN or Infinity: non-finite floats are the strings
  ``"NaN"``, ``"Infinity"`` and ``"-Infinity"`` (protobuf's JSON mapping); BYTES elements
  are UTF-8 strings, or ``{"b64": ...}`` for bytes that are not UTF-8.
- A redacted input keeps its name, datatype and shape; its ``data`` is ``"[redacted]"``,
  and an error message that names it is replaced by the marker.
- A failure's response event has ``{"error": message}`` as data, as the REST error body.
- Request headers are never logged (they hold credentials), nor the wire details of the
  binary extension (``binary_data_size``, ``binary_data``, ``binary_data_output``).

Everything here runs in the prediction log's drain, never on the request path.
"""

import base64
import math
import uuid
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any
from urllib.parse import quote

import numpy as np
import orjson
from mlserver.errors import MLServerError
from mlserver.types import InferenceRequest, InferenceResponse, RequestInput, ResponseOutput

from .metrics import error_status
from .observer import request_id

REQUEST_TYPE = "org.kubeflow.serving.inference.request"
RESPONSE_TYPE = "org.kubeflow.serving.inference.response"
SPEC_VERSION = "1.0"
CONTENT_TYPE = "application/json"
REDACTED = "[redacted]"
WIRE_PARAMETERS = frozenset({"headers", "binary_data_size", "binary_data", "binary_data_output"})
# The CloudEvents HTTP binding percent-encodes what a header value cannot carry as is.
_HEADER_SAFE = "".join(chr(c) for c in range(0x20, 0x7F) if chr(c) not in '%"')


@dataclass(frozen=True)
class Origin:
    """KServe's attributes of where an event comes from, fixed for the process."""

    namespace: str = ""
    component: str = "predictor"
    endpoint: str = "default"

    @classmethod
    def from_environment(cls, environ: Mapping[str, str]) -> "Origin":
        """``POD_NAMESPACE`` is the Downward API's usual name for the pod's namespace."""
        return cls(namespace=environ.get("POD_NAMESPACE", ""))


@dataclass(frozen=True)
class Prediction:
    """What the data plane hands over for one sampled request: references, nothing decoded."""

    model: str
    version: str
    payload: InferenceRequest
    response: InferenceResponse | None
    error: BaseException | None
    latency_ns: int
    finished: float
    """Wall-clock seconds when the data plane answered."""


@dataclass(frozen=True)
class CloudEvent:
    attributes: dict[str, str | int]
    """Context attributes (``id``, ``type``, ...) and extensions, without ``data``."""
    data: bytes
    """The JSON payload."""

    def http_headers(self) -> dict[str, str]:
        """Binary content mode: each attribute a ``ce-`` header, the data the body."""
        headers = {f"ce-{key}": _header_value(str(v)) for key, v in self.attributes.items()}
        headers["content-type"] = CONTENT_TYPE
        return headers

    def structured(self) -> bytes:
        """Structured content mode: one JSON object, the data embedded as JSON."""
        document = {
            **self.attributes,
            "datacontenttype": CONTENT_TYPE,
            "data": orjson.Fragment(self.data),
        }
        return orjson.dumps(document)


def _header_value(value: str) -> str:
    return quote(value, safe=_HEADER_SAFE)


def _timestamp(seconds: float) -> str:
    moment = datetime.fromtimestamp(seconds, UTC)
    return moment.isoformat(timespec="microseconds").replace("+00:00", "Z")


def prediction_events(
    prediction: Prediction, redact: frozenset[str], origin: Origin
) -> tuple[CloudEvent, CloudEvent]:
    """The request event and the response event of one prediction."""
    event_id = request_id(prediction.payload) or str(uuid.uuid4())
    common: dict[str, str | int] = {
        "specversion": SPEC_VERSION,
        "id": event_id,
        "source": f"/v2/models/{prediction.model}"
        + (f"/versions/{prediction.version}" if prediction.version else ""),
        "inferenceservicename": prediction.model,
        "namespace": origin.namespace,
        "component": origin.component,
        "endpoint": origin.endpoint,
        "modelversion": prediction.version,
    }
    started = prediction.finished - prediction.latency_ns / 1e9
    request = CloudEvent(
        {**common, "type": REQUEST_TYPE, "time": _timestamp(started)},
        orjson.dumps(request_body(prediction.payload, event_id, redact)),
    )
    error = prediction.error
    status = 200 if error is None else error_status(error)
    response = CloudEvent(
        {
            **common,
            "type": RESPONSE_TYPE,
            "time": _timestamp(prediction.finished),
            "status": status,
            "latencyus": prediction.latency_ns // 1000,
        },
        orjson.dumps(response_body(prediction, event_id, redact)),
    )
    return request, response


def _tensor(tensor: RequestInput | ResponseOutput, data: Any) -> dict[str, Any]:
    """One V2 JSON tensor: name, shape, datatype, its parameters if any, then ``data``."""
    entry: dict[str, Any] = {
        "name": tensor.name,
        "shape": list(tensor.shape),
        "datatype": tensor.datatype,
    }
    parameters = _parameters(tensor.parameters)
    if parameters:
        entry["parameters"] = parameters
    entry["data"] = data
    return entry


def request_body(
    payload: InferenceRequest, event_id: str, redact: frozenset[str]
) -> dict[str, Any]:
    body: dict[str, Any] = {"id": event_id}
    parameters = _parameters(payload.parameters)
    if parameters:
        body["parameters"] = parameters
    body["inputs"] = [
        _tensor(tensor, REDACTED if tensor.name in redact else tensor_values(tensor.data))
        for tensor in payload.inputs or []
    ]
    if payload.outputs:
        outputs = []
        for output in payload.outputs:
            requested: dict[str, Any] = {"name": output.name}
            output_parameters = _parameters(output.parameters)
            if output_parameters:
                requested["parameters"] = output_parameters
            outputs.append(requested)
        body["outputs"] = outputs
    return body


def response_body(prediction: Prediction, event_id: str, redact: frozenset[str]) -> dict[str, Any]:
    body: dict[str, Any] = {
        "model_name": prediction.model,
        "model_version": prediction.version,
        "id": event_id,
    }
    response = prediction.response
    if prediction.error is not None or response is None:
        body["error"] = error_message(prediction.error, redact)
        return body
    parameters = _parameters(response.parameters)
    if parameters:
        body["parameters"] = parameters
    body["outputs"] = [_tensor(output, tensor_values(output.data)) for output in response.outputs]
    return body


def error_message(error: BaseException | None, redact: frozenset[str]) -> str:
    """The message a client was given; hidden when it names a redacted input, which it
    may quote (a value out of range, a category unknown)."""
    if error is None:
        return "no response"
    if isinstance(error, MLServerError):
        message = str(error)
    elif error_status(error) == 499:
        message = "cancelled: the client went away before the answer"
    else:
        message = f"internal error: {type(error).__name__}: {error}"
    if any(f"'{name}'" in message for name in redact):
        return f"{REDACTED}: the error concerns a redacted input"
    return message


def _parameters(parameters: Any) -> dict[str, Any]:
    if parameters is None:
        return {}
    values = dict(getattr(parameters, "model_extra", None) or {})
    for field in type(parameters).model_fields:
        value = getattr(parameters, field, None)
        if value is not None:
            values[field] = value
    return {
        key: _json_value(value)
        for key, value in values.items()
        if key not in WIRE_PARAMETERS and value is not None
    }


def tensor_values(data: Any) -> list[Any]:
    """A tensor's elements as a flat JSON list: numpy arrays (binary and raw contents),
    nested or flat lists (JSON, gRPC typed contents) and lone values alike."""
    values = getattr(data, "root", data)
    if isinstance(values, np.ndarray):
        return _array_values(values)
    if isinstance(values, list | tuple):
        flat: list[Any] = []
        _flatten(values, flat)
        return flat
    return [_json_value(values)]


def _array_values(array: np.ndarray) -> list[Any]:
    flat = array.reshape(-1)
    kind = flat.dtype.kind
    if kind in "biu":
        return list(flat.tolist())
    if kind == "f" and bool(np.isfinite(flat).all()):
        return list(flat.tolist())
    return [_json_value(value) for value in flat.tolist()]


def _flatten(values: Iterable[Any], into: list[Any]) -> None:
    for value in values:
        if isinstance(value, list | tuple | np.ndarray):
            _flatten(value, into)
        else:
            into.append(_json_value(value))


def _json_value(value: Any) -> Any:
    """One JSON-safe value: non-finite floats by name, bytes as text or ``{"b64": ...}``."""
    if isinstance(value, np.generic):
        value = value.item()
    if isinstance(value, bool | int | str) or value is None:
        return value
    if isinstance(value, float):
        if math.isfinite(value):
            return value
        if math.isnan(value):
            return "NaN"
        return "Infinity" if value > 0 else "-Infinity"
    if isinstance(value, bytes | bytearray | memoryview):
        raw = bytes(value)
        try:
            return raw.decode("utf-8")
        except UnicodeDecodeError:
            return {"b64": base64.b64encode(raw).decode("ascii")}
    if isinstance(value, list | tuple | np.ndarray):
        flat: list[Any] = []
        _flatten(value, flat)
        return flat
    if isinstance(value, Mapping):
        return {str(k): _json_value(v) for k, v in value.items()}
    return str(value)
