# poolkeeper — a Kubernetes operator for XenServer-style virtualization pools.
SHELL := /usr/bin/env bash -o pipefail
.SHELLFLAGS := -ec

BIN ?= $(CURDIR)/bin
GO ?= go
CONTROLLER_TOOLS_VERSION ?= v0.23.0
GOLANGCI_LINT_VERSION ?= v2.15.0
CONTROLLER_GEN ?= $(BIN)/controller-gen-$(CONTROLLER_TOOLS_VERSION)
GOLANGCI_LINT ?= $(BIN)/golangci-lint-$(GOLANGCI_LINT_VERSION)
# Test flags, e.g. make test TESTFLAGS='-run TestHost -v'.
TESTFLAGS ?=
# The release the binaries report with --version.
VERSION ?= $(shell git describe --tags --always --dirty 2>/dev/null || echo dev)
LDFLAGS ?= -X github.com/poolkeeper/poolkeeper/internal/version.Version=$(VERSION)

.PHONY: all
all: build

##@ General

.PHONY: help
help: ## Show the targets.
	@awk 'BEGIN {FS = ":.*##"; printf "Usage: make <target> [VARIABLE=value]\n"} /^[a-zA-Z_0-9-]+:.*?##/ { printf "  %-16s %s\n", $$1, $$2 } /^##@/ { printf "\n%s\n", substr($$0, 5) }' $(MAKEFILE_LIST)

##@ Development

.PHONY: manifests
manifests: $(CONTROLLER_GEN) ## Generate CRDs and RBAC from the API types and markers, and the Helm chart's copies of them.
	$(CONTROLLER_GEN) rbac:roleName=poolkeeper-manager crd paths="./..." output:crd:artifacts:config=config/crd/bases output:rbac:artifacts:config=config/rbac
	rm -f charts/poolkeeper/crds/*.yaml && cp config/crd/bases/*.yaml charts/poolkeeper/crds/
	cp config/rbac/role.yaml charts/poolkeeper/files/role.yaml
	cp config/prometheus/rules.yaml charts/poolkeeper/files/rules.yaml

.PHONY: generate
generate: $(CONTROLLER_GEN) ## Generate deepcopy code.
	$(CONTROLLER_GEN) object:headerFile="hack/boilerplate.go.txt" paths="./api/..."

.PHONY: fmt
fmt: ## Run gofmt.
	gofmt -w $$(git ls-files '*.go')

.PHONY: vet
vet: ## Run go vet.
	$(GO) vet ./...

.PHONY: lint
lint: $(GOLANGCI_LINT) ## Run golangci-lint.
	$(GOLANGCI_LINT) run ./...

.PHONY: verify
verify: manifests generate ## Fail if generated files are stale or go.mod is untidy.
	$(GO) mod tidy
	@if [ -n "$$(git status --porcelain -- api config charts go.mod go.sum)" ]; then \
		echo "Generated files or go.mod are stale; run 'make manifests generate' and 'go mod tidy':"; \
		git status --porcelain -- api config charts go.mod go.sum; git diff -- api config charts go.mod go.sum | head -50; exit 1; fi

.PHONY: envtest
envtest: ## Build (once) and print the envtest binaries directory.
	@hack/envtest-toolchain.sh

.PHONY: test
test: build vet ## Run unit tests, envtest suites and the end-to-end scenarios (builds the toolchain if needed).
	KUBEBUILDER_ASSETS="$$(hack/envtest-toolchain.sh)" $(GO) test ./... -count=1 $(TESTFLAGS)
	hack/e2e/run.sh

.PHONY: e2e
e2e: build ## Run the end-to-end scenarios on real processes, driven with kubectl.
	hack/e2e/run.sh

.PHONY: bench
bench: ## Run the benchmarks and print their figures.
	KUBEBUILDER_ASSETS="$$(hack/envtest-toolchain.sh)" $(GO) test ./... -run '^$$' -bench . -benchtime 1x -timeout 60m $(TESTFLAGS)

##@ Build

.PHONY: build
build: manifests generate ## Build bin/poolkeeper (manager), bin/poolkeeper-agent, bin/kubectl-poolkeeper (kubectl plugin) and bin/controlplane (make run's).
	$(GO) build -ldflags '$(LDFLAGS)' -o $(BIN)/poolkeeper .
	$(GO) build -ldflags '$(LDFLAGS)' -o $(BIN)/poolkeeper-agent ./cmd/poolkeeper-agent
	$(GO) build -ldflags '$(LDFLAGS)' -o $(BIN)/kubectl-poolkeeper ./cmd/kubectl-poolkeeper
	$(GO) build -ldflags '$(LDFLAGS)' -o $(BIN)/controlplane ./hack/controlplane

# Where the plugin's release archives are downloaded from (the krew manifest's URIs).
PLUGIN_URI ?= https://github.com/poolkeeper/poolkeeper/releases/download/$(VERSION)
PLUGIN_PLATFORMS ?= linux/amd64 linux/arm64 darwin/amd64 darwin/arm64

.PHONY: plugin-dist
plugin-dist: ## Build the kubectl plugin's release archives and its krew manifest (dist/krew/poolkeeper.yaml).
	@mkdir -p dist/krew
	@set -e; manifest=$$(cat cmd/kubectl-poolkeeper/krew.yaml); \
	for p in $(PLUGIN_PLATFORMS); do \
		os=$${p%/*} arch=$${p#*/} dir=$$(mktemp -d); \
		archive=dist/kubectl-poolkeeper_$(VERSION)_$${os}_$${arch}.tar.gz; \
		CGO_ENABLED=0 GOOS=$$os GOARCH=$$arch $(GO) build -ldflags '$(LDFLAGS)' -o $$dir/kubectl-poolkeeper ./cmd/kubectl-poolkeeper; \
		cp LICENSE $$dir/; tar -C $$dir -czf $$archive kubectl-poolkeeper LICENSE; rm -rf $$dir; \
		manifest=$${manifest//\$$\{SHA256_$${os}_$${arch}\}/$$(sha256sum $$archive | cut -d' ' -f1)}; echo "$$archive"; \
	done; \
	manifest=$${manifest//\$$\{VERSION\}/$(VERSION)}; manifest=$${manifest//\$$\{URI\}/$(PLUGIN_URI)}; \
	echo "$$manifest" >dist/krew/poolkeeper.yaml; echo dist/krew/poolkeeper.yaml

.PHONY: run
run: build ## Run the operator: on an embedded control plane, or with leader election on the cluster of $KUBECONFIG.
	hack/run.sh $(ARGS)

.PHONY: demo
demo: build ## Apply config/samples, start one simulated agent per host, then back the pool up.
	hack/demo.sh

.PHONY: demo-agents
demo-agents: build ## (Re)start one simulated agent per host of the demo's namespace.
	hack/demo.sh agents

.PHONY: demo-agent
demo-agent: build ## (Re)start the simulated agent of one host: make demo-agent HOST=xen-2.
	hack/demo.sh agent $(HOST)

##@ Deployment

IMG ?= ghcr.io/poolkeeper/poolkeeper:latest
# make undeploy UNINSTALL_CRDS=true also deletes the CRDs, and with them every
# Pool, Host, VM, disk and PoolBackup in the cluster.
UNINSTALL_CRDS ?= false

.PHONY: deploy
deploy: manifests ## Deploy the operator to the cluster of $KUBECONFIG (config/default, image IMG=...).
	cd config/manager && kubectl kustomize . >/dev/null
	kubectl kustomize config/default | sed 's#ghcr.io/poolkeeper/poolkeeper:latest#$(IMG)#' | kubectl apply --server-side -f -

# The image dist/install.yaml names: this release's.
INSTALLER_IMG ?= ghcr.io/poolkeeper/poolkeeper:$(VERSION)
DIST ?= dist

.PHONY: build-installer
build-installer: manifests ## Write $(DIST)/install.yaml: CRDs, RBAC, the manager (image INSTALLER_IMG), its PDB and metrics Service.
	@mkdir -p $(DIST)
	kubectl kustomize config/default | sed 's#ghcr.io/poolkeeper/poolkeeper:latest#$(INSTALLER_IMG)#' >$(DIST)/install.yaml
	@echo "$(DIST)/install.yaml: kubectl apply --server-side -f $(DIST)/install.yaml"

.PHONY: chart
chart: manifests ## Refresh the Helm chart's copies of the CRDs, the manager's RBAC rules and the alerts (charts/poolkeeper; make manifests does it too).

.PHONY: undeploy
undeploy: ## Remove the operator from the cluster of $KUBECONFIG, keeping the CRDs and every object (UNINSTALL_CRDS=true deletes them).
ifeq ($(UNINSTALL_CRDS),true)
	@echo "undeploy: UNINSTALL_CRDS=true deletes the poolkeeper CRDs and with them every object of these kinds in every namespace:"
	@kubectl get $$(kubectl get crd -o name | sed -n 's#^customresourcedefinition.apiextensions.k8s.io/\(.*\.vpool\.poolkeeper\.io\)$$#\1#p' | paste -sd, -) -A --no-headers 2>/dev/null | awk '{print "  " $$1 "/" $$2}' || true
	@echo "undeploy: deleting them in 10s (Ctrl-C to keep them)"; sleep 10
# The CRDs go first, while the operator still runs to finish its objects' finalizers.
	kubectl delete --ignore-not-found -f config/crd/bases
endif
	kubectl kustomize config/default/operator | kubectl delete --ignore-not-found -f -

##@ Tools

.PHONY: tools
tools: $(CONTROLLER_GEN) $(GOLANGCI_LINT) ## Install controller-gen and golangci-lint (pinned versions) into bin/.

$(CONTROLLER_GEN):
	GOBIN=$(BIN) $(GO) install sigs.k8s.io/controller-tools/cmd/controller-gen@$(CONTROLLER_TOOLS_VERSION)
	mv $(BIN)/controller-gen $@

$(GOLANGCI_LINT):
	GOBIN=$(BIN) $(GO) install github.com/golangci/golangci-lint/v2/cmd/golangci-lint@$(GOLANGCI_LINT_VERSION)
	mv $(BIN)/golangci-lint $@
