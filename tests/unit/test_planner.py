"""Version planning: what loads, what retires, and what a failure leaves alone."""

from runtimes.repository.planner import VersionView, plan
from runtimes.settings import VersionPolicy

LATEST_1 = VersionPolicy(latest={"num_versions": 1})
LATEST_2 = VersionPolicy(latest={"num_versions": 2})


def _fp(tag: str):
    return ((tag, 1, 1),)


def _present(*versions, unstable=()):
    return {v: VersionView(_fp(f"v{v}"), v not in unstable) for v in versions}


def test_new_version_loads_and_then_displaces_the_old():
    first = plan(_present(1, 2), {1: _fp("v1")}, {}, LATEST_1)
    assert first.load == (2,)
    assert first.retire == (1,)  # planned, but the controller re-plans after loading
    after = plan(_present(1, 2), {1: _fp("v1"), 2: _fp("v2")}, {}, LATEST_1)
    assert after.load == () and after.retire == (1,)


def test_failed_version_never_displaces_the_served_one():
    after_failure = plan(_present(1, 2), {1: _fp("v1")}, {2: _fp("v2")}, LATEST_1)
    assert after_failure.load == () and after_failure.retire == ()


def test_fixed_version_is_tried_again():
    fixed = {1: VersionView(_fp("v1"), True), 2: VersionView(_fp("v2-fixed"), True)}
    assert plan(fixed, {1: _fp("v1")}, {2: _fp("v2")}, LATEST_1).load == (2,)


def test_unsettled_folder_waits_and_the_old_keeps_serving():
    result = plan(_present(1, 2, unstable=(2,)), {1: _fp("v1")}, {}, LATEST_1)
    assert result.load == () and result.retire == ()


def test_changed_artifact_reloads_that_version():
    changed = {1: VersionView(_fp("v1-new"), True)}
    assert plan(changed, {1: _fp("v1")}, {}, LATEST_1).load == (1,)


def test_removed_version_retires_and_an_older_one_returns():
    result = plan(_present(1, 2), {2: _fp("v2"), 3: _fp("v3")}, {}, LATEST_2)
    assert result.retire == (3,)
    assert result.load == (1,)


def test_latest_two_keeps_two():
    assert plan(_present(1, 2, 3), {}, {}, LATEST_2).load == (2, 3)
