"""Adaptive batching for models whose cost per call dwarfs their cost per row.

A scikit-learn forest takes about as long for 64 rows as for one. While one batch runs
(off the event loop, so requests keep arriving), the requests that come in wait; when it
finishes they go together as the next batch. Nothing waits on a timer: a lone request
runs at once. Requests are grouped by the outputs they ask for, so ``predict_proba`` is
honoured in a batch (MLServer's batcher drops requested outputs, SeldonIO/MLServer#514).
A batch that fails is re-run request by request, so one bad request fails alone.
"""

import asyncio
import contextlib
import time
from collections.abc import Callable, Mapping, Sequence
from typing import Any

import numpy as np
import pandas as pd

from .deadlines import Caller

Results = Mapping[str, np.ndarray]
Compute = Callable[[Any, list[str]], Results]


def _rows(features: Any) -> int:
    return len(features)


def _stack(parts: Sequence[Any]) -> Any:
    if isinstance(parts[0], pd.DataFrame):
        return pd.concat(parts, ignore_index=True)
    return np.concatenate(parts, axis=0)


class MicroBatcher:
    def __init__(self, compute: Compute, max_rows: int):
        self.compute = compute
        self.max_rows = max_rows
        self._pending: dict[tuple[str, ...], list[tuple[Any, asyncio.Future[Results]]]] = {}
        self._running = False
        self._callers: dict[asyncio.Future[Results], Caller] = {}
        """Deadlines of the requests waiting (runtimes/deadlines.py)."""

    async def submit(
        self, features: Any, methods: Sequence[str], caller: Caller | None = None
    ) -> Results:
        future: asyncio.Future[Results] = asyncio.get_running_loop().create_future()
        self._pending.setdefault(tuple(methods), []).append((features, future))
        if caller is not None:
            self._callers[future] = caller
        if not self._running:
            self._running = True
            asyncio.get_running_loop().call_soon(self._next)
        try:
            return await future
        finally:
            self._callers.pop(future, None)

    def _drop_abandoned(self) -> None:
        """Before a group is taken: a request whose deadline passed or whose caller left
        while it waited is answered now (504, or 499 for nobody) and never run."""
        for methods, group in list(self._pending.items()):
            kept = []
            for item in group:
                future = item[1]
                caller = self._callers.get(future)
                if future.done():
                    continue  # cancelled: a gRPC call that ended
                if caller is not None and caller.abandoned():
                    future.set_exception(caller.dropped("in the batching queue"))
                    continue
                kept.append(item)
            if kept:
                self._pending[methods] = kept
            else:
                del self._pending[methods]

    def _take(self) -> tuple[tuple[str, ...], list[tuple[Any, asyncio.Future[Results]]]] | None:
        for methods, group in self._pending.items():
            taken: list[tuple[Any, asyncio.Future[Results]]] = []
            rows = 0
            while group and (not taken or rows + _rows(group[0][0]) <= self.max_rows):
                item = group.pop(0)
                taken.append(item)
                rows += _rows(item[0])
            if not group:
                del self._pending[methods]
            return methods, taken
        return None

    def _next(self) -> None:
        self._drop_abandoned()
        work = self._take()
        if work is None:
            self._running = False
            return
        asyncio.ensure_future(self._run(*work))

    async def _run(
        self, methods: tuple[str, ...], group: list[tuple[Any, asyncio.Future[Results]]]
    ) -> None:
        try:
            if len(group) == 1:
                await self._alone(methods, *group[0])
                return
            try:
                batch = await asyncio.to_thread(
                    self.compute, _stack([features for features, _ in group]), list(methods)
                )
            except Exception:  # noqa: BLE001 - isolate the request that failed
                for features, future in group:
                    await self._alone(methods, features, future)
                return
            offset = 0
            for features, future in group:
                rows = _rows(features)
                if not future.done():
                    future.set_result({k: v[offset : offset + rows] for k, v in batch.items()})
                offset += rows
        finally:
            self._next()

    async def _alone(
        self, methods: tuple[str, ...], features: Any, future: asyncio.Future[Results]
    ) -> None:
        try:
            result = await asyncio.to_thread(self.compute, features, list(methods))
        except Exception as exc:  # noqa: BLE001 - handed to the request that caused it
            if not future.done():
                future.set_exception(exc)
            return
        if not future.done():
            future.set_result(result)


AUTO_BATCHING_SECONDS = 0.0005


def choose_batcher(
    mode: str, compiled: bool, compute: Compute, example: tuple[Any, list[str]], max_rows: int
) -> MicroBatcher | None:
    """``auto``: batch a model served by sklearn whose one-row call takes 0.5 ms or more,
    measured once at load; a compiled model's call is already microseconds."""
    if mode == "off" or (mode == "auto" and compiled):
        return None
    if mode == "auto":
        features, methods = example
        samples = []
        for _ in range(3):
            started = time.perf_counter()
            with contextlib.suppress(Exception):
                compute(features, methods)
            samples.append(time.perf_counter() - started)
        if sorted(samples)[1] < AUTO_BATCHING_SECONDS:
            return None
    return MicroBatcher(compute, max_rows)
