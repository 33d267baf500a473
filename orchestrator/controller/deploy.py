"""Putting a function (CP guest + DP) on a host, and taking it away.

deploy: precheck -> policy -> boot CP -> register CP with the agent -> start DP -> routes ->
steering -> wait until the DP serves the CP's table -> record. Each step undoes itself if a later
one fails, so a failed deploy leaves nothing behind.
"""

from __future__ import annotations

import time

from orchestrator.agent.cores import CoreAllocationError
from orchestrator.controller.controller import Controller
from orchestrator.controller.http import HttpError
from orchestrator.controller.inventory import FunctionSpec
from orchestrator.controller.steps import Runner, Step
from orchestrator.errors import InputError, VnfctlError
from orchestrator.virt.domain import domain_xml


class DeployError(VnfctlError):
    exit_code = 14


def program_manifest(ctl: Controller, spec: FunctionSpec) -> dict:
    try:
        return ctl.http("GET", f"{ctl.inventory.store_url}/v1/programs/{spec.program_name}/{spec.program_version}")
    except HttpError as exc:
        if exc.status == 404:
            raise InputError(f"function {spec.name}: program {spec.program} is not in the store "
                             f"(vnfctl store push / store build-dp)") from None
        raise


def wait_dp_policy(ctl: Controller, host: str, spec: FunctionSpec, version: int | None, timeout: float) -> dict:
    """Until the DP reports the CP's table (at least ``version``), or DeployError."""
    deadline = time.monotonic() + timeout
    last = None
    while time.monotonic() < deadline:
        dps = ctl.agent(host).call("dp_status", dp=spec.dp)["dps"]
        if dps:
            last = dps[0]
            if not last["alive"]:
                raise DeployError(f"function {spec.name}: DP on {host} died")
            got = (last.get("stats") or {}).get("policy_version") or 0
            if got and (version is None or got >= version):
                return last
        time.sleep(0.2)
    raise DeployError(f"function {spec.name}: DP on {host} has no policy table after {timeout:.0f}s "
                      f"(CP -> agent -> DP relay; last stats {last and last.get('stats')})")


def deploy(ctl: Controller, spec: FunctionSpec, host: str, progress=lambda msg: None,
           policy_timeout: float = 120.0) -> dict:
    if ctl.state.placement(spec.name):
        raise InputError(f"function {spec.name} is already deployed (on {ctl.state.placement(spec.name)['host']})")
    entry = ctl.host(host)
    router = ctl.router_of(host)
    agent = ctl.agent(host)
    hv = ctl.hypervisor(host)
    cp_ip = ctl.allocate_cp_ip()
    out: dict = {"function": spec.name, "host": host, "router": entry.router, "cp_ip": cp_ip}
    policy_version: list[int | None] = [None]

    def precheck():
        free = agent.call("cores")["free"]
        if len(free) < spec.dp_cores:
            raise CoreAllocationError(f"host {host}: DP of {spec.name} needs {spec.dp_cores} cores, {len(free)} free")
        for other in ctl.state.functions():
            if other["ip"] == spec.service_ip:
                raise InputError(f"service IP {spec.service_ip} is already used by {other['function']}")
        program_manifest(ctl, spec)
        if hv.guest_running(spec.vm):
            raise DeployError(f"a guest named {spec.vm} already runs on {host}")
        image = ctl.image_on(host, spec)
        accel = ctl.accel(host)
        return (f"{len(free)} free cores, program {spec.program} in store, image {spec.image} at "
                f"{image['kernel'].rsplit('/', 1)[0]}, {accel.accel} ({accel.reason})")

    def put_policy():
        url = f"{ctl.inventory.control_url}/v1/policy/{spec.name}"
        if spec.policy is not None:
            doc = ctl.http("PUT", url, spec.policy)
        else:
            try:
                doc = ctl.http("GET", url)
            except HttpError as exc:
                raise DeployError(f"function {spec.name}: no policy at the control server and none in the spec") \
                    if exc.status == 404 else exc
        policy_version[0] = doc["version"]
        return f"policy v{doc['version']}"

    guest = None

    def boot_cp():
        nonlocal guest
        progress(f"booting CP {spec.vm} on {host}")
        guest = ctl.cp_guest(spec, host, cp_ip)
        hv.start_guest(domain_xml(guest), spec.vm)
        return f"{guest.domain_type}, {spec.vcpus} vCPU, {spec.memory_mib} MiB, {cp_ip}"

    def register_cp():
        agent.call("register_cp", vm=spec.vm, cp=spec.cp, function=spec.name, channel=guest.channel_path)

    def start_dp():
        progress(f"starting DP {spec.dp} on {host}")
        rec = agent.call("start_dp", function=spec.name, cp=spec.cp, dp=spec.dp, cores=spec.dp_cores,
                         ip=spec.service_ip, port=spec.port,
                         program={"name": spec.program_name, "version": spec.program_version})
        out.update(core_mask=rec["core_mask"], cores=rec["cores"], pid=rec["pid"])
        return f"pid {rec['pid']} cores {rec['cores']} ({rec['core_mask']})"

    def routes():
        try:
            converged = ctl.routing.move(spec.service_ip, None, entry.router)
        except BaseException:
            ctl.routing.withdraw(spec.service_ip)     # a half-made route is this step's own to undo
            raise
        out["route_convergence_ms"] = max(converged.values())
        for router, ms in converged.items():
            ctl.state.journal(None, spec.name, "deploy:routes", "converged", ms, f"router {router}")
        return (f"{ctl.inventory.route_strategy}: " +
                ", ".join(f"{n}: {d} at {converged[n]:.0f} ms" for n, d in ctl.routing.state(spec.service_ip).items()))

    def unroute():
        ctl.routing.withdraw(spec.service_ip)

    def steering():
        if spec.steering_mark is None:
            return "none"
        router.install_steering(spec.name, spec.service_ip, spec.port, spec.steering_mark)
        return f"mark {spec.steering_mark:#x} on {entry.router}"

    def converge():
        progress("waiting for the DP to serve the CP's policy")
        st = wait_dp_policy(ctl, host, spec, policy_version[0], policy_timeout)
        return f"DP serves policy v{st['stats']['policy_version']}"

    def record():
        ctl.state.record_deploy(spec, host, entry.router, entry.migration_address, f"h-{host}", cp_ip,
                                out["core_mask"], out["cores"], out["pid"],
                                entry.router if spec.steering_mark is not None else None)

    runner = Runner(f"deploy {spec.name} on {host}",
                    lambda step, phase, ms, detail: ctl.state.journal(None, spec.name, f"deploy:{step}", phase, ms, detail))
    records = runner.run([
        Step("precheck", precheck),
        Step("policy", put_policy),
        Step("boot_cp", boot_cp, lambda: hv.destroy_guest(spec.vm)),
        Step("register_cp", register_cp, lambda: agent.call("unregister_cp", vm=spec.vm)),
        Step("start_dp", start_dp, lambda: agent.call("stop_dp", dp=spec.dp, deadline_s=1.0)),
        Step("routes", routes, unroute),
        Step("steering", steering, lambda: router.remove_steering(spec.name)),
        Step("converge", converge),
        Step("record", record),
    ])
    out["steps"] = [{"step": r.name, "ms": round(r.ms, 1), "detail": r.detail} for r in records]
    return out


def undeploy(ctl: Controller, name: str, progress=lambda msg: None) -> dict:
    spec, placement = ctl.require_function(name)
    host = placement["host"]
    agent = ctl.agent(host)
    progress(f"stopping {name} on {host}")
    stopped = agent.call("stop_dp", dp=spec.dp, deadline_s=2.0)
    agent.call("unregister_cp", vm=spec.vm)
    ctl.hypervisor(host).destroy_guest(spec.vm)
    ctl.routing.withdraw(spec.service_ip)
    for r in ctl.routers.values():
        r.remove_steering(spec.name)
    ctl.state.forget(name)
    return {"function": name, "host": host, "dp": stopped}
