"""What a dead parallel-inference worker looks like, as a clear, retryable error.

With ``parallel_workers > 0`` MLServer runs models in worker processes. A request in flight
on a worker that dies fails with ``WorkerStop``; until the pool has started a new worker
(a few seconds), MLServer's dispatcher picks from an empty round-robin and fails with
``RuntimeError: coroutine raised StopIteration``. Both become a 503 that says so.
"""

from mlserver.parallel.errors import WorkerStop

from ..errors import WorkerUnavailable


def worker_failure(model: str, exc: BaseException) -> WorkerUnavailable | None:
    if isinstance(exc, WorkerStop):
        return WorkerUnavailable(model, f"stopped during the request ({exc})")
    if isinstance(exc, RuntimeError) and isinstance(exc.__cause__, StopIteration):
        return WorkerUnavailable(model, "is restarting and none is running")
    return None
