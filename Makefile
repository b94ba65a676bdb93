# Two commands: `make demo` sets everything up and runs the pipeline on the sample data;
# `make test` runs lint, types and the test suite. Both create the virtualenv if needed.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
export DAGSTER_HOME ?= $(CURDIR)/.dagster_home

.PHONY: demo test lint ui bench bench-erp tryton clean

$(VENV)/.installed: pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip
	$(BIN)/pip install --quiet -e ".[dev]"
	touch $@

demo: $(VENV)/.installed
	$(BIN)/meterclose demo

lint: $(VENV)/.installed
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .
	$(BIN)/mypy

test: lint
	$(BIN)/pytest

ui: $(VENV)/.installed
	$(BIN)/python -m dagster_project.instance
	$(BIN)/dagster dev -w workspace.yaml

bench: $(VENV)/.installed
	$(BIN)/python -m benchmarks.ingest --events 10000000

bench-erp: $(VENV)/.installed
	$(BIN)/python -m benchmarks.erp_publish --moves 1000 --batch 100

# A throw-away Tryton (PostgreSQL + trytond, provisioned) to publish to by hand.
tryton: $(VENV)/.installed
	$(BIN)/python -m tests.tryton

clean:
	rm -rf data/warehouse data/control.db* .dagster_home
