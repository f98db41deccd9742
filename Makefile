# Two set-up commands: `make demo` and `make test`. Both bootstrap what they need.
SHELL := /bin/bash
VENV ?= .venv
BIN := $(VENV)/bin
PACKAGES := engine card settlement terminals hsm simulators loadtest

.PHONY: bootstrap demo test lint typecheck unit bench clean

bootstrap:
	@bash deploy/bootstrap.sh

demo: bootstrap
	$(BIN)/python -m simulators.demo

lint: bootstrap
	$(BIN)/ruff check $(PACKAGES) tests
	$(BIN)/ruff format --check $(PACKAGES) tests

typecheck: bootstrap
	$(BIN)/mypy $(PACKAGES)

test: lint typecheck
	$(BIN)/pytest -q tests --benchmark-disable --ignore=tests/bench

bench: bootstrap
	$(BIN)/pytest -q tests/bench --benchmark-only

clean:
	rm -rf $(VENV) var .pytest_cache .mypy_cache .ruff_cache
