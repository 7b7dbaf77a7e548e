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
trap 'kill "$server" 2>/dev/null || true; rm -rf "$work"' EXIT
mkdir -p "$work/policies"
cat > "$work/policies/everything.cedar" <<'CEDAR'
@id("everything-allowed")
permit(principal, action in Action::"mcp.everything", resource);
CEDAR
cat > "$work/signoff.toml" <<TOML
listen = "127.0.0.1:0"
database = "sqlite://$work/signoff.db"
policies = "$work/policies"
TOML
"$bin" principal add user olga --role admin --config "$work/signoff.toml" >/dev/null
token="$("$bin" principal add agent bench --owner olga --gate mcp --config "$work/signoff.toml")"
"$bin" serve --config "$work/signoff.toml" >"$work/serve.out" 2>"$work/serve.log" &
server=$!
for _ in $(seq 100); do
  url="$(sed -n 's/^signoff listening on \(http[^ ]*\).*/\1/p' "$work/serve.out")"
  [ -n "$url" ] && break
  sleep 0.1
done
[ -n "$url" ] || { cat "$work/serve.log" >&2; exit 1; }
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
