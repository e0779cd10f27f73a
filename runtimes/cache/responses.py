"""The response cache in front of a store: lookups, timing, and hit/miss statistics.

A lookup counts as a hit or a miss when it is made; a miss's time includes the store
that follows it, as Triton's ``cache_miss`` duration does. Only results are stored,
never errors: the runtime stores after the estimator has answered, and an exception
skips the store.

There is no single-flight: identical concurrent misses may each run the estimator and
each store the same results, which are correct for the scope either way. In-process,
``predict`` does not await between lookup and store, so the event loop serialises them
and the second request hits.
"""

import itertools
import threading
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass

import numpy as np

from .backend import CacheBackend, CacheScope, ModelUsage, Results
from .key import request_digest

_instances = itertools.count(1)


@dataclass
class LookupStats:
    """Triton's statistics extension's ``cache_hit`` and ``cache_miss``: count and ns."""

    hit_count: int = 0
    hit_ns: int = 0
    miss_count: int = 0
    miss_ns: int = 0


@dataclass(frozen=True)
class Lookup:
    digest: bytes
    results: Results | None


class ResponseCache:
    def __init__(self, backend: CacheBackend):
        self.backend = backend
        self._lock = threading.Lock()
        self._stats: dict[tuple[str, str], LookupStats] = {}

    def scope(self, model: str, version: str | None) -> CacheScope:
        """A fresh scope for one loaded runtime instance."""
        return CacheScope(model, version or "", next(_instances))

    def lookup(
        self, scope: CacheScope, tensors: Mapping[str, np.ndarray], outputs: Sequence[str]
    ) -> Lookup:
        started = time.perf_counter_ns()
        digest = request_digest(tensors, outputs)
        results = self.backend.get(scope, digest)
        elapsed = time.perf_counter_ns() - started
        with self._lock:
            stats = self._stats.setdefault((scope.model, scope.version), LookupStats())
            if results is None:
                stats.miss_count += 1
                stats.miss_ns += elapsed
            else:
                stats.hit_count += 1
                stats.hit_ns += elapsed
        return Lookup(digest, results)

    def store(self, scope: CacheScope, lookup: Lookup, results: Results) -> None:
        started = time.perf_counter_ns()
        self.backend.put(scope, lookup.digest, results)
        elapsed = time.perf_counter_ns() - started
        with self._lock:
            self._stats.setdefault((scope.model, scope.version), LookupStats()).miss_ns += elapsed

    def release(self, scope: CacheScope) -> None:
        self.backend.invalidate(scope)

    def statistics(self, model: str, version: str | None) -> LookupStats:
        """Counters for one model version (all its load instances), a copy."""
        with self._lock:
            stats = self._stats.get((model, version or ""), LookupStats())
            return LookupStats(stats.hit_count, stats.hit_ns, stats.miss_count, stats.miss_ns)

    def per_model(self) -> dict[str, LookupStats]:
        """Counters summed over each model's versions."""
        totals: dict[str, LookupStats] = {}
        with self._lock:
            for (model, _), stats in self._stats.items():
                total = totals.setdefault(model, LookupStats())
                total.hit_count += stats.hit_count
                total.hit_ns += stats.hit_ns
                total.miss_count += stats.miss_count
                total.miss_ns += stats.miss_ns
        return totals

    def usage(self) -> dict[str, ModelUsage]:
        return self.backend.usage()

    # A LifecycleListener (runtimes.repository.lifecycle). Entries belong to a runtime
    # instance's scope, released by its unload; the lookup counters are per version.
    def version_loaded(self, model: str, version: str, seconds: float) -> None:
        pass

    def load_failed(self, model: str, version: str, seconds: float, reason: str) -> None:
        pass

    def version_retired(self, model: str, version: str) -> None:
        with self._lock:
            self._stats.pop((model, version), None)


class ModelCache:
    """One runtime instance's handle: the shared cache bound to that instance's scope."""

    def __init__(self, cache: ResponseCache, model: str, version: str | None):
        self.cache = cache
        self.scope = cache.scope(model, version)

    def lookup(self, tensors: Mapping[str, np.ndarray], outputs: Sequence[str]) -> Lookup:
        return self.cache.lookup(self.scope, tensors, outputs)

    def store(self, lookup: Lookup, results: Results) -> None:
        self.cache.store(self.scope, lookup, results)

    def answer(
        self,
        tensors: Mapping[str, np.ndarray],
        outputs: Sequence[str],
        compute: Callable[[], Results],
    ) -> Results:
        """The cached results, or ``compute()``'s, stored; an exception stores nothing."""
        lookup = self.lookup(tensors, outputs)
        if lookup.results is not None:
            return lookup.results
        results = compute()
        self.store(lookup, results)
        return results

    def release(self) -> None:
        self.cache.release(self.scope)
