"""The cache front: statistics, errors never stored, per-model switch, metrics, settings."""

import numpy as np
import pytest
from mlserver.settings import ModelSettings, Settings
from prometheus_client import CollectorRegistry, generate_latest
from prometheus_client.parser import text_string_to_metric_families

import runtimes.cache as cache_module
from runtimes.cache import (
    LRUStore,
    ResponseCache,
    bind_model_cache,
    build_response_cache,
    publish_metrics,
)
from runtimes.errors import SettingsError
from runtimes.settings import (
    CacheSettings,
    ServerOptions,
    build_cache_settings,
    build_server_config,
)

X = {"input-0": np.array([[1.0, 2.0]])}


def _handle(model: str = "m", version: str = "1"):
    cache = ResponseCache(LRUStore(max_entries=10, max_bytes=10**6))
    return cache, cache_module.ModelCache(cache, model, version)


def test_second_identical_lookup_hits_and_is_counted():
    cache, handle = _handle()
    calls = []

    def compute():
        calls.append(1)
        return {"predict": np.array([3])}

    first = handle.answer(X, ["predict"], compute)
    second = handle.answer({"input-0": X["input-0"].copy()}, ["predict"], compute)
    assert len(calls) == 1
    np.testing.assert_array_equal(first["predict"], second["predict"])
    stats = cache.statistics("m", "1")
    assert (stats.hit_count, stats.miss_count) == (1, 1)
    assert stats.hit_ns > 0 and stats.miss_ns > 0
    assert cache.statistics("m", "2").hit_count == 0


def test_errors_are_never_stored():
    cache, handle = _handle()

    def failing():
        raise RuntimeError("estimator failed")

    for _ in range(2):
        with pytest.raises(RuntimeError):
            handle.answer(X, ["predict"], failing)
    assert cache.statistics("m", "1").miss_count == 2
    assert len(cache.backend) == 0


def test_a_reloaded_instance_never_sees_the_old_answers():
    cache, old = _handle()
    old.answer(X, ["predict"], lambda: {"predict": np.array([1])})
    new = cache_module.ModelCache(cache, "m", "1")
    answer = new.answer(X, ["predict"], lambda: {"predict": np.array([2])})
    assert answer["predict"][0] == 2
    old.release()  # MLServer unloads the old instance after the new one took over
    assert new.answer(X, ["predict"], lambda: {"predict": np.array([3])})["predict"][0] == 2


@pytest.fixture
def registry():
    return CollectorRegistry()


def _model(**values) -> ModelSettings:
    return ModelSettings.model_validate(
        {"name": "m", "implementation": "runtimes.sklearn.SklearnRuntime", **values}
    )


def test_server_switch_and_model_opt_out():
    off = build_response_cache(CacheSettings(enabled=False))
    assert off is None
    assert bind_model_cache(off, _model(cache_enabled=True)) is None
    on = build_response_cache(CacheSettings(enabled=True))
    assert on is not None
    assert bind_model_cache(on, _model()) is not None
    assert bind_model_cache(on, _model(cache_enabled=True)) is not None
    assert bind_model_cache(on, _model(cache_enabled=False)) is None


def _samples(registry: CollectorRegistry) -> dict[tuple[str, tuple], float]:
    text = generate_latest(registry).decode()
    return {
        (sample.name, tuple(sorted(sample.labels.items()))): sample.value
        for family in text_string_to_metric_families(text)
        for sample in family.samples
    }


def test_metrics_per_model(registry):
    cache = build_response_cache(CacheSettings(enabled=True, max_entries=1))
    assert cache is not None
    collector = publish_metrics(cache, registry)
    handle = bind_model_cache(cache, _model())
    assert handle is not None
    for value in (1.0, 1.0, 2.0):
        handle.answer({"x": np.array([value])}, ["predict"], lambda: {"predict": np.zeros(4)})
    samples = _samples(registry)
    model = (("model", "m"),)
    assert samples[("v2serve_cache_hits_total", model)] == 1
    assert samples[("v2serve_cache_misses_total", model)] == 2
    assert samples[("v2serve_cache_entries", model)] == 1
    assert samples[("v2serve_cache_bytes", model)] == cache.backend.bytes
    assert samples[("v2serve_cache_evictions_total", (("model", "m"), ("reason", "capacity")))] == 1
    registry.unregister(collector)
    assert not any(name.startswith("v2serve_cache") for name, _ in _samples(registry))


def test_cache_settings_come_from_mlserver_and_v2serve_options():
    settings = Settings(cache_enabled=True, cache_size=7)
    environ = {"V2SERVE_CACHE_TTL_SECONDS": "2.5", "V2SERVE_CACHE_MAX_BYTES": "1000"}
    options = build_server_config(None, None, environ=environ).options
    built = build_cache_settings(settings, options)
    assert built == CacheSettings(enabled=True, max_entries=7, max_bytes=1000, ttl_seconds=2.5)
    assert build_cache_settings(Settings(), ServerOptions()) == CacheSettings()


@pytest.mark.parametrize(
    ("environ", "phrase"),
    [
        ({"V2SERVE_CACHE_TTL": "5"}, "cache_ttl"),
        ({"V2SERVE_CACHE_MAX_BYTES": "lots"}, "cache_max_bytes"),
        ({"V2SERVE_CACHE_TTL_SECONDS": "0"}, "cache_ttl_seconds"),
    ],
)
def test_bad_cache_settings_name_the_problem(environ, phrase):
    with pytest.raises(SettingsError, match=phrase):
        build_server_config(None, None, environ=environ)


def test_a_zero_cache_size_is_rejected():
    with pytest.raises(SettingsError, match="max_entries"):
        build_cache_settings(Settings(cache_enabled=True, cache_size=0), ServerOptions())
