# Ignis: `make run` sets up what is missing and starts the server; `make test` runs every test.
SHELL := /bin/bash
.DEFAULT_GOAL := run

BUN_VERSION := 1.4.5
TOOLS := .tools
BUN := $(TOOLS)/node_modules/.bin/bun
PYTHON ?= python3
LISTEN ?= 127.0.0.1:8080
DATA ?= ./.ignis

.PHONY: run build tools test test-rust test-runtimes lint fmt clean bench

## Install Bun (from the npm package `bun`) into the project-local tools folder.
tools: $(BUN)

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

## Warm-invocation benchmark against the release server (needs wrk: apt-get install wrk).
bench: tools build
	bash bench/run.sh
