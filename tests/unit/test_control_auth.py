"""Where the control token comes from: the option, a file, or nowhere."""

from pathlib import Path

import pytest

from runtimes.errors import SettingsError
from runtimes.protocol.control_auth import resolve_control_token
from runtimes.settings import ServerOptions, build_server_config


def test_no_token_leaves_the_apis_open():
    assert resolve_control_token(ServerOptions()) is None


def test_the_token_comes_from_the_environment_and_stays_out_of_repr(tmp_path: Path):
    config = build_server_config(tmp_path, None, {"V2SERVE_CONTROL_TOKEN": "abc123"})
    assert resolve_control_token(config.options) == "abc123"
    assert "abc123" not in repr(config.options)


def test_the_token_comes_from_a_file(tmp_path: Path):
    secret = tmp_path / "token"
    secret.write_text("from-a-secret\n")
    options = ServerOptions(control_token_file=secret)
    assert resolve_control_token(options) == "from-a-secret"


@pytest.mark.parametrize("content", ["", "  \n"])
def test_an_empty_token_is_an_error(tmp_path: Path, content: str):
    secret = tmp_path / "token"
    secret.write_text(content)
    with pytest.raises(SettingsError, match="empty"):
        resolve_control_token(ServerOptions(control_token_file=secret))


def test_an_unreadable_token_file_is_an_error(tmp_path: Path):
    with pytest.raises(SettingsError, match="cannot be read"):
        resolve_control_token(ServerOptions(control_token_file=tmp_path / "missing"))
