"""The ``vnfctl-agent`` SSH subsystem: joins the SSH channel to the host agent's unix socket.

sshd runs this for a controller that authenticated with the lab (or site) key; it carries bytes
only, so what the controller can do is exactly the agent's named operations.
"""

from __future__ import annotations

import os
import selectors
import socket
import sys

from orchestrator.agent.paths import SOCKET
from orchestrator.agent.protocol import AgentError, encode, reply_error


def main() -> int:
    path = os.environ.get("VNFCTL_AGENT_SOCKET", str(SOCKET))
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    try:
        sock.connect(path)
    except OSError as exc:
        # NOTE: sshd drops a subsystem's stderr, so the reason goes to the controller as the
        # protocol's own error reply (id null: it answers whatever was asked first).
        why = AgentError(f"the host agent is not running ({path}: {exc.strerror})")
        sys.stdout.buffer.write(encode(reply_error(None, why)))
        sys.stdout.flush()
        return 1
    stdin, stdout = sys.stdin.buffer.raw, sys.stdout.buffer.raw
    sel = selectors.DefaultSelector()
    sel.register(stdin, selectors.EVENT_READ)
    sel.register(sock, selectors.EVENT_READ)
    while True:
        for key, _ in sel.select():
            if key.fileobj is sock:
                data = sock.recv(65536)
                if not data:
                    return 0
                stdout.write(data)
            else:
                data = os.read(stdin.fileno(), 65536)
                if not data:
                    sock.shutdown(socket.SHUT_WR)
                    sel.unregister(stdin)
                    continue
                sock.sendall(data)


if __name__ == "__main__":
    sys.exit(main())
