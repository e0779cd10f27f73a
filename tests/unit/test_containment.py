"""Issue 14.8: every path a model's layout or settings name stays inside the repository."""

import asyncio
import json
from pathlib import Path

import pytest

from runtimes.errors import InvalidModelName, OutsideRepository
from runtimes.repository import VersionedRepository
from runtimes.repository.controller import RepositoryController
from runtimes.repository.layout import fingerprint
from runtimes.repository.states import VersionState
from runtimes.repository_api import check_model_name
from runtimes.settings import ServerOptions

from .repository_support import make_lifecycle, write_model


@pytest.fixture
def layout(tmp_path: Path) -> tuple[Path, Path]:
    """A repository root and, beside it, a folder outside it holding a valid artifact."""
    root = tmp_path / "repo"
    outside = tmp_path / "outside"
    (outside / "1").mkdir(parents=True)
    (outside / "1" / "model.joblib").write_text("ok")
    (outside / "model.joblib").write_text("ok")
    root.mkdir()
    return root, outside


def _index(root: Path) -> dict[tuple[str, str], tuple[VersionState, str]]:
    lifecycle = make_lifecycle(root.resolve())
    controller = RepositoryController(VersionedRepository(str(root)), lifecycle, ServerOptions())
    asyncio.run(controller.reconcile(settle_all=True))
    return {(s.model, s.version): (s.state, s.reason) for s in lifecycle.states.all()}


def _extra(**extra: object) -> dict[str, object]:
    return {"parameters": {"extra": extra}}


CASES = {
    "artifact-dotdot": (_extra(artifact="../../../outside/model.joblib"), "artifact"),
    "artifact-absolute": (_extra(artifact="/etc/hostname"), "absolute"),
    "uri-absolute": ({"parameters": {"uri": "/usr"}}, "absolute"),
    "uri-dotdot": ({"parameters": {"uri": "../../../outside/1"}}, "parameters.uri"),
}


@pytest.mark.parametrize("case", CASES, ids=list(CASES))
def test_settings_that_name_paths_outside_are_refused_in_the_index(layout, case):
    root, _ = layout
    settings, words = CASES[case]
    write_model(root, "m", {1: "ok"}, settings)
    state, reason = _index(root)[("m", "1")]
    assert state is VersionState.UNAVAILABLE
    assert words in reason and ("outside the repository" in reason or "absolute" in reason)
    assert str(root.parent) not in reason


def test_a_symlinked_version_folder_that_leads_out_is_refused_and_not_walked(layout):
    root, outside = layout
    write_model(root, "m", {1: "ok"})
    (root / "m" / "2").symlink_to(outside)
    index = _index(root)
    state, reason = index[("m", "2")]
    assert state is VersionState.UNAVAILABLE
    assert "version folder 'm/2' leads outside the repository" in reason
    assert str(root.parent) not in reason
    # The scan looked at the link only, never at what lies beyond it: a write out there
    # changes the outside folder's fingerprint, not the link's.
    before = fingerprint(root / "m" / "2", root.resolve())
    outside_before = fingerprint(outside)
    (outside / "1" / "new.bin").write_bytes(b"written outside")
    assert fingerprint(root / "m" / "2", root.resolve()) == before
    assert fingerprint(outside) != outside_before
    assert [entry[0] for entry in before] == ["."]
    assert len(outside_before) == 2


@pytest.mark.parametrize(
    "name", ["model.joblib", "sample.npy", "sample.csv", "model-settings.json"]
)
def test_a_symlinked_file_that_leads_out_is_refused(layout, name):
    root, outside = layout
    write_model(root, "m", {1: "ok"})
    target = root / "m" / "1" / name
    target.unlink(missing_ok=True)
    target.symlink_to(outside / "model.joblib")
    state, reason = _index(root)[("m", "1")]
    assert state is VersionState.UNAVAILABLE
    assert f"'m/1/{name}' leads outside the repository" in reason


def test_a_symlinked_model_settings_file_is_refused_for_the_model(layout):
    root, outside = layout
    write_model(root, "m", {1: "ok"})
    (outside / "settings.json").write_text(json.dumps({"implementation": "x"}))
    (root / "m" / "model-settings.json").unlink()
    (root / "m" / "model-settings.json").symlink_to(outside / "settings.json")
    state, reason = _index(root)[("m", "")]
    assert state is VersionState.UNAVAILABLE
    assert "settings file 'm/model-settings.json' leads outside the repository" in reason


def test_links_inside_the_repository_are_fine(layout):
    root, _ = layout
    write_model(root, "m", {1: "ok"})
    (root / "m" / "2").symlink_to(root / "m" / "1")
    write_model(root, "n", {1: "ok"}, {"parameters": {"uri": "../../m/1"}})
    index = _index(root)
    assert index[("m", "2")][0] is VersionState.READY
    assert index[("n", "1")][0] is VersionState.READY


def test_version_settings_raise_the_domain_error(layout):
    root, _ = layout
    write_model(root, "m", {1: "ok"}, _extra(artifact="../../../x"))
    repository = VersionedRepository(str(root))
    [model] = repository.model_folders()
    with pytest.raises(OutsideRepository) as caught:
        repository.settings_for(model)
    assert caught.value.status_code == 422


def test_names_over_255_bytes_are_invalid_not_an_os_error(tmp_path):
    with pytest.raises(InvalidModelName, match="255 bytes"):
        check_model_name(tmp_path, "a" * 256)
    with pytest.raises(InvalidModelName, match="255 bytes"):
        check_model_name(tmp_path, "é" * 128)
    check_model_name(tmp_path, "a" * 255)
