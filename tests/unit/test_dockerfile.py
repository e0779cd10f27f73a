"""The Dockerfile's policy, checked without Docker (no daemon on these machines)."""

import re
import shlex
from urllib.parse import urlparse

import pytest

from tests.deployfiles import (
    ROOT,
    dockerfile_stages,
    entrypoint,
    exposed_ports,
    final_env,
    final_stage,
    healthcheck_command,
    numeric_user,
    only,
    server_settings,
)

BASE_IMAGE = "python:3.11-slim"
COMPILERS = re.compile(
    r"\b(build-essential|gcc|g\+\+|cc|clang|make|cmake|gfortran|cython|rustc|cargo)\b"
)


def test_every_stage_is_python_311_slim_and_there_are_several():
    stages = dockerfile_stages()
    assert len(stages) >= 2
    for stage in stages:
        image = stage[0].value.split()[0]
        assert image == BASE_IMAGE, f"line {stage[0].line}: FROM {image}"


def test_final_stage_copies_only_the_virtualenv_from_the_build_stage():
    build_name = dockerfile_stages()[0][0].value.split()[-1]
    copies = [i.value for i in final_stage() if i.name == "COPY" and "--from=" in i.value]
    assert copies == [f"--from={build_name} /opt/venv /opt/venv"]


def test_no_compilers_are_installed_in_the_final_stage():
    for instruction in final_stage():
        if instruction.name == "RUN":
            assert not COMPILERS.search(instruction.value), f"line {instruction.line}"


def test_the_build_stage_installs_the_locked_set_and_the_project():
    runs = " ".join(i.value for i in dockerfile_stages()[0] if i.name == "RUN")
    copied = " ".join(i.value for i in dockerfile_stages()[0] if i.name == "COPY")
    assert "constraints.txt" in copied and "runtimes" in copied
    install = re.search(r"pip install ([^&]+)", runs)
    assert install is not None
    args = shlex.split(install.group(1))
    assert args[args.index("--constraint") + 1] == "constraints.txt"
    (project,) = [a for a in args if a == "." or a.startswith(".[")]
    assert not any("[test]" in a or a == "-e" for a in args), "not an editable or test install"
    # Every format the ServingRuntime lists needs its library in the image.
    extras = project.removeprefix(".").strip("[]").split(",")
    assert {"xgboost", "lightgbm"} <= set(extras)


def test_user_is_numeric_and_not_root():
    uid, gid = numeric_user()
    assert uid != 0 and gid != 0


def test_user_comes_after_everything_that_needs_root():
    names = [i.name for i in final_stage()]
    user_at = names.index("USER")
    assert "RUN" not in names[user_at:]


def test_the_three_ports_are_exposed_and_match_the_settings():
    settings = server_settings()
    expected = {settings["http_port"], settings["grpc_port"], settings["metrics_port"]}
    assert exposed_ports() == expected == {8080, 8081, 8082}


def test_healthcheck_asks_readiness_on_the_rest_port_with_python():
    command = healthcheck_command()
    assert command[:2] == ["python", "-c"]
    urls = re.findall(r"'(http://[^']+)'", command[2])
    assert urls, command[2]
    assert "/v2/health/ready" in command[2]
    assert urlparse(urls[0]).hostname == "127.0.0.1"
    assert "MLSERVER_HTTP_PORT" in command[2] and "'8080'" in command[2]
    options = only(final_stage(), "HEALTHCHECK").value.split("CMD")[0]
    assert "--start-period=" in options, "a model load must not count as a failure"


def test_entrypoint_is_exec_form_v2serve_start():
    assert entrypoint()[:2] == ["v2serve", "start"]
    assert not any(i.name == "CMD" for i in final_stage())


def test_models_are_read_from_mnt_models():
    assert final_env()["MLSERVER_MODEL_REPOSITORY_ROOT"] == "/mnt/models"
    assert "--model-repository" not in entrypoint(), "a flag would beat the environment"


def test_working_dir_is_writable_by_the_user():
    workdir = only(final_stage(), "WORKDIR").value
    uid, _ = numeric_user()
    setup = " ".join(i.value for i in final_stage() if i.name == "RUN")
    assert re.search(rf"chown {uid}(:\d+)? {re.escape(workdir)}\b", setup), setup


def test_settings_are_copied_where_v2serve_start_looks():
    copies = [i.value.split() for i in final_stage() if i.name == "COPY"]
    assert ["settings/settings.json", "settings/settings.json"] in copies


@pytest.mark.parametrize("needed", ["pyproject.toml", "constraints.txt", "README.md", "runtimes"])
def test_dockerignore_keeps_what_the_build_copies(needed):
    lines = (ROOT / ".dockerignore").read_text().splitlines()
    assert lines.count("*") == 1, "everything else stays out of the context"
    assert f"!{needed}" in lines
