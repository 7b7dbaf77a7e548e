#!/usr/bin/env bash
# Runs every check and test of the workspace: formatting, clippy, unit tests,
# the store conformance suite (SQLite and PostgreSQL) and the end-to-end
# suite that drives the real binary (SQLite and PostgreSQL).
set -euo pipefail
cd "$(dirname "$0")/.."

scripts/ensure-postgres.sh
cargo fmt --all -- --check
cargo clippy --workspace --all-targets --locked -- -D warnings
cargo test --workspace --locked
