#!/usr/bin/env bash
# Renders the auditor report of the snapshot fixture (every exception kind
# present) and takes its screenshot and A4/Letter PDFs in headless Chromium,
# kept as test artifacts under target/report/. Installs Chromium (Debian
# package) when missing. Usage: scripts/report-screenshot.sh [COPY_PNG_TO]
set -euo pipefail
cd "$(dirname "$0")/.."
target="${CARGO_TARGET_DIR:-target}"
out="$target/report"
mkdir -p "$out"
out="$(cd "$out" && pwd)"
scripts/chromium.sh
SIGNOFF_REPORT_FIXTURE_DIR="$out" cargo test -q -p signoff-audit --lib html_snapshot >/dev/null
test -s "$out/report.html"
profile="$(mktemp -d)"
trap 'rm -rf "$profile"' EXIT
flags=(--headless --no-sandbox --disable-gpu --disable-quic --no-first-run
  --disable-background-networking --disable-component-update --disable-sync
  --hide-scrollbars "--user-data-dir=$profile")
chromium "${flags[@]}" --window-size=1280,2400 "--screenshot=$out/report.png" "file://$out/report.html" 2>/dev/null
chromium "${flags[@]}" --no-pdf-header-footer "--print-to-pdf=$out/report.pdf" "file://$out/report.html" 2>/dev/null
test -s "$out/report.png"
test -s "$out/report.pdf"
echo "report screenshot: $out/report.png, print: $out/report.pdf"
if [ $# -gt 0 ]; then cp "$out/report.png" "$1"; fi
