# The front door. On a machine with only python3 and make, every target
# bootstraps what it needs: uv into .tools/, then the locked env into .venv/.
PYTHON ?= python3
UV_VERSION := 0.13.9
UV := .tools/bin/uv
VENV := .venv
# Two installs from one lock, each re-synced only when pyproject.toml or
# uv.lock change: everything (the `dev` group: tests, lint, bench), and what
# `make run` needs, the runtime plus the dev server's binary. The second is
# --inexact, so `make run` never strips a full env that is already there.
SYNCED := $(VENV)/.synced
SYNCED_RUN := $(VENV)/.synced-run
# The interpreter itself, not a launcher such as pyenv's shim: uv compares it
# with the one .venv was made from and rebuilds .venv when they differ, which
# would drop what an --inexact sync means to keep.
PYTHON_EXE = "$$($(PYTHON) -c 'import sys; print(sys.executable)')"
export UV_PYTHON_DOWNLOADS := never
export UV_PROJECT_ENVIRONMENT := $(VENV)

.PHONY: install run rollout test lint format bench bench-quick chaos fuzz soak screenshots diagrams clean-data histories

install: $(SYNCED)

$(UV):
	$(PYTHON) -m venv .tools
	.tools/bin/pip install --quiet "uv==$(UV_VERSION)"

$(SYNCED): pyproject.toml uv.lock | $(UV)
	$(UV) sync --frozen --python $(PYTHON_EXE)
	@touch $@

$(SYNCED_RUN): pyproject.toml uv.lock | $(UV)
	$(UV) sync --frozen --no-dev --group devserver --inexact --python $(PYTHON_EXE)
	@touch $@

run: $(SYNCED_RUN)
	$(VENV)/bin/python -m scripts.devstack

# With `make run` up, in another terminal: a new build of the worker (the
# checkout's code, build id from git or BOOKING_BUILD_ID) replaces the running
# one step by step, printing each `temporal worker deployment` command
# (scripts/rollout.py; ROLLOUT_ARGS="--build-id v2 --drain-timeout 60" to change it).
rollout: $(SYNCED_RUN)
	$(VENV)/bin/python -m scripts.rollout $(ROLLOUT_ARGS)

# The suite mostly waits (on servers, timers, subprocesses), so pytest-xdist runs
# it in TEST_WORKERS processes, each with its own session fixtures (dev server,
# providers, ...), a test file at a time so that module fixtures start once
# (TEST_WORKERS=0 runs it in this process; PYTEST_ARGS come last and win).
TEST_WORKERS ?= 3
test: install
	$(VENV)/bin/python -m pytest -n $(TEST_WORKERS) --dist loadfile $(PYTEST_ARGS)

lint: install
	$(VENV)/bin/ruff check .
	$(VENV)/bin/ruff format --check .
	$(VENV)/bin/mypy
	$(VENV)/bin/lint-imports

bench: install
	$(VENV)/bin/python -m bench

bench-quick: install
	$(VENV)/bin/python -m bench --quick

# 500 mixed sagas while workers, the providers and the dev server are SIGKILLed
# (bench/chaos.py; CHAOS_ARGS="--sagas 100 --json" to change it). A small run is in `make test`.
chaos: install
	$(VENV)/bin/python -m bench.chaos $(CHAOS_ARGS)

# The property-based fuzzers with the large hypothesis profile (a local soak).
fuzz: install
	HYPOTHESIS_PROFILE=soak $(VENV)/bin/python -m pytest tests/system/test_fuzz_providers.py tests/unit/test_fuzz_models.py tests/system/test_fuzz_web.py -q $(PYTEST_ARGS)

# 200 bookings stranded by a car-rental outage, then bulk retries (tests/system/test_bulk.py at full
# size; `make test` runs it with 40). 70 to 110 s on two busy cores.
soak: install
	BULK_BOOKINGS=200 $(VENV)/bin/python -m pytest tests/system/test_bulk.py -k one_bulk_retry -q $(PYTEST_ARGS)

# Re-take the README's screenshots and its two demo GIFs into static/, and
# redraw the architecture picture. Needs Debian's chromium, ffmpeg (Playwright's
# video recorder and the GIFs) and graphviz: apt-get install chromium ffmpeg graphviz
screenshots: install diagrams
	@command -v ffmpeg >/dev/null || { echo "make screenshots needs ffmpeg: apt-get install ffmpeg"; exit 2; }
	SCREENSHOTS_DIR=static $(VENV)/bin/python -m pytest tests/system/test_web_e2e.py -k browser_books -q

# docs/architecture.dot -> static/architecture.svg (needs graphviz: apt-get install graphviz).
diagrams:
	@command -v dot >/dev/null || { echo "make diagrams needs graphviz: apt-get install graphviz"; exit 2; }
	dot -Tsvg docs/architecture.dot -o static/architecture.svg

# Record every scenario's history with the current workflow code under
# tests/workflow/histories/$(LABEL)/ for the replay test. Never re-record an existing label.
histories: install
	@test -n "$(LABEL)" || { echo "usage: make histories LABEL=v3-what-changed"; exit 2; }
	@test ! -e tests/workflow/histories/$(LABEL) || { echo "tests/workflow/histories/$(LABEL) exists: pick a new label"; exit 2; }
	$(VENV)/bin/python -m tests.workflow.histories.record $(LABEL)

format: install
	$(VENV)/bin/ruff check --fix .
	$(VENV)/bin/ruff format .

# Removes the dev server's and the providers' local databases (make run's state).
clean-data:
	rm -rf .temporal .providers
