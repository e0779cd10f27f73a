"""Every error class maps to an HTTP status and a gRPC code, and renders once over REST
with the headers it carries."""

import inspect

import grpc
import orjson
import pytest

from runtimes.errors import (
    MethodNotAllowed,
    TooManyRequests,
    Unauthenticated,
    V2ServeError,
    all_error_classes,
)
from runtimes.protocol.rest_errors import render_error
from runtimes.protocol.status import GRPC_CODE_BY_HTTP_STATUS


def test_hierarchy_is_found():
    names = {cls.__name__ for cls in all_error_classes()}
    assert {"InvalidInput", "ModelUnavailable", "PredictionFailed", "NotReady"} <= names
    # HTTP-level refusals (REST only) and JSON's non-finite outputs map too.
    assert {"MalformedRequest", "URLTooLong", "HeadersTooLarge", "NonFiniteOutput"} <= names
    assert "CannotListen" in names  # start-up only, but one hierarchy all the same


@pytest.mark.parametrize("cls", all_error_classes(), ids=lambda c: c.__name__)
def test_every_error_maps_in_both_protocols(cls: type[V2ServeError]):
    assert 400 <= cls.status_code < 600
    assert isinstance(GRPC_CODE_BY_HTTP_STATUS.get(cls.status_code), grpc.StatusCode)
    assert GRPC_CODE_BY_HTTP_STATUS[cls.status_code] is not grpc.StatusCode.UNKNOWN


@pytest.mark.parametrize("cls", all_error_classes(), ids=lambda c: c.__name__)
def test_every_error_renders_as_json_with_its_status_and_headers(cls: type[V2ServeError]):
    error = _instance(cls)
    status, headers, body = render_error(error)
    assert status == cls.status_code
    assert orjson.loads(body) == {"error": str(error)}
    rendered = dict(headers)
    assert rendered[b"content-type"] == b"application/json"
    for name, value in error.headers.items():
        assert name == name.lower()
        assert rendered[name.encode()] == value.encode()


def test_retry_after_and_www_authenticate_are_carried():
    assert dict(render_error(TooManyRequests("m", None, 2))[1])[b"retry-after"] == b"1"
    assert dict(render_error(Unauthenticated("index", "no header"))[1])[b"www-authenticate"] == (
        b"Bearer"
    )
    allowed = dict(render_error(MethodNotAllowed("GET", "/p", ["POST", "GET"]))[1])
    assert allowed[b"allow"] == b"GET, POST"


def test_an_unexpected_exception_is_one_500_wording():
    status, headers, body = render_error(ZeroDivisionError("boom"))
    assert status == 500
    assert orjson.loads(body) == {"error": "internal error: ZeroDivisionError: boom"}
    assert dict(headers)[b"content-type"] == b"application/json"


def _instance(cls: type[V2ServeError]) -> V2ServeError:
    """One instance of any class, built from placeholder arguments of its signature."""
    parameters = list(inspect.signature(cls.__init__).parameters.values())[1:]
    arguments: list[object] = []
    for parameter in parameters:
        if parameter.default is not inspect.Parameter.empty:
            break
        annotation = str(parameter.annotation)
        if "int" in annotation and "str" not in annotation:
            arguments.append(1)
        elif "BaseException" in annotation:
            arguments.append(ValueError("cause"))
        elif "Iterable" in annotation:
            arguments.append(["a"])
        else:
            arguments.append("x")
    return cls(*arguments)

@pytest.mark.parametrize("cls", all_error_classes(), ids=lambda c: c.__name__)
def test_every_error_renders_over_grpc_with_its_mapped_code(cls: type[V2ServeError]):
    from runtimes.protocol.grpc.errors import grpc_status

    error = _instance(cls)
    code, message = grpc_status(error)
    assert code is GRPC_CODE_BY_HTTP_STATUS[cls.status_code]
    assert message == str(error)


def test_an_unexpected_exception_renders_as_internal_and_bounded():
    from runtimes.protocol.grpc.errors import MESSAGE_LIMIT, grpc_status

    code, message = grpc_status(KeyError("k" * 50_000))
    assert code is grpc.StatusCode.INTERNAL
    assert message.startswith("internal error: KeyError: ") and len(message) == MESSAGE_LIMIT


def test_clip_bounds_client_values_with_an_ellipsis():
    from runtimes.errors import CLIP_LIMIT, ModelUnavailable, clip

    assert clip("short") == "short"
    assert clip("a" * CLIP_LIMIT) == "a" * CLIP_LIMIT
    long = clip("a" * 20_000)
    assert len(long) == CLIP_LIMIT and long.endswith("…")
    message = str(ModelUnavailable("m" * 20_000, "v" * 20_000, ["1"]))
    assert len(message) < 3 * CLIP_LIMIT and "m" * 150 in message and "v" * 150 in message
