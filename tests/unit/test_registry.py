"""V2ModelRegistry: the default is the highest *ready* version; a retired one drains."""

import asyncio
from pathlib import Path

from mlserver.model import MLModel
from mlserver.settings import ModelParameters, ModelSettings

from runtimes.repository.registry import V2ModelRegistry, version_number

from .repository_support import ENTERED, GATES, TinyModel, reset_gates


def _settings(root: Path, version: str, content: str = "ok") -> ModelSettings:
    folder = root / version
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "model.joblib").write_text(content)
    return ModelSettings(
        name="m",
        implementation=TinyModel,
        parameters=ModelParameters(version=version, uri=str(folder)),
    )


def test_the_default_is_the_highest_ready_version_compared_as_integers(tmp_path):
    registry = V2ModelRegistry()

    async def scenario() -> None:
        for version in ("9", "10", "2"):
            await registry.load(_settings(tmp_path, version))
        assert (await registry.get_model("m")).version == "10"

    asyncio.run(scenario())


def test_a_version_still_loading_is_not_the_default(tmp_path):
    reset_gates()
    registry = V2ModelRegistry()

    async def scenario() -> None:
        await registry.load(_settings(tmp_path, "1"))
        loading = asyncio.create_task(registry.load(_settings(tmp_path, "2", "gate")))
        await ENTERED.setdefault(("m", "2"), asyncio.Event()).wait()
        assert (await registry.get_model("m")).version == "1"  # MLServer would say "2"
        GATES[("m", "2")].set()
        await loading
        assert (await registry.get_model("m")).version == "2"

    asyncio.run(scenario())


def test_retire_leaves_the_registry_at_once_and_unloads_after_draining(tmp_path):
    registry = V2ModelRegistry()
    drained: list[str] = []
    release = asyncio.Event

    async def scenario() -> None:
        gate = release()
        await registry.load(_settings(tmp_path, "1"))
        await registry.load(_settings(tmp_path, "2"))
        model = await registry.get_model("m", "2")

        async def wait_for_drain(retiring: MLModel) -> None:
            drained.append(retiring.version or "")
            await gate.wait()

        retiring = asyncio.create_task(registry.retire("m", "2", wait_for_drain))
        await asyncio.sleep(0)
        assert (await registry.get_model("m")).version == "1"
        assert set(registry.versions_of("m")) == {"1"}
        assert model.ready, "unloaded before its requests drained"
        gate.set()
        await retiring
        assert not model.ready
        await registry.retire("m", "1", wait_for_drain)
        assert registry.versions_of("m") == {}
        await registry.retire("m", "1", wait_for_drain)  # retiring twice is harmless

    asyncio.run(scenario())
    assert drained == ["2", "1"]


def test_version_number_of_unversioned_models(tmp_path):
    model = TinyModel(_settings(tmp_path, "7"))
    assert version_number(model) == 7
    unversioned = ModelSettings(name="m", implementation=TinyModel)
    assert version_number(TinyModel(unversioned)) == -1


def test_the_kept_default_is_right_after_every_transition(tmp_path):
    """Load, a newer version loading then ready, reload in place, readiness lost outside
    the registry, retire, unload: after each, the default is the highest ready version."""
    reset_gates()
    registry = V2ModelRegistry()

    async def default() -> MLModel:
        return await registry.get_model("m")

    async def scenario() -> None:
        first = await registry.load(_settings(tmp_path, "1"))
        assert await default() is first
        loading = asyncio.create_task(registry.load(_settings(tmp_path, "2", "gate")))
        await ENTERED.setdefault(("m", "2"), asyncio.Event()).wait()
        assert await default() is first
        GATES[("m", "2")].set()
        second = await loading
        assert await default() is second
        again = await registry.load(_settings(tmp_path, "2"))  # a reload of version 2
        assert again is not second and await default() is again
        again.ready = False  # readiness lost without the registry's knowing
        assert await default() is first

        async def drained(model: MLModel) -> None:
            pass

        await registry.retire("m", "2", drained)
        assert await default() is first
        await registry.load(_settings(tmp_path, "3"))
        await registry.unload_version("m", "3")
        assert await default() is first
        await registry.retire("m", "1", drained)
        assert registry.versions_of("m") == {}

    asyncio.run(scenario())


def test_the_default_is_kept_between_requests(tmp_path, monkeypatch):
    """Once found, asking again compares no versions until something changes."""
    import runtimes.repository.registry as module

    compared: list[str] = []

    def counting(model: MLModel) -> int:
        compared.append(model.version or "")
        return version_number(model)

    registry = V2ModelRegistry()

    async def scenario() -> None:
        for version in ("1", "2"):
            await registry.load(_settings(tmp_path, version))
        monkeypatch.setattr(module, "version_number", counting)
        assert (await registry.get_model("m")).version == "2"
        found = len(compared)
        for _ in range(10):
            assert (await registry.get_model("m")).version == "2"
        assert len(compared) == found
        await registry.load(_settings(tmp_path, "3"))
        assert (await registry.get_model("m")).version == "3"
        assert len(compared) > found

    asyncio.run(scenario())
