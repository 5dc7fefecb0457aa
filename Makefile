# imagebuilder: reproducible build, tests, benchmarks and the demo.
#
#   make demo    build the demo pod-VM image of examples/podvm.yaml (docs/build.md)
#   make test    install what the tests need (Debian packages), run all tests
#                (go test ./..., which includes the VM boots of e2e/)
#   make e2e     install the same, run only the end-to-end VM boots (e2e/)
#
# Every Go binary of ours is built with -trimpath, no VCS stamping, an empty
# build id and CGO disabled, so two builds of one tree give the same bytes.

GO        ?= go
BIN       ?= bin
# The commit, with +dirty when tracked files differ from it.
REVISION  ?= $(shell git rev-parse HEAD 2>/dev/null || echo unknown)$(shell git rev-parse HEAD >/dev/null 2>&1 && ! git diff --quiet HEAD -- 2>/dev/null && echo +dirty)
GOBUILD    = CGO_ENABLED=0 $(GO) build -trimpath -buildvcs=false \
             -ldflags='-buildid= -s -w -X main.revision=$(REVISION)'
TESTFLAGS ?= -timeout 40m
# Each e2e VM has its own timeout (at most 5 min); their sum stays below this.
E2EFLAGS  ?= -timeout 30m
FUZZTIME  ?= 10s

.PHONY: all build test test-short e2e deps bench fuzz demo lint golden clean

all: build

build:
	@mkdir -p $(BIN)
	$(GOBUILD) -o $(BIN)/imagebuilder ./cmd/imagebuilder
	CGO_ENABLED=0 $(GO) build -trimpath -buildvcs=false -ldflags='-buildid= -s -w' -o $(BIN)/guest-init ./cmd/guest-init
	CGO_ENABLED=0 $(GO) build -trimpath -buildvcs=false -ldflags='-buildid= -s -w' -o $(BIN)/kata-agent-standin ./examples/kata-agent-standin

# deps installs the Debian packages and fetches the cached fixtures the tests
# need; it does nothing for what is already present.
deps:
	@scripts/testdeps.sh

# test runs every test, then every fuzz target briefly (FUZZSMOKE each), so
# CI exercises the structure-aware targets beyond their seed corpora.
FUZZSMOKE ?= 3s

test: deps
	$(GO) test $(TESTFLAGS) ./...
	@scripts/fuzz.sh $(FUZZSMOKE)

e2e: deps
	$(GO) test $(E2EFLAGS) ./e2e/...

test-short:
	$(GO) test -short ./...

bench: deps build
	@scripts/bench.sh

fuzz:
	@scripts/fuzz.sh $(FUZZTIME)

demo: build
	@scripts/demo.sh

STATICCHECK ?= $(GO) run honnef.co/go/tools/cmd/staticcheck@v0.8.2

# golden rewrites every golden file from what the tests compute now
# (internal/golden); review the diff before committing it.
golden:
	IMAGEBUILDER_UPDATE_GOLDEN=1 $(GO) test -short -count=1 ./...

lint:
	@out=$$(gofmt -l $$(git ls-files '*.go')); if [ -n "$$out" ]; then echo "gofmt needed:"; echo "$$out"; exit 1; fi
	$(GO) vet ./...
	$(STATICCHECK) ./...

clean:
	rm -rf $(BIN)
