#!/usr/bin/env bash
# Auto-allowed decisions against a real `signoff serve` process, with wrk
# (Debian's `wrk`) as the client: a separate process in C, so the figure
# does not depend on our own load generator.
#
#   scripts/wrk-decisions.sh [CONNECTIONS] [DURATION] [DIR] [PATH-TO-SIGNOFF]
#
# Defaults: 32 connections, 10s, a temp dir under /work (the database's disk
# matters: a decision waits for one fsync), target/release/signoff.
set -euo pipefail
cd "$(dirname "$0")/.."
conns="${1:-32}"
duration="${2:-10s}"
base="${3:-/work}"
bin="${4:-${CARGO_TARGET_DIR:-target}/release/signoff}"
command -v wrk >/dev/null || { echo "wrk is not installed (apt-get install wrk)" >&2; exit 2; }
[ -x "$bin" ] || { echo "no binary at $bin (cargo build --release --bin signoff)" >&2; exit 2; }
work="$(mktemp -d -p "$base" wrk-decisions.XXXXXX)"
trap 'kill "$server" 2>/dev/null && wait "$server" 2>/dev/null; rm -rf "$work"' EXIT
server=""
. scripts/bench-gateway.sh
start_gateway "$bin" "$work" '@id("allow-all")
permit(principal, action, resource);'
cat > "$work/post.lua" <<LUA
wrk.method = "POST"
wrk.body = '{"action":"db.read","resource":"load/customers","environment":"prod","justification":"load test"}'
wrk.headers["Content-Type"] = "application/json"
wrk.headers["Authorization"] = "Bearer $token"
local not_allowed = 0
function response(status, headers, body)
  if status ~= 201 or not string.find(body, '"decision":"allow"', 1, true) then
    not_allowed = not_allowed + 1
  end
end
function done(summary, latency, requests)
  io.write(string.format("not allowed (counted by the last wrk thread only): %d\n", not_allowed))
end
LUA
echo "binary: $bin; gateway: $url (SQLite in $work); wrk -t1 -c$conns -d$duration"
wrk -t1 -c"$conns" -d"$duration" --latency -s "$work/post.lua" "$url/v1/requests"
