#!/usr/bin/env bash
# Benchmarks (issue 4): builds govledger and govledger-bench in release, runs
# the benchmark at SCALE (smoke | medium | full; default medium) and writes the
# table, the machine, the date, the commit and this command to BENCHMARKS.md.
# Everything is local: the benchmark starts its own nats-server and scim2-server
# (pinned, from .tools/, installed here if missing) on free ports and stops them.
#   scripts/bench.sh            # medium: a few minutes on 2 cores
#   scripts/bench.sh smoke      # seconds
#   scripts/bench.sh full       # 1M identities / 5M events: long
# Extra arguments after SCALE go to govledger-bench (e.g. --strict).
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$ROOT"

SCALE="${1:-medium}"
case "$SCALE" in
  smoke|medium|full) ;;
  *) echo "usage: scripts/bench.sh [smoke|medium|full] [govledger-bench flags...]" >&2; exit 2 ;;
esac
shift || true

"$ROOT/scripts/install-tools.sh"
export GOVLEDGER_NATS_SERVER="$ROOT/.tools/venv/bin/nats-server"
export GOVLEDGER_SCIM2_SERVER="$ROOT/.tools/venv/bin/scim2-server"

cargo build --release -p govledger -p govledger-bench
exec cargo run --release -q -p govledger-bench -- --scale "$SCALE" --write BENCHMARKS.md --no-build "$@"
