"""Moving a whole function between hosts: the seed's sequence (figures 14-20) as undoable steps.

    precheck        S11  target up, free cores and memory, program and CP image present and verified on
                         the target, same accelerator, CPU model
    prepare_dp      S602 (make-before-break) the target DP fetched, verified, pinned, in standby,
                         seeded with the CP's current table
    migrate_cp      S12  live migration of the CP's guest through libvirt
    handover_dp     S14/S509, S15/S16: make-before-break activates the target DP right at the CP's
                         switchover and puts the source DP in standby; break-before-make stops the
                         source DP, then starts the target DP (the seed's order)
    host_tables     S603 VM-CP / CP-DP tables on both hosts (the CP's relay moves with it)
    routes          S17/S18, S104-S106, S202-S204: the function IP's host route follows it (static on
                         every router, or announced at the target's router by BGP), new before
                         old, and every router's FIB is checked; per-router convergence journaled
    steering        S302-S309, S404/S405: the function's steering rule moves to the target's router
    announce_arp    example 4: the DP's gratuitous ARP; neighbours' ARP caches checked
    verify          the CP's state continued on the target (same boot, counter moved on); the
                         target DP serves the CP's table (policy preserved), it is healthy
    cleanup         the source DP stopped, its cores freed; the controller's tables updated

A failing step rolls back what was done in reverse: the function is whole on the source again.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field

from orchestrator.agent.cores import CoreAllocationError
from orchestrator.controller.controller import Controller
from orchestrator.controller.deploy import program_manifest
from orchestrator.controller.steps import Runner, Step, StepRecord
from orchestrator.errors import InputError, VnfctlError
from orchestrator.virt.accel import AccelChoice
from orchestrator.virt.channel import Report, continuity
from orchestrator.virt.libvirt_host import MigrationOptions

HANDOVERS = ("make-before-break", "break-before-make")


class MigrationPrecheckError(VnfctlError):
    exit_code = 15


@dataclass
class MigrationReport:
    function: str
    src: str
    dst: str
    handover: str
    total_ms: float = 0.0
    cp_downtime_ms: float | None = None    # libvirt's figure; None after a post-copy switch
    cp_postcopy: bool = False
    cp_continuity: bool = False
    cores_before: list[int] = field(default_factory=list)
    cores_after: list[int] = field(default_factory=list)
    core_mask_after: str = ""
    routes_ok: bool = False
    route_convergence_ms: dict = field(default_factory=dict)   # router -> ms until its FIB led to the target
    steering_ok: bool = False
    arp_ok: bool = False
    policy_preserved: bool = False
    policy_version: int | None = None
    switchover_at: float | None = None     # wall time the target DP went active
    steps: list[StepRecord] = field(default_factory=list)
    migration_id: int | None = None

    def as_json(self) -> dict:
        return {"function": self.function, "src": self.src, "dst": self.dst, "handover": self.handover,
                "total_ms": round(self.total_ms, 1), "cp_downtime_ms": self.cp_downtime_ms,
                "cp_postcopy": self.cp_postcopy, "cp_continuity": self.cp_continuity,
                "cores_before": self.cores_before, "cores_after": self.cores_after,
                "core_mask_after": self.core_mask_after, "routes_ok": self.routes_ok,
                "route_convergence_ms": self.route_convergence_ms, "steering_ok": self.steering_ok,
                "arp_ok": self.arp_ok, "policy_preserved": self.policy_preserved,
                "policy_version": self.policy_version, "migration_id": self.migration_id,
                "steps": [{"step": s.name, "ms": round(s.ms, 1), "ok": s.ok, "detail": s.detail} for s in self.steps]}


def wait_for(check, timeout: float, interval: float = 0.05):
    deadline = time.monotonic() + timeout
    while True:
        value = check()
        if value or time.monotonic() > deadline:
            return value
        time.sleep(interval)


def migrate_function(ctl: Controller, name: str, dst: str, handover: str = "make-before-break",
                     options: MigrationOptions = MigrationOptions(), progress=lambda msg: None,
                     on_job=None, fault=None) -> MigrationReport:
    """Move function ``name`` to host ``dst``. ``fault`` (tests only) is called with a step name
    before that step runs, so a test can make a real step fail at a chosen point."""
    if handover not in HANDOVERS:
        raise InputError(f"handover must be one of {', '.join(HANDOVERS)}")
    spec, placement = ctl.require_function(name)
    src = placement["host"]
    if dst == src:
        raise InputError(f"function {name} already runs on {dst}")
    s_entry, d_entry = ctl.host(src), ctl.host(dst)
    s_router, d_router = ctl.router_of(src), ctl.router_of(dst)
    s_hv, d_hv = ctl.hypervisor(src), ctl.hypervisor(dst)
    report = MigrationReport(name, src, dst, handover)
    mig = ctl.state.begin_migration(name, src, dst, handover)
    report.migration_id = mig
    t_start = time.monotonic()
    ctx: dict = {}

    def s_agent():
        return ctl.agent(src)

    def d_agent():
        return ctl.agent(dst)

    def step(fn, name_):
        def run():
            if fault:
                fault(name_)
            return fn()
        return run

    # -- S11 precheck -------------------------------------------------------------------------
    def precheck():
        progress(f"precheck {dst}")
        src_dp = next(iter(s_agent().call("dp_status", dp=spec.dp)["dps"]), None)
        if not src_dp or not src_dp["alive"]:
            raise MigrationPrecheckError(f"function {name}: its DP is not running on {src}")
        report.cores_before = list(src_dp["cores"])
        ctx["src_dp"] = src_dp
        free = d_agent().call("cores")["free"]
        if len(free) < len(report.cores_before):
            raise CoreAllocationError(f"host {dst}: not enough free cores for {spec.dp}: need "
                                      f"{len(report.cores_before)}, free {len(free)}")
        free_mem = d_hv.free_memory_mib()
        if free_mem < spec.memory_mib:
            raise MigrationPrecheckError(f"host {dst}: {free_mem} MiB free, CP needs {spec.memory_mib} MiB")
        running = AccelChoice.name_of(s_hv.domain_type(spec.vm))
        target = ctl.accel(dst)
        if target.accel != running:
            raise MigrationPrecheckError(
                f"function {name}: its CP runs under {running} on {src}, but {dst} would run it under "
                f"{target.accel} ({target.reason}): a live migration cannot change the accelerator")
        program_manifest(ctl, spec)
        fetched = d_agent().call("fetch_program", name=spec.program_name, version=spec.program_version)
        kernel, initrd = s_hv.boot_files(spec.vm)
        image = ctl.image_on(dst, spec)
        if (image["kernel"], image["initrd"]) != (kernel, initrd):
            raise MigrationPrecheckError(
                f"host {dst}: its agent keeps image {spec.image} at {image['kernel']}, {image['initrd']}, not at "
                f"the paths the running CP booted from ({kernel}, {initrd}): configure the same image directory")
        compat = s_hv.cpu_compatible(d_hv, spec.vm)
        if not compat[0]:
            raise MigrationPrecheckError(f"host {dst}: CPU model incompatible with the CP guest: {compat[1]}")
        table = wait_for(lambda: (t := s_agent().call("cp_table", vm=spec.vm))["version"] is not None and t, 5.0, 0.1)
        if not table:
            raise MigrationPrecheckError(f"function {name}: the CP's policy table is not known on {src} "
                                         f"(its channel relay has nothing yet)")
        ctx["table"] = table
        ctx["cp_before"] = wait_for(lambda: s_agent().call("cp_report", vm=spec.vm)["report"], 5.0, 0.1)
        if not ctx["cp_before"]:
            raise MigrationPrecheckError(f"function {name}: CP {spec.vm} does not report on {src}, so its "
                                         f"continuity could not be checked after a move")
        return (f"{len(free)} free cores, {free_mem} MiB free, program sha256 {fetched['sha256'][:12]} and image "
                f"{spec.image} verified on {dst}, {target.accel} on both")

    # -- S602 prepare the target DP (make-before-break) ------------------------------------------
    def start_target_dp(standby: bool):
        rec = d_agent().call("start_dp", function=name, cp=spec.cp, dp=spec.dp, cores=len(report.cores_before),
                             ip=spec.service_ip, standby=standby,
                             program={"name": spec.program_name, "version": spec.program_version})
        ctx["dst_dp"] = rec
        report.cores_after, report.core_mask_after = list(rec["cores"]), rec["core_mask"]
        table = ctx.get("table") or {}
        if table.get("table") is not None:
            d_agent().call("seed_table", cp=spec.cp, version=table["version"], table=table["table"])
        return f"pid {rec['pid']} cores {rec['cores']} ({rec['core_mask']}){' standby' if standby else ''}"

    def stop_target_dp():
        d_agent().call("stop_dp", dp=spec.dp, deadline_s=1.0)

    def prepare_dp():
        progress(f"preparing DP on {dst} (standby)")
        return start_target_dp(standby=True)

    # -- S12 live-migrate the CP ------------------------------------------------------------------
    def migrate_cp():
        progress(f"live-migrating CP {spec.vm} {src} -> {dst}")
        result = s_hv.migrate(d_hv, spec.vm, d_entry.migration_address, options, on_progress=on_job)
        ctx["cp_done_at"] = time.time()
        report.cp_downtime_ms, report.cp_postcopy = result.downtime_ms, result.postcopy
        if result.postcopy:
            return f"{result.total_ms:.0f} ms, switched to post-copy"
        return f"{result.total_ms:.0f} ms, downtime {result.downtime_ms:.0f} ms" if result.downtime_ms is not None \
            else f"{result.total_ms:.0f} ms"

    def migrate_cp_back():
        if d_hv.guest_running(spec.vm):
            d_hv.migrate(s_hv, spec.vm, s_entry.migration_address)

    # -- S14-S16 hand the DP over ---------------------------------------------------------------
    def handover_dp():
        # NOTE: a handover that fails half-way puts the source DP back itself: the runner only
        # undoes steps that completed.
        if handover == "make-before-break":
            # Target first, then the forwarding tables, then the source steps back: traffic is
            # never left without an active DP on its path (S104-S106 are re-checked in 'routes').
            d_agent().call("activate_dp", dp=spec.dp)
            try:
                ctx["handover_convergence"] = set_routes(d_entry.router)
                s_agent().call("deactivate_dp", dp=spec.dp)
            except BaseException:
                set_routes(s_entry.router)
                d_agent().call("deactivate_dp", dp=spec.dp)
                raise
            report.switchover_at = time.time()
            return "target DP active, routes switched, source DP in standby"
        stopped = s_agent().call("stop_dp", dp=spec.dp, deadline_s=2.0)      # S509
        ctx["src_stopped"] = stopped
        try:
            detail = start_target_dp(standby=False)                           # S602
        except BaseException:
            restart_source_dp()
            raise
        report.switchover_at = time.time()
        return f"source DP {stopped.get('how')}; target {detail}"

    def undo_handover():
        if handover == "make-before-break":
            d_agent().call("deactivate_dp", dp=spec.dp)
            s_agent().call("activate_dp", dp=spec.dp)
            set_routes(s_entry.router)
        else:
            stop_target_dp()
            restart_source_dp()

    def restart_source_dp():
        if not s_agent().call("dp_status", dp=spec.dp)["dps"]:
            s_agent().call("start_dp", function=name, cp=spec.cp, dp=spec.dp, cores=len(report.cores_before),
                           ip=spec.service_ip, program={"name": spec.program_name, "version": spec.program_version})

    # -- S603 host tables ---------------------------------------------------------------------
    def host_tables():
        d_agent().call("register_cp", vm=spec.vm, cp=spec.cp, function=name)
        s_agent().call("unregister_cp", vm=spec.vm)
        return f"VM-CP {spec.vm} and CP-DP {spec.dp} now on {dst}"

    def undo_host_tables():
        s_agent().call("register_cp", vm=spec.vm, cp=spec.cp, function=name)
        d_agent().call("unregister_cp", vm=spec.vm)

    # -- S17/S18 forwarding tables --------------------------------------------------------------
    def set_routes(target_router: str) -> dict[str, float]:
        """Move the function's host route to ``target_router`` (from wherever it leads now) and
        journal when each router's FIB converged."""
        here = ctx.get("routes_at", s_entry.router)
        # NOTE: recorded before the move: if it fails half-way, moving back from here also takes
        # away what was announced at the target.
        ctx["routes_at"] = target_router
        converged = ctl.routing.move(spec.service_ip, here, target_router)
        for router, ms in converged.items():
            ctl.state.journal(mig, name, "routes", "converged", ms, f"router {router} -> {target_router}")
        return converged

    def routes():
        if ctx.get("routes_at") != d_entry.router:
            report.route_convergence_ms = set_routes(d_entry.router)
        elif not report.route_convergence_ms:
            report.route_convergence_ms = ctx.get("handover_convergence", {})
        report.routes_ok = ctl.routing.converged(spec.service_ip, d_entry.router)
        detail = ", ".join(f"{n}: {d}" for n, d in ctl.routing.state(spec.service_ip).items())
        if not report.routes_ok:
            raise VnfctlError(f"function {name}: the routers do not all lead to {dst} ({detail})")
        slowest = max(report.route_convergence_ms.values(), default=0)
        return (f"{ctl.inventory.route_strategy}: {detail}; slowest router converged in {slowest:.0f} ms"
                + (" (crossed to another router)" if d_entry.router != s_entry.router else ""))

    # -- S302-S309 / S404-S405 steering -------------------------------------------------------------
    def steering():
        if spec.steering_mark is None:
            report.steering_ok = True
            return "none"
        s_router.remove_steering(name)
        d_router.install_steering(name, spec.service_ip, spec.port, spec.steering_mark)
        report.steering_ok = d_router.steering(name) is not None and (
            s_router is d_router or s_router.steering(name) is None)
        return f"mark {spec.steering_mark:#x}: {s_entry.router} -> {d_entry.router}"

    def undo_steering():
        if spec.steering_mark is not None:
            d_router.remove_steering(name)
            s_router.install_steering(name, spec.service_ip, spec.port, spec.steering_mark)

    # -- example 4: gratuitous ARP -----------------------------------------------------------------
    def announce_arp():
        mac = ctx["dst_dp"]["mac"]
        d_agent().call("announce_dp", dp=spec.dp)
        report.arp_ok = bool(wait_for(lambda: d_router.neighbour_mac(spec.service_ip) in (mac, None)
                                      and d_router.neighbour_mac(spec.service_ip) == mac, 3.0))
        if not report.arp_ok:
            raise VnfctlError(f"router {d_entry.router}: ARP cache holds {d_router.neighbour_mac(spec.service_ip)} "
                              f"for {spec.service_ip}, not the target DP's {mac}")
        return f"{d_entry.router} ARP cache: {spec.service_ip} -> {mac}"

    # -- verify ----------------------------------------------------------------------------------
    def verify():
        cp_state = cp_continued()
        want = (ctx.get("table") or {}).get("version")

        def serving():
            dps = d_agent().call("dp_status", dp=spec.dp)["dps"]
            if not dps or not dps[0]["healthy"]:
                return None
            got = (dps[0].get("stats") or {}).get("policy_version")
            return dps[0] if got and (want is None or got >= want) else None

        dp = wait_for(serving, 30.0, 0.1)
        if not dp:
            raise VnfctlError(f"function {name}: the DP on {dst} does not serve the CP's policy v{want}")
        report.policy_version = dp["stats"]["policy_version"]
        report.policy_preserved = want is None or report.policy_version >= want
        if len(dp["cores"]) != len(report.cores_before):
            raise VnfctlError(f"function {name}: DP has {len(dp['cores'])} cores, had {len(report.cores_before)}")
        return f"CP {cp_state}; policy v{report.policy_version} served, cores {dp['cores']} pinned"

    def cp_continued() -> str:
        """The CP's own report, relayed on the target, against the one taken before the move."""
        before = Report.from_json(ctx["cp_before"])

        def after():
            doc = d_agent().call("cp_report", vm=spec.vm)["report"]
            got = Report.from_json(doc) if doc else None
            return got if got and (got.boot_id != before.boot_id or got.counter > before.counter) else None

        got = wait_for(after, 15.0, 0.1)
        if got is None:
            seen = d_agent().call("cp_report", vm=spec.vm)
            age = f"{time.time() - seen['report_at']:.1f}s ago" if seen.get("report_at") else "never"
            raise VnfctlError(f"function {name}: CP {spec.vm} does not report on {dst} (channel "
                              f"{'connected' if seen['connected'] else 'not connected'}, "
                              f"{seen.get('connections')} connection(s), last report {age})")
        report.cp_continuity, detail = continuity(before, got)
        if not report.cp_continuity:
            raise VnfctlError(f"function {name}: CP {spec.vm} did not continue on {dst}: {detail}")
        return detail

    # -- cleanup -----------------------------------------------------------------------------------
    def cleanup():
        if handover == "make-before-break":
            stopped = s_agent().call("stop_dp", dp=spec.dp, deadline_s=2.0)
        else:
            stopped = ctx.get("src_stopped", {})
        dst_dp = ctx["dst_dp"]
        ctl.state.record_deploy(spec, dst, d_entry.router, d_entry.migration_address, f"h-{dst}",
                                placement["cp_ip"], dst_dp["core_mask"], dst_dp["cores"], dst_dp["pid"],
                                d_entry.router if spec.steering_mark is not None else None)
        return f"source DP {stopped.get('how', 'stopped')}, cores {stopped.get('cores_freed')} freed on {src}"

    steps = [Step("precheck", step(precheck, "precheck"))]
    if handover == "make-before-break":
        steps.append(Step("prepare_dp", step(prepare_dp, "prepare_dp"), stop_target_dp))
    steps += [
        Step("migrate_cp", step(migrate_cp, "migrate_cp"), migrate_cp_back),
        Step("handover_dp", step(handover_dp, "handover_dp"), undo_handover),
        Step("host_tables", step(host_tables, "host_tables"), undo_host_tables),
        Step("routes", step(routes, "routes"), lambda: set_routes(s_entry.router)),
        Step("steering", step(steering, "steering"), undo_steering),
        # NOTE: no undo of its own: undoing the handover re-activates (or restarts) the source
        # DP, and an activated DP announces itself with gratuitous ARPs.
        Step("announce_arp", step(announce_arp, "announce_arp")),
        Step("verify", step(verify, "verify")),
        Step("cleanup", step(cleanup, "cleanup")),
    ]
    runner = Runner(f"migrate {name} {src} -> {dst}",
                    lambda st, phase, ms, detail: ctl.state.journal(mig, name, st, phase, ms, detail))
    try:
        report.steps = runner.run(steps)
    except BaseException:
        report.steps = runner.records
        ctl.state.end_migration(mig, "rolled back")
        raise
    report.total_ms = (time.monotonic() - t_start) * 1000
    ctl.state.end_migration(mig, "done")
    return report
