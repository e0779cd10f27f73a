"""Triton's model configuration extension, derived from v2serve's settings and schema.

The dictionary has the shape of Triton's ``ModelConfig`` (``docs/protocol/
extension_model_configuration.md``), for REST as JSON and for gRPC through
``json_format.ParseDict``.
"""

from typing import Any

from mlserver.model import MLModel

from ..execution import Executions
from ..runtime_api import description_of
from ..settings import parse_model_extra

TRITON_TYPES = {
    "BOOL": "TYPE_BOOL", "UINT8": "TYPE_UINT8", "UINT16": "TYPE_UINT16",
    "UINT32": "TYPE_UINT32", "UINT64": "TYPE_UINT64", "INT8": "TYPE_INT8",
    "INT16": "TYPE_INT16", "INT32": "TYPE_INT32", "INT64": "TYPE_INT64", "FP16": "TYPE_FP16",
    "FP32": "TYPE_FP32", "FP64": "TYPE_FP64", "BYTES": "TYPE_STRING", "BF16": "TYPE_BF16",
}  # fmt: skip


def _tensors(tensors: Any, batched: bool) -> list[dict[str, Any]]:
    """Triton leaves the batch dimension out of ``dims`` when ``max_batch_size > 0``."""
    found = []
    for tensor in tensors:
        dims = list(tensor.shape[1:] if batched and tensor.shape else tensor.shape)
        found.append(
            {"name": tensor.name, "data_type": TRITON_TYPES.get(tensor.datatype, "TYPE_INVALID"),
             "dims": dims or [1]}
        )  # fmt: skip
    return found


def _policy(model: MLModel) -> dict[str, Any]:
    extra = model.settings.parameters.extra if model.settings.parameters else None
    policy = parse_model_extra(extra, model.name).version_policy
    return policy.model_dump(exclude_none=True)


def model_config(model: MLModel, executions: Executions | None = None) -> dict[str, Any]:
    """``executions``: the server's live executors, where the version's threads are found."""
    settings = model.settings
    described = description_of(model)
    batched = settings.max_batch_size > 0
    config: dict[str, Any] = {
        "name": model.name,
        "platform": settings.platform or "sklearn",
        "backend": "v2serve",
        "version_policy": _policy(model),
        "max_batch_size": settings.max_batch_size,
        "input": _tensors(settings.inputs, batched),
        "output": _tensors(settings.outputs, batched),
        "response_cache": {"enable": described.response_cache},
    }
    if settings.max_batch_size > 1 and settings.max_batch_time > 0:
        config["dynamic_batching"] = {
            "max_queue_delay_microseconds": int(settings.max_batch_time * 1_000_000)
        }
    backend: dict[str, str] = dict(described.parameters)
    execution = executions.find(model.name, model.version) if executions is not None else None
    if execution is not None:
        # Triton's instance_group: how many of the model's calls may run at once.
        config["instance_group"] = [
            {"name": model.name, "kind": "KIND_CPU", "count": execution.threads}
        ]
        backend.update(execution.describe())
    if backend:
        config["parameters"] = {key: {"string_value": value} for key, value in backend.items()}
    return config
