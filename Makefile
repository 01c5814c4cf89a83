# Ignis: `make run` sets up what is missing and starts the server; `make test` runs every test.
SHELL := /bin/bash
.DEFAULT_GOAL := run

BUN_VERSION := 1.4.5
TOOLS := .tools
BUN := $(TOOLS)/node_modules/.bin/bun
PYTHON ?= python3
LISTEN ?= 127.0.0.1:8080
DATA ?= ./.ignis


.PHONY: system-packages
.PHONY: run build tools test test-rust test-runtimes lint fmt clean bench

## Install Bun (from the npm package `bun`) into the project-local tools folder, and, as
## root, the Debian packages the sandbox uses (slirp4netns for outbound networking;
## iproute2 for the network tests).
tools: $(BUN) system-packages

system-packages:
	@missing=""; \
	command -v slirp4netns >/dev/null || missing="$$missing slirp4netns"; \
	command -v ip >/dev/null || missing="$$missing iproute2"; \
	if [ -n "$$missing" ]; then \
	  if [ "$$(id -u)" = 0 ] && command -v apt-get >/dev/null; then \
	    echo "installing$$missing"; \
	    apt-get install -y -qq $$missing >/dev/null 2>&1 || { apt-get update -qq && apt-get install -y -qq $$missing; }; \
	  else \
	    echo "missing:$$missing (install them as root for outbound networking and its tests)"; \
	  fi; \
	fi

$(BUN):
	@command -v npm >/dev/null || { echo "npm is needed to install Bun: apt-get install nodejs npm"; exit 1; }
	@command -v $(PYTHON) >/dev/null || { echo "CPython 3.11+ is needed: apt-get install python3"; exit 1; }
	mkdir -p $(TOOLS)
	npm install --prefix $(TOOLS) --no-save --no-audit --no-fund --loglevel=error bun@$(BUN_VERSION)
	@$(BUN) --version >/dev/null && echo "bun $$($(BUN) --version) installed in $(TOOLS)"

build:
	cargo build --release --locked --bin ignis

## Set up what is missing, build, and start the server on http://$(LISTEN) with data in $(DATA).
run: tools build
	./target/release/ignis serve --listen $(LISTEN) --data $(DATA)

## Every test: unit, integration, end-to-end against the real binary, runtime bootstraps.
test: tools test-rust test-runtimes

test-rust:
	cargo build --locked --bin ignis
	cargo nextest run --workspace --locked --no-fail-fast

test-runtimes:
	IGNIS_BUN=$(abspath $(BUN)) $(PYTHON) -m unittest discover -s runtimes/tests -v

lint:
	cargo fmt --all -- --check
	cargo clippy --workspace --all-targets --locked -- -D warnings

fmt:
	cargo fmt --all

clean:
	cargo clean
	rm -rf $(TOOLS)

## The benchmark of issue 4 against the release server, sandbox on (installs wrk as root).
bench: tools build
	bash bench/run.sh
