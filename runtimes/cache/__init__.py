"""A correct response cache, in place of MLServer 1.7.1's (which keys on the request JSON,
without model or version, so two models share answers; and evicts FIFO).

- Keyed on what determines the answer (``key``), scoped to one loaded runtime instance
  of a model version (``backend``), so a replaced or unloaded version never answers again.
- Bounded by entries and bytes, LRU, optional TTL (``lru``); errors are never stored.
- Per process: the server builds one instance at start-up and injects it into each
  runtime it constructs (``runtimes.runtime_api.RuntimeServices``), which binds to it in
  ``load()``. Under plain ``mlserver start`` nothing is injected and there is no cache.
  With MLServer's parallel workers the runtimes run in spawned worker processes that
  are never injected, so the cache is off there (the server logs a warning); on KServe
  each replica has its own cache.
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
    "build_response_cache",
    "publish_metrics",
]

logger = logging.getLogger("v2serve.cache")


def build_response_cache(settings: CacheSettings) -> ResponseCache | None:
    """The server's cache (or none), built once at start-up and injected from there."""
    if not settings.enabled:
        return None
    return ResponseCache(LRUStore(settings.max_entries, settings.max_bytes, settings.ttl_seconds))


def publish_metrics(cache: ResponseCache, registry: CollectorRegistry = REGISTRY) -> CacheCollector:
    """Register the cache's collector; ``registry.unregister`` it to take it back."""
    collector = CacheCollector(cache)
    registry.register(collector)
    return collector


def bind_model_cache(
    cache: ResponseCache | None, model_settings: ModelSettings
) -> ModelCache | None:
    """The model's cache handle: on when the server's is, unless the model opts out.

    MLServer's ``ModelSettings.cache_enabled`` defaults to False, so only a value the
    model's settings actually set (``model_fields_set``) counts.
    """
    said = "cache_enabled" in model_settings.model_fields_set
    if cache is None:
        if said and model_settings.cache_enabled:
            logger.warning(
                "model '%s' sets cache_enabled but there is no response cache here "
                "(the server's cache_enabled / MLSERVER_CACHE_ENABLED is off, or the model "
                "runs outside v2serve's server)",
                model_settings.name,
            )
        return None
    if said and not model_settings.cache_enabled:
        return None
    return ModelCache(cache, model_settings.name, model_settings.version)
