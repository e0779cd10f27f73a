"""A correct response cache, in place of MLServer 1.7.1's (which keys on the request JSON,
without model or version, so two models share answers; and evicts FIFO).

- Keyed on what determines the answer (``key``), scoped to one loaded runtime instance
  of a model version (``backend``), so a replaced or unloaded version never answers again.
- Bounded by entries and bytes, LRU, optional TTL (``lru``); errors are never stored.
- Per process: the server configures one instance at start-up and each runtime binds to
  it in ``load()``. With MLServer's parallel workers the runtimes run in spawned worker
  processes that never see this configuration, so the cache is off there (the server
  logs a warning); on KServe each replica has its own cache.
- Observable on the metrics port (``metrics``) and through ``LookupStats`` for Triton's
  statistics extension.
"""

import logging

from mlserver.settings import ModelSettings
from prometheus_client import REGISTRY, CollectorRegistry

from ..settings import CacheSettings
from .backend import CacheBackend, CacheScope, ModelUsage, Results
from .lru import LRUStore
from .metrics import CacheCollector
from .responses import Lookup, LookupStats, ModelCache, ResponseCache

__all__ = [
    "CacheBackend",
    "CacheScope",
    "LRUStore",
    "Lookup",
    "LookupStats",
    "ModelCache",
    "ModelUsage",
    "ResponseCache",
    "Results",
    "bind_model_cache",
    "configure",
    "response_cache",
]

logger = logging.getLogger("v2serve.cache")

_active: ResponseCache | None = None
_published: tuple[CollectorRegistry, CacheCollector] | None = None


def configure(
    settings: CacheSettings, registry: CollectorRegistry = REGISTRY
) -> ResponseCache | None:
    """Build this process's cache (or none) and publish its metrics; called at start-up."""
    global _active, _published
    if _published is not None:
        _published[0].unregister(_published[1])
        _published = None
    _active = None
    if not settings.enabled:
        return None
    store = LRUStore(settings.max_entries, settings.max_bytes, settings.ttl_seconds)
    _active = ResponseCache(store)
    collector = CacheCollector(_active)
    registry.register(collector)
    _published = (registry, collector)
    return _active


def response_cache() -> ResponseCache | None:
    return _active


def bind_model_cache(model_settings: ModelSettings) -> ModelCache | None:
    """The model's cache handle: on when the server's is, unless the model opts out.

    MLServer's ``ModelSettings.cache_enabled`` defaults to False, so only a value the
    model's settings actually set (``model_fields_set``) counts.
    """
    said = "cache_enabled" in model_settings.model_fields_set
    cache = _active
    if cache is None:
        if said and model_settings.cache_enabled:
            logger.warning(
                "model '%s' sets cache_enabled but the server's cache is off "
                "(cache_enabled / MLSERVER_CACHE_ENABLED)",
                model_settings.name,
            )
        return None
    if said and not model_settings.cache_enabled:
        return None
    return ModelCache(cache, model_settings.name, model_settings.version)
