"""The CP agent: the control plane of a function, running inside its guest (stdlib only).

It owns the function's lasting state: the policy table it gets from the control server
(``vnfctl.control`` + ``vnfctl.function`` on the kernel command line, with ``vnfctl.token``, the
function's own token, sent as ``Authorization: Bearer``, and for an https server
``vnfctl.control_ca``, the site CA's certificate it is verified against), polled so an operator's change arrives
within a second. It shares that table, and a report of its own state (the
kernel's boot id, a counter a thread ticks every 100 ms, uptime, table version), with the host
over the virtio-serial port ``org.vnfctl.cp.0``: JSON lines both ways.

Host -> guest: {"type": "sync"} (send the table now), {"type": "ping", "id": X},
{"type": "set_table", "version": V, "table": {...}} (an operator override without a server).
Guest -> host: {"type": "report", ...} every 200 ms, {"type": "table", "version", "table"} on
every change and on sync, {"type": "pong", "id": X}.
"""

from __future__ import annotations

import json
import os
import threading
import time
import urllib.error
import urllib.request
import uuid

PORT_NAME = "org.vnfctl.cp.0"
PROTO = 1


def read_cmdline(text: str) -> dict[str, str]:
    """vnfctl.KEY=VALUE words of a kernel command line."""
    out = {}
    for word in text.split():
        if word.startswith("vnfctl.") and "=" in word:
            key, value = word[len("vnfctl."):].split("=", 1)
            out[key] = value
    return out


def find_port(name: str = PORT_NAME, sysfs: str = "/sys/class/virtio-ports") -> str | None:
    """/dev/vportNpM of the named port (the numbering is not fixed; the name is)."""
    try:
        entries = sorted(os.listdir(sysfs))
    except OSError:
        return None
    for entry in entries:
        try:
            with open(os.path.join(sysfs, entry, "name")) as f:
                if f.read().strip() == name:
                    return "/dev/" + entry
        except OSError:
            continue
    return None


class CpState:
    """Everything the CP holds; every reader goes through the lock."""

    def __init__(self, name: str, boot_id: str):
        self.name, self.boot_id = name, boot_id
        self.agent_id = uuid.uuid4().hex
        self.counter = 0
        self.table_version = 0
        self.table: dict | None = None
        self.lock = threading.Lock()
        self.changed = threading.Event()

    def tick(self) -> None:
        with self.lock:
            self.counter += 1

    def set_table(self, version: int, table: dict) -> bool:
        """Adopt a table; True when it is news (another version)."""
        with self.lock:
            if version == self.table_version and self.table is not None:
                return False
            self.table_version, self.table = int(version), dict(table)
        self.changed.set()
        return True

    def report(self, uptime_s: float, now: float) -> dict:
        with self.lock:
            return {"type": "report", "proto": PROTO, "name": self.name, "boot_id": self.boot_id,
                    "agent_id": self.agent_id, "counter": self.counter, "uptime_s": uptime_s,
                    "table_version": self.table_version, "ts": now}

    def table_message(self) -> dict | None:
        with self.lock:
            if self.table is None:
                return None
            return {"type": "table", "version": self.table_version, "table": self.table}


def handle(state: CpState, msg: dict) -> list[dict]:
    """Pure-ish: the replies to one host message."""
    kind = msg.get("type")
    if kind == "ping":
        return [{"type": "pong", "id": msg.get("id"), "counter": state.counter}]
    if kind == "sync":
        table = state.table_message()
        return [table] if table else []
    if kind == "set_table" and isinstance(msg.get("table"), dict):
        state.set_table(int(msg.get("version", state.table_version + 1)), msg["table"])
        return [state.table_message()]
    return []


def encode(msg: dict) -> bytes:
    return json.dumps(msg, separators=(",", ":")).encode() + b"\n"


class Channel:
    """The virtio-serial port. Writes wait while no host reader is connected: the writer is its
    own thread, so the rest of the CP (the ticker, the policy poller) never waits on the host."""

    def __init__(self, fd: int):
        self.fd = fd
        self.wlock = threading.Lock()

    def send(self, msg: dict) -> None:
        data = encode(msg)
        with self.wlock:
            while data:
                try:
                    n = os.write(self.fd, data)
                except BlockingIOError:
                    time.sleep(0.05)
                    continue
                except OSError:
                    time.sleep(0.2)  # host side gone (e.g. mid-migration): try again later
                    continue
                data = data[n:]

    def lines(self):
        buf = b""
        while True:
            try:
                chunk = os.read(self.fd, 65536)
            except OSError:
                time.sleep(0.2)
                continue
            if not chunk:
                time.sleep(0.1)  # no host connected: the port reads as empty
                continue
            buf += chunk
            *lines, buf = buf.split(b"\n")
            for line in lines:
                try:
                    msg = json.loads(line)
                except ValueError:
                    continue
                if isinstance(msg, dict):
                    yield msg


def ssl_error():
    """The exception of a server that fails verification (a class that never matches without ssl)."""
    try:
        import ssl
    except ImportError:
        return ()
    return ssl.SSLCertVerificationError


def tls_context(ca: str | None):
    """The context an https control server is verified with: the site CA's certificate from the
    kernel command line (``vnfctl.control_ca``, base64 DER), and the URL's address against the
    server's certificate. Without a CA the image has none to trust: every answer is refused."""
    import base64
    import ssl

    ctx = ssl.create_default_context()      # verifies names; the image has no CA files of its own
    ctx.minimum_version = ssl.TLSVersion.TLSv1_2
    if ca:
        try:
            ctx.load_verify_locations(cadata=base64.b64decode(ca, validate=True))
        except (ValueError, ssl.SSLError) as exc:
            print(f"cp_agent: vnfctl.control_ca is not a CA certificate ({exc}): nothing verifies", flush=True)
    return ctx


LONG_POLL_S = 10.0


def poll_policy(state: CpState, control: str, function: str, stop: threading.Event, every: float = 0.5,
                token: str | None = None, ca: str | None = None, long_poll_s: float = LONG_POLL_S) -> None:
    """Keep the table in step with the control server (version changes only), over HTTPS
    verified against ``ca`` when the URL is https. Each request is a long poll (``after`` the
    version held, answered at once when a newer one is stored, else after ``long_poll_s``), so
    a change arrives at once while an idle CP makes one TLS handshake every ``long_poll_s``
    instead of one every ``every``; an answer that came back early without a newer version (a
    server that does not wait) is followed by ``every`` of waiting. A refused token is said once
    on the console; the CP keeps its table and keeps asking."""
    base = f"{control.rstrip('/')}/v1/policy/{function}"
    headers = {"Authorization": f"Bearer {token}"} if token else {}
    context = tls_context(ca) if base.startswith("https://") else None
    refused = None
    while not stop.is_set():
        with state.lock:
            held = state.table_version if state.table is not None else 0
        url = f"{base}?after={held}&wait={long_poll_s:g}"
        asked = time.monotonic()
        newer = False
        try:
            with urllib.request.urlopen(urllib.request.Request(url, headers=headers), timeout=long_poll_s + 5,
                                        context=context) as resp:
                doc = json.load(resp)
            newer = int(doc["version"]) > held
            state.set_table(int(doc["version"]), doc["table"])
            refused = None
        except urllib.error.HTTPError as exc:
            exc.close()
            if exc.code in (401, 403) and refused != exc.code:
                print(f"cp_agent: the control server refused this CP's token ({exc.code})", flush=True)
            refused = exc.code
        except (OSError, ValueError, KeyError, TypeError) as exc:
            reason = getattr(exc, "reason", exc)        # urllib wraps a failed verification in URLError
            if isinstance(reason, ssl_error()):
                if refused != "tls":
                    print(f"cp_agent: the control server is not the site's ({reason}): refused", flush=True)
                refused = "tls"
            # else: the server is unreachable for now: keep the table we have
        if not newer and time.monotonic() - asked < long_poll_s / 2:
            stop.wait(every)


def uptime() -> float:
    with open("/proc/uptime") as f:
        return float(f.read().split()[0])


def main() -> int:
    with open("/proc/cmdline") as f:
        params = read_cmdline(f.read())
    with open("/proc/sys/kernel/random/boot_id") as f:
        boot_id = f.read().strip()
    state = CpState(params.get("name", "cp"), boot_id)
    stop = threading.Event()

    def ticker():
        while not stop.wait(0.1):
            state.tick()

    threading.Thread(target=ticker, daemon=True).start()
    if params.get("control") and params.get("function"):
        threading.Thread(target=poll_policy, args=(state, params["control"], params["function"], stop),
                         kwargs={"token": params.get("token"), "ca": params.get("control_ca")},
                         daemon=True).start()
    port = None
    while port is None:
        port = find_port()
        if port is None:
            time.sleep(0.2)
    channel = Channel(os.open(port, os.O_RDWR))

    def reader():
        for msg in channel.lines():
            for reply in handle(state, msg):
                if reply:
                    channel.send(reply)

    threading.Thread(target=reader, daemon=True).start()
    print(f"cp_agent: {state.name} up, port {port}, control {params.get('control', '-')}", flush=True)
    next_report = 0.0
    while True:
        if state.changed.wait(timeout=max(0.0, next_report - time.monotonic())):
            state.changed.clear()
            table = state.table_message()
            if table:
                channel.send(table)
        if time.monotonic() >= next_report:
            channel.send(state.report(uptime(), time.time()))
            next_report = time.monotonic() + 0.2


if __name__ == "__main__":
    raise SystemExit(main())
