"""``vnfctl site check``: a preflight of every host and router, like ``virt-host-validate``.

One verdict per check, each naming what it looked at, and every check runs even when an earlier
one failed (a host whose agent is down still gets its libvirt checked). What each check asks:

    host ssh            SSH reaches the host and its key is the pinned one
    host agent          the vnfctl-agent subsystem answers, and with which version
    host libvirt        libvirt over SSH answers, and with which version
    host accel          KVM or TCG, and why (from the host's own facts)
    host data iface     the DP's interface exists on the host
    host dp cores       cores offered to DPs, and how many are free
    host store          the host reaches the program store, whose key it trusts, and the store's
                        manifests verify under it
    host orphans        no DP, core reservation, CP registration or guest that no function owns
    router ssh          (frr) SSH reaches the router and its key is the pinned one
    router vtysh        (frr) FRR's shell answers
    router bgp          (bgp strategy) every BGP session is established
    router table        its forwarding table is readable
    router steering     its nftables (the steering rules' home) is readable
"""

from __future__ import annotations

import os
from dataclasses import asdict, dataclass

from orchestrator.controller.controller import Controller
from orchestrator.errors import VnfctlError
from orchestrator.ssh import check as ssh_check


@dataclass(frozen=True)
class Verdict:
    scope: str      # "host a", "router r1"
    check: str
    ok: bool
    detail: str

    def as_json(self) -> dict:
        return asdict(self)


def _run(scope: str, check: str, fn) -> Verdict:
    """Run one check: ``fn`` returns (ok, detail); an operator-facing error is a failed check."""
    try:
        ok, detail = fn()
    except VnfctlError as exc:
        ok, detail = False, str(exc)
    except OSError as exc:
        ok, detail = False, f"{type(exc).__name__}: {exc}"
    return Verdict(scope, check, ok, detail)


def check_host(ctl: Controller, name: str) -> list[Verdict]:
    entry = ctl.host(name)
    scope = f"host {name}"

    def ssh():
        result = ssh_check(entry.ssh)
        if result != "ok":
            return False, result
        return True, f"{entry.ssh.user}@{entry.ssh.address}:{entry.ssh.port}, host key verified"

    out = [_run(scope, "ssh", ssh)]

    def agent():
        info = ctl.agent(name).info
        return True, f"version {info.get('version', 'unknown')}, protocol v{info['proto']}, pid {info['pid']}"

    out.append(_run(scope, "agent", agent))
    agent_ok = out[-1].ok

    def libvirt():
        hv = ctl.hypervisor(name)
        return True, f"libvirt {hv.version()} at {entry.libvirt_uri.split('?')[0]}"

    out.append(_run(scope, "libvirt", libvirt))

    def accel():
        choice = ctl.accel(name)
        if os.environ.get("VNFCTL_REQUIRE_KVM") == "1" and choice.accel != "kvm":
            return False, f"{choice.accel} because {choice.reason} (VNFCTL_REQUIRE_KVM=1)"
        return "warning" not in choice.reason, f"{choice.accel} because {choice.reason}"

    def data_iface():
        doc = ctl.agent(name).call("host_facts")["data_interface"]
        if not doc["present"]:
            return False, f"no interface {doc['name']} on the host"
        return True, f"{doc['name']} ({doc['operstate']})"

    def dp_cores():
        cores = ctl.agent(name).call("cores")
        offered, free = cores["offered"], cores["free"]
        if not offered:
            return False, "no cores offered to DPs (agent dp_cores is empty)"
        shared = cores.get("share", 1)
        places = f"; shared by up to {shared} DPs that sleep when idle: {cores.get('free_slots')} places free" \
            if shared > 1 else ""
        return True, f"{len(free)} of {len(offered)} free (offered {offered}, free mask {cores['free_mask']}){places}"

    def store():
        doc = ctl.agent(name).call("check_store")
        if not doc["trusted"]:
            return False, f"the store at {ctl.inventory.store_url} signs with key {doc['key_id']}, which the host " \
                          f"does not trust"
        if doc["bad"]:
            return False, f"{len(doc['bad'])} manifest(s) refused: {doc['bad'][0]}"
        return True, f"{ctl.inventory.store_url} reachable, key {doc['key_id']} trusted, {doc['verified']} " \
                     f"manifest(s) verified"

    def orphans():
        from orchestrator.controller.recover import find_orphans

        found = find_orphans(ctl, hosts=[name])
        if found:
            return False, "; ".join(f"{o.kind} {o.name} ({o.detail})" for o in found) + \
                " ('vnfctl recover --orphans' removes them)"
        return True, "none"

    for check, fn in (("accel", accel), ("data iface", data_iface), ("dp cores", dp_cores), ("store", store),
                      ("orphans", orphans)):
        if check != "accel" and not agent_ok:
            out.append(Verdict(scope, check, False, "not checked: the agent does not answer"))
            continue
        out.append(_run(scope, check, fn))
    return out


def check_router(ctl: Controller, name: str) -> list[Verdict]:
    checks = ctl.routers[name].checks(bgp=ctl.inventory.route_strategy == "bgp")
    return [Verdict(f"router {name}", c.check, c.ok, c.detail) for c in checks]


def site_check(ctl: Controller) -> list[Verdict]:
    verdicts: list[Verdict] = []
    for h in ctl.inventory.hosts:
        verdicts += check_host(ctl, h.name)
    for r in ctl.inventory.routers:
        verdicts += check_router(ctl, r.name)
    return verdicts
