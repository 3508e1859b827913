# tollgate — common tasks. `make help` lists them.
GO      ?= go
# The toolchain go.mod's `toolchain` line names, also where the machine's Go
# sets GOTOOLCHAIN=local (scripts/lib/toolchain.sh does the same for the scripts).
ifeq ($(origin GOTOOLCHAIN),undefined)
export GOTOOLCHAIN := $(shell awk '$$1 == "toolchain" { print $$2 "+auto" }' go.mod)
endif
VERSION ?= $(shell git describe --tags --always --dirty 2>/dev/null || echo dev)
LDFLAGS := -s -w -X github.com/tollgate-dev/tollgate/app.Version=$(VERSION)

.PHONY: help run build test lint vet bench fuzz docs vulncheck

help: ## list the targets
	@grep -E '^[a-z-]+:.*## ' $(MAKEFILE_LIST) | awk -F':.*## ' '{printf "  %-10s %s\n", $$1, $$2}'

run: ## run the gateway on the embedded SQLite store (./data/tollgate.db)
	$(GO) run ./cmd/tollgate serve

build: ## build ./bin/tollgate (static, no cgo)
	CGO_ENABLED=0 $(GO) build -trimpath -ldflags '$(LDFLAGS)' -o bin/tollgate ./cmd/tollgate

test: ## run every test against real PostgreSQL (found or started) and SQLite
	./scripts/test.sh


vet: ## go vet
	$(GO) vet ./...

lint: vet ## gofmt check, go vet, the OpenAPI document's lint and golangci-lint (when installed)
	@test -z "$$(gofmt -l $$(git ls-files '*.go'))" || { gofmt -l $$(git ls-files '*.go'); exit 1; }
	$(GO) test -count=1 -run 'TestOpenAPIDocumentLints|TestEveryRouteIsDocumented|TestContractBaseline' ./api
	@if command -v golangci-lint >/dev/null; then golangci-lint run; else echo "golangci-lint not installed: skipped (gofmt and vet passed)"; fi

docs: ## regenerate docs/cli.md and record api/openapi.yaml as the contract's baseline
	$(GO) generate ./cmd/tollgate
	$(GO) test -count=1 -run '^TestContractBaseline$$' ./api -update

bench: ## run the Go benchmarks (figures in docs/benchmarks.md)
	TOLLGATE_TEST_RACE=0 ./scripts/test.sh -run '^$$' -bench . -benchmem ./...

.PHONY: load
load: ## HTTP load run of the gate on a seeded PostgreSQL (figures in docs/benchmarks.md)
	./scripts/load.sh

.PHONY: load-all load-smoke
load-all: ## every path against its baseline, open model (PATHS_SCALE, PATHS_DURATION…; docs/benchmarks.md)
	./scripts/paths.sh

load-smoke: ## scripts/paths.sh on a tiny store for a few seconds (keeps the scripts working)
	PATHS_SCALE=tiny PATHS_DURATION=2s PATHS_GATE_RATE=200 PATHS_HOOK_RATE=200 PATHS_CONCURRENCY=4 PATHS_APPROVALS=3 ./scripts/paths.sh

fuzz: ## fuzz every webhook parser, the mapping engine, the policy parser, the gate request decoder, the report filters and the evidence readers (200000 executions each; FUZZ_EXECS to change)
	./scripts/fuzz.sh

vulncheck: ## govulncheck ./... (installed when missing; says so when vuln.go.dev is unreachable)
	./scripts/vulncheck.sh
