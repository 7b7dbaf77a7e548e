#!/usr/bin/env bash
# Measures what `signoff mcp` adds to an allowed tool call: N `echo` calls
# to @modelcontextprotocol/server-everything, bare and through the proxy,
# in one run against a fresh local gateway (SQLite in a temp dir), with the
# official Python MCP SDK as the client (scripts/mcp_drive.py latency).
#
#   scripts/mcp-latency.sh [N] [PATH-TO-SIGNOFF]
#
# Default binary: target/release/signoff if built, else target/debug/signoff.
set -euo pipefail
cd "$(dirname "$0")/.."
n="${1:-500}"
target="${CARGO_TARGET_DIR:-target}"
bin="${2:-}"
if [ -z "$bin" ]; then
  if [ -x "$target/release/signoff" ]; then bin="$target/release/signoff"; else bin="$target/debug/signoff"; fi
fi
deps="$(scripts/mcp-test-deps.sh)"
work="$(mktemp -d)"
trap 'kill "$server" 2>/dev/null && wait "$server" 2>/dev/null; rm -rf "$work"' EXIT
server=""
. scripts/bench-gateway.sh
start_gateway "$bin" "$work" '@id("everything-allowed")
permit(principal, action in Action::"mcp.everything", resource);' --gate mcp
everything="$deps/node_modules/.bin/mcp-server-everything"
py="$deps/venv/bin/python"
echo "binary: $bin; gateway: $url (SQLite); N=$n echo calls after 20 warm-up calls"
bare="$(SIGNOFF_URL="$url" SIGNOFF_TOKEN="$token" "$py" scripts/mcp_drive.py latency "$n" -- "$everything" 2>/dev/null)"
proxied="$(SIGNOFF_URL="$url" SIGNOFF_TOKEN="$token" "$py" scripts/mcp_drive.py latency "$n" -- "$bin" mcp --name everything -- "$everything" 2>/dev/null)"
echo "bare:    $bare"
echo "proxied: $proxied"
"$py" - "$bare" "$proxied" <<'PY'
import json, sys
b, p = json.loads(sys.argv[1]), json.loads(sys.argv[2])
for k in ("p50_ms", "p90_ms", "p99_ms", "mean_ms"):
    print(f"added {k[:-3]}: {p[k] - b[k]:.3f} ms  (bare {b[k]:.3f}, proxied {p[k]:.3f})")
PY
