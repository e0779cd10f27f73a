"""The shared harness's pure parts (``tests/harness.py``), and the one-way import rule:
``benchmarks/`` imports ``tests/``, never the reverse. No server is started here."""

import ast
import itertools
import json
import subprocess
import sys
from pathlib import Path

import pytest

from tests import harness

ROOT = Path(__file__).resolve().parents[2]


def _imported_modules(path: Path) -> set[str]:
    found: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Import):
            found |= {alias.name for alias in node.names}
        elif isinstance(node, ast.ImportFrom) and node.module and not node.level:
            found.add(node.module)
    return found


def test_nothing_in_tests_imports_benchmarks():
    offenders = {
        str(path.relative_to(ROOT)): sorted(m for m in modules if m.split(".")[0] == "benchmarks")
        for path in (ROOT / "tests").rglob("*.py")
        if (modules := _imported_modules(path))
    }
    assert {path: found for path, found in offenders.items() if found} == {}


def test_benchmarks_start_servers_through_the_harness_not_the_e2e_conftest():
    for path in (ROOT / "benchmarks").rglob("*.py"):
        assert "tests.e2e.conftest" not in _imported_modules(path), path


def test_the_harness_imports_neither_mlserver_nor_tritonclient():
    """Both e2e tests (tritonclient) and benchmarks import it: the two clash."""
    probe = (
        "import sys, tests.harness; "
        "print(sorted(m for m in sys.modules if m.startswith(('mlserver', 'tritonclient'))))"
    )
    found = subprocess.run(
        [sys.executable, "-c", probe], cwd=ROOT, capture_output=True, text=True, check=True
    )
    assert found.stdout.strip() == "[]", found.stdout


def test_wait_until_returns_the_first_truthy_value():
    answers = iter([None, 0, "", {"http": 1}])
    assert harness.wait_until(lambda: next(answers), 5, "an answer", interval=0) == {"http": 1}


def test_wait_until_names_what_it_waited_for():
    with pytest.raises(AssertionError, match=r"not within 0.05s: the port file"):
        harness.wait_until(lambda: False, 0.05, "the port file", interval=0.01)


def test_holds_for_fails_as_soon_as_the_condition_breaks():
    answers = iter([True, True, False, True])
    with pytest.raises(AssertionError, match="stopped holding: the default version"):
        harness.holds_for(lambda: next(answers), 5, "the default version", interval=0)


def test_holds_for_checks_throughout_the_window():
    calls = itertools.count()
    harness.holds_for(lambda: next(calls) >= 0, 0.05, "always", interval=0.01)
    assert next(calls) >= 3


def test_a_port_file_is_read_whole_or_not_at_all(tmp_path: Path):
    path = tmp_path / "ports.json"
    assert harness.read_port_file(path) is None
    path.write_text(json.dumps({"http": 1, "grpc": 2, "metrics": None}))
    assert harness.read_port_file(path) == {"http": 1, "grpc": 2, "metrics": None}


def test_port_environment_is_port_zero_on_loopback():
    assert harness.port_environment() == {
        "MLSERVER_HTTP_PORT": "0",
        "MLSERVER_GRPC_PORT": "0",
        "MLSERVER_METRICS_PORT": "0",
        "MLSERVER_HOST": "127.0.0.1",
    }


class ExitedProcess:
    returncode = 1

    def poll(self) -> int:
        return self.returncode


def test_waiting_for_the_port_file_of_an_exited_server_shows_its_log(tmp_path: Path):
    log = tmp_path / "server.log"
    log.write_text("v2serve: cannot listen on 127.0.0.1:1 (REST): address already in use\n")
    with pytest.raises(RuntimeError, match=r"exited \(1\) before binding:\n.*cannot listen"):
        harness.wait_for_port_file(ExitedProcess(), tmp_path / "ports.json", log, timeout=5)  # type: ignore[arg-type]


def test_a_vanilla_bind_failure_is_recognised_in_its_log(tmp_path: Path):
    log = tmp_path / "server.log"
    log.write_text(
        "ERROR: [Errno 98] error while attempting to bind on address: address already in use"
    )
    assert harness._bind_failed(log)
    log.write_text("ModuleNotFoundError: No module named 'x'")
    assert not harness._bind_failed(log)
