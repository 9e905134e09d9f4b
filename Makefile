# authprobe — run `make help` for the targets.
GO        ?= go
BIN       := bin/authprobe
CONFIG    ?= deploy/authprobe.yaml
COLLECTOR := test/collector/bin/otelcol-authprobe
GOTEST    ?= $(GO) test
FUZZTIME  ?= 20s

.PHONY: help generate check-generate build run check test test-unit collector bench bench-stages fuzz clean

help:
	@echo "make run            build and run the agent with $(CONFIG) (root; JSON spans on stdout)"
	@echo "make test           the whole test suite (root for the eBPF tests; builds the test collector)"
	@echo "make test-unit      unprivileged unit tests only"
	@echo "make bench          wrk baseline vs agent attached (stdout and OTLP), side by side: throughput, CPU/span, peak RSS"
	@echo "make bench-stages   the per-stage Go benchmarks (BenchmarkStage*), one table"
	@echo "make generate       rebuild the committed eBPF objects (clang-14)"
	@echo "make check-generate fail when the committed eBPF objects differ from their sources"
	@echo "make fuzz           run every fuzz target for FUZZTIME ($(FUZZTIME))"

generate:
	$(GO) generate ./bpf/

check-generate: generate
	git diff --exit-code -- bpf/ || { echo "bpf objects differ from sources: run make generate and commit" >&2; exit 1; }

build:
	CGO_ENABLED=0 $(GO) build -trimpath -o $(BIN) ./cmd/authprobe

run: build
	./$(BIN) run --config $(CONFIG)

check: build
	./$(BIN) check --config $(CONFIG)

collector: $(COLLECTOR)

$(COLLECTOR): test/collector/go.mod test/collector/main.go
	$(MAKE) -C test/collector build

# The suite: unit tests, fuzz seeds, eBPF capture tests and the end-to-end
# tests against real servers, the Collector and Prometheus. Root runs all;
# without root the privileged tests skip and say why.
test: build collector
	$(GOTEST) -count=1 -timeout 40m ./...

test-unit:
	$(GOTEST) -count=1 -short ./config/ ./decoder/ ./spanbuilder/... ./export/ ./detect/ ./cmd/...

bench: build
	$(GO) run ./test/bench -agent ./$(BIN)

bench-stages:
	$(GO) run ./test/bench -stages

fuzz:
	@set -e; for pkg in $$($(GO) list ./...); do \
	  for f in $$($(GO) test -list 'Fuzz.*' $$pkg 2>/dev/null | grep '^Fuzz'); do \
	    echo "== $$pkg $$f"; $(GO) test -run '^$$' -fuzz "^$$f$$" -fuzztime $(FUZZTIME) $$pkg; \
	  done; done

clean:
	rm -rf bin $(COLLECTOR)
