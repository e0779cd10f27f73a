"""Prometheus metrics of the response cache, read from the cache when scraped.

MLServer's metrics port serves prometheus_client's default ``REGISTRY`` (in-process; with
parallel workers it merges the workers' multiprocess files instead). MLServer's own
``mlserver.metrics.REGISTRY`` is a separate registry that the endpoint never serves, so
the collector is registered in the default one. Reading at scrape time keeps the
request path free of Prometheus locks.

    v2serve_cache_hits_total{model}              lookups answered from the cache
    v2serve_cache_misses_total{model}            lookups that ran the estimator
    v2serve_cache_evictions_total{model,reason}  capacity (LRU, entries or bytes), expired (TTL)
    v2serve_cache_entries{model}                 entries held now
    v2serve_cache_bytes{model}                   bytes held now
"""

from collections.abc import Iterator

from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric
from prometheus_client.registry import Collector

from .responses import ResponseCache

EVICTION_REASONS = ("capacity", "expired")


class CacheCollector(Collector):
    def __init__(self, cache: ResponseCache):
        self.cache = cache

    def collect(self) -> Iterator[Metric]:
        lookups = self.cache.per_model()
        usage = self.cache.usage()
        hits = CounterMetricFamily(
            "v2serve_cache_hits", "Response cache lookups answered from the cache", labels=["model"]
        )
        misses = CounterMetricFamily(
            "v2serve_cache_misses", "Response cache lookups that ran the model", labels=["model"]
        )
        for model, stats in sorted(lookups.items()):
            hits.add_metric([model], stats.hit_count)
            misses.add_metric([model], stats.miss_count)
        evictions = CounterMetricFamily(
            "v2serve_cache_evictions",
            "Response cache entries evicted, by reason",
            labels=["model", "reason"],
        )
        entries = GaugeMetricFamily(
            "v2serve_cache_entries", "Response cache entries held", labels=["model"]
        )
        held = GaugeMetricFamily(
            "v2serve_cache_bytes", "Response cache bytes held", labels=["model"]
        )
        for model, model_usage in sorted(usage.items()):
            for reason in EVICTION_REASONS:
                evictions.add_metric([model, reason], model_usage.evictions.get(reason, 0))
            entries.add_metric([model], model_usage.entries)
            held.add_metric([model], model_usage.bytes)
        yield from (hits, misses, evictions, entries, held)
