"""The in-process store: least recently used first out, bounded by entries and by bytes.

An entry's size is its outputs' data plus a fixed estimate of the array objects around
them (strings of BYTES outputs are counted one by one), so ``max_bytes`` bounds the memory
the cache holds to within Python's per-object overhead. With a TTL, every entry lives
the same time from its store, so insertion order is expiry order and expired entries are
dropped from the front of that order on each store (and when read).
"""

import sys
import threading
import time
from collections import OrderedDict
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np

from .backend import CacheScope, ModelUsage, Results

_ARRAY_OVERHEAD = sys.getsizeof(np.empty(0))

Key = tuple[CacheScope, bytes]


def results_size(results: Results) -> int:
    size = 0
    for name, array in results.items():
        size += len(name) + _ARRAY_OVERHEAD + array.nbytes
        if array.dtype == object:
            size += sum(sys.getsizeof(value) for value in array.reshape(-1))
    return size


def _frozen(results: Results) -> dict[str, np.ndarray]:
    """Read-only views, so no reader can alter what later hits return."""
    frozen = {}
    for name, array in results.items():
        view = array.view()
        view.flags.writeable = False
        frozen[name] = view
    return frozen


@dataclass
class _Entry:
    results: dict[str, np.ndarray]
    size: int
    expires_at: float


class LRUStore:
    def __init__(
        self,
        max_entries: int,
        max_bytes: int,
        ttl_seconds: float | None = None,
        clock: Callable[[], float] = time.monotonic,
    ):
        self.max_entries = max_entries
        self.max_bytes = max_bytes
        self.ttl_seconds = ttl_seconds
        self._clock = clock
        self._lock = threading.Lock()
        self._entries: OrderedDict[Key, _Entry] = OrderedDict()  # least recently used first
        self._stored: OrderedDict[Key, None] = OrderedDict()  # oldest store first
        self._scopes: dict[CacheScope, set[bytes]] = {}
        self._usage: dict[str, ModelUsage] = {}
        self._bytes = 0

    def get(self, scope: CacheScope, digest: bytes) -> Results | None:
        key = (scope, digest)
        with self._lock:
            entry = self._entries.get(key)
            if entry is None:
                return None
            if entry.expires_at <= self._clock():
                self._remove(key, "expired")
                return None
            self._entries.move_to_end(key)
            return entry.results

    def put(self, scope: CacheScope, digest: bytes, results: Results) -> None:
        size = results_size(results) + len(digest)
        if size > self.max_bytes:
            return
        key = (scope, digest)
        ttl = self.ttl_seconds
        with self._lock:
            now = self._clock()
            self._drop_expired(now)
            if key in self._entries:
                self._remove(key, None)
            self._entries[key] = _Entry(_frozen(results), size, now + ttl if ttl else float("inf"))
            self._stored[key] = None
            self._scopes.setdefault(scope, set()).add(digest)
            usage = self._usage.setdefault(scope.model, ModelUsage())
            usage.entries += 1
            usage.bytes += size
            self._bytes += size
            while len(self._entries) > self.max_entries or self._bytes > self.max_bytes:
                self._remove(next(iter(self._entries)), "capacity")

    def invalidate(self, scope: CacheScope) -> None:
        with self._lock:
            for digest in list(self._scopes.get(scope, ())):
                self._remove((scope, digest), None)
            self._scopes.pop(scope, None)

    def usage(self) -> dict[str, ModelUsage]:
        with self._lock:
            self._drop_expired(self._clock())
            return {
                model: ModelUsage(u.entries, u.bytes, dict(u.evictions))
                for model, u in self._usage.items()
            }

    def __len__(self) -> int:
        return len(self._entries)

    @property
    def bytes(self) -> int:
        return self._bytes

    def _drop_expired(self, now: float) -> None:
        if not self.ttl_seconds:
            return
        while self._stored:
            key = next(iter(self._stored))
            if self._entries[key].expires_at > now:
                return
            self._remove(key, "expired")

    def _remove(self, key: Key, reason: str | None) -> None:
        """Drop one entry; a reason counts it as an eviction, None (replaced, unloaded) not."""
        entry = self._entries.pop(key)
        del self._stored[key]
        scope, digest = key
        digests = self._scopes.get(scope)
        if digests is not None:
            digests.discard(digest)
        usage = self._usage[scope.model]
        usage.entries -= 1
        usage.bytes -= entry.size
        if reason is not None:
            usage.evictions[reason] = usage.evictions.get(reason, 0) + 1
        self._bytes -= entry.size
