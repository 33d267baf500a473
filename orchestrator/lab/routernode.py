"""One lab router: a Linux router running FRR (zebra, staticd, bgpd) with its own sshd, in its
own network and mount namespaces, driven by the controller over SSH exactly as a real FRR
router is (``orchestrator.routers.frr``).

Its /etc/frr, /run (FRR's sockets and pid files under /run/frr), /var/log/frr, /etc/ssh and
/root/.ssh are its own, so FRR runs with its default paths, as on a real router. The lab
writes the configuration an operator would put in place: eBGP with its peer routers,
``redistribute static`` limited by a route-map to /32 host routes (the function routes vnfctl
sets), fast timers.
"""

from __future__ import annotations

import shutil
from dataclasses import dataclass
from pathlib import Path
from typing import ClassVar

from orchestrator.lab import procs
from orchestrator.lab.machine import Machine
from orchestrator.lab.topology import Router
from orchestrator.routers.api import LEAVING_TAG

FRR_DAEMONS = ("zebra", "staticd", "bgpd")
FRR_BIN = Path("/usr/lib/frr")


def frr_config(name: str, router_id: str, asn: int, peers: dict[str, int]) -> str:
    """The router's frr.conf (pure): eBGP to each peer address (-> its AS), host routes only.

    NOTE: the route-map lets only /32s into BGP: the host routes of functions that vnfctl sets
    as statics; one tagged as leaving (the function is moving away) is ranked below any path
    learned from a peer, so the router installs the new path while its static still forwards.
    'timers connect 1' and 'advertisement-interval 0' make a restarted session and a moved route
    take well under a second."""
    lines = ["frr defaults traditional", f"hostname {name}", "log file /var/log/frr/frr.log informational",
             "service integrated-vtysh-config", "!",
             "ip prefix-list vnfctl-functions seq 5 permit 0.0.0.0/0 ge 32",
             "route-map vnfctl-functions permit 5", f" match tag {LEAVING_TAG}", " set weight 0",
             " set local-preference 50", "exit",
             "route-map vnfctl-functions permit 10", " match ip address prefix-list vnfctl-functions", "exit", "!",
             f"router bgp {asn}", f" bgp router-id {router_id}", " no bgp ebgp-requires-policy",
             " timers bgp 3 9"]
    for addr, peer_asn in peers.items():
        lines += [f" neighbor {addr} remote-as {peer_asn}", f" neighbor {addr} timers connect 1",
                  f" neighbor {addr} advertisement-interval 0"]
    lines += [" address-family ipv4 unicast", "  redistribute static route-map vnfctl-functions",
              " exit-address-family", "exit", "!"]
    return "\n".join(lines) + "\n"


@dataclass(frozen=True)
class RouterNode(Machine):
    router: Router

    DIRS: ClassVar[dict[str, str]] = {
        "/run": "run",
        "/etc/frr": "etc-frr",
        "/var/log/frr": "log-frr",
        "/etc/ssh": "etc-ssh",
        "/root": "root-home",
    }
    KIND: ClassVar[str] = "router"

    @property
    def name(self) -> str:
        return self.router.name

    @property
    def ssh_listen(self) -> str:
        return str(self.router.lan_gateway)

    def prepare_dirs(self) -> None:
        for inside in ("/run/frr", "/var/log/frr", "/etc/frr"):
            path = self.outside(inside)
            path.mkdir(parents=True, exist_ok=True)
            shutil.chown(path, "frr", "frr")
            path.chmod(0o775)

    # -- FRR ------------------------------------------------------------------------------
    def write_frr_config(self, router_id: str, asn: int, peers: dict[str, int]) -> None:
        etc = self.outside("/etc/frr")
        for name, text in (("frr.conf", frr_config(self.name, router_id, asn, peers)),
                           ("vtysh.conf", "service integrated-vtysh-config\n")):
            (etc / name).write_text(text)
            shutil.chown(etc / name, "frr", "frr")
            (etc / name).chmod(0o640)

    def frr_pid(self, daemon: str) -> int | None:
        return procs.read_pid(self.outside(f"/run/frr/{daemon}.pid"))

    def start_frr(self) -> None:
        for daemon in FRR_DAEMONS:
            if self.frr_pid(daemon):
                continue
            procs.run(self._in([str(FRR_BIN / daemon), "-d", "-A", "127.0.0.1", "-f", "/etc/frr/frr.conf"]),
                      f"start {daemon} on router {self.name}")
            procs.wait_for(lambda d=daemon: self.frr_pid(d) and self.outside(f"/run/frr/{d}.vty").exists(), 20,
                           f"{daemon} on router {self.name}")

    def stop_frr(self, daemon: str | None = None) -> None:
        for d in ([daemon] if daemon else reversed(FRR_DAEMONS)):
            pid = self.frr_pid(d)
            if pid:
                procs.stop_pid(pid)

    # -- teardown ---------------------------------------------------------------------------
    def stop_daemons(self) -> None:
        self.stop_frr()
        pid = self.sshd_pid()
        if pid:
            procs.stop_pid(pid)
