"""The image's entry command, run as KServe runs it, against each layout of /mnt/models.

Docker cannot build here, so the test rebuilds the container's view from the Dockerfile
and the ServingRuntime: the exact ENTRYPOINT (``v2serve`` resolved in this venv), the
final stage's ENV, the runtime's env with ``{{.Name}}`` rendered, the working directory
holding the copied ``settings/settings.json``, and the image's numeric USER (through
``setpriv`` when the tests run as root). Only three things differ from the pod: the
``/mnt/models`` prefix points at a temporary folder, the ports are free ones (set through
the same ``MLSERVER_*_PORT`` variables, which beat settings.json), and the host is
127.0.0.1.
"""

import os
import shutil
import stat
import subprocess
import sys
import tempfile
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import requests
from sklearn.datasets import load_breast_cancer, load_diabetes, load_iris

from runtimes.compiled.tolerance import ATOL, RTOL
from runtimes.examples import EXAMPLES, write_artifact
from tests.deployfiles import (
    ROOT,
    SETTINGS,
    entrypoint,
    final_env,
    healthcheck_command,
    numeric_user,
    runtime_container,
    runtime_env,
    runtime_named,
)

from .clients import infer, make_client
from .conftest import RunningServer, free_port, stop_server, wait_until_ready

MOUNT = "/mnt/models"
ISVC_NAME = "sklearn-iris"
BIN = Path(sys.executable).parent
SETPRIV = shutil.which("setpriv")


@dataclass
class Layout:
    """What the storage initializer left at /mnt/models, and what must be served."""

    served: dict[tuple[str, str], Any]
    X: dict[str, np.ndarray]


def _repository(mount: Path) -> Layout:
    # The committed settings only: what `make models` trained here (version folders, and
    # the models whose settings live in them) is not the layout's.
    for settings in (ROOT / "model-repository").glob("*/model-settings.json"):
        (mount / settings.parent.name).mkdir(parents=True, exist_ok=True)
        shutil.copy(settings, mount / settings.parent.name / settings.name)
    served = {}
    for model, versions in EXAMPLES.items():
        for version, train in versions.items():
            estimator = train()
            write_artifact(estimator, mount / model / str(version) / "model.joblib")
            served[(model, str(version))] = estimator
    X = {
        "iris": load_iris().data[::30],
        "diabetes": load_diabetes().data[::90],
        "breast-cancer": load_breast_cancer().data[::100],
    }
    return Layout(served, X)


def _versioned_model(mount: Path) -> Layout:
    estimators = {version: train() for version, train in EXAMPLES["iris"].items()}
    for version, estimator in estimators.items():
        write_artifact(estimator, mount / str(version) / "model.joblib")
    # The default policy serves the latest version only.
    latest = max(estimators)
    return Layout(
        {(ISVC_NAME, str(latest)): estimators[latest]}, {ISVC_NAME: load_iris().data[::25]}
    )


def _single_artifact(mount: Path) -> Layout:
    estimator = EXAMPLES["diabetes"][1]()
    write_artifact(estimator, mount / "model.joblib")
    return Layout({(ISVC_NAME, "1"): estimator}, {ISVC_NAME: load_diabetes().data[::60]})


LAYOUTS = {"repository": _repository, "versioned": _versioned_model, "single": _single_artifact}


def _in_pod(value: str, mount: Path) -> str:
    return value.replace(MOUNT, str(mount)).replace("{{.Name}}", ISVC_NAME)


def _container_environment(mount: Path, ports: dict[str, int]) -> dict[str, str]:
    runtime = runtime_named("v2serve")
    base = {k: v for k, v in os.environ.items() if not k.startswith("MLSERVER_")}
    image_env = {k: _in_pod(v, mount) for k, v in final_env().items() if k != "PATH"}
    pod_env = {k: _in_pod(v, mount) for k, v in runtime_env(runtime).items()}
    return {
        **base,
        **image_env,
        **pod_env,
        "PATH": f"{BIN}{os.pathsep}{os.environ.get('PATH', '')}",
        "MLSERVER_HTTP_PORT": str(ports["http"]),
        "MLSERVER_GRPC_PORT": str(ports["grpc"]),
        "MLSERVER_METRICS_PORT": str(ports["metrics"]),
        "MLSERVER_HOST": "127.0.0.1",
    }


def _as_image_user() -> list[str]:
    """Run as the Dockerfile's USER; without root (or setpriv) run as whoever we are."""
    if os.geteuid() != 0 or SETPRIV is None:
        return []
    uid, gid = numeric_user()
    return [
        SETPRIV,
        f"--reuid={uid}",
        f"--regid={gid if gid is not None else uid}",
        "--clear-groups",
    ]


def _readable_by_all(path: Path) -> None:
    for node in [path, *path.rglob("*")]:
        mode = node.stat().st_mode
        extra = stat.S_IRUSR | stat.S_IRGRP | stat.S_IROTH
        if node.is_dir():
            extra |= stat.S_IXUSR | stat.S_IXGRP | stat.S_IXOTH
        node.chmod(mode | extra)


@dataclass
class Pod:
    server: RunningServer
    layout: Layout
    env: dict[str, str]
    workdir: Path


@pytest.fixture(params=sorted(LAYOUTS), scope="module")
def pod(request: pytest.FixtureRequest) -> Iterator[Pod]:
    # Not pytest's tmp_path: its parents are private to root, and the image user must
    # traverse to the mount.
    base = Path(tempfile.mkdtemp(prefix="v2serve-kserve-"))
    try:
        base.chmod(0o755)
        mount, workdir = base / "mnt" / "models", base / "home"
        mount.mkdir(parents=True)
        layout = LAYOUTS[request.param](mount)
        _readable_by_all(base / "mnt")
        settings_target = workdir / "settings" / "settings.json"
        settings_target.parent.mkdir(parents=True)
        shutil.copy(SETTINGS, settings_target)
        user = _as_image_user()
        if user:
            uid, gid = numeric_user()
            for node in [workdir, *workdir.rglob("*")]:
                os.chown(node, uid, gid if gid is not None else uid)
        ports = {"http": free_port(), "grpc": free_port(), "metrics": free_port()}
        env = {**_container_environment(mount, ports), "HOME": str(workdir)}
        command = entrypoint()
        command = [str(BIN / command[0]), *command[1:]]
        log = base / "server.log"
        with log.open("wb") as sink:
            process = subprocess.Popen(
                user + command, cwd=workdir, env=env, stdout=sink, stderr=subprocess.STDOUT
            )
        server = RunningServer(process, ports["http"], ports["grpc"], ports["metrics"], mount, log)
        try:
            wait_until_ready(server)
            yield Pod(server, layout, env, workdir)
        finally:
            assert stop_server(server) == 0, server.log_text()
    finally:
        shutil.rmtree(base, ignore_errors=True)


def test_the_server_runs_as_the_image_user(pod):
    if not _as_image_user():
        pytest.skip("needs root and setpriv to switch to the image's USER")
    status = Path(f"/proc/{pod.server.process.pid}/status").read_text()
    [uids] = [line.split()[1:] for line in status.splitlines() if line.startswith("Uid:")]
    assert {int(u) for u in uids} == {numeric_user()[0]}


def test_the_served_models_are_those_of_the_layout(pod):
    index = requests.post(f"{pod.server.base}/v2/repository/index", json={}).json()
    ready = {(m["name"], m["version"]) for m in index if m["state"] == "READY"}
    assert ready == set(pod.layout.served)


@pytest.mark.parametrize("protocol", ["http", "grpc"])
def test_answers_like_the_estimator_in_process(pod, protocol):
    client = make_client(protocol, pod.server)
    for (model, version), estimator in pod.layout.served.items():
        X = np.ascontiguousarray(pod.layout.X[model], dtype=np.float64)
        result = infer(protocol, client, model, {"input-0": X}, ["predict"], version)
        np.testing.assert_allclose(
            result.as_numpy("predict"), estimator.predict(X), rtol=RTOL, atol=ATOL
        )


def test_unversioned_rest_request_reaches_the_served_version(pod):
    (model, version), estimator = max(pod.layout.served.items())
    X = np.ascontiguousarray(pod.layout.X[model][:2], dtype=np.float64)
    body = {
        "inputs": [
            {
                "name": "input-0",
                "shape": list(X.shape),
                "datatype": "FP64",
                "data": X.ravel().tolist(),
            }
        ]
    }
    answer = requests.post(f"{pod.server.base}/v2/models/{model}/infer", json=body).json()
    assert answer["model_name"] == model and answer["model_version"] == version
    np.testing.assert_allclose(
        answer["outputs"][0]["data"], estimator.predict(X), rtol=RTOL, atol=ATOL
    )


def test_the_image_healthcheck_passes(pod):
    command = healthcheck_command()
    command = [str(BIN / command[0]), *command[1:]]
    completed = subprocess.run(
        _as_image_user() + command, env=pod.env, cwd=pod.workdir, capture_output=True, timeout=30
    )
    assert completed.returncode == 0, completed.stderr


def _probes() -> list[tuple[str, dict[str, Any]]]:
    found = []
    for name in ("v2serve", "v2serve-grpc"):
        container = runtime_container(runtime_named(name))
        for probe in ("livenessProbe", "readinessProbe"):
            found.append((f"{name}.{probe}", container[probe]))
    return found


@pytest.mark.parametrize(("name", "probe"), _probes(), ids=[n for n, _ in _probes()])
def test_the_runtime_probes_pass(pod, name, probe):
    http_port = int(runtime_env(runtime_named("v2serve"))["MLSERVER_HTTP_PORT"])
    if "httpGet" in probe:
        assert probe["httpGet"]["port"] == http_port
        answer = requests.get(f"{pod.server.base}{probe['httpGet']['path']}", timeout=5)
        assert answer.status_code == 200
        return
    command = [
        arg.replace(f"127.0.0.1:{http_port}", pod.server.http_url)
        for arg in probe["exec"]["command"]
    ]
    command = [str(BIN / command[0]), *command[1:]]
    completed = subprocess.run(
        _as_image_user() + command, env=pod.env, cwd=pod.workdir, capture_output=True, timeout=30
    )
    assert completed.returncode == 0, completed.stderr


def test_metrics_are_where_the_runtime_tells_prometheus(pod):
    annotations = runtime_named("v2serve")["spec"]["annotations"]
    answer = requests.get(
        f"http://127.0.0.1:{pod.server.metrics_port}{annotations['prometheus.kserve.io/path']}",
        timeout=5,
    )
    assert answer.status_code == 200 and "# TYPE" in answer.text
