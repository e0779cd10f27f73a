"""Log format and level for every logger in the process, and the per-request log line.

One ``logging.config.dictConfig`` dictionary is handed to MLServer as its
``logging_settings``: MLServer applies it to its own logger and each uvicorn server
applies it when it starts, so v2serve's, MLServer's and uvicorn's lines share one format.
Health checks never reach the log: uvicorn's access lines and MLServer's gRPC logging
interceptor (both on only with ``debug``) are filtered on the handler.

``LogControl`` changes levels and format at run time (Triton's logging extension,
``runtimes.extensions.log_settings``) on the loggers and handlers that config set up.
"""

import logging
import time
from typing import Any, Literal

import orjson
from mlserver.context import model_name_var, model_version_var
from mlserver.settings import Settings

from ..settings import ServerOptions

REQUEST_LOGGER = "v2serve.requests"
LOGGERS = ("v2serve", "mlserver", "uvicorn", "uvicorn.error", "uvicorn.access")
LogFormat = Literal["default", "ISO8601", "json"]
"""Triton's ``default`` and ``ISO8601`` (text lines), and v2serve's ``json``."""
HEALTH_PATHS = ("/v2/health/live", "/v2/health/ready", "/v2/health/", "/v2/health")
HEALTH_RPCS = ("/grpc.health.v1.Health/", "ServerLive", "ServerReady")

# What ``logging.LogRecord`` carries by itself; everything else came through ``extra``
# (uvicorn's ``color_message`` is the message again, with terminal colours).
_RECORD_ATTRIBUTES = frozenset(
    vars(logging.LogRecord("", 0, "", 0, "", (), None)).keys()
    | {"message", "asctime", "color_message"}
)


def _extra_fields(record: logging.LogRecord) -> dict[str, Any]:
    return {k: v for k, v in vars(record).items() if k not in _RECORD_ATTRIBUTES}


def _timestamp(created: float) -> str:
    seconds = time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(created))
    return f"{seconds}.{int(created % 1 * 1000):03d}Z"


class JsonFormatter(logging.Formatter):
    """One JSON object per line: time, level, logger, message, then the record's fields."""

    def format(self, record: logging.LogRecord) -> str:
        document: dict[str, Any] = {
            "time": _timestamp(record.created),
            "level": record.levelname,
            "logger": record.name,
            "message": record.getMessage(),
        }
        model = model_name_var.get("")
        if model:
            document["model"] = model
            document["version"] = model_version_var.get("")
        document.update(_extra_fields(record))
        if record.exc_info:
            document["exception"] = self.formatException(record.exc_info)
        return orjson.dumps(document, default=str).decode()


class TextFormatter(logging.Formatter):
    """v2serve's usual line, with the record's fields appended as ``key=value``; with
    ``iso8601`` the time is UTC ISO 8601 (Triton's ``ISO8601`` log format)."""

    def __init__(self, iso8601: bool = False) -> None:
        super().__init__("%(asctime)s [%(name)s] %(levelname)s - %(message)s")
        self.iso8601 = iso8601

    def formatTime(self, record: logging.LogRecord, datefmt: str | None = None) -> str:  # noqa: N802
        if self.iso8601:
            return _timestamp(record.created)
        return super().formatTime(record, datefmt)

    def format(self, record: logging.LogRecord) -> str:
        line = super().format(record)
        fields = _extra_fields(record)
        if not fields:
            return line
        return line + " " + " ".join(f"{k}={v}" for k, v in fields.items() if v is not None)


class HealthCheckFilter(logging.Filter):
    """Drops access lines of health checks (uvicorn's REST, MLServer's gRPC interceptor)."""

    def filter(self, record: logging.LogRecord) -> bool:
        if record.name == "uvicorn.access" and isinstance(record.args, tuple):
            path = record.args[2] if len(record.args) > 2 else ""
            return not (isinstance(path, str) and path.startswith(HEALTH_PATHS))
        if record.name.startswith("mlserver.grpc"):
            return not any(rpc in str(record.msg) for rpc in HEALTH_RPCS)
        return True


def logging_config(json_format: bool, level: str) -> dict[str, Any]:
    """The dictConfig for v2serve's, MLServer's and uvicorn's loggers."""
    formatter = JsonFormatter if json_format else TextFormatter
    logger = {"handlers": ["stdout"], "level": level, "propagate": False}
    return {
        "version": 1,
        "disable_existing_loggers": False,
        "formatters": {"v2serve": {"()": f"{formatter.__module__}.{formatter.__qualname__}"}},
        "filters": {"health": {"()": f"{__name__}.HealthCheckFilter"}},
        "handlers": {
            "stdout": {
                "class": "logging.StreamHandler",
                "stream": "ext://sys.stdout",
                "formatter": "v2serve",
                "filters": ["health"],
            }
        },
        "loggers": {
            "v2serve": logger,
            "mlserver": logger,
            "uvicorn": logger,
            "uvicorn.error": {"level": level},
            "uvicorn.access": logger,
        },
    }


def with_logging_config(settings: Settings, options: ServerOptions) -> Settings:
    """MLServer's settings with v2serve's logging config, unless they bring their own."""
    if settings.logging_settings:
        return settings
    json_format = options.log_format == "json" or settings.use_structured_logging
    config = logging_config(json_format, options.log_level)
    return settings.model_copy(update={"logging_settings": config})


class RequestLog:
    """The per-request line: INFO, logger ``v2serve.requests``, fields as ``extra``."""

    def __init__(self) -> None:
        self.logger = logging.getLogger(REQUEST_LOGGER)

    @property
    def enabled(self) -> bool:
        return self.logger.isEnabledFor(logging.INFO)

    def emit(self, fields: dict[str, Any]) -> None:
        self.logger.info("inference", extra=fields)


class _LevelSwitches(logging.Filter):
    """Drops records whose level the log settings switched off (Triton's ``log_info``,
    ``log_warning``, ``log_error`` are independent, which a logger's threshold is not)."""

    def __init__(self, control: "LogControl"):
        super().__init__()
        self.control = control

    def filter(self, record: logging.LogRecord) -> bool:
        return self.control.allows(record.levelno)


class LogControl:
    """The log settings as Triton's logging extension sees them, applied at run time.

    The start-up values come from ``log_level`` and ``log_format``. ``apply`` sets the
    threshold of v2serve's, MLServer's and uvicorn's loggers and, on the handlers they
    write to, the level switches and (unless MLServer's ``logging_settings`` brought its
    own configuration, ``managed`` False) the formatter.
    """

    def __init__(self, level: str, log_format: LogFormat, managed: bool = True):
        self.verbose = 1 if level == "DEBUG" else 0
        self.info = level in ("DEBUG", "INFO")
        self.warning = level != "ERROR"
        self.error = True
        self.format: LogFormat = log_format
        self.managed = managed
        self._switches = _LevelSwitches(self)

    @classmethod
    def from_settings(cls, settings: Settings, options: ServerOptions) -> "LogControl":
        """From MLServer's settings as given (before ``with_logging_config``)."""
        json_format = options.log_format == "json" or settings.use_structured_logging
        managed = not settings.logging_settings
        return cls(options.log_level, "json" if json_format else "default", managed)

    def allows(self, levelno: int) -> bool:
        if levelno >= logging.ERROR:
            return self.error
        if levelno >= logging.WARNING:
            return self.warning
        if levelno >= logging.INFO:
            return self.info
        return self.verbose > 0

    def threshold(self) -> int:
        """The lowest level any switch lets through, so that nothing below it is built."""
        if self.verbose > 0:
            return logging.DEBUG
        for on, level in ((self.info, logging.INFO), (self.warning, logging.WARNING)):
            if on:
                return level
        return logging.ERROR if self.error else logging.CRITICAL + 1

    def formatter(self) -> logging.Formatter:
        if self.format == "json":
            return JsonFormatter()
        return TextFormatter(iso8601=self.format == "ISO8601")

    def apply(self) -> None:
        threshold = self.threshold()
        handlers: list[logging.Handler] = []
        for name in LOGGERS:
            logger = logging.getLogger(name)
            logger.setLevel(threshold)
            handlers.extend(h for h in logger.handlers if h not in handlers)
        for handler in handlers:
            if self._switches not in handler.filters:
                handler.addFilter(self._switches)
            if self.managed and isinstance(handler.formatter, JsonFormatter | TextFormatter):
                handler.setFormatter(self.formatter())
