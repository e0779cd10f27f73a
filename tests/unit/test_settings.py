"""Server settings precedence, strict keys and version policy, without a server."""

import json

import pytest

from runtimes.errors import SettingsError
from runtimes.settings import (
    VersionPolicy,
    build_server_config,
    build_server_settings,
    parse_model_extra,
    parse_model_settings,
)


@pytest.fixture
def settings_dir(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)  # no stray .env
    for key in list(__import__("os").environ):
        if key.startswith("MLSERVER_"):
            monkeypatch.delenv(key)
    folder = tmp_path / "settings"
    folder.mkdir()
    (folder / "settings.json").write_text(
        json.dumps({"http_port": 1111, "grpc_port": 2222, "model_repository_root": "from-file"})
    )
    return folder


def test_file_beats_defaults(settings_dir):
    settings = build_server_settings(settings_dir, None, environ={})
    assert (settings.http_port, settings.grpc_port) == (1111, 2222)
    assert settings.model_repository_root == "from-file"
    assert settings.metrics_port == 8082
    assert settings.parallel_workers == 0 and settings.debug is False


def test_environment_beats_file(settings_dir, monkeypatch):
    monkeypatch.setenv("MLSERVER_HTTP_PORT", "3333")
    settings = build_server_settings(settings_dir, None, environ={"MLSERVER_HTTP_PORT": "3333"})
    assert settings.http_port == 3333
    assert settings.grpc_port == 2222


def test_flag_beats_environment(settings_dir, monkeypatch):
    monkeypatch.setenv("MLSERVER_MODEL_REPOSITORY_ROOT", "from-env")
    env = {"MLSERVER_MODEL_REPOSITORY_ROOT": "from-env"}
    assert (
        build_server_settings(settings_dir, None, environ=env).model_repository_root == "from-env"
    )
    assert (
        build_server_settings(settings_dir, "from-flag", environ=env).model_repository_root
        == "from-flag"
    )


def test_defaults_without_a_file(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    settings = build_server_settings(None, None, environ={})
    assert settings.model_repository_root == "model-repository"
    assert settings.model_repository_implementation is not None


def test_unknown_server_key_is_named(settings_dir):
    (settings_dir / "settings.json").write_text(json.dumps({"grpc_prot": 1}))
    with pytest.raises(SettingsError, match="grpc_prot.*grpc_port"):
        build_server_settings(settings_dir, None, environ={})


@pytest.mark.parametrize(
    ("values", "key"),
    [
        ({"paramters": {}}, "paramters"),
        ({"parameters": {"uri": ".", "extr": {}}}, "extr"),
        ({"parameters": {"extra": {"allow_nan": True, "artefact": "x"}}}, "artefact"),
    ],
)
def test_unknown_model_keys_are_named(values, key):
    with pytest.raises(SettingsError, match=key):
        parse_model_settings(
            {"name": "m", "implementation": "x.Y", **values}, "m/model-settings.json"
        )


@pytest.mark.parametrize(
    ("policy", "versions", "served"),
    [
        ({"latest": {"num_versions": 1}}, [3, 1, 2], [3]),
        ({"latest": {"num_versions": 2}}, [1, 2, 10], [2, 10]),
        ({"all": {}}, [2, 1], [1, 2]),
        ({"specific": {"versions": [1, 3]}}, [1, 2, 3], [1, 3]),
        ({"specific": {"versions": [7]}}, [1, 2], []),
    ],
)
def test_version_policy(policy, versions, served):
    assert VersionPolicy.model_validate(policy).select(versions) == served


@pytest.mark.parametrize(
    "policy", [{}, {"latest": {"num_versions": 0}}, {"all": {}, "latest": {"num_versions": 1}}]
)
def test_bad_version_policy_is_rejected(policy):
    with pytest.raises(SettingsError, match="version_policy"):
        parse_model_extra({"version_policy": policy}, "m")


def test_max_request_size_defaults_to_64mib_and_sets_grpc_length(settings_dir):
    config = build_server_config(settings_dir, None, environ={})
    assert config.options.max_request_size == 64 * 1024 * 1024
    assert config.mlserver.grpc_max_message_length == config.options.max_request_size


def test_max_request_size_from_file_and_env_and_grpc_length_kept_if_set(settings_dir):
    values = {"v2serve": {"max_request_size": 1024}, "grpc_max_message_length": 2048}
    (settings_dir / "settings.json").write_text(json.dumps(values))
    config = build_server_config(settings_dir, None, environ={})
    assert (config.options.max_request_size, config.mlserver.grpc_max_message_length) == (
        1024,
        2048,
    )
    env = {"V2SERVE_MAX_REQUEST_SIZE": "4096"}
    assert build_server_config(settings_dir, None, environ=env).options.max_request_size == 4096


def test_max_request_size_is_checked(settings_dir):
    (settings_dir / "settings.json").write_text(json.dumps({"v2serve": {"max_request_size": 0}}))
    with pytest.raises(SettingsError, match="max_request_size"):
        build_server_config(settings_dir, None, environ={})
    (settings_dir / "settings.json").write_text(json.dumps({"v2serve": {"max_request_sise": 1}}))
    with pytest.raises(SettingsError, match="max_request_sise"):
        build_server_config(settings_dir, None, environ={})


def test_unknown_v2serve_option_is_named(settings_dir):
    (settings_dir / "settings.json").write_text(json.dumps({"v2serve": {"wach": False}}))
    with pytest.raises(SettingsError, match="wach"):
        build_server_config(settings_dir, None, environ={})


@pytest.mark.parametrize(
    ("key", "value"),
    [
        ("kafka_enabled", True),
        ("kafka_servers", "broker:9092"),
        ("tracing_server", "collector:4317"),
        ("gzip_enabled", True),
        ("metrics_rest_server_prefix", "rest"),
        ("model_repository_implementation", "mlserver.repository.SchemalessModelRepository"),
        ("model_repository_implementation_args", {"a": 1}),
    ],
)
def test_an_unhonoured_mlserver_setting_in_the_file_is_refused_by_name(settings_dir, key, value):
    (settings_dir / "settings.json").write_text(json.dumps({key: value}))
    with pytest.raises(SettingsError) as refused:
        build_server_config(settings_dir, None, environ={})
    assert f"'{key}' is not supported by v2serve" in str(refused.value)


@pytest.mark.parametrize(
    ("key", "value"),
    [
        ("kafka_enabled", "true"),
        ("tracing_server", "collector:4317"),
        ("model_repository_implementation", "mlserver.repository.SchemalessModelRepository"),
    ],
)
def test_an_unhonoured_mlserver_setting_in_the_environment_is_refused(
    settings_dir, monkeypatch, key, value
):
    env = {f"MLSERVER_{key.upper()}": value}
    for name, given in env.items():
        monkeypatch.setenv(name, given)
    with pytest.raises(SettingsError, match=f"'{key}' is not supported"):
        build_server_config(settings_dir, None, environ=env)


@pytest.mark.parametrize(
    ("key", "value"),
    [
        ("kafka_enabled", False),
        ("gzip_enabled", False),
        ("tracing_server", None),
        ("model_repository_implementation", "runtimes.repository.VersionedRepository"),
        ("cors_settings", {"allow_origins": ["https://a.example"]}),
    ],
)
def test_the_value_v2serve_behaves_as_is_accepted(settings_dir, key, value):
    (settings_dir / "settings.json").write_text(json.dumps({key: value}))
    build_server_config(settings_dir, None, environ={})


def test_http_limits_and_keep_alive_defaults(settings_dir):
    options = build_server_config(settings_dir, None, environ={}).options
    assert (options.max_header_bytes, options.max_url_bytes) == (64 * 1024, 16 * 1024)
    assert options.http_keep_alive_timeout == 65


def test_http_limits_from_env_are_checked_and_named(settings_dir):
    env = {"V2SERVE_MAX_HEADER_BYTES": "8192", "V2SERVE_MAX_URL_BYTES": "2048"}
    options = build_server_config(settings_dir, None, environ=env).options
    assert (options.max_header_bytes, options.max_url_bytes) == (8192, 2048)
    for key, value in [("V2SERVE_MAX_HEADER_BYTES", "lots"), ("V2SERVE_MAX_URL_BYTES", "10")]:
        with pytest.raises(SettingsError, match=key[len("V2SERVE_") :].lower()):
            build_server_config(settings_dir, None, environ={key: value})
