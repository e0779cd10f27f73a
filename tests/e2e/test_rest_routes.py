"""v2serve's own REST router seen by a real HTTP client: CORS on every route (infer
included, with preflight), JSON 404/405, and MLServer's non-V2 routes gone."""

import pytest
import requests

from .conftest import CORS, CORS_ORIGIN

INFER = "/v2/models/iris/infer"
BODY = {"inputs": [{"name": "input-0", "shape": [1, 4], "datatype": "FP64", "data": [1, 2, 3, 4]}]}


def test_a_browser_preflight_for_infer_is_allowed(server):
    answer = requests.options(
        f"{server.base}{INFER}",
        headers={
            "Origin": CORS_ORIGIN,
            "Access-Control-Request-Method": "POST",
            "Access-Control-Request-Headers": "Content-Type",
        },
        timeout=10,
    )
    assert answer.status_code == 200
    assert answer.headers["access-control-allow-origin"] == CORS_ORIGIN
    assert "POST" in answer.headers["access-control-allow-methods"]
    assert "content-type" in answer.headers["access-control-allow-headers"]
    assert answer.headers["access-control-max-age"] == str(CORS["max_age"])


@pytest.mark.parametrize(
    "method,path",
    [("POST", INFER), ("GET", "/v2"), ("GET", "/v2/models/iris"), ("GET", "/v2/health/ready")],
)
def test_every_route_answers_an_allowed_origin_with_cors_headers(server, method, path):
    answer = requests.request(
        method,
        f"{server.base}{path}",
        json=BODY if method == "POST" else None,
        headers={"Origin": "https://lab.trusted.example"},
        timeout=10,
    )
    assert answer.status_code == 200, answer.text
    assert answer.headers["access-control-allow-origin"] == "https://lab.trusted.example"
    assert answer.headers["access-control-expose-headers"] == "inference-header-content-length"


def test_errors_carry_cors_headers_and_other_origins_get_none(server):
    missing = requests.get(
        f"{server.base}/v2/models/nope", headers={"Origin": CORS_ORIGIN}, timeout=10
    )
    assert missing.status_code == 404
    assert missing.headers["access-control-allow-origin"] == CORS_ORIGIN
    other = requests.post(
        f"{server.base}{INFER}", json=BODY, headers={"Origin": "https://evil.example"}, timeout=10
    )
    assert other.status_code == 200
    assert "access-control-allow-origin" not in other.headers
    refused = requests.options(
        f"{server.base}{INFER}",
        headers={"Origin": "https://evil.example", "Access-Control-Request-Method": "POST"},
        timeout=10,
    )
    assert refused.status_code == 400
    assert "origin 'https://evil.example'" in refused.json()["error"]


@pytest.mark.parametrize("route", ["generate", "infer_stream", "generate_stream", "docs"])
def test_mlserver_routes_outside_v2_are_json_404s(server, route):
    answer = requests.post(f"{server.base}/v2/models/iris/{route}", json=BODY, timeout=10)
    assert answer.status_code == 404
    assert answer.json() == {"error": f"no such endpoint: POST /v2/models/iris/{route}"}


def test_a_wrong_method_is_a_json_405_with_allow(server):
    answer = requests.get(f"{server.base}{INFER}", timeout=10)
    assert answer.status_code == 405
    assert answer.headers["allow"] == "POST"
    assert "GET" in answer.json()["error"]
