"""What a response-cache store must do, so that a shared store could replace the local one.

Entries live in scopes: one scope per loaded runtime instance of a model version. A
reloaded version is a new instance with a new scope, so the old instance's answers can
never serve the new one, whatever order MLServer loads and unloads them in (it loads the
new instance, swaps it in, and only then unloads the old one).
"""

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Protocol

import numpy as np

Results = Mapping[str, np.ndarray]
"""One response: output name to the estimator's array, in the order requested."""


@dataclass(frozen=True)
class CacheScope:
    model: str
    version: str
    instance: int
    """Unique per loaded runtime instance in this process."""


@dataclass
class ModelUsage:
    """One model's share of a store, for the Prometheus gauges and counters."""

    entries: int = 0
    bytes: int = 0
    evictions: dict[str, int] = field(default_factory=dict)
    """By reason: ``capacity`` (LRU, entry or byte bound) or ``expired`` (TTL)."""


class CacheBackend(Protocol):
    def get(self, scope: CacheScope, digest: bytes) -> Results | None:
        """The stored results, or None on a miss (absent or expired)."""
        ...

    def put(self, scope: CacheScope, digest: bytes, results: Results) -> None: ...

    def invalidate(self, scope: CacheScope) -> None:
        """Forget every entry of one runtime instance and free its memory."""
        ...

    def usage(self) -> dict[str, ModelUsage]:
        """Per model name; a snapshot, safe to read while the store changes."""
        ...
