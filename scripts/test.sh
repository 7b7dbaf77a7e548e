#!/usr/bin/env bash
# Runs every check and test of the workspace: formatting, clippy, unit tests,
# the store conformance suite (SQLite and PostgreSQL) and the end-to-end
# suite that drives the real binary (SQLite and PostgreSQL).
set -euo pipefail
cd "$(dirname "$0")/.."

# A one-shot run gains nothing from incremental caches, which roughly double
# the size of target/; CI once ran out of disk on them.
export CARGO_INCREMENTAL="${CARGO_INCREMENTAL:-0}"
df -h . | sed 's/^/disk: /'

scripts/ensure-postgres.sh
# the reference MCP servers (npm) and the Python MCP SDK (PyPI) that
# crates/signoff-cli/tests/mcp.rs drives; the tests install them too
scripts/mcp-test-deps.sh >/dev/null
cargo fmt --all -- --check
cargo clippy --workspace --all-targets --locked -- -D warnings
cargo test --workspace --locked
# The auditor report fixture, rendered and screenshotted in headless Chromium
# (artifacts in target/report/).
scripts/report-screenshot.sh
