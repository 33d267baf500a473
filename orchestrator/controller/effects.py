"""The steps every operation shares, one per effect on the world: the host tables (VM-CP and
CP-DP records of the agents), the routes, the steering rule, the ARP caches, the controller's
record of where a function runs. Deploy, move and recover all use these same step types, each
on its own piece of work, which says what the step needs (``Work``): the function, the host it
shall lead to (``target``) and the hosts it shall leave (``sources``).
"""

from __future__ import annotations

from orchestrator.agent import protocol as proto
from orchestrator.controller.engine import Step
from orchestrator.controller.steps import side_by_side, taken, wait_for
from orchestrator.errors import VnfctlError
from orchestrator.routers import steering as nft


class Work:
    """What the shared steps ask of an operation's work (each operation's work class derives from
    this and says where the function goes; the hooks let it keep its own report)."""

    ctl = None
    spec = None
    op: int = 0
    channel: str | None = None             # the CP's channel path, when the operation made the guest
    halted = None                          # an Event: stop waiting (an abort, a failure beside)

    @property
    def target(self) -> str:               # the host the function shall lead to
        raise NotImplementedError

    @property
    def sources(self) -> list[str]:        # the hosts it shall leave
        return []

    @property
    def cp_ip(self) -> str:
        raise NotImplementedError

    def target_dp(self) -> dict:           # the target's DP, as its agent reported it (JSON)
        raise NotImplementedError

    def target_dp_mac(self) -> str | None:
        dp = self.target_dp()
        return dp.get("mac") if dp else None

    def routes_from(self) -> list[str]:    # routers whose static leads to the function now
        return []

    def routes_settled(self, target_router: str) -> bool:
        """Whether the routes already lead to ``target_router`` with nothing to move: no static
        elsewhere and every router's FIB converged."""
        return not [r for r in self.routes_from() if r != target_router] and \
            self.ctl.routing.converged(self.spec.service_ip, target_router)

    def routes_moving(self, target_router: str) -> None:   # told before the routes change
        return None

    def routes_back(self) -> None:         # the routes as they were before this operation
        self.ctl.routing.withdraw(self.spec.service_ip)

    def routes_led(self, converged: dict[str, float], ok: bool) -> None:
        return None

    def steering_led(self, ok: bool) -> None:
        return None

    def arp_led(self, ok: bool) -> None:
        return None


def router_of(w: Work, host: str) -> str:
    return w.ctl.host(host).router


# -- the agents' host tables ---------------------------------------------------------------------
class HostTables(Step[Work]):
    """The CP registered with the target's agent (its VM-CP record, whose relay feeds the DP's
    CP-DP record) and with no source's."""

    name = "host_tables"

    def commit(self, w: Work) -> str:
        spec = w.spec
        w.ctl.agent(w.target).request(proto.RegisterCp(vm=spec.vm, cp=spec.cp, function=spec.name, channel=w.channel))
        for host in w.sources:
            w.ctl.agent(host).request(proto.UnregisterCp(vm=spec.vm))
        moved = f" (off {', '.join(w.sources)})" if w.sources else ""
        return f"VM-CP {spec.vm} and CP-DP {spec.dp} on {w.target}{moved}"

    def rollback(self, w: Work) -> None:
        spec = w.spec
        for host in w.sources:
            w.ctl.agent(host).request(proto.RegisterCp(vm=spec.vm, cp=spec.cp, function=spec.name))
        w.ctl.agent(w.target).request(proto.UnregisterCp(vm=spec.vm))

    def done(self, w: Work) -> bool:
        vm = w.spec.vm
        return vm in w.ctl.agent(w.target).request(proto.Tables()).vm_cp and \
            not any(vm in w.ctl.agent(h).request(proto.Tables()).vm_cp for h in w.sources)


# -- routes -------------------------------------------------------------------------------------
def lead_routes(w: Work, target_router: str) -> dict[str, float]:
    """Make every router lead to the function behind ``target_router``, from wherever its
    statics are now; journal when each router's FIB converged. The one place routes change."""
    ctl, ip = w.ctl, w.spec.service_ip
    was = w.routes_from()
    holders = [r for r in was if r != target_router]
    # NOTE: told before the change (a move saves it): if the change fails or the controller dies
    # half-way, leading back from here also takes away what was announced at the target.
    w.routes_moving(target_router)
    converged: dict[str, float] = {}
    try:
        if not holders:
            converged = ctl.routing.move(ip, None, target_router)
        for here in holders:
            for router, ms in ctl.routing.move(ip, here, target_router).items():
                converged.setdefault(router, ms)
    except BaseException:
        if not was:
            ctl.routing.withdraw(ip)     # a half-made route of a new function is this step's own to undo
        raise
    for router, ms in converged.items():
        ctl.state.journal(w.op, w.spec.name, "routes", "converged", ms, f"router {router} -> {target_router}")
    return converged


class Routes(Step[Work]):
    """Every router leads to the function behind the target's router (the seed's S17/S18,
    S104-S106 and S202-S204): static /32s, or one redistributed into BGP."""

    name = "routes"

    def commit(self, w: Work) -> str:
        ctl, ip, target = w.ctl, w.spec.service_ip, router_of(w, w.target)
        converged = {} if w.routes_settled(target) else lead_routes(w, target)
        fibs = ctl.routing.fibs(ip)
        ok = ctl.routing.converged(ip, target, fibs)
        w.routes_led(converged, ok)
        detail = ", ".join(f"{n}: {d}" for n, d in ctl.routing.state(ip, fibs).items())
        if not ok:
            raise VnfctlError(f"function {w.spec.name}: the routers do not all lead to {w.target} ({detail})")
        return f"{ctl.inventory.route_strategy}: {detail}"

    def rollback(self, w: Work) -> None:
        w.routes_back()

    def done(self, w: Work) -> bool:
        return w.ctl.routing.converged(w.spec.service_ip, router_of(w, w.target))


# -- steering -----------------------------------------------------------------------------------
class Steering(Step[Work]):
    """The function's steering rule on the target's router and on no other (the seed's line-card
    microcode, S302-S309 and S404/S405)."""

    name = "steering"

    def rules(self, w: Work) -> dict[str, dict | None]:
        """Each router's rule for the function (None: it has none), the routers read side by side."""
        got = side_by_side({name: (lambda r=router: r.steering(w.spec.name)) for name, router in w.ctl.routers.items()})
        return {name: taken(got, name) for name in w.ctl.routers}

    def holders(self, w: Work) -> list[str]:
        return [name for name, rule in self.rules(w).items() if rule is not None]

    def commit(self, w: Work) -> str:
        spec, ctl = w.spec, w.ctl
        if spec.steering_mark is None:
            w.steering_led(True)
            return "none"
        target = router_of(w, w.target)
        rules = self.rules(w)
        before = [name for name, rule in rules.items() if rule is not None]
        w.steered_from = before      # for rollback
        others = [r for r in before if r != target]
        if before == [target] and nft.same(rules[target], spec.service_ip, spec.port, spec.steering_mark):
            w.steering_led(True)     # a move behind the same router: its rule is already there
            return f"mark {spec.steering_mark:#x}: already on {target}"
        install = lambda: ctl.routers[target].install_steering(spec.name, spec.service_ip, spec.port,  # noqa: E731
                                                               spec.steering_mark)
        # NOTE: on other routers the old rule goes out while the new one goes in (each router an
        # SSH round trip or two); for a moment both steer, which is harmless. A rule the target
        # already holds is remade in place: the install is one nft transaction.
        calls = {"install": install}
        calls.update({f"remove {r}": (lambda r=r: ctl.routers[r].remove_steering(spec.name)) for r in others})
        got = side_by_side(calls)
        failed = [k for k in calls if isinstance(got[k], Exception)]
        if failed:      # a failed step is not undone by the runner: leave the rules where they were
            if "install" not in failed and target not in before:
                ctl.routers[target].remove_steering(spec.name)
            for r in others:
                if f"remove {r}" not in failed:
                    ctl.routers[r].install_steering(spec.name, spec.service_ip, spec.port, spec.steering_mark)
            taken(got, failed[0])
        w.steering_led(self.holders(w) == [target])
        return f"mark {spec.steering_mark:#x}: {', '.join(before) or 'none'} -> {target}"

    def rollback(self, w: Work) -> None:
        spec, ctl = w.spec, w.ctl
        if spec.steering_mark is None:
            return
        target, before = router_of(w, w.target), getattr(w, "steered_from", [])
        if target not in before:
            ctl.routers[target].remove_steering(spec.name)
        for r in before:
            if r != target:
                ctl.routers[r].install_steering(spec.name, spec.service_ip, spec.port, spec.steering_mark)

    def done(self, w: Work) -> bool:
        return w.spec.steering_mark is None or self.holders(w) == [router_of(w, w.target)]


# -- ARP ----------------------------------------------------------------------------------------
class AnnounceArp(Step[Work]):
    """The target DP announces the function's IP (gratuitous ARP, the seed's example 4) and the
    target's router's ARP cache leads to its MAC. No undo of its own: undoing the handover
    re-activates the source DP, which announces itself."""

    name = "announce_arp"
    undoable = False

    def commit(self, w: Work) -> str:
        spec, router_name = w.spec, router_of(w, w.target)
        router, mac = w.ctl.routers[router_name], w.target_dp_mac()
        w.ctl.agent(w.target).request(proto.AnnounceDp(dp=spec.dp))
        ok = bool(wait_for(lambda: router.neighbour_mac(spec.service_ip) == mac, 3.0, abort=w.halted))
        w.arp_led(ok)
        if not ok:
            raise VnfctlError(f"router {router_name}: ARP cache holds {router.neighbour_mac(spec.service_ip)} "
                              f"for {spec.service_ip}, not the target DP's {mac}")
        return f"{router_name} ARP cache: {spec.service_ip} -> {mac}"

    def done(self, w: Work) -> bool:
        mac = w.target_dp_mac()
        return bool(mac) and w.ctl.routers[router_of(w, w.target)].neighbour_mac(w.spec.service_ip) == mac


# -- the controller's record --------------------------------------------------------------------
class Record(Step[Work]):
    """The controller's tables say the function runs on the target, with the DP its agent runs."""

    name = "record"

    def __init__(self, name: str = "record"):
        self.name = name

    def commit(self, w: Work) -> str | None:
        spec, entry = w.spec, w.ctl.host(w.target)
        dp = w.target_dp()
        w.ctl.state.record_deploy(spec, w.target, entry.router, entry.migration_address, f"h-{w.target}", w.cp_ip,
                                  dp["core_mask"], dp["cores"], dp["pid"],
                                  entry.router if spec.steering_mark is not None else None)
        return None

    def done(self, w: Work) -> bool:
        return (w.ctl.state.placement(w.spec.name) or {}).get("host") == w.target
