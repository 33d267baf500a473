"""The network side of a function: host routes on the routers (the seed's forwarding tables),
the cooperating steering rule on the router in front of the function, and ARP caches.

``plan_function_routes`` is pure: for a function behind router R, R delivers the function IP on
its data bridge (the DP answers ARP for it) and every other router forwards it toward R. The
door to a router (``NetnsRouter``) is the only place that touches a router's tables.
"""

from __future__ import annotations

import json
import os
import subprocess
from collections import deque
from dataclasses import dataclass

from pyroute2 import NetNS
from pyroute2.netlink.exceptions import NetlinkError

from orchestrator.controller.inventory import Inventory, RouterEntry
from orchestrator.errors import VnfctlError


class NetworkError(VnfctlError):
    """A router refused a route, a steering rule or a neighbour query."""

    exit_code = 11


@dataclass(frozen=True)
class RouteSpec:
    """How one router reaches the function IP: on its data bridge, or via a peer router."""

    dev: str | None = None
    via: str | None = None

    def describe(self) -> str:
        return f"dev {self.dev}" if self.dev else f"via {self.via}"


def plan_function_routes(routers: tuple[RouterEntry, ...] | list[RouterEntry], target: str) -> dict[str, RouteSpec]:
    """Pure: each router's route for a function behind router ``target`` (BFS over peers, so each
    router points at the first hop of its shortest path toward ``target``)."""
    by_name = {r.name: r for r in routers}
    plan = {target: RouteSpec(dev=by_name[target].data_bridge)}
    queue = deque([target])
    while queue:
        current = queue.popleft()
        for r in routers:
            if r.name not in plan and current in r.peers:
                plan[r.name] = RouteSpec(via=r.peers[current])
                queue.append(r.name)
    return plan


class NetnsRouter:
    """A lab router: a namespace whose main routing table is its forwarding table."""

    def __init__(self, entry: RouterEntry):
        self.entry = entry

    def _ns(self) -> NetNS:
        # NOTE: flags=0: pyroute2 would otherwise create a missing namespace (O_CREAT) and the
        # router would look reachable and empty.
        if not os.path.exists(f"/run/netns/{self.entry.netns}"):
            raise NetworkError(f"router {self.entry.name}: its namespace {self.entry.netns} does not exist")
        return NetNS(self.entry.netns, flags=0)

    def set_route(self, ip: str, spec: RouteSpec) -> None:
        with self._ns() as ns:
            try:
                if spec.dev:
                    idx = ns.link_lookup(ifname=spec.dev)
                    if not idx:
                        raise NetworkError(f"router {self.entry.name}: no interface {spec.dev}")
                    ns.route("replace", dst=f"{ip}/32", oif=idx[0])
                else:
                    ns.route("replace", dst=f"{ip}/32", gateway=spec.via)
            except NetlinkError as exc:
                raise NetworkError(f"router {self.entry.name}: route {ip} {spec.describe()}: errno {exc.code}") from None

    def remove_route(self, ip: str) -> None:
        with self._ns() as ns:
            try:
                ns.route("del", dst=f"{ip}/32")
            except NetlinkError:
                pass  # already gone

    def route(self, ip: str) -> RouteSpec | None:
        """The router's own /32 route for ``ip`` as the kernel holds it."""
        with self._ns() as ns:
            for r in ns.get_routes(family=2, table=254):
                if r.get("dst") == ip and r["dst_len"] == 32:
                    if r.get("gateway"):
                        return RouteSpec(via=r.get("gateway"))
                    link = ns.get_links(r.get("oif"))[0]
                    return RouteSpec(dev=link.get("ifname"))
        return None

    def forwarding_table(self) -> list[str]:
        """Every IPv4 route of the router's main table, as 'DST/LEN via GW' or 'DST/LEN dev IF'."""
        try:
            with self._ns() as ns:
                links = {link["index"]: link.get_attr("IFLA_IFNAME") for link in ns.get_links()}
                out = []
                for r in ns.get_routes(family=2, table=254):
                    dst = f"{r.get('dst') or '0.0.0.0'}/{r['dst_len']}"
                    out.append(f"{dst} via {r.get('gateway')}" if r.get("gateway") else
                               f"{dst} dev {links.get(r.get('oif'), '?')}")
                return out
        except (OSError, NetlinkError) as exc:
            raise NetworkError(f"router {self.entry.name}: cannot read its forwarding table "
                               f"(netns {self.entry.netns}): {exc}") from None

    def neighbour_mac(self, ip: str) -> str | None:
        """The MAC this router's ARP cache holds for ``ip`` (None when it has no usable entry)."""
        with self._ns() as ns:
            for n in ns.get_neighbours(family=2):
                if n.get("dst") == ip and n["state"] not in (0x20, 0x01):  # NUD_FAILED, NUD_INCOMPLETE
                    return n.get("lladdr")
        return None

    def forget_neighbour(self, ip: str) -> None:
        with self._ns() as ns:
            for n in ns.get_neighbours(family=2):
                if n.get("dst") == ip:
                    try:
                        ns.neigh("del", dst=ip, ifindex=n["ifindex"])
                    except NetlinkError:
                        pass

    # -- steering (the seed's PE line-card microcode, as an nftables rule) -------------------
    def _nft(self, *args: str, stdin: str | None = None) -> str:
        cmd = ["nsenter", f"--net=/run/netns/{self.entry.netns}", "--", "nft", *args]
        done = subprocess.run(cmd, input=stdin, capture_output=True, text=True, timeout=10)
        if done.returncode != 0:
            first = (done.stderr.strip().splitlines() or ["nft failed"])[0]
            raise NetworkError(f"router {self.entry.name}: nft {' '.join(args[:3])}: {first}")
        return done.stdout

    def install_steering(self, function: str, ip: str, port: int, mark: int) -> None:
        """Mark the function's traffic on this router (a counter shows what it steered)."""
        self.remove_steering(function)
        self._nft("-f", "-", stdin=(
            f"table ip vnfctl_{function} {{\n"
            f"  chain steer {{ type filter hook prerouting priority -150; policy accept;\n"
            f"    ip daddr {ip} udp dport {port} counter meta mark set {mark:#x}\n  }}\n}}\n"))

    def remove_steering(self, function: str) -> None:
        if self.steering(function) is not None:
            self._nft("delete", "table", "ip", f"vnfctl_{function}")

    def steering(self, function: str) -> dict | None:
        """The function's steering rule here: {"packets", "mark"} or None when not installed."""
        try:
            doc = json.loads(self._nft("-j", "list", "table", "ip", f"vnfctl_{function}"))
        except NetworkError:
            return None
        for item in doc.get("nftables", []):
            rule = item.get("rule")
            if rule:
                packets = next((e["counter"]["packets"] for e in rule["expr"] if "counter" in e), 0)
                mark = next((e["mangle"]["value"] for e in rule["expr"] if "mangle" in e), None)
                return {"packets": packets, "mark": mark}
        return None


def routers_of(inventory: Inventory) -> dict[str, NetnsRouter]:
    return {r.name: NetnsRouter(r) for r in inventory.routers}
