"""A certification tool's side of govledger: gate an access review on the ledger.

What a review tool asks before it lets reviewers certify access:
  1. May the review close? CheckReadiness over the review's sources; every
     blocker is printed with its code and what to do.
  2. Which deprovisionings are not confirmed? ListActions per source, every
     action whose outcome is not CONFIRMED.
  3. What did each identity look like at the review's cut-off? GetIdentity as
     of that time (folded again from the ledger's own events).

The gRPC stubs are generated from govledger's .proto files with grpcio-tools
at start (into a temporary folder): nothing here is govledger's code.

usage:
  review_gate.py --addr 127.0.0.1:50051 --token-file govledger-data/admin.token \
      --proto-dir proto --source hr [--source crm] [--identity ID]... [--cutoff RFC3339]
      [--ca server-ca.pem]

Exit codes: 0 the review may close, 3 it may not (blockers printed), 1 an error.
"""
import argparse
import datetime
import importlib
import pathlib
import sys
import tempfile

import grpc
from grpc_tools import protoc


def stubs(proto_dir: pathlib.Path):
    """Generates and imports the Python stubs of govledger/v1/*.proto."""
    out = pathlib.Path(tempfile.mkdtemp(prefix="govledger-stubs-"))
    protos = sorted(str(p.relative_to(proto_dir)) for p in (proto_dir / "govledger" / "v1").glob("*.proto"))
    include = pathlib.Path(protoc.__file__).parent / "_proto"
    rc = protoc.main(["protoc", f"-I{proto_dir}", f"-I{include}", f"--python_out={out}", f"--grpc_python_out={out}", *protos])
    if rc != 0:
        sys.exit(f"protoc failed on {protos} (exit {rc})")
    sys.path.insert(0, str(out))
    return (
        importlib.import_module("govledger.v1.api_pb2"),
        importlib.import_module("govledger.v1.api_pb2_grpc"),
        importlib.import_module("govledger.v1.events_pb2"),
    )


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--addr", default="127.0.0.1:50051")
    ap.add_argument("--token-file", required=True)
    ap.add_argument("--proto-dir", default="proto", type=pathlib.Path)
    ap.add_argument("--source", action="append", default=[], help="a source in the review's scope (repeatable)")
    ap.add_argument("--identity", action="append", default=[], help="an identity under review (repeatable)")
    ap.add_argument("--cutoff", help="the review's cut-off, RFC 3339 (default: now)")
    ap.add_argument("--ca", help="PEM CA of the server's certificate (TLS)")
    args = ap.parse_args()

    api, api_grpc, events = stubs(args.proto_dir)
    token = pathlib.Path(args.token_file).read_text().strip()
    auth = [("authorization", f"Bearer {token}")]
    if args.ca:
        channel = grpc.secure_channel(args.addr, grpc.ssl_channel_credentials(pathlib.Path(args.ca).read_bytes()))
    else:
        channel = grpc.insecure_channel(args.addr)
    ledger = api_grpc.LedgerStub(channel)

    # 1. May the review close?
    r = ledger.CheckReadiness(api.CheckReadinessRequest(source_ids=args.source, identity_external_ids=args.identity), metadata=auth, timeout=30)
    if r.ready:
        print(f"READY: the review over {', '.join(args.source) or 'every source'} may close")
    else:
        print(f"NOT READY: {len(r.blockers)} blocker(s)")
        for b in r.blockers:
            print(f"  blocker {b.source_id or '-'} {b.code}: {b.message}")

    # 2. Deprovisionings that are not confirmed.
    confirmed = events.ActionOutcome.Value("ACTION_OUTCOME_CONFIRMED")
    for source in args.source:
        actions = ledger.ListActions(api.ListActionsRequest(source_id=source, limit=1000), metadata=auth, timeout=30)
        for a in actions.actions:
            if a.outcome != confirmed:
                name = events.ActionOutcome.Name(a.outcome).removeprefix("ACTION_OUTCOME_")
                print(f"  unconfirmed action {source} {a.action.action_id}: {name}: {a.outcome_detail}")

    # 3. Each identity as of the cut-off.
    if args.cutoff:
        at = datetime.datetime.fromisoformat(args.cutoff.replace("Z", "+00:00"))
        as_of = api.AsOf(time_us=int(at.timestamp() * 1_000_000))
    else:
        as_of = None
    for source in args.source:
        for ident in args.identity:
            user = events.EntityType.Value("ENTITY_TYPE_USER")
            req = api.GetIdentityRequest(source_id=source, entity_type=user, external_id=ident)
            if as_of is not None:
                req.as_of.CopyFrom(as_of)
            try:
                g = ledger.GetIdentity(req, metadata=auth, timeout=30)
            except grpc.RpcError as e:
                print(f"  identity {source}/{ident}: {e.code().name}: {e.details()}")
                continue
            i = g.identity
            active = "unknown" if not i.HasField("active") else ("active" if i.active else "inactive")
            point = f" as of seq {g.as_of.seq}" if g.HasField("as_of") else ""
            print(f"  identity {source}/{ident}{point}: {active}")
    return 0 if r.ready else 3


if __name__ == "__main__":
    sys.exit(main())
