"""Prints the coverage table of docs/compiled.md: which estimator kinds compile and verify.

Runs the same catalogue as ``tests/unit/test_compiled.py`` (which fails if an outcome
changes) and the example models, through ``inference_backend: auto``.

    .venv/bin/python benchmarks/compiled_coverage.py
"""

import sys
import warnings
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from runtimes.compiled.backend import compile_and_verify  # noqa: E402
from runtimes.compiled.convert import ConversionError  # noqa: E402
from runtimes.examples import EXAMPLES, TEST_EXAMPLES  # noqa: E402
from runtimes.schema import derive_schema  # noqa: E402
from tests.unit.estimator_catalogue import CASES  # noqa: E402


def outcome(estimator: object) -> tuple[str, str, str]:
    """(converts?, verifies?, detail)."""
    try:
        _, verification = compile_and_verify(estimator, derive_schema(estimator), 1, None)
    except ConversionError as exc:
        converts = "no" if exc.step in ("conversion", "onnxruntime session", "inputs") else "yes"
        return converts, "no", str(exc).replace("|", "\\|")
    return "yes", "yes", verification.replace("|", "\\|")


def main() -> None:
    warnings.simplefilter("ignore")
    print("| estimator | converts | verifies | measured |")
    print("| --- | --- | --- | --- |")
    examples = [
        (f"example `{name}` v{version}", train)
        for group in (EXAMPLES, TEST_EXAMPLES)
        for name, versions in group.items()
        for version, train in versions.items()
    ]
    for label, train in examples:
        converts, verifies, detail = outcome(train())
        print(f"| {label} | {converts} | {verifies} | {detail} |")
    for case in CASES:
        estimator, _ = case.build()
        converts, verifies, detail = outcome(estimator)
        note = f"{case.note}. " if case.note else ""
        print(f"| {case.name} | {converts} | {verifies} | {note}{detail} |")


if __name__ == "__main__":
    main()
