"""v2serve's REST router, driven in-process: matching, 404/405, errors, HEAD, root_path."""

from runtimes.errors import ModelUnavailable, TooManyRequests
from runtimes.protocol.rest_router import (
    MODEL,
    RestRequest,
    RestResponse,
    RestRouter,
    Route,
    json_response,
)

from .asgi_client import call


async def _echo(request: RestRequest) -> RestResponse:
    return json_response({"params": request.params, "body": (await request.body()).decode()})


async def _missing(request: RestRequest) -> RestResponse:
    raise ModelUnavailable(request.params["model"] or "")


async def _busy(request: RestRequest) -> RestResponse:
    raise TooManyRequests("m", None, 1)


async def _bug(request: RestRequest) -> RestResponse:
    raise KeyError("oops")


ROUTER = RestRouter(
    [
        Route("GET", "/v2/models/stats", _echo),
        Route("POST", f"{MODEL}/infer", _echo),
        Route("GET", MODEL, _echo),
        Route("GET", "/missing/(?P<model>[^/]+)", _missing),
        Route("GET", "/busy", _busy),
        Route("GET", "/bug", _bug),
    ],
    max_bytes=10,
)


def test_named_groups_become_params_with_and_without_a_version():
    assert call(ROUTER, "GET", "/v2/models/iris").json()["params"] == {
        "model": "iris",
        "version": None,
    }
    answer = call(ROUTER, "POST", "/v2/models/iris/versions/2/infer", b"{}")
    assert answer.json() == {"params": {"model": "iris", "version": "2"}, "body": "{}"}


def test_the_first_matching_route_serves():
    assert call(ROUTER, "GET", "/v2/models/stats").json()["params"] == {}


def test_an_unknown_path_is_a_json_404_naming_it():
    answer = call(ROUTER, "POST", "/v2/models/iris/generate")
    assert answer.status == 404
    assert answer.json() == {"error": "no such endpoint: POST /v2/models/iris/generate"}
    assert answer.headers["content-type"] == "application/json"


def test_a_known_path_with_another_method_is_a_json_405_with_allow():
    answer = call(ROUTER, "GET", "/v2/models/iris/infer")
    assert answer.status == 405
    assert answer.headers["allow"] == "POST"
    assert "GET" in answer.json()["error"] and "POST" in answer.json()["error"]


def test_errors_are_rendered_with_their_status_and_headers():
    assert call(ROUTER, "GET", "/missing/x").json() == {"error": "model 'x' not found"}
    busy = call(ROUTER, "GET", "/busy")
    assert (busy.status, busy.headers["retry-after"]) == (429, "1")


def test_an_unexpected_exception_is_a_json_500():
    answer = call(ROUTER, "GET", "/bug")
    assert answer.status == 500
    assert answer.json() == {"error": "internal error: KeyError: 'oops'"}


def test_a_body_over_the_limit_is_413():
    answer = call(ROUTER, "POST", "/v2/models/iris/infer", b"x" * 11)
    assert answer.status == 413
    assert "exceeds the limit of 10 bytes" in answer.json()["error"]


def test_head_is_served_as_get_and_a_trailing_slash_is_ignored():
    assert call(ROUTER, "HEAD", "/v2/models/iris").status == 200
    assert call(ROUTER, "GET", "/v2/models/iris/").json()["params"]["model"] == "iris"


def test_the_root_path_is_stripped():
    answer = call(ROUTER, "GET", "/prefix/v2/models/iris", root_path="/prefix")
    assert answer.json()["params"]["model"] == "iris"
