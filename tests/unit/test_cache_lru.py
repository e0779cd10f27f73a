"""The in-process store: LRU order, the entry and byte bounds, TTL expiry, invalidation."""

import numpy as np
import pytest

from runtimes.cache import CacheScope, LRUStore
from runtimes.cache.lru import results_size

A1 = CacheScope("a", "1", 1)
B1 = CacheScope("b", "1", 2)


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def _results(value: float, size: int = 1) -> dict[str, np.ndarray]:
    return {"predict": np.full(size, value)}


def _put(store: LRUStore, scope: CacheScope, n: int, size: int = 1) -> None:
    store.put(scope, bytes([n]), _results(n, size))


def _has(store: LRUStore, scope: CacheScope, n: int) -> bool:
    return store.get(scope, bytes([n])) is not None


def test_least_recently_used_goes_first():
    store = LRUStore(max_entries=3, max_bytes=10**9)
    for n in (1, 2, 3):
        _put(store, A1, n)
    assert _has(store, A1, 1)  # 1 is now the most recent; 2 the least
    _put(store, A1, 4)
    assert [_has(store, A1, n) for n in (1, 2, 3, 4)] == [True, False, True, True]
    assert store.usage()["a"].evictions == {"capacity": 1}


def test_byte_bound_evicts_until_it_fits():
    one = results_size(_results(0, 100)) + 1
    store = LRUStore(max_entries=100, max_bytes=3 * one)
    for n in (1, 2, 3):
        _put(store, A1, n, size=100)
    assert store.bytes == 3 * one
    _put(store, A1, 4, size=100)
    assert len(store) == 3 and store.bytes <= 3 * one
    assert not _has(store, A1, 1) and _has(store, A1, 4)
    _put(store, A1, 5, size=250)  # needs the room of two or three entries
    assert store.bytes <= 3 * one and _has(store, A1, 5)
    assert len(store) < 3


def test_an_entry_larger_than_the_bound_is_not_stored():
    store = LRUStore(max_entries=10, max_bytes=results_size(_results(0, 10)))
    _put(store, A1, 1, size=1)
    _put(store, A1, 2, size=1000)
    assert _has(store, A1, 1) and not _has(store, A1, 2)


def test_ttl_expires_entries_on_read_and_on_store():
    clock = Clock()
    store = LRUStore(max_entries=10, max_bytes=10**9, ttl_seconds=5, clock=clock)
    _put(store, A1, 1)
    clock.now += 3
    _put(store, A1, 2)
    assert _has(store, A1, 1)  # a hit does not extend its life
    clock.now += 2.5
    assert not _has(store, A1, 1) and _has(store, A1, 2)
    clock.now += 3
    _put(store, A1, 3)  # the store sweeps 2, which nobody read since it expired
    assert len(store) == 1
    assert store.usage()["a"].evictions == {"expired": 2}


def test_without_ttl_entries_do_not_expire():
    clock = Clock()
    store = LRUStore(max_entries=10, max_bytes=10**9, clock=clock)
    _put(store, A1, 1)
    clock.now += 10**9
    assert _has(store, A1, 1)


def test_scopes_are_separate_and_invalidation_frees_one():
    store = LRUStore(max_entries=10, max_bytes=10**9)
    store.put(A1, b"k", _results(1))
    store.put(B1, b"k", _results(2))
    assert store.get(A1, b"k")["predict"][0] == 1
    assert store.get(B1, b"k")["predict"][0] == 2
    assert store.get(CacheScope("a", "1", 3), b"k") is None  # a reloaded instance
    store.invalidate(A1)
    assert store.get(A1, b"k") is None and store.get(B1, b"k") is not None
    usage = store.usage()
    assert (usage["a"].entries, usage["a"].bytes, usage["a"].evictions) == (0, 0, {})
    assert usage["b"].entries == 1 and store.bytes == usage["b"].bytes


def test_stored_results_cannot_be_altered():
    store = LRUStore(max_entries=10, max_bytes=10**9)
    store.put(A1, b"k", _results(1))
    cached = store.get(A1, b"k")
    with pytest.raises(ValueError):
        cached["predict"][0] = 7


def test_replacing_an_entry_keeps_the_accounting():
    store = LRUStore(max_entries=10, max_bytes=10**9)
    store.put(A1, b"k", _results(1, 10))
    store.put(A1, b"k", _results(2, 20))
    assert len(store) == 1 and store.bytes == results_size(_results(0, 20)) + 1
    assert store.usage()["a"].evictions == {}
