"""The short soak (tests/soak.py for 30 s): mixed REST and gRPC traffic with 10% bad
requests and a version drop every 10 s. ``make soak`` runs the 5-minute one."""

from tests.soak import soak


def test_a_short_soak_fails_no_good_request_and_leaks_nothing(tmp_path):
    report = soak(tmp_path, duration=30, drop_every=10, clients=1, warmup=6)
    print(report)
    assert report["good_failed"] == 0, report["samples"]
    assert report["wrong"] == 0, report["samples"]
    assert report["bad_misanswered"] == 0, report["samples"]
    assert report["good"] > 100 and report["bad"] > 10
    assert set(report["by_protocol"]) == {"http", "grpc"}
    assert report["versions_dropped"] >= 2
    assert report["rss_growth_pct"] < 10, report
    assert report["at_end"]["open_fds"] <= report["after_warmup"]["open_fds"] + 5, report
    assert report["server_exit_code"] == 0
