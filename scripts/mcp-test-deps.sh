#!/usr/bin/env bash
# Installs what the MCP gate's end-to-end tests drive: the reference MCP
# servers (npm), the MCP conformance suite (npm; 0.1.13 is the last release
# that runs on Node 20: later ones import fs.globSync, Node 22+) and the
# Python MCP SDK as the client (PyPI), into
# ${SIGNOFF_MCP_DEPS:-target/mcp-deps}. Idempotent: a stamp file per
# pinned version skips work already done. Prints the deps directory.
set -euo pipefail
cd "$(dirname "$0")/.."

FS_VERSION=2026.8.31
EVERYTHING_VERSION=2026.8.31
PY_MCP_VERSION=2.3.0
CONFORMANCE_VERSION=0.1.13

deps="${SIGNOFF_MCP_DEPS:-$PWD/target/mcp-deps}"
mkdir -p "$deps"
stamp="$deps/.stamp-$FS_VERSION-$EVERYTHING_VERSION-$PY_MCP_VERSION-$CONFORMANCE_VERSION"
if [ ! -f "$stamp" ]; then
  (
    cd "$deps"
    [ -f package.json ] || echo '{"private":true}' > package.json
    npm install --silent --no-audit --no-fund \
      "@modelcontextprotocol/server-filesystem@$FS_VERSION" \
      "@modelcontextprotocol/server-everything@$EVERYTHING_VERSION" \
      "@modelcontextprotocol/conformance@$CONFORMANCE_VERSION" >&2
    [ -x venv/bin/python ] || python3 -m venv venv >&2
    venv/bin/pip install --quiet --disable-pip-version-check "mcp==$PY_MCP_VERSION" >&2
  )
  touch "$stamp"
fi
echo "$deps"
