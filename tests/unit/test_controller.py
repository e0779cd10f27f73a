"""The repository controller, in-process: a real folder, a real registry, a tiny MLModel.

Reconcile, version policy, retries, explicit load/unload (serialised per model), and
the inotify watcher fed by real renames. No server, no sockets, no fixed sleeps.
"""

import asyncio
import os
import time
from collections.abc import Awaitable, Callable
from pathlib import Path

import pytest

from runtimes.errors import ModelLoadFailed, ModelUnavailable
from runtimes.repository import VersionedRepository
from runtimes.repository.controller import RepositoryController
from runtimes.repository.states import VersionState
from runtimes.settings import ServerOptions

from .repository_support import (
    ENTERED,
    GATES,
    RecordingListener,
    make_lifecycle,
    reset_gates,
    write_model,
)


def _controller(root: Path, **options: object) -> tuple[RepositoryController, RecordingListener]:
    listener = RecordingListener()
    lifecycle = make_lifecycle(root.resolve(), listener)
    controller = RepositoryController(
        VersionedRepository(str(root)), lifecycle, ServerOptions(**options)
    )
    return controller, listener


def _states(controller: RepositoryController, name: str) -> dict[str, VersionState]:
    return {s.version: s.state for s in controller.states.of_model(name)}


async def _default(controller: RepositoryController, name: str) -> str | None:
    try:
        model = await controller.lifecycle.registry.get_model(name)
    except Exception:  # noqa: BLE001 - MLServer's ModelNotFound: nothing is served
        return None
    return model.version


async def _until(check: Callable[[], Awaitable[bool]], what: str, timeout: float = 10) -> None:
    deadline = time.monotonic() + timeout
    while not await check():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        await asyncio.sleep(0.01)


def test_reconcile_serves_the_latest_version_by_default(tmp_path):
    write_model(tmp_path, "m", {1: "ok", 2: "ok"})
    controller, listener = _controller(tmp_path)

    async def scenario() -> None:
        await controller.reconcile(settle_all=True)
        assert await _default(controller, "m") == "2"

    asyncio.run(scenario())
    assert _states(controller, "m") == {"2": VersionState.READY}
    assert listener.events == [("loaded", "m", "2")]


@pytest.mark.parametrize(
    ("policy", "served"),
    [
        ({"all": {}}, {"1", "2", "3"}),
        ({"latest": {"num_versions": 2}}, {"2", "3"}),
        ({"specific": {"versions": [1, 3]}}, {"1", "3"}),
    ],
)
def test_version_policy_decides_what_is_served(tmp_path, policy, served):
    settings = {"parameters": {"extra": {"version_policy": policy}}}
    write_model(tmp_path, "m", {1: "ok", 2: "ok", 3: "ok"}, settings)
    controller, _ = _controller(tmp_path)
    asyncio.run(controller.reconcile(settle_all=True))
    assert set(_states(controller, "m")) == served


def test_a_new_version_that_fails_never_displaces_the_served_one_and_is_not_retried(tmp_path):
    folder = write_model(tmp_path, "m", {1: "ok"})
    controller, listener = _controller(tmp_path, settle_seconds=0)

    async def scenario() -> None:
        await controller.reconcile()
        (folder / "2").mkdir()
        (folder / "2" / "model.joblib").write_text("corrupt")
        await controller.reconcile()
        await controller.reconcile()
        assert await _default(controller, "m") == "1"
        assert listener.events.count(("failed", "m", "2")) == 1  # not retried unchanged
        (folder / "2" / "model.joblib").write_text("ok")
        await controller.reconcile()
        assert await _default(controller, "m") == "2"

    asyncio.run(scenario())
    assert _states(controller, "m") == {"2": VersionState.READY}
    assert listener.events[-1] == ("retired", "m", "1")


def test_a_folder_written_in_place_waits_for_the_settle_period(tmp_path):
    write_model(tmp_path, "m", {1: "ok"})
    controller, _ = _controller(tmp_path, settle_seconds=600)
    asyncio.run(controller.reconcile())
    assert _states(controller, "m") == {}
    asyncio.run(controller.reconcile(settle_all=True))
    assert _states(controller, "m") == {"1": VersionState.READY}


def test_a_removed_model_is_retired_and_forgotten(tmp_path):
    folder = write_model(tmp_path, "m", {1: "ok"})
    controller, listener = _controller(tmp_path)

    async def scenario() -> None:
        await controller.reconcile(settle_all=True)
        for child in sorted(folder.rglob("*"), reverse=True):
            child.unlink() if child.is_file() else child.rmdir()
        folder.rmdir()
        await controller.reconcile()
        assert await _default(controller, "m") is None

    asyncio.run(scenario())
    assert controller.states.all() == []
    assert listener.events == [("loaded", "m", "1"), ("retired", "m", "1")]


def test_bad_model_settings_make_the_model_unavailable_with_a_relative_reason(tmp_path):
    folder = write_model(tmp_path, "m", {1: "ok"})
    (folder / "model-settings.json").write_text('{"paramters": {}}')
    controller, _ = _controller(tmp_path)
    asyncio.run(controller.reconcile(settle_all=True))
    [status] = controller.states.of_model("m")
    assert status.state is VersionState.UNAVAILABLE and "paramters" in status.reason
    assert str(tmp_path.resolve()) not in status.reason
    assert "m/model-settings.json" in status.reason


def test_explicit_unload_holds_the_model_until_it_is_loaded_again(tmp_path):
    write_model(tmp_path, "m", {1: "ok"})
    controller, _ = _controller(tmp_path)

    async def scenario() -> None:
        await controller.reconcile(settle_all=True)
        await controller.unload_model("m")
        await controller.reconcile(settle_all=True)
        assert await _default(controller, "m") is None
        await controller.load_model("m")
        assert await _default(controller, "m") == "1"

    asyncio.run(scenario())


def test_explicit_load_of_unknown_or_broken_models(tmp_path):
    write_model(tmp_path, "broken", {1: "corrupt"})
    controller, _ = _controller(tmp_path)
    with pytest.raises(ModelUnavailable, match="'nope' not found"):
        asyncio.run(controller.load_model("nope"))
    with pytest.raises(ModelUnavailable):
        asyncio.run(controller.unload_model("nope"))
    with pytest.raises(ModelLoadFailed, match="corrupt") as caught:
        asyncio.run(controller.load_model("broken"))
    assert str(tmp_path.resolve()) not in str(caught.value)


@pytest.mark.parametrize("order", [("unload", "load"), ("load", "unload")])
def test_loads_and_unloads_of_one_model_are_serialised_and_tell_the_truth(tmp_path, order):
    """Issue 14.10: a load queued behind an unload used to report 422 "failed to load: no
    version could be loaded" for a healthy artifact (the unload's hold overtook it)."""
    reset_gates()
    folder = write_model(tmp_path, "m", {1: "ok"})
    controller, listener = _controller(tmp_path)
    actions = {"load": controller.load_model, "unload": controller.unload_model}

    async def scenario() -> None:
        await controller.reconcile(settle_all=True)
        (folder / "1" / "model.joblib").write_text("gate")  # the next load takes a while
        first = asyncio.create_task(controller.load_model("m"))
        await ENTERED.setdefault(("m", "1"), asyncio.Event()).wait()
        queued = [asyncio.create_task(actions[action]("m")) for action in order]
        for _ in range(20):
            await asyncio.sleep(0)
        assert not any(task.done() for task in queued), "did not wait for the model's load"
        (folder / "1" / "model.joblib").write_text("ok")
        GATES[("m", "1")].set()
        await first
        for task in queued:
            await task  # each one did what it said, in order: no 422
        served = await _default(controller, "m")
        assert served == ("1" if order[-1] == "load" else None)

    asyncio.run(scenario())
    assert listener.events.count(("retired", "m", "1")) == 1


def test_loads_of_other_models_do_not_wait_for_each_other(tmp_path):
    reset_gates()
    write_model(tmp_path, "slow", {1: "gate"})
    write_model(tmp_path, "quick", {1: "ok"})
    controller, _ = _controller(tmp_path)

    async def scenario() -> None:
        slow = asyncio.create_task(controller.load_model("slow"))
        await ENTERED.setdefault(("slow", "1"), asyncio.Event()).wait()
        await controller.load_model("quick")
        assert not slow.done()
        GATES[("slow", "1")].set()
        await slow

    asyncio.run(scenario())
    assert _states(controller, "quick") == {"1": VersionState.READY}
    assert _states(controller, "slow") == {"1": VersionState.READY}


def test_a_version_renamed_into_place_is_served_without_settling(tmp_path):
    """The watcher's inotify events, from a real rename, with polling too slow to matter."""
    folder = write_model(tmp_path, "m", {1: "ok"})
    controller, _ = _controller(tmp_path, settle_seconds=600, poll_interval=60)

    async def scenario() -> None:
        await controller.reconcile(settle_all=True)
        controller.start_watching()
        try:
            staging = folder / ".staging-2"
            staging.mkdir()
            (staging / "model.joblib").write_text("ok")
            os.rename(staging, folder / "2")
            await _until(lambda: _is(controller, "m", "2"), "v2 served after the rename")
        finally:
            await controller.stop_watching()

    asyncio.run(scenario())
    assert _states(controller, "m") == {"2": VersionState.READY}


async def _is(controller: RepositoryController, name: str, version: str) -> bool:
    return await _default(controller, name) == version
