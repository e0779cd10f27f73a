"""The `v2serve start` entry point, as a user runs it."""

import json
import signal
import subprocess
import time

import numpy as np
import pytest
import requests

from .conftest import V2SERVE, start_server, stop_server


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


def test_environment_beats_settings_file(server):
    # The fixture's settings.json names other ports; the server listens on the env's.
    assert requests.get(f"{server.base}/v2/health/live").status_code == 200


def test_flag_beats_environment_and_sigint_stops_cleanly(tmp_path, repository):
    running = start_server(
        tmp_path,
        repository,
        env={"MLSERVER_MODEL_REPOSITORY_ROOT": str(tmp_path / "empty")},
    )
    models = requests.post(f"{running.base}/v2/repository/index", json={}).json()
    assert {m["name"] for m in models} >= {"iris", "diabetes", "breast-cancer"}
    assert stop_server(running, signal.SIGINT) == 0


def test_environment_repository_root_is_honoured(tmp_path, repository):
    running = start_server(
        tmp_path,
        repository,
        env={"MLSERVER_MODEL_REPOSITORY_ROOT": str(repository)},
        extra_args=[],
    )
    assert requests.get(f"{running.base}/v2/models/diabetes").status_code == 200
    assert stop_server(running) == 0


def test_zero_models_is_not_ready(tmp_path):
    empty = tmp_path / "empty-repo"
    empty.mkdir()
    running = start_server(tmp_path, empty, wait_ready=False)
    try:
        for _ in range(100):
            try:
                live = requests.get(f"{running.base}/v2/health/live", timeout=1)
                if live.status_code == 200:
                    break
            except requests.RequestException:
                time.sleep(0.2)
        assert requests.get(f"{running.base}/v2/health/ready").status_code != 200
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
