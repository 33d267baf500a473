"""The agent's claim of a function's IP for a DP program that answers no ARP itself.

A stock DPDK application (dpdk-testpmd) serves the frames that reach its MAC but knows nothing of
the function's IP: something must tell the segment that the IP is at the DP's MAC. dpdk_stub
does it itself; for a program started from a preset the agent starts this small process beside
the DP, and stops it with it. Like the DP it runs in a session of its own, so it outlives an
agent restart. It speaks the DP protocol's signals, so the agent drives both alike:

- claiming (at start, unless ``--standby``; SIGUSR1): answers "who-has IP" with the DP's MAC and,
  on becoming so (and on every SIGUSR1), sends gratuitous ARPs, as the stub's active DP does;
- not claiming (SIGHUP: retiring, SIGUSR2: standby): answers nothing;
- SIGTERM/SIGINT: exits.

It never answers a gratuitous ARP (an announcement by whoever holds the IP, not a question:
answering it would make two MACs claim the IP). It listens on the data interface itself through
an ETH_P_ALL tap filtered in the kernel to ARP requests for the IP, so it wakes for nothing
else (and sees them before any ingress filter of the interface), and ignores its own frames.
"""

from __future__ import annotations

import argparse
import select
import signal
import socket
import sys
import time

from dpdk_stub import packets as pk
from dpdk_stub.rings import DROP_ALL, ETH_P_ALL, PACKET_IGNORE_OUTGOING, SOL_PACKET, attach_filter

GARP_AFTER_S = (0.0, 0.05, 0.15)     # as the stub's DP after it becomes active


def arp_request_filter(ip: bytes) -> list[tuple[int, int, int, int]]:
    """Classic BPF: keep ARP requests (op 1) whose target is ``ip``; drop everything else."""
    addr = int.from_bytes(ip, "big")
    return [(0x28, 0, 0, 12),            # ldh [12]      ethertype
            (0x15, 0, 5, 0x0806),        # jeq ARP ? next : drop
            (0x28, 0, 0, 20),            # ldh [20]      ARP operation
            (0x15, 0, 3, 1),             # jeq request ? next : drop
            (0x20, 0, 0, 38),            # ld [38]       target IP
            (0x15, 0, 1, addr),          # jeq ip ? accept : drop
            (0x06, 0, 0, 0x40000),       # ret whole frame
            (0x06, 0, 0, 0)]             # ret 0: drop


class Claim:
    """The claim's state, driven by signals; pure apart from the clock it is given."""

    def __init__(self, mac: bytes, ip: bytes, claiming: bool, now: float):
        self.mac, self.ip, self.claiming = mac, ip, claiming
        self.due: list[float] = [now + d for d in GARP_AFTER_S] if claiming else []
        self.running = True

    def on_signal(self, signum: int, now: float) -> None:
        if signum == signal.SIGUSR1:
            self.claiming = True
            self.due = sorted(self.due + [now + d for d in GARP_AFTER_S])
        elif signum in (signal.SIGHUP, signal.SIGUSR2):
            self.claiming, self.due = False, []
        elif signum in (signal.SIGTERM, signal.SIGINT):
            self.running = False

    def answer(self, frame: bytes) -> bytes | None:
        """The ARP reply to ``frame``, or None (not claiming, not a question for our IP)."""
        if not self.claiming:
            return None
        asker = pk.arp_request_for(frame, self.ip)
        return pk.arp_reply(self.mac, self.ip, *asker) if asker else None

    def announcements(self, now: float) -> int:
        """How many gratuitous ARPs are due by ``now`` (and forget them)."""
        n = sum(1 for t in self.due if t <= now)
        self.due = [t for t in self.due if t > now]
        return n

    def timeout(self, now: float) -> float:
        return max(0.0, min(self.due) - now) if self.due else 1.0


def open_tap(iface: str, ip: bytes) -> socket.socket:
    s = socket.socket(socket.AF_PACKET, socket.SOCK_RAW, 0)
    try:
        attach_filter(s, DROP_ALL)          # nothing slips in between bind and the real filter
        s.bind((iface, ETH_P_ALL))
        attach_filter(s, arp_request_filter(ip))
        s.setsockopt(SOL_PACKET, PACKET_IGNORE_OUTGOING, 1)
        s.setblocking(False)
    except BaseException:
        s.close()
        raise
    return s


def serve(iface: str, ip: str, mac: str, standby: bool) -> int:
    claim = Claim(pk.mac_bytes(mac), pk.ip_bytes(ip), not standby, time.monotonic())
    wake_r, wake_w = socket.socketpair()
    wake_r.setblocking(False)
    wake_w.setblocking(False)
    signals = (signal.SIGUSR1, signal.SIGUSR2, signal.SIGHUP, signal.SIGTERM, signal.SIGINT)
    for sig in signals:
        signal.signal(sig, lambda *_: None)
    signal.set_wakeup_fd(wake_w.fileno())
    try:
        sock = open_tap(iface, claim.ip)
    except OSError as exc:
        print(f"vnfctl-arp-claim: {iface}: {exc.strerror}", file=sys.stderr)
        return 1
    print(f"vnfctl-arp-claim: {ip} at {mac} on {iface}, {'claiming' if claim.claiming else 'standby'}", flush=True)
    while claim.running:
        ready, _, _ = select.select([sock, wake_r], [], [], claim.timeout(time.monotonic()))
        if wake_r in ready:
            for signum in wake_r.recv(64):
                claim.on_signal(signum, time.monotonic())
        if sock in ready:
            while True:
                try:
                    frame = sock.recv(2048)
                except BlockingIOError:
                    break
                reply = claim.answer(frame)
                if reply:
                    sock.send(reply)
        for _ in range(claim.announcements(time.monotonic())):
            sock.send(pk.gratuitous_arp(claim.mac, claim.ip))
    sock.close()
    return 0


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="vnfctl-arp-claim", description="claim a function's IP for its DP (ARP)")
    p.add_argument("--iface", required=True)
    p.add_argument("--ip", required=True)
    p.add_argument("--mac", required=True)
    p.add_argument("--standby", action="store_true", help="start without claiming; SIGUSR1 claims")
    args = p.parse_args(argv)
    return serve(args.iface, args.ip, args.mac, args.standby)


if __name__ == "__main__":
    sys.exit(main())
