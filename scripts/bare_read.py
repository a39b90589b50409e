#!/usr/bin/env python3
"""Bare paginated read of a SCIM 2.0 list endpoint: the no-ledger baseline.

Reads every page of BASE_URL/RESOURCE with startIndex/count (HTTP GET + JSON
parse, nothing else) and prints records, seconds and records/s. The same loop
as `bare_paginated_read` in testkit/src/scim2.rs, for checking the Rust
figures from outside cargo. Standard library only.

  scripts/bare_read.py http://127.0.0.1:8080/v2 Users 100 [--token T]
"""
import argparse
import json
import sys
import time
import urllib.request


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("base_url", help="e.g. http://127.0.0.1:8080/v2")
    ap.add_argument("resource", nargs="?", default="Users")
    ap.add_argument("page_size", nargs="?", type=int, default=100)
    ap.add_argument("--token", help="bearer token")
    a = ap.parse_args()

    headers = {"Accept": "application/scim+json"}
    if a.token:
        headers["Authorization"] = f"Bearer {a.token}"
    base = a.base_url.rstrip("/")
    start, read, pages = 1, 0, 0
    t0 = time.perf_counter()
    while True:
        url = f"{base}/{a.resource}?startIndex={start}&count={a.page_size}"
        with urllib.request.urlopen(urllib.request.Request(url, headers=headers)) as r:
            page = json.load(r)
        pages += 1
        resources = page.get("Resources") or []
        read += len(resources)
        # Advance by what the page held: the server may cut count to its maximum.
        if not resources or start - 1 + len(resources) >= page["totalResults"]:
            break
        start += len(resources)
    took = time.perf_counter() - t0
    print(
        f"{a.resource} page={a.page_size}: {read} records, {pages} pages, "
        f"{took:.2f} s, {read / took if took else 0:.0f} records/s"
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
