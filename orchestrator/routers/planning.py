"""Where a function's host route must be, and what to change to get it there (pure).

For a function behind router T, every router's FIB must lead to it: T delivers the IP on its
data bridge (the DP answers ARP for it), every other router forwards toward T by the first hop
of its shortest path (``expected_fib``). How that is reached depends on the site's strategy:

- ``static`` (the seed's S104-S106, S202-S204): the controller writes the /32 on every router,
  T's first, then outward;
- ``bgp``: the controller writes the /32 only at T (redistributed into BGP) and removes it from
  the router the function left; the other routers learn it from their peers.

A move is make-before-break on the network too, in phases (``route_phases``): the new location
is announced and seen first; only then does the old edge let go, in two steps: its static is
tagged as leaving, which the site's BGP policy ranks below the path learned from the new edge,
so the router installs that path in its routing table while the static still forwards; then the
static is removed and the FIB switches to the learned path in one replace. A stale /32 left on
the old edge would black-hole the function's traffic (Calico measured 9-13 s); removing it at
once would leave a gap (measured here: 60 ms) until BGP installed the other path.

Where the old edge peers with the new one, its leaving static points at the new edge at once
(``via`` the peer, the same next hop BGP then gives it): every FIB leads to the function's new
place one write after it was seen, and the removal that follows changes the route's protocol,
not its next hop. Further away it could not: a router between them may still use the old
edge's path (BGP keeps the older of equal paths), and the two would send the traffic back and
forth; there the old edge keeps delivering until its static is removed.
"""

from __future__ import annotations

from collections import deque
from dataclasses import dataclass
from typing import Iterable, Protocol

from orchestrator.routers.api import LEAVING_TAG, RouteSpec

STRATEGIES = ("static", "bgp")


class RouterLike(Protocol):
    name: str
    data_bridge: str
    peers: dict


@dataclass(frozen=True)
class RouteChange:
    router: str
    spec: RouteSpec | None        # None: remove the router's /32 for the IP

    def describe(self) -> str:
        return f"{self.router}: " + (self.spec.describe() if self.spec else "withdrawn")


def expected_fib(routers: Iterable[RouterLike], target: str) -> dict[str, RouteSpec]:
    """Each router's route for a function behind ``target``, in BFS order from it (so each router
    points at the first hop of its shortest path toward ``target``)."""
    routers = list(routers)
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


@dataclass(frozen=True)
class Phase:
    """Changes to apply together, then what to wait for before the next phase: 'seen' (the
    target's FIB uses its route and every other router has learned it), 'ready' (every router
    that still forwards by its own static has the learned path installed beside it, every other
    router's FIB leads to the target), 'switched' (as 'ready', and the leaving static leads to
    the target too: every FIB does) or 'converged' (every router's FIB leads to the target, by
    its own static or by BGP)."""

    changes: tuple[RouteChange, ...]
    wait: str

    @property
    def leads(self) -> bool:
        """Once its wait holds, every router's FIB leads to the target."""
        return self.wait in ("switched", "converged")


def route_phases(routers: Iterable[RouterLike], strategy: str, src: str | None, dst: str) -> list[Phase]:
    """What to do, in order, for a function moving from behind router ``src`` (None: a new
    function) to behind ``dst``."""
    if strategy not in STRATEGIES:
        raise ValueError(f"route strategy must be one of {', '.join(STRATEGIES)}, not {strategy!r}")
    routers = list(routers)
    plan = expected_fib(routers, dst)
    if strategy == "static":
        return [Phase(tuple(RouteChange(name, spec) for name, spec in plan.items()), "converged")]
    announce = (RouteChange(dst, plan[dst]),)
    if src is None or src == dst:
        return [Phase(announce, "converged")]
    peers = next((r.peers for r in routers if r.name == src), {})
    if src in plan and dst in peers and plan[src].via == peers[dst]:
        leaving, wait = RouteSpec(via=plan[src].via, tag=LEAVING_TAG), "switched"
    else:
        old = expected_fib(routers, src)[src]
        leaving, wait = RouteSpec(old.dev, old.via, LEAVING_TAG), "ready"
    return [Phase(announce, "seen"), Phase((RouteChange(src, leaving),), wait),
            Phase((RouteChange(src, None),), "converged")]


def unreached(routers: Iterable[RouterLike], target: str) -> list[str]:
    """Routers with no path to ``target`` at all (an inventory whose peers do not connect)."""
    routers = list(routers)
    plan = expected_fib(routers, target)
    return [r.name for r in routers if r.name not in plan]
