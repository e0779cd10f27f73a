"""Log format and level for every logger in the process, and the per-request log line.

One ``logging.config.dictConfig`` dictionary is handed to MLServer as its
``logging_settings``: MLServer applies it to its own logger and each uvicorn server
applies it when it starts, so v2serve's, MLServer's and uvicorn's lines share one format.
Health checks never reach the log: uvicorn's access lines and MLServer's gRPC logging
interceptor (both on only with ``debug``) are filtered on the handler.
"""

import logging
import time
from typing import Any

import orjson
from mlserver.context import model_name_var, model_version_var
from mlserver.settings import Settings

from ..settings import ServerOptions

REQUEST_LOGGER = "v2serve.requests"
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
    """v2serve's usual line, with the record's fields appended as ``key=value``."""

    def __init__(self) -> None:
        super().__init__("%(asctime)s [%(name)s] %(levelname)s - %(message)s")

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
