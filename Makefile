# cronwarden — `make help` lists the targets.
CARGO ?= cargo
IMG ?= ghcr.io/cronwarden/cronwarden:dev
KUSTOMIZE ?= kubectl kustomize

.DEFAULT_GOAL := help

##@ General
help: ## Show this help
	@awk 'BEGIN {FS = ":.*##"} /^[a-zA-Z_-]+:.*?##/ { printf "  \033[36m%-16s\033[0m %s\n", $$1, $$2 } /^##@/ { printf "\n\033[1m%s\033[0m\n", substr($$0, 5) }' $(MAKEFILE_LIST)

##@ Development
build: ## Build the release binary (target/release/cronwarden)
	$(CARGO) build --release --locked

scan: ## Scan the bundled samples (the main job, no cluster needed); exit 1 (findings) is the expected result here
	$(CARGO) run --release --locked -- scan config/samples || [ $$? -eq 1 ]

test: ## All tests: unit, scripted-API, CLI, and the e2e suite (which skips itself, saying why, without an API server)
	$(CARGO) test --release --locked

lint: ## cargo fmt --check and clippy with warnings as errors
	$(CARGO) fmt --all -- --check
	$(CARGO) clippy --release --locked --all-targets -- -D warnings

crds: ## Regenerate crds/ from the Rust types
	$(CARGO) run --release --locked -- crds > crds/cronwarden.io_crds.yaml

crds-check: crds ## Fail when crds/ differs from what the types generate
	git diff --exit-code -- crds/

bench: ## Criterion benchmarks of the engine and of scan
	$(CARGO) bench --locked --bench engine

##@ End to end
e2e: ## Only the end-to-end suite against a real kube-apiserver (KUBEBUILDER_ASSETS or E2E_KUBECONFIG)
	$(CARGO) test --release --locked --test e2e

bench-e2e: ## Detection latency and scale measurements against a real kube-apiserver (about 10 minutes)
	$(CARGO) test --release --locked --test e2e -- bench

##@ Deployment
image: ## Build the container image
	docker build -t $(IMG) .

build-installer: ## Render one install YAML into dist/install.yaml
	mkdir -p dist
	$(KUSTOMIZE) config/default > dist/install.yaml

deploy: ## Apply config/default to the current kubectl context
	$(KUSTOMIZE) config/default | kubectl apply --server-side -f -

undeploy: ## Delete what deploy applied
	$(KUSTOMIZE) config/default | kubectl delete --ignore-not-found -f -

.PHONY: help build scan test lint crds crds-check bench e2e bench-e2e image build-installer deploy undeploy
