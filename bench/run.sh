#!/usr/bin/env bash
# Warm-invocation benchmark: the real release server, the seed's hello handlers, wrk over
# HTTP. Prints wrk's reports; the numbers go into docs/benchmarks.md by hand, with the
# machine they came from.
set -euo pipefail
cd "$(dirname "$0")/.."
command -v wrk >/dev/null || { echo "wrk is needed: apt-get install wrk"; exit 1; }
DURATION=${DURATION:-10s}
data=$(mktemp -d)
out=$(mktemp)
# Starts a server with extra flags; sets $url and $pid.
start_server() {
  : > "$out"
  ./target/release/ignis serve --listen 127.0.0.1:0 --data "$data" "$@" > "$out" 2>/dev/null &
  pid=$!
  for _ in $(seq 100); do grep -q "listening" "$out" && break; sleep 0.1; done
  url=$(sed -n 's/^ignis listening on //p' "$out")
}
trap 'kill $pid 2>/dev/null; rm -rf "$data" "$out"' EXIT

echo "== instance start (deploy check), without the sandbox"
data_plain=$(mktemp -d)
( data=$data_plain; start_server --insecure-no-sandbox; python3 bench/coldstart.py "$url" "${STARTS:-30}"; kill $pid )
rm -rf "$data_plain"
echo "== instance start (deploy check), sandboxed"
start_server
python3 bench/coldstart.py "$url" "${STARTS:-30}"

deploy() { # name runtime file max_instances
  python3 - "$url" "$1" "$2" "$3" "$4" <<'PY'
import json, sys, urllib.request
url, name, runtime, path, maxi = sys.argv[1:]
body = json.dumps({"name": name, "runtime": runtime, "code": open(path).read(), "max_instances": int(maxi)}).encode()
req = urllib.request.Request(url + "/v1/functions?wait=true", body, {"content-type": "application/json"})
state = json.load(urllib.request.urlopen(req))["state"]
assert state == "ready", state
PY
}
deploy hello-py python tests/e2e/fixtures/hello.py 2
deploy hello-js javascript tests/e2e/fixtures/hello.js 2
echo "== $(nproc) cores, $(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2 | xargs)"
for fn in hello-py hello-js; do
  echo "== $fn: warm, 1 keep-alive connection"
  wrk -t1 -c1 -d"$DURATION" --latency -s bench/post.lua "$url/v1/functions/$fn/invoke" | grep -E "50%|75%|90%|99%|Requests/sec|Non-2xx"
  echo "== $fn: warm, 64 connections (2 instances)"
  wrk -t2 -c64 -d"$DURATION" --latency -s bench/post.lua "$url/v1/functions/$fn/invoke" | grep -E "50%|99%|Requests/sec|Non-2xx"
done
