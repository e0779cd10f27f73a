"""A tiny real MLServer runtime and a repository on disk, for in-process repository tests.

``TinyModel`` is an ``MLModel`` whose ``load`` reads ``model.joblib`` as text: ``ok``
loads, ``fail`` raises ``ModelLoadFailed`` naming the file, ``gate`` waits until the test
opens that version's gate (no sleeps: the test decides when a load finishes).
"""

import asyncio
import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from mlserver import MLModel
from mlserver.types import InferenceRequest, InferenceResponse, ResponseOutput

from runtimes.errors import ModelLoadFailed
from runtimes.repository.inflight import InFlight
from runtimes.repository.lifecycle import VersionLifecycle
from runtimes.repository.registry import V2ModelRegistry
from runtimes.repository.states import ModelStates

IMPLEMENTATION = "tests.unit.repository_support.TinyModel"
GATES: dict[tuple[str, str], asyncio.Event] = {}
"""Per (model, version): a ``gate`` artifact's load waits for its event."""
ENTERED: dict[tuple[str, str], asyncio.Event] = {}
"""Set when a ``gate`` load has started waiting."""


class TinyModel(MLModel):
    async def load(self) -> bool:
        uri = Path(self.settings.parameters.uri)
        path = uri / "model.joblib"
        content = path.read_text().strip()
        key = (self.name, self.version or "")
        if content == "gate":
            ENTERED.setdefault(key, asyncio.Event()).set()
            await GATES.setdefault(key, asyncio.Event()).wait()
        elif content != "ok":
            raise ModelLoadFailed(self.name, self.version, f"cannot load {path}: {content}")
        return True

    async def predict(self, payload: InferenceRequest) -> InferenceResponse:
        gate = GATES.get((self.name, f"predict-{self.version}"))
        if gate is not None:
            await gate.wait()
        return InferenceResponse(
            model_name=self.name,
            model_version=self.version,
            outputs=[ResponseOutput(name="v", shape=[1], datatype="BYTES", data=[self.version])],
        )


def write_model(
    root: Path, name: str, versions: dict[int, str], settings: dict[str, Any] | None = None
) -> Path:
    """``<root>/<name>/<N>/model.joblib`` holding each version's behaviour word."""
    folder = root / name
    folder.mkdir(parents=True, exist_ok=True)
    values = {"implementation": IMPLEMENTATION, **(settings or {})}
    (folder / "model-settings.json").write_text(json.dumps(values))
    for version, content in versions.items():
        (folder / str(version)).mkdir(exist_ok=True)
        (folder / str(version) / "model.joblib").write_text(content)
    return folder


@dataclass
class RecordingListener:
    """A LifecycleListener that writes down what it was told, in order."""

    events: list[tuple[str, str, str]] = field(default_factory=list)
    reasons: list[str] = field(default_factory=list)

    def version_loaded(self, model: str, version: str, seconds: float) -> None:
        assert seconds >= 0
        self.events.append(("loaded", model, version))

    def load_failed(self, model: str, version: str, seconds: float, reason: str) -> None:
        self.events.append(("failed", model, version))
        self.reasons.append(reason)

    def version_retired(self, model: str, version: str) -> None:
        self.events.append(("retired", model, version))


def make_lifecycle(
    root: Path | None = None, *listeners: Any, drain_timeout: float = 5.0
) -> VersionLifecycle:
    return VersionLifecycle(
        V2ModelRegistry(),
        ModelStates(),
        InFlight(),
        drain_timeout=drain_timeout,
        root=root,
        listeners=listeners,
    )


def reset_gates() -> None:
    GATES.clear()
    ENTERED.clear()
