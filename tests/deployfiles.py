"""Read the deployment files (Dockerfile, deploy/kserve/*.yaml, settings) for the tests.

Shared by unit and e2e tests, so it imports neither MLServer nor tritonclient.
"""

import json
import shlex
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml
from dockerfile_parse import DockerfileParser

ROOT = Path(__file__).resolve().parents[1]
DOCKERFILE = ROOT / "Dockerfile"
MANIFESTS = ROOT / "deploy" / "kserve"
SETTINGS = ROOT / "settings" / "settings.json"
CRDS = ROOT.parent / "shared" / "kserve-crds"


@dataclass(frozen=True)
class Instruction:
    name: str
    value: str
    line: int


def dockerfile_stages(path: Path = DOCKERFILE) -> list[list[Instruction]]:
    """Instructions grouped by stage, each stage starting with its FROM."""
    parser = DockerfileParser(str(path))
    stages: list[list[Instruction]] = []
    for item in parser.structure:
        name = item["instruction"].upper()
        if name == "COMMENT":
            continue
        instruction = Instruction(name, item["value"], item["startline"] + 1)
        if name == "FROM":
            stages.append([instruction])
        elif stages:
            stages[-1].append(instruction)
    return stages


def final_stage() -> list[Instruction]:
    return dockerfile_stages()[-1]


def only(stage: list[Instruction], name: str) -> Instruction:
    found = [i for i in stage if i.name == name]
    assert len(found) == 1, f"expected one {name} in the stage, found {len(found)}"
    return found[0]


def exec_form(value: str) -> list[str]:
    """A JSON-array instruction value; shell form is refused (signals would miss PID 1)."""
    parsed = json.loads(value)
    assert isinstance(parsed, list) and all(isinstance(a, str) for a in parsed), value
    return parsed


def entrypoint() -> list[str]:
    return exec_form(only(final_stage(), "ENTRYPOINT").value)


def healthcheck_command() -> list[str]:
    """The command of ``HEALTHCHECK [options] CMD [...]``."""
    value = only(final_stage(), "HEALTHCHECK").value
    options, sep, command = value.partition("CMD ")
    assert sep, f"HEALTHCHECK without CMD: {value}"
    assert all(o.startswith("--") for o in shlex.split(options)), options
    return exec_form(command.strip())


def final_env() -> dict[str, str]:
    return dict(DockerfileParser(str(DOCKERFILE)).envs)


def exposed_ports() -> set[int]:
    ports: set[int] = set()
    for instruction in final_stage():
        if instruction.name == "EXPOSE":
            ports.update(int(p.split("/")[0]) for p in instruction.value.split())
    return ports


def numeric_user() -> tuple[int, int | None]:
    user, _, group = only(final_stage(), "USER").value.strip().partition(":")
    return int(user), (int(group) if group else None)


def server_settings() -> dict[str, Any]:
    return dict(json.loads(SETTINGS.read_text()))


def manifests() -> dict[str, dict[str, Any]]:
    """Every document in deploy/kserve, keyed by ``file.yaml`` (``file.yaml#N`` if several)."""
    found: dict[str, dict[str, Any]] = {}
    for path in sorted(MANIFESTS.glob("*.yaml")):
        documents = [d for d in yaml.safe_load_all(path.read_text()) if d is not None]
        for index, document in enumerate(documents):
            key = path.name if len(documents) == 1 else f"{path.name}#{index}"
            found[key] = document
    return found


def of_kind(kind: str) -> dict[str, dict[str, Any]]:
    return {key: doc for key, doc in manifests().items() if doc.get("kind") == kind}


def runtimes() -> dict[str, dict[str, Any]]:
    return {**of_kind("ServingRuntime"), **of_kind("ClusterServingRuntime")}


def runtime_container(runtime: dict[str, Any]) -> dict[str, Any]:
    [container] = [c for c in runtime["spec"]["containers"] if c["name"] == "kserve-container"]
    return dict(container)


def runtime_env(runtime: dict[str, Any]) -> dict[str, str]:
    return {e["name"]: e["value"] for e in runtime_container(runtime).get("env", [])}


def runtime_named(name: str) -> dict[str, Any]:
    """A namespaced runtime first, then a cluster one: KServe's lookup order."""
    for kind in ("ServingRuntime", "ClusterServingRuntime"):
        for doc in of_kind(kind).values():
            if doc["metadata"]["name"] == name:
                return doc
    raise AssertionError(f"no ServingRuntime or ClusterServingRuntime named '{name}'")
