"""CP -> DP relay: the agent holds each local CP's virtio-serial channel, keeps the CP's latest
report and policy table, and hands every new table to the DP through shared memory.

The CP owns the table; the relay only carries it. On (re)connect it asks the CP to send its
table at once ("sync"), so a DP started next to a running CP gets the full table within one
round trip, and after a live migration the relay on the new host picks the table up the same way.

A CP reports every 200 ms. A connection that stays silent for ``SILENT_S`` is dropped and made
again: QEMU tells the guest that its host end (re)opened, which wakes a port whose writes were
left waiting across a migration.
"""

from __future__ import annotations

import json
import socket
import threading
import time
from pathlib import Path
from typing import Callable

from orchestrator.virt.channel import parse_lines

SILENT_S = 2.0
CONNECT_TIMEOUT_S = 1.0


class CpRelay(threading.Thread):
    def __init__(self, vm: str, channel: Path, on_table: Callable[[str, int, dict], None]):
        super().__init__(name=f"relay-{vm}", daemon=True)
        self.vm, self.channel, self.on_table = vm, Path(channel), on_table
        self.report: dict | None = None
        self.report_at: float | None = None
        self.table: tuple[int, dict] | None = None
        self.connected = False
        # NOTE: not "_stop": threading.Thread has a method of that name, which the interpreter
        # calls after a fork (the agent forks to start every DP) and when a thread is joined.
        self._stopping = threading.Event()
        self._sock: socket.socket | None = None
        self._synced_at = 0.0
        self._lock = threading.Lock()
        self.reconnects = 0

    def stop(self) -> None:
        self._stopping.set()
        with self._lock:
            if self._sock:
                try:
                    self._sock.shutdown(socket.SHUT_RDWR)
                except OSError:
                    pass

    def send(self, doc: dict) -> bool:
        """Send one message to the CP (False when no channel is connected right now)."""
        with self._lock:
            if not self._sock:
                return False
            try:
                self._sock.sendall(json.dumps(doc).encode() + b"\n")
                return True
            except OSError:
                return False

    def run(self) -> None:
        while not self._stopping.is_set():
            sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
            # NOTE: a unix connect() blocks while the listener's backlog is full (QEMU's chardev
            # listens with a backlog of one and accepts one client at a time): bounded, so a
            # relay never hangs there for good, and tried again.
            sock.settimeout(CONNECT_TIMEOUT_S)
            try:
                sock.connect(str(self.channel))
            except OSError:         # socket.timeout is an OSError too
                sock.close()
                self._stopping.wait(0.2)
                continue
            with self._lock:
                self._sock = sock
            self.connected = True
            self.reconnects += 1
            self._sync()
            buf = b""
            heard = time.monotonic()
            sock.settimeout(0.5)
            try:
                while not self._stopping.is_set():
                    try:
                        chunk = sock.recv(65536)
                    except socket.timeout:
                        if time.monotonic() - heard > SILENT_S:
                            break       # silent: connect again (see the module's docstring)
                        continue
                    if not chunk:
                        break
                    heard = time.monotonic()
                    msgs, buf = parse_lines(buf + chunk)   # a partial first line is skipped there
                    for m in msgs:
                        self._handle(m)
            except OSError:
                pass
            finally:
                self.connected = False
                with self._lock:
                    self._sock = None
                sock.close()

    def _sync(self) -> None:
        self._synced_at = time.monotonic()
        self.send({"type": "sync"})

    def _handle(self, m: dict) -> None:
        kind = m.get("type")
        if kind == "report":
            self.report, self.report_at = m, time.time()
            # The CP reports which table version it holds: if that is not the one relayed (the
            # answer to a sync lost across a move, say), ask again, at most twice a second.
            held = m.get("table_version")
            if held and (self.table is None or self.table[0] != held) and time.monotonic() - self._synced_at > 0.5:
                self._sync()
        elif kind == "table" and isinstance(m.get("table"), dict):
            version = int(m.get("version", 0))
            if self.table is None or self.table[0] != version:
                self.table = (version, m["table"])
                self.on_table(self.vm, version, m["table"])
