"""The control APIs behind a bearer token, over REST and gRPC; inference and health open."""

from collections.abc import Iterator

import pytest
import requests
import tritonclient.grpc as grpcclient
from tritonclient.utils import InferenceServerException

from .conftest import RunningServer, copy_models, start_server, stop_server
from .reliability import IRIS, rest_infer

TOKEN = "s3cret-control-token-0e1f"
GOOD = {"authorization": f"Bearer {TOKEN}"}
BAD = {"authorization": "Bearer not-the-token"}
GUARDED_REST = [
    ("POST", "/v2/repository/index"),
    ("POST", "/v2/repository/models/iris/unload"),
    ("POST", "/v2/repository/models/iris/load"),
    ("GET", "/v2/models/stats"),
    ("GET", "/v2/models/iris/stats"),
    ("GET", "/v2/models/iris/versions/1/stats"),
    ("GET", "/v2/models/iris/config"),
    ("GET", "/v2/models/iris/versions/1/config"),
    ("GET", "/v2/trace/setting"),
    ("POST", "/v2/trace/setting"),
    ("GET", "/v2/models/iris/trace/setting"),
    ("GET", "/v2/logging"),
    ("POST", "/v2/logging"),
]


@pytest.fixture(scope="module")
def guarded(tmp_path_factory: pytest.TempPathFactory, repository) -> Iterator[RunningServer]:
    workdir = tmp_path_factory.mktemp("guarded")
    iris = copy_models(repository, workdir / "model-repository", ["iris"])  # all they call
    server = start_server(workdir, iris, env={"V2SERVE_CONTROL_TOKEN": TOKEN})
    yield server
    assert stop_server(server) == 0, server.log_text()
    assert TOKEN not in server.log_text()


@pytest.mark.parametrize("method,path", GUARDED_REST)
@pytest.mark.parametrize(
    "headers", [{}, BAD, {"authorization": TOKEN}], ids=["none", "wrong", "no-scheme"]
)
def test_rest_control_apis_refuse_without_the_token(guarded, method, path, headers):
    answer = requests.request(method, guarded.base + path, headers=headers, timeout=10)
    assert answer.status_code == 401, answer.text
    assert answer.headers["www-authenticate"] == "Bearer"
    assert "authorization: Bearer <token>" in answer.json()["error"]
    assert TOKEN not in answer.text


@pytest.mark.parametrize("method,path", [r for r in GUARDED_REST if "unload" not in r[1]])
def test_rest_control_apis_answer_with_the_token(guarded, method, path):
    answer = requests.request(method, guarded.base + path, headers=GOOD, timeout=30)
    assert answer.status_code == 200, answer.text


def test_an_unauthenticated_unload_leaves_the_model_serving(guarded):
    refused = requests.post(f"{guarded.base}/v2/repository/models/iris/unload", timeout=10)
    assert refused.status_code == 401
    assert rest_infer(guarded.base, "iris", IRIS).status_code == 200


@pytest.mark.parametrize(
    "path",
    ["/v2/health/live", "/v2/health/ready", "/v2/models/iris", "/v2/models/iris/ready", "/v2"],
)
def test_health_and_metadata_stay_open(guarded, path):
    assert requests.get(guarded.base + path, timeout=10).status_code == 200


def test_inference_stays_open_over_both_protocols(guarded):
    assert rest_infer(guarded.base, "iris", IRIS).status_code == 200
    client = grpcclient.InferenceServerClient(url=guarded.grpc_url)
    tensor = grpcclient.InferInput("input-0", list(IRIS.shape), "FP64")
    tensor.set_data_from_numpy(IRIS)
    assert client.infer("iris", [tensor]).as_numpy("predict") is not None
    assert client.is_server_ready() and client.is_model_ready("iris")


GRPC_CALLS = {
    "RepositoryIndex": lambda c, h: c.get_model_repository_index(headers=h),
    "ModelStatistics": lambda c, h: c.get_inference_statistics("iris", headers=h),
    "ModelConfig": lambda c, h: c.get_model_config("iris", headers=h),
    "RepositoryModelLoad": lambda c, h: c.load_model("iris", headers=h),
    "RepositoryModelUnload": lambda c, h: c.unload_model("no-such-model", headers=h),
    "TraceSetting": lambda c, h: c.get_trace_settings(headers=h),
    "LogSettings": lambda c, h: c.update_log_settings({}, headers=h),
}


@pytest.mark.parametrize("call", sorted(GRPC_CALLS))
def test_grpc_control_apis_refuse_without_the_token(guarded, call):
    client = grpcclient.InferenceServerClient(url=guarded.grpc_url)
    for headers in (None, BAD):
        with pytest.raises(InferenceServerException) as refused:
            GRPC_CALLS[call](client, headers)
        assert refused.value.status() == "StatusCode.UNAUTHENTICATED"
        assert call in refused.value.message()
        assert TOKEN not in refused.value.message()


@pytest.mark.parametrize("call", sorted(set(GRPC_CALLS) - {"RepositoryModelUnload"}))
def test_grpc_control_apis_answer_with_the_token(guarded, call):
    client = grpcclient.InferenceServerClient(url=guarded.grpc_url)
    GRPC_CALLS[call](client, GOOD)


def test_cors_is_off_by_default(guarded):
    preflight = requests.options(
        f"{guarded.base}/v2/models/iris/infer",
        headers={"Origin": "https://evil.example", "Access-Control-Request-Method": "POST"},
        timeout=10,
    )
    assert "access-control-allow-origin" not in preflight.headers
    answer = requests.get(
        f"{guarded.base}/v2/health/live", headers={"Origin": "https://evil.example"}, timeout=10
    )
    assert "access-control-allow-origin" not in answer.headers
