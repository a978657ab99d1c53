# The two commands of the README: `make run` and `make test`. Everything lives in ./.venv.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin

.PHONY: run test lint install install-dev stubs

$(BIN)/python:
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install -q --upgrade pip

$(VENV)/.installed: pyproject.toml | $(BIN)/python
	$(BIN)/pip install -q -e .
	touch $@

$(VENV)/.installed-dev: pyproject.toml | $(BIN)/python
	$(BIN)/pip install -q -e '.[dev]'
	touch $@ $(VENV)/.installed

install: $(VENV)/.installed
install-dev: $(VENV)/.installed-dev

## Set up and run the service on its embedded default (SQLite, local files, in-process classifier).
run: install
	$(BIN)/upload-service serve

## Set up and run the whole test suite (real PostgreSQL, moto's S3 server, a gRPC classifier).
test: install-dev
	$(BIN)/pytest

lint: install-dev
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .
	$(BIN)/mypy
	$(BIN)/lint-imports

## Regenerate the gRPC stubs from upload_service/classifier/classifier.proto.
stubs: install-dev
	$(BIN)/python -m upload_service.classifier.generate
