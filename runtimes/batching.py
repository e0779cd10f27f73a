"""Adaptive batching for models whose cost per call dwarfs their cost per row.

A scikit-learn forest takes about as long for 64 rows as for one. While one batch runs
(off the event loop, on the model version's own threads from ``runtimes.execution``, so
requests keep arriving and the model's executor metrics count it), the requests that
come in wait; when it finishes they go together as the next batch. Nothing waits on a
timer: a lone request runs at once. Requests are grouped by the outputs they ask for, so
``predict_proba`` is honoured in a batch (MLServer's batcher drops requested outputs,
SeldonIO/MLServer#514).
A batch that fails is re-run request by request, so one bad request fails alone.

The batcher trusts nothing the estimator returns. Splitting a batched answer back is
right only if every output has one row per input row; a custom ``predict`` that returns
a per-call aggregate, a fixed-size array or a scalar would hand one caller another's
values, or nothing (issue 14). Such a batch is answered request by request, each caller
by its own call, and batching stops for that model for good: logged once, shown in its
configuration (``batching: stopped (...)``) and in ``v2serve_batching_stopped``. A model
whose output keeps one row per row but mixes rows (a per-batch mean) cannot be told
apart by shape: serve it with ``batching: off``.

Whatever goes wrong inside the batcher, ``BaseException`` included, resolves every caller
it holds with an error (a caller that waits forever would also hold its in-flight slot
forever), and the batch tasks are kept and watched, so none can die unseen.
"""

import asyncio
import contextlib
import logging
import time
import weakref
from collections.abc import Callable, Mapping, Sequence
from typing import Any

import numpy as np
import pandas as pd

from .deadlines import Caller
from .errors import PredictionFailed
from .execution import ModelExecution

logger = logging.getLogger("v2serve.batching")

Results = Mapping[str, np.ndarray]
Compute = Callable[[Any, list[str]], Results]
Waiting = list[tuple[Any, "asyncio.Future[Results]"]]


def _rows(features: Any) -> int:
    return len(features)


def _stack(parts: Sequence[Any]) -> Any:
    if isinstance(parts[0], pd.DataFrame):
        return pd.concat(parts, ignore_index=True)
    return np.concatenate(parts, axis=0)


def row_mismatch(results: Any, methods: Sequence[str], rows: int) -> str | None:
    """Why ``results`` cannot be split back into ``rows`` input rows, or None if it can."""
    if not isinstance(results, Mapping):
        return f"the batched call returned {type(results).__name__}, not outputs by name"
    for method in methods:
        values = results.get(method)
        if isinstance(values, np.generic) or (isinstance(values, np.ndarray) and values.ndim == 0):
            return f"output '{method}' is 0-d (one value) for a batch of {rows} rows"
        if not isinstance(values, np.ndarray):
            return f"output '{method}' is {type(values).__name__}, not an array"
        if len(values) != rows:
            return f"output '{method}' has {len(values)} rows for a batch of {rows} rows"
    return None


def _as_error(model: str, exc: BaseException) -> Exception:
    """What a caller is handed: an ``Exception`` as it came (a 400 stays a 400), anything
    else as ``PredictionFailed`` naming it; never a bare ``KeyboardInterrupt``, which,
    re-raised in the caller's task, stops the event loop."""
    return exc if isinstance(exc, Exception) else PredictionFailed(model, exc)


class MicroBatcher:
    def __init__(
        self,
        compute: Compute,
        max_rows: int,
        model: str = "",
        version: str = "",
        execution: ModelExecution | None = None,
    ):
        self.compute = compute
        self.max_rows = max_rows
        self.model = model
        self.version = version
        self.execution = execution
        """The model version's own threads (runtimes.execution), where every call runs, so
        its concurrency and queue metrics count batched calls too; None: a default thread."""
        self.stopped: str | None = None
        """Why batching stopped for good, or None while it batches."""
        self._pending: dict[tuple[str, ...], Waiting] = {}
        self._running = False
        self._tasks: set[asyncio.Task[None]] = set()
        self._callers: dict[asyncio.Future[Results], Caller] = {}
        """Deadlines of the requests waiting (runtimes/deadlines.py)."""

    @property
    def description(self) -> str:
        """For the model's configuration: ``on (...)`` or ``stopped (why)``."""
        if self.stopped is not None:
            return f"stopped ({self.stopped})"
        return f"on (up to {self.max_rows} rows per call)"

    def stop(self, reason: str) -> None:
        if self.stopped is not None:
            return
        self.stopped = reason
        logger.error(
            "model '%s' version %s: batching stopped for good, requests now run one by one: %s",
            self.model,
            self.version,
            reason,
        )

    async def submit(
        self, features: Any, methods: Sequence[str], caller: Caller | None = None
    ) -> Results:
        if self.stopped is not None:
            return await self._call(features, methods)
        loop = asyncio.get_running_loop()
        future: asyncio.Future[Results] = loop.create_future()
        self._pending.setdefault(tuple(methods), []).append((features, future))
        if caller is not None:
            self._callers[future] = caller
        if not self._running:
            self._running = True
            loop.call_soon(self._next)
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

    async def _call(self, features: Any, methods: Sequence[str]) -> Results:
        if self.execution is not None:
            return await self.execution.run_off_loop(self._contained, features, list(methods))
        return await asyncio.to_thread(self._contained, features, list(methods))

    def _contained(self, features: Any, methods: list[str]) -> Results:
        """In the worker thread: only an ``Exception`` may cross back into a coroutine.
        A ``GeneratorExit`` thrown into one that goes on awaiting is a RuntimeError, and a
        ``KeyboardInterrupt`` or ``SystemExit`` stops the event loop."""
        try:
            return self.compute(features, methods)
        except Exception:
            raise
        except BaseException as exc:  # noqa: BLE001 - contained, see above
            raise PredictionFailed(self.model, exc) from exc

    def _take(self) -> tuple[tuple[str, ...], Waiting] | None:
        for methods, group in self._pending.items():
            taken: Waiting = []
            rows = 0
            while group and (not taken or rows + _rows(group[0][0]) <= self.max_rows):
                item = group.pop(0)
                if item[1].done():  # its caller went away
                    continue
                taken.append(item)
                rows += _rows(item[0])
            if not group:
                del self._pending[methods]
            if taken:
                return methods, taken
            return self._take()
        return None

    def _next(self) -> None:
        """Start the next batch, or mark the batcher idle. It never raises: it runs from
        ``call_soon`` and after every batch, where an exception would leave the batcher
        marked running with nobody to run it, and every later caller waiting forever."""
        work = None
        try:
            self._drop_abandoned()
            work = self._take()
            if work is None:
                self._running = False
                return
            task = asyncio.get_running_loop().create_task(self._run(*work))
        except BaseException as exc:  # noqa: BLE001 - resolved to every caller held
            logger.exception("model '%s': the batcher failed to start a batch", self.model)
            self._running = False
            self._fail(work[1] if work else [], exc)
            self._fail_pending(exc)
            return
        self._tasks.add(task)
        task.add_done_callback(self._finished)

    def _finished(self, task: "asyncio.Task[None]") -> None:
        self._tasks.discard(task)
        if not task.cancelled() and task.exception() is not None:
            logger.error("model '%s': a batch task failed", self.model, exc_info=task.exception())

    async def _run(self, methods: tuple[str, ...], group: Waiting) -> None:
        try:
            await self._answer(methods, group)
        except asyncio.CancelledError as exc:
            self._running = False
            self._fail(group, exc)
            self._fail_pending(exc)
            raise
        except BaseException as exc:  # noqa: BLE001 - contained: re-raised, it ends the loop
            logger.exception("model '%s': a batch failed inside the batcher", self.model)
            self._fail(group, exc)
        self._next()

    async def _answer(self, methods: tuple[str, ...], group: Waiting) -> None:
        if len(group) > 1 and self.stopped is None:
            sizes = [_rows(features) for features, _ in group]
            batch: Any = None
            try:
                batch = await self._call(_stack([features for features, _ in group]), methods)
            except asyncio.CancelledError:
                raise
            except BaseException:  # noqa: BLE001 - re-run alone below, so it fails alone
                batch = None
            problem = None if batch is None else row_mismatch(batch, methods, sum(sizes))
            if batch is not None and problem is None:
                offset = 0
                for (_, future), rows in zip(group, sizes, strict=True):
                    if not future.done():
                        future.set_result({m: batch[m][offset : offset + rows] for m in methods})
                    offset += rows
                return
            if problem is not None:
                self.stop(problem)
        for features, future in group:
            await self._alone(methods, features, future)

    async def _alone(
        self, methods: tuple[str, ...], features: Any, future: "asyncio.Future[Results]"
    ) -> None:
        if future.done():
            return
        try:
            result = await self._call(features, methods)
        except asyncio.CancelledError:
            raise
        except BaseException as exc:  # noqa: BLE001 - handed to the request that caused it
            if not future.done():
                future.set_exception(_as_error(self.model, exc))
            return
        if not future.done():
            future.set_result(result)

    def _fail(self, group: Waiting, exc: BaseException) -> None:
        for _, future in group:
            if not future.done():
                future.set_exception(PredictionFailed(self.model, exc))

    def _fail_pending(self, exc: BaseException) -> None:
        pending, self._pending = self._pending, {}
        for group in pending.values():
            self._fail(group, exc)


class LiveBatchers:
    """The batcher of each loaded (model, version), held weakly, for the metrics
    collector: an unloaded runtime takes its batcher with it. One per server, owned by
    its composition (``runtimes.server``) and handed to the runtimes it hosts through
    ``RuntimeServices``, so two servers in one process never see each other's."""

    def __init__(self) -> None:
        self._refs: dict[tuple[str, str], weakref.ref[MicroBatcher]] = {}

    def add(self, batcher: MicroBatcher) -> None:
        self._refs[(batcher.model, batcher.version)] = weakref.ref(batcher)

    def remove(self, batcher: MicroBatcher) -> None:
        """At unload; a reload's newer batcher under the same key stays."""
        key = (batcher.model, batcher.version)
        ref = self._refs.get(key)
        if ref is not None and ref() in (batcher, None):
            del self._refs[key]

    def all(self) -> list[MicroBatcher]:
        live = []
        for key, ref in list(self._refs.items()):
            batcher = ref()
            if batcher is None:
                self._refs.pop(key, None)
            else:
                live.append(batcher)
        return live


AUTO_BATCHING_SECONDS = 0.0005


def probe_rows(compute: Compute, example: tuple[Any, list[str]]) -> str | None:
    """Whether the example, stacked twice, comes back with twice its rows: a fixed-size
    or aggregate output is caught at load, before any request is batched."""
    features, methods = example
    try:
        results = compute(_stack([features, features]), methods)
    except Exception:  # noqa: BLE001 - the warm-up reports a model that cannot predict
        return None
    problem = row_mismatch(results, methods, 2 * _rows(features))
    return None if problem is None else f"at load, {problem}"


def choose_batcher(
    mode: str,
    compiled: bool,
    compute: Compute,
    example: tuple[Any, list[str]],
    max_rows: int,
    model: str = "",
    version: str = "",
    execution: ModelExecution | None = None,
) -> MicroBatcher | None:
    """``auto``: batch a model served by sklearn whose one-row call takes 0.5 ms or more,
    measured once at load; a compiled model's call is already microseconds. A model whose
    example breaks the row contract gets a batcher that is stopped from the start."""
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
    batcher = MicroBatcher(compute, max_rows, model, version, execution)
    problem = probe_rows(compute, example)
    if problem is not None:
        batcher.stop(problem)
    return batcher
