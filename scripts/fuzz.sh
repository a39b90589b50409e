#!/usr/bin/env bash
# The fuzz campaign (issue 22 item 8): every cargo-fuzz target of fuzz/ for a
# fixed time each, then one table: target, seconds, executions, corpus size,
# crashes. Installs the pinned cargo-fuzz if missing; needs the nightly
# toolchain. CI runs the stable, seconds-sized version instead
# (tests/fuzz_smoke.rs).
#
#   scripts/fuzz.sh [seconds_per_target] [target...]    (default 120 s, every target)
#
# Each target starts from its committed seeds (fuzz/corpus/<t>/) and grows its
# corpus in fuzz/corpus-run/<t>/ (not committed; kept between campaigns).
# Crashes, hangs (over 10 s on one input) and out-of-memory inputs are written
# to fuzz/artifacts/<t>/; the script exits 1 when any target found one.
# FUZZ_JOBS=<n> runs n targets at once (default 1: the machine is shared).
# Leak detection is off: the bodies keep process-wide state on purpose (the
# events body's scratch sled store), and LeakSanitizer's scans took half of
# the events target's time. AddressSanitizer stays on (sled has unsafe code).
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$ROOT"

CARGO_FUZZ_VERSION="0.13.2"
SECONDS_PER_TARGET="${1:-120}"
shift || true
TIMEOUT_S=10
RSS_LIMIT_MB=2048

if ! [[ "$SECONDS_PER_TARGET" =~ ^[0-9]+$ ]] || [ "$SECONDS_PER_TARGET" -lt 1 ]; then
    echo "usage: scripts/fuzz.sh [seconds_per_target] [target...]" >&2
    exit 2
fi

have_version="$(cargo fuzz --version 2>/dev/null | awk '{print $2}' || true)"
if [ "$have_version" != "$CARGO_FUZZ_VERSION" ]; then
    echo "== installing cargo-fuzz $CARGO_FUZZ_VERSION (found: ${have_version:-none})"
    cargo install cargo-fuzz --version "$CARGO_FUZZ_VERSION" --locked
fi
if ! cargo +nightly --version >/dev/null 2>&1; then
    echo "the nightly toolchain is missing: rustup toolchain install nightly" >&2
    exit 2
fi

if [ "$#" -gt 0 ]; then
    TARGETS=("$@")
else
    mapfile -t TARGETS < <(cargo +nightly fuzz list)
fi

# -a: debug assertions and overflow checks, as in the test builds.
echo "== cargo +nightly fuzz build -a"
build_start=$(date +%s)
cargo +nightly fuzz build -a
echo "== built in $(($(date +%s) - build_start)) s"

# The events body opens a scratch sled store per process: keep those here.
SCRATCH="$(mktemp -d)"
trap 'rm -rf "$SCRATCH"' EXIT
LOGS="$ROOT/fuzz/logs"
mkdir -p "$LOGS"

run_target() {
    local t="$1"
    local corpus="$ROOT/fuzz/corpus-run/$t"
    mkdir -p "$corpus" "$ROOT/fuzz/artifacts/$t"
    cp -n "$ROOT/fuzz/corpus/$t/"* "$corpus/" 2>/dev/null || true
    local start rc=0
    start=$(date +%s)
    TMPDIR="$SCRATCH" cargo +nightly fuzz run -a "$t" "$corpus" -- \
        -max_total_time="$SECONDS_PER_TARGET" -timeout="$TIMEOUT_S" \
        -rss_limit_mb="$RSS_LIMIT_MB" -detect_leaks=0 -print_final_stats=1 \
        >"$LOGS/$t.log" 2>&1 || rc=$?
    echo "$t $(($(date +%s) - start)) $rc" >"$LOGS/$t.done"
}

echo "== fuzzing ${#TARGETS[@]} targets, ${SECONDS_PER_TARGET} s each (logs: fuzz/logs/)"
jobs_max="${FUZZ_JOBS:-1}"
for t in "${TARGETS[@]}"; do
    rm -f "$LOGS/$t.done"
    run_target "$t" &
    while [ "$(jobs -rp | wc -l)" -ge "$jobs_max" ]; do sleep 1; done
done
wait

found=0
printf '\n%-8s %8s %12s %8s %8s %8s\n' target seconds execs exec/s corpus crashes
for t in "${TARGETS[@]}"; do
    read -r _ secs rc <"$LOGS/$t.done"
    execs="$(grep -o 'stat::number_of_executed_units: *[0-9]*' "$LOGS/$t.log" | awk '{print $2}' | tail -1)"
    rate="$(grep -o 'stat::average_exec_per_sec: *[0-9]*' "$LOGS/$t.log" | awk '{print $2}' | tail -1)"
    corpus="$(find "$ROOT/fuzz/corpus-run/$t" -type f | wc -l)"
    crashes="$(find "$ROOT/fuzz/artifacts/$t" -type f \( -name 'crash-*' -o -name 'timeout-*' -o -name 'oom-*' -o -name 'leak-*' \) | wc -l)"
    printf '%-8s %8s %12s %8s %8s %8s\n' "$t" "$secs" "${execs:-?}" "${rate:-?}" "$corpus" "$crashes"
    if [ "$crashes" -gt 0 ] || [ "$rc" -ne 0 ]; then found=1; fi
done
if [ "$found" -ne 0 ]; then
    echo "findings: see fuzz/artifacts/<target>/ and fuzz/logs/<target>.log"
    exit 1
fi
