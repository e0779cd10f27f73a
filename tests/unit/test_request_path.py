"""No Starlette, FastAPI or python-multipart code runs while v2serve serves a V2 request.

The pinned Starlette (0.46.2, held there by MLServer 1.7.1's FastAPI cap) carries
published advisories (docs/reliability.md, "Starlette and FastAPI"). They sit in code
that v2serve's own router never calls: every V2 route is served by ``runtimes.protocol``
on raw ASGI. This test drives the real REST app in-process under a profiler and fails
if any function of those packages is entered, on the routes a client can reach.
"""

import asyncio
import sys
from pathlib import Path
from typing import Any

import joblib
import orjson
import pytest
from mlserver.settings import CORSSettings
from sklearn.datasets import load_iris
from sklearn.linear_model import LogisticRegression

from runtimes.dataplane import V2DataPlane
from runtimes.extensions.handlers import ExtensionHandlers
from runtimes.extensions.statistics import Statistics
from runtimes.protocol.rest_app import build_rest_app

from .in_process import release_metrics, serve_iris

FRAMEWORKS = ("starlette", "fastapi", "multipart", "python_multipart")
X, Y = load_iris(return_X_y=True)
INFER = orjson.dumps(
    {
        "inputs": [{"name": "input-0", "shape": [1, 4], "datatype": "FP64", "data": X[0].tolist()}],
        "parameters": {"timeout": 5_000_000},
    }
)
REQUESTS = [
    ("POST", "/v2/models/iris/infer", INFER, {"content-type": "application/json"}),
    ("POST", "/v2/models/iris/versions/1/infer", INFER, {"content-type": "application/json"}),
    # Form bodies and ranges are what the advisories are about: sent anyway.
    ("POST", "/v2/models/iris/infer", b"a=1&" * 5000,
     {"content-type": "application/x-www-form-urlencoded"}),
    ("POST", "/v2/models/iris/infer", b"--b\r\n\r\nx\r\n--b--\r\n",
     {"content-type": "multipart/form-data; boundary=b"}),
    ("GET", "/v2/models/iris", b"", {"range": "bytes=0-1,1-2,2-3"}),
    ("GET", "/v2/health/ready", b"", {"host": "example.com/abc?x="}),
    ("GET", "/v2/models/iris/ready", b"", {}),
    ("GET", "/v2/models/iris/stats", b"", {}),
    ("GET", "/v2/models/iris/config", b"", {}),
    ("POST", "/v2/repository/index", b"", {}),
    ("OPTIONS", "/v2/models/iris/infer", b"",
     {"origin": "https://app.example", "access-control-request-method": "POST"}),
    ("GET", "/docs", b"", {}),
]  # fmt: skip


def _framework_file(filename: str) -> bool:
    parts = Path(filename).parts
    return "site-packages" in parts and any(name in parts for name in FRAMEWORKS)


async def _served(folder: Path) -> tuple[Any, V2DataPlane]:
    plane, repository = await serve_iris(folder)
    cors = CORSSettings(allow_origins=["https://app.example"], allow_methods=["POST"])
    app = build_rest_app(
        plane, ExtensionHandlers(plane, Statistics()), repository, 1 << 20, cors=cors
    )
    return app, plane


async def _call(app: Any, method: str, path: str, body: bytes, headers: dict[str, str]) -> int:
    scope = {
        "type": "http", "method": method, "path": path, "root_path": "", "query_string": b"",
        "headers": [(k.encode(), v.encode()) for k, v in headers.items()],
    }  # fmt: skip
    delivered = False
    status = 0

    async def receive() -> dict[str, Any]:
        nonlocal delivered
        if delivered:
            await asyncio.Event().wait()  # an open connection: nothing more to read
        delivered = True
        return {"type": "http.request", "body": body, "more_body": False}

    async def send(message: dict[str, Any]) -> None:
        nonlocal status
        if message["type"] == "http.response.start":
            status = message["status"]

    await app(scope, receive, send)
    return status


def test_serving_v2_routes_enters_no_starlette_fastapi_or_multipart_code(tmp_path: Path) -> None:
    joblib.dump(LogisticRegression(max_iter=500).fit(X, Y), tmp_path / "model.joblib")
    entered: set[str] = set()

    def profile(frame: Any, event: str, arg: Any) -> None:
        if event == "call" and _framework_file(frame.f_code.co_filename):
            entered.add(f"{frame.f_code.co_filename}:{frame.f_code.co_name}")

    async def scenario() -> list[int]:
        app, plane = await _served(tmp_path)
        try:
            statuses = [await _call(app, *request) for request in REQUESTS]
            sys.setprofile(profile)
            try:
                profiled = [await _call(app, *request) for request in REQUESTS]
            finally:
                sys.setprofile(None)
            assert profiled == statuses
            return statuses
        finally:
            release_metrics(plane)

    statuses = asyncio.run(scenario())
    assert statuses[:2] == [200, 200], statuses
    assert statuses[2] == statuses[3] == 400  # form bodies are not V2 requests
    assert statuses[-1] == 404
    assert entered == set(), sorted(entered)


def test_the_profiler_sees_framework_code_when_it_runs() -> None:
    """The check above can fail: Starlette's own form parser is seen when it is called."""
    from starlette.datastructures import Headers

    entered: list[str] = []

    def profile(frame: Any, event: str, arg: Any) -> None:
        if event == "call" and _framework_file(frame.f_code.co_filename):
            entered.append(frame.f_code.co_name)

    sys.setprofile(profile)
    try:
        Headers({"range": "bytes=0-1"}).get("range")
    finally:
        sys.setprofile(None)
    assert entered


@pytest.mark.parametrize("module", ["starlette.formparsers", "starlette.responses"])
def test_the_advisories_code_is_in_the_installed_starlette(module: str) -> None:
    """What docs/reliability.md says is not called does exist: the pin is the affected one."""
    import importlib
    from importlib.metadata import version

    assert version("starlette") == "0.46.2"
    assert importlib.import_module(module) is not None
