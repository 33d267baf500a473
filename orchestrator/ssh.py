"""The controller's one door to SSH (paramiko): host keys verified against a known_hosts file.

Unknown or changed host keys are refused (RejectPolicy), never accepted on first sight. The
connection is a plain TCP connection from wherever the controller runs: in the lab, the CLI has
already placed itself in the lab's management namespace (see ``orchestrator.site``).
"""

from __future__ import annotations

import socket
from dataclasses import dataclass
from pathlib import Path

import paramiko

from orchestrator.errors import SshError


@dataclass(frozen=True)
class SshTarget:
    host: str              # the host's name, for messages
    address: str
    key_file: Path
    known_hosts: Path
    user: str = "root"
    port: int = 22


def connect(target: SshTarget, timeout: float = 10.0) -> paramiko.SSHClient:
    """An authenticated SSHClient; SshError naming the host on any failure."""
    try:
        sock = socket.create_connection((target.address, target.port), timeout=timeout)
    except OSError as exc:
        raise SshError(f"host {target.host}: cannot reach {target.address}:{target.port}: {exc}") from None
    client = paramiko.SSHClient()
    client.set_missing_host_key_policy(paramiko.RejectPolicy())
    try:
        client.load_host_keys(str(target.known_hosts))
        client.connect(target.address, port=target.port, username=target.user,
                       key_filename=str(target.key_file), sock=sock, timeout=timeout,
                       allow_agent=False, look_for_keys=False, banner_timeout=timeout, auth_timeout=timeout)
    except FileNotFoundError as exc:
        sock.close()
        raise SshError(f"host {target.host}: {exc.filename} is missing") from None
    except paramiko.BadHostKeyException:
        sock.close()
        raise SshError(f"host {target.host}: host key CHANGED for {target.address} (not in {target.known_hosts})") from None
    except paramiko.SSHException as exc:
        sock.close()
        raise SshError(f"host {target.host}: ssh {target.address}: {exc}") from None
    return client


def check(target: SshTarget) -> str:
    """'ok' when the host authenticates us with a verified host key, else the reason."""
    try:
        client = connect(target, timeout=5.0)
    except SshError as exc:
        return str(exc)
    ok = client.get_transport() is not None and client.get_transport().is_authenticated()
    client.close()
    return "ok" if ok else "not authenticated"
