"""A router that lives in memory: the smallest complete driver, for unit tests.

``FakeFabric`` holds fake routers and plays their routing protocol as FRR with eBGP and
``redistribute static`` (route-map as in docs/real-site.md) does: a router learns a path through each
peer behind which some router holds a static /32 for the IP that is not leaving (its BGP
table); its routing table holds that path beside its own static when its static is tagged
leaving (or it has none); its FIB uses its static when it has one, else the first learned path. A router can be told to fail its next changes (``fail``), and
every change is recorded in order (``log``), so tests can check what was done, and when.
"""

from __future__ import annotations

from collections import deque
from typing import Sequence

from orchestrator.routers.api import LEAVING_TAG, FibRoute, NetworkError, Router, RouterCheck, RouteSpec


class FakeFabric:
    def __init__(self, bgp: bool = True):
        self.bgp = bgp
        self.routers: dict[str, "FakeRouter"] = {}
        self.log: list[str] = []
        self.after_change: list = []      # callables run after every change (tests observe)

    def add(self, name: str, peers: dict[str, str], data_bridge: str = "data") -> "FakeRouter":
        router = FakeRouter(self, name, peers, data_bridge)
        self.routers[name] = router
        return router

    def fib(self, name: str, ip: str) -> FibRoute | None:
        me = self.routers[name]
        if me.statics.get(ip):
            s = me.statics[ip][0]
            return FibRoute(s.dev, s.via, "static")
        learned = self.learned(name, ip)
        return FibRoute(None, learned[0].via, "bgp") if learned else None

    def fallback(self, name: str, ip: str) -> list[RouteSpec]:
        statics = self.routers[name].statics.get(ip, [])
        if statics and all(s.tag != LEAVING_TAG for s in statics):
            return []       # its own redistributed path is BGP's best: nothing learned is installed
        return self.learned(name, ip)[:1]

    def _holds(self, start: str, came_from: str, ip: str) -> bool:
        """Does ``start``, or a router behind it (not back through ``came_from``), hold a static?"""
        seen, queue = {came_from}, deque([start])
        while queue:
            current = queue.popleft()
            if current in seen or current not in self.routers:
                continue
            seen.add(current)
            if any(s.tag != LEAVING_TAG for s in self.routers[current].statics.get(ip, [])):
                return True   # a leaving static is advertised with the lowest preference
            queue.extend(self.routers[current].peers)
        return False

    def learned(self, name: str, ip: str) -> list[RouteSpec]:
        """BGP: a path through each peer behind which a router redistributes a static for ip."""
        if not self.bgp:
            return []
        return [RouteSpec(via=addr) for peer, addr in self.routers[name].peers.items() if self._holds(peer, name, ip)]


class FakeRouter(Router):
    def __init__(self, fabric: FakeFabric, name: str, peers: dict[str, str], data_bridge: str):
        self.fabric, self.name, self.peers, self.data_bridge = fabric, name, dict(peers), data_bridge
        self.statics: dict[str, list[RouteSpec]] = {}
        self.neighbours: dict[str, str] = {}
        self.rules: dict[str, dict] = {}
        self.failing = 0

    def fail(self, times: int = 1) -> None:
        """Make the next ``times`` changes here fail, as a router whose vtysh fails would."""
        self.failing = times

    def _change(self, what: str) -> None:
        if self.failing:
            self.failing -= 1
            raise NetworkError(f"router {self.name}: {what}: vtysh failed")
        self.fabric.log.append(f"{self.name} {what}")

    def _changed(self) -> None:
        for observe in self.fabric.after_change:
            observe()

    def set_route(self, ip: str, spec: RouteSpec, replacing: Sequence[RouteSpec] | None = None) -> None:
        self._change(f"set {ip} {spec.describe()}")
        self.statics[ip] = [spec]
        self._changed()

    def remove_route(self, ip: str, known: Sequence[RouteSpec] | None = None) -> None:
        if self.statics.get(ip):
            self._change(f"remove {ip}")
            self.statics.pop(ip, None)
            self._changed()

    def configured(self, ip: str) -> list[RouteSpec]:
        return list(self.statics.get(ip, []))

    def route(self, ip: str) -> FibRoute | None:
        return self.fabric.fib(self.name, ip)

    def learned(self, ip: str) -> list[RouteSpec]:
        return self.fabric.learned(self.name, ip)

    def fallback(self, ip: str) -> list[RouteSpec]:
        return self.fabric.fallback(self.name, ip)

    def forwarding_table(self) -> list[str]:
        return [f"{ip}/32 {self.route(ip).describe()}" for ip in sorted(self.statics) if self.route(ip)]

    def neighbour_mac(self, ip: str) -> str | None:
        return self.neighbours.get(ip)

    def forget_neighbour(self, ip: str) -> None:
        self.neighbours.pop(ip, None)

    def install_steering(self, function: str, ip: str, port: int, mark: int) -> None:
        self._change(f"steer {function}")
        self.rules[function] = {"packets": 0, "mark": mark, "ip": ip, "port": port}

    def remove_steering(self, function: str) -> None:
        self.rules.pop(function, None)

    def steering(self, function: str) -> dict | None:
        return self.rules.get(function)

    def checks(self, bgp: bool, peers: dict[str, str] | None = None) -> list[RouterCheck]:
        return [RouterCheck("table", True, "in memory")]
