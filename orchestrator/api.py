"""The Python API of vnfctl: open a site, act on its functions, get typed results.

    from orchestrator.api import open_site

    with open_site(lab="vnf") as site:
        site.deploy("fa", "a")
        plan = site.migrate("fa", to="c", plan=True)     # what would run and change; touches nothing
        moved = site.migrate("fa", to="c")
        print(moved.cp_downtime_ms, [s.name for s in moved.steps])

The CLI (``orchestrator.commands``) and the Ansible collection (``ansible/``) are built on this
module; neither talks to agents, routers or the control server itself.

Contracts:

- Every failure is a ``VnfctlError`` (``orchestrator.errors``) carrying the operator's one-line
  message; nothing here prints.
- ``plan=True`` only reads: the controller's database, the agents' read-only operations
  (``cores``), each router's FIB (``route``, ``steering``) and the control server's ``GET``. It
  takes no lease and changes no host, router, guest or table. What the real operation's
  precheck would refuse (too few free cores, a service IP in use) is listed in ``blockers``;
  what is wrong with the request itself (an unknown host or function, a function another
  operation holds) raises as the real operation would.
- Progress goes through one callback, ``on_event(Event)``, given to ``open_site`` (for every
  call) or to one call (for that call).
- Results are dataclasses with ``as_json()``; the CLI's ``--json`` output is exactly that.
"""

from __future__ import annotations

import dataclasses

import json
import threading
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Any, Callable

from orchestrator.agent.cores import needs_core_alone, usable_cores
from orchestrator.controller import placement as placement_plans
from orchestrator.controller.inventory import NAME, FunctionSpec, load_functions
from orchestrator.controller.policy import validate_table
from orchestrator.errors import HttpError, InputError, MovesFailed, OperationInterrupted, VnfctlError

__all__ = [
    "Change", "CpStatus", "Deployed", "DeployPlan", "DpStatus", "Event", "FunctionStatus", "HostInfo", "MovePlan",
    "MoveResult", "Placement", "Plan", "Policy", "PolicyPlan", "PolicyTable", "SiteCheck", "Site", "StepResult",
    "Undeployed", "UndeployPlan", "HANDOVERS", "open_site",
]

HANDOVERS = ("make-before-break", "break-before-make")


# -- events -------------------------------------------------------------------------------------
@dataclass(frozen=True)
class Event:
    """One piece of progress: ``kind`` is "move" (a move starts: ``message`` is "SRC -> DST"),
    "progress" (a step announces itself) or "job" (libvirt's job statistics of the CP's live
    migration, in ``job``)."""

    kind: str
    function: str | None
    message: str = ""
    job: dict | None = None


EventSink = Callable[[Event], None]


def _quiet(_event: Event) -> None:
    return None


# -- results ------------------------------------------------------------------------------------
@dataclass(frozen=True)
class StepResult:
    name: str
    ms: float
    ok: bool = True
    detail: str = ""
    start_ms: float | None = None     # from the operation's start: steps run side by side overlap

    def as_json(self) -> dict:
        return {"step": self.name, "start_ms": self.start_ms, "ms": self.ms, "ok": self.ok, "detail": self.detail}

    @classmethod
    def from_json(cls, doc: dict) -> "StepResult":
        return cls(doc["step"], doc["ms"], doc.get("ok", True), doc.get("detail", ""), doc.get("start_ms"))


@dataclass(frozen=True)
class Placement:
    """Where a function runs, as the controller recorded it."""

    function: str
    host: str
    router: str
    service_ip: str
    cp_ip: str
    core_mask: str | None
    cores: list[int]

    def as_json(self) -> dict:
        return {"function": self.function, "host": self.host, "router": self.router, "service_ip": self.service_ip,
                "cp_ip": self.cp_ip, "core_mask": self.core_mask, "cores": self.cores}

    @classmethod
    def from_row(cls, row: dict) -> "Placement":
        return cls(row["function"], row["host"], row["router"], row["ip"], row["cp_ip"], row["core_mask"],
                   json.loads(row["cores"]) if row.get("cores") else [])


def _passthrough(doc: dict, known: tuple[str, ...]) -> dict:
    return {k: v for k, v in doc.items() if k not in known and k != "steps"}


@dataclass(frozen=True)
class Deployed:
    """A deploy's outcome. ``extra`` passes through what else deploy reported."""

    function: str
    host: str
    router: str
    cp_ip: str
    pid: int | None
    cores: list[int]
    core_mask: str
    route_convergence_ms: float | None
    steps: list[StepResult]
    extra: dict = field(default_factory=dict)

    KNOWN = ("function", "host", "router", "cp_ip", "pid", "cores", "core_mask", "route_convergence_ms")

    def as_json(self) -> dict:
        return dict(self.extra, **{k: getattr(self, k) for k in self.KNOWN}, steps=[s.as_json() for s in self.steps])

    @classmethod
    def from_json(cls, doc: dict) -> "Deployed":
        return cls(doc["function"], doc["host"], doc["router"], doc["cp_ip"], doc.get("pid"),
                   list(doc.get("cores", [])), doc.get("core_mask", ""), doc.get("route_convergence_ms"),
                   [StepResult.from_json(s) for s in doc.get("steps", [])], _passthrough(doc, cls.KNOWN))


@dataclass(frozen=True)
class Undeployed:
    """An undeploy's outcome: where it ran, its DP as stopped. ``extra`` passes through what else
    undeploy reported."""

    function: str
    host: str
    dp: dict
    steps: list[StepResult] = field(default_factory=list)
    extra: dict = field(default_factory=dict)

    KNOWN = ("function", "host", "dp")

    def as_json(self) -> dict:
        return dict(self.extra, **{k: getattr(self, k) for k in self.KNOWN}, steps=[s.as_json() for s in self.steps])

    @classmethod
    def from_json(cls, doc: dict) -> "Undeployed":
        return cls(doc["function"], doc["host"], doc.get("dp") or {},
                   [StepResult.from_json(s) for s in doc.get("steps", [])], _passthrough(doc, cls.KNOWN))


@dataclass(frozen=True)
class MoveResult:
    """One hop, from the migration's report: times, cores, what converged, the step timeline."""

    function: str
    src: str
    dst: str
    handover: str
    total_ms: float
    cp_downtime_ms: float | None
    cp_postcopy: bool
    cp_continuity: bool
    cores_before: list[int]
    cores_after: list[int]
    core_mask_after: str
    routes_ok: bool
    route_convergence_ms: dict
    steering_ok: bool
    arp_ok: bool
    policy_preserved: bool
    policy_version: int | None
    migration_id: int | None
    steps: list[StepResult]
    extra: dict = field(default_factory=dict)   # the report's other figures, passed through

    KNOWN = ("function", "src", "dst", "handover", "total_ms", "cp_downtime_ms", "cp_postcopy", "cp_continuity",
             "cores_before", "cores_after", "core_mask_after", "routes_ok", "route_convergence_ms", "steering_ok",
             "arp_ok", "policy_preserved", "policy_version", "migration_id")

    @classmethod
    def from_report(cls, report) -> "MoveResult":
        """From a ``MigrationReport`` (through its own ``as_json``, so a figure the report gains
        later reaches the CLI's JSON without a change here)."""
        doc = report.as_json()
        return cls(**{k: doc.get(k) for k in cls.KNOWN},
                   steps=[StepResult.from_json(s) for s in doc.get("steps", [])], extra=_passthrough(doc, cls.KNOWN))

    def as_json(self) -> dict:
        doc = dict(self.extra)
        doc.update({k: getattr(self, k) for k in self.KNOWN})
        doc["steps"] = [s.as_json() for s in self.steps]
        return doc


@dataclass(frozen=True)
class Change:
    """A value before and after an operation."""

    before: Any
    after: Any

    @property
    def changed(self) -> bool:
        return self.before != self.after

    def as_json(self) -> dict:
        return {"before": self.before, "after": self.after}


@dataclass(frozen=True)
class Plan:
    """What an operation would do, computed from read-only queries: the steps it would run and
    the changes it would make (placement, each router's route for the function's IP as its FIB
    would have it, the router holding the steering rule, the policy at the control server)."""

    operation: str                       # deploy | undeploy | move
    function: str
    src: str | None                      # where it runs now (None: not deployed)
    dst: str | None                      # where it will run (None: removed)
    steps: list[str]
    placement: Change                    # {"host", "router"} or None
    routes: dict[str, Change]            # router -> its route ("dev data", "via 10.10.0.2", "none")
    steering: Change                     # router name or None
    policy: Change                       # the policy table or None
    cores_before: list[int] = field(default_factory=list)
    cores_needed: int = 0
    free_cores: list[int] | None = None  # on the host it goes to, as its agent reported them
    handover: str | None = None
    why: str = ""
    blockers: list[str] = field(default_factory=list)

    @property
    def changed(self) -> bool:
        return any(c.changed for c in (self.placement, self.steering, self.policy, *self.routes.values()))

    def before(self) -> dict:
        return {"placement": self.placement.before, "routes": {r: c.before for r, c in self.routes.items()},
                "steering": self.steering.before, "policy": self.policy.before}

    def after(self) -> dict:
        return {"placement": self.placement.after, "routes": {r: c.after for r, c in self.routes.items()},
                "steering": self.steering.after, "policy": self.policy.after}

    def as_json(self) -> dict:
        doc = {"operation": self.operation, "function": self.function, "from": self.src, "to": self.dst,
               "steps": self.steps, "changes": {
                   "placement": self.placement.as_json(),
                   "routes": {r: c.as_json() for r, c in self.routes.items()},
                   "steering": self.steering.as_json(), "policy": self.policy.as_json()},
               "cores_before": self.cores_before, "cores_needed": self.cores_needed, "free_cores": self.free_cores,
               "blockers": self.blockers}
        if self.handover:
            doc["handover"] = self.handover
        if self.why:
            doc["why"] = self.why
        return doc


class MovePlan(Plan):
    """A plan of ``operation`` "move"."""


class DeployPlan(Plan):
    """A plan of ``operation`` "deploy"."""


class UndeployPlan(Plan):
    """A plan of ``operation`` "undeploy"."""


@dataclass(frozen=True)
class CpStatus:
    vm: str
    connected: bool
    table_version: int | None
    counter: int | None

    def as_json(self) -> dict:
        return {"vm": self.vm, "connected": self.connected, "table_version": self.table_version,
                "counter": self.counter}


@dataclass(frozen=True)
class DpStatus:
    dp: str
    pid: int | None
    alive: bool
    healthy: bool
    cores: list[int]
    core_mask: str
    active: bool
    stats: dict | None
    program: str | None = None
    takes_policy: bool = True      # False: its program reads no policy table (a stock DPDK application)

    def as_json(self) -> dict:
        return {"dp": self.dp, "pid": self.pid, "alive": self.alive, "healthy": self.healthy, "cores": self.cores,
                "core_mask": self.core_mask, "active": self.active, "stats": self.stats, "program": self.program,
                "takes_policy": self.takes_policy}

    @classmethod
    def from_agent(cls, doc: dict) -> "DpStatus":
        return cls(doc["dp"], doc.get("pid"), doc["alive"], doc["healthy"], list(doc["cores"]), doc["core_mask"],
                   doc.get("active", True), doc.get("stats"), doc.get("program"), doc.get("takes_policy", True))


@dataclass(frozen=True)
class FunctionStatus:
    """A function as its host and routers see it now."""

    function: str
    host: str
    router: str
    service_ip: str
    cp: CpStatus
    dp: DpStatus | None
    route: str | None                    # the FIB route of the function's own router
    routes: dict[str, str]               # every router's FIB route for the function's IP
    steering: dict | None                # its steering rule on its router, None when it has none

    def as_json(self) -> dict:
        return {"function": self.function, "host": self.host, "router": self.router, "service_ip": self.service_ip,
                "cp": self.cp.as_json(), "dp": self.dp.as_json() if self.dp else None, "route": self.route,
                "routes": self.routes, "steering": self.steering}


@dataclass(frozen=True)
class HostInfo:
    """A host: where it is, its agent (or why it is down), DP cores, load, accelerator."""

    host: str
    router: str
    address: str
    libvirt_uri: str
    agent: str                           # "up" or "down: <why>"
    accel: str | None
    accel_reason: str
    agent_version: str | None = None
    cores_offered: list[int] | None = None
    cores_free: list[int] | None = None
    free_mask: str | None = None
    core_share: int | None = None        # DPs that sleep when idle per core (1: every DP alone)
    free_slots: int | None = None        # how many more such one-core DPs fit
    loadavg: list[float] | None = None
    cpu_percent: list[float] | None = None
    dps: int | None = None
    cps: int | None = None
    orphans: list[dict] | None = None     # what no function owns here (None: not known, agent down)

    def as_json(self) -> dict:
        return {"host": self.host, "router": self.router, "address": self.address, "libvirt_uri": self.libvirt_uri,
                "agent": self.agent, "agent_version": self.agent_version, "cores_offered": self.cores_offered,
                "cores_free": self.cores_free, "free_mask": self.free_mask, "core_share": self.core_share,
                "free_slots": self.free_slots, "loadavg": self.loadavg,
                "cpu_percent": self.cpu_percent, "dps": self.dps, "cps": self.cps, "accel": self.accel,
                "accel_reason": self.accel_reason, "orphans": self.orphans}


@dataclass(frozen=True)
class PolicyTable:
    """A policy table as the DP serves it (validated and normalized: prefixes in network form,
    ``burst`` defaulting to ``rate_pps``)."""

    allow: list[str]
    rate_pps: float
    burst: float
    reply: str

    def as_json(self) -> dict:
        return {"allow": self.allow, "rate_pps": self.rate_pps, "burst": self.burst, "reply": self.reply}

    @classmethod
    def build(cls, function: str, allow, rate_pps=0, burst=None, reply="ok") -> "PolicyTable":
        """InputError naming the function and the field for a table the DP would not take."""
        table = {"allow": list(allow or []), "rate_pps": rate_pps, "reply": reply}
        if burst is not None:
            table["burst"] = burst
        try:
            return cls.from_json(validate_table(table))
        except ValueError as exc:
            raise InputError(f"policy of {function}: {exc}") from None

    @classmethod
    def from_json(cls, doc: dict) -> "PolicyTable":
        return cls(list(doc.get("allow", [])), doc.get("rate_pps", 0), doc.get("burst", doc.get("rate_pps", 0)),
                   doc.get("reply", "ok"))


@dataclass(frozen=True)
class Policy:
    """A function's policy at the control server; ``version`` goes up on every change."""

    function: str
    version: int
    table: PolicyTable

    def as_json(self) -> dict:
        return {"function": self.function, "version": self.version,
                "table": dict(self.table.as_json(), version=self.version)}

    @classmethod
    def from_json(cls, doc: dict) -> "Policy":
        return cls(doc["function"], doc["version"], PolicyTable.from_json(doc["table"]))


@dataclass(frozen=True)
class PolicyPlan:
    """What ``set_policy`` would change: the table now (None: the control server has none) and
    the table asked for."""

    function: str
    before: PolicyTable | None
    after: PolicyTable
    version: int | None

    @property
    def changed(self) -> bool:
        return self.before != self.after

    def as_json(self) -> dict:
        return {"function": self.function, "changed": self.changed, "version": self.version,
                "before": self.before.as_json() if self.before else None, "after": self.after.as_json()}


@dataclass(frozen=True)
class SiteCheck:
    ok: bool
    checks: list                         # sitecheck.Verdict

    def as_json(self) -> dict:
        return {"ok": self.ok, "checks": [v.as_json() for v in self.checks]}

    @property
    def failed(self) -> list:
        return [v for v in self.checks if not v.ok]


# -- the site -----------------------------------------------------------------------------------
def open_site(lab: str | None = None, inventory: str | None = None, db: str | None = None, enter: bool = True,
              on_event: EventSink | None = None, functions_file: str | None = None) -> "Site":
    """A lab (by name; ``enter`` moves this process into its management namespaces first, see
    ``orchestrator.site``) or a real site (``inventory`` + ``db``). ``functions_file`` holds the
    function specs ``deploy`` reads (a lab's own by default)."""
    from orchestrator import site

    lab_name = None
    if not inventory:
        from orchestrator.lab.lab import open_lab

        found = open_lab(lab)
        lab_name, functions_file = found.name, functions_file or str(found.functions_file)
    ctl = site.open_site(lab=lab, inventory=inventory, db=db, enter=enter)
    return Site(ctl, on_event=on_event, functions_file=functions_file, lab=lab_name)


class Site:
    """One site's controller behind typed calls. ``Site(ctl)`` wraps a controller made elsewhere
    (a test's fake, or ``orchestrator.site.open_site``); ``close`` closes it."""

    def __init__(self, ctl, on_event: EventSink | None = None, functions_file: str | None = None,
                 lab: str | None = None):
        self.ctl, self.lab, self.functions_file = ctl, lab, functions_file
        self._on_event = on_event or _quiet

    def close(self) -> None:
        self.ctl.close()

    def __enter__(self) -> "Site":
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    def _sink(self, on_event: EventSink | None) -> EventSink:
        return on_event or self._on_event

    # -- specs and placements -------------------------------------------------------------------
    def spec(self, function: str, functions_file: str | None = None) -> FunctionSpec:
        """The function's spec from the functions file (``functions_file``, else the site's)."""
        path = functions_file or self.functions_file
        if not path:
            raise InputError(f"deploy {function}: no functions file: name one (--functions FILE) for a site "
                             f"opened from an inventory")
        specs = {s.name: s for s in load_functions(path)}
        if function not in specs:
            raise InputError(f"no function '{function}' in {path} ({', '.join(specs) or 'none'})")
        return specs[function]

    def check_host(self, host: str) -> None:
        """InputError naming the site's hosts when ``host`` is not one of them."""
        self.ctl.host(host)

    def functions(self) -> list[Placement]:
        return [Placement.from_row(r) for r in self.ctl.state.functions()]

    def placement(self, function: str) -> Placement | None:
        """Where ``function`` runs, None when it is not deployed."""
        return next((p for p in self.functions() if p.function == function), None)

    # -- deploy / undeploy ----------------------------------------------------------------------
    def deploy(self, function: str, host: str, functions_file: str | None = None, plan: bool = False,
               timeout_s: float = 120.0, on_event: EventSink | None = None) -> Deployed | DeployPlan:
        """Put ``function`` (its spec from the functions file) on ``host``: CP guest, DP, routes,
        steering, until the DP serves the CP's policy (``timeout_s``)."""
        from orchestrator.controller.deploy import deploy

        spec = self.spec(function, functions_file)
        self.ctl.host(host)
        self.ctl.state.require_idle(function)
        where = self.ctl.state.placement(function)
        if where:
            raise InputError(f"function {function} is already deployed (on {where['host']})")
        if plan:
            return self._deploy_plan(spec, host)
        if not timeout_s > 0:
            raise InputError(f"deploy {function}: the timeout must be a positive number of seconds, not {timeout_s}")
        sink = self._sink(on_event)
        doc = deploy(self.ctl, spec=spec, host=host, progress=lambda msg: sink(Event("progress", function, msg)),
                     policy_timeout=timeout_s)
        return Deployed.from_json(doc)

    def undeploy(self, function: str, plan: bool = False,
                 on_event: EventSink | None = None) -> Undeployed | UndeployPlan:
        from orchestrator.controller.deploy import undeploy

        if plan:
            return self._undeploy_plan(function)
        sink = self._sink(on_event)
        doc = undeploy(self.ctl, name=function, progress=lambda msg: sink(Event("progress", function, msg)))
        return Undeployed.from_json(doc)

    # -- moves ----------------------------------------------------------------------------------
    def migrate(self, function: str, to: str, handover: str = "make-before-break", max_downtime_ms: int | None = None,
                auto_converge: bool = False, postcopy: bool = False, postcopy_after: int = 1, plan: bool = False,
                timeout_s: float | None = None, progress_timeout_s: float | None = None,
                bandwidth_mib_s: int | None = None, abort: threading.Event | None = None,
                on_event: EventSink | None = None) -> MoveResult | MovePlan:
        """Move ``function`` to host ``to``: the CP live, the DP handed over, the network after
        it. ``plan=True``: the steps and changes, nothing moved. ``timeout_s`` bounds the CP's
        copy, ``progress_timeout_s`` the time without progress; past either, or once ``abort``
        is set (a signal handler, another thread), the move is aborted and rolled back."""
        move = self._options(handover, max_downtime_ms, auto_converge, postcopy, postcopy_after, timeout_s,
                             progress_timeout_s, bandwidth_mib_s, abort)
        if plan:
            return self._move_plan(function, to, handover, check_capacity=True)
        return self._move(function, to, move, self._sink(on_event))

    def evacuate(self, host: str, plan: bool = False, handover: str = "make-before-break",
                 max_downtime_ms: int | None = None, auto_converge: bool = False, postcopy: bool = False,
                 postcopy_after: int = 1, timeout_s: float | None = None, progress_timeout_s: float | None = None,
                 bandwidth_mib_s: int | None = None, abort: threading.Event | None = None,
                 on_event: EventSink | None = None, parallel: int = 1) -> list[MoveResult] | list[MovePlan]:
        """Move every function off ``host``, each to the host ``placement`` chooses (options as
        ``migrate``'s), up to ``parallel`` at once."""
        move = self._options(handover, max_downtime_ms, auto_converge, postcopy, postcopy_after, timeout_s,
                             progress_timeout_s, bandwidth_mib_s, abort)
        if not isinstance(parallel, int) or isinstance(parallel, bool) or parallel < 1:
            raise InputError(f"--parallel must be a whole number of 1 or more, not {parallel!r}")
        return self._run_moves(placement_plans.evacuation_plan(self.ctl, host), plan, move, self._sink(on_event),
                               parallel, f"evacuate {host}")

    def rebalance(self, plan: bool = False, handover: str = "make-before-break", max_downtime_ms: int | None = None,
                  auto_converge: bool = False, postcopy: bool = False, postcopy_after: int = 1,
                  timeout_s: float | None = None, progress_timeout_s: float | None = None,
                  bandwidth_mib_s: int | None = None, abort: threading.Event | None = None,
                  on_event: EventSink | None = None) -> list[MoveResult] | list[MovePlan]:
        """One move off the busiest host when the hosts are uneven (see ``placement``; options as
        ``migrate``'s)."""
        move = self._options(handover, max_downtime_ms, auto_converge, postcopy, postcopy_after, timeout_s,
                             progress_timeout_s, bandwidth_mib_s, abort)
        return self._run_moves(placement_plans.rebalance_plan(self.ctl), plan, move, self._sink(on_event))

    def _options(self, handover, max_downtime_ms, auto_converge, postcopy, postcopy_after, timeout_s,
                 progress_timeout_s, bandwidth_mib_s, abort) -> dict:
        """The keyword arguments of ``migrate_function`` for these options; InputError (the
        migration's own checks) for one that QEMU or libvirt would take badly, before anything is
        asked of a host."""
        from orchestrator.controller.migration import validate_options
        from orchestrator.virt.libvirt_host import MigrationOptions

        if handover not in HANDOVERS:
            raise InputError(f"handover must be one of {', '.join(HANDOVERS)}, not {handover!r}")
        options = MigrationOptions(max_downtime_ms=max_downtime_ms, auto_converge=auto_converge, postcopy=postcopy,
                                   postcopy_after_passes=postcopy_after, bandwidth_mib_s=bandwidth_mib_s)
        validate_options(options, timeout_s, progress_timeout_s)
        move = {"handover": handover, "options": options}
        # NOTE: passed only when asked for, so that a move without them keeps the migration's
        # own defaults.
        for key, value in (("timeout_s", timeout_s), ("progress_timeout_s", progress_timeout_s), ("abort", abort)):
            if value is not None:
                move[key] = value
        return move

    def _run_moves(self, moves: list[dict], plan: bool, move: dict, sink: EventSink, parallel: int = 1,
                   what: str = "moves"):
        """The moves one after the other, or up to ``parallel`` at once (each under its own lease,
        on the command's shared connections); with several at once, every move runs to its end
        (done, or rolled back) and the failures are reported together (MovesFailed)."""
        if not isinstance(parallel, int) or isinstance(parallel, bool) or parallel < 1:
            raise InputError(f"--parallel must be a whole number of 1 or more, not {parallel!r}")
        if plan:
            return [self._move_plan(m["function"], m["to"], move["handover"], why=m.get("why", "")) for m in moves]
        if parallel == 1 or len(moves) < 2:
            return [self._move(m["function"], m["to"], move, sink) for m in moves]
        results: dict[str, MoveResult] = {}
        failed: dict[str, BaseException] = {}
        with ThreadPoolExecutor(max_workers=parallel, thread_name_prefix="move") as pool:
            futures = {pool.submit(self._move, m["function"], m["to"], move, sink): m for m in moves}
            for future, m in futures.items():
                try:
                    results[m["function"]] = future.result()
                except BaseException as exc:  # noqa: BLE001 - every move's outcome is reported
                    failed[m["function"]] = exc
        if failed:
            raise MovesFailed(what, failed, {n: r.dst for n, r in results.items()})
        return [results[m["function"]] for m in moves]

    def _move(self, function: str, to: str, move: dict, sink: EventSink) -> MoveResult:
        from orchestrator.controller.migration import migrate_function

        where = self.ctl.require_function(function)[1]
        sink(Event("move", function, f"{where['host']} -> {to}"))
        report = migrate_function(self.ctl, name=function, dst=to,
                                  progress=lambda msg: sink(Event("progress", function, msg)),
                                  on_job=lambda stats: sink(Event("job", function, "", dict(stats))), **move)
        return MoveResult.from_report(report)

    def abort(self, function: str) -> int:
        """Ask the operation running on ``function`` (in any process) to abort: it stops before
        its next step, or stops the CP's copy, and rolls back. Returns the operation's id."""
        lease = self.ctl.state.lease(function)
        if lease is None:
            raise InputError(f"function {function}: no operation is running on it")
        if not lease["alive"]:
            raise OperationInterrupted(f"function {function}: its operation {lease['operation']} was interrupted "
                                       f"(pid {lease['holder_pid']} is gone): run 'vnfctl recover {function}'")
        self.ctl.state.request_abort(lease["operation"])
        return lease["operation"]

    def recover(self, function: str | None = None) -> list:
        """Make ``function`` whole again after an operation on it died half-way (or, with None,
        every function whose operation was interrupted): ``recover.Recovery`` for each, with
        what was found, the decision and what was done."""
        from orchestrator.controller.recover import interrupted_functions, recover_function

        names = [function] if function else interrupted_functions(self.ctl)
        return [recover_function(self.ctl, name=name) for name in names]

    # -- plans ----------------------------------------------------------------------------------
    def _fib_routes(self, ip: str) -> dict[str, str]:
        """Each router's FIB route for ``ip``, as a path ("dev data", "via 10.10.0.2", "none")."""
        out = {}
        for name, router in self.ctl.routers.items():
            fib = router.route(ip)
            out[name] = fib.spec.describe() if fib else "none"
        return out

    def _expected_routes(self, router: str | None) -> dict[str, str]:
        """Each router's route once the function is behind ``router`` (None: removed)."""
        want = self.ctl.routing.expected(router) if router else {}
        return {name: want[name].describe() if name in want else "none" for name in self.ctl.routers}

    def _steering_at(self, function: str) -> str | None:
        return next((name for name, r in self.ctl.routers.items() if r.steering(function) is not None), None)

    def _policy_table(self, function: str) -> dict | None:
        policy = self.policy(function)
        return policy.table.as_json() if policy else None

    def _free_cores(self, host: str, spec: FunctionSpec) -> list[int]:
        """The cores on ``host`` the function's DP could be given (a busy one: cores nobody holds)."""
        return usable_cores(self.ctl.agent(host).call("cores"), needs_core_alone(spec.dp_idle))

    def _move_plan(self, function: str, to: str, handover: str, why: str = "",
                   check_capacity: bool = False) -> MovePlan:
        from orchestrator.controller.migration import move_steps

        steps = [s.name for s in move_steps(handover)]
        spec, where = self.ctl.require_function(function)
        src = where["host"]
        if to == src:
            raise InputError(f"function {function} already runs on {to}")
        dst_router = self.ctl.host(to).router
        row = next((r for r in self.ctl.state.functions() if r["function"] == function), None)
        cores_before = json.loads(row["cores"]) if row and row.get("cores") else []
        needed = len(cores_before) or spec.dp_cores
        free = self._free_cores(to, spec)
        blockers = []
        if check_capacity and len(free) < needed:
            blockers.append(f"host {to}: not enough free cores for {spec.dp}: need {needed}, free {len(free)}")
        before_routes, after_routes = self._fib_routes(spec.service_ip), self._expected_routes(dst_router)
        policy = self._policy_table(function)
        return MovePlan(
            "move", function, src, to, steps,
            Change({"host": src, "router": where["router"]}, {"host": to, "router": dst_router}),
            {r: Change(before_routes[r], after_routes[r]) for r in self.ctl.routers},
            Change(self._steering_at(function), dst_router if spec.steering_mark is not None else None),
            Change(policy, policy), cores_before, needed, free, handover, why, blockers)

    def _deploy_plan(self, spec: FunctionSpec, host: str) -> DeployPlan:
        from orchestrator.controller.deploy import DEPLOY_STEPS

        router = self.ctl.host(host).router
        free = self._free_cores(host, spec)
        blockers = []
        if len(free) < spec.dp_cores:
            blockers.append(f"host {host}: DP of {spec.name} needs {spec.dp_cores} cores, {len(free)} free")
        for other in self.ctl.state.functions():
            if other["ip"] == spec.service_ip:
                blockers.append(f"service IP {spec.service_ip} is already used by {other['function']}")
        current = self._policy_table(spec.name)
        wanted = PolicyTable.from_json(spec.policy).as_json() if spec.policy is not None else current
        if wanted is None:
            blockers.append(f"function {spec.name}: no policy at the control server and none in the spec")
        before_routes, after_routes = self._fib_routes(spec.service_ip), self._expected_routes(router)
        return DeployPlan(
            "deploy", spec.name, None, host, [s.name for s in DEPLOY_STEPS],
            Change(None, {"host": host, "router": router}),
            {r: Change(before_routes[r], after_routes[r]) for r in self.ctl.routers},
            Change(self._steering_at(spec.name), router if spec.steering_mark is not None else None),
            Change(current, wanted), [], spec.dp_cores, free, None, "", blockers)

    def _undeploy_plan(self, function: str) -> UndeployPlan:
        from orchestrator.controller.deploy import REMOVAL_STEPS

        spec, where = self.ctl.require_function(function)
        row = next((r for r in self.ctl.state.functions() if r["function"] == function), None)
        routes = self._fib_routes(spec.service_ip)
        policy = self._policy_table(function)
        # NOTE: undeploy leaves the function's policy at the control server (it is the
        # operator's, and a later deploy takes it up again).
        return UndeployPlan(
            "undeploy", function, where["host"], None, [s.name for s in REMOVAL_STEPS],
            Change({"host": where["host"], "router": where["router"]}, None),
            {r: Change(routes[r], "none") for r in self.ctl.routers},
            Change(self._steering_at(function), None), Change(policy, policy),
            json.loads(row["cores"]) if row and row.get("cores") else [], 0, None)

    # -- looking --------------------------------------------------------------------------------
    def status(self, function: str | None = None) -> list[FunctionStatus]:
        """Each function (or the one named) as its host's agent and the routers report it."""
        names = [function] if function else [r["function"] for r in self.ctl.state.functions()]
        return [self._status(name) for name in names]

    def _status(self, name: str) -> FunctionStatus:
        spec, where = self.ctl.require_function(name)
        host = where["host"]
        agent = self.ctl.agent(host)
        dp = next(iter(agent.call("dp_status", dp=spec.dp)["dps"]), None)
        cp = agent.call("cp_report", vm=spec.vm)
        router = self.ctl.router_of(host)
        route = router.route(spec.service_ip)
        return FunctionStatus(
            name, host, where["router"], spec.service_ip,
            CpStatus(spec.vm, cp["connected"], cp.get("table_version"), (cp["report"] or {}).get("counter")),
            DpStatus.from_agent(dp) if dp else None, route.describe() if route else None,
            self.ctl.routing.state(spec.service_ip),
            router.steering(name) if spec.steering_mark is not None else None)

    def hosts(self) -> list[HostInfo]:
        """Every host of the inventory; a host whose agent is down is reported, not fatal."""
        from orchestrator.controller.recover import find_orphans

        infos = [self._host(h) for h in self.ctl.inventory.hosts]
        up = [i.host for i in infos if i.agent == "up"]
        try:
            found = find_orphans(self.ctl, hosts=up)
        except VnfctlError:
            found = None
        if found is None:
            return infos
        return [dataclasses.replace(i, orphans=[o.as_json() for o in found if o.host == i.host]) if i.host in up else i
                for i in infos]

    def orphans(self) -> list:
        """DPs, core reservations, CP registrations and guests no function owns (recover.Orphan)."""
        from orchestrator.controller.recover import find_orphans

        return find_orphans(self.ctl)

    def remove_orphans(self) -> list[str]:
        from orchestrator.controller.recover import find_orphans, remove_orphans

        return remove_orphans(self.ctl, find_orphans(self.ctl))

    def _host(self, h) -> HostInfo:
        figures: dict = {}
        try:
            agent = self.ctl.agent(h.name)
            load = agent.call("load", interval_s=0.1)
            cores = agent.call("cores")
            figures = dict(agent="up", agent_version=agent.info.get("version"), cores_offered=cores["offered"],
                           cores_free=cores["free"], free_mask=cores["free_mask"], core_share=cores.get("share", 1),
                           free_slots=cores.get("free_slots", len(cores["free"])), loadavg=load["loadavg"],
                           cpu_percent=load["cpu_percent"], dps=load["dps"], cps=load["cps"])
        except VnfctlError as exc:
            figures = dict(agent=f"down: {exc}")
        try:
            choice = self.ctl.accel(h.name)
            accel, reason = choice.accel, choice.reason
        except VnfctlError as exc:
            accel, reason = None, f"unknown: {exc}"
        return HostInfo(h.name, h.router, h.ssh.address, h.libvirt_uri, accel=accel, accel_reason=reason, **figures)

    def site_check(self) -> SiteCheck:
        from orchestrator.controller.sitecheck import site_check

        verdicts = site_check(self.ctl)
        return SiteCheck(all(v.ok for v in verdicts), verdicts)

    # -- policy ---------------------------------------------------------------------------------
    def _policy_url(self, function: str) -> str:
        if not isinstance(function, str) or not NAME.match(function):
            raise InputError(f"{function!r} is not a function name (lowercase letters, digits and '-', starting "
                             f"with a letter)")
        return f"{self.ctl.inventory.control_url}/v1/policy/{function}"

    def policy(self, function: str) -> Policy | None:
        """The function's policy at the control server; None when it has none."""
        try:
            return Policy.from_json(self.ctl.http("GET", self._policy_url(function)))
        except HttpError as exc:
            if exc.status == 404:
                return None
            raise

    def set_policy(self, function: str, allow, rate_pps: float = 0, burst: float | None = None, reply: str = "ok",
                   plan: bool = False) -> Policy | PolicyPlan:
        """Put the function's policy table at the control server (the CP takes it up, its DP
        serves it in about a second). The table is validated here first, so a bad prefix is an
        InputError and nothing is sent. ``plan=True``: the table now and the one asked for."""
        table = PolicyTable.build(function, allow, rate_pps, burst, reply)
        url = self._policy_url(function)
        if plan:
            current = self.policy(function)
            return PolicyPlan(function, current.table if current else None, table,
                              current.version if current else None)
        return Policy.from_json(self.ctl.http("PUT", url, table.as_json()))
