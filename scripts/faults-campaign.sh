#!/usr/bin/env bash
# The faults campaign (RELIABILITY.md): runs every fault test of the suite
# ROUNDS times in a row (default 10) and prints one table: what each injects,
# rounds passed and failed, and the time taken. One round of each is what CI
# runs; repeating them is what makes a rare race show.
#
#   scripts/faults-campaign.sh [ROUNDS]
#
# Needs root for the disk-full tests (they mount a small tmpfs).
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$ROOT"
ROUNDS="${1:-10}"
"$ROOT/scripts/install-tools.sh" >/dev/null
export GOVLEDGER_NATS_SERVER="$ROOT/.tools/venv/bin/nats-server"

# test binary | filter | what it injects
FAULTS=(
  "nats_supervision||NATS SIGSTOP (silent), SIGKILL of the embedded server, TriggerSync while NATS is silent"
  "nats_outage||NATS SIGKILL + restart on the same store mid-publish and mid-projection"
  "disk_full||disk full on the embedded NATS store, then on sled's disk; space freed"
  "gap||a message lost from the NATS store (a corrupted block)"
  "stream_identity||the stream deleted and created again under a running serve"
  "dropping_source||connections to the source reset mid-answer (every n-th, after n bytes)"
  "read_path|a_page_slower_than_the_request_timeout_fails_as_timeout|a slow source: a page slower than the request timeout"
  "write_verify|a_write_whose_target_stays_down_is_not_failed_without_a_read_back|the target down after a write"
)

cargo test --quiet --no-run $(for f in "${FAULTS[@]}"; do echo "--test ${f%%|*}"; done) 2>/dev/null

printf '| test | injects | rounds | passed | failed | seconds |\n|---|---|---:|---:|---:|---:|\n'
total_failed=0
for f in "${FAULTS[@]}"; do
  IFS='|' read -r bin filter what <<<"$f"
  passed=0 failed=0
  start=$(date +%s)
  for _ in $(seq "$ROUNDS"); do
    if cargo test --quiet --test "$bin" -- ${filter:+"$filter"} >/tmp/faults-campaign.$$.log 2>&1; then
      passed=$((passed + 1))
    else
      failed=$((failed + 1))
      cp /tmp/faults-campaign.$$.log "/tmp/faults-campaign-$bin-failed-$failed.log"
    fi
  done
  total_failed=$((total_failed + failed))
  printf '| `%s%s` | %s | %d | %d | %d | %d |\n' "$bin" "${filter:+ $filter}" "$what" "$ROUNDS" "$passed" "$failed" "$(($(date +%s) - start))"
done
rm -f /tmp/faults-campaign.$$.log
[ "$total_failed" -eq 0 ] || { echo "failed rounds' output: /tmp/faults-campaign-*-failed-*.log" >&2; exit 1; }
