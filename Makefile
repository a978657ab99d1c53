# The two commands of the README: `make run` and `make test`. Everything lives in ./.venv.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin

LOCK := requirements.lock
DEV_LOCK := requirements-dev.lock
BOOTSTRAP_LOCK := requirements-bootstrap.lock

.PHONY: run test lint install install-dev lock stubs web system-packages

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

# The web page (web/): npm installs exactly web/package-lock.json, esbuild builds it into
# upload_service/web_assets/, again only when a source, the build or the lock has changed.
WEB_ASSETS := upload_service/web_assets/manifest.json
WEB_SOURCES := $(shell find web/src -type f 2>/dev/null) web/build.mjs web/package.json web/tsconfig.json

web/node_modules/.installed: web/package-lock.json
	@command -v npm >/dev/null || { echo "make: npm (Node.js) is needed to build the web page (apt-get install -y nodejs npm)"; exit 1; }
	cd web && npm ci --no-audit --no-fund --loglevel=error
	touch $@

$(WEB_ASSETS): web/node_modules/.installed $(WEB_SOURCES)
	cd web && npm run --silent build

web: $(WEB_ASSETS)

# The browser tests drive Debian's chromium (never a browser that Playwright downloads), and the
# second pass goes through Debian's pgbouncer: installed from Debian's packages when missing and
# we may (root with apt-get), otherwise one line says what to install.
SYSTEM_PACKAGES := chromium:chromium pgbouncer:/usr/sbin/pgbouncer
system-packages:
	@missing=""; for pair in $(SYSTEM_PACKAGES); do \
	  pkg=$${pair%%:*}; bin=$${pair#*:}; \
	  command -v $$bin >/dev/null 2>&1 || missing="$$missing $$pkg"; \
	done; \
	if [ -n "$$missing" ]; then \
	  if [ "$$(id -u)" = 0 ] && command -v apt-get >/dev/null; then \
	    apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq $$missing >/dev/null; \
	  else \
	    echo "make test: the tests need Debian's$$missing (apt-get install -y$$missing)"; exit 1; \
	  fi; \
	fi

## Set up and run the service on its embedded default (SQLite, local files, in-process classifier).
run: install web
	$(BIN)/upload-service serve

## Set up and run the whole test suite (real PostgreSQL, moto's S3 server, a gRPC classifier,
## the web page in a headless chromium).
# Then the integration tests (and the event streams' real processes) once more through a real
# PgBouncer in transaction mode, started by the tests themselves (tests/fixtures/pgbouncer.py).
# Three test processes (pytest-xdist, work stealing): most of the suite's time is spent waiting
# on servers it starts, so three keep two cores busy. `make test TEST_WORKERS=0` runs in one.
TEST_WORKERS ?= 3
PYTEST := $(BIN)/pytest -n $(TEST_WORKERS) --dist worksteal
test: install-dev web system-packages
	$(PYTEST)
	TEST_THROUGH_PGBOUNCER=1 $(PYTEST) tests/integration tests/e2e/test_events.py

lint: install-dev
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .
	$(BIN)/mypy
	$(BIN)/lint-imports

## Regenerate the gRPC stubs from upload_service/classifier/classifier.proto.
stubs: install-dev
	$(BIN)/python -m upload_service.classifier.generate
