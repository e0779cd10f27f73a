"""The README's "Layout of the code" names what ``ls runtimes`` shows, and nothing stale.

Every module and package directly under ``runtimes/`` starts a line of the layout block
(``errors.py, settings.py`` may share one); every ``runtimes/`` entry the block names
exists. The modules of ``protocol/`` and ``protocol/grpc/`` (the request path) are each
named in their entry's description.
"""

import re
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
PACKAGE = ROOT / "runtimes"
ENTRY = r"[a-z_]+(?:\.py|/(?:[a-z_]+/)?)"
NAMES = re.compile(rf"^  ({ENTRY}(?:, {ENTRY})*)(?= |$)")


def layout_block(readme: str) -> str:
    section = readme.split("## Layout of the code", 1)[1]
    match = re.search(r"```\n(.*?)```", section, re.S)
    assert match, "no code block under 'Layout of the code'"
    return match.group(1)


def runtimes_entries(block: str) -> dict[str, str]:
    """Each entry of the ``runtimes/`` part of the block, with its description."""
    entries: dict[str, str] = {}
    current: list[str] = []
    for line in block.splitlines()[1:]:
        if not line.startswith("  "):
            break  # the next top-level folder (benchmarks/, deploy/, ...)
        names = NAMES.match(line)
        if names:
            current = [name.strip() for name in names.group(1).split(",")]
            for name in current:
                entries[name] = ""
            line = line[names.end() :]
        for name in current:
            entries[name] += " " + line.strip()
    return entries


def on_disk(folder: Path) -> set[str]:
    modules = {p.name for p in folder.glob("*.py") if p.name != "__init__.py"}
    packages = {f"{p.name}/" for p in folder.iterdir() if (p / "__init__.py").is_file()}
    return modules | packages


ENTRIES = runtimes_entries(layout_block((ROOT / "README.md").read_text()))


def test_the_block_is_found():
    assert {"server.py", "protocol/", "errors.py", "settings.py"} <= set(ENTRIES)


def test_every_module_and_package_of_runtimes_is_listed():
    listed = {name.split("/", 1)[0] + ("/" if "/" in name else "") for name in ENTRIES}
    missing = sorted(on_disk(PACKAGE) - listed)
    assert missing == [], f"add a line for each to README.md, \"Layout of the code\": {missing}"


def test_no_listed_entry_is_stale():
    assert sorted(name for name in ENTRIES if not (PACKAGE / name.rstrip("/")).exists()) == []


@pytest.mark.parametrize("package", ["protocol/", "protocol/grpc/"])
def test_every_request_path_module_is_named_in_its_entry(package):
    words = set(re.findall(r"[a-z_]+", ENTRIES[package]))
    modules = {p.stem for p in (PACKAGE / package).glob("*.py") if p.name != "__init__.py"}
    assert sorted(modules - words) == []
