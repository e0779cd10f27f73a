"""Which requests are traced: Triton's trace settings (level, rate, count), server-wide and
per model, as the hot path reads them.

Triton's trace extension sets these at run time (``runtimes.extensions.trace_settings``);
here they are plain state. A request is traced when its model's level is not ``OFF`` and
either it carries a sampled W3C ``traceparent`` (as in Triton, propagated requests are
traced whatever the rate and count), or it is the N-th request of its scope since the
setting changed (``rate`` N; 0 traces none by rate) and ``count`` is not used up (-1:
unlimited). The OpenTelemetry sampler (``OTEL_TRACES_SAMPLER``) then has the last word.

A scope is the server's settings, or one model's once it overrides any of them; each
scope counts its own requests. Everything here runs on the event loop, so no locks.
"""

from collections.abc import Mapping
from dataclasses import dataclass, replace
from typing import Any, Literal

TraceLevel = Literal["OFF", "TIMESTAMPS"]
FIELDS = ("level", "rate", "count")
UNLIMITED = -1


@dataclass(frozen=True)
class TraceSetting:
    level: TraceLevel = "TIMESTAMPS"
    rate: int = 1
    """1 request in ``rate`` is traced; 0 traces only requests with a sampled parent."""
    count: int = UNLIMITED
    """How many traces may still be taken; -1 is no limit."""


class _Scope:
    """The setting a scope follows and its counters since the setting last changed."""

    __slots__ = ("setting", "seen", "remaining")

    def __init__(self, setting: TraceSetting):
        self.setting = setting
        self.seen = 0
        self.remaining = setting.count

    def take(self, propagated: bool) -> bool:
        setting = self.setting
        if setting.level == "OFF":
            return False
        if propagated:
            return True
        if self.remaining == 0 or setting.rate == 0:
            return False
        self.seen += 1
        if self.seen % setting.rate:
            return False
        if self.remaining > 0:
            self.remaining -= 1
        return True


class TracePolicy:
    def __init__(self, default: TraceSetting):
        self.default = default
        self._server = _Scope(default)
        self._overrides: dict[str, dict[str, Any]] = {}
        self._models: dict[str, _Scope] = {}

    def sample(self, model: str, propagated: bool) -> bool:
        """Whether this request is traced; counts it in its scope."""
        scope = self._models.get(model) or self._server
        return scope.take(propagated)

    def silent(self, model: str) -> bool:
        """Whether the request's scope traces nothing (level OFF), before any parsing."""
        return (self._models.get(model) or self._server).setting.level == "OFF"

    def setting(self, model: str | None = None) -> TraceSetting:
        return self._scope(model).setting

    def remaining(self, model: str | None = None) -> int:
        return self._scope(model).remaining

    def overrides(self, model: str) -> Mapping[str, Any]:
        return dict(self._overrides.get(model, {}))

    def update(self, model: str | None, changes: Mapping[str, Any]) -> None:
        """Set the fields in ``changes``; None clears one: a model's then follows the
        server's, the server's goes back to its start-up default. The counters of the scope
        updated restart (so posting the same ``count`` again refills it), and so do those of
        every model whose setting changed with the server's."""
        unknown = set(changes) - set(FIELDS)
        if unknown:
            raise ValueError(f"unknown trace setting fields {sorted(unknown)}")
        if model is None:
            values: dict[str, Any] = {
                field: getattr(self.default, field) if value is None else value
                for field, value in changes.items()
            }
            self._reset(self._server, replace(self._server.setting, **values), force=True)
            for name in list(self._models):
                self._refresh(name, force=False)
            return
        overrides = self._overrides.setdefault(model, {})
        for field, value in changes.items():
            if value is None:
                overrides.pop(field, None)
            else:
                overrides[field] = value
        self._refresh(model, force=True)

    def _scope(self, model: str | None) -> _Scope:
        if model is None:
            return self._server
        return self._models.get(model) or self._server

    def _refresh(self, model: str, force: bool) -> None:
        overrides = self._overrides.get(model)
        if not overrides:
            self._overrides.pop(model, None)
            self._models.pop(model, None)
            return
        setting = replace(self._server.setting, **overrides)
        scope = self._models.get(model)
        if scope is None:
            self._models[model] = _Scope(setting)
        else:
            self._reset(scope, setting, force)

    @staticmethod
    def _reset(scope: _Scope, setting: TraceSetting, force: bool) -> None:
        if force or setting != scope.setting:
            scope.setting = setting
            scope.seen = 0
            scope.remaining = setting.count
