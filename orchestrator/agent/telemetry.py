"""DPDK's telemetry socket: a preset DP's counters, read the way DPDK offers them.

A DPDK application (EAL telemetry is on by default) listens on
``RUNTIME_DIRECTORY/dpdk/PREFIX/dpdk_telemetry.v2``, a SOCK_SEQPACKET unix socket: on connect it
sends a greeting (``{"version": ..., "pid": ..., "max_output_len": ...}``), then answers each
command (``/ethdev/stats,0``) with one JSON message ``{"/ethdev/stats": {...}}``. The agent reads
a preset DP's port counters there instead of a stats file the program does not write.
"""

from __future__ import annotations

import json
import socket
from pathlib import Path


def query(path: Path, command: str, timeout: float = 1.0) -> dict | None:
    """The answer to one telemetry command, or None when the socket is not there (yet) or the
    application does not answer."""
    s = socket.socket(socket.AF_UNIX, socket.SOCK_SEQPACKET)
    s.settimeout(timeout)
    try:
        s.connect(str(path))
        greeting = json.loads(s.recv(4096))
        s.send(command.encode())
        answer = json.loads(s.recv(max(int(greeting.get("max_output_len") or 0), 16384) + 1024))
    except (OSError, ValueError, AttributeError):
        return None
    finally:
        s.close()
    return answer if isinstance(answer, dict) else None


def port_counters(answer: dict | None, pid: int | None = None) -> dict | None:
    """Pure: the DP's statistics document from an ``/ethdev/stats`` answer, in the names the
    stub's stats file uses where they mean the same (rx, tx; every frame a 5tswap DP sends is
    an answer, so ``served`` = tx), or None when the answer holds no port statistics."""
    stats = (answer or {}).get("/ethdev/stats")
    if not isinstance(stats, dict) or not isinstance(stats.get("ipackets"), int):
        return None
    return {"source": "dpdk-telemetry", "pid": pid, "rx": stats["ipackets"], "tx": stats.get("opackets", 0),
            "served": stats.get("opackets", 0), "rx_missed": stats.get("imissed", 0),
            "rx_errors": stats.get("ierrors", 0), "tx_errors": stats.get("oerrors", 0),
            "rx_nombuf": stats.get("rx_nombuf", 0), "policy_version": None}


def dp_stats(path: Path, pid: int | None = None) -> dict | None:
    """Port 0's counters of the DPDK application listening at ``path``, or None."""
    return port_counters(query(path, "/ethdev/stats,0"), pid)
