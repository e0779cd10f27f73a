"""The one owner of a model version's lifecycle; nothing else changes ``ModelStates``.

::

    (absent) ──load──▶ LOADING ──loaded──▶ READY ──retire──▶ UNLOADING ──▶ (forgotten)
                          └──────failed──▶ UNAVAILABLE ──retire/forget──▶ (forgotten)
    READY ──reload──▶ READY        the old instance serves until the new one is ready;
                                   a failed reload keeps it, with the failure as reason
    (absent) ──refuse──▶ UNAVAILABLE   settings or containment refused before any load

Everything else that keeps per-version state (statistics, metrics, the response cache)
hears what happened through one interface, ``LifecycleListener``, registered at
construction, and forgets a retired version there; nothing has to poll the states.

Loads and unloads of one model are serialised by that model's lock (``model_lock``), held
by the repository controller around each piece of work, so a load never observes a
half-finished unload of the same model (and the other way round). Models do not wait
for each other.

Reasons are shown to clients (the repository index, 422 messages): the repository root is
cut out of them, so no message shows where the server keeps its files.
"""

import asyncio
import logging
import re
import time
from collections.abc import Iterable
from pathlib import Path
from typing import Protocol

from mlserver.model import MLModel
from mlserver.settings import ModelSettings

from ..errors import ModelLoadFailed
from ..runtime_api import description_of
from .inflight import InFlight
from .registry import V2ModelRegistry
from .states import ModelStates, VersionState

logger = logging.getLogger("v2serve.repository")


class LifecycleListener(Protocol):
    """What a per-version store is told; each call happens once per event, in order."""

    def version_loaded(self, model: str, version: str, seconds: float) -> None:
        """A version finished loading (warm-up included) and takes traffic."""

    def load_failed(self, model: str, version: str, seconds: float, reason: str) -> None:
        """A load attempt failed; a version that was ready before keeps serving."""

    def version_retired(self, model: str, version: str) -> None:
        """A version was unloaded: forget everything kept about it."""


def relative_to_root(text: str, root: Path | None) -> str:
    """``text`` with the repository root cut out of any path it names."""
    if root is None:
        return text
    pattern = re.compile(re.escape(str(root)) + r"(/|(?![\w.-]))")
    return pattern.sub(lambda match: "" if match.group(1) == "/" else ".", text)


class VersionLifecycle:
    def __init__(
        self,
        registry: V2ModelRegistry,
        states: ModelStates,
        inflight: InFlight,
        *,
        drain_timeout: float,
        root: Path | None = None,
        listeners: Iterable[LifecycleListener] = (),
    ):
        self.registry = registry
        self.states = states
        """Read it freely; only this class writes it."""
        self.inflight = inflight
        self.drain_timeout = drain_timeout
        self.root = root
        self.listeners = tuple(listeners)
        self._locks: dict[str, asyncio.Lock] = {}

    def model_lock(self, name: str) -> asyncio.Lock:
        lock = self._locks.get(name)
        if lock is None:
            lock = self._locks[name] = asyncio.Lock()
        return lock

    # -- readiness ---------------------------------------------------------------------

    def expect(self, names: Iterable[str]) -> None:
        """The models found at start-up: strict readiness waits for each of them."""
        self.states.expected_models = set(names)

    # -- transitions -------------------------------------------------------------------

    async def load(self, model_settings: ModelSettings) -> bool:
        """Load one version; a failure is recorded and logged, never fatal to the server."""
        name, version = model_settings.name, model_settings.version or ""
        started = time.perf_counter()
        was_ready = self.states.has_version_ready(name, version)
        if not was_ready:
            self.states.set(name, version, VersionState.LOADING)
        try:
            model = await self.registry.load(model_settings)
        except Exception as exc:
            reason = self._reason(
                exc.reason if isinstance(exc, ModelLoadFailed) else f"{type(exc).__name__}: {exc}"
            )
            state = VersionState.READY if was_ready else VersionState.UNAVAILABLE
            self.states.set(name, version, state, reason)
            logger.error("model '%s' version %s failed to load: %s", name, version, reason)
            seconds = time.perf_counter() - started
            for listener in self.listeners:
                listener.load_failed(name, version, seconds, reason)
            return False
        seconds = time.perf_counter() - started
        described = description_of(model)
        warning, backend = described.load_warning, described.backend
        description = "; ".join(filter(None, [warning, backend]))
        self.states.set(name, version, VersionState.READY, self._reason(description))
        if warning:
            logger.warning("model '%s' version %s: %s", name, version, warning)
        logger.info("model '%s' version %s is ready (%s)", name, version, backend or "loaded")
        for listener in self.listeners:
            listener.version_loaded(name, version, seconds)
        return True

    def refuse(self, name: str, version: str, reason: str) -> None:
        """Mark a version (``""``: the whole model) unavailable without trying to load it."""
        reason = self._reason(reason)
        self.states.set(name, version, VersionState.UNAVAILABLE, reason)
        where = f"model '{name}'" + (f" version {version}" if version else "")
        logger.error("%s is unavailable: %s", where, reason)

    def forget(self, name: str, version: str) -> None:
        """Drop the status of a version that is not served: out of policy, or fixed."""
        self.states.forget(name, version)

    async def retire(self, name: str, version: str) -> None:
        """Stop routing to a version at once; unload it once its requests have finished,
        then forget it everywhere."""
        if self.states.has_version_ready(name, version):
            self.states.set(name, version, VersionState.UNLOADING)
        timeout = self.drain_timeout

        async def drained(model: MLModel) -> None:
            if not await self.inflight.drained(model, timeout):
                logger.warning(
                    "model '%s' version %s unloaded with requests in flight", name, version
                )

        await self.registry.retire(name, version, drained)
        self.states.forget(name, version)
        for listener in self.listeners:
            listener.version_retired(name, version)
        logger.info("model '%s' version %s is unloaded", name, version)

    def remove_model(self, name: str) -> None:
        """After its versions were retired: forget what is left of a model that is gone."""
        for status in self.states.of_model(name):
            self.states.forget(name, status.version)
        self.states.expected_models.discard(name)

    def _reason(self, text: str) -> str:
        return relative_to_root(text, self.root)
