# Seaway developer targets. `make test` is the one command CI runs (through .ci/run).
SHELL := /bin/bash
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
export PIP_DISABLE_PIP_VERSION_CHECK := 1

.PHONY: help venv system-deps generate verify-generated lint control-plane test test-unit up down clean

help: ## List the targets
	@grep -E '^[a-z-]+:.*## ' $(MAKEFILE_LIST) | awk -F':.*## ' '{printf "  %-18s %s\n", $$1, $$2}'

$(BIN)/.installed: pyproject.toml
	@test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip
	$(BIN)/pip install --quiet -e ".[dev]"
	@touch $@

venv: $(BIN)/.installed ## Create .venv/ and install Seaway with every extra

generate: venv ## Regenerate crds/ (and the chart's copy) from the pydantic models
	$(BIN)/python -m seaway.crdgen

verify-generated: venv ## Fail if crds/ differs from what the models generate
	$(BIN)/python -m seaway.crdgen --check

lint: venv ## ruff, mypy and the import contracts
	$(BIN)/ruff check operator serving tests
	$(BIN)/mypy
	$(BIN)/lint-imports

system-deps: ## Debian packages the tests start as real processes (prometheus, openssl)
	@command -v prometheus >/dev/null && command -v openssl >/dev/null || { \
	  apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq \
	    --no-install-recommends prometheus openssl >/dev/null; }

control-plane: ## Build (first time: many minutes) or reuse the local Kubernetes binaries
	bash hack/build-control-plane.sh

test: venv system-deps control-plane verify-generated lint ## Everything CI checks: generated files, lint, all tests
	$(BIN)/pytest

test-unit: venv ## Only the fast tests that need no control plane
	$(BIN)/pytest tests/unit

up: venv control-plane ## Start the embedded local control plane with Seaway's CRDs installed
	$(BIN)/seaway cluster up

down: venv ## Stop the embedded local control plane
	$(BIN)/seaway cluster down

clean: ## Remove the virtual environment and caches in the clone
	rm -rf $(VENV) .pytest_cache .mypy_cache .ruff_cache
