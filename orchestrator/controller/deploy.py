"""Putting a function (CP guest + DP) on a host, and taking it away, as operations of step
objects (like a move: see migration.py) under the function's lease.

deploy: precheck -> policy -> boot CP -> register CP with the agent -> start DP -> routes ->
steering -> wait until the DP serves the CP's table -> record. A failing step rolls back the done
ones, so a failed deploy leaves nothing behind.

undeploy: stop the function's DP, forget its CP registration, stop its CP guest, withdraw its
routes and steering, forget it: on every host and router, whatever really exists there (not
only what the controller's state says), so it also removes what a crash left behind.
"""

from __future__ import annotations

import time
from dataclasses import asdict, dataclass, field

from orchestrator.agent import protocol as proto
from orchestrator.agent.cores import CoreAllocationError, needs_core_alone
from orchestrator.controller.controller import Controller
from orchestrator.httpjson import HttpError
from orchestrator.controller.inventory import FunctionSpec
from orchestrator.controller.effects import HostTables, Record, Routes, Steering, Work
from orchestrator.controller.engine import Hooks, Operation, Step, run_operation
from orchestrator.errors import DeployError, InputError  # DeployError: re-export
from orchestrator.virt.domain import domain_xml



def refuse_fenced(ctl: Controller, host: str) -> None:
    """InputError for a host declared dead (its functions were rebuilt elsewhere)."""
    fenced = ctl.state.fenced().get(host)
    if fenced:
        raise InputError(f"host {host} is fenced ({fenced['reason']}): once it is back, 'vnfctl recover --orphans' "
                         f"removes its leftovers and lets it take functions again")


def abort_reason(ctl: Controller, op: int):
    """An operation's abort, asked from another process (``vnfctl migrate --abort``)."""
    return lambda: "aborted (vnfctl migrate --abort)" if ctl.state.abort_requested(op) else None


def program_manifest(ctl: Controller, spec: FunctionSpec) -> dict:
    try:
        return ctl.http("GET", f"{ctl.inventory.store_url}/v1/programs/{spec.program_name}/{spec.program_version}")
    except HttpError as exc:
        if exc.status == 404:
            raise InputError(f"function {spec.name}: program {spec.program} is not in the store "
                             f"(vnfctl store push / store build-dp)") from None
        raise


def start_request(spec: FunctionSpec, cores: int, standby: bool = False) -> proto.StartDp:
    """The request that starts the function's DP on ``cores`` cores (deploy, move, recover)."""
    return proto.StartDp(function=spec.name, cp=spec.cp, dp=spec.dp, cores=cores, ip=spec.service_ip, port=spec.port,
                         idle=spec.dp_idle, standby=standby,
                         program=proto.ProgramRef(name=spec.program_name, version=spec.program_version))


def dp_serves(dp: proto.DpState | None, version: int | None) -> bool:
    """Pure: does this DP (as its agent reports it) serve the function? A DP whose program reads
    the CP's policy table serves once it enforces ``version`` of it (any version when None); a
    DP whose program reads none (a stock DPDK application) once it is healthy: alive, pinned,
    its counters readable and its IP claimed."""
    if not dp or not dp.alive:
        return False
    if not dp.takes_policy:
        return bool(dp.healthy)
    got = (dp.stats or {}).get("policy_version") or 0
    return bool(got and (version is None or got >= version))


def serving_detail(dp: proto.DpState) -> str:
    """How a serving DP serves, for a step's detail line."""
    if not dp.takes_policy:
        return f"DP ({dp.program}) serves; its program reads no policy table"
    return f"DP serves policy v{dp.stats['policy_version']}"


BOOT_MAX_S = 600.0        # a CP guest that runs but has not reported yet is waited for this long at most


def wait_dp_policy(ctl: Controller, host: str, spec: FunctionSpec, version: int | None, timeout: float,
                   progress=lambda msg: None, boot_max_s: float = BOOT_MAX_S) -> proto.DpState:
    """Until the DP serves the function (see ``dp_serves``), or DeployError.

    ``timeout`` counts from when the CP first reports (its agent in the guest is up): the policy's
    way (control server -> CP -> agent -> DP) gets that long. Before that the guest is booting,
    which under TCG on a busy machine can take minutes: it is waited for while its guest runs,
    up to ``boot_max_s`` (a guest that stops fails the wait at once)."""
    started = time.monotonic()
    deadline = started + timeout
    reported_at: float | None = None
    said = started
    last = None
    while True:
        now = time.monotonic()
        found = ctl.agent(host).request(proto.DpStatus(dp=spec.dp)).first
        if found:
            last = found
            if not last.alive:
                raise DeployError(f"function {spec.name}: DP on {host} died")
            if dp_serves(last, version):
                return last
        if reported_at is None:
            if ctl.agent(host).request(proto.CpReport(vm=spec.vm)).report is not None:
                reported_at = now
                deadline = max(deadline, now + timeout)
            elif not ctl.hypervisor(host).guest_running(spec.vm):
                raise DeployError(f"function {spec.name}: CP guest {spec.vm} on {host} stopped before its CP "
                                  f"reported (its console log on {host} tells why)")
            else:
                deadline = max(deadline, min(started + boot_max_s, now + timeout))
                if now - said >= 10.0:
                    said = now
                    progress(f"CP {spec.vm} on {host} still booting ({now - started:.0f} s)")
        if now >= deadline:
            break
        time.sleep(0.2)
    waited = time.monotonic() - started
    if reported_at is None:
        raise DeployError(f"function {spec.name}: CP {spec.vm} on {host} has not reported after {waited:.0f}s of "
                          f"booting (its guest runs; its console log on {host} tells how far it got)")
    if last is not None and not last.takes_policy:
        raise DeployError(f"function {spec.name}: DP on {host} is not healthy after {waited:.0f}s (pinned "
                          f"{last.pinned}, counters {'readable' if last.stats else 'unreadable'}, "
                          f"IP claimed {last.claims})")
    raise DeployError(f"function {spec.name}: DP on {host} has no policy table {time.monotonic() - reported_at:.0f}s "
                      f"after its CP first reported (CP -> agent -> DP relay; last stats "
                      f"{last.stats if last else None})")


def wait_cp_table(ctl: Controller, host: str, spec: FunctionSpec, version: int | None, timeout: float) -> int:
    """Until the CP's policy table (at least ``version``) reached its host's agent; its version,
    or DeployError."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        got = ctl.agent(host).request(proto.CpTable(vm=spec.vm)).version
        if got is not None and (version is None or got >= version):
            return got
        time.sleep(0.2)
    raise DeployError(f"function {spec.name}: CP {spec.vm} on {host} has not reported policy "
                      f"v{version} after {timeout:.0f}s (control server -> CP -> agent)")


@dataclass
class DeployContext:
    """What a deploy knows as it goes; saved with its operation after every step (the spec too:
    until the deploy is recorded, the operation is the only place that has it)."""

    function: str
    host: str
    cp_ip: str
    spec: dict
    policy_version: int | None = None
    channel: str | None = None
    dp: dict | None = None

    def as_dict(self) -> dict:
        return asdict(self)


class Placing(Work):
    """The doors and values a deploy's steps share: the function goes to ``ctx.host``."""

    def __init__(self, ctl: Controller, spec: FunctionSpec, ctx: DeployContext, op: int, progress,
                 policy_timeout: float):
        self.ctl, self.spec, self.ctx, self.op, self.progress = ctl, spec, ctx, op, progress
        self.policy_timeout = policy_timeout
        self.entry = ctl.host(ctx.host)

    @property
    def target(self) -> str:
        return self.ctx.host

    @property
    def cp_ip(self) -> str:
        return self.ctx.cp_ip

    @property
    def channel(self) -> str | None:
        return self.ctx.channel

    def target_dp(self) -> dict:
        return self.ctx.dp

    @property
    def agent(self):
        return self.ctl.agent(self.ctx.host)

    @property
    def hv(self):
        return self.ctl.hypervisor(self.ctx.host)

    @property
    def router(self):
        return self.ctl.router_of(self.ctx.host)


class DeployStep(Step["Placing"]):
    """A step of a deploy (see ``engine.Step``)."""


class DeployPrecheck(DeployStep):
    name = "precheck"

    def commit(self, p: Placing) -> str:
        spec, host, ctl = p.spec, p.ctx.host, p.ctl
        free = p.agent.request(proto.Cores()).usable(needs_core_alone(spec.dp_idle))
        if len(free) < spec.dp_cores:
            raise CoreAllocationError(f"host {host}: DP of {spec.name} needs {spec.dp_cores} cores"
                                      f"{' of its own' if needs_core_alone(spec.dp_idle) else ''}, {len(free)} free")
        for other in ctl.state.functions():
            if other["ip"] == spec.service_ip:
                raise InputError(f"service IP {spec.service_ip} is already used by {other['function']}")
        program_manifest(ctl, spec)
        if p.hv.guest_running(spec.vm):
            raise DeployError(f"a guest named {spec.vm} already runs on {host}")
        image = ctl.image_files(host, spec)
        accel = ctl.accel(host)
        return (f"{len(free)} free cores, program {spec.program} in store, image {spec.image} at "
                f"{image.kernel.rsplit('/', 1)[0]}, {accel.accel} ({accel.reason})")

    def done(self, p: Placing) -> bool:
        return True


class PutPolicy(DeployStep):
    name = "policy"

    def commit(self, p: Placing) -> str:
        spec, ctl = p.spec, p.ctl
        url = f"{ctl.inventory.control_url}/v1/policy/{spec.name}"
        if spec.policy is not None:
            doc = ctl.http("PUT", url, spec.policy)
        else:
            try:
                doc = ctl.http("GET", url)
            except HttpError as exc:
                raise DeployError(f"function {spec.name}: no policy at the control server and none in the spec") \
                    if exc.status == 404 else exc
        p.ctx.policy_version = doc["version"]
        return f"policy v{doc['version']}"

    def done(self, p: Placing) -> bool:
        return p.ctx.policy_version is not None


class BootCp(DeployStep):
    name = "boot_cp"

    def commit(self, p: Placing) -> str:
        spec = p.spec
        p.progress(f"booting CP {spec.vm} on {p.ctx.host}")
        guest = p.ctl.cp_guest(spec, p.ctx.host, p.ctx.cp_ip)
        p.ctx.channel = guest.channel_path
        p.hv.start_guest(domain_xml(guest), spec.vm)
        return f"{guest.domain_type}, {spec.vcpus} vCPU, {spec.memory_mib} MiB, {p.ctx.cp_ip}"

    def rollback(self, p: Placing) -> None:
        p.hv.destroy_guest(p.spec.vm)

    def done(self, p: Placing) -> bool:
        return p.hv.guest_running(p.spec.vm)


class StartDp(DeployStep):
    name = "start_dp"

    def commit(self, p: Placing) -> str:
        spec = p.spec
        p.progress(f"starting DP {spec.dp} on {p.ctx.host}")
        rec = p.agent.request(start_request(spec, spec.dp_cores))
        p.ctx.dp = {"core_mask": rec.core_mask, "cores": list(rec.cores), "pid": rec.pid, "mac": rec.mac}
        return f"pid {rec.pid} cores {list(rec.cores)} ({rec.core_mask})"

    def rollback(self, p: Placing) -> None:
        p.agent.request(proto.StopDp(dp=p.spec.dp, deadline_s=1.0))

    def done(self, p: Placing) -> bool:
        return p.agent.request(proto.DpStatus(dp=p.spec.dp)).first is not None


class Converge(DeployStep):
    name = "converge"

    def commit(self, p: Placing) -> str:
        p.progress("waiting for the DP to serve the CP's policy")
        st = wait_dp_policy(p.ctl, p.ctx.host, p.spec, p.ctx.policy_version, p.policy_timeout, p.progress)
        if not st.takes_policy:
            # NOTE: its DP serves without the CP's table, so its serving says nothing of the CP:
            # the deploy waits for the CP's own table to reach the agent (what a move needs).
            p.progress("waiting for the CP to report its policy")
            got = wait_cp_table(p.ctl, p.ctx.host, p.spec, p.ctx.policy_version, p.policy_timeout)
            return f"{serving_detail(st)}; the CP holds policy v{got}"
        return serving_detail(st)


def deploy_steps() -> list[DeployStep]:
    """Pure: a deploy's steps, in order (the routes, steering, host tables and record are the
    same step types a move and a recovery use: ``effects.py``)."""
    return [DeployPrecheck(), PutPolicy(), BootCp(), HostTables(), StartDp(), Routes(), Steering(),
            Converge(), Record()]


DEPLOY_STEPS = tuple(deploy_steps())        # their names, for plans and tests


def deploy(ctl: Controller, spec: FunctionSpec, host: str, progress=lambda msg: None,
           policy_timeout: float = 120.0) -> dict:
    ctl.state.require_idle(spec.name)
    if ctl.state.placement(spec.name):
        raise InputError(f"function {spec.name} is already deployed (on {ctl.state.placement(spec.name)['host']})")
    entry = ctl.host(host)
    refuse_fenced(ctl, host)
    ctx = DeployContext(spec.name, host, ctl.allocate_cp_ip(), asdict(spec))
    op = ctl.state.begin_operation(spec.name, "deploy", dst=host, context=ctx.as_dict())
    p = Placing(ctl, spec, ctx, op, progress, policy_timeout)
    operation = Operation("deploy", f"deploy {spec.name} on {host}", [[s] for s in deploy_steps()], "deploy:")
    records = run_operation(ctl, op, spec.name, operation, p, Hooks(ctx.as_dict, abort_reason(ctl, op)))
    return {"function": spec.name, "host": host, "router": entry.router, "cp_ip": ctx.cp_ip,
            "core_mask": ctx.dp["core_mask"], "cores": ctx.dp["cores"], "pid": ctx.dp["pid"],
            "steps": [{"step": r.name, "ms": round(r.ms, 1), "detail": r.detail} for r in records]}


# -- undeploy: remove what really exists, on every host and router ------------------------------
@dataclass
class RemovalContext:
    function: str
    spec: dict
    removed: dict = field(default_factory=dict)      # what each step found and removed

    def as_dict(self) -> dict:
        return asdict(self)


class Removal:
    def __init__(self, ctl: Controller, spec: FunctionSpec, ctx: RemovalContext, progress):
        self.ctl, self.spec, self.ctx, self.progress = ctl, spec, ctx, progress

    def hosts(self) -> list[str]:
        """Every host but the fenced: what one of those holds is removed when it rejoins (it is
        known off, and asking it would wait on a host that does not answer)."""
        fenced = self.ctl.state.fenced()
        return [h.name for h in self.ctl.inventory.hosts if h.name not in fenced]


class StopDps(DeployStep):
    name = "stop_dp"

    def commit(self, r: Removal) -> str:
        found = {}
        for host in r.hosts():
            got = r.ctl.agent(host).request(proto.StopDp(dp=r.spec.dp, deadline_s=2.0))
            if got.stopped:
                found[host] = got.how
        r.ctx.removed["dps"] = found
        return ", ".join(f"{h}: {how}" for h, how in found.items()) or "none running"

    def done(self, r: Removal) -> bool:
        return not any(r.ctl.agent(h).request(proto.DpStatus(dp=r.spec.dp)).dps for h in r.hosts())


class UnregisterCp(DeployStep):
    name = "unregister_cp"

    def commit(self, r: Removal) -> str:
        found = [h for h in r.hosts() if r.ctl.agent(h).request(proto.UnregisterCp(vm=r.spec.vm)).removed]
        r.ctx.removed["cp_tables"] = found
        return ", ".join(found) or "none"


class DestroyCp(DeployStep):
    name = "destroy_cp"

    def commit(self, r: Removal) -> str:
        found = [h for h in r.hosts() if r.ctl.hypervisor(h).destroy_guest(r.spec.vm)]
        r.ctx.removed["guests"] = found
        return ", ".join(found) or "none"

    def done(self, r: Removal) -> bool:
        return not any(r.ctl.hypervisor(h).guest_running(r.spec.vm) for h in r.hosts())


class WithdrawRoutes(DeployStep):
    name = "routes"

    def commit(self, r: Removal) -> str:
        r.ctl.routing.withdraw(r.spec.service_ip)
        return "withdrawn everywhere"


class RemoveSteering(DeployStep):
    name = "steering"

    def commit(self, r: Removal) -> str:
        found = []
        for name, router in r.ctl.routers.items():
            if router.steering(r.spec.name) is not None:
                router.remove_steering(r.spec.name)
                found.append(name)
        return ", ".join(found) or "none"


class Forget(DeployStep):
    name = "forget"

    def commit(self, r: Removal) -> None:
        r.ctl.state.forget(r.spec.name)


REMOVAL_STEPS = (StopDps, UnregisterCp, DestroyCp, WithdrawRoutes, RemoveSteering, Forget)


def remove_everywhere(ctl: Controller, spec: FunctionSpec, op: int, progress=lambda msg: None) -> dict:
    """Remove the function from every host and router (what exists, not what the state says).
    Every step is idempotent: run again, it finds nothing left to remove."""
    ctx = RemovalContext(spec.name, asdict(spec))
    r = Removal(ctl, spec, ctx, progress)
    operation = Operation("undeploy", f"undeploy {spec.name}", [[cls()] for cls in REMOVAL_STEPS], "undeploy:",
                          forward_only=True)
    records = run_operation(ctl, op, spec.name, operation, r, Hooks(ctx.as_dict, abort_reason(ctl, op)))
    return {"removed": ctx.removed, "steps": [{"step": x.name, "ms": round(x.ms, 1), "detail": x.detail}
                                              for x in records]}


def undeploy(ctl: Controller, name: str, progress=lambda msg: None) -> dict:
    ctl.state.require_idle(name)
    spec, placement = ctl.require_function(name)
    progress(f"removing {name} (placed on {placement['host']}) from every host and router")
    op = ctl.state.begin_operation(name, "undeploy", src=placement["host"], context={"spec": asdict(spec)})
    done = remove_everywhere(ctl, spec, op, progress)
    dps = done["removed"].get("dps", {})
    return {"function": name, "host": placement["host"], "dp": {"stopped": bool(dps), "where": dps},
            "removed": done["removed"], "steps": done["steps"]}
