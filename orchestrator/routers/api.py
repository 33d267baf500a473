"""The contract every router driver keeps: the door through which the controller makes the
network follow a function (the seed's forwarding tables, S104-S106 and S202-S204; its ARP cache,
example 4; its cooperating steering rule, S302-S309 and S404/S405).

Drivers: ``frr`` (a Linux router running FRR, reached over SSH with a pinned host key: vtysh for
routes, ``show ... json`` and the kernel's FIB to read them, nftables for steering) and
``netns`` (a lab namespace driven through netlink; lab only). ``FakeRouter`` (``fake.py``) is
the smallest complete implementation, for unit tests.

A router here holds two kinds of routes for a function's IP: the ones the controller configured
on it (``set_route``/``remove_route``: a static /32) and the one its FIB actually uses
(``route``: configured here, or learned from a peer by BGP). Convergence is judged on the FIB.
"""

from __future__ import annotations

import abc
from dataclasses import dataclass
from typing import Sequence

from orchestrator.errors import NetworkError  # noqa: F401 - re-export



# A function's static route on the edge it is leaving carries this tag: the site's BGP policy
# (route-map) gives such a route the lowest preference in BGP, so the router takes up the path
# toward the function's new edge in its routing table while its static still forwards; removing
# the static then switches the FIB from one to the other in a single replace (no gap).
LEAVING_TAG = 64512


@dataclass(frozen=True)
class RouteSpec:
    """How one router reaches the function IP: on its data bridge, or via a peer router; as a
    static route, with its tag."""

    dev: str | None = None
    via: str | None = None
    tag: int | None = None

    def describe(self) -> str:
        where = f"dev {self.dev}" if self.dev else f"via {self.via}"
        return where + (f" tag {self.tag}" if self.tag is not None else "")

    def same_path(self, other: "RouteSpec") -> bool:
        return (self.dev, self.via) == (other.dev, other.via)


@dataclass(frozen=True)
class FibRoute:
    """The route a router's FIB uses for a /32, and which protocol put it there
    ('static', 'bgp', 'kernel', ...)."""

    dev: str | None = None
    via: str | None = None
    proto: str = ""

    @property
    def spec(self) -> RouteSpec:
        return RouteSpec(None, self.via) if self.via else RouteSpec(self.dev, None)

    def matches(self, want: RouteSpec) -> bool:
        return self.spec == (RouteSpec(None, want.via) if want.via else RouteSpec(want.dev, None))

    def describe(self) -> str:
        return self.spec.describe() + (f" ({self.proto})" if self.proto else "")


@dataclass(frozen=True)
class RouterCheck:
    check: str
    ok: bool
    detail: str


class Router(abc.ABC):
    """One router of the site."""

    name: str

    # -- host routes ----------------------------------------------------------------------
    @abc.abstractmethod
    def set_route(self, ip: str, spec: RouteSpec, replacing: Sequence[RouteSpec] | None = None) -> None:
        """Configure a static /32 for ``ip`` here, replacing any other the controller set for it
        (the same path with another tag is changed in place, never removed and added).

        ``replacing``: the statics for ``ip`` the caller knows this router holds (it read them
        or wrote them within this operation), so the driver need not read them first; a write
        the router refuses because they were stale is made again from what the router holds."""

    @abc.abstractmethod
    def remove_route(self, ip: str, known: Sequence[RouteSpec] | None = None) -> None:
        """Remove every static /32 for ``ip`` configured here (none is fine); ``known`` as
        ``replacing`` above."""

    @abc.abstractmethod
    def configured(self, ip: str) -> list[RouteSpec]:
        """The static /32 routes for ``ip`` configured here (by the controller)."""

    @abc.abstractmethod
    def route(self, ip: str) -> FibRoute | None:
        """The /32 route for ``ip`` the router's FIB uses now, None when it has none."""

    @abc.abstractmethod
    def learned(self, ip: str) -> list[RouteSpec]:
        """Paths for ``ip`` this router learned from its peers (its BGP table), best or not."""

    @abc.abstractmethod
    def fallback(self, ip: str) -> list[RouteSpec]:
        """Routes for ``ip`` in its routing table other than its statics: what its FIB would use
        at once if the static went (a learned route already installed, not yet selected)."""

    @abc.abstractmethod
    def forwarding_table(self) -> list[str]:
        """Every IPv4 route of the FIB, one line each (for checks and operators)."""

    # -- neighbours -----------------------------------------------------------------------
    @abc.abstractmethod
    def neighbour_mac(self, ip: str) -> str | None:
        """The MAC its ARP cache holds for ``ip`` on the data side (None: no usable entry)."""

    @abc.abstractmethod
    def forget_neighbour(self, ip: str) -> None:
        """Drop its ARP entry for ``ip``."""

    # -- steering (the seed's PE line-card microcode) -------------------------------------
    @abc.abstractmethod
    def install_steering(self, function: str, ip: str, port: int, mark: int) -> None:
        """Mark the function's traffic here (replacing an earlier rule of the function)."""

    @abc.abstractmethod
    def remove_steering(self, function: str) -> None:
        """Remove the function's steering rule (none is fine)."""

    @abc.abstractmethod
    def steering(self, function: str) -> dict | None:
        """The function's rule here as {"packets", "mark"}, None when not installed."""

    # -- preflight ------------------------------------------------------------------------
    @abc.abstractmethod
    def checks(self, bgp: bool, peers: dict[str, str] | None = None) -> list[RouterCheck]:
        """The driver's own preflight checks (reachability, its tools, BGP sessions to ``peers``
        (name -> address, the inventory's) when ``bgp``, forwarding, the data bridge, the
        steering table): one verdict each, never an exception."""

    def close(self) -> None:
        """Release connections (none by default)."""
