#!/usr/bin/env bash
# `make bench`: see bench/bench.py for the scenarios and their targets.
set -euo pipefail
cd "$(dirname "$0")/.."
if ! command -v wrk >/dev/null; then
  if [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null; then
    apt-get install -y -qq wrk >/dev/null 2>&1 || { apt-get update -qq && apt-get install -y -qq wrk; }
  else
    echo "wrk is needed: apt-get install wrk"; exit 1
  fi
fi
exec python3 bench/bench.py
