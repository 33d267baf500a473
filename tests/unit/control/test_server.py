"""The control server (orchestrator.control): tokens, bounded requests, the DP's own parser as the
last word on a table, atomic 0600 state; its HTTP face tested on a real server on 127.0.0.1."""

import base64
import importlib.util
import json
import os
import socket
import ssl
import stat
import threading
import time
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings, strategies as st

from orchestrator import files
from orchestrator.control import server as control_server
from orchestrator.control import tokens
from orchestrator.control.check import check_control
from orchestrator.control.server import MAX_BODY, PolicyBook, PolicyRefused, dp_accepts, json_depth, make_server
from orchestrator.control.policy import validate_table
from orchestrator.errors import HttpError, InputError, VnfctlError
from orchestrator.httpjson import call as http_call

TOKEN = "c0ffee" * 8 + "0123456789abcdef"
TABLE = {"allow": ["10.10.3.0/24"], "rate_pps": 10, "reply": "hi"}


# -- the table -------------------------------------------------------------------------------------
def test_validate_normalises_prefixes():
    t = validate_table({"allow": ["10.10.3.7/24"], "rate_pps": 10, "reply": "hi"})
    assert t == {"allow": ["10.10.3.0/24"], "rate_pps": 10, "burst": 10, "reply": "hi"}


@pytest.mark.parametrize("bad", [[], {"allow": "10.0.0.0/8"}, {"allow": ["nope"]}, {"rate_pps": -1},
                                 {"reply": 5}])
def test_validate_refuses(bad):
    with pytest.raises(ValueError):
        validate_table(bad)


def test_json_depth_counts_nesting_outside_strings():
    assert json_depth(b'{"allow": ["10.0.0.0/8"]}') == 2
    assert json_depth(b'"[[[[{"') == 0
    assert json_depth(b'["\\"[[[", [1]]') == 2
    assert json_depth(b"[" * 100000) == 100000


def test_the_dp_parser_refuses_what_the_shape_check_lets_through():
    """A lone surrogate is a string to validate_table, but the DP cannot encode it as its reply."""
    table = dict(validate_table({"allow": [], "reply": "\ud800"}), version=1)
    with pytest.raises(PolicyRefused, match="DP's parser"):
        dp_accepts(1, table)
    dp_accepts(1, dict(validate_table(TABLE), version=1))


def test_a_table_over_the_dp_area_is_refused():
    table = dict(validate_table({"allow": ["10.0.0.0/8"] * 20}), version=1)
    with pytest.raises(PolicyRefused, match="exceeds the shared area"):
        dp_accepts(1, table, capacity=200)


# -- the book and its state ----------------------------------------------------------------------------
def test_versions_grow_and_persist(tmp_path):
    book = PolicyBook(tmp_path / "p.json")
    assert book.put("fn1", {"allow": []})["version"] == 1
    assert book.put("fn1", {"allow": ["10.0.0.0/8"]})["version"] == 2
    again = PolicyBook(tmp_path / "p.json")
    assert again.get("fn1")["table"]["allow"] == ["10.0.0.0/8"] and again.get("fn1")["table"]["version"] == 2


def test_state_is_0600_in_a_new_0700_directory_and_nothing_is_left_beside_it(tmp_path):
    book = PolicyBook(tmp_path / "control" / "p.json")
    book.put("fa", TABLE)
    assert stat.S_IMODE(os.stat(tmp_path / "control").st_mode) == 0o700
    assert stat.S_IMODE(os.stat(tmp_path / "control" / "p.json").st_mode) == 0o600
    assert os.listdir(tmp_path / "control") == ["p.json"]


def test_a_change_that_cannot_be_saved_is_not_made(tmp_path, monkeypatch):
    book = PolicyBook(tmp_path / "p.json")
    book.put("fa", TABLE)
    before = (tmp_path / "p.json").read_bytes()

    def fail(src, dst):
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(files.os, "replace", fail)
    with pytest.raises(OSError):
        book.put("fa", {"allow": []})
    assert book.get("fa")["version"] == 1 and (tmp_path / "p.json").read_bytes() == before
    assert os.listdir(tmp_path) == ["p.json"]


@pytest.mark.parametrize("text,why", [
    ("{nope", "corrupt"), ("[]", "not a mapping"), ('{"fa": {"function": "fb", "version": 1, "table": {}}}',
                                                   "not a policy record"),
    ('{"Bad Name": {}}', "not a function name"), ('{"fa": {"function": "fa", "version": 1, "table": {"allow": 1}}}',
                                                  "'allow' must be a list"),
])
def test_a_corrupt_state_file_is_one_line_at_start(tmp_path, text, why):
    path = tmp_path / "p.json"
    path.write_text(text)
    with pytest.raises(VnfctlError, match=why) as e:
        PolicyBook(path)
    assert str(path) in str(e.value) and "\n" not in str(e.value)


def test_serve_with_a_corrupt_state_exits_non_zero_with_one_line(tmp_path, capsys):
    from orchestrator.cli import main

    (tmp_path / "tok").write_text(TOKEN)
    os.chmod(tmp_path / "tok", 0o600)
    (tmp_path / "p.json").write_text("{nope")
    code = main(["control", "serve", "--listen", "127.0.0.1", "--port", "0", "--state", str(tmp_path / "p.json"),
                 "--token-file", str(tmp_path / "tok")])
    err = capsys.readouterr().err.strip().splitlines()
    assert code == 1 and len(err) == 1 and "is corrupt" in err[0]


# -- tokens --------------------------------------------------------------------------------------------
def test_cp_tokens_are_per_function_and_derived_from_the_controllers():
    a, b = tokens.cp_token(TOKEN, "fa"), tokens.cp_token(TOKEN, "fb")
    assert a != b and len(a) == 64 and a == tokens.cp_token(TOKEN, "fa")
    assert tokens.cp_token(TOKEN[::-1], "fa") != a


def test_the_token_file_is_made_once_0600_and_refused_when_others_can_read_it(tmp_path):
    path = tmp_path / "keys" / "control.token"
    assert tokens.ensure_token_file(path) is True
    first = tokens.read_token(path)
    assert stat.S_IMODE(os.stat(path).st_mode) == 0o600 and stat.S_IMODE(os.stat(path.parent).st_mode) == 0o700
    assert tokens.ensure_token_file(path) is False and tokens.read_token(path) == first
    assert os.listdir(path.parent) == ["control.token"]
    os.chmod(path, 0o644)
    with pytest.raises(InputError, match="chmod 600"):
        tokens.read_token(path)
    os.chmod(path, 0o600)
    path.write_text("short\n")
    with pytest.raises(InputError, match="not a token"):
        tokens.read_token(path)
    with pytest.raises(InputError, match="vnfctl control token"):
        tokens.read_token(tmp_path / "missing")


def test_control_token_prints_no_secret_unless_asked(tmp_path, capsys):
    from orchestrator.cli import main

    path = tmp_path / "tok"
    assert main(["control", "token", "--token-file", str(path)]) == 0
    out = capsys.readouterr().out
    secret = tokens.read_token(path)
    assert "created" in out and secret not in out
    assert main(["control", "token", "--token-file", str(path), "--json"]) == 0
    doc = json.loads(capsys.readouterr().out)
    assert doc == {"token_file": str(path), "created": False}
    assert main(["control", "token", "--token-file", str(path), "--show", "--cp", "fa"]) == 0
    out = capsys.readouterr().out
    assert secret in out and tokens.cp_token(secret, "fa") in out


def test_serve_has_no_default_address(capsys):
    from orchestrator.cli import main

    assert main(["control", "serve", "--token-file", "/nonexistent"]) == 2
    assert "--listen" in capsys.readouterr().err


def test_serve_takes_what_is_left_out_from_the_inventory():
    import yaml

    from orchestrator.cli.control import serve_settings
    from orchestrator.controller.inventory import parse_inventory
    from tests.unit.fakes import INVENTORY

    doc = yaml.safe_load(INVENTORY)
    doc.update(control_token_file="/etc/vnfctl/control.token", control_state="/srv/p.json")
    inv = parse_inventory(doc, "inv.yaml")
    assert serve_settings(None, None, None, None, inv) == ("192.0.2.6", 8080, Path("/srv/p.json"),
                                                           Path("/etc/vnfctl/control.token"))
    assert serve_settings("127.0.0.1", 9, "/s", "/t", inv) == ("127.0.0.1", 9, Path("/s"), Path("/t"))
    assert serve_settings("::1", None, None, "/t") == ("::1", 8080, Path("/var/lib/vnfctl/control/policies.json"),
                                                       Path("/t"))
    with pytest.raises(InputError, match="--token-file"):
        serve_settings("127.0.0.1", None, None, None)


# -- HTTP ------------------------------------------------------------------------------------------------
class Running:
    """A control server on 127.0.0.1: plain HTTP (``raw`` speaks to it byte by byte), or HTTPS
    with a certificate of the test site CA (``tls``: its certificate and key files)."""

    def __init__(self, state: Path, token: str = TOKEN, tls: tuple[Path, Path] | None = None):
        from orchestrator.httpjson import server_context

        self.server = make_server("127.0.0.1", 0, state, token, server_context(*tls) if tls else None)
        self.port = self.server.server_address[1]
        self.state = state
        self.scheme = "https" if tls else "http"
        threading.Thread(target=self.server.serve_forever, args=(0.05,), daemon=True).start()

    @property
    def url(self) -> str:
        return f"{self.scheme}://127.0.0.1:{self.port}"

    def raw(self, data: bytes, half_close: bool = True) -> tuple[int, dict]:
        """Send ``data`` as is; (status, JSON body) of the answer."""
        with socket.create_connection(("127.0.0.1", self.port), timeout=10) as s:
            try:
                s.sendall(data)
                if half_close:
                    s.shutdown(socket.SHUT_WR)
            except OSError:
                pass                # the server answered and closed before taking everything
            reply = b""
            while True:
                try:
                    chunk = s.recv(65536)
                except ConnectionResetError:
                    break
                if not chunk:
                    break
                reply += chunk
        head, _, body = reply.partition(b"\r\n\r\n")
        status = int(head.split(b" ", 2)[1])
        return status, json.loads(body)

    def request(self, method: str, path: str, body=None, token: str | None = TOKEN, headers=None,
                raw_body: bytes | None = None) -> tuple[int, dict]:
        data = raw_body if raw_body is not None else (json.dumps(body).encode() if body is not None else b"")
        lines = [f"{method} {path} HTTP/1.1", "Host: test", "Connection: close"]
        if token is not None:
            lines.append(f"Authorization: Bearer {token}")
        hdrs = {"Content-Length": str(len(data))} if method == "PUT" else {}
        hdrs.update(headers or {})
        lines += [f"{k}: {v}" for k, v in hdrs.items() if v is not None]
        return self.raw(("\r\n".join(lines) + "\r\n\r\n").encode() + data)

    def close(self):
        self.server.shutdown()
        self.server.server_close()


@pytest.fixture
def srv(tmp_path):
    s = Running(tmp_path / "control" / "policies.json")
    yield s
    s.close()


@pytest.fixture(scope="module")
def pki(tmp_path_factory):
    """A site CA and a control server certificate for 127.0.0.1: (CA certificate, cert, key)."""
    from orchestrator.management.ca import init_ca, issue_service

    d = tmp_path_factory.mktemp("pki")
    ca, _ = init_ca(d / "ca")
    cert, key = issue_service(d / "ca", "control", ["127.0.0.1"], d / "tls")
    return ca, cert, key


@pytest.fixture
def tls_srv(tmp_path, pki):
    s = Running(tmp_path / "control" / "policies.json", tls=pki[1:])
    yield s
    s.close()


def _one_line_error(doc) -> str:
    assert isinstance(doc, dict) and set(doc) == {"error"} and "\n" not in doc["error"]
    return doc["error"]


def test_get_put_with_the_controllers_token(srv):
    assert srv.request("GET", "/v1/policy/fa")[0] == 404
    status, doc = srv.request("PUT", "/v1/policy/fa", TABLE)
    assert status == 200 and doc["version"] == 1 and doc["table"]["allow"] == ["10.10.3.0/24"]
    assert srv.request("GET", "/v1/policy/fa") == (200, doc)
    assert srv.request("GET", "/v1/policy") == (200, [doc])


@pytest.mark.parametrize("token,status", [(None, 401), ("", 401), ("wrong" * 8, 401)])
def test_no_or_a_wrong_token_is_refused(srv, token, status):
    for method, path in (("GET", "/v1/policy/fa"), ("GET", "/v1/policy"), ("PUT", "/v1/policy/fa")):
        got, doc = srv.request(method, path, TABLE if method == "PUT" else None, token=token)
        assert got == status, (method, path)
        _one_line_error(doc)
    assert not srv.state.exists()


def test_a_basic_scheme_is_not_a_bearer_token(srv):
    status, doc = srv.request("GET", "/v1/policy", token=None, headers={"Authorization": f"Basic {TOKEN}"})
    assert status == 401 and "Bearer" in _one_line_error(doc)


def test_a_cp_token_reads_only_its_own_function_and_changes_nothing(srv):
    srv.request("PUT", "/v1/policy/fa", TABLE)
    srv.request("PUT", "/v1/policy/fb", TABLE)
    cp = tokens.cp_token(TOKEN, "fa")
    assert srv.request("GET", "/v1/policy/fa", token=cp)[0] == 200
    assert srv.request("GET", "/v1/policy/fb", token=cp)[0] == 401
    assert srv.request("GET", "/v1/policy", token=cp)[0] == 401
    status, doc = srv.request("PUT", "/v1/policy/fa", {"allow": []}, token=cp)
    assert status == 403 and "only read" in _one_line_error(doc)
    assert srv.request("GET", "/v1/policy/fa")[1]["version"] == 1


@pytest.mark.parametrize("headers,status", [
    ({"Content-Length": "-1"}, 400), ({"Content-Length": "abc"}, 400), ({"Content-Length": "1e3"}, 400),
    ({"Content-Length": str(10 ** 12)}, 413), ({"Content-Length": str(MAX_BODY + 1)}, 413),
    ({"Content-Length": None}, 411), ({"Content-Length": None, "Transfer-Encoding": "chunked"}, 411),
    ({"Content-Length": "100"}, 400),               # more announced than sent (the client then stops sending)
])
def test_content_length_is_bounded_and_answered_at_once(srv, headers, status):
    t0 = time.monotonic()
    got, doc = srv.request("PUT", "/v1/policy/fa", TABLE, headers=headers)
    assert got == status and time.monotonic() - t0 < 3
    _one_line_error(doc)
    assert not srv.state.exists()


def test_a_body_over_the_limit_is_refused(srv):
    body = json.dumps({"allow": [], "reply": "x" * (MAX_BODY + 10)}).encode()
    status, doc = srv.request("PUT", "/v1/policy/fa", raw_body=body)
    assert status == 413 and "over the limit" in _one_line_error(doc)
    assert not srv.state.exists()


def test_deep_json_is_refused_before_it_is_parsed(srv):
    for body in (b"[" * 60000, b'{"a":' * 10000 + b"1" + b"}" * 10000):
        status, doc = srv.request("PUT", "/v1/policy/fa", raw_body=body)
        assert status == 400 and "nests deeper" in _one_line_error(doc)
    assert not srv.state.exists()


def test_a_table_the_dp_refuses_is_a_400_and_nothing_is_stored(srv):
    status, doc = srv.request("PUT", "/v1/policy/fa", raw_body=b'{"allow": [], "reply": "\\ud800"}')
    assert status == 400 and "DP's parser" in _one_line_error(doc)
    # within the body limit, but 1.2.3.4 is stored as 1.2.3.4/32: the DP's 64 KiB area cannot hold it
    body = json.dumps({"allow": ["1.2.3.4"] * 6000}, separators=(",", ":")).encode()
    assert len(body) < MAX_BODY
    status, doc = srv.request("PUT", "/v1/policy/fa", raw_body=body)
    assert status == 400 and "exceeds the shared area" in _one_line_error(doc)
    assert not srv.state.exists()


@pytest.mark.parametrize("method,path,status", [
    ("GET", "/v1/policy/Not_A_Name", 400), ("GET", "/v1/policy/" + "a" * 17, 400), ("GET", "/nope", 404),
    ("GET", "/v1/policy/fa/x", 404), ("DELETE", "/v1/policy/fa", 405), ("POST", "/v1/policy/fa", 405),
    ("BREW", "/v1/policy/fa", 501), ("PUT", "/v1/policy", 405),
])
def test_other_requests_get_one_json_line(srv, method, path, status):
    got, doc = srv.request(method, path, {} if method == "PUT" else None)
    assert got == status
    _one_line_error(doc)


def test_a_malformed_request_line_gets_json_too(srv):
    status, doc = srv.raw(b"GARBAGE\r\n\r\n")
    assert status == 400
    _one_line_error(doc)


def test_a_slow_client_does_not_hold_a_handler(srv, monkeypatch):
    monkeypatch.setattr(control_server._Handler, "timeout", 0.5)
    monkeypatch.setattr(control_server, "REQUEST_DEADLINE", 1.5)
    silent = socket.create_connection(("127.0.0.1", srv.port))
    trickle = socket.create_connection(("127.0.0.1", srv.port))
    try:
        t0 = time.monotonic()
        silent.sendall(b"PUT /v1/policy/fa HTTP/1.1\r\n")
        for _ in range(20):                         # one byte every 0.2 s: each read within the timeout
            try:
                trickle.sendall(b"X")
            except OSError:
                break
            time.sleep(0.2)
        for sock in (silent, trickle):              # both closed by the server, the trickle by its deadline
            sock.settimeout(5)
            try:
                while sock.recv(65536):
                    pass
            except ConnectionResetError:
                pass
        assert time.monotonic() - t0 < 5
        assert srv.request("GET", "/v1/policy")[0] == 200      # and others were served meanwhile
    finally:
        silent.close()
        trickle.close()


# random requests: always a clean 4xx, one JSON line, nothing stored -----------------------------------------
_header_name = st.text(st.characters(min_codepoint=0x41, max_codepoint=0x7A, whitelist_categories=("Lu", "Ll")),
                       min_size=1, max_size=12).filter(lambda n: n.lower() not in (
                           "content-length", "transfer-encoding", "authorization", "host", "connection", "expect"))
_header_value = st.text(st.characters(min_codepoint=0x20, max_codepoint=0x7E), max_size=40).map(str.strip)
_not_a_prefix = st.text(max_size=20).filter(lambda s: not _is_prefix(s))


def _is_prefix(s) -> bool:
    import ipaddress

    try:
        ipaddress.IPv4Network(str(s), strict=False)
        return True
    except ValueError:
        return False


_bad_tables = st.one_of(
    st.fixed_dictionaries({"allow": st.lists(_not_a_prefix, min_size=1, max_size=4)}),
    st.fixed_dictionaries({"rate_pps": st.one_of(st.integers(max_value=-1), st.text(), st.booleans(),
                                                 st.integers(min_value=2 ** 1100))}),
    st.fixed_dictionaries({"reply": st.one_of(st.integers(), st.text(min_size=513, max_size=600), st.none())}),
    st.lists(st.integers(), max_size=3), st.text(max_size=10), st.integers(),
).map(lambda t: json.dumps(t).encode())
_bad_bodies = st.one_of(
    _bad_tables,
    st.binary(max_size=300).map(lambda b: b"\x00" + b),                     # never JSON
    st.integers(min_value=9, max_value=200).map(lambda n: b"[" * n + b"]" * n),   # too deep
)
_bad_lengths = st.one_of(
    st.integers(max_value=-1).map(str), st.integers(min_value=MAX_BODY + 1).map(str),
    st.text(st.characters(min_codepoint=0x21, max_codepoint=0x7E), min_size=1, max_size=10)
    .filter(lambda s: not s.isdigit()),
)


@pytest.fixture(scope="module")
def shared(tmp_path_factory):
    s = Running(tmp_path_factory.mktemp("prop") / "policies.json")
    yield s
    s.close()


@settings(max_examples=80, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(body=_bad_bodies, length=st.one_of(st.none(), _bad_lengths), extra=st.dictionaries(_header_name,
       _header_value, max_size=4), function=st.sampled_from(["fa", "fb-2"]))
def test_random_bad_requests_get_a_clean_4xx_and_store_nothing(shared, body, length, extra, function):
    headers = dict(extra)
    if length is not None:
        headers["Content-Length"] = length
    status, doc = shared.request("PUT", f"/v1/policy/{function}", raw_body=body, headers=headers)
    assert 400 <= status < 500, (status, doc)
    _one_line_error(doc)
    assert not shared.state.exists()
    assert shared.request("GET", "/v1/policy") == (200, [])


# -- the CP agent, the controller and the site check against a real server -------------------------------
def _cp_agent():
    spec = importlib.util.spec_from_file_location("cp_agent", Path(__file__).parents[3] / "images/guest/cp_agent.py")
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


@pytest.mark.parametrize("good", [True, False])
def test_the_cp_agent_polls_with_its_own_token(srv, good, capsys):
    cp_agent = _cp_agent()
    srv.request("PUT", "/v1/policy/fa", TABLE)
    state = cp_agent.CpState("fa-cp", "boot")
    stop = threading.Event()
    token = tokens.cp_token(TOKEN, "fa" if good else "fb")
    t = threading.Thread(target=cp_agent.poll_policy, args=(state, srv.url, "fa", stop, 0.05),
                         kwargs={"token": token, "long_poll_s": 0.3})
    t.start()
    time.sleep(0.5)
    stop.set()
    t.join()
    if good:
        assert state.table_version == 1 and state.table["reply"] == "hi"
    else:
        assert state.table is None
        assert capsys.readouterr().out.count("refused this CP's token (401)") == 1


@pytest.mark.parametrize("trusted", [True, False])
def test_the_cp_agent_polls_an_https_server_verified_against_the_ca_on_its_command_line(tls_srv, pki, tmp_path,
                                                                                        trusted, capsys):
    """The CA as the controller puts it on the command line (base64 DER): the table arrives; a
    server of another CA gets no token and gives no table, said once on the console."""
    from orchestrator.management.ca import init_ca

    cp_agent = _cp_agent()
    http_call("PUT", f"{tls_srv.url}/v1/policy/fa", TABLE, token=TOKEN, ca_file=pki[0])
    ca = pki[0] if trusted else init_ca(tmp_path / "other")[0]
    der = ssl.PEM_cert_to_DER_cert(ca.read_text())
    state = cp_agent.CpState("fa-cp", "boot")
    stop = threading.Event()
    t = threading.Thread(target=cp_agent.poll_policy, args=(state, tls_srv.url, "fa", stop, 0.05),
                         kwargs={"token": tokens.cp_token(TOKEN, "fa"), "ca": base64.b64encode(der).decode(),
                                 "long_poll_s": 0.3})
    t.start()
    time.sleep(0.6)
    stop.set()
    t.join()
    if trusted:
        assert state.table_version == 1 and state.table["reply"] == "hi"
    else:
        assert state.table is None
        assert capsys.readouterr().out.count("the control server is not the site's") == 1


def test_a_long_poll_is_answered_as_soon_as_a_newer_version_is_stored_or_when_its_wait_ends(srv):
    srv.request("PUT", "/v1/policy/fa", TABLE)
    t0 = time.monotonic()
    status, doc = srv.request("GET", "/v1/policy/fa?after=1&wait=0.5")
    assert status == 200 and doc["version"] == 1 and 0.45 <= time.monotonic() - t0 < 3
    assert srv.request("GET", "/v1/policy/fa?after=0&wait=10")[1]["version"] == 1     # already newer: at once
    got = {}

    def ask():
        got["at"] = time.monotonic()
        got["answer"] = srv.request("GET", "/v1/policy/fa?after=1&wait=10")
        got["took"] = time.monotonic() - got["at"]

    asker = threading.Thread(target=ask)
    asker.start()
    time.sleep(0.3)
    srv.request("PUT", "/v1/policy/fa", dict(TABLE, reply="changed"))
    asker.join(5)
    assert got["answer"][1]["version"] == 2 and got["answer"][1]["table"]["reply"] == "changed"
    assert got["took"] < 2


@pytest.mark.parametrize("query", ["after=x", "after=1&wait=11", "after=-1", "wait=3", "after=1&after=2",
                                   "after=1&wait=nan", "after=1&wait=inf", "who=1", "after=1&wait=1&x=2", "&&"])
def test_a_long_poll_query_that_is_not_one_is_refused_in_one_line(srv, query):
    srv.request("PUT", "/v1/policy/fa", TABLE)
    status, doc = srv.request("GET", f"/v1/policy/fa?{query}")
    assert status == 400 and _one_line_error(doc)


def test_the_cp_agent_learns_a_change_at_once_between_two_long_polls(srv):
    cp_agent = _cp_agent()
    srv.request("PUT", "/v1/policy/fa", TABLE)
    state = cp_agent.CpState("fa-cp", "boot")
    stop = threading.Event()
    t = threading.Thread(target=cp_agent.poll_policy, args=(state, srv.url, "fa", stop, 0.05),
                         kwargs={"token": tokens.cp_token(TOKEN, "fa"), "long_poll_s": 5.0})
    t.start()
    try:
        deadline = time.monotonic() + 3
        while state.table_version != 1 and time.monotonic() < deadline:
            time.sleep(0.02)
        time.sleep(0.3)                      # now it waits in a long poll after version 1
        srv.request("PUT", "/v1/policy/fa", dict(TABLE, reply="v2"))
        changed = time.monotonic()
        while state.table_version != 2 and time.monotonic() < changed + 3:
            time.sleep(0.01)
        assert state.table_version == 2 and time.monotonic() - changed < 1.0
    finally:
        stop.set()
        t.join(10)


def _controller(tmp_path, url: str, token_file, site_ca: Path | None = None, plain_http: bool = False):
    import yaml

    from orchestrator.controller.controller import Controller
    from orchestrator.controller.inventory import parse_inventory
    from orchestrator.controller.state import State
    from tests.unit.fakes import INVENTORY

    doc = yaml.safe_load(INVENTORY)
    doc["control_url"] = url
    doc["plain_http"] = plain_http
    if site_ca is not None:
        doc["site_ca"] = str(site_ca)
    if token_file is not None:
        doc["control_token_file"] = str(token_file)
    return Controller(parse_inventory(doc, "inv.yaml"), State(tmp_path / "controller.db"))


def _token_file(tmp_path, token: str) -> Path:
    path = tmp_path / "control.token"
    path.write_text(token + "\n")
    os.chmod(path, 0o600)
    return path


def test_the_controller_sends_its_token_and_names_the_file_when_refused(tls_srv, tmp_path, pki):
    srv, ca = tls_srv, pki[0]
    ctl = _controller(tmp_path, srv.url, _token_file(tmp_path, TOKEN), ca)
    assert ctl.http("PUT", f"{srv.url}/v1/policy/fa", TABLE)["version"] == 1
    assert ctl.http("GET", f"{srv.url}/v1/policy/fa")["version"] == 1
    ctl.close()
    wrong = _controller(tmp_path, srv.url, _token_file(tmp_path, "f" * 64), ca)
    with pytest.raises(HttpError, match="control_token_file .*control.token must hold the token") as e:
        wrong.http("GET", f"{srv.url}/v1/policy/fa")
    assert e.value.status == 401
    wrong.close()
    none = _controller(tmp_path, srv.url, None, ca)
    with pytest.raises(InputError, match="no control_token_file"):
        none.http("GET", f"{srv.url}/v1/policy/fa")
    none.close()


def test_the_controller_trusts_only_the_site_ca_and_the_server_speaks_no_plain_http(tls_srv, tmp_path):
    """A server whose certificate is not the site CA's is refused in one line before the token
    is sent; a plain-HTTP request to the HTTPS port is no request."""
    from orchestrator.management.ca import init_ca

    other, _ = init_ca(tmp_path / "other-ca")
    ctl = _controller(tmp_path, tls_srv.url, _token_file(tmp_path, TOKEN), other)
    with pytest.raises(HttpError, match="certificate verify failed") as e:
        ctl.http("GET", f"{tls_srv.url}/v1/policy")
    assert "\n" not in str(e.value)
    ctl.close()
    missing = _controller(tmp_path, tls_srv.url, _token_file(tmp_path, TOKEN), tmp_path / "none.pem")
    with pytest.raises(HttpError, match="site CA certificate .*none.pem cannot be read"):
        missing.http("GET", f"{tls_srv.url}/v1/policy")
    missing.close()
    with pytest.raises(HttpError):
        http_call("GET", f"http://127.0.0.1:{tls_srv.port}/v1/policy", token=TOKEN, timeout=5)


def test_a_plain_http_control_url_only_as_the_inventory_says(srv, tmp_path):
    with pytest.raises(InputError, match="is plain HTTP: .*plain_http: true"):
        _controller(tmp_path, srv.url, _token_file(tmp_path, TOKEN))
    ctl = _controller(tmp_path, srv.url, _token_file(tmp_path, TOKEN), plain_http=True)
    assert ctl.http("GET", f"{srv.url}/v1/policy") == []
    ctl.close()


def test_the_cp_guest_gets_its_functions_token_on_its_command_line(tmp_path, pki):
    from orchestrator.agent.protocol import FetchImageReply
    from orchestrator.virt.accel import AccelChoice
    from tests.unit.fakes import SPEC

    ca = pki[0]
    ctl = _controller(tmp_path, "https://192.0.2.6:8080", _token_file(tmp_path, TOKEN), ca)
    ctl.image_files = lambda host, spec: FetchImageReply(name="cp", version="1", kernel="/k", initrd="/i")
    ctl.accel = lambda host: AccelChoice("tcg", "test")
    ctl.guest_cpuset = lambda host: "0"
    line = ctl.cp_guest(SPEC, "a", "10.20.0.10").cmdline
    params = _cp_agent().read_cmdline(line)
    assert params["token"] == tokens.cp_token(TOKEN, "fa") and params["function"] == "fa"
    assert TOKEN not in line
    assert ssl.DER_cert_to_PEM_cert(base64.b64decode(params["control_ca"])).strip() == ca.read_text().strip()
    ctl.close()
    plain = _controller(tmp_path, "http://192.0.2.6:8080", _token_file(tmp_path, TOKEN), plain_http=True)
    plain.image_files, plain.accel, plain.guest_cpuset = ctl.image_files, ctl.accel, ctl.guest_cpuset
    assert "control_ca" not in _cp_agent().read_cmdline(plain.cp_guest(SPEC, "a", "10.20.0.10").cmdline)
    plain.close()


def test_site_check_hook(tls_srv, srv, tmp_path, pki):
    from orchestrator.controller.inventory import parse_inventory
    import yaml

    from tests.unit.fakes import INVENTORY

    def inv(url, token_file):
        doc = yaml.safe_load(INVENTORY)
        doc["control_url"] = url
        doc["site_ca"] = str(pki[0])
        doc["plain_http"] = url.startswith("http:")
        if token_file is not None:
            doc["control_token_file"] = str(token_file)
        return parse_inventory(doc, "inv.yaml")

    plain = srv
    ok, detail = check_control(inv(plain.url, _token_file(tmp_path, TOKEN)))
    assert ok and plain.url in detail and "accepted" in detail and "plain HTTP" in detail
    srv = tls_srv
    ok, detail = check_control(inv(srv.url, _token_file(tmp_path, TOKEN)))
    assert ok and srv.url in detail and "accepted" in detail and "HTTPS" in detail
    ok, detail = check_control(inv(srv.url, _token_file(tmp_path, "f" * 64)))
    assert not ok and "refused the token" in detail and "bringup" in detail
    ok, detail = check_control(inv(srv.url, None))
    assert not ok and "control_token_file" in detail
    with socket.socket() as s:                      # a port nobody listens on
        s.bind(("127.0.0.1", 0))
        closed = f"https://127.0.0.1:{s.getsockname()[1]}"
    ok, detail = check_control(inv(closed, _token_file(tmp_path, TOKEN)), timeout=2)
    assert not ok and "not reachable" in detail and closed in detail
