"""The controller's commands: deploy, undeploy, migrate, rebalance, status, list, hosts, policy,
site check."""

from __future__ import annotations

import os
import time

from rich.live import Live
from rich.table import Table

from orchestrator.controller import placement
from orchestrator.controller.controller import Controller
from orchestrator.controller.inventory import load_functions
from orchestrator.controller.migration import HANDOVERS, MigrationReport, migrate_function
from orchestrator.errors import InputError, VnfctlError
from orchestrator.virt.libvirt_host import MigrationOptions


def _controller(args) -> Controller:
    """The site the command acts on; for a lab, this process moves into its management
    namespaces first (see ``orchestrator.site``)."""
    from orchestrator.site import open_site

    return open_site(lab=args.lab, inventory=getattr(args, "inventory", None), db=getattr(args, "db", None))


def _functions_file(args) -> str:
    if args.functions:
        return args.functions
    from orchestrator.lab.lab import open_lab

    return str(open_lab(args.lab).functions_file)


def cmd_deploy(args, emit, out, progress) -> int:
    from orchestrator.controller.deploy import deploy

    specs = {s.name: s for s in load_functions(_functions_file(args))}
    if args.function not in specs:
        raise InputError(f"no function '{args.function}' in {_functions_file(args)} ({', '.join(specs)})")
    ctl = _controller(args)
    try:
        doc = deploy(ctl, specs[args.function], args.host, progress=progress)
    finally:
        ctl.close()
    emit(args, doc, lambda d: out.print(f"deployed {d['function']} on {d['host']}: DP pid {d['pid']} cores "
                                        f"{d['cores']} ({d['core_mask']}), CP {d['cp_ip']}", highlight=False))
    return 0


def cmd_undeploy(args, emit, out, progress) -> int:
    from orchestrator.controller.deploy import undeploy

    ctl = _controller(args)
    try:
        doc = undeploy(ctl, args.function, progress=progress)
    finally:
        ctl.close()
    emit(args, doc, lambda d: out.print(f"undeployed {d['function']} from {d['host']}", highlight=False))
    return 0


def _timeline(rep: dict) -> Table:
    t = Table("step", "ms", "ok", "detail", box=None, header_style="bold",
              title=f"{rep['function']} {rep['src']} -> {rep['dst']} ({rep['handover']})")
    for s in rep["steps"]:
        t.add_row(s["step"], f"{s['ms']:.1f}", "yes" if s["ok"] else "[red]FAILED[/red]", s["detail"])
    return t


def _migrate_one(ctl, args, name, dst, out, progress) -> dict:
    if args.postcopy_after < 0:
        raise InputError(f"--postcopy-after must be 0 or more passes, not {args.postcopy_after}")
    opts = MigrationOptions(args.max_downtime, args.auto_converge, args.postcopy, args.postcopy_after)
    started = time.monotonic()
    state = {"step": "precheck", "job": ""}

    def show():
        return f"[bold]{name}[/bold] -> {dst}: {state['step']} {state['job']} ({time.monotonic() - started:.1f}s)"

    live = Live(show(), console=out, transient=True, refresh_per_second=8) if not args.json and out.is_terminal \
        else None

    def on_step(msg):
        state["step"] = msg
        progress(msg) if live is None else live.update(show())

    def on_job(stats):
        total, done = stats.get("memory_total") or 0, stats.get("memory_processed") or 0
        state["job"] = f"[{done * 100 // total if total else 0}% of {total >> 20} MiB, " \
                       f"remaining {(stats.get('memory_remaining') or 0) >> 20} MiB]"
        if live is not None:
            live.update(show())

    if live is not None:
        live.start()
    try:
        rep: MigrationReport = migrate_function(ctl, name, dst, args.handover, opts, progress=on_step, on_job=on_job)
    finally:
        if live is not None:
            live.stop()
    return rep.as_json()


def cmd_migrate(args, emit, out, progress) -> int:
    ctl = _controller(args)
    try:
        if args.evacuate:
            plan = placement.evacuation_plan(ctl, args.evacuate)
            if args.dry_run:
                emit(args, {"dry_run": True, "moves": plan}, lambda d: _print_plan(out, d["moves"]))
                return 0
            reports = [_migrate_one(ctl, args, m["function"], m["to"], out, progress) for m in plan]
            emit(args, {"moves": reports}, lambda d: [out.print(_timeline(r)) for r in d["moves"]])
            return 0
        if not args.function or not args.to:
            raise InputError("migrate needs FUNCTION --to HOST, or --evacuate HOST")
        if args.dry_run:
            ctl.host(args.to)
            spec, where = ctl.require_function(args.function)
            emit(args, {"dry_run": True, "moves": [{"function": args.function, "from": where["host"], "to": args.to}]},
                 lambda d: _print_plan(out, d["moves"]))
            return 0
        rep = _migrate_one(ctl, args, args.function, args.to, out, progress)
    finally:
        ctl.close()
    emit(args, rep, lambda d: out.print(_timeline(d)))
    return 0


def _print_plan(out, moves) -> None:
    if not moves:
        out.print("nothing to move")
    for m in moves:
        out.print(f"would move {m['function']}: {m['from']} -> {m['to']}" + (f" ({m['why']})" if m.get("why") else ""),
                  highlight=False)


def cmd_rebalance(args, emit, out, progress) -> int:
    ctl = _controller(args)
    try:
        plan = placement.rebalance_plan(ctl)
        if args.dry_run or not plan:
            emit(args, {"dry_run": args.dry_run, "moves": plan}, lambda d: _print_plan(out, d["moves"]))
            return 0
        reports = [_migrate_one(ctl, args, m["function"], m["to"], out, progress) for m in plan]
    finally:
        ctl.close()
    emit(args, {"moves": reports}, lambda d: [out.print(_timeline(r)) for r in d["moves"]])
    return 0


def cmd_list(args, emit, out, progress) -> int:
    ctl = _controller(args)
    try:
        rows = ctl.state.functions()
    finally:
        ctl.close()
    docs = [{"function": r["function"], "host": r["host"], "router": r["router"], "service_ip": r["ip"],
             "cp_ip": r["cp_ip"], "core_mask": r["core_mask"]} for r in rows]

    def render(ds):
        t = Table("function", "host", "router", "service ip", "cp ip", "dp core mask", box=None, header_style="bold")
        for d in ds:
            t.add_row(d["function"], d["host"], d["router"], d["service_ip"], d["cp_ip"], d["core_mask"] or "-")
        out.print(t)

    emit(args, docs, render)
    return 0


def cmd_status(args, emit, out, progress) -> int:
    ctl = _controller(args)
    try:
        names = [args.function] if args.function else [r["function"] for r in ctl.state.functions()]
        docs = []
        for name in names:
            spec, where = ctl.require_function(name)
            host = where["host"]
            agent = ctl.agent(host)
            dp = next(iter(agent.call("dp_status", dp=spec.dp)["dps"]), None)
            cp = agent.call("cp_report", vm=spec.vm)
            router = ctl.router_of(host)
            route = router.route(spec.service_ip)
            docs.append({"function": name, "host": host, "router": where["router"], "service_ip": spec.service_ip,
                         "cp": {"vm": spec.vm, "connected": cp["connected"],
                                "table_version": cp["table_version"],
                                "counter": (cp["report"] or {}).get("counter")},
                         "dp": None if dp is None else {k: dp[k] for k in ("dp", "pid", "alive", "healthy", "cores",
                                                                          "core_mask", "active")}
                         | {"stats": dp.get("stats")},
                         "route": route.describe() if route else None,
                         "steering": router.steering(name) if spec.steering_mark is not None else None})
    finally:
        ctl.close()

    def render(ds):
        t = Table("function", "host", "cp", "policy v", "dp", "cores", "served", "dropped", "route", "steered",
                  box=None, header_style="bold")
        for d in ds:
            dp, st = d["dp"] or {}, (d["dp"] or {}).get("stats") or {}
            t.add_row(d["function"], d["host"], "up" if d["cp"]["connected"] else "no channel",
                      str(d["cp"]["table_version"]),
                      ("healthy" if dp.get("healthy") else "UNHEALTHY") + f" pid {dp.get('pid')}",
                      f"{dp.get('cores')} {dp.get('core_mask')}", str(st.get("served", "-")),
                      f"{st.get('dropped_policy', 0)} policy / {st.get('dropped_rate', 0)} rate",
                      d["route"] or "-", str((d["steering"] or {}).get("packets", "-")))
        out.print(t)

    emit(args, docs, render)
    return 0


def cmd_hosts(args, emit, out, progress) -> int:
    ctl = _controller(args)
    docs = []
    try:
        for h in ctl.inventory.hosts:
            entry = {"host": h.name, "router": h.router, "address": h.ssh.address, "libvirt_uri": h.libvirt_uri}
            try:
                agent = ctl.agent(h.name)
                load = agent.call("load", interval_s=0.1)
                cores = agent.call("cores")
                entry.update(agent="up", agent_version=agent.info.get("version"), cores_offered=cores["offered"],
                             cores_free=cores["free"], free_mask=cores["free_mask"], loadavg=load["loadavg"],
                             cpu_percent=load["cpu_percent"], dps=load["dps"], cps=load["cps"])
            except VnfctlError as exc:  # a host that is down is reported, not fatal
                entry.update(agent=f"down: {exc}")
            try:
                choice = ctl.accel(h.name)
                entry.update(accel=choice.accel, accel_reason=choice.reason)
            except VnfctlError as exc:
                entry.update(accel=None, accel_reason=f"unknown: {exc}")
            docs.append(entry)
    finally:
        ctl.close()

    def render(ds):
        t = Table("host", "router", "address", "agent", "accel", "dp cores free", "load 1m", "cps", "dps", box=None,
                  header_style="bold")
        for d in ds:
            t.add_row(d["host"], d["router"], d["address"], d["agent"], d["accel"] or "?",
                      f"{d.get('cores_free')} of {d.get('cores_offered')}", f"{(d.get('loadavg') or [0])[0]:.2f}",
                      str(d.get("cps", "-")), str(d.get("dps", "-")))
        out.print(t)
        for d in ds:
            out.print(f"  accel {d['host']}: {d['accel'] or 'unknown'} because {d['accel_reason']}", highlight=False)

    emit(args, docs, render)
    return 0


def cmd_policy(args, emit, out, progress) -> int:
    ctl = _controller(args)
    try:
        url = f"{ctl.inventory.control_url}/v1/policy/{args.function}"
        if args.policycmd == "set":
            table = {"allow": args.allow or [], "rate_pps": args.rate, "reply": args.reply}
            if args.burst is not None:
                table["burst"] = args.burst
            doc = ctl.http("PUT", url, table)
        else:
            doc = ctl.http("GET", url)
    finally:
        ctl.close()
    emit(args, doc, lambda d: out.print(f"{d['function']} policy v{d['version']}: allow {d['table']['allow']}, "
                                        f"rate {d['table']['rate_pps']} pps (burst {d['table']['burst']}), "
                                        f"reply {d['table']['reply']!r}", highlight=False))
    return 0


def cmd_site_check(args, emit, out, progress) -> int:
    from orchestrator.controller.sitecheck import site_check

    ctl = _controller(args)
    try:
        verdicts = site_check(ctl)
    finally:
        ctl.close()
    failed = [v for v in verdicts if not v.ok]
    doc = {"ok": not failed, "checks": [v.as_json() for v in verdicts]}

    def render(d):
        for v in d["checks"]:
            mark = "[green]PASS[/green]" if v["ok"] else "[red]FAIL[/red]"
            out.print(f"{v['scope']:<10} {v['check']:<11}: {mark}  {v['detail']}", highlight=False)
        out.print(f"{len(d['checks']) - len(failed)} of {len(d['checks'])} checks passed", highlight=False)

    emit(args, doc, render)
    return 0 if not failed else 17


def add_controller_parsers(sub, wrap) -> None:
    def target(sp, fn):
        sp.add_argument("--lab", default=os.environ.get("VNFCTL_LAB"), help="lab name (default: vnf)")
        sp.add_argument("--inventory", help="inventory YAML of real hosts (instead of a lab)")
        sp.add_argument("--db", default="/var/lib/vnfctl/controller.db", help="controller state with --inventory")
        sp.add_argument("--json", action="store_true", help="machine-readable output")
        sp.set_defaults(fn=wrap(fn))

    d = sub.add_parser("deploy", help="put a function (CP guest + DP) on a host")
    d.add_argument("function")
    d.add_argument("--host", required=True)
    d.add_argument("--functions", help="function specs YAML (default: the lab's)")
    target(d, cmd_deploy)
    u = sub.add_parser("undeploy", help="remove a function")
    u.add_argument("function")
    target(u, cmd_undeploy)
    m = sub.add_parser("migrate", help="move a function to another host (CP live, DP handed over)")
    m.add_argument("function", nargs="?")
    m.add_argument("--to", help="destination host")
    m.add_argument("--evacuate", metavar="HOST", help="move every function off HOST")
    m.add_argument("--handover", choices=HANDOVERS, default="make-before-break")
    m.add_argument("--max-downtime", type=int, metavar="MS", help="libvirt max downtime for the CP")
    m.add_argument("--auto-converge", action="store_true")
    m.add_argument("--postcopy", action="store_true",
                   help="allow post-copy: the CP runs on the target while its memory follows")
    m.add_argument("--postcopy-after", type=int, default=1, metavar="PASSES",
                   help="with --postcopy: complete pre-copy passes before the switch (default 1; 0: at once)")
    m.add_argument("--dry-run", action="store_true", help="say what would move, move nothing")
    target(m, cmd_migrate)
    r = sub.add_parser("rebalance", help="move functions off the busiest host")
    r.add_argument("--dry-run", action="store_true")
    r.add_argument("--handover", choices=HANDOVERS, default="make-before-break")
    r.set_defaults(max_downtime=None, auto_converge=False, postcopy=False, postcopy_after=1)
    target(r, cmd_rebalance)
    s = sub.add_parser("status", help="a function's CP, DP, route and steering")
    s.add_argument("function", nargs="?")
    target(s, cmd_status)
    target(sub.add_parser("list", help="deployed functions"), cmd_list)
    target(sub.add_parser("hosts", help="hosts, their accelerator, free cores and load"), cmd_hosts)
    site = sub.add_parser("site", help="the site as a whole").add_subparsers(dest="sitecmd", required=True)
    target(site.add_parser("check", help="preflight every host and router (SSH, agent, libvirt, accel, store)"),
           cmd_site_check)
    p = sub.add_parser("policy", help="a function's policy at the control server").add_subparsers(
        dest="policycmd", required=True)
    ps = p.add_parser("show")
    ps.add_argument("function")
    target(ps, cmd_policy)
    pset = p.add_parser("set")
    pset.add_argument("function")
    pset.add_argument("--allow", action="append", metavar="PREFIX", help="allowed client prefix (repeat)")
    pset.add_argument("--rate", type=float, default=0, help="per-client rate limit, pps (0: none)")
    pset.add_argument("--burst", type=float)
    pset.add_argument("--reply", default="ok")
    target(pset, cmd_policy)
