# One command per job. `make run` and `make test` work on a fresh Debian/Ubuntu machine.
SHELL := /bin/bash
PY := .venv/bin/python
SERVICES = eval "$$(scripts/services.sh)"
HOST ?= 127.0.0.1
PORT ?= 8000
PYTEST_ARGS ?=

.PHONY: install lock run test test-long lint audit format bench loadtest stop

install:
	@scripts/install.sh

# requirements.lock: every runtime and dev dependency of pyproject.toml, transitive included, pinned
# with `==` and the package index's sha256 hashes, for CPython >= 3.11 on any platform (markers where it matters).
# Pins already in the file are kept; `make lock LOCK_ARGS=--upgrade` (or `--upgrade-package NAME`)
# moves them. uv, pinned, runs from a virtualenv of its own under .local/.
UV_VERSION := 0.13.8
LOCK_TOOLS ?= .local/lock-tools
LOCK_ARGS ?=

lock:
	@$(LOCK_TOOLS)/bin/uv --version 2>/dev/null | grep -qF ' $(UV_VERSION)' \
	  || { python3 -m venv $(LOCK_TOOLS) && $(LOCK_TOOLS)/bin/pip install -q 'uv==$(UV_VERSION)'; }
	$(LOCK_TOOLS)/bin/uv pip compile pyproject.toml --extra dev --universal --python-version 3.11 \
	  --generate-hashes --custom-compile-command 'make lock' --quiet $(LOCK_ARGS) -o requirements.lock

run: install
	@$(SERVICES) && $(PY) -m dispatch.cli migrate && $(PY) -m dispatch.cli demo \
	  && echo "==> serving on http://localhost:$(PORT) (API docs at /docs)" \
	  && $(PY) -m dispatch.cli serve --host $(HOST) --port $(PORT)

# The linters run first: a change that breaks them fails `make test` (CI) before any test runs.
test: lint
	@$(SERVICES) && $(PY) -m pytest -m "not long" $(PYTEST_ARGS)

test-long: install
	@$(SERVICES) && $(PY) -m pytest -m long $(PYTEST_ARGS)

# mypy checks the packages listed in pyproject.toml ([tool.mypy] files: every shipped package);
# scripts/lint_rules.py checks the house rules ruff cannot (queries in repositories, layering);
# bandit fails on a medium or high finding (an accepted one carries `# nosec <id>` and its reason).
lint: install
	.venv/bin/ruff check .
	.venv/bin/ruff format --check .
	$(PY) -m mypy
	$(PY) scripts/lint_rules.py
	.venv/bin/bandit -q -r dispatch rider_api driver_api governance loadtests -ll

# pip-audit of requirements.lock; needs an advisory service reachable (fails, never passes, when
# none answers), so it is not part of `make test`.
audit: install
	$(PY) scripts/audit.py

format: install
	.venv/bin/ruff format .
	.venv/bin/ruff check --fix .

bench: install
	@$(SERVICES) && $(PY) -m dispatch.simulation.bench

# Load test (docs/loadtesting.md). HOST=http://... targets a running stack; without a URL it
# starts a local one. Results in loadtests/results/<timestamp>/; the exit code is the thresholds'.
USERS ?= 100
DURATION ?= 2m
SCALE ?= 1.0
RATE ?= 0
SPAWN ?= 20
APIS ?= 1
LOCUST_ARGS ?=

loadtest: install
	@$(SERVICES) && $(PY) -m loadtests.run --users $(USERS) --duration $(DURATION) --scale $(SCALE) \
	  --rides-per-second $(RATE) --spawn-rate $(SPAWN) --apis $(APIS) $(if $(findstring ://,$(HOST)),--host $(HOST),) -- $(LOCUST_ARGS)

stop:
	@scripts/stop-services.sh
