"""The ``netns`` router driver: a lab router that is a network namespace on this machine, its
main routing table driven through netlink (pyroute2). Lab only: a real router is reached over
SSH (``frr``). It has no BGP: with it, the controller writes every router's route itself.
"""

from __future__ import annotations

import json
import os
import subprocess
from typing import Sequence

from pyroute2 import NetNS
from pyroute2.netlink.exceptions import NetlinkError

from orchestrator.routers import steering as nft
from orchestrator.routers.api import FibRoute, NetworkError, Router, RouterCheck, RouteSpec

RTPROT_STATIC = 4
PROTOS = {2: "kernel", 3: "boot", 4: "static", 186: "bgp", 196: "static", 188: "ospf"}


class NetnsRouter(Router):
    def __init__(self, name: str, netns: str, data_bridge: str = "data"):
        self.name, self.netns, self.data_bridge = name, netns, data_bridge

    def _ns(self) -> NetNS:
        # NOTE: flags=0: pyroute2 would otherwise create a missing namespace (O_CREAT) and the
        # router would look reachable and empty.
        if not os.path.exists(f"/run/netns/{self.netns}"):
            raise NetworkError(f"router {self.name}: its namespace {self.netns} does not exist")
        return NetNS(self.netns, flags=0)

    def _fib(self, ns, ip: str | None = None) -> list[tuple[dict, FibRoute]]:
        links = {link["index"]: link.get_attr("IFLA_IFNAME") for link in ns.get_links()}
        out = []
        for r in ns.get_routes(family=2, table=254):
            if ip is not None and (r.get_attr("RTA_DST") != ip or r["dst_len"] != 32):
                continue
            gw = r.get_attr("RTA_GATEWAY")
            out.append((r, FibRoute(None if gw else links.get(r.get_attr("RTA_OIF")), gw,
                                    PROTOS.get(r["proto"], str(r["proto"])))))
        return out

    # -- host routes ----------------------------------------------------------------------
    def set_route(self, ip: str, spec: RouteSpec, replacing: Sequence[RouteSpec] | None = None) -> None:
        with self._ns() as ns:
            try:
                if spec.dev:
                    idx = ns.link_lookup(ifname=spec.dev)
                    if not idx:
                        raise NetworkError(f"router {self.name}: no interface {spec.dev}")
                    ns.route("replace", dst=f"{ip}/32", oif=idx[0], proto=RTPROT_STATIC)
                else:
                    ns.route("replace", dst=f"{ip}/32", gateway=spec.via, proto=RTPROT_STATIC)
            except NetlinkError as exc:
                raise NetworkError(f"router {self.name}: route {ip} {spec.describe()}: errno {exc.code}") from None

    def remove_route(self, ip: str, known: Sequence[RouteSpec] | None = None) -> None:
        with self._ns() as ns:
            try:
                ns.route("del", dst=f"{ip}/32")
            except NetlinkError:
                pass  # already gone

    def configured(self, ip: str) -> list[RouteSpec]:
        with self._ns() as ns:
            return [f.spec for _r, f in self._fib(ns, ip)]

    def route(self, ip: str) -> FibRoute | None:
        with self._ns() as ns:
            found = self._fib(ns, ip)
        return found[0][1] if found else None

    def learned(self, ip: str) -> list[RouteSpec]:
        return []

    def fallback(self, ip: str) -> list[RouteSpec]:
        return []

    def forwarding_table(self) -> list[str]:
        try:
            with self._ns() as ns:
                return [f"{r.get_attr('RTA_DST') or '0.0.0.0'}/{r['dst_len']} {f.describe()}" for r, f in self._fib(ns)]
        except (OSError, NetlinkError) as exc:
            raise NetworkError(f"router {self.name}: cannot read its forwarding table (netns {self.netns}): "
                               f"{exc}") from None

    # -- neighbours -----------------------------------------------------------------------
    def neighbour_mac(self, ip: str) -> str | None:
        with self._ns() as ns:
            for n in ns.get_neighbours(family=2):
                if n.get_attr("NDA_DST") == ip and n["state"] not in (0x20, 0x01):  # NUD_FAILED, NUD_INCOMPLETE
                    return n.get_attr("NDA_LLADDR")
        return None

    def forget_neighbour(self, ip: str) -> None:
        with self._ns() as ns:
            for n in ns.get_neighbours(family=2):
                if n.get_attr("NDA_DST") == ip:
                    try:
                        ns.neigh("del", dst=ip, ifindex=n["ifindex"])
                    except NetlinkError:
                        pass

    # -- steering ---------------------------------------------------------------------------
    def _nft(self, *args: str, stdin: str | None = None) -> str:
        cmd = ["nsenter", f"--net=/run/netns/{self.netns}", "--", "nft", *args]
        done = subprocess.run(cmd, input=stdin, capture_output=True, text=True, timeout=10)
        if done.returncode != 0:
            first = (done.stderr.strip().splitlines() or ["nft failed"])[0]
            raise NetworkError(f"router {self.name}: nft {' '.join(args[:3])}: {first}")
        return done.stdout

    def install_steering(self, function: str, ip: str, port: int, mark: int) -> None:
        self._nft("-f", "-", stdin=nft.ruleset(function, ip, port, mark))

    def remove_steering(self, function: str) -> None:
        if self.steering(function) is not None:
            self._nft("delete", "table", "ip", nft.table(function))

    def steering(self, function: str) -> dict | None:
        try:
            return nft.parse(json.loads(self._nft("-j", "list", "table", "ip", nft.table(function))))
        except NetworkError:
            return None

    # -- preflight --------------------------------------------------------------------------
    def checks(self, bgp: bool, peers: dict[str, str] | None = None) -> list[RouterCheck]:
        out = []
        try:
            out.append(RouterCheck("table", True, f"{len(self.forwarding_table())} route(s) readable "
                                                  f"(netns {self.netns})"))
        except NetworkError as exc:
            out.append(RouterCheck("table", False, str(exc)))
        try:
            self._nft("list", "tables")
            out.append(RouterCheck("steering", True, "nftables readable"))
        except NetworkError as exc:
            out.append(RouterCheck("steering", False, str(exc)))
        if bgp:
            out.append(RouterCheck("bgp", False, "the netns driver has no BGP: use route_strategy static"))
        want = {"net/ipv4/ip_forward": "1", f"net/ipv4/conf/{self.data_bridge}/arp_accept": "1"}
        got = subprocess.run(["nsenter", f"--net=/run/netns/{self.netns}", "--", "cat",
                              *(f"/proc/sys/{k}" for k in want)], capture_output=True, text=True, timeout=10)
        values = got.stdout.split()
        bad = [f"{k.replace('/', '.')} is {v}" for (k, w), v in zip(want.items(), values) if v != w]
        if got.returncode != 0 or bad:
            out.append(RouterCheck("forwarding", False, "; ".join(bad) or f"no data bridge {self.data_bridge}"))
        else:
            out.append(RouterCheck("forwarding", True, f"IPv4 forwarding on, arp_accept on {self.data_bridge}"))
        return out
