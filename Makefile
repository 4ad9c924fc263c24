# Triggerflow developer targets. `make dev` and `make test` are the two
# commands the README promises; everything they need is installed by
# `make tools` into a cache outside the work tree.

SHELL := /usr/bin/env bash
.SHELLFLAGS := -euo pipefail -c

CACHE_DIR  ?= $(or $(XDG_CACHE_HOME),$(HOME)/.cache)
TOOLS_DIR  ?= $(CACHE_DIR)/triggerflow/tools

# The Temporal CLI is pinned: v1.5.1 is the newest release `go install` can
# build (later releases carry a replace directive in their go.mod).
TEMPORAL_VERSION      := v1.5.1
STATICCHECK_VERSION   := v0.8.2
WORKFLOWCHECK_VERSION := v0.6.0

TEMPORAL      := $(TOOLS_DIR)/temporal-$(TEMPORAL_VERSION)/temporal
STATICCHECK   := $(TOOLS_DIR)/staticcheck-$(STATICCHECK_VERSION)/staticcheck
WORKFLOWCHECK := $(TOOLS_DIR)/workflowcheck-$(WORKFLOWCHECK_VERSION)/workflowcheck

export TRIGGERFLOW_TEMPORAL_CLI := $(TEMPORAL)

GO          ?= go
TEST_FLAGS  ?= -race -count=1 -timeout 15m
FUZZTIME    ?= 60s
BENCH_FLAGS ?= -run '^$$' -bench . -benchmem

.PHONY: all
all: lint test

## tools: install the pinned Temporal CLI, staticcheck and workflowcheck (cached; skipped when present)
.PHONY: tools
tools: $(TEMPORAL) $(STATICCHECK) $(WORKFLOWCHECK)

$(TEMPORAL):
	@echo "installing temporal CLI $(TEMPORAL_VERSION) into $(@D) (first time only, takes a few minutes)"
	@mkdir -p $(@D)
	cd / && GOBIN=$(@D) GOFLAGS= $(GO) install github.com/temporalio/cli/cmd/temporal@$(TEMPORAL_VERSION)

$(STATICCHECK):
	@mkdir -p $(@D)
	cd / && GOBIN=$(@D) GOFLAGS= $(GO) install honnef.co/go/tools/cmd/staticcheck@$(STATICCHECK_VERSION)

$(WORKFLOWCHECK):
	@mkdir -p $(@D)
	cd / && GOBIN=$(@D) GOFLAGS= $(GO) install go.temporal.io/sdk/contrib/tools/workflowcheck@$(WORKFLOWCHECK_VERSION)

## test: run every test against real servers (embedded NATS, Temporal dev server, throwaway PostgreSQL)
.PHONY: test
test: $(TEMPORAL)
	$(GO) vet ./...
	$(GO) test $(TEST_FLAGS) ./...

## chaos: the full chaos run (10,000 changes, every service killed repeatedly; CHAOS_SEED=n replays)
.PHONY: chaos
chaos: $(TEMPORAL)
	CHAOS_FULL=1 $(GO) test ./chaos -run TestChaosFull -timeout 30m -count=1 -v

## lint: gofmt, go vet, staticcheck, and workflowcheck on workflow code
.PHONY: lint
lint: $(STATICCHECK) $(WORKFLOWCHECK)
	@unformatted=$$(gofmt -l $$(git ls-files -co --exclude-standard '*.go')); \
	  if [ -n "$$unformatted" ]; then echo "gofmt needed:"; echo "$$unformatted"; exit 1; fi
	$(GO) vet ./...
	$(STATICCHECK) ./...
	@if compgen -G 'workflows/*.go' >/dev/null; then $(WORKFLOWCHECK) ./workflows/...; fi

## fuzz: run every fuzz target for FUZZTIME each (default 60s)
.PHONY: fuzz
fuzz:
	@for pkg in $$($(GO) list ./...); do \
	  for target in $$($(GO) test -list '^Fuzz' $$pkg | grep '^Fuzz' || true); do \
	    echo "== $$pkg $$target"; \
	    $(GO) test $$pkg -run '^$$' -fuzz "^$$target\$$" -fuzztime $(FUZZTIME); \
	  done; \
	done

## bench: end-to-end throughput/latency/history/RSS table vs raw ceilings (BENCH_ARGS for flags: go run ./cmd/bench -h)
.PHONY: bench
bench: $(TEMPORAL)
	$(GO) run ./cmd/bench $(BENCH_ARGS)

## soak: the SQLite pipeline at a fixed rate for 10 minutes, each binary's RSS every 30s (SOAK_ARGS for more flags)
.PHONY: soak
soak: $(TEMPORAL)
	$(GO) run ./cmd/bench -soak 10m $(SOAK_ARGS)

## bench-go: the Go micro-benchmarks of every package (go test -bench)
.PHONY: bench-go
bench-go: $(TEMPORAL)
	$(GO) test $(BENCH_FLAGS) ./...

## dev: bring up the whole system on embedded defaults (DEV_FLAGS for more, e.g. --postgres DSN)
.PHONY: dev
dev: $(TEMPORAL)
	$(GO) build -o bin/triggerflow ./cmd/triggerflow
	exec ./bin/triggerflow dev $(DEV_FLAGS)

## help: list targets
.PHONY: help
help:
	@grep -E '^## ' $(MAKEFILE_LIST) | sed 's/^## /  /'
