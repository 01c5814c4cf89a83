#!/usr/bin/env bash
# The API fuzzed by schemathesis: the real debug binary on a free port with a temporary
# data directory and a token, a few functions and records to aim at, then every operation
# of the OpenAPI document the server serves, with every check schemathesis has. Bounded in
# time; fails loudly; leaves no process behind.
#
#   ST=path/to/st IGNIS=target/debug/ignis bash tests/api/fuzz.sh
# ST_MAX_EXAMPLES (default 50) and ST_SEED (default fixed, so a run can be repeated) tune it.
set -euo pipefail

: "${ST:?set ST to the schemathesis CLI (make test-api installs it)}"
: "${IGNIS:?set IGNIS to the ignis binary}"
MAX_EXAMPLES=${ST_MAX_EXAMPLES:-50}
SEED=${ST_SEED:-20261130}
# A hard bound on the fuzzing, for CI: past it the run fails.
MAX_TIME=${ST_MAX_TIME:-600}
REPORT_DIR=${ST_REPORT_DIR:-test-artifacts/api}

here=$(cd "$(dirname "$0")" && pwd)
# schemathesis reads its hooks relative to the project's root.
cd "$here/../.."
work=$(mktemp -d)
token=$(head -c 24 /dev/urandom | od -An -tx1 | tr -d ' \n')
server=""

stop() {
    local rc=$?
    if [ -n "$server" ] && kill -0 "$server" 2>/dev/null; then
        # SIGTERM: the server stops its instances and exits; SIGKILL if it does not in time.
        kill -TERM "$server" 2>/dev/null || true
        for _ in $(seq 100); do kill -0 "$server" 2>/dev/null || break; sleep 0.1; done
        if kill -0 "$server" 2>/dev/null; then
            echo "fuzz: the server did not stop within 10 s of SIGTERM; killing it" >&2
            kill -KILL "$server" 2>/dev/null || true
            rc=1
        fi
        wait "$server" 2>/dev/null || true
    fi
    # Nothing the run started may outlive it: no process may still name its data dir, nor
    # be one of the server's instances (their inits name their cgroup, `i-<server pid>-<n>`).
    local left
    left=$(pgrep -f -- "$work" || true)
    if [ -n "$server" ]; then
        left="$left $(pgrep -f -- "/i-$server-[0-9]" || true)"
    fi
    left=$(echo $left)
    if [ -n "$left" ]; then
        echo "fuzz: processes left behind: $left" >&2
        ps -o pid,args -p $left >&2 || true
        rc=1
    fi
    rm -rf "$work"
    exit "$rc"
}
trap stop EXIT
trap 'exit 130' INT TERM

# Made before the server starts, so that waiting for its first line never reads a file
# that is not there yet.
: >"$work/stdout"
# The token goes through the environment, not the command line. A manual clock lets
# `PUT /v1/clock` succeed.
IGNIS_TOKEN=$token "$IGNIS" serve --listen 127.0.0.1:0 --data "$work/data" --prewarm 0 \
    --manual-clock 2026-06-01T00:00:00Z >"$work/stdout" 2>"$work/stderr" &
server=$!

url=""
for _ in $(seq 300); do
    url=$(sed -n 's/^ignis listening on //p' "$work/stdout" | head -n1)
    [ -n "$url" ] && break
    kill -0 "$server" 2>/dev/null || { echo "fuzz: the server exited at start:" >&2; cat "$work/stderr" >&2; exit 1; }
    sleep 0.1
done
[ -n "$url" ] || { echo "fuzz: the server printed no listening line within 30 s" >&2; exit 1; }
echo "fuzz: server at $url (data in $work/data)"

auth="Authorization: Bearer $token"
api() {
    # api METHOD PATH [BODY [HEADER]]: fails the run unless the answer is 2xx.
    local out
    out=$(curl -sS -o "$work/answer" -w '%{http_code}' -X "$1" -H "$auth" \
        -H 'content-type: application/json' ${4:+-H "$4"} ${3:+--data-binary "$3"} "$url$2")
    case "$out" in
        2??) ;;
        *) echo "fuzz: seeding $1 $2 answered $out: $(cat "$work/answer")" >&2; exit 1 ;;
    esac
}

# Something for the routes with a {name} or {id} to find: the document's examples name
# `hello` and the test event `sample`.
api POST '/v1/functions?wait=true' \
    '{"name":"hello","runtime":"python","code":"def handler(event, context):\n    print(\"hello\", event)\n    return {\"hello\": event}\n"}'
api POST '/v1/functions?wait=true' \
    '{"name":"failing","runtime":"python","code":"def handler(event, context):\n    raise ValueError(\"no\")\n","retry":{"max_retries":0,"max_event_age_secs":60}}'
api POST /v1/functions/hello/invoke '{"seed":1}'
# Asynchronous calls that fail for good: dead letters, one to read and redrive, one to delete.
dead_letter() {
    local id
    api POST /v1/functions/failing/invoke '{"seed":2}' 'x-ignis-invocation-type: async'
    id=$(sed -n 's/.*"invocation_id":"\([^"]*\)".*/\1/p' "$work/answer")
    [ -n "$id" ] || { echo "fuzz: no invocation id in $(cat "$work/answer")" >&2; exit 1; }
    for _ in $(seq 300); do
        api GET "/v1/invocations/$id"
        grep -q '"status":"dead"' "$work/answer" && break
        sleep 0.1
    done
    grep -q '"status":"dead"' "$work/answer" || { echo "fuzz: $id did not become a dead letter within 30 s: $(cat "$work/answer")" >&2; exit 1; }
    echo "$id"
}
dead=$(dead_letter)
doomed=$(dead_letter)
api PUT /v1/functions/hello/test-events/sample '{"a":1}'

# The settings, with the dead letters' ids for the operations that need one (the document
# cannot name an id that exists only now).
cat "$here/schemathesis.toml" - >"$work/schemathesis.toml" <<TOML

[[operations]]
include-operation-id = ["get_dead_letter", "redrive_dead_letter"]
parameters = { "path.name" = "failing", "path.id" = "$dead" }

[[operations]]
include-operation-id = "delete_dead_letter"
parameters = { "path.name" = "failing", "path.id" = "$doomed" }
TOML

# Every check (schemathesis runs them all unless tests/api/schemathesis.toml turns one off,
# saying why), in every phase: the stateful one follows the document's links (a created
# function is read, invoked, updated and deleted; a queued invocation is read).
rm -rf "$REPORT_DIR"
rc=0
timeout "$MAX_TIME" "$ST" --config-file "$work/schemathesis.toml" run "$url/v1/openapi.json" \
    --url "$url" \
    -H "$auth" \
    --phases examples,coverage,fuzzing,stateful \
    --workers 1 \
    --max-examples "$MAX_EXAMPLES" \
    --request-timeout 10 \
    --seed "$SEED" \
    --generation-database none \
    --no-color \
    --report junit --report-dir "$REPORT_DIR" \
    "$@" || rc=$?
case "$rc" in
    0) ;;
    124) echo "fuzz: schemathesis did not finish within $MAX_TIME s" >&2; exit 1 ;;
    *) echo "fuzz: schemathesis found failures (above; JUnit report in $REPORT_DIR); server log:" >&2
       tail -n 50 "$work/stderr" >&2
       exit 1 ;;
esac
# A fault the answers did not show (a failed write, a panic) is logged as an error.
if grep -q "ERROR" "$work/stderr"; then
    echo "fuzz: the server logged errors during the run:" >&2
    grep "ERROR" "$work/stderr" | head -n 20 >&2
    exit 1
fi
echo "fuzz: no 5xx, every answer as the document says, no error in the server's log"
