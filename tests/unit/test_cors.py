"""CORS from MLServer's cors_settings, on any route (Starlette's CORSMiddleware semantics)."""

from mlserver.settings import CORSSettings

from runtimes.errors import Unauthenticated
from runtimes.protocol.asgi import respond, respond_error
from runtimes.protocol.cors import CorsMiddleware

from .asgi_client import call

ALLOWED = "https://app.example"
SETTINGS = CORSSettings(
    allow_origins=[ALLOWED],
    allow_origin_regex=r"https://.*\.trusted\.example",
    allow_methods=["GET", "POST"],
    allow_headers=["x-request-id"],
    expose_headers=["inference-header-content-length"],
    allow_credentials=True,
    max_age=321,
)


async def _ok(scope, receive, send):
    await respond(send, 200, b"{}", [(b"content-type", b"application/json")])


async def _refuse(scope, receive, send):
    await respond_error(send, Unauthenticated("index", "no authorization header"))


def _preflight(app, origin, method="POST", headers=""):
    asked = {"origin": origin, "access-control-request-method": method}
    if headers:
        asked["access-control-request-headers"] = headers
    return call(app, "OPTIONS", "/v2/models/iris/infer", headers=asked)


def test_a_preflight_from_an_allowed_origin_is_answered_before_the_app():
    answer = _preflight(CorsMiddleware(_refuse, SETTINGS), ALLOWED, headers="X-Request-Id")
    assert answer.status == 200
    assert answer.headers["access-control-allow-origin"] == ALLOWED
    assert answer.headers["access-control-allow-methods"] == "GET, POST"
    assert "x-request-id" in answer.headers["access-control-allow-headers"]
    assert answer.headers["access-control-max-age"] == "321"
    assert answer.headers["access-control-allow-credentials"] == "true"
    assert answer.headers["vary"] == "Origin"


def test_a_preflight_names_what_it_refuses():
    app = CorsMiddleware(_ok, SETTINGS)
    cases = [
        (("https://evil.example", "POST", ""), "origin 'https://evil.example'"),
        ((ALLOWED, "DELETE", ""), "method 'DELETE'"),
        ((ALLOWED, "POST", "x-secret"), "headers 'x-secret'"),
    ]
    for (origin, method, headers), words in cases:
        answer = _preflight(app, origin, method, headers)
        assert answer.status == 400
        assert words in answer.json()["error"]
        assert "access-control-allow-origin" not in answer.headers


def test_the_origin_regex_must_match_the_whole_origin():
    app = CorsMiddleware(_ok, SETTINGS)
    assert _preflight(app, "https://a.trusted.example").status == 200
    assert _preflight(app, "https://a.trusted.example.evil").status == 400


def test_answers_to_an_allowed_origin_carry_cors_headers_errors_included():
    for inner in (_ok, _refuse):
        answer = call(CorsMiddleware(inner, SETTINGS), "POST", "/x", headers={"origin": ALLOWED})
        assert answer.headers["access-control-allow-origin"] == ALLOWED
        assert answer.headers["access-control-expose-headers"] == "inference-header-content-length"
    refused = call(CorsMiddleware(_refuse, SETTINGS), "GET", "/x", headers={"origin": ALLOWED})
    assert refused.status == 401 and refused.headers["www-authenticate"] == "Bearer"


def test_other_origins_and_same_origin_requests_get_no_cors_headers():
    app = CorsMiddleware(_ok, SETTINGS)
    other = call(app, "GET", "/x", headers={"origin": "https://evil.example"})
    assert other.status == 200 and "access-control-allow-origin" not in other.headers
    assert "access-control-allow-origin" not in call(app, "GET", "/x").headers


def test_any_origin_without_credentials_is_a_star_and_any_header_is_echoed():
    settings = CORSSettings(allow_origins=["*"], allow_methods=["*"], allow_headers=["*"])
    app = CorsMiddleware(_ok, settings)
    answer = _preflight(app, "https://anyone.example", "PUT", "x-one, x-two")
    assert answer.status == 200
    assert answer.headers["access-control-allow-origin"] == "*"
    assert answer.headers["access-control-allow-headers"] == "x-one, x-two"
    assert "PUT" in answer.headers["access-control-allow-methods"]
    assert "vary" not in answer.headers
