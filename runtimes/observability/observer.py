"""Turns each finished inference into metrics and one log line; called by the data plane.

Requests for a model that does not exist are counted under ``model=""``: the name comes
from the client, and labelling with it would let any client grow the label set.
"""

from collections.abc import Callable
from functools import partial
from typing import Any

from mlserver.model import MLModel
from mlserver.types import InferenceRequest

from ..repository.states import ModelStates
from ..timings import Phases
from .logs import RequestLog
from .metrics import ServingMetrics, error_status, failure_reason

REQUEST_ID_HEADER = "x-request-id"


def request_id(payload: InferenceRequest) -> str | None:
    """``X-Request-Id`` (REST header or gRPC metadata), else the request's ``id``."""
    parameters = payload.parameters
    headers = getattr(parameters, "headers", None) if parameters is not None else None
    if headers:
        found = headers.get(REQUEST_ID_HEADER)
        if found:
            return str(found)
    return payload.id


def batch_size(payload: InferenceRequest) -> int:
    inputs = payload.inputs or []
    shape = list(inputs[0].shape) if inputs else []
    return int(shape[0]) if shape else 1


class RequestObserver:
    """No metrics and no log unless given: the data plane always has one to call."""

    def __init__(
        self,
        states: ModelStates | None = None,
        metrics: ServingMetrics | None = None,
        log: RequestLog | None = None,
    ):
        self.states = states
        self.metrics = metrics
        self.log = log

    def started(self, model: MLModel) -> None:
        if self.metrics is not None:
            self.metrics.series(model.name, model.version or "").inflight += 1

    def finished(
        self,
        name: str,
        model: MLModel | None,
        payload: InferenceRequest,
        error: BaseException | None,
        total_ns: int,
        phases: Phases,
    ) -> None:
        """``model`` is the version that served, or None if none was found or ready."""
        self.ended(
            name, model, batch_size(payload), partial(request_id, payload), error, total_ns, phases
        )

    def ended(
        self,
        name: str,
        model: MLModel | None,
        rows: int,
        request_id_of: Callable[[], str | None],
        error: BaseException | None,
        total_ns: int,
        phases: Phases,
    ) -> None:
        """``finished`` of a request given by its rows and id (read only if logged), for a
        path that built no ``InferenceRequest`` (the lean REST path)."""
        if model is not None:
            labels = (model.name, model.version or "")
        elif self.states is not None and self.states.of_model(name):
            labels = (name, "")
        else:
            labels = ("", "")
        metrics = self.metrics
        if metrics is not None:
            series = metrics.series(*labels)
            if model is not None:
                series.inflight -= 1
            if error is None:
                metrics.succeeded(series, rows, total_ns, phases)
            else:
                metrics.failed(series, failure_reason(error))
        log = self.log
        if log is not None and log.enabled:
            fields: dict[str, Any] = {
                "request_id": request_id_of(),
                "model": name,
                "version": labels[1] if model is not None else None,
                "status": 200 if error is None else error_status(error),
                "latency_ms": round(total_ns / 1e6, 3),
                "batch_size": rows,
            }
            if phases.cache_hit is not None:
                fields["cache_hit"] = phases.cache_hit
            if error is not None:
                fields["reason"] = failure_reason(error)
                fields["error"] = str(error)
            log.emit(fields)
