"""Triton's trace extension (``/v2[/models/{m}]/trace/setting``, gRPC ``TraceSetting``),
protocol-neutral, onto v2serve's trace policy.

Triton's settings and what they become here (v2serve traces in Triton's
``opentelemetry`` mode: spans exported over OTLP, never a trace file):

- ``trace_level``: ``["OFF"]`` records no spans for the scope, ``["TIMESTAMPS"]`` records
  them. ``TENSORS`` is refused: spans carry timings, not tensors (nor do Triton's OTel ones).
- ``trace_rate``: N traces one request in N (0: only requests with a sampled parent).
- ``trace_count``: how many traces may still be taken, -1 without limit; reported as what
  remains.
- ``trace_mode``: always ``opentelemetry``; another value is refused.
- ``trace_file``, ``log_frequency``: Triton's file mode only; a value is refused, null is
  accepted and changes nothing.

Values arrive as Triton sends them, a list of strings per key (REST's scalars and gRPC's
``SettingValue`` are brought to that shape by the adapters), or None to clear the key: a
model's then follows the server's, the server's returns to its start-up value.
"""

import re
from collections.abc import Mapping, Sequence
from typing import Any

from ..dataplane import V2DataPlane
from ..errors import InvalidSetting
from ..observability.trace_policy import TracePolicy

EXTENSION = "trace"
MODE = "opentelemetry"
KEYS = ("trace_level", "trace_rate", "trace_count", "trace_mode", "trace_file", "log_frequency")
INT32_MAX = 2**31 - 1
UINT32_MAX = 2**32 - 1
TRACING_OFF = (
    "tracing is off: start the server with the option 'tracing: true' (V2SERVE_TRACING=true)"
)

SettingValues = Mapping[str, Sequence[str] | None]
_INTEGER = re.compile(r"-?[0-9]+")


def _one(key: str, values: Sequence[str]) -> str:
    if len(values) != 1:
        raise InvalidSetting(EXTENSION, key, f"expected one value, got {len(values)}")
    return values[0]


def _integer(key: str, values: Sequence[str], low: int, high: int) -> int:
    text = _one(key, values)
    if not _INTEGER.fullmatch(text.strip()):
        raise InvalidSetting(EXTENSION, key, f"expected an integer, got '{text}'")
    number = int(text.strip())
    if not low <= number <= high:
        raise InvalidSetting(
            EXTENSION, key, f"expected an integer in [{low}, {high}], got {number}"
        )
    return number


def _level(values: Sequence[str], tracing: bool) -> str:
    levels = set(values)
    if not levels:
        raise InvalidSetting(EXTENSION, "trace_level", "expected 'OFF' or 'TIMESTAMPS', got none")
    if "OFF" in levels and len(values) > 1:
        raise InvalidSetting(EXTENSION, "trace_level", "'OFF' cannot be given with other levels")
    if "TENSORS" in levels:
        raise InvalidSetting(
            EXTENSION, "trace_level", "'TENSORS' is not supported: spans carry timings, not tensors"
        )
    unknown = levels - {"OFF", "TIMESTAMPS"}
    if unknown:
        raise InvalidSetting(
            EXTENSION, "trace_level", f"expected 'OFF' or 'TIMESTAMPS', got {sorted(unknown)}"
        )
    if levels == {"TIMESTAMPS"} and not tracing:
        raise InvalidSetting(EXTENSION, "trace_level", TRACING_OFF)
    return "OFF" if "OFF" in levels else "TIMESTAMPS"


def parse_trace_update(values: SettingValues, tracing: bool) -> dict[str, Any]:
    """The policy fields an update sets (None: cleared); every key is checked first, so a
    bad value changes nothing."""
    changes: dict[str, Any] = {}
    for key, given in values.items():
        if key not in KEYS:
            raise InvalidSetting(EXTENSION, key, f"unknown key: expected one of {list(KEYS)}")
        if key in ("trace_file", "log_frequency"):
            if given is not None:
                raise InvalidSetting(
                    EXTENSION,
                    key,
                    f"belongs to Triton's file trace mode; v2serve exports "
                    f"spans over OTLP (trace_mode '{MODE}'), so it can only be null",
                )
            continue
        if key == "trace_mode":
            if given is not None and list(given) != [MODE]:
                raise InvalidSetting(EXTENSION, key, f"expected '{MODE}', got {list(given)}")
            continue
        field = key.removeprefix("trace_")
        if given is None:
            changes[field] = None
        elif key == "trace_level":
            changes[field] = _level(given, tracing)
        elif key == "trace_rate":
            changes[field] = _integer(key, given, 0, UINT32_MAX)
        else:
            changes[field] = _integer(key, given, -1, INT32_MAX)
    return changes


def render_trace_settings(policy: TracePolicy, model: str | None) -> dict[str, Any]:
    setting = policy.setting(model)
    return {
        "trace_level": [setting.level],
        "trace_rate": str(setting.rate),
        "trace_count": str(policy.remaining(model)),
        "trace_mode": MODE,
    }


class TraceSettings:
    """GET and POST of the trace settings, server-wide or for one model."""

    def __init__(self, policy: TracePolicy, data_plane: V2DataPlane, tracing: bool):
        self.policy = policy
        self.data_plane = data_plane
        self.tracing = tracing

    async def settings(
        self, model: str | None, update: SettingValues | None = None
    ) -> dict[str, Any]:
        """The settings after ``update`` (None: only read them); an unknown model is a 404."""
        if model:
            await self.data_plane.resolve(model, None)
        if update:
            self.policy.update(model or None, parse_trace_update(update, self.tracing))
        return render_trace_settings(self.policy, model or None)
