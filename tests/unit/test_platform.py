"""The private MLServer and uvicorn names v2serve leans on still exist (runtimes.platform).

Each row is one item of ``runtimes.platform``'s list. If an upgrade moves one, this test
names it, rather than the server misbehaving at run time.
"""

import contextlib
import inspect
import re

import pytest
import uvicorn
from mlserver.handlers import DataPlane
from mlserver.model import MLModel
from mlserver.registry import MultiModelRegistry, SingleModelRegistry
from mlserver.settings import ModelSettings

from runtimes import platform

HTTPTOOLS_CALLBACKS = ("connection_made", "on_headers_complete", "on_response_complete")


def test_uvicorn_server_captures_signals_in_a_context_manager():
    method = inspect.getattr_static(uvicorn.Server, "capture_signals")
    assert callable(method)
    server = platform.SignalFreeServer(uvicorn.Config(app=None))
    with server.capture_signals():
        pass
    assert isinstance(server.capture_signals(), contextlib.AbstractContextManager)


def test_uvicorn_serve_enters_capture_signals():
    """Overriding capture_signals only helps while serve() is what calls it."""
    assert "self.capture_signals()" in inspect.getsource(uvicorn.Server.serve)


@pytest.mark.parametrize("callback", [*HTTPTOOLS_CALLBACKS, "connection_lost"])
def test_httptools_protocol_callbacks(callback: str):
    assert callable(getattr(platform.HttpToolsProtocol, callback))


def test_httptools_protocol_keeps_loop_and_transport():
    source = inspect.getsource(platform.HttpToolsProtocol.__init__)
    assert "self.loop" in source
    assert "self.transport" in inspect.getsource(platform.HttpToolsProtocol.connection_made)


def test_stop_metrics_takes_settings_and_a_pid():
    assert list(inspect.signature(platform.stop_metrics).parameters) == ["settings", "pid"]


def _settings() -> ModelSettings:
    return ModelSettings(name="m", implementation=MLModel)


def test_multi_model_registry_keeps_its_table_and_hooks():
    hooks = ([], [], [])
    registry = MultiModelRegistry(*hooks)
    assert registry._models == {}
    assert registry._on_model_load is hooks[0]
    assert registry._on_model_reload is hooks[1]
    assert registry._on_model_unload is hooks[2]
    assert callable(registry._model_initialiser)


def test_single_model_registry_keeps_its_versions_and_default_hooks():
    registry = SingleModelRegistry(_settings())
    assert registry._versions == {}
    assert callable(registry._refresh_default)
    assert callable(registry._clear_default)
    assert isinstance(inspect.getattr_static(SingleModelRegistry, "default"), property)
    for name in ("_on_model_load", "_on_model_reload", "_on_model_unload"):
        assert isinstance(getattr(registry, name), list)


def test_single_model_registry_refreshes_its_default_through_these_names():
    source = inspect.getsource(SingleModelRegistry)
    assert re.search(r"self\._refresh_default\(", source)
    assert re.search(r"self\._clear_default\(", source)
    # get_model and get_models read the default through the property that v2serve overrides.
    assert len(re.findall(r"self\.default\b", source)) >= 3


def test_data_plane_keeps_its_registry_and_response_cache():
    source = inspect.getsource(DataPlane.__init__)
    assert "self._model_registry = model_registry" in source
    assert "self._response_cache" in source
    assert "self._response_cache" in inspect.getsource(DataPlane.infer)


def test_a_model_keeps_its_settings_as_the_public_property_returns_them():
    settings = _settings()
    model = MLModel(settings)
    assert model._settings is settings
    assert model.settings is model._settings


def test_skl2onnx_keeps_its_operator_map():
    from skl2onnx._supported_operators import sklearn_operator_name_map
    from sklearn.linear_model import LogisticRegression

    assert LogisticRegression in sklearn_operator_name_map


def test_the_docstring_lists_every_touch():
    listed = re.findall(r"^\d+\. ", platform.__doc__ or "", flags=re.MULTILINE)
    assert len(listed) == 7, "update runtimes.platform's list and this test together"
