# Ferry — make targets. Tools are pinned in tools.mod and fetched through the
# Go module proxy.

GO        ?= go
# The version linked into bin/ferry: packaging/version.sh, which also names
# the packages and versions their binary, so `bin/ferry version` and the
# packaged ferry agree on the same tree. `make VERSION=… build` overrides it.
VERSION   ?= $(shell sh packaging/version.sh)
LDFLAGS   := -s -w -X main.version=$(VERSION)
BIN       := bin/ferry
TOOLS     := $(GO) tool -modfile=tools.mod

.PHONY: all build run test test-integration test-faults test-powerloss bench bench-e2e bench-churn lint fmt tidy-check fuzz clean print-version

all: build

build:
	CGO_ENABLED=0 $(GO) build -trimpath -ldflags '$(LDFLAGS)' -o $(BIN) ./cmd/ferry
	CGO_ENABLED=0 $(GO) build -trimpath -o bin/ferry-load ./cmd/ferry-load

# The version `make build` links in (make -s print-version).
print-version:
	@echo '$(VERSION)'

# Build and run Ferry on its built-in configuration: listen on
# 127.0.0.1:9201, data under ./data, forward to http://127.0.0.1:9090.
run: build
	./$(BIN) run

# Unit tests, fuzz seed corpora and the end-to-end tests of the ferry binary.
test:
	$(GO) test -race -count=1 -timeout 15m ./...

# Suites against real peers (Prometheus from Debian) and real systemd.
# The 10-minute soak runs beside the rest of the suite; its output follows.
test-integration:
	@soaklog=$$(mktemp); rc=0; \
	FERRY_INTEGRATION=1 $(GO) test -count=1 -timeout 40m -v -run '^TestSoak$$' ./integration/ >$$soaklog 2>&1 & soak=$$!; \
	FERRY_INTEGRATION=1 $(GO) test -count=1 -timeout 40m -v -skip '^TestSoak$$' ./integration/ || rc=$$?; \
	wait $$soak || rc=$$?; \
	echo "=== TestSoak (run beside the suite above)"; cat $$soaklog; rm -f $$soaklog; exit $$rc

# The long kill -9 loop: 100 SIGKILL cycles under load with two raw
# endpoints and a 5m rollup endpoint, every acknowledged sample and every
# closed rollup window checked (about 3 minutes; make test-integration runs
# 15 cycles).
test-faults:
	FERRY_FAULTS=1 FERRY_E2E_NORACE=1 $(GO) test -count=1 -timeout 30m -v -run '^TestKill9Loop$$' ./integration/

# Power cuts under load (root, /dev/fuse): the ferry binary on
# integration/lazyfs, a FUSE filesystem that keeps only what was fsynced;
# 50 cuts with wal.sync: always and 20 with interval
# (FERRY_POWERLOSS_CUTS, FERRY_POWERLOSS_INTERVAL_CUTS). About 5 minutes.
test-powerloss:
	FERRY_POWERLOSS=1 $(GO) test -count=1 -timeout 20m -v -run '^TestPowerLoss' ./integration/

bench:
	$(GO) test -run '^$$' -bench . -benchmem -count 1 ./wal/ ./sender/ ./agent/...

# End-to-end load test: Ferry vs vmagent on the same load (see docs/benchmarks.md).
bench-e2e: build
	./cmd/ferry-load/bench-e2e.sh

# An hour of series churn (see docs/benchmarks.md); CHURN_DURATION=3m for a short run.
bench-churn: build
	SCENARIO=churn ./cmd/ferry-load/bench-e2e.sh

lint:
	@out=$$(gofmt -l $$(git ls-files '*.go')); if [ -n "$$out" ]; then echo "gofmt needed:"; echo "$$out"; exit 1; fi
	$(GO) vet ./...
	$(TOOLS) staticcheck ./...

fmt:
	gofmt -w $$(git ls-files '*.go')

tidy-check:
	$(GO) mod tidy
	git diff --exit-code go.mod go.sum

# Run each fuzzer (the Remote-Write 1.0 and 2.0 decoders, the sender's
# histogram rewrite) for FUZZTIME (default 30s).
FUZZTIME ?= 30s
fuzz:
	$(GO) test ./agent/receive/ -run '^$$' -fuzz '^FuzzDecode$$' -fuzztime $(FUZZTIME)
	$(GO) test ./agent/receive/ -run '^$$' -fuzz '^FuzzDecodeV2$$' -fuzztime $(FUZZTIME)
	$(GO) test ./sender/ -run '^$$' -fuzz '^FuzzHistogramV1$$' -fuzztime $(FUZZTIME)

# Debian and RPM packages (amd64, arm64) in dist/, built with nfpm from
# tools.mod; see packaging/build.sh.
.PHONY: packages test-packages
packages:
	GO=$(GO) sh packaging/build.sh

# Inspects, lints and boot-tests the packages in dist/ (root; installs
# lintian, rpm, debootstrap and systemd-container with apt if missing).
test-packages: packages
	FERRY_PACKAGES=1 FERRY_E2E_NORACE=1 $(GO) test -count=1 -timeout 30m -v -run '^TestPackage' ./integration/

clean:
	rm -rf bin dist data
