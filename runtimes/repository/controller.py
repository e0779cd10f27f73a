"""Keeps what is served in step with the repository folder.

Each scan fingerprints every version folder. A folder renamed into place is loaded at
once; a folder written in place is loaded once it has stayed unchanged for the settle
period. The version policy then decides what is served: new versions load first (and
warm up), and only then are the versions that left the policy retired, after their
in-flight requests finish. A version that fails to load is not retried until its folder
changes, and never displaces the version that serves.
"""

import asyncio
import contextlib
import logging
import time
from dataclasses import dataclass

from ..errors import ModelLoadFailed, ModelUnavailable, SettingsError
from ..settings import ServerOptions, VersionPolicy
from .inotify import Inotify, open_inotify
from .layout import MODEL_SETTINGS_FILENAME, Fingerprint, ModelFolder, escapes, fingerprint
from .lifecycle import VersionLifecycle
from .planner import Plan, VersionView, plan
from .repository import VersionedRepository, model_values, version_policy, version_settings

logger = logging.getLogger("v2serve.repository")
Key = tuple[str, int]


@dataclass
class _Seen:
    fingerprint: Fingerprint
    since: float
    renamed: bool


class RepositoryController:
    def __init__(
        self,
        repository: VersionedRepository,
        lifecycle: VersionLifecycle,
        options: ServerOptions,
    ):
        self.repository = repository
        self.lifecycle = lifecycle
        self.states = lifecycle.states
        self.options = options
        self.held: set[str] = set()
        self._seen: dict[Key, _Seen] = {}
        self._served: dict[Key, Fingerprint] = {}
        self._failed: dict[Key, Fingerprint] = {}
        self._scan_lock = asyncio.Lock()
        self._inotify: Inotify | None = None
        self._task: asyncio.Task[None] | None = None

    # -- views -------------------------------------------------------------------------

    def _view(self, model: ModelFolder, now: float, settle_all: bool) -> dict[int, VersionView]:
        settings_file = model.path / MODEL_SETTINGS_FILENAME
        shared: Fingerprint = ()
        if settings_file.is_file():
            stat = settings_file.stat()
            shared = ((MODEL_SETTINGS_FILENAME, stat.st_size, stat.st_mtime_ns),)
        renamed = self._inotify.renamed_in if self._inotify else set()
        views: dict[int, VersionView] = {}
        for version, path in model.versions.items():
            key = (model.name, version)
            current = shared + fingerprint(path, model.repository_root)
            # A file renamed over an artifact of a known version is instant too; files
            # renamed into a new folder are not (rsync builds folders that way).
            known = key in self._served or key in self._failed
            arrived_by_rename = path in renamed or (
                known and any(p.parent == path for p in renamed)
            )
            seen = self._seen.get(key)
            if seen is None or seen.fingerprint != current:
                seen = _Seen(current, now, arrived_by_rename)
                self._seen[key] = seen
            stable = settle_all or seen.renamed or now - seen.since >= self.options.settle_seconds
            views[version] = VersionView(current, stable)
        return views

    def _plan(self, name: str, present: dict[int, VersionView], policy: VersionPolicy) -> Plan:
        return plan(present, self._served_versions(name), self._failed_versions(name), policy)

    def _served_versions(self, name: str) -> dict[int, Fingerprint]:
        return {v: fp for (m, v), fp in self._served.items() if m == name}

    def _failed_versions(self, name: str) -> dict[int, Fingerprint]:
        return {v: fp for (m, v), fp in self._failed.items() if m == name}

    # -- actions -----------------------------------------------------------------------

    async def _load(self, model: ModelFolder, values: dict, version: int, fp: Fingerprint) -> None:
        key = (model.name, version)
        try:
            settings = version_settings(model, version, values)
        except (SettingsError, ModelLoadFailed) as exc:
            reason = exc.reason if isinstance(exc, ModelLoadFailed) else str(exc)
            self.lifecycle.refuse(model.name, str(version), reason)
            self._failed[key] = fp
            return
        if await self.lifecycle.load(settings):
            self._served[key] = fp
            self._failed.pop(key, None)
        else:
            self._failed[key] = fp

    async def _retire(self, name: str, version: int) -> None:
        self._served.pop((name, version), None)
        await self.lifecycle.retire(name, str(version))

    async def _reconcile_model(self, model: ModelFolder, now: float, settle_all: bool) -> None:
        try:
            values = model_values(model)
            policy = version_policy(model, values)
        except (SettingsError, ModelLoadFailed) as exc:
            reason = exc.reason if isinstance(exc, ModelLoadFailed) else str(exc)
            self.lifecycle.refuse(model.name, "", reason)
            return
        self.lifecycle.forget(model.name, "")
        present = self._view(model, now, settle_all)
        for version in self._plan(model.name, present, policy).load:
            await self._load(model, values, version, present[version].fingerprint)
        for version in self._plan(model.name, present, policy).retire:
            await self._retire(model.name, version)
        for version in present:
            if version not in policy.select(present) and (model.name, version) not in self._served:
                self.lifecycle.forget(model.name, str(version))

    async def _remove_model(self, name: str) -> None:
        for version in sorted(self._served_versions(name)):
            await self._retire(name, version)
        for key in [k for k in (*self._seen, *self._failed) if k[0] == name]:
            self._seen.pop(key, None)
            self._failed.pop(key, None)
        self.lifecycle.remove_model(name)

    async def reconcile(self, settle_all: bool = False) -> None:
        """One scan of the whole repository. Scans run one at a time; each model's work
        runs under that model's lock, so an explicit load or unload never interleaves."""
        async with self._scan_lock:
            now = time.monotonic()
            consumed = set(self._inotify.renamed_in) if self._inotify else set()
            folders = {m.name: m for m in self.repository.model_folders()}
            for name, model in folders.items():
                async with self.lifecycle.model_lock(name):
                    if name in self.held:
                        continue
                    if self._inotify:
                        self._watch(model)
                    await self._reconcile_model(model, now, settle_all)
            known = {m for m, _ in self._served} | {s.model for s in self.states.all()}
            for name in sorted(known - set(folders)):
                async with self.lifecycle.model_lock(name):
                    await self._remove_model(name)
            if self._inotify:
                self._inotify.renamed_in -= consumed

    def _folder(self, name: str) -> ModelFolder | None:
        return next((m for m in self.repository.model_folders() if m.name == name), None)

    # -- explicit control (the repository API) -----------------------------------------

    async def load_model(self, name: str) -> None:
        """Load what the policy selects, now; the verdict is taken under the model's lock,
        so an unload that arrives meanwhile waits for it instead of falsifying it."""
        async with self.lifecycle.model_lock(name):
            model = self._folder(name)
            if model is None:
                raise ModelUnavailable(name)
            self.held.discard(name)
            if self._inotify:
                self._watch(model)
            await self._reconcile_model(model, time.monotonic(), settle_all=True)
            if not self.states.has_ready_version(name):
                reasons = "; ".join(s.reason for s in self.states.of_model(name) if s.reason)
                raise ModelLoadFailed(name, None, reasons or "no version could be loaded")

    async def unload_model(self, name: str) -> None:
        async with self.lifecycle.model_lock(name):
            if self._folder(name) is None and name not in {m for m, _ in self._served}:
                raise ModelUnavailable(name)
            self.held.add(name)
            await self._remove_model(name)

    # -- watching ----------------------------------------------------------------------

    def _watch(self, model: ModelFolder) -> None:
        """Folders inside the repository only: a link out of it is refused, not watched."""
        assert self._inotify is not None
        self._inotify.watch(model.path)
        for path in model.versions.values():
            if not escapes(model.repository_root, path):
                self._inotify.watch(path)

    def _pending_settle(self, now: float) -> float | None:
        waits = [
            self.options.settle_seconds - (now - seen.since)
            for key, seen in self._seen.items()
            if not seen.renamed
            and self._served.get(key) != seen.fingerprint
            and self._failed.get(key) != seen.fingerprint
            and now - seen.since < self.options.settle_seconds
        ]
        return max(0.05, min(waits)) if waits else None

    async def _watch_loop(self) -> None:
        while True:
            timeout = self.options.poll_interval
            pending = self._pending_settle(time.monotonic())
            if pending is not None:
                timeout = min(timeout, pending + 0.01)
            if self._inotify is not None:
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(self._inotify.woken.wait(), timeout)
                self._inotify.woken.clear()
            else:
                await asyncio.sleep(timeout)
            try:
                await self.reconcile()
            except Exception:
                logger.exception("repository scan failed; retrying at the next one")

    def start_watching(self) -> None:
        loop = asyncio.get_running_loop()
        self._inotify = open_inotify() if self.options.use_inotify else None
        if self._inotify is not None:
            self._inotify.attach(loop)
            self._inotify.watch(self.repository.root)
            for model in self.repository.model_folders():
                self._watch(model)
        self._task = loop.create_task(self._watch_loop())

    async def stop_watching(self) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
        if self._inotify is not None:
            self._inotify.close(asyncio.get_running_loop())
            self._inotify = None
