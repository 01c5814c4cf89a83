# Ignis: `make run` sets up what is missing and starts the server; `make test` runs every test.
SHELL := /bin/bash
.DEFAULT_GOAL := run

BUN_VERSION := 1.4.5
MONACO_VERSION := 0.57.0
PLAYWRIGHT_VERSION := 1.65.1
TYPESCRIPT_VERSION := 7.0.2
TOOLS := .tools
BUN := $(TOOLS)/node_modules/.bin/bun
TSC := $(TOOLS)/node_modules/.bin/tsc
# npm prunes what one `install --no-save` did not name: every tool is installed at once.
NPM_TOOLS := bun@$(BUN_VERSION) monaco-editor@$(MONACO_VERSION) playwright-core@$(PLAYWRIGHT_VERSION) typescript@$(TYPESCRIPT_VERSION)
TOOLS_STAMP := $(TOOLS)/.installed-bun$(BUN_VERSION)-monaco$(MONACO_VERSION)-playwright$(PLAYWRIGHT_VERSION)-typescript$(TYPESCRIPT_VERSION)
PYTHON ?= python3
UV_VERSION := 0.13.9
UV_STAMP := $(TOOLS)/uv/.installed-uv$(UV_VERSION)
SCHEMATHESIS_VERSION := 4.32.5
SCHEMATHESIS_VENV := $(TOOLS)/schemathesis-venv
SCHEMATHESIS_STAMP := $(SCHEMATHESIS_VENV)/.installed-schemathesis$(SCHEMATHESIS_VERSION)
LISTEN ?= 127.0.0.1:8080
DATA ?= ./.ignis


.PHONY: system-packages test-packages
.PHONY: run build tools test test-rust test-runtimes test-console test-api lint fmt clean bench microvm guest-if-root

## Install Bun (from the npm package `bun`), the console's editor (the npm package
## `monaco-editor`), playwright-core (the browser tests) and TypeScript (`tsc` checks the
## console's JSDoc types) into the project-local tools folder, and, as root, the Debian packages
## the sandbox uses (slirp4netns for outbound networking; iproute2 for the network tests).
tools: $(TOOLS_STAMP) $(UV_STAMP) system-packages

## uv (PyPI, pinned) installs Python functions' requirements.txt at deploy: the server finds
## it at $(TOOLS)/uv/bin/uv.
$(UV_STAMP):
	@command -v $(PYTHON) >/dev/null || { echo "CPython 3.11+ is needed: apt-get install python3"; exit 1; }
	rm -rf $(TOOLS)/uv
	PIP_ROOT_USER_ACTION=ignore $(PYTHON) -m pip install --quiet --disable-pip-version-check --target $(TOOLS)/uv uv==$(UV_VERSION)
	@$(TOOLS)/uv/bin/uv --version
	touch $@

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

## The browser tests drive Debian's Chromium; the /metrics test scrapes the server with
## Debian's Prometheus and checks it with its promtool (each installed as root when missing).
test-packages:
	@if ! command -v chromium >/dev/null; then \
	  if [ "$$(id -u)" = 0 ] && command -v apt-get >/dev/null; then \
	    echo "installing chromium (for the console's browser tests)"; \
	    apt-get install -y -qq chromium >/dev/null 2>&1 || { apt-get update -qq && apt-get install -y -qq chromium; }; \
	  else \
	    echo "chromium is needed for the console's browser tests: apt-get install chromium"; exit 1; \
	  fi; \
	fi
	@if ! command -v prometheus >/dev/null || ! command -v promtool >/dev/null; then \
	  if [ "$$(id -u)" = 0 ] && command -v apt-get >/dev/null; then \
	    echo "installing prometheus (for the /metrics end-to-end test)"; \
	    apt-get install -y -qq --no-install-recommends prometheus >/dev/null 2>&1 || { apt-get update -qq && apt-get install -y -qq --no-install-recommends prometheus; }; \
	  else \
	    echo "prometheus is needed for the /metrics end-to-end test: apt-get install prometheus"; exit 1; \
	  fi; \
	fi

$(TOOLS_STAMP):
	@command -v npm >/dev/null || { echo "npm is needed to install Bun: apt-get install nodejs npm"; exit 1; }
	@command -v $(PYTHON) >/dev/null || { echo "CPython 3.11+ is needed: apt-get install python3"; exit 1; }
	mkdir -p $(TOOLS)
	rm -f $(TOOLS)/.installed-*
	npm install --prefix $(TOOLS) --no-save --no-audit --no-fund --loglevel=error $(NPM_TOOLS)
	@$(BUN) --version >/dev/null && echo "bun $$($(BUN) --version) installed in $(TOOLS)"
	@test -f $(TOOLS)/node_modules/monaco-editor/min/vs/loader.js && echo "monaco-editor $(MONACO_VERSION) installed in $(TOOLS)"
	@$(TSC) --version >/dev/null && echo "typescript $(TYPESCRIPT_VERSION) installed in $(TOOLS)"
	touch $@

build:
	cargo build --release --locked --bin ignis

## Set up what is missing, build, and start the server on http://$(LISTEN) with data in $(DATA).
run: tools guest-if-root build
	./target/release/ignis serve --listen $(LISTEN) --data $(DATA)

## Every test: unit, integration, end-to-end against the real binary, runtime bootstraps,
## the microVM guest.
test: tools microvm test-rust test-runtimes test-console test-api

test-rust: test-packages
	cargo build --locked --bin ignis
	cargo nextest run --workspace --locked --no-fail-fast

test-runtimes:
	IGNIS_BUN=$(abspath $(BUN)) $(PYTHON) -m unittest discover -s runtimes/tests -v

## The console in a real browser (Debian's Chromium, driven by playwright-core) against
## the debug binary; screenshots go to test-artifacts/console/.
test-console: tools test-packages
	cargo build --locked --bin ignis
	node --test --test-concurrency=1 console/tests/

## schemathesis (PyPI, pinned) in a project-local virtualenv, for `make test-api`.
$(SCHEMATHESIS_STAMP):
	@command -v $(PYTHON) >/dev/null || { echo "CPython 3.11+ is needed: apt-get install python3"; exit 1; }
	rm -rf $(SCHEMATHESIS_VENV)
	$(PYTHON) -m venv $(SCHEMATHESIS_VENV) || { echo "python3 -m venv failed: apt-get install python3-venv"; exit 1; }
	$(SCHEMATHESIS_VENV)/bin/pip install --quiet --disable-pip-version-check schemathesis==$(SCHEMATHESIS_VERSION)
	@$(SCHEMATHESIS_VENV)/bin/st --version
	touch $@

## The API fuzzed by schemathesis against the debug binary with the OpenAPI document it
## serves: every operation, no 5xx, every answer as the document says.
test-api: $(SCHEMATHESIS_STAMP)
	cargo build --locked --bin ignis
	ST=$(abspath $(SCHEMATHESIS_VENV))/bin/st IGNIS=$(abspath target/debug/ignis) bash tests/api/fuzz.sh

## Rust formatting and clippy; the console's modules type-checked from their JSDoc
## (`// @ts-check`, console/tsconfig.json) by tsc, without emitting anything.
lint: $(TOOLS_STAMP)
	cargo fmt --all -- --check
	cargo clippy --workspace --all-targets --locked -- -D warnings
	$(TSC) -p console/tsconfig.json

fmt:
	cargo fmt --all

clean:
	cargo clean
	rm -rf $(TOOLS)

## The microVM guest (microvm/README.md): a small kernel from Debian's linux-source-6.1, a
## Debian bookworm root filesystem with CPython, Bun $(BUN_VERSION) and the static agent, in
## $(TOOLS)/microvm/current. As root, installs what is missing (qemu-system-x86, debootstrap,
## linux-source-6.1, flex, bison, bc, libelf-dev, e2fsprogs). Cached by content hash.
microvm:
	BUN_VERSION=$(BUN_VERSION) TOOLS=$(TOOLS) bash microvm/build.sh

## `make run` builds the guest when it can (as root: debootstrap and the Debian packages need
## it); otherwise the microvm tier stays unavailable and /v1/runtimes says why.
guest-if-root:
	@if [ "$$(id -u)" = 0 ]; then $(MAKE) --no-print-directory microvm; \
	else echo "microvm: not root, so no guest: the microvm tier stays unavailable (run make microvm as root)"; fi

## The benchmark of issue 4 against the release server, sandbox on (installs wrk as root).
bench: tools build
	bash bench/run.sh
