"""Whether a deployed function is whole, end to end, as the real world says now.

``observe`` asks the function's host (its libvirt: the CP guest; its agent: the CP's reports
over its channel, the DP by pid and start time, the policy version it serves) and every router
(the function's route, its steering rule, the ARP entry of its router); ``problems`` judges such
an observation (pure, tested with literals) and names each way the function is not whole, one
line each. ``vnfctl status`` and ``vnfctl site check`` report them; the watcher heals from them.
"""

from __future__ import annotations

import time
from dataclasses import asdict, dataclass, field

from orchestrator.agent import protocol as proto
from orchestrator.errors import VnfctlError

CP_REPORT_STALE_S = 5.0        # the CP reports every 200 ms: this much silence means it does not


@dataclass
class Observed:
    """One placed function as the world has it (plain values)."""

    function: str
    host: str
    router: str
    unreachable: str = ""                 # why its host cannot be asked (then nothing else was)
    guest: str | None = None              # its CP guest's libvirt state on its host
    cp_connected: bool = False
    cp_report_age_s: float | None = None  # since the CP's last report reached the agent
    cp_table_version: int | None = None   # the CP's policy version, as its relay has it
    cp_counter: int | None = None         # the CP's own counter, from its last report
    dp: dict = field(default_factory=dict)   # the agent's record of the DP (dp_status), {} when none
    routes_ok: bool = False
    routes: dict = field(default_factory=dict)    # router -> its FIB route for the function
    steering_wanted: bool = False
    steering_on: list[str] = field(default_factory=list)
    arp_mac: str | None = None            # the function's router's neighbour entry for its IP

    def as_json(self) -> dict:
        return asdict(self)


def problems(o: Observed) -> list[str]:
    """Each way the observed function is not whole, as one line naming what is wrong (pure)."""
    if o.unreachable:
        return [f"host {o.host} does not answer: {o.unreachable}"]
    out = []
    if o.guest != "running":
        out.append(f"CP guest {'not running' if o.guest is None else o.guest} on {o.host}")
    elif not o.cp_connected or o.cp_report_age_s is None or o.cp_report_age_s > CP_REPORT_STALE_S:
        age = "never" if o.cp_report_age_s is None else f"{o.cp_report_age_s:.0f} s ago"
        out.append(f"CP does not report (channel {'connected' if o.cp_connected else 'not connected'}, last report "
                   f"{age})")
    dp = o.dp
    if not dp:
        out.append(f"no DP on {o.host}")
    elif not dp.get("alive"):
        out.append(f"DP on {o.host} is dead (pid {dp.get('pid')})")
    else:
        if not dp.get("active") or not dp.get("claims", True):
            out.append(f"DP on {o.host} is in standby")
        elif not dp.get("healthy"):
            out.append(f"DP on {o.host} is not healthy (pinned {dp.get('pinned')}, counters "
                       f"{'readable' if dp.get('stats') else 'unreadable'})")
        if dp.get("takes_policy", True):
            have, want = (dp.get("stats") or {}).get("policy_version"), o.cp_table_version
            if want is not None and (have is None or have < want):
                out.append(f"DP serves policy v{have or 0}, its CP has v{want}")
    if not o.routes_ok:
        out.append("routes do not lead to " + o.router + " (" +
                   ", ".join(f"{r}: {d}" for r, d in o.routes.items()) + ")")
    if o.steering_wanted and o.steering_on != [o.router]:
        out.append(f"steering rule on {', '.join(o.steering_on) or 'no router'}, not on {o.router}")
    mac = dp.get("mac") if dp else None
    if mac and o.arp_mac and o.arp_mac != mac:
        out.append(f"{o.router}'s ARP entry for the function leads to {o.arp_mac}, not its DP's {mac}")
    return out


def observe(ctl, spec, placement: dict) -> Observed:
    """The function placed on ``placement['host']`` as its host and the routers have it now."""
    host = placement["host"]
    router = ctl.host(host).router
    o = Observed(spec.name, host, router)
    try:
        agent = ctl.agent(host)
        o.guest = ctl.hypervisor(host).guest_state(spec.vm)
        report = agent.request(proto.CpReport(vm=spec.vm))
        o.cp_connected = report.connected
        o.cp_report_age_s = None if not report.report_at else max(0.0, time.time() - report.report_at)
        o.cp_counter = (report.report or {}).get("counter")
        o.cp_table_version = agent.request(proto.CpTable(vm=spec.vm)).version
        dp = agent.request(proto.DpStatus(dp=spec.dp)).first
        o.dp = dp.to_json() if dp is not None else {}
    except VnfctlError as exc:
        o.unreachable = str(exc)
        return o
    try:
        fibs = ctl.routing.fibs(spec.service_ip)
        o.routes = ctl.routing.state(spec.service_ip, fibs)
        o.routes_ok = ctl.routing.converged(spec.service_ip, router, fibs)
        o.steering_wanted = spec.steering_mark is not None
        o.steering_on = [n for n, r in ctl.routers.items() if r.steering(spec.name) is not None]
        o.arp_mac = ctl.routers[router].neighbour_mac(spec.service_ip)
    except VnfctlError as exc:
        o.routes = {router: f"unreadable: {exc}"}
    return o


@dataclass(frozen=True)
class Health:
    function: str
    host: str
    problems: list[str]
    observed: Observed

    @property
    def whole(self) -> bool:
        return not self.problems

    def as_json(self) -> dict:
        return {"function": self.function, "host": self.host, "whole": self.whole, "problems": self.problems,
                "observed": self.observed.as_json()}


def check(ctl, name: str) -> Health:
    spec, placement = ctl.state.spec(name), ctl.state.placement(name)
    o = observe(ctl, spec, placement)
    return Health(name, placement["host"], problems(o), o)
