# The two commands of the README: `make run` and `make test`. Everything lives in ./.venv.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin

LOCK := requirements.lock
DEV_LOCK := requirements-dev.lock
BOOTSTRAP_LOCK := requirements-bootstrap.lock

.PHONY: run test lint install install-dev lock stubs

$(BIN)/python:
	$(PYTHON) -m venv $(VENV)

# Every install takes exactly the locked versions, each checked against its hashes (`make lock`).
# First the installer and the build tools: pip as locked (much faster than the venv's own).
$(VENV)/.bootstrapped: $(BOOTSTRAP_LOCK) | $(BIN)/python
	$(BIN)/python -m pip install -q --require-hashes -r $(BOOTSTRAP_LOCK)
	touch $@

# Then the dependencies, and the package itself built by the locked setuptools (build isolation
# would fetch whatever setuptools is newest).
$(VENV)/.installed: $(LOCK) pyproject.toml $(VENV)/.bootstrapped
	$(BIN)/pip install -q --require-hashes -r $(LOCK)
	$(BIN)/pip install -q --no-deps --no-build-isolation -e .
	touch $@

$(VENV)/.installed-dev: $(DEV_LOCK) pyproject.toml $(VENV)/.bootstrapped
	$(BIN)/pip install -q --require-hashes -r $(DEV_LOCK)
	$(BIN)/pip install -q --no-deps --no-build-isolation -e .
	touch $@ $(VENV)/.installed

# The Node tus client the end-to-end tests run (tus-js-client), exactly as its lock file says;
# installed again only when the lock file changes.
NODE_CLIENT := tests/clients/node
$(NODE_CLIENT)/node_modules/.installed: $(NODE_CLIENT)/package-lock.json $(NODE_CLIENT)/package.json
	cd $(NODE_CLIENT) && npm ci --no-audit --no-fund --loglevel=error
	touch $@

install: $(VENV)/.installed
install-dev: $(VENV)/.installed-dev $(NODE_CLIENT)/node_modules/.installed

## Pin the dependencies again after editing pyproject.toml (`make lock UPGRADE=1`: all to newest).
lock: install-dev
	$(BIN)/python tools/lock.py $(if $(UPGRADE),--upgrade)

## Set up and run the service on its embedded default (SQLite, local files, in-process classifier).
run: install
	$(BIN)/upload-service serve

## Set up and run the whole test suite (real PostgreSQL, moto's S3 server, a gRPC classifier).
# Then the integration tests (and the event streams' real processes) once more through a real
# PgBouncer in transaction mode, started by the tests themselves (tests/fixtures/pgbouncer.py).
test: install-dev
	$(BIN)/pytest
	@if command -v pgbouncer >/dev/null 2>&1 || [ -x /usr/sbin/pgbouncer ]; then \
		TEST_THROUGH_PGBOUNCER=1 $(BIN)/pytest tests/integration tests/e2e/test_events.py; \
	else \
		echo "pgbouncer is not installed: the pass through PgBouncer did not run (apt-get install pgbouncer)"; \
	fi

lint: install-dev
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .
	$(BIN)/mypy
	$(BIN)/lint-imports

## Regenerate the gRPC stubs from upload_service/classifier/classifier.proto.
stubs: install-dev
	$(BIN)/python -m upload_service.classifier.generate
