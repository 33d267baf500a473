"""The control server: one policy table per function, versioned, over HTTP with tokens.

    GET  /v1/policy/<function>   -> {"function", "version", "table"}     controller token, or that function's CP token
         ?after=N&wait=S         ... answered once the version is past N, or after S seconds (at most
                                 LONG_POLL_MAX_S) with the current one: a CP learns a change at once
                                 while asking only every S seconds when nothing changes
    PUT  /v1/policy/<function>   <- a table {"allow": [...], "rate_pps": N, "burst": N, "reply": "..."}
                                 -> the stored policy                    controller token
    GET  /v1/policy              -> every function's policy (a list)     controller token

Every request carries ``Authorization: Bearer TOKEN`` (see ``tokens``): 401 when it is missing or
no token this server knows, 403 when a CP's token asks for more than its own function's table.
Every answer is JSON, an error one line ``{"error": "..."}``; never a traceback.

A table is stored only when both its shape (``control.policy.validate_table``) and the DP's
own parser accept it: the server publishes exactly what it would store through the DP's shared
area writer (``dpdk_stub.policy_shm``, the agent's 64 KiB area: a table whose encoding does not
fit is refused), reads it back as the DP does and builds the DP's ``Policy`` from it
(``control.policy.dp_accepts``: the agent's CP relay and ``seed_table`` run the same check). A
refused table is a 400 naming what is wrong, and nothing is stored.

Requests are bounded: a body needs a ``Content-Length`` (411 without, 400 when it is not a
number, 413 over ``MAX_BODY``), JSON nested deeper than ``MAX_DEPTH`` is refused before it is
parsed, a function name is the inventory's (``NAME``), and each connection has a read timeout
and a hard deadline, so a slow client cannot hold a handler.

The state is one JSON file (0600, written atomically: a temporary file in the same directory,
fsync, rename); a state file that does not parse stops the server at start with one line.
"""

from __future__ import annotations

import json
import socket
import ssl
import sys
import threading
import traceback
from http.server import ThreadingHTTPServer
from pathlib import Path
from urllib.parse import urlsplit

from orchestrator.control import tokens
from orchestrator.control.policy import (DP_AREA, FUNCTION_NAME as NAME, PolicyRefused, dp_accepts, json_depth, shape,
                                         validate_table)
from orchestrator.errors import VnfctlError
from orchestrator.files import write_private
from orchestrator.httpjson import JsonHandler, scheme_of, server_context, serve_tls

__all__ = ["DP_AREA", "PolicyBook", "PolicyRefused", "dp_accepts", "json_depth", "make_server", "serve", "shape",
           "validate_table"]

DEFAULT_STATE = Path("/var/lib/vnfctl/control/policies.json")
MAX_BODY = 64 * 1024            # a table's JSON; the DP's area holds 64 KiB of it anyway
MAX_DEPTH = 8                   # a table is 2 deep; anything much deeper is not a table
READ_TIMEOUT = 5.0              # seconds a client may stay silent mid-request
REQUEST_DEADLINE = 15.0         # seconds a connection may last at all
LONG_POLL_MAX_S = 10.0          # the longest a GET may wait for a newer version (below the deadline)


# -- validation -----------------------------------------------------------------------------------
def parse_body(data: bytes):
    """The JSON document of a request body, or PolicyRefused naming what is wrong."""
    if json_depth(data) > MAX_DEPTH:
        raise PolicyRefused(f"the body nests deeper than {MAX_DEPTH} levels: not a policy table")
    try:
        return json.loads(data)
    except (ValueError, RecursionError) as exc:   # UnicodeDecodeError and JSONDecodeError are ValueErrors
        raise PolicyRefused(f"the body is not JSON: {str(exc)[:200]}") from None


def check_function(name) -> str:
    if not isinstance(name, str) or not NAME.match(name):
        raise PolicyRefused(f"{str(name)[:40]!r} is not a function name (lowercase letters, digits and '-', "
                            f"starting with a letter, at most 16)")
    return name


def long_poll(query: str) -> tuple[int | None, float]:
    """Pure: (after, wait seconds) from a GET's query ('after=3&wait=10'), (None, 0) without one;
    Refusal 400 naming what is wrong."""
    from urllib.parse import parse_qs

    try:
        fields = parse_qs(query, strict_parsing=bool(query), max_num_fields=4)
    except ValueError:
        raise Refusal(400, f"query {query[:60]!r} is not after=VERSION&wait=SECONDS") from None
    if set(fields) - {"after", "wait"} or any(len(v) != 1 for v in fields.values()):
        raise Refusal(400, f"query {query[:60]!r}: only after=VERSION and wait=SECONDS, once each")
    if "after" not in fields:
        if fields:
            raise Refusal(400, "wait=SECONDS needs after=VERSION")
        return None, 0.0
    try:
        after = int(fields["after"][0])
        wait_s = float(fields.get("wait", ["0"])[0])
    except ValueError:
        raise Refusal(400, f"query {query[:60]!r}: after is a whole number, wait a number of seconds") from None
    if not (0 <= after < 2**63) or not (0 <= wait_s <= LONG_POLL_MAX_S):
        raise Refusal(400, f"after must be 0 or more and wait 0 to {LONG_POLL_MAX_S:g} seconds")
    return after, wait_s


# -- the book ---------------------------------------------------------------------------------------
def load_state(path: Path) -> dict[str, dict]:
    """Every function's policy from the state file ({} when there is none yet); VnfctlError with
    one line naming the file when it does not parse or holds something that is not a policy."""
    try:
        text = path.read_text()
    except FileNotFoundError:
        return {}
    except (OSError, UnicodeDecodeError) as exc:
        raise VnfctlError(f"control state {path}: cannot read: {getattr(exc, 'strerror', None) or exc}") from None
    try:
        doc = json.loads(text)
        if not isinstance(doc, dict):
            raise PolicyRefused("not a mapping of functions to policies")
        for name, rec in doc.items():
            check_function(name)
            if not isinstance(rec, dict) or rec.get("function") != name or isinstance(rec.get("version"), bool) \
                    or not isinstance(rec.get("version"), int) or rec["version"] < 1 \
                    or not isinstance(rec.get("table"), dict):
                raise PolicyRefused(f"{name}: not a policy record (function, version, table)")
            shape(rec["table"])
    except (ValueError, RecursionError) as exc:
        raise VnfctlError(f"control state {path} is corrupt: {str(exc)[:200]} (restore it, or move it away to "
                          f"start with no policies)") from None
    return doc


class PolicyBook:
    """Every function's policy with its version; each change written atomically before it is
    answered (a change that cannot be saved is not made)."""

    def __init__(self, path: Path):
        self.path = Path(path)
        self.lock = threading.Lock()
        self.changed = threading.Condition(self.lock)
        self.policies: dict[str, dict] = load_state(self.path)

    def get(self, function: str) -> dict | None:
        with self.lock:
            return self.policies.get(function)

    def get_after(self, function: str, after: int, wait_s: float) -> dict | None:
        """The function's policy once its version is past ``after``, or its current one after
        ``wait_s`` seconds (a long poll)."""
        with self.changed:
            self.changed.wait_for(lambda: self.policies.get(function, {}).get("version", 0) > after, wait_s)
            return self.policies.get(function)

    def all(self) -> list[dict]:
        with self.lock:
            return [self.policies[f] for f in sorted(self.policies)]

    def put(self, function: str, table) -> dict:
        """Store ``table`` as the function's next version; PolicyRefused (a ValueError) when the
        name, the table's shape or the DP refuses it."""
        check_function(function)
        table = shape(table)
        with self.lock:
            version = self.policies.get(function, {}).get("version", 0) + 1
            stored = dict(table, version=version)
            dp_accepts(version, stored)
            record = {"function": function, "version": version, "table": stored}
            self._save({**self.policies, function: record})
            self.policies[function] = record
            self.changed.notify_all()
            return record

    def _save(self, policies: dict) -> None:
        write_private(self.path, json.dumps(policies, indent=1, sort_keys=True))


# -- HTTP ---------------------------------------------------------------------------------------------
class Refusal(Exception):
    """An answer other than 200, raised from deep in a request and sent by the dispatcher."""

    def __init__(self, status: int, message: str, headers: dict | None = None):
        super().__init__(message)
        self.status, self.message, self.headers = status, message, headers or {}


class _Handler(JsonHandler):
    server_version = "vnfctl-control/2"
    timeout = READ_TIMEOUT            # StreamRequestHandler puts it on the socket: each read waits at most this

    # -- connection bounds --------------------------------------------------------------------
    def setup(self):
        super().setup()
        # NOTE: the read timeout bounds one silence; the deadline bounds a client that trickles.
        self._deadline = threading.Timer(REQUEST_DEADLINE, self._expire)
        self._deadline.daemon = True
        self._deadline.start()

    def _expire(self):
        try:
            self.connection.shutdown(socket.SHUT_RDWR)
        except OSError:
            pass

    def finish(self):
        self._deadline.cancel()
        try:
            super().finish()
        except OSError:
            pass

    def send_error(self, code, message=None, explain=None):
        """The base class's own refusals (a bad request line, too many headers, an unknown method)
        as one JSON line, like every other answer."""
        self.close_connection = True
        if self.request_version == "HTTP/0.9":     # a line too garbled to name its version: answer in 1.0
            self.request_version = "HTTP/1.0"
        try:
            self._answer(code, {"error": message or self.responses.get(code, ("error",))[0]})
        except OSError:
            pass

    def _answer(self, code: int, doc, headers: dict | None = None) -> None:
        body = json.dumps(doc).encode()
        self.send_response(code)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(body)))
        for key, value in (headers or {}).items():
            self.send_header(key, value)
        if code >= 400:
            self.send_header("Connection", "close")
            self.close_connection = True
        self.end_headers()
        if self.command != "HEAD":
            self.wfile.write(body)

    def _linger(self) -> None:
        """After refusing a request whose body was not read: stop writing, then read (briefly,
        boundedly) what the client still sends, so closing does not reset the connection before
        the client has read the answer."""
        try:
            self.wfile.flush()
            self.connection.shutdown(socket.SHUT_WR)
            self.connection.settimeout(0.5)
            for _ in range(16):
                if not self.connection.recv(65536):
                    break
        except OSError:
            pass

    # -- dispatch -------------------------------------------------------------------------------
    def _dispatch(self, method: str) -> None:
        self._body_read = False
        try:
            try:
                self._answer(200, self._route(method))
            except Refusal as r:
                self._answer(r.status, {"error": r.message}, r.headers)
                if method == "PUT" and not self._body_read:
                    self._linger()
        except OSError:
            self.close_connection = True            # the client went away (or its deadline passed)
        except Exception:  # noqa: BLE001 - a bug: one line to the client, the traceback to the log
            traceback.print_exc(file=sys.stderr)
            try:
                self._answer(500, {"error": "internal error of the control server (see its log)"})
            except OSError:
                pass

    def do_GET(self):
        self._dispatch("GET")

    def do_PUT(self):
        self._dispatch("PUT")

    def do_HEAD(self):
        self._dispatch("HEAD")

    def _refuse_method(self):
        self._answer(405, {"error": f"method {self.command} not allowed: GET or PUT /v1/policy/<function>"},
                     {"Allow": "GET, PUT"})
        self._linger()

    do_POST = do_DELETE = do_PATCH = do_OPTIONS = _refuse_method

    def _route(self, method: str):
        url = urlsplit(self.path)
        parts = url.path.strip("/").split("/")
        if parts[:2] != ["v1", "policy"] or len(parts) > 3:
            raise Refusal(404, f"no such resource: {self.path[:80]!r} (GET or PUT /v1/policy/<function>)")
        if len(parts) == 2:
            if method == "PUT":
                raise Refusal(405, "PUT /v1/policy/<function>, not /v1/policy", {"Allow": "GET"})
            self._authorize(None, write=False)
            return self.server.book.all()  # type: ignore[attr-defined]
        function = parts[2]
        try:
            check_function(function)
        except PolicyRefused as exc:
            raise Refusal(400, str(exc)) from None
        self._authorize(function, write=method == "PUT")
        book: PolicyBook = self.server.book  # type: ignore[attr-defined]
        if method == "PUT":
            try:
                return book.put(function, parse_body(self._body()))
            except PolicyRefused as exc:
                raise Refusal(400, f"policy for {function} refused: {exc}") from None
            except OSError as exc:          # the state could not be saved: nothing changed
                raise Refusal(500, f"policy for {function} not stored: cannot save the state: "
                                   f"{exc.strerror or exc}") from None
        after, wait_s = long_poll(url.query)
        policy = book.get(function) if after is None else book.get_after(function, after, wait_s)
        if policy is None:
            raise Refusal(404, f"no policy for function {function!r}")
        return policy

    def _authorize(self, function: str | None, write: bool) -> None:
        """The controller's token may do anything; a CP's token reads its function's table."""
        controller = self.server.token  # type: ignore[attr-defined]
        header = self.headers.get("Authorization", "")
        scheme, _, given = header.partition(" ")
        given = given.strip()
        challenge = {"WWW-Authenticate": 'Bearer realm="vnfctl-control"'}
        if scheme.lower() != "bearer" or not given:
            raise Refusal(401, "missing 'Authorization: Bearer TOKEN' (the controller's token, or a CP's own)",
                          challenge)
        if tokens.same(given, controller):
            return
        if function is not None and tokens.same(given, tokens.cp_token(controller, function)):
            if write:
                raise Refusal(403, f"a CP's token may only read function {function}'s policy, not change it")
            return
        raise Refusal(401, "token refused" + (f" for function {function}" if function else
                                              ": listing every policy needs the controller's token"), challenge)

    def _body(self) -> bytes:
        """The request body, bounded; Refusal for a missing, bad or oversized Content-Length, a
        chunked body, a short one or one that stalls."""
        if self.headers.get("Transfer-Encoding") is not None:
            raise Refusal(411, "send the table with a Content-Length (no Transfer-Encoding)")
        lengths = self.headers.get_all("Content-Length") or []
        if not lengths:
            raise Refusal(411, "a PUT needs a Content-Length")
        text = lengths[0].strip()
        if len(lengths) > 1 or not text.isascii() or not text.isdigit():
            raise Refusal(400, f"Content-Length {lengths[0][:20]!r} is not one byte count")
        if len(text) > 18 or int(text) > MAX_BODY:
            raise Refusal(413, f"a body of {text[:20]} bytes is over the limit of {MAX_BODY}")
        length = int(text)
        try:
            data = self.rfile.read(length)
        except TimeoutError:
            raise Refusal(408, f"the body did not arrive within {READ_TIMEOUT:g} s") from None
        self._body_read = True
        if len(data) != length:
            raise Refusal(400, f"the body ended after {len(data)} of {length} bytes")
        return data


# -- serving ------------------------------------------------------------------------------------------
class ControlServer(ThreadingHTTPServer):
    daemon_threads = True
    allow_reuse_address = True

    def __init__(self, address: tuple[str, int], book: PolicyBook, token: str):
        self.address_family = socket.AF_INET6 if ":" in address[0] else socket.AF_INET
        self.book, self.token = book, token
        super().__init__(address, _Handler)

    def handle_error(self, request, client_address):
        # NOTE: errors the handler did not answer (a client gone mid-answer): one line, no traceback.
        exc = sys.exc_info()[1]
        sys.stderr.write(f"{client_address[0]} connection error: {type(exc).__name__}: {exc}\n")


def make_server(listen: str, port: int, state: Path, token: str, tls: ssl.SSLContext | None = None) -> ControlServer:
    """A bound server, not yet serving (port 0 picks a free port: see ``server_address``);
    HTTPS only when given ``tls`` (``httpjson.server_context``)."""
    book = PolicyBook(Path(state))
    try:
        server = ControlServer((listen, port), book, token)
    except OSError as exc:
        raise VnfctlError(f"control server: cannot listen on {listen}:{port}: {exc.strerror or exc}") from None
    if tls is not None:
        serve_tls(server, tls)
    return server


def serve(listen: str, port: int, state: Path, token_file: Path, tls_cert: Path | None = None,
          tls_key: Path | None = None) -> None:
    """Serve until interrupted, HTTPS when given a certificate and its key. Every problem at
    start (token file, state file, certificate, address) is one VnfctlError line."""
    token = tokens.read_token(Path(token_file))
    tls = server_context(tls_cert, tls_key) if tls_cert else None
    server = make_server(listen, port, Path(state), token, tls)
    host = f"[{listen}]" if ":" in listen else listen
    print(f"control server on {scheme_of(server)}://{host}:{server.server_address[1]} (state {state}, "
          f"{len(server.book.policies)} policies)", file=sys.stderr, flush=True)
    try:
        server.serve_forever()
    finally:
        server.server_close()
