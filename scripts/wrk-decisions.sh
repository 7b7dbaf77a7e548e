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
trap 'kill "$server" 2>/dev/null || true; rm -rf "$work"' EXIT
mkdir -p "$work/policies"
printf '@id("allow-all")\npermit(principal, action, resource);\n' > "$work/policies/allow.cedar"
cat > "$work/signoff.toml" <<TOML
listen = "127.0.0.1:0"
database = "sqlite://$work/signoff.db"
policies = "$work/policies"
TOML
"$bin" principal add user olga --role admin --config "$work/signoff.toml" >/dev/null
token="$("$bin" principal add agent bench --owner olga --config "$work/signoff.toml")"
"$bin" serve --config "$work/signoff.toml" >"$work/serve.out" 2>"$work/serve.log" &
server=$!
url=""
for _ in $(seq 100); do
  url="$(sed -n 's/^signoff listening on \(http[^ ]*\).*/\1/p' "$work/serve.out")"
  [ -n "$url" ] && break
  sleep 0.1
done
[ -n "$url" ] || { cat "$work/serve.log" >&2; exit 1; }
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
