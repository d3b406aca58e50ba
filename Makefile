PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
PORT ?= 8000
SIMULATOR_PORT ?= 8100
STAMP := $(VENV)/.installed
DEMO_STAMP := $(VENV)/.installed-demo
DEV_STAMP := $(VENV)/.installed-dev
# Installs come from the hash-pinned files in requirements/ (see scripts/lock.py); the project
# itself goes in editable, without dependencies of its own.
PIP_LOCKED := $(BIN)/pip install --quiet --require-hashes
# -qq: setuptools' notice about editable installs is a warning pip would print even with --quiet.
PIP_PROJECT := $(BIN)/pip install -qq --no-deps -e .
UV_VERSION := 0.13.8

.PHONY: install install-dev run test test-fast lint bench lock lock-upgrade lock-check clean

$(BIN)/python:
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip

$(STAMP): requirements/base.txt pyproject.toml | $(BIN)/python
	$(PIP_LOCKED) -r requirements/base.txt
	$(PIP_PROJECT)
	touch $@

# The `demo` extra adds what the Llama API simulator needs (make run's offline demo).
$(DEMO_STAMP): requirements/demo.txt pyproject.toml | $(BIN)/python
	$(PIP_LOCKED) -r requirements/demo.txt
	$(PIP_PROJECT)
	touch $(STAMP) $@

$(DEV_STAMP): requirements/dev.txt pyproject.toml | $(BIN)/python
	$(PIP_LOCKED) -r requirements/dev.txt
	$(PIP_PROJECT)
	touch $(STAMP) $(DEMO_STAMP) $@

install: $(STAMP)

install-dev: $(DEV_STAMP)

run: $(DEMO_STAMP)
	PORT=$(PORT) SIMULATOR_PORT=$(SIMULATOR_PORT) $(BIN)/python scripts/run.py

# The browser tests run axe-core from node_modules. Without npm there is none, which is fine
# where Chromium is missing too (the browser tests are skipped then); see the README.
test: $(DEV_STAMP)
	@if command -v npm >/dev/null 2>&1; then $(MAKE) --no-print-directory node_modules/.package-lock.json; \
	else echo "npm not found: axe-core is not installed (the browser tests' accessibility checks need it)"; fi
	$(BIN)/python -m pytest $(PYTEST_ARGS)

# Everything but the browser tests and the ones that start real server processes.
test-fast: $(DEV_STAMP)
	$(BIN)/python -m pytest -m "not browser and not slow" $(PYTEST_ARGS)

# npm ci writes node_modules/.package-lock.json: a missing or outdated node_modules reinstalls.
node_modules/.package-lock.json: package.json package-lock.json
	npm ci --no-audit --no-fund --loglevel=error

lint: $(DEV_STAMP) node_modules/.package-lock.json
	$(BIN)/ruff check . && $(BIN)/ruff format --check .
	$(BIN)/lint-imports
	SECRET_KEY=$${SECRET_KEY:-type-checking-only} $(BIN)/mypy
	node_modules/.bin/biome ci --colors=off

bench: $(DEV_STAMP)
	$(BIN)/python bench/run_all.py

# After changing dependencies in pyproject.toml: `make lock`, then commit requirements/.
$(BIN)/uv: | $(BIN)/python
	$(BIN)/pip install --quiet "uv==$(UV_VERSION)"

lock: $(BIN)/uv
	$(BIN)/python scripts/lock.py

lock-upgrade: $(BIN)/uv
	$(BIN)/python scripts/lock.py --upgrade

lock-check: $(BIN)/uv
	$(BIN)/python scripts/lock.py --check

clean:
	rm -rf $(VENV) staticfiles
