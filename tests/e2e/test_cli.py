"""The `v2serve start` entry point, as a user runs it."""

import json
import signal
import socket
import subprocess

import numpy as np
import pytest
import requests

from .conftest import V2SERVE, copy_models, start_server, stop_server, wait_until

SMALL = {"iris", "diabetes"}


def test_a_bare_pickle_is_served_with_defaults(server, estimators):
    X = np.array([[6.1, 2.8, 4.7, 1.2]])
    body = {
        "inputs": [
            {"name": "input-0", "shape": [1, 4], "datatype": "FP64", "data": X.ravel().tolist()}
        ]
    }
    answer = requests.post(f"{server.base}/v2/models/bare/infer", json=body).json()
    assert answer["model_version"] == "1"
    assert answer["outputs"][0]["data"] == estimators[("bare", "1")].predict(X).tolist()


def test_environment_beats_settings_file(server, file_ports):
    # settings.json names ports that this process holds; the environment's port 0 won.
    written = json.loads((server.log.parent / "settings" / "settings.json").read_text())
    assert (written["http_port"], written["grpc_port"]) == (
        file_ports["http_port"],
        file_ports["grpc_port"],
    )
    assert server.http_port not in file_ports.values()
    assert server.grpc_port not in file_ports.values()
    assert requests.get(f"{server.base}/v2/health/live").status_code == 200


@pytest.fixture(scope="module")
def small(tmp_path_factory, repository):
    """Two models of the session's repository: these tests start their own servers, and
    what they check is where the repository comes from, not what is in it."""
    return copy_models(repository, tmp_path_factory.mktemp("cli") / "model-repository", SMALL)


def test_flag_beats_environment_and_sigint_stops_cleanly(tmp_path, small):
    running = start_server(
        tmp_path,
        small,
        env={"MLSERVER_MODEL_REPOSITORY_ROOT": str(tmp_path / "empty")},
    )
    models = requests.post(f"{running.base}/v2/repository/index", json={}).json()
    assert {m["name"] for m in models} == SMALL
    assert stop_server(running, signal.SIGINT) == 0


def test_environment_repository_root_is_honoured(tmp_path, small):
    running = start_server(
        tmp_path,
        small,
        env={"MLSERVER_MODEL_REPOSITORY_ROOT": str(small)},
        extra_args=[],
    )
    assert requests.get(f"{running.base}/v2/models/diabetes").status_code == 200
    assert stop_server(running) == 0


def test_zero_models_is_not_ready(tmp_path):
    empty = tmp_path / "empty-repo"
    empty.mkdir()
    running = start_server(tmp_path, empty, wait_ready=False)
    try:
        # The port file is written once the listeners serve: live at once, never ready.
        assert requests.get(f"{running.base}/v2/health/live", timeout=10).status_code == 200
        assert requests.get(f"{running.base}/v2/health/ready", timeout=10).status_code == 503
    finally:
        assert stop_server(running) == 0


def test_unknown_settings_key_is_rejected_by_name(tmp_path):
    settings = tmp_path / "settings"
    settings.mkdir()
    (settings / "settings.json").write_text(json.dumps({"http_prot": 9999}))
    completed = subprocess.run(
        [str(V2SERVE), "start", "--settings", str(settings)],
        capture_output=True,
        text=True,
        timeout=60,
        cwd=tmp_path,
    )
    assert completed.returncode == 2
    assert "http_prot" in completed.stderr and "http_port" in completed.stderr


@pytest.mark.parametrize(
    "settings,key",
    [
        ({"kafka_enabled": True}, "kafka_enabled"),
        ({"tracing_server": "collector:4317"}, "tracing_server"),
        ({"gzip_enabled": True}, "gzip_enabled"),
    ],
)
def test_an_unhonoured_mlserver_setting_stops_the_start_with_one_line(tmp_path, settings, key):
    folder = tmp_path / "settings"
    folder.mkdir()
    (folder / "settings.json").write_text(json.dumps(settings))
    completed = subprocess.run(
        [str(V2SERVE), "start", "--settings", str(folder)],
        capture_output=True,
        text=True,
        timeout=60,
        cwd=tmp_path,
    )
    assert completed.returncode == 2
    lines = completed.stderr.strip().splitlines()
    assert len(lines) == 1, completed.stderr
    assert f"'{key}' is not supported by v2serve" in lines[0]


def test_the_port_file_names_the_ports_the_server_answers_on(server):
    """Port 0 for all three: the file names what the kernel chose, and each answers."""
    ports = json.loads(server.port_file.read_text())
    assert set(ports) == {"http", "grpc", "metrics", "host", "pid"}
    assert ports["pid"] == server.process.pid and ports["host"] == "127.0.0.1"
    assert len({ports["http"], ports["grpc"], ports["metrics"]}) == 3
    assert all(ports[name] > 0 for name in ("http", "grpc", "metrics"))
    assert requests.get(f"http://127.0.0.1:{ports['http']}/v2/health/live").status_code == 200
    metrics = requests.get(f"http://127.0.0.1:{ports['metrics']}/metrics", timeout=10)
    assert metrics.status_code == 200 and "# TYPE" in metrics.text
    with socket.create_connection(("127.0.0.1", ports["grpc"]), timeout=10) as conn:
        conn.sendall(b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n")  # the HTTP/2 preface
        header = b""
        while len(header) < 9 and (chunk := conn.recv(9 - len(header))):
            header += chunk
        assert header[3] == 0x4  # gRPC answers with a SETTINGS frame
    listening = f"listening: REST 127.0.0.1:{ports['http']}, gRPC 127.0.0.1:{ports['grpc']}, "
    assert listening + f"metrics 127.0.0.1:{ports['metrics']}" in server.log_text()


@pytest.mark.parametrize(
    "variable,label",
    [
        ("MLSERVER_HTTP_PORT", "REST"),
        ("MLSERVER_GRPC_PORT", "gRPC"),
        ("MLSERVER_METRICS_PORT", "metrics"),
    ],
)
def test_a_taken_port_stops_the_start_with_one_line_naming_it(tmp_path, variable, label):
    # Held with SO_REUSEPORT, as another gRPC server holds its port: v2serve must not share.
    with socket.socket() as holder:
        holder.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT, 1)
        holder.bind(("127.0.0.1", 0))
        holder.listen()
        port = holder.getsockname()[1]
        empty = tmp_path / "empty-repo"
        empty.mkdir()
        running = start_server(tmp_path, empty, env={variable: str(port)}, wait_ready=False)
        code = running.process.wait(timeout=60)
    assert code == 1, running.log_text()
    lines = running.log_text().strip().splitlines()
    assert lines == [
        f"v2serve: cannot listen on 127.0.0.1:{port} ({label}): address already in use"
    ]
    assert not running.port_file.exists()


def test_port_zero_in_settings_is_honoured(tmp_path):
    """Port 0 from settings.json (no MLSERVER_*_PORT at all), reported in the port file."""
    empty = tmp_path / "empty-repo"
    empty.mkdir()
    settings = {"host": "127.0.0.1", "http_port": 0, "grpc_port": 0, "metrics_port": 0}
    env = {v: None for v in ("MLSERVER_HTTP_PORT", "MLSERVER_GRPC_PORT", "MLSERVER_METRICS_PORT")}
    running = start_server(tmp_path, empty, settings=settings, env=env, wait_ready=False)
    try:
        assert running.http_port not in (0, 8080) and running.grpc_port not in (0, 8081)
        live = wait_until(
            lambda: requests.get(f"{running.base}/v2/health/live", timeout=10).status_code == 200,
            30,
            "live on the reported port",
        )
        assert live
    finally:
        assert stop_server(running) == 0, running.log_text()
