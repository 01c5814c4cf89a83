#!/usr/bin/env bash
# `make bench` (after `make tools build`): see bench/bench.py for the scenarios, their
# targets and the knobs (DURATION, WARMUP, SAMPLES, SCENARIOS, OUT).
# Prints a table and writes target/bench/latest.json.
set -euo pipefail
cd "$(dirname "$0")/.."

if [ ! -x target/release/ignis ]; then
  echo "bench: no target/release/ignis; run make build (or make bench)" >&2
  exit 1
fi
if ! command -v wrk >/dev/null; then
  if [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null; then
    apt-get install -y -qq wrk >/dev/null 2>&1 || { apt-get update -qq && apt-get install -y -qq wrk; }
  else
    echo "bench: wrk is needed (apt-get install wrk)" >&2
    exit 1
  fi
fi
if ! python3 -c 'import sys; sys.exit(sys.version_info < (3, 11))'; then
  echo "bench: Python 3.11 or newer is needed" >&2
  exit 1
fi
# bench.py stops its servers (and checks that their instances are gone) on exit,
# including on SIGINT/SIGTERM.
exec python3 bench/bench.py
