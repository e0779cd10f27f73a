"""Prediction logging: a model's requests and responses, successes and failures, as
CloudEvents (``prediction_events``) to an HTTP sink or a JSON-lines file. Failures
include requests the model never ran: refused in validation (400), dropped at their
deadline (504), refused by a known model before a version took them (404 for a version
that is not served, 429, 503: logged under the version asked for), and bodies the
protocol adapter could not decode (400, 413: logged with no tensors). A request to a
model that is not loaded at all has no settings to follow and is not logged.

Off unless a model's ``parameters.extra.prediction_log`` says where
(``runtimes.settings.PredictionLogSettings``). The data plane calls ``offer`` once per
request it served; for a model without the setting that costs one dictionary lookup.
For a sampled request ``offer`` keeps references and queues them; nothing is decoded or
serialised on the request path.

One drain task per process takes the queue in order. Building the events (decoding the
tensors) and writing files happen on one thread of the log's own, off the event loop and
away from the executor that inference uses; HTTP sinks get binary-mode CloudEvents from
aiohttp with a short timeout. A model's queue holds at most ``queue`` predictions: past
that, new ones are dropped and counted, so a slow or dead sink never holds up inference,
and a sink failure is counted and logged (at most once per ``WARNING_INTERVAL`` per
sink), never seen by a client. ``close`` flushes for at most ``FLUSH_SECONDS`` at stop.

Every prediction chosen ends in exactly one of the counters (``PredictionLogMetrics``):
sent, failed or dropped.
"""

import asyncio
import logging
import os
import random
import time
import weakref
from collections.abc import Callable, Mapping
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import IO

import aiohttp
from mlserver.model import MLModel
from mlserver.types import InferenceRequest, InferenceResponse

from ..errors import SettingsError
from ..settings import PredictionLogSettings, parse_model_extra
from .metrics import PredictionLogMetrics
from .prediction_events import CloudEvent, Origin, Prediction, prediction_events

logger = logging.getLogger("v2serve.prediction_log")

HTTP_TIMEOUT_SECONDS = 2.0
"""An HTTP sink's whole exchange, per event: longer and the prediction counts as failed."""
FLUSH_SECONDS = 5.0
"""How long ``close`` waits for queued predictions at stop; the rest are dropped."""
WARNING_INTERVAL = 30.0
"""Seconds between two warnings about the same failing sink."""


@dataclass(frozen=True)
class _Entry:
    """What one loaded model instance asks for, parsed once."""

    labels: tuple[str, str]
    settings: PredictionLogSettings | None
    redact: frozenset[str]


@dataclass(frozen=True)
class _Queued:
    prediction: Prediction
    entry: _Entry


class SinkWarnings:
    """At most one warning per sink per interval, saying how many failures it stands for."""

    def __init__(
        self, interval: float = WARNING_INTERVAL, clock: Callable[[], float] = time.monotonic
    ):
        self.interval = interval
        self.clock = clock
        self._last: dict[str, float] = {}
        self._unreported: dict[str, int] = {}

    def failed(self, sink: str, reason: str) -> bool:
        """Log the failure unless one was logged recently; True if it was logged."""
        now = self.clock()
        last = self._last.get(sink)
        if last is not None and now - last < self.interval:
            self._unreported[sink] = self._unreported.get(sink, 0) + 1
            return False
        self._last[sink] = now
        unreported = self._unreported.pop(sink, 0)
        more = f" ({unreported} more failures since the last warning)" if unreported else ""
        logger.warning("prediction log sink %s failed: %s%s", sink, reason, more)
        return True


class PredictionLog:
    def __init__(
        self,
        metrics: PredictionLogMetrics | None = None,
        *,
        rng: random.Random | None = None,
        origin: Origin | None = None,
        environ: Mapping[str, str] | None = None,
        wall_clock: Callable[[], float] = time.time,
        http_timeout: float = HTTP_TIMEOUT_SECONDS,
        warnings: SinkWarnings | None = None,
    ):
        self.metrics = metrics
        self._random = (rng or random.Random()).random
        self.origin = origin or Origin.from_environment(os.environ if environ is None else environ)
        self._wall_clock = wall_clock
        self._http_timeout = http_timeout
        self._warnings = warnings or SinkWarnings()
        self._entries: dict[int, _Entry] = {}
        self._pending: dict[tuple[str, str], int] = {}
        self._queue: asyncio.Queue[_Queued] | None = None
        self._drain_task: asyncio.Task[None] | None = None
        self._executor: ThreadPoolExecutor | None = None
        self._session: aiohttp.ClientSession | None = None
        self._files: dict[Path, IO[bytes]] = {}
        self._closing = False

    # The request path.

    def logs(self, model: MLModel) -> bool:
        """Whether ``model`` logs predictions (its requests need their ``InferenceRequest``)."""
        entry = self._entries.get(id(model))
        if entry is None:
            entry = self._watch(model)
        return entry.settings is not None

    def offer(
        self,
        model: MLModel,
        payload: InferenceRequest,
        response: InferenceResponse | None,
        error: BaseException | None,
        elapsed_ns: int,
        version: str | None = None,
    ) -> None:
        """Queue one request if its model logs predictions and it is sampled. ``version``:
        for a request refused before a version took it (404 for an unknown version, 429,
        503), the version it asked for ("" for none), logged instead of ``model``'s."""
        entry = self._entries.get(id(model))
        if entry is None:
            entry = self._watch(model)
        settings = entry.settings
        if settings is None:
            return
        if settings.sample < 1.0 and self._random() >= settings.sample:
            return
        try:
            self._enqueue(entry, settings, payload, response, error, elapsed_ns, version)
        except Exception:  # a logging fault must never fail the request it logs
            logger.exception("prediction log: could not queue a prediction")

    def _watch(self, model: MLModel) -> _Entry:
        """Parse the model's setting once per loaded instance; forgotten when it goes."""
        parameters = model.settings.parameters
        try:
            extra = parse_model_extra(parameters.extra if parameters else None, model.name)
            settings = extra.prediction_log
        except SettingsError as exc:  # refused at load already; never logs by accident
            logger.warning("prediction log off for %s: %s", model.name, exc)
            settings = None
        entry = _Entry(
            labels=(model.name, model.version or ""),
            settings=settings,
            redact=frozenset(settings.redact) if settings else frozenset(),
        )
        key = id(model)
        self._entries[key] = entry
        weakref.finalize(model, self._entries.pop, key, None)
        return entry

    def _enqueue(
        self,
        entry: _Entry,
        settings: PredictionLogSettings,
        payload: InferenceRequest,
        response: InferenceResponse | None,
        error: BaseException | None,
        elapsed_ns: int,
        version: str | None = None,
    ) -> None:
        labels = entry.labels
        pending = self._pending.get(labels, 0)
        if self._closing or pending >= settings.queue:
            self._count("dropped", labels)
            return
        queue = self._queue
        if queue is None:
            queue = self._queue = asyncio.Queue()
        served = labels[1] if version is None else version
        prediction = Prediction(
            labels[0], served, payload, response, error, elapsed_ns, self._wall_clock()
        )
        self._pending[labels] = pending + 1
        queue.put_nowait(_Queued(prediction, entry))
        if self._drain_task is None:
            self._drain_task = asyncio.get_running_loop().create_task(self._drain(queue))

    # The drain.

    async def _drain(self, queue: "asyncio.Queue[_Queued]") -> None:
        while True:
            item = await queue.get()
            outcome = "dropped"
            try:
                outcome = "sent" if await self._deliver(item) else "failed"
            except asyncio.CancelledError:
                raise
            except Exception as exc:  # a bug here must not stop the drain
                self._warnings.failed(_sink_name(item), f"{type(exc).__name__}: {exc}")
                outcome = "failed"
            finally:
                self._count(outcome, item.entry.labels)
                self._pending[item.entry.labels] -= 1
                queue.task_done()

    async def _deliver(self, item: _Queued) -> bool:
        settings = item.entry.settings
        assert settings is not None, "only models that log predictions are queued"
        loop = asyncio.get_running_loop()
        executor = self._thread()
        path = settings.file_path
        if path is not None:
            failure = await loop.run_in_executor(executor, self._write_file, path, item)
        else:
            events = await loop.run_in_executor(
                executor, prediction_events, item.prediction, item.entry.redact, self.origin
            )
            failure = await self._post(settings.sink, events)
        if failure is not None:
            self._warnings.failed(_sink_name(item), failure)
        return failure is None

    def _thread(self) -> ThreadPoolExecutor:
        if self._executor is None:
            self._executor = ThreadPoolExecutor(1, thread_name_prefix="v2serve-prediction-log")
        return self._executor

    def _write_file(self, path: Path, item: _Queued) -> str | None:
        """On the log's thread: build both events and append them as two lines."""
        request, response = prediction_events(item.prediction, item.entry.redact, self.origin)
        try:
            sink = self._files.get(path)
            if sink is None:
                sink = self._files[path] = path.open("ab")
            sink.write(request.structured() + b"\n" + response.structured() + b"\n")
            sink.flush()
        except OSError as exc:
            self._files.pop(path, None)
            return f"cannot write {path}: {exc}"
        return None

    async def _post(self, url: str, events: tuple[CloudEvent, CloudEvent]) -> str | None:
        session = self._session
        if session is None:
            timeout = aiohttp.ClientTimeout(total=self._http_timeout)
            session = self._session = aiohttp.ClientSession(timeout=timeout)
        for event in events:
            try:
                async with session.post(
                    url, data=event.data, headers=event.http_headers()
                ) as reply:
                    if not 200 <= reply.status < 300:
                        return f"answered HTTP {reply.status} to a {event.attributes['type']}"
            except (aiohttp.ClientError, TimeoutError, OSError) as exc:
                return f"{type(exc).__name__}: {exc}" if str(exc) else type(exc).__name__
        return None

    def _count(self, outcome: str, labels: tuple[str, str]) -> None:
        if self.metrics is not None:
            getattr(self.metrics, outcome).labels(*labels).inc()

    # Stopping, and the version lifecycle.

    async def close(self, timeout: float = FLUSH_SECONDS) -> None:
        """Stop taking predictions, send what is queued for at most ``timeout`` seconds,
        count the rest as dropped, and release the session, the files and the thread."""
        self._closing = True
        queue, task = self._queue, self._drain_task
        if queue is not None and task is not None:
            try:
                await asyncio.wait_for(queue.join(), timeout)
            except TimeoutError:
                logger.warning(
                    "prediction log: %d predictions not sent within %ss of stopping",
                    queue.qsize() + 1,
                    timeout,
                )
            task.cancel()
            await asyncio.gather(task, return_exceptions=True)
            while not queue.empty():
                item = queue.get_nowait()
                self._count("dropped", item.entry.labels)
                self._pending[item.entry.labels] -= 1
        if self._session is not None:
            await self._session.close()
            self._session = None
        if self._executor is not None:
            self._executor.submit(self._close_files)
            self._executor.shutdown(wait=False)
            self._executor = None

    def _close_files(self) -> None:
        for sink in self._files.values():
            sink.close()
        self._files.clear()

    def version_loaded(self, model: str, version: str, seconds: float) -> None:
        pass

    def load_failed(self, model: str, version: str, seconds: float, reason: str) -> None:
        pass

    def version_retired(self, model: str, version: str) -> None:
        if self.metrics is not None and not self._pending.get((model, version)):
            self.metrics.forget(model, version)


def _sink_name(item: _Queued) -> str:
    settings = item.entry.settings
    return settings.sink if settings is not None else "?"
