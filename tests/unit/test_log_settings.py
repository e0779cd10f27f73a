"""Triton's log settings onto v2serve's logging configuration, applied at run time to the
handlers that config set up (no server)."""

import io
import json
import logging
import logging.config
import re

import pytest

from runtimes.errors import InvalidSetting
from runtimes.extensions.log_settings import LogSettings, parse_log_update
from runtimes.observability.logs import LOGGERS, LogControl, RequestLog, logging_config

from .in_process import loggers_restored


@pytest.fixture(autouse=True)
def restore_loggers():
    with loggers_restored(LOGGERS):
        yield


def _configured(level: str = "INFO", json_format: bool = False) -> io.StringIO:
    config = logging_config(json_format, level)
    config["handlers"]["stdout"]["stream"] = stream = io.StringIO()
    logging.config.dictConfig(config)
    return stream


def _lines(stream: io.StringIO) -> list[str]:
    return stream.getvalue().splitlines()


def _log_each_level() -> None:
    logger = logging.getLogger("v2serve.test")
    logger.debug("a debug line")
    logger.info("an info line")
    logger.warning("a warning line")
    logger.error("an error line")


def test_start_up_values_come_from_the_options():
    shown = LogSettings(LogControl("WARNING", "default")).settings()
    assert shown == {
        "log_file": "",
        "log_info": False,
        "log_warning": True,
        "log_error": True,
        "log_verbose_level": 0,
        "log_format": "default",
    }
    assert LogSettings(LogControl("DEBUG", "json")).settings()["log_verbose_level"] == 1


def test_switching_info_off_keeps_warnings_and_silences_the_request_log():
    stream = _configured()
    settings = LogSettings(LogControl("INFO", "default"))
    assert settings.settings({"log_info": False})["log_info"] is False
    _log_each_level()
    assert [line.split(" - ")[-1] for line in _lines(stream)] == ["a warning line", "an error line"]
    assert not RequestLog().enabled


def test_switches_are_independent_of_the_threshold():
    stream = _configured()
    settings = LogSettings(LogControl("INFO", "default"))
    settings.settings({"log_warning": False, "log_verbose_level": 2})
    _log_each_level()
    kept = [line.split(" - ")[-1] for line in _lines(stream)]
    assert kept == ["a debug line", "an info line", "an error line"]


def test_format_switches_to_json_and_to_iso8601_at_run_time():
    stream = _configured()
    settings = LogSettings(LogControl("INFO", "default"))
    settings.settings({"log_format": "json"})
    logging.getLogger("v2serve.test").info("as json")
    document = json.loads(_lines(stream)[-1])
    assert (document["message"], document["level"]) == ("as json", "INFO")
    settings.settings({"log_format": "ISO8601"})
    logging.getLogger("uvicorn.error").warning("as iso")
    assert re.match(
        r"^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z \[uvicorn.error\]", _lines(stream)[-1]
    )
    assert settings.settings()["log_format"] == "ISO8601"


def test_a_custom_logging_config_keeps_its_format():
    control = LogControl("INFO", "default", managed=False)
    with pytest.raises(InvalidSetting, match="logging_settings"):
        parse_log_update({"log_format": "json"}, control)
    assert LogSettings(control).settings()["log_format"] == "custom"


def test_null_changes_nothing():
    control = LogControl("INFO", "default")
    assert parse_log_update({"log_info": None, "log_file": None}, control) == {}


BAD = [
    ("log_info", "yes", "boolean"),
    ("log_warning", 1, "boolean"),
    ("log_error", "false", "boolean"),
    ("log_verbose_level", -1, "0 to 4294967295"),
    ("log_verbose_level", True, "unsigned integer"),
    ("log_verbose_level", "2", "unsigned integer"),
    ("log_format", "glog", "'default', 'ISO8601', 'json'"),
    ("log_file", "/var/log/v2serve.log", "standard output"),
    ("log_warnings", True, "unknown key"),
]


@pytest.mark.parametrize(("key", "value", "phrase"), BAD, ids=[f"{k}={v!r}" for k, v, _ in BAD])
def test_bad_values_name_the_key(key, value, phrase):
    control = LogControl("INFO", "default")
    good = "log_error" if key == "log_info" else "log_info"
    with pytest.raises(InvalidSetting) as caught:
        LogSettings(control).settings({good: False, key: value})
    assert caught.value.key == key and f"'{key}'" in str(caught.value)
    assert phrase in str(caught.value)
    assert control.info and control.error  # nothing applied
