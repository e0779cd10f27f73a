"""The metrics endpoint, in-process: Prometheus text on its path, JSON errors elsewhere."""

from mlserver.settings import Settings

from runtimes.protocol.rest_metrics import MetricsApp

from .asgi_client import call

APP = MetricsApp(Settings(parallel_workers=0, metrics_endpoint="/metrics"))


def test_the_scrape_path_serves_prometheus_text():
    answer = call(APP, "GET", "/metrics")
    assert answer.status == 200
    assert answer.headers["content-type"].startswith("text/plain")
    assert b"# TYPE" in answer.body


def test_other_paths_and_methods_are_json_errors():
    assert call(APP, "GET", "/v2").json() == {"error": "no such endpoint: GET /v2"}
    refused = call(APP, "POST", "/metrics")
    assert (refused.status, refused.headers["allow"]) == (405, "GET")
