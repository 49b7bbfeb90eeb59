# One command per job. `make run` and `make test` work on a fresh Debian/Ubuntu machine.
SHELL := /bin/bash
PY := .venv/bin/python
SERVICES = eval "$$(scripts/services.sh)"
HOST ?= 127.0.0.1
PORT ?= 8000
PYTEST_ARGS ?=

.PHONY: install run test test-long lint format bench loadtest stop

install:
	@scripts/install.sh

run: install
	@$(SERVICES) && $(PY) -m dispatch.cli migrate && $(PY) -m dispatch.cli demo \
	  && echo "==> serving on http://localhost:$(PORT) (API docs at /docs)" \
	  && $(PY) -m dispatch.cli serve --host $(HOST) --port $(PORT)

test: install
	@$(SERVICES) && $(PY) -m pytest -m "not long" $(PYTEST_ARGS)

test-long: install
	@$(SERVICES) && $(PY) -m pytest -m long $(PYTEST_ARGS)

lint: install
	.venv/bin/ruff check .
	.venv/bin/ruff format --check .
	.venv/bin/mypy dispatch rider_api driver_api governance

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
