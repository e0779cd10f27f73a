"""Triton's logging extension (``/v2/logging``, gRPC ``LogSettings``), protocol-neutral,
onto v2serve's logging configuration at run time (``runtimes.observability.logs``).

- ``log_info``, ``log_warning``, ``log_error`` (booleans): whether records of that level
  are written, by every v2serve, MLServer and uvicorn logger (the request log is INFO).
- ``log_verbose_level`` (an unsigned integer): above 0, DEBUG records are written too.
- ``log_format``: Triton's ``default`` (v2serve's text line) or ``ISO8601`` (the same
  line with a UTC ISO 8601 time), or ``json``, v2serve's one object per line. Refused when
  MLServer's ``logging_settings`` brings its own configuration (reported as ``custom``).
- ``log_file``: always ``""`` (standard output); another value is refused.

A null value changes nothing, as in Triton. Values arrive typed as Triton sends them (REST
JSON, or gRPC's ``SettingValue`` one-of), and a wrong type is refused naming the key.
"""

from collections.abc import Mapping
from typing import Any, get_args

from ..errors import InvalidSetting
from ..observability.logs import LogControl, LogFormat

EXTENSION = "log"
SWITCHES = {"log_info": "info", "log_warning": "warning", "log_error": "error"}
KEYS = ("log_file", *SWITCHES, "log_verbose_level", "log_format")
FORMATS: tuple[str, ...] = get_args(LogFormat)
UINT32_MAX = 2**32 - 1

LogValue = bool | int | str | None


def _check(key: str, value: LogValue, control: LogControl) -> Any:
    if key in SWITCHES:
        if not isinstance(value, bool):
            raise InvalidSetting(EXTENSION, key, f"expected a boolean, got {value!r}")
        return value
    if key == "log_verbose_level":
        if isinstance(value, bool) or not isinstance(value, int):
            raise InvalidSetting(EXTENSION, key, f"expected an unsigned integer, got {value!r}")
        if not 0 <= value <= UINT32_MAX:
            raise InvalidSetting(EXTENSION, key, f"expected 0 to {UINT32_MAX}, got {value}")
        return value
    if key == "log_format":
        if value not in FORMATS:
            raise InvalidSetting(EXTENSION, key, f"expected one of {list(FORMATS)}, got {value!r}")
        if not control.managed:
            raise InvalidSetting(
                EXTENSION, key, "MLServer's logging_settings configure the log format here"
            )
        return value
    if value != "":
        raise InvalidSetting(
            EXTENSION, key, f"v2serve logs to standard output only: expected '', got {value!r}"
        )
    return value


def parse_log_update(values: Mapping[str, LogValue], control: LogControl) -> dict[str, Any]:
    """The settings an update changes, every key checked before any applies."""
    changes: dict[str, Any] = {}
    for key, value in values.items():
        if key not in KEYS:
            raise InvalidSetting(EXTENSION, key, f"unknown key: expected one of {list(KEYS)}")
        if value is not None:
            changes[key] = _check(key, value, control)
    return changes


def render_log_settings(control: LogControl) -> dict[str, Any]:
    return {
        "log_file": "",
        "log_info": control.info,
        "log_warning": control.warning,
        "log_error": control.error,
        "log_verbose_level": control.verbose,
        "log_format": control.format if control.managed else "custom",
    }


class LogSettings:
    """GET and POST of the log settings."""

    def __init__(self, control: LogControl):
        self.control = control

    def settings(self, update: Mapping[str, LogValue] | None = None) -> dict[str, Any]:
        if update:
            changes = parse_log_update(update, self.control)
            for key, value in changes.items():
                if key in SWITCHES:
                    setattr(self.control, SWITCHES[key], value)
                elif key == "log_verbose_level":
                    self.control.verbose = value
                elif key == "log_format":
                    self.control.format = value
            self.control.apply()
        return render_log_settings(self.control)
