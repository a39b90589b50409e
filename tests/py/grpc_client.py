"""An independent gRPC client (PyPI grpcio, not govledger's code) for the TLS tests.

usage: grpc_client.py ADDR CA_PEM TOKEN [CLIENT_CERT CLIENT_KEY]
Calls govledger.v1.Ledger/ListSources over TLS (TOKEN "" = no token) and prints
one line: "OK <response bytes>" or "<STATUS_CODE> <details>".
"""
import sys

import grpc

addr, ca, token = sys.argv[1], sys.argv[2], sys.argv[3]
cert = key = None
if len(sys.argv) > 5:
    cert = open(sys.argv[4], "rb").read()
    key = open(sys.argv[5], "rb").read()
creds = grpc.ssl_channel_credentials(
    root_certificates=open(ca, "rb").read(), private_key=key, certificate_chain=cert
)
with grpc.secure_channel(addr, creds) as ch:
    call = ch.unary_unary(
        "/govledger.v1.Ledger/ListSources",
        request_serializer=lambda b: b,
        response_deserializer=lambda b: b,
    )
    md = [("authorization", "Bearer " + token)] if token else []
    try:
        resp = call(b"", metadata=md, timeout=20)
        print("OK", len(resp))
    except grpc.RpcError as e:
        print(e.code().name, e.details())
