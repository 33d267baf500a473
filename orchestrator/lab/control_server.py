"""The control server the CPs talk to (the seed's "server" that sets a function's resources).

A small real HTTP service in the lab's ``server`` namespace. It keeps one policy table per
function and bumps the table's version on every change; CP agents poll it, operators change it
(``vnfctl policy set``). Policies persist in one JSON file so a restart keeps them.

    GET  /v1/policy/<function>   -> {"function", "version", "table"}   (404 when none)
    PUT  /v1/policy/<function>   <- a table {"allow": [...], "rate_pps": N, "burst": N, "reply": "..."}
    GET  /v1/policy              -> every function's policy
"""

from __future__ import annotations

import argparse
import json
import os
import re
import sys
import threading
from http.server import ThreadingHTTPServer
from pathlib import Path

from orchestrator.controller.policy import validate_table
from orchestrator.httpjson import JsonHandler

__all__ = ["PolicyBook", "validate_table"]

NAME = re.compile(r"^[A-Za-z0-9_.-]{1,64}$")


class PolicyBook:
    """Every function's policy with its version; saved atomically on each change."""

    def __init__(self, path: Path):
        self.path = path
        self.lock = threading.Lock()
        self.policies: dict[str, dict] = json.loads(path.read_text()) if path.exists() else {}

    def get(self, function: str) -> dict | None:
        with self.lock:
            return self.policies.get(function)

    def put(self, function: str, table: dict) -> dict:
        table = validate_table(table)
        with self.lock:
            version = self.policies.get(function, {}).get("version", 0) + 1
            self.policies[function] = {"function": function, "version": version, "table": dict(table, version=version)}
            tmp = self.path.with_suffix(".tmp")
            tmp.write_text(json.dumps(self.policies, indent=1))
            os.replace(tmp, self.path)
            return self.policies[function]


class _Handler(JsonHandler):
    server_version = "vnfctl-control/1"


    def _function(self) -> str | None:
        parts = self.path.split("?")[0].strip("/").split("/")
        if len(parts) == 3 and parts[:2] == ["v1", "policy"] and NAME.match(parts[2]):
            return parts[2]
        return None

    def do_GET(self):
        book: PolicyBook = self.server.book  # type: ignore[attr-defined]
        if self.path.rstrip("/") == "/v1/policy":
            with book.lock:
                return self.send_json(200, list(book.policies.values()))
        fn = self._function()
        policy = book.get(fn) if fn else None
        if policy is None:
            return self.send_json(404, {"error": f"no policy for function {fn!r}"})
        self.send_json(200, policy)

    def do_PUT(self):
        book: PolicyBook = self.server.book  # type: ignore[attr-defined]
        fn = self._function()
        if not fn:
            return self.send_json(404, {"error": "PUT /v1/policy/<function>"})
        try:
            length = int(self.headers.get("Content-Length", "0"))
            table = json.loads(self.rfile.read(length) or b"null")
            self.send_json(200, book.put(fn, table))
        except ValueError as exc:
            self.send_json(400, {"error": str(exc)})


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="vnfctl-control-server")
    p.add_argument("--listen", default="0.0.0.0")
    p.add_argument("--port", type=int, default=8080)
    p.add_argument("--state", required=True, help="the JSON file that keeps the policies")
    args = p.parse_args(argv)
    server = ThreadingHTTPServer((args.listen, args.port), _Handler)
    server.book = PolicyBook(Path(args.state))  # type: ignore[attr-defined]
    server.serve_forever()
    return 0


if __name__ == "__main__":
    sys.exit(main())
