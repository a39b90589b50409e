#!/usr/bin/env python3
"""Demo sources for scripts/demo.sh (standard library only).

  seed URL N            create N users in the SCIM server at URL (Bulk, in chunks)
  proxy UPSTREAM PORT START_INDEX
                        a fault-injecting SCIM proxy on 127.0.0.1:PORT: forwards
                        reads to UPSTREAM, except that the list page at
                        startIndex=START_INDEX answers 503 every time (a flaky
                        backend dropping one page of a sync), and writes (PATCH,
                        DELETE) answer 204 without doing anything (the silent
                        deprovisioning failure).
  ids URL N             print the ids of the first N users at URL, one per line
"""
import http.server
import json
import sys
import urllib.error
import urllib.parse
import urllib.request

SCIM_JSON = "application/scim+json"


def seed(url: str, n: int) -> None:
    chunk = 500
    for base in range(0, n, chunk):
        ops = [
            {
                "method": "POST",
                "path": "/Users",
                "bulkId": f"u{i}",
                "data": {
                    "schemas": ["urn:ietf:params:scim:schemas:core:2.0:User"],
                    "userName": f"user{i}@example.test",
                    "active": True,
                },
            }
            for i in range(base, min(base + chunk, n))
        ]
        body = json.dumps(
            {"schemas": ["urn:ietf:params:scim:api:messages:2.0:BulkRequest"], "Operations": ops}
        ).encode()
        req = urllib.request.Request(
            url.rstrip("/") + "/Bulk", data=body, method="POST", headers={"Content-Type": SCIM_JSON}
        )
        with urllib.request.urlopen(req, timeout=60) as r:
            r.read()


def proxy(upstream: str, port: int, fail_start_index: str) -> None:
    up = urllib.parse.urlsplit(upstream)

    class Handler(http.server.BaseHTTPRequestHandler):
        def do_GET(self):  # noqa: N802 (http.server's naming)
            q = urllib.parse.parse_qs(urllib.parse.urlsplit(self.path).query)
            if q.get("startIndex") == [fail_start_index] and q.get("count", ["1"]) != ["0"]:
                body = json.dumps(
                    {
                        "schemas": ["urn:ietf:params:scim:api:messages:2.0:Error"],
                        "status": "503",
                        "detail": "backend unavailable (injected by the demo proxy)",
                    }
                ).encode()
                self.send_response(503)
                self.send_header("Content-Type", SCIM_JSON)
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)
                return
            target = f"{up.scheme}://{up.netloc}{self.path}"
            req = urllib.request.Request(target, headers={"Accept": SCIM_JSON})
            try:
                with urllib.request.urlopen(req, timeout=30) as r:
                    status, body, ctype = r.status, r.read(), r.headers.get("Content-Type", SCIM_JSON)
            except urllib.error.HTTPError as e:
                status, body, ctype = e.code, e.read(), SCIM_JSON
            self.send_response(status)
            self.send_header("Content-Type", ctype)
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def _swallow(self):
            length = int(self.headers.get("Content-Length") or 0)
            if length:
                self.rfile.read(length)
            self.send_response(204)
            self.send_header("Content-Length", "0")
            self.end_headers()

        do_PATCH = _swallow  # noqa: N815
        do_DELETE = _swallow  # noqa: N815

        def log_message(self, *args):  # quiet
            pass

    http.server.ThreadingHTTPServer(("127.0.0.1", port), Handler).serve_forever()


def main() -> int:
    if len(sys.argv) == 4 and sys.argv[1] == "seed":
        seed(sys.argv[2], int(sys.argv[3]))
        return 0
    if len(sys.argv) == 4 and sys.argv[1] == "ids":
        url = sys.argv[2].rstrip("/") + f"/Users?startIndex=1&count={int(sys.argv[3])}"
        with urllib.request.urlopen(url, timeout=30) as r:
            for res in json.load(r).get("Resources", []):
                print(res["id"])
        return 0
    if len(sys.argv) == 5 and sys.argv[1] == "proxy":
        proxy(sys.argv[2], int(sys.argv[3]), sys.argv[4])
        return 0
    print(__doc__, file=sys.stderr)
    return 2


if __name__ == "__main__":
    sys.exit(main())
