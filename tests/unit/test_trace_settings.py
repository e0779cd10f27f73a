"""Triton's trace settings onto v2serve's trace policy: sampling by level, rate and count,
per model over the server's, and the validation of every key (no server)."""

import pytest
from hypothesis import given
from hypothesis import strategies as st

from runtimes.errors import InvalidSetting
from runtimes.extensions.trace_settings import parse_trace_update, render_trace_settings
from runtimes.observability.trace_policy import TracePolicy, TraceSetting


def _taken(policy: TracePolicy, model: str, requests: int, propagated: bool = False) -> list[int]:
    return [n for n in range(1, requests + 1) if policy.sample(model, propagated)]


def _apply(policy: TracePolicy, model: str | None, values: dict) -> None:
    policy.update(model, parse_trace_update(values, tracing=True))


def test_rate_takes_every_nth_request():
    policy = TracePolicy(TraceSetting())
    _apply(policy, None, {"trace_rate": ["3"]})
    assert _taken(policy, "iris", 10) == [3, 6, 9]


def test_default_traces_every_request_and_off_traces_none():
    policy = TracePolicy(TraceSetting())
    assert _taken(policy, "iris", 4) == [1, 2, 3, 4]
    _apply(policy, None, {"trace_level": ["OFF"]})
    assert _taken(policy, "iris", 4) == []
    assert _taken(policy, "iris", 4, propagated=True) == []


def test_count_runs_down_and_is_reported_as_what_remains():
    policy = TracePolicy(TraceSetting())
    _apply(policy, None, {"trace_count": ["2"], "trace_rate": ["2"]})
    assert render_trace_settings(policy, None)["trace_count"] == "2"
    assert _taken(policy, "iris", 10) == [2, 4]
    assert render_trace_settings(policy, None)["trace_count"] == "0"
    # Posting the same count again refills it.
    _apply(policy, None, {"trace_count": ["1"]})
    _apply(policy, None, {"trace_count": ["1"]})
    assert _taken(policy, "iris", 10) == [2]


def test_a_sampled_parent_is_traced_whatever_the_rate_and_count():
    policy = TracePolicy(TraceSetting())
    _apply(policy, None, {"trace_rate": ["0"]})
    assert _taken(policy, "iris", 5) == []
    assert _taken(policy, "iris", 3, propagated=True) == [1, 2, 3]
    _apply(policy, None, {"trace_rate": ["1"], "trace_count": ["0"]})
    assert _taken(policy, "iris", 3) == []
    assert _taken(policy, "iris", 2, propagated=True) == [1, 2]


def test_a_model_overrides_some_keys_and_follows_the_server_for_the_rest():
    policy = TracePolicy(TraceSetting())
    _apply(policy, "iris", {"trace_rate": ["2"]})
    _apply(policy, None, {"trace_level": ["OFF"]})
    assert render_trace_settings(policy, "iris")["trace_level"] == ["OFF"]
    assert render_trace_settings(policy, "iris")["trace_rate"] == "2"
    _apply(policy, "iris", {"trace_level": ["TIMESTAMPS"]})
    assert _taken(policy, "iris", 4) == [2, 4]
    assert _taken(policy, "diabetes", 4) == []  # the server's OFF


def test_null_clears_a_models_key_and_resets_the_servers_to_its_default():
    policy = TracePolicy(TraceSetting(rate=5))
    _apply(policy, None, {"trace_rate": ["7"]})
    _apply(policy, "iris", {"trace_rate": ["2"]})
    _apply(policy, "iris", {"trace_rate": None})
    assert render_trace_settings(policy, "iris")["trace_rate"] == "7"
    assert policy.overrides("iris") == {}
    _apply(policy, None, {"trace_rate": None})
    assert render_trace_settings(policy, None)["trace_rate"] == "5"


def test_the_answer_has_triton_shape():
    shown = render_trace_settings(TracePolicy(TraceSetting()), None)
    assert shown == {
        "trace_level": ["TIMESTAMPS"],
        "trace_rate": "1",
        "trace_count": "-1",
        "trace_mode": "opentelemetry",
    }


def test_nulls_of_file_mode_keys_and_the_mode_itself_change_nothing():
    assert (
        parse_trace_update(
            {"trace_file": None, "log_frequency": None, "trace_mode": ["opentelemetry"]}, True
        )
        == {}
    )


BAD = [
    ({"trace_rate": ["fast"]}, "trace_rate", "integer"),
    ({"trace_rate": ["-1"]}, "trace_rate", "[0, 4294967295]"),
    ({"trace_rate": ["1", "2"]}, "trace_rate", "one value"),
    ({"trace_count": ["-2"]}, "trace_count", "[-1, 2147483647]"),
    ({"trace_count": [""]}, "trace_count", "integer"),
    ({"trace_level": ["TENSORS"]}, "trace_level", "not supported"),
    ({"trace_level": ["OFF", "TIMESTAMPS"]}, "trace_level", "'OFF' cannot"),
    ({"trace_level": ["LOUD"]}, "trace_level", "LOUD"),
    ({"trace_level": []}, "trace_level", "got none"),
    ({"trace_file": ["/tmp/t.json"]}, "trace_file", "OTLP"),
    ({"log_frequency": ["10"]}, "log_frequency", "only be null"),
    ({"trace_mode": ["triton"]}, "trace_mode", "opentelemetry"),
    ({"trace_rat": ["1"]}, "trace_rat", "unknown key"),
]


@pytest.mark.parametrize(("values", "key", "phrase"), BAD, ids=[f"{r[1]}:{r[2]}" for r in BAD])
def test_bad_values_name_the_key(values, key, phrase):
    with pytest.raises(InvalidSetting) as caught:
        parse_trace_update(values, tracing=True)
    assert caught.value.key == key
    assert f"'{key}'" in str(caught.value) and phrase in str(caught.value)
    assert caught.value.status_code == 400


def test_a_bad_key_changes_nothing():
    policy = TracePolicy(TraceSetting())
    with pytest.raises(InvalidSetting):
        _apply(policy, None, {"trace_rate": ["9"], "trace_count": ["x"]})
    assert render_trace_settings(policy, None)["trace_rate"] == "1"


def test_tracing_off_refuses_a_level_but_takes_off_and_rates():
    with pytest.raises(InvalidSetting, match="V2SERVE_TRACING=true"):
        parse_trace_update({"trace_level": ["TIMESTAMPS"]}, tracing=False)
    assert parse_trace_update({"trace_level": ["OFF"], "trace_rate": ["10"]}, tracing=False) == {
        "level": "OFF",
        "rate": 10,
    }


@given(rate=st.integers(1, 50), requests=st.integers(0, 200))
def test_rate_n_takes_one_in_n(rate: int, requests: int):
    policy = TracePolicy(TraceSetting(rate=rate))
    assert len(_taken(policy, "m", requests)) == requests // rate


@given(text=st.text(max_size=12))
def test_any_rate_text_is_an_integer_or_a_400_naming_the_key(text: str):
    try:
        changes = parse_trace_update({"trace_rate": [text]}, tracing=True)
    except InvalidSetting as exc:
        assert exc.key == "trace_rate"
    else:
        assert changes["rate"] == int(text.strip())
