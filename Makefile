# inferd — the two commands: `make serve` and `make test`.
PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
EXAMPLE_REPO := build/models
PORT ?= 8080

.PHONY: install dev serve test lint typecheck unit bench clean proto

$(VENV)/.installed: pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip
	$(PY) -m pip install -q -e '.[all]'
	touch $@

$(VENV)/.dev-installed: pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip
	$(PY) -m pip install -q -e '.[dev]'
	touch $(VENV)/.installed $@

install: $(VENV)/.installed

dev: $(VENV)/.dev-installed

$(EXAMPLE_REPO): $(VENV)/.installed
	$(VENV)/bin/inferd example $(EXAMPLE_REPO)

serve: $(VENV)/.installed $(EXAMPLE_REPO)
	$(VENV)/bin/inferd serve $(EXAMPLE_REPO) --port $(PORT)

lint: dev
	$(VENV)/bin/ruff check src tests benchmarks
	$(VENV)/bin/ruff format --check src tests benchmarks

typecheck: dev
	$(VENV)/bin/mypy

unit: dev
	$(PY) -m pytest -q

test: lint typecheck unit

bench: dev
	bash benchmarks/install-tools.sh
	$(PY) benchmarks/run.py

clean:
	rm -rf $(VENV) build .mypy_cache .ruff_cache .pytest_cache
