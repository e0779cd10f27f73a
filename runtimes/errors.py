"""One error hierarchy for v2serve, mapped once per protocol.

    MLServerError                     (MLServer's base; carries an HTTP status)
    └── V2ServeError
        ├── BadRequest                400  INVALID_ARGUMENT
        │   ├── InvalidInput          400  a tensor breaks the model's schema
        │   ├── InvalidOutput         400  a requested output the model does not offer
        │   ├── InvalidPayload        400  the body is not a V2 request
        │   ├── EstimatorRejectedInput 400 scikit-learn blamed the input
        │   ├── InvalidClassification 400 a bad classification request
        │   └── InvalidModelName      400  a name that could escape the repository
        ├── Unauthenticated           401  UNAUTHENTICATED  a control API without the token
        ├── ModelUnavailable          404  NOT_FOUND  unknown model or version
        ├── RequestTooLarge           413  RESOURCE_EXHAUSTED
        ├── ModelLoadFailed           422  FAILED_PRECONDITION  an artifact that will not load
        │   ├── CompilationFailed     422  ONNX conversion or verification failed
        │   ├── ArtifactRefused       422  a hash, type or sklearn version check refused it
        │   └── OutsideRepository     422  a path the model names leads outside the repository
        ├── TooManyRequests           429  RESOURCE_EXHAUSTED  the model's in-flight bound
        ├── SettingsError             422  FAILED_PRECONDITION  unknown or bad settings keys
        ├── PredictionFailed          500  INTERNAL  the estimator raised for other reasons
        ├── NotReady                  503  UNAVAILABLE
        └── WorkerUnavailable         503  UNAVAILABLE  a parallel-inference worker died

HTTP statuses map to gRPC codes in ``runtimes.protocol.status``.
"""

from collections.abc import Iterable

from fastapi import status
from mlserver.errors import MLServerError


class V2ServeError(MLServerError):
    status_code: int = status.HTTP_500_INTERNAL_SERVER_ERROR

    def __init__(self, message: str):
        super().__init__(message, self.status_code)


class BadRequest(V2ServeError):
    status_code = status.HTTP_400_BAD_REQUEST


class InvalidInput(BadRequest):
    def __init__(self, model: str, input_name: str, rule: str, expected: str, got: str):
        self.input_name = input_name
        super().__init__(
            f"model '{model}': input '{input_name}' {rule}: expected {expected}, got {got}"
        )


class InvalidOutput(BadRequest):
    def __init__(self, model: str, output_name: str, offered: Iterable[str]):
        super().__init__(
            f"model '{model}': unknown requested output '{output_name}': "
            f"expected one of {sorted(offered)}"
        )


class InvalidPayload(BadRequest):
    def __init__(self, problem: str):
        super().__init__(f"invalid inference request: {problem}")


class EstimatorRejectedInput(BadRequest):
    def __init__(self, model: str, method: str, cause: BaseException):
        super().__init__(f"model '{model}' rejected the input in {method}: {cause}")


class InvalidClassification(BadRequest):
    def __init__(self, model: str, output: str, problem: str):
        super().__init__(f"model '{model}': output '{output}' classification: {problem}")


class InvalidModelName(BadRequest):
    def __init__(self, name: str, why: str):
        super().__init__(f"invalid model name '{name}': {why}")


class ModelUnavailable(V2ServeError):
    status_code = status.HTTP_404_NOT_FOUND

    def __init__(self, model: str, version: str | None = None, available: Iterable[str] = ()):
        listed = ", ".join(available) or "none"
        if version is None:
            message = f"model '{model}' not found"
        else:
            message = f"model '{model}' has no version '{version}' (available: {listed})"
        super().__init__(message)


class RequestTooLarge(V2ServeError):
    status_code = status.HTTP_413_REQUEST_ENTITY_TOO_LARGE

    def __init__(self, size: int, limit: int):
        super().__init__(f"request body of {size} bytes exceeds the limit of {limit} bytes")


class ModelLoadFailed(V2ServeError):
    status_code = status.HTTP_422_UNPROCESSABLE_ENTITY

    def __init__(self, model: str, version: str | None, reason: str):
        self.reason = reason
        where = f"model '{model}'" + (f" version {version}" if version else "")
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


class PredictionFailed(V2ServeError):
    status_code = status.HTTP_500_INTERNAL_SERVER_ERROR

    def __init__(self, model: str, cause: BaseException):
        super().__init__(f"model '{model}' failed to predict: {type(cause).__name__}: {cause}")


class Unauthenticated(V2ServeError):
    status_code = status.HTTP_401_UNAUTHORIZED

    def __init__(self, api: str, got: str):
        super().__init__(
            f"the control API '{api}' needs the header 'authorization: Bearer <token>', got {got}"
        )


class TooManyRequests(V2ServeError):
    status_code = status.HTTP_429_TOO_MANY_REQUESTS
    retry_after_seconds = 1

    def __init__(self, model: str, version: str | None, limit: int):
        where = f"model '{model}'" + (f" version {version}" if version else "")
        super().__init__(
            f"{where} has {limit} requests in flight, its limit (max_inflight_per_model); "
            f"retry after {self.retry_after_seconds}s"
        )


class WorkerUnavailable(V2ServeError):
    status_code = status.HTTP_503_SERVICE_UNAVAILABLE

    def __init__(self, model: str, what: str):
        super().__init__(f"model '{model}': the parallel-inference worker {what}; retry")


class NotReady(V2ServeError):
    status_code = status.HTTP_503_SERVICE_UNAVAILABLE

    def __init__(self, model: str, version: str | None):
        where = f"model '{model}'" + (f" version {version}" if version else "")
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
