"""Triton's GRPCInferenceService over v2serve's DataPlane, plus grpc.health.v1.Health.

Every error is rendered by ``grpc.errors`` (the code from the HTTP status it carries).
Stream errors are sent in-stream as ``ModelStreamInferResponse.error_message`` with the
request's id in ``infer_response.id``, as Triton does, so one bad request does not end the
stream and the client can tell which request failed. Shared memory is not supported and
answers UNIMPLEMENTED at once. Trace and log settings are Triton's extensions
(``runtimes.extensions.trace_settings``, ``log_settings``), their values converted here.

The commonest ModelInferRequest (one input, no parameters, outputs named without
parameters or none) takes the lean path where the data plane allows it (``grpc.lean``,
``V2DataPlane.infer_lean``), in ModelInfer and ModelStreamInfer alike: the same answers
and errors as the full path.
"""

import asyncio
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from time import perf_counter_ns
from typing import Any

import grpc
from google.protobuf import json_format
from google.protobuf.message import DecodeError
from mlserver.handlers import ModelRepositoryHandlers
from mlserver.types import RepositoryIndexRequest

from ...dataplane import V2DataPlane
from ...deadlines import attach
from ...errors import InvalidPayload, ModelUnavailable, Unsupported, V2ServeError
from ...extensions.handlers import ExtensionHandlers
from ...extensions.log_settings import LogSettings, LogValue
from ...extensions.trace_settings import TraceSettings
from ...observability.observer import REQUEST_ID_HEADER
from ...runtime_api import LeanInput
from ..offload import BodyOffload
from ..timeouts import grpc_caller
from .convert import to_infer_response, to_inference_request
from .errors import abort, grpc_status, log_unexpected
from .lean import lean_input, lean_response
from .message_bulk import Bulk, WireProblem, scan_message, split_message
from .messages import SERVICE_NAME, message, service_methods

RAW_REQUESTS = {"ModelInfer", "ModelStreamInfer"}
UNSUPPORTED = {
    "SystemSharedMemoryStatus", "SystemSharedMemoryRegister", "SystemSharedMemoryUnregister",
    "CudaSharedMemoryStatus", "CudaSharedMemoryRegister", "CudaSharedMemoryUnregister",
}  # fmt: skip


def _parse(wire: bytes) -> Any:
    try:
        return message("ModelInferRequest").FromString(wire)
    except DecodeError as exc:
        raise _undecodable(str(exc)) from exc


def _undecodable(problem: str) -> InvalidPayload:
    return InvalidPayload(f"the message is not a ModelInferRequest: {problem}")


def _headers(context: Any) -> dict[str, str]:
    return {key: str(value) for key, value in context.invocation_metadata() or ()}


def _log_value(value: Any) -> LogValue:
    """A ``LogSettingsRequest.SettingValue``'s one-of; none set is a null (no change)."""
    chosen = value.WhichOneof("parameter_choice")
    return None if chosen is None else getattr(value, chosen)


def _log_field(value: bool | int | str) -> str:
    if isinstance(value, bool):
        return "bool_param"
    return "uint32_param" if isinstance(value, int) else "string_param"


class TritonService:
    def __init__(
        self,
        data_plane: V2DataPlane,
        repository: ModelRepositoryHandlers,
        extensions: ExtensionHandlers,
        trace_settings: TraceSettings | None = None,
        log_settings: LogSettings | None = None,
        offload: BodyOffload | None = None,
        lean: bool = True,
    ):
        """``offload``: the server's one helper process for large bodies, shared with REST;
        ``lean``: whether the commonest request may take the lean path (tests compare)."""
        self.lean = lean
        self.data_plane = data_plane
        self.repository = repository
        self.extensions = extensions
        self.trace_settings = trace_settings
        self.log_settings = log_settings
        self.offload = offload or BodyOffload(data_plane.options.offload_body_bytes)

    async def ServerLive(self, request: Any, context: Any) -> Any:
        return message("ServerLiveResponse")(live=await self.data_plane.live())

    async def ServerReady(self, request: Any, context: Any) -> Any:
        return message("ServerReadyResponse")(ready=await self.data_plane.ready())

    async def ModelReady(self, request: Any, context: Any) -> Any:
        try:
            ready = await self.data_plane.model_ready(request.name, request.version or None)
        except ModelUnavailable:
            ready = False
        return message("ModelReadyResponse")(ready=ready)

    async def ServerMetadata(self, request: Any, context: Any) -> Any:
        found = await self.data_plane.metadata()
        return message("ServerMetadataResponse")(
            name=found.name, version=found.version, extensions=found.extensions
        )

    async def ModelMetadata(self, request: Any, context: Any) -> Any:
        found = await self.data_plane.model_metadata(request.name, request.version or None)
        reply = message("ModelMetadataResponse")(
            name=found.name, versions=found.versions or [], platform=found.platform or ""
        )
        for source, target in ((found.inputs, reply.inputs), (found.outputs, reply.outputs)):
            for tensor in source or []:
                target.add(name=tensor.name, datatype=tensor.datatype, shape=tensor.shape)
        return reply

    async def _message(self, wire: bytes) -> tuple[Any, Bulk | None]:
        """The ModelInferRequest and, for a large one, its values split off without
        protobuf's parser, which holds the interpreter lock for the whole parse: on the
        loop (or in a thread) it stalls every other request (``message_bulk``,
        docs/reliability.md)."""
        if not self.offload.large(len(wire)):
            return _parse(wire), None
        split = await asyncio.to_thread(scan_message, wire)
        if split is None:  # large typed contents other than FP32/FP64
            split = await self.offload.run(split_message, wire, "gRPC message")
        if isinstance(split, WireProblem):
            raise _undecodable(split.message)
        return _parse(split.remainder), split.bulk

    async def _infer(self, request: Any, bulk: Bulk | None, context: Any) -> Any:
        arrived = time.monotonic()
        received = perf_counter_ns()
        tensor: LeanInput | None = None
        try:
            if bulk is not None:  # a large message converts off the event loop
                payload = await asyncio.to_thread(
                    to_inference_request, request, _headers(context), bulk
                )
            else:
                tensor = lean_input(request) if self.lean else None
                if tensor is None:
                    payload = to_inference_request(request, _headers(context))
        except V2ServeError as exc:  # the model's prediction log records the refusal
            version = request.model_version or None
            await self.data_plane.refused(request.model_name, version, request.id, exc, received)
            raise
        if tensor is not None:
            reply = await self._lean(request, tensor, arrived, context)
            if reply is not None:
                return reply
            # A request ``lean_input`` decoded is one this converts: no refusal here.
            payload = to_inference_request(request, _headers(context))
        attach(payload, grpc_caller(request.model_name, payload.parameters, arrived, context))
        response = await self.data_plane.infer(
            payload, request.model_name, request.model_version or None, received, "grpc"
        )
        return to_infer_response(response)

    async def _lean(self, request: Any, tensor: LeanInput, arrived: float, context: Any) -> Any:
        """The lean path's reply, or None where the model needs the full path."""
        # No parameters, so no ``timeout``: the gRPC deadline alone, if the client set one.
        caller = grpc_caller(request.model_name, None, arrived, context)

        def request_id_of() -> str | None:
            return _headers(context).get(REQUEST_ID_HEADER) or request.id or None

        served = await self.data_plane.infer_lean(
            tensor, request.model_name, request.model_version or None, request_id_of, caller
        )
        if served is None:
            return None
        runtime, tensors = served
        return lean_response(runtime.name, runtime.version, request.id, tensors)

    async def ModelInfer(self, wire: bytes, context: Any) -> Any:
        request, bulk = await self._message(wire)
        return await self._infer(request, bulk, context)

    async def ModelStreamInfer(
        self, requests: AsyncIterator[bytes], context: Any
    ) -> AsyncIterator[Any]:
        reply = message("ModelStreamInferResponse")
        failed = message("ModelInferResponse")
        async for wire in requests:
            request = None
            try:
                request, bulk = await self._message(wire)
                yield reply(infer_response=await self._infer(request, bulk, context))
            except Exception as exc:  # noqa: BLE001 - reported in-stream, as Triton does
                log_unexpected(exc)
                request_id = "" if request is None else request.id
                yield reply(error_message=grpc_status(exc)[1], infer_response=failed(id=request_id))

    async def ModelConfig(self, request: Any, context: Any) -> Any:
        config = await self.extensions.model_config(request.name, request.version or None)
        reply = message("ModelConfigResponse")()
        json_format.ParseDict(config, reply.config, ignore_unknown_fields=True)
        return reply

    async def ModelStatistics(self, request: Any, context: Any) -> Any:
        stats = await self.extensions.statistics_of(request.name or None, request.version or None)
        return json_format.ParseDict(stats, message("ModelStatisticsResponse")())

    async def TraceSetting(self, request: Any, context: Any) -> Any:
        if self.trace_settings is None:
            raise Unsupported("TraceSetting")
        # An empty SettingValue clears the key, as Triton reads it.
        update = {key: list(value.value) or None for key, value in request.settings.items()}
        found = await self.trace_settings.settings(request.model_name or None, update)
        reply = message("TraceSettingResponse")()
        for key, value in found.items():
            reply.settings[key].value.extend(value if isinstance(value, list) else [value])
        return reply

    async def LogSettings(self, request: Any, context: Any) -> Any:
        if self.log_settings is None:
            raise Unsupported("LogSettings")
        found = self.log_settings.settings(
            {key: _log_value(value) for key, value in request.settings.items()}
        )
        reply = message("LogSettingsResponse")()
        for key, value in found.items():
            setattr(reply.settings[key], _log_field(value), value)
        return reply

    async def RepositoryIndex(self, request: Any, context: Any) -> Any:
        index = await self.repository.index(RepositoryIndexRequest(ready=request.ready))
        reply = message("RepositoryIndexResponse")()
        for item in index.root:  # states are plain strings (runtimes.repository_api)
            reply.models.add(
                name=item.name, version=item.version or "", state=item.state, reason=item.reason
            )
        return reply

    async def RepositoryModelLoad(self, request: Any, context: Any) -> Any:
        await self.repository.load(request.model_name)
        return message("RepositoryModelLoadResponse")()

    async def RepositoryModelUnload(self, request: Any, context: Any) -> Any:
        await self.repository.unload(request.model_name)
        return message("RepositoryModelUnloadResponse")()


def _unary(method: Callable[[Any, Any], Awaitable[Any]]) -> Callable[[Any, Any], Awaitable[Any]]:
    async def handler(request: Any, context: Any) -> Any:
        try:
            return await method(request, context)
        except Exception as exc:  # noqa: BLE001 - rendered once, in grpc.errors
            await abort(context, exc)

    return handler


def _unsupported(name: str) -> Callable[[Any, Any], Awaitable[Any]]:
    async def handler(request: Any, context: Any) -> Any:
        await abort(context, Unsupported(name))

    return handler


def triton_handler(service: TritonService) -> grpc.GenericRpcHandler:
    handlers = {}
    for name, (request_type, response_type, client_streams, _) in service_methods().items():
        # The inference methods parse their own messages (TritonService._message).
        deserializer = None if name in RAW_REQUESTS else request_type.FromString
        if name in UNSUPPORTED or not hasattr(service, name):
            implementation = _unsupported(name)
        elif client_streams:
            handlers[name] = grpc.stream_stream_rpc_method_handler(
                getattr(service, name),
                request_deserializer=deserializer,
                response_serializer=response_type.SerializeToString,
            )
            continue
        else:
            implementation = _unary(getattr(service, name))
        handlers[name] = grpc.unary_unary_rpc_method_handler(
            implementation,
            request_deserializer=deserializer,
            response_serializer=response_type.SerializeToString,
        )
    return grpc.method_handlers_generic_handler(SERVICE_NAME, handlers)
