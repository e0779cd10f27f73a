# v2serve: `make run` and `make test` do all set-up on a fresh machine.
PYTHON ?= python3.11
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed

.PHONY: install models run test lint unit e2e bench clean soak

$(BIN)/python:
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip

# constraints.txt is the tested, locked set; pyproject.toml holds the ranges.
$(STAMP): $(BIN)/python pyproject.toml constraints.txt
	$(BIN)/python -m pip install --quiet -c constraints.txt -e '.[test]'
	touch $(STAMP)

install: $(STAMP)

models: install
	$(BIN)/python -m runtimes.examples model-repository

run: models
	$(BIN)/v2serve start --model-repository model-repository --settings settings

lint: install
	$(BIN)/ruff check runtimes tests benchmarks
	$(BIN)/mypy

# Two pytest processes: mlserver.grpc and tritonclient.grpc register the same protobuf
# symbols and cannot be imported into one process. benchmarks/tests: the benchmark's pure
# parts (benchmarks/ imports tests/harness.py, never the reverse).
unit: install
	$(BIN)/python -m pytest tests/unit benchmarks/tests -q

e2e: install
	$(BIN)/python -m pytest tests/e2e -q

test: lint unit e2e

# v2serve against vanilla MLServer in one run: docs/benchmarks.md, docs/img/ (issue 8).
# Not part of `make test`. ARGS=--quick for a short development run.
BENCH_STAMP := $(VENV)/.installed-bench
$(BENCH_STAMP): $(STAMP)
	$(BIN)/python -m pip install --quiet -c constraints.txt -e '.[test,bench]'
	touch $(BENCH_STAMP)

bench: $(BENCH_STAMP)
	command -v wrk >/dev/null || apt-get install -y wrk || (apt-get update && apt-get install -y wrk)
	$(BIN)/python -m benchmarks $(ARGS)
# 5 minutes of mixed REST/gRPC traffic, 10% bad, a version drop every 30 s (docs/reliability.md).
soak: install
	$(BIN)/python -m benchmarks.soak --duration 300 --drop-every 30

clean:
	rm -rf $(VENV) .pytest_cache .mypy_cache .ruff_cache
