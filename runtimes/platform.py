"""Every place where v2serve leans on a private (or unexported) MLServer or uvicorn name.

v2serve assembles MLServer's public parts (``Settings``, ``ModelSettings``, ``MLModel``,
``MultiModelRegistry``, ``DataPlane``, ``ModelRepositoryHandlers``,
``InferencePoolRegistry``, codecs and types) and serves them with its own REST router
and gRPC service on plain ``uvicorn.Server`` and ``grpc.aio`` servers. What remains
below has no public counterpart. MLServer 1.7.1 is its last release, so these names
should not move; ``tests/unit/test_platform.py`` asserts each still exists, so that an
upgrade of MLServer or uvicorn fails there, loudly, rather than in production.

1. ``uvicorn.Server.capture_signals`` (undocumented): overridden to do nothing, so that
   SIGTERM reaches ``V2Server``'s one shutdown sequence instead of each HTTP server
   re-raising it in an order nobody chose (see ``runtimes.lifecycle``). Used here.
2. ``uvicorn.protocols.http.httptools_impl.HttpToolsProtocol`` and its callbacks
   ``connection_made``/``on_headers_complete``/``on_response_complete``/``connection_lost``
   (uvicorn's internal module): subclassed by ``runtimes.protocol.http_timeouts`` for the
   header timeout that uvicorn lacks. Re-exported here.
3. ``mlserver.metrics.prometheus.stop_metrics`` (not exported by ``mlserver.metrics``):
   removes a dead parallel worker's multiprocess metric files, as MLServer's metrics
   server did. Used here.
4. ``MultiModelRegistry._models`` and its hook lists ``_on_model_load``,
   ``_on_model_reload``, ``_on_model_unload``, ``_model_initialiser``: the per-model
   table that ``runtimes.repository.registry.V2ModelRegistry`` fills with its own
   ready-default registries and retires from (MLServer has no "retire after drain").
5. ``SingleModelRegistry._versions``, ``_refresh_default``, ``_clear_default`` and the
   ``default`` property: overridden by ``ReadyDefaultRegistry`` so the default version is
   the highest *ready* one (MLServer makes a version the default before it has loaded).
6. ``DataPlane._model_registry`` and ``DataPlane._response_cache``: read and cleared by
   ``runtimes.dataplane.V2DataPlane`` (MLServer's cache shares entries across models).

7. ``MLModel._settings``: read and written by ``runtimes.sklearn.SklearnRuntime`` (the
   derived schema and platform are set on it at load), as MLServer's own runtimes do;
   the public ``settings`` property returns the same object.
Items 4 to 7 are subclass internals: the code stays with the subclasses, whose owners
keep it there; the contract test covers them all. Outside MLServer and uvicorn, two
more private names are used: ``skl2onnx._supported_operators.sklearn_operator_name_map``
(``runtimes.compiled.convert``: which estimators skl2onnx can convert) and pydantic's
``__pydantic_fields_set__``/``__pydantic_extra__``/``__pydantic_private__``
(``runtimes.construct``, checked by ``tests/unit/test_construct.py``).
"""

import contextlib
from collections.abc import Iterator

import uvicorn
from mlserver.metrics.prometheus import stop_metrics
from uvicorn.protocols.http.httptools_impl import HttpToolsProtocol

__all__ = ["HttpToolsProtocol", "SignalFreeServer", "stop_metrics"]


class SignalFreeServer(uvicorn.Server):
    """A uvicorn server that leaves the process's signal handlers alone."""

    @contextlib.contextmanager
    def capture_signals(self) -> Iterator[None]:
        yield
