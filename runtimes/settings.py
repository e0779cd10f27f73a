"""Typed, strict settings.

MLServer's ``Settings`` and ``ModelSettings`` drop unknown keys without a word, so a typo
such as ``"paramters"`` silently changes nothing. Everything v2serve reads is checked here
against the fields that exist, and an unknown key is an error that names it.

Precedence for server settings: command-line flags, then ``MLSERVER_*`` environment
variables (and a ``.env`` file), then ``settings/settings.json``, then v2serve's defaults,
then MLServer's.
"""

import difflib
import json
import os
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal
from urllib.parse import unquote, urlsplit

from mlserver.settings import ModelParameters, ModelSettings, Settings
from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    SecretStr,
    ValidationError,
    field_validator,
    model_validator,
)

from .errors import SettingsError

SETTINGS_FILENAME = "settings.json"
ENV_PREFIX = "MLSERVER_"

REPOSITORY_IMPLEMENTATION = "runtimes.repository.VersionedRepository"
DEFAULT_RUNTIME = "runtimes.sklearn.SklearnRuntime"

V2SERVE_DEFAULTS: dict[str, Any] = {
    "model_repository_root": "model-repository",
    # In-process inference: a worker process per model costs an IPC hop on every request
    # and loads every model twice. Set MLSERVER_PARALLEL_WORKERS to opt back in.
    "parallel_workers": 0,
    # MLServer defaults debug to True, which turns on access logs for every request.
    "debug": False,
    "server_name": "v2serve",
    # aiohttp asks for gzip on every request and tritonclient.http.aio does not decompress,
    # so MLServer's GZip middleware breaks its metadata and config calls.
    "gzip_enabled": False,
    "extensions": [
        "binary_tensor_data",
        "classification",
        "model_repository",
        "model_configuration",
        "statistics",
        "parameters",
        "trace",
        "logging",
    ],
}

# MLServer settings v2serve does not honour, each with why; setting one is an error that
# names it (docs/compatibility.md lists the honoured ones). A key here is refused when it
# is set at all, unless the value is the one v2serve behaves as (REFUSED_UNLESS).
UNHONOURED_SETTINGS: dict[str, str] = {
    "kafka_enabled": "v2serve has no Kafka server; serve over REST or gRPC",
    "kafka_servers": "v2serve has no Kafka server (kafka_enabled is refused)",
    "kafka_topic_input": "v2serve has no Kafka server (kafka_enabled is refused)",
    "kafka_topic_output": "v2serve has no Kafka server (kafka_enabled is refused)",
    "tracing_server": "v2serve traces with OpenTelemetry through its own switch: set the "
    "v2serve option 'tracing' (V2SERVE_TRACING=true) and the OTEL_* variables",
    "gzip_enabled": "v2serve does not compress responses; leave it false",
    "metrics_rest_server_prefix": "v2serve's REST routes have no per-route Prometheus "
    "metrics; its request metrics are v2serve_* (docs/observability.md)",
    "model_repository_implementation": "v2serve serves its own versioned repository "
    f"({REPOSITORY_IMPLEMENTATION})",
    "model_repository_implementation_args": "v2serve's repository takes no arguments",
}
REFUSED_UNLESS: dict[str, Any] = {
    "kafka_enabled": False,
    "gzip_enabled": False,
    "tracing_server": None,
    "model_repository_implementation_args": {},
}

# Triton's default limit on a request body (and on a gRPC message).
DEFAULT_MAX_REQUEST_SIZE = 64 * 1024 * 1024
# A request head of 64 KiB in all is far above any V2 client's (tritonclient sends a few
# hundred bytes) and what Triton's own HTTP front end accepts; 16 KiB of URL matches
# Node's whole-head default and leaves room for long model names.
DEFAULT_MAX_HEADER_BYTES = 64 * 1024
DEFAULT_MAX_URL_BYTES = 16 * 1024


V2SERVE_SECTION = "v2serve"
V2SERVE_ENV_PREFIX = "V2SERVE_"


class ServerOptions(BaseModel):
    """v2serve's own server options: the ``"v2serve"`` object in settings.json, or
    ``V2SERVE_<KEY>`` environment variables (which win over the file)."""

    model_config = ConfigDict(extra="forbid")

    watch: bool = True
    """Watch the repository and serve what is dropped in. False is explicit mode: models
    change only through the repository API."""
    use_inotify: bool = True
    """False forces polling, for file systems where inotify sees nothing (NFS, some FUSE)."""
    poll_interval: float = Field(default=1.0, gt=0, le=60)
    """Seconds between repository scans. inotify, where available, wakes a scan at once."""
    settle_seconds: float = Field(default=1.0, ge=0, le=600)
    """How long a folder copied in place must stay unchanged before it is loaded. A folder
    renamed into place is loaded at once."""
    readiness: Literal["strict", "lenient"] = "strict"
    """strict: ready only when every model has a ready version. lenient: ready when at
    least one model is ready and none is still loading; failed models are ignored."""
    max_request_size: int = Field(default=DEFAULT_MAX_REQUEST_SIZE, gt=0)
    """Largest REST request body in bytes; a larger one gets a 413 before it is read. The
    gRPC message limit follows it unless ``grpc_max_message_length`` is set."""
    drain_timeout: float = Field(default=30.0, ge=0)
    """Seconds a retired version waits for its in-flight requests before it is unloaded."""
    cache_max_bytes: int = Field(default=64 * 1024 * 1024, ge=1)
    """Byte bound of the response cache (MLServer's ``cache_size`` bounds the entries)."""
    cache_ttl_seconds: float | None = Field(default=None, gt=0)
    """How long a cached response may answer; unset means until evicted or replaced."""
    log_format: Literal["text", "json"] = "text"
    """``json``: one JSON object per log line (MLServer's ``use_structured_logging`` also
    selects it). Ignored when MLServer's ``logging_settings`` gives a logging config."""
    log_level: Literal["DEBUG", "INFO", "WARNING", "ERROR"] = "INFO"
    """Level of v2serve's, MLServer's and uvicorn's loggers (``V2SERVE_LOG_LEVEL=warning``)."""
    log_requests: bool = False
    """One INFO line per inference request: request id, model, served version, status,
    latency, cache hit. Off by default: a log line costs about 40 us, more than half of a
    small request's own time. Health checks are never logged."""
    shutdown_grace: float = Field(default=30.0, ge=0)
    """Seconds in-flight requests get to finish after SIGTERM before they are cancelled."""
    shutdown_delay: float = Field(default=0.0, ge=0)
    """Seconds between SIGTERM and closing the listeners: readiness is already false and
    requests are still served, so a load balancer can stop routing first."""

    @field_validator("log_level", mode="before")
    @classmethod
    def _upper_level(cls, value: Any) -> Any:
        return value.upper() if isinstance(value, str) else value

    control_token: SecretStr | None = None
    """A bearer token that the repository, statistics and config APIs require (REST and
    gRPC); unset leaves them open. Inference and health never need it."""
    control_token_file: Path | None = None
    """A file holding the control token (e.g. a mounted Kubernetes secret), read at start."""
    max_inflight_per_model: int = Field(default=256, ge=0)
    """Requests one model version may have in flight; past it, 429 / RESOURCE_EXHAUSTED at
    once instead of a queue. 0 means unbounded."""
    http_keep_alive_timeout: int = Field(default=65, ge=1)
    """Seconds an idle keep-alive REST connection stays open (uvicorn's timeout_keep_alive).
    Above the 60 s idle timeout of Envoy/Istio (and of most load balancers), so the proxy,
    not v2serve, closes an idle connection: a server that closes first races the proxy's
    next request on that connection, which the proxy answers 503 (kserve#5448)."""
    http_header_timeout: float = Field(default=10.0, gt=0)
    """Seconds a REST client has, from a request's first byte (or from connecting), to
    complete its headers; slower ones are disconnected. Never runs while a request is
    served."""
    max_header_bytes: int = Field(default=DEFAULT_MAX_HEADER_BYTES, ge=1024)
    """Largest request head (request line and headers, in all) in bytes; a larger one gets
    431 in JSON and the connection is closed, counted as it arrives."""
    offload_body_bytes: int = Field(default=1024 * 1024, ge=0)
    """A REST body or gRPC message larger than this is decoded and checked off the event
    loop (a JSON body in a helper process: the JSON parser holds the interpreter lock for
    the whole parse), so one large request does not delay the others. 0 offloads all."""
    max_url_bytes: int = Field(default=DEFAULT_MAX_URL_BYTES, ge=256)
    """Longest request URL (path and query) in bytes; a longer one gets 414 in JSON. The URL
    is part of the head, so a URL beyond ``max_header_bytes`` gets 431 first."""
    tracing: bool = False
    """OpenTelemetry spans for inference requests, exported over OTLP as the standard
    ``OTEL_*`` variables say (runtimes/observability/tracing.py). Off, a request pays one
    boolean check."""


def reject_unknown_keys(values: Mapping[str, Any], known: Iterable[str], source: str) -> None:
    known_keys = sorted(set(known))
    for key in values:
        if key not in known_keys:
            close = difflib.get_close_matches(key, known_keys, n=1)
            hint = f" (did you mean '{close[0]}'?)" if close else ""
            raise SettingsError(source, f"unknown key '{key}'{hint}")


def _field_names(model: type[BaseModel]) -> set[str]:
    names = set(model.model_fields)
    for name, field in model.model_fields.items():
        if field.serialization_alias:
            names.add(field.serialization_alias)
        if name.endswith("_"):
            names.add(name.rstrip("_"))
    return names


def reject_unhonoured_settings(settings: Settings, source: str) -> None:
    """Refuse an MLServer setting v2serve would otherwise ignore without a word: one
    given in the file or the environment, with another value than v2serve behaves as."""
    for key, why in UNHONOURED_SETTINGS.items():
        if key not in settings.model_fields_set or key == "model_repository_implementation":
            continue
        if key in REFUSED_UNLESS and getattr(settings, key) == REFUSED_UNLESS[key]:
            continue
        raise SettingsError(source, f"'{key}' is not supported by v2serve: {why}")


def _given_repository_implementation(
    file_values: Mapping[str, Any], environ: Mapping[str, str]
) -> Any:
    """v2serve overrides this key, so it is checked where it was given, not once built."""
    key = "model_repository_implementation"
    env_key = f"{ENV_PREFIX}{key.upper()}"
    from_env = next((v for k, v in environ.items() if k.upper() == env_key), None)
    return from_env if from_env is not None else file_values.get(key)


def read_json_object(path: Path) -> dict[str, Any]:
    try:
        loaded = json.loads(path.read_text())
    except (OSError, ValueError) as exc:
        raise SettingsError(str(path), f"cannot be read as JSON: {exc}") from exc
    if not isinstance(loaded, dict):
        raise SettingsError(str(path), "must hold a JSON object")
    return loaded


def _keys_set_in_environment(environ: Mapping[str, str]) -> set[str]:
    upper_env = {key.upper() for key in environ}
    dotenv = Path(".env")
    if dotenv.is_file():
        for line in dotenv.read_text().splitlines():
            key, sep, _ = line.partition("=")
            if sep:
                upper_env.add(key.strip().upper())
    return {name for name in Settings.model_fields if f"{ENV_PREFIX}{name.upper()}" in upper_env}


def _server_options(
    file_values: Mapping[str, Any], environ: Mapping[str, str], source: str
) -> ServerOptions:
    values = dict(file_values)
    for key, value in environ.items():
        upper = key.upper()
        if upper.startswith(V2SERVE_ENV_PREFIX):
            values[upper[len(V2SERVE_ENV_PREFIX) :].lower()] = value
    try:
        return ServerOptions.model_validate(values)
    except ValidationError as exc:
        problems = "; ".join(
            f"{'.'.join(str(p) for p in err['loc'])}: {err['msg']}" for err in exc.errors()
        )
        raise SettingsError(source, f"v2serve options: {problems}") from exc


@dataclass(frozen=True)
class ServerConfig:
    mlserver: Settings
    options: ServerOptions


def build_server_config(
    settings_dir: Path | None,
    model_repository: str | None,
    environ: Mapping[str, str] | None = None,
) -> ServerConfig:
    """MLServer's ``Settings`` and v2serve's options, with v2serve's precedence."""
    environ = os.environ if environ is None else environ
    file_values: dict[str, Any] = {}
    source = "settings"
    if settings_dir is not None:
        settings_path = settings_dir / SETTINGS_FILENAME
        source = str(settings_path)
        if settings_path.is_file():
            file_values = read_json_object(settings_path)
            known = _field_names(Settings) | {V2SERVE_SECTION}
            reject_unknown_keys(file_values, known, source)
    options_values = file_values.pop(V2SERVE_SECTION, {})
    if not isinstance(options_values, Mapping):
        raise SettingsError(source, f"'{V2SERVE_SECTION}' must be an object")
    options = _server_options(options_values, environ, source)

    implementation = _given_repository_implementation(file_values, environ)
    if implementation is not None and implementation != REPOSITORY_IMPLEMENTATION:
        why = UNHONOURED_SETTINGS["model_repository_implementation"]
        raise SettingsError(
            source, f"'model_repository_implementation' is not supported by v2serve: {why}"
        )
    from_environment = _keys_set_in_environment(environ)
    values = {
        key: value
        for key, value in {**V2SERVE_DEFAULTS, **file_values}.items()
        if key not in from_environment
    }
    if model_repository is not None:
        values["model_repository_root"] = model_repository
    values["model_repository_implementation"] = REPOSITORY_IMPLEMENTATION
    values.setdefault("grpc_max_message_length", options.max_request_size)
    try:
        settings = Settings(**values)
    except ValidationError as exc:
        raise SettingsError("server settings", str(exc)) from exc
    reject_unhonoured_settings(settings, source)
    return ServerConfig(mlserver=settings, options=options)


def build_server_settings(
    settings_dir: Path | None,
    model_repository: str | None,
    environ: Mapping[str, str] | None = None,
) -> Settings:
    """Build MLServer's ``Settings`` with v2serve's precedence (see the module docstring)."""
    return build_server_config(settings_dir, model_repository, environ).mlserver


class VersionPolicy(BaseModel):
    """Triton's version policy: which version folders of a model are served."""

    model_config = ConfigDict(extra="forbid")

    latest: dict[Literal["num_versions"], int] | None = None
    all: dict[str, Any] | None = None
    specific: dict[Literal["versions"], list[int]] | None = None

    @model_validator(mode="after")
    def _exactly_one(self) -> "VersionPolicy":
        chosen = [name for name in ("latest", "all", "specific") if getattr(self, name) is not None]
        if len(chosen) != 1:
            raise ValueError("version_policy takes exactly one of 'latest', 'all', 'specific'")
        if self.latest is not None and self.latest.get("num_versions", 1) < 1:
            raise ValueError("version_policy.latest.num_versions must be at least 1")
        return self

    def select(self, versions: Iterable[int]) -> list[int]:
        ordered = sorted(set(versions))
        if self.all is not None:
            return ordered
        if self.specific is not None:
            wanted = set(self.specific.get("versions", []))
            return [v for v in ordered if v in wanted]
        count = (self.latest or {}).get("num_versions", 1)
        return ordered[-count:]


def _default_policy() -> VersionPolicy:
    return VersionPolicy(latest={"num_versions": 1})


class FeatureConstraint(BaseModel):
    """Values a feature may take: a numeric range, or categories for a string feature."""

    model_config = ConfigDict(extra="forbid")

    min: float | None = None
    max: float | None = None
    categories: list[str] | None = None

    @model_validator(mode="after")
    def _consistent(self) -> "FeatureConstraint":
        has_range = self.min is not None or self.max is not None
        if has_range and self.categories is not None:
            raise ValueError("a feature takes either min/max or categories, not both")
        if self.min is not None and self.max is not None and self.min > self.max:
            raise ValueError(f"min {self.min} is greater than max {self.max}")
        if self.categories is not None and not self.categories:
            raise ValueError("categories must not be empty")
        return self


PREDICTION_LOG_SCHEMES = ("http", "https", "file")


class PredictionLogSettings(BaseModel):
    """Where and how much of one model's traffic is logged as CloudEvents
    (``runtimes.observability.prediction_log``); absent means nothing is logged."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    sink: str
    """``http(s)://host:port/path``: one binary-mode CloudEvent per POST; or
    ``file:///absolute/path.jsonl``: one structured-mode CloudEvent per line."""
    sample: float = Field(default=1.0, ge=0.0, le=1.0)
    """The share of requests logged, drawn at random per request; 1.0 logs every one."""
    redact: list[str] = Field(default_factory=list)
    """Inputs whose values are replaced by a marker and never leave the server."""
    queue: int = Field(default=1000, ge=1, le=1_000_000)
    """The most of this model's predictions that may wait for the sink; past it, new ones
    are dropped and counted instead of slowing inference."""

    @field_validator("sink")
    @classmethod
    def _known_sink(cls, value: str) -> str:
        parsed = urlsplit(value)
        if parsed.scheme not in PREDICTION_LOG_SCHEMES:
            raise ValueError(
                f"sink {value!r} has scheme {parsed.scheme or 'none'!r}; expected one of "
                + ", ".join(f"'{s}://'" for s in PREDICTION_LOG_SCHEMES)
            )
        if parsed.scheme == "file":
            if parsed.netloc not in ("", "localhost") or not parsed.path.startswith("/"):
                raise ValueError(
                    f"sink {value!r} must name an absolute path, as file:///path/to/log.jsonl"
                )
            if parsed.path.endswith("/"):
                raise ValueError(f"sink {value!r} names a directory, not a file")
        elif not parsed.hostname:
            raise ValueError(f"sink {value!r} has no host")
        return value

    @field_validator("redact")
    @classmethod
    def _distinct(cls, value: list[str]) -> list[str]:
        if len(set(value)) != len(value):
            raise ValueError(f"redact names an input twice: {value}")
        return value

    def unknown_redactions(self, inputs: Sequence[str]) -> list[str]:
        """``redact`` names that are not among the model's ``inputs``: a typo there would
        leave the input it meant unredacted, so the load refuses them."""
        known = set(inputs)
        return [name for name in self.redact if name not in known]

    @property
    def file_path(self) -> Path | None:
        """The JSON-lines file of a ``file://`` sink; None for an HTTP one."""
        parsed = urlsplit(self.sink)
        return Path(unquote(parsed.path)) if parsed.scheme == "file" else None


class ModelExtra(BaseModel):
    """v2serve's options for one model, from ``parameters.extra`` in model-settings.json."""

    model_config = ConfigDict(extra="forbid")

    artifact: str | None = None
    """File name of the artifact inside the version folder. Default: the first found of
    ``MLmodel``, ``model.json``, ``model.ubj``, ``model.txt``, ``model.joblib``,
    ``model.skops``, ``model.pkl`` (``runtimes.formats``)."""
    version_policy: VersionPolicy = Field(default_factory=_default_policy)
    """Which versions are served, as in Triton. Default: the latest one."""
    allow_nan: bool = False
    """Whether NaN and Inf may reach the estimator."""
    feature_names: list[str] | None = None
    """Names for the columns of a 2-D numeric input, so ``features`` can use them."""
    features: dict[str, FeatureConstraint] = Field(default_factory=dict)
    """Per-feature constraints, keyed by column name, column index or a ``feature_names`` name."""
    inference_backend: Literal["auto", "sklearn", "onnx", "native"] = "auto"
    """``auto`` serves ONNX Runtime where it is proven equal to sklearn, else sklearn;
    ``onnx`` fails the load unless it is; ``sklearn`` never compiles (docs/compiled.md)."""
    batching: Literal["auto", "on", "off"] = "auto"
    """Adaptive batching (runtimes/batching.py). ``auto`` turns it on where it pays: a
    model served by sklearn whose one-row call takes 0.5 ms or more at load."""
    batch_max_rows: int = Field(default=64, ge=1)
    """The most rows one batched call gathers."""
    default_timeout_ms: int | None = Field(default=None, ge=1)
    """The deadline of a request that brings none (no gRPC deadline, no ``timeout``
    parameter), in milliseconds from its arrival; past it, a request still waiting to
    run is dropped with 504 / DEADLINE_EXCEEDED (``runtimes.deadlines``). None: no deadline."""
    execution: Literal["auto", "thread", "loop"] = "auto"
    """Where estimator calls run (runtimes/execution.py). ``auto``: off the event loop, on
    the model's own threads, unless the call is measured to cost under 200 us (per call
    plus per row, at load, refined from every call); ``thread``: always off the loop, for
    a model known to be slow; ``loop``: always on it (no thread hop, but a slow call
    delays every model)."""
    execution_threads: int | None = Field(default=None, ge=1, le=64)
    """Threads of the model version's own pool: at most this many of its calls run at
    once, the rest wait in its queue. Default: 2, or 1 on a one-core machine."""
    onnx_threads: int = Field(default=1, ge=1)
    """ONNX Runtime intra-op threads per model; 1 suits many small requests on few cores."""
    sha256: str | None = Field(default=None, pattern=r"^[0-9a-fA-F]{64}$")
    """The artifact's SHA-256 (hex); a different file is refused at load."""
    trusted_types: list[str] = Field(default_factory=list)
    """For a ``.skops`` artifact: types beyond skops' defaults that may be loaded."""
    sklearn_version_policy: Literal["refuse_minor", "warn", "ignore"] = "refuse_minor"
    """An artifact from another scikit-learn: refuse a different major.minor, or load it
    with a warning, or say nothing."""
    prediction_log: PredictionLogSettings | None = None
    """Log this model's requests and responses as CloudEvents; off when absent."""


def parse_model_extra(extra: Mapping[str, Any] | None, source: str) -> ModelExtra:
    try:
        return ModelExtra.model_validate(dict(extra or {}))
    except ValidationError as exc:
        problems = "; ".join(
            f"{'.'.join(str(p) for p in err['loc']) or 'extra'}: {err['msg']}"
            for err in exc.errors()
        )
        raise SettingsError(source, f"parameters.extra: {problems}") from exc


class CacheSettings(BaseModel):
    """The response cache, sized once at start-up (see ``runtimes.cache``)."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    enabled: bool = False
    """MLServer's ``cache_enabled`` (``MLSERVER_CACHE_ENABLED``): the server-wide switch."""
    max_entries: int = Field(default=100, ge=1)
    """MLServer's ``cache_size`` (``MLSERVER_CACHE_SIZE``): at most this many responses."""
    max_bytes: int = Field(default=64 * 1024 * 1024, ge=1)
    """At most this many bytes of cached outputs (``ServerOptions.cache_max_bytes``)."""
    ttl_seconds: float | None = Field(default=None, gt=0)
    """An entry answers for this long; None means no expiry."""


def build_cache_settings(settings: Settings, options: ServerOptions) -> CacheSettings:
    """MLServer's switch and size, with v2serve's byte bound and TTL."""
    try:
        return CacheSettings(
            enabled=settings.cache_enabled,
            max_entries=settings.cache_size,
            max_bytes=options.cache_max_bytes,
            ttl_seconds=options.cache_ttl_seconds,
        )
    except ValidationError as exc:
        raise SettingsError("cache settings", str(exc)) from exc


def parse_model_settings(values: Mapping[str, Any], source: str) -> ModelSettings:
    """Validate a merged model-settings.json strictly, then build MLServer's object."""
    reject_unknown_keys(values, _field_names(ModelSettings), source)
    parameters = values.get("parameters") or {}
    if not isinstance(parameters, Mapping):
        raise SettingsError(source, "'parameters' must be an object")
    reject_unknown_keys(parameters, _field_names(ModelParameters), f"{source} parameters")
    parse_model_extra(parameters.get("extra"), source)
    try:
        return ModelSettings.model_validate(dict(values))
    except ValidationError as exc:
        raise SettingsError(source, str(exc)) from exc
