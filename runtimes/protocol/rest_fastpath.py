"""The REST inference route, ``POST /v2/models/{m}[/versions/{v}]/infer``.

Inference is the hot path: orjson and numpy straight from the body (``rest_codec``),
the same DataPlane and runtime as gRPC behind it, no framework in between. A failure
is raised to the router, which answers it through the one error renderer.

The commonest body (one input, no parameters, no requested outputs, JSON) takes the lean
path where the data plane allows it (``V2DataPlane.infer_lean``): the input's fields go
from the parsed JSON to the runtime and its arrays back to JSON, with none of MLServer's
request and response objects built; the same answers and errors as the full path
(tests/unit/test_lean_path.py).
"""

import asyncio
import time
import zlib
from time import perf_counter_ns

from mlserver.types import InferenceRequest

from ..dataplane import V2DataPlane
from ..deadlines import Caller, attach
from ..errors import InvalidPayload, RequestTooLarge, V2ServeError
from ..runtime_api import LeanInput
from .offload import COMPRESSION_RATIO, BodyOffload
from .rest_codec import (
    HEADER_LENGTH,
    build_request,
    lean_input,
    load_json,
    render_lean,
    render_response,
    split_body,
)
from .rest_router import MODEL, RestRequest, RestResponse, Route
from .timeouts import disconnected, rest_caller

_JSON = b"application/json"
_BINARY = b"application/octet-stream"


def _decompress(body: bytes, encoding: str, limit: int) -> bytes:
    try:
        if encoding == "gzip":
            decompressor = zlib.decompressobj(16 + zlib.MAX_WBITS)
        elif encoding == "deflate":
            decompressor = zlib.decompressobj()
        else:
            raise InvalidPayload(f"unsupported Content-Encoding '{encoding}'")
        data = decompressor.decompress(body, limit + 1)
    except zlib.error as exc:
        raise InvalidPayload(f"the {encoding} body cannot be decompressed: {exc}") from exc
    if len(data) > limit:
        raise RequestTooLarge(len(data), limit)
    # Exactly one complete member and nothing after it: zlib stops at the end of the
    # first, and whatever follows (a second member, trailing bytes) would be ignored.
    if not decompressor.eof:
        raise InvalidPayload(f"the {encoding} body is truncated")
    if decompressor.unused_data:
        raise InvalidPayload(
            f"{len(decompressor.unused_data)} bytes follow the end of the {encoding} stream; "
            "a body must be exactly one compressed member"
        )
    return data


_REQUEST_ID = "x-request-id"


class RestInfer:
    def __init__(self, data_plane: V2DataPlane, lean: bool = True):
        """``lean``: whether the commonest body may take the lean path (tests compare)."""
        self.data_plane = data_plane
        self.offload = BodyOffload(data_plane.options.offload_body_bytes)
        self.lean = lean

    async def __call__(self, request: RestRequest) -> RestResponse:
        arrived = time.monotonic()
        received = perf_counter_ns()
        model, version = request.params["model"] or "", request.params["version"]
        headers = {
            key.decode("latin-1"): value.decode("latin-1")
            for key, value in request.scope["headers"]
        }
        tensor: LeanInput | None = None
        parsed: InferenceRequest | None = None
        try:
            body = await request.body()
            encoding = headers.get("content-encoding", "identity").lower()
            compressed = encoding != "identity"
            if self.offload.large(len(body) * (COMPRESSION_RATIO if compressed else 1)):
                parsed = await self._parse_large(model, body, encoding, headers, request.max_bytes)
            else:
                if compressed:
                    body = _decompress(body, encoding, request.max_bytes)
                header_length = headers.get(HEADER_LENGTH)
                json_part, binary = split_body(body, header_length)
                document = load_json(json_part)
                if self.lean and header_length is None:
                    tensor = lean_input(document)
                if tensor is None:
                    parsed = build_request(model, document, binary, headers)
        except V2ServeError as exc:  # the model's prediction log records the refusal
            request_id = headers.get(_REQUEST_ID)
            await self.data_plane.refused(model, version, request_id, exc, received)
            raise
        if parsed is None:
            assert tensor is not None
            answer = await self._lean(
                model, version, tensor, document.get("id"), headers, arrived, request
            )
            if answer is not None:
                return answer
            # A body ``lean_input`` took is one ``build_request`` accepts: no refusal here.
            parsed = build_request(model, document, binary, headers)
        attach(parsed, rest_caller(model, parsed.parameters, arrived, request.receive))
        response = await self.data_plane.infer(parsed, model, version, received, "rest")
        payload, header_length = render_response(parsed, response)
        extra: list[tuple[bytes, bytes]] = []
        if response.parameters is not None and response.parameters.headers:
            extra = [
                (k.lower().encode(), str(v).encode())
                for k, v in response.parameters.headers.items()
            ]
        if header_length is None:
            return RestResponse(200, payload, [(b"content-type", _JSON), *extra])
        length = (HEADER_LENGTH.encode(), str(header_length).encode())
        return RestResponse(200, payload, [(b"content-type", _BINARY), length, *extra])

    async def _lean(
        self,
        model: str,
        version: str | None,
        tensor: LeanInput,
        request_id: str | None,
        headers: dict[str, str],
        arrived: float,
        request: RestRequest,
    ) -> RestResponse | None:
        """The lean path's answer, or None where the model needs the full path."""
        # No parameters, so no ``timeout``: the caller's deadline is the model's default.
        caller = Caller(model, arrived, None, disconnected(request.receive))

        def request_id_of() -> str | None:
            return headers.get(_REQUEST_ID) or request_id

        served = await self.data_plane.infer_lean(tensor, model, version, request_id_of, caller)
        if served is None:
            return None
        runtime, tensors = served
        payload = render_lean(runtime.name, runtime.version, request_id, tensors)
        return RestResponse(200, payload, [(b"content-type", _JSON)])

    async def _parse_large(
        self, model: str, body: bytes, encoding: str, headers: dict[str, str], limit: int
    ) -> InferenceRequest:
        """The same request as ``parse_request`` gives, decoded off the event loop."""
        if encoding != "identity":
            body = await asyncio.to_thread(_decompress, body, encoding, limit)
        json_part, binary = split_body(body, headers.get(HEADER_LENGTH))
        if self.offload.large(len(json_part)):
            document = await self.offload.load_json(model, json_part)
        else:
            document = load_json(json_part)
        return await asyncio.to_thread(build_request, model, document, binary, headers)


def infer_routes(data_plane: V2DataPlane) -> list[Route]:
    return [Route("POST", f"{MODEL}/infer", RestInfer(data_plane))]
