"""One error hierarchy for v2serve, mapped once per protocol.

    MLServerError                     (MLServer's base; carries an HTTP status)
    └── V2ServeError
        ├── BadRequest                400  INVALID_ARGUMENT
        │   ├── InvalidInput          400  a tensor breaks the model's schema
        │   ├── InvalidOutput         400  a requested output the model does not offer
        │   ├── InvalidPayload        400  the body is not a V2 request
        │   ├── EstimatorRejectedInput 400 scikit-learn blamed the input
        │   ├── InvalidClassification 400 a bad classification request
        │   ├── InvalidModelName      400  a name that could escape the repository
        │   ├── CorsRefused           400  a CORS preflight that cors_settings refuses
        │   └── MalformedRequest      400  HTTP framing llhttp refused (REST only)
        ├── Unauthenticated           401  UNAUTHENTICATED  a control API without the token
        ├── ModelUnavailable          404  NOT_FOUND  unknown model or version
        ├── NoSuchEndpoint            404  NOT_FOUND  a REST path v2serve does not serve
        ├── MethodNotAllowed          405  UNIMPLEMENTED  a known path, another method
        ├── RequestTooLarge           413  RESOURCE_EXHAUSTED
        ├── URLTooLong                414  RESOURCE_EXHAUSTED  over max_url_bytes (REST only)
        ├── HeadersTooLarge           431  RESOURCE_EXHAUSTED  over max_header_bytes (REST only)
        ├── ModelLoadFailed           422  FAILED_PRECONDITION  an artifact that will not load
        │   ├── CompilationFailed     422  ONNX conversion or verification failed
        │   ├── ArtifactRefused       422  a hash, type or sklearn version check refused it
        │   └── OutsideRepository     422  a path the model names leads outside the repository
        ├── TooManyRequests           429  RESOURCE_EXHAUSTED  the model's in-flight bound
        ├── SettingsError             422  FAILED_PRECONDITION  unknown or bad settings keys
        ├── CannotListen              503  UNAVAILABLE  a port taken at start-up (never served)
        ├── PredictionFailed          500  INTERNAL  the estimator raised for other reasons
        ├── NonFiniteOutput           500  INTERNAL  NaN/Inf in an output asked for as JSON
        ├── Unsupported               501  UNIMPLEMENTED  a protocol feature v2serve lacks
        ├── NotReady                  503  UNAVAILABLE
        └── WorkerUnavailable         503  UNAVAILABLE  a parallel-inference worker died

HTTP statuses map to gRPC codes in ``runtimes.protocol.status``. As Starlette's
``HTTPException``, an error also carries the HTTP headers its answer needs
(``Retry-After``, ``WWW-Authenticate``), so one renderer (``runtimes.protocol.rest_errors``)
answers every REST path the same way.

Names and values that come from the client pass through ``clip`` before they enter a
message: a 20,000-character model name must not turn a NOT_FOUND into a gRPC trailer too
large to send ("Stream removed", RESOURCE_EXHAUSTED).
"""

from collections.abc import Iterable, Mapping
from types import MappingProxyType

from fastapi import status
from mlserver.errors import MLServerError

CLIP_LIMIT = 200  # a name or value quoted from the client
DETAIL_LIMIT = 1000  # free text that may quote the input (an estimator's message)
ELLIPSIS = "…"


def clip(value: object, limit: int = CLIP_LIMIT) -> str:
    """``value`` as text, cut to ``limit`` characters with an ellipsis when longer."""
    text = str(value)
    return text if len(text) <= limit else text[: limit - len(ELLIPSIS)] + ELLIPSIS


class V2ServeError(MLServerError):
    status_code: int = status.HTTP_500_INTERNAL_SERVER_ERROR
    headers: Mapping[str, str] = MappingProxyType({})
    """HTTP headers the REST answer carries (lower-case names); empty for most errors."""

    def __init__(self, message: str):
        super().__init__(message, self.status_code)


class BadRequest(V2ServeError):
    status_code = status.HTTP_400_BAD_REQUEST


class InvalidInput(BadRequest):
    def __init__(self, model: str, input_name: str, rule: str, expected: str, got: str):
        self.input_name = input_name
        super().__init__(
            f"model '{clip(model)}': input '{clip(input_name)}' {rule}: "
            f"expected {expected}, got {clip(got)}"
        )


class InvalidOutput(BadRequest):
    def __init__(self, model: str, output_name: str, offered: Iterable[str]):
        super().__init__(
            f"model '{clip(model)}': unknown requested output '{clip(output_name)}': "
            f"expected one of {clip(sorted(offered))}"
        )


class InvalidPayload(BadRequest):
    def __init__(self, problem: str):
        super().__init__(f"invalid inference request: {clip(problem, DETAIL_LIMIT)}")


class EstimatorRejectedInput(BadRequest):
    def __init__(self, model: str, method: str, cause: BaseException):
        super().__init__(
            f"model '{clip(model)}' rejected the input in {method}: {clip(cause, DETAIL_LIMIT)}"
        )


class InvalidClassification(BadRequest):
    def __init__(self, model: str, output: str, problem: str):
        super().__init__(
            f"model '{clip(model)}': output '{clip(output)}' classification: {problem}"
        )


class InvalidModelName(BadRequest):
    def __init__(self, name: str, why: str):
        super().__init__(f"invalid model name '{clip(name)}': {why}")


class CorsRefused(BadRequest):
    def __init__(self, what: str, got: str):
        super().__init__(f"CORS preflight refused: {what} '{got}' is not allowed by cors_settings")


class MalformedRequest(BadRequest):
    """The HTTP parser refused the request's framing; ``problem`` is llhttp's reason."""

    def __init__(self, problem: str):
        super().__init__(f"malformed HTTP request: {problem}; the connection is closed")


class ModelUnavailable(V2ServeError):
    status_code = status.HTTP_404_NOT_FOUND

    def __init__(self, model: str, version: str | None = None, available: Iterable[str] = ()):
        listed = clip(", ".join(available) or "none")
        if version is None:
            message = f"model '{clip(model)}' not found"
        else:
            message = (
                f"model '{clip(model)}' has no version '{clip(version)}' (available: {listed})"
            )
        super().__init__(message)


class NoSuchEndpoint(V2ServeError):
    status_code = status.HTTP_404_NOT_FOUND

    def __init__(self, method: str, path: str):
        super().__init__(f"no such endpoint: {method} {path}")


class MethodNotAllowed(V2ServeError):
    status_code = status.HTTP_405_METHOD_NOT_ALLOWED

    def __init__(self, method: str, path: str, allowed: Iterable[str]):
        methods = sorted(set(allowed))
        self.headers = MappingProxyType({"allow": ", ".join(methods)})
        super().__init__(f"method {method} is not allowed on {path}: expected one of {methods}")


class RequestTooLarge(V2ServeError):
    status_code = status.HTTP_413_REQUEST_ENTITY_TOO_LARGE

    def __init__(self, size: int, limit: int):
        super().__init__(f"request body of {size} bytes exceeds the limit of {limit} bytes")


class URLTooLong(V2ServeError):
    status_code = status.HTTP_414_REQUEST_URI_TOO_LONG

    def __init__(self, size: int, limit: int):
        super().__init__(
            f"request URL of at least {size} bytes exceeds the limit of {limit} bytes "
            "(max_url_bytes)"
        )


class HeadersTooLarge(V2ServeError):
    status_code = status.HTTP_431_REQUEST_HEADER_FIELDS_TOO_LARGE

    def __init__(self, size: int, limit: int):
        super().__init__(
            f"request headers of at least {size} bytes exceed the limit of {limit} bytes "
            "(max_header_bytes); the connection is closed"
        )


class ModelLoadFailed(V2ServeError):
    status_code = status.HTTP_422_UNPROCESSABLE_ENTITY

    def __init__(self, model: str, version: str | None, reason: str):
        self.reason = reason
        where = f"model '{clip(model)}'" + (f" version {clip(version)}" if version else "")
        super().__init__(f"{where} failed to load: {reason}")


class CompilationFailed(ModelLoadFailed):
    """The compiled (ONNX) path could not be built or did not equal sklearn."""

    def __init__(self, model: str, version: str | None, step: str, problem: str):
        self.step = step
        self.problem = problem
        super().__init__(model, version, f"compiled inference: {step}: {problem}")


class ArtifactRefused(ModelLoadFailed):
    """A safety check refused the artifact before (or instead of) serving it."""

    def __init__(self, model: str, version: str | None, path: str, check: str, problem: str):
        self.path = path
        self.check = check
        super().__init__(model, version, f"{path} refused ({check}): {problem}")


class OutsideRepository(ModelLoadFailed):
    """A folder, artifact, uri or sample that a model's layout or settings name resolves
    outside the repository root (a symlink, ``..`` or an absolute path)."""

    def __init__(self, model: str, version: str | None, what: str, problem: str):
        self.what = what
        super().__init__(model, version, f"{what} {problem}")


class SettingsError(V2ServeError):
    status_code = status.HTTP_422_UNPROCESSABLE_ENTITY

    def __init__(self, source: str, problem: str):
        super().__init__(f"{source}: {problem}")


class CannotListen(V2ServeError):
    """A listener that cannot bind at start-up; the CLI prints it as its one line."""

    status_code = status.HTTP_503_SERVICE_UNAVAILABLE

    def __init__(self, host: str, port: int, listener: str, reason: str):
        self.host, self.port, self.listener = host, port, listener
        where = f"[{host}]:{port}" if ":" in host else f"{host}:{port}"
        super().__init__(f"cannot listen on {where} ({listener}): {reason}")


class PredictionFailed(V2ServeError):
    status_code = status.HTTP_500_INTERNAL_SERVER_ERROR

    def __init__(self, model: str, cause: BaseException):
        super().__init__(
            f"model '{clip(model)}' failed to predict: "
            f"{type(cause).__name__}: {clip(cause, DETAIL_LIMIT)}"
        )


class Unsupported(V2ServeError):
    status_code = status.HTTP_501_NOT_IMPLEMENTED

    def __init__(self, feature: str):
        super().__init__(f"v2serve does not support {clip(feature)}")


class NonFiniteOutput(V2ServeError):
    """JSON has no NaN or Infinity: orjson would write null, a silent wrong answer."""

    status_code = status.HTTP_500_INTERNAL_SERVER_ERROR

    def __init__(self, model: str, output: str):
        super().__init__(
            f"model '{model}': output '{output}' holds NaN/Inf, which JSON cannot carry; "
            "ask for binary_data_output or use gRPC"
        )


class Unauthenticated(V2ServeError):
    status_code = status.HTTP_401_UNAUTHORIZED
    headers = MappingProxyType({"www-authenticate": "Bearer"})

    def __init__(self, api: str, got: str):
        super().__init__(
            f"the control API '{clip(api)}' needs the header 'authorization: Bearer <token>', "
            f"got {got}"
        )


class TooManyRequests(V2ServeError):
    status_code = status.HTTP_429_TOO_MANY_REQUESTS
    retry_after_seconds = 1
    headers = MappingProxyType({"retry-after": str(retry_after_seconds)})

    def __init__(self, model: str, version: str | None, limit: int):
        where = f"model '{clip(model)}'" + (f" version {clip(version)}" if version else "")
        super().__init__(
            f"{where} has {limit} requests in flight, its limit (max_inflight_per_model); "
            f"retry after {self.retry_after_seconds}s"
        )


class WorkerUnavailable(V2ServeError):
    status_code = status.HTTP_503_SERVICE_UNAVAILABLE

    def __init__(self, model: str, what: str):
        super().__init__(f"model '{clip(model)}': the parallel-inference worker {what}; retry")


class NotReady(V2ServeError):
    status_code = status.HTTP_503_SERVICE_UNAVAILABLE

    def __init__(self, model: str, version: str | None):
        where = f"model '{clip(model)}'" + (f" version {clip(version)}" if version else "")
        super().__init__(f"{where} is not ready")


def all_error_classes() -> list[type[V2ServeError]]:
    """Every concrete class of the hierarchy, for the mapping test."""
    found: list[type[V2ServeError]] = []
    pending: list[type[V2ServeError]] = [V2ServeError]
    while pending:
        cls = pending.pop()
        found.append(cls)
        pending.extend(cls.__subclasses__())
    return found
