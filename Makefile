# flowvault — see README.md.
GO       ?= go
VERSION  ?= $(shell git describe --always --dirty 2>/dev/null || echo dev)
LDFLAGS  := -X main.version=$(VERSION)
BIN      := bin/flowvault

# Directories with npm test dependencies, pinned by their package-lock.json.
NPM_DIRS := workers/testdata/node e2e/testdata/sdk

.PHONY: run build test bench lint race clean npm-deps help

## run: start a server on embedded defaults (NATS + Pebble under ./data, HTTP on 127.0.0.1:8080)
run: build
	./$(BIN) server

## build: compile bin/flowvault
build:
	$(GO) build -ldflags "$(LDFLAGS)" -o $(BIN) ./cmd/flowvault

## test: every test, as CI runs them
test: npm-deps
	$(GO) vet ./...
	$(GO) test -count=1 -timeout 20m ./...

## npm-deps: install the npm packages tests use, exactly as locked
npm-deps:
	@for d in $(NPM_DIRS); do \
		if [ ! -f $$d/node_modules/.package-lock.json ] || [ $$d/package-lock.json -nt $$d/node_modules/.package-lock.json ]; then \
			echo "npm ci in $$d"; (cd $$d && npm ci --no-audit --no-fund --loglevel=error) || exit 1; \
		fi; \
	done

## race: the tests under the race detector
race: npm-deps
	$(GO) test -race -count=1 -timeout 30m ./...

## bench: throughput and latency against baselines measured in the same run
bench:
	$(GO) run ./cmd/fvbench

## lint: formatting and vet
lint:
	@out=$$(gofmt -l $$(git ls-files '*.go')); if [ -n "$$out" ]; then echo "gofmt:"; echo "$$out"; exit 1; fi
	$(GO) vet ./...

## clean: remove bin/
clean:
	rm -rf bin

## help: list these targets
help:
	@sed -n 's/^## //p' $(MAKEFILE_LIST)
