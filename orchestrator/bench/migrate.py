"""``vnfctl bench migrate``: what a whole-function move costs over libvirt's own live migration.

In one run, on the lab, the function ``fa``'s CP guest is moved *bare* (libvirt alone: the same
``Hypervisor.migrate`` the move uses, no DP, no routes, no checks) and as a *whole function*
(make-before-break, every step), alternating, between two hosts. Per hop: the wall time around
the call, libvirt's own time for the job, and the guest's downtime as libvirt measured it; then
the medians per kind and their ratio. The goal (issue 30) is ``whole <= 1.1 x bare``.

Per hop, where the machine's CPU went while it ran (``orchestrator.bench.cpu``): QEMU's migration
threads, its vCPUs and main loop (source and destination), the DPs, the controller, the watcher,
the routers. ``compare_transport``: each bare pair in the site's transport is followed by one in
the other (TLS and in clear), so one run gives both downtimes of the same guest and their ratio;
the goal is ``TLS downtime <= 1.25 x clear``.

A bare hop moves the guest away from its DP, so bare hops come in pairs (out and straight back)
and the function is whole again before each whole hop: the bench makes ``hops`` whole hops and
``hops`` bare hops rounded up to an even number. Both kinds run on the same connections (one per
host, as one command opens them), so neither pays an SSH handshake the other does not.
"""

from __future__ import annotations

import statistics
import time

from orchestrator.controller.deploy import deploy, undeploy
from orchestrator.controller.inventory import load_functions
from orchestrator.bench.cpu import CpuSampler, render as render_cpu
from orchestrator.controller.migration import migrate_function
from orchestrator.errors import InputError
from orchestrator.lab.lab import Lab
from orchestrator.virt.libvirt_host import MigrationOptions

FUNCTION = "fa"
GOAL = "whole <= 1.1 x bare"
GOAL_RATIO = 1.1
TRANSPORT_GOAL = "TLS downtime <= 1.25 x clear"
TRANSPORT_RATIO = 1.25


def bench_sequence(hops: int, here: str, there: str, compare_transport: bool = False) -> list[tuple[str, str, str]]:
    """Pure: the hops, as (kind, src, dst), alternating kinds; a bare pair (out and back) before
    each whole hop while bare hops are still wanted, and with ``compare_transport`` a pair in the
    other transport (kind "other") after it."""
    if hops < 1:
        raise InputError("--hops must be 1 or more")
    seq, bare = [], 0
    for _ in range(hops):
        if bare < hops:
            seq += [("bare", here, there), ("bare", there, here)]
            if compare_transport:
                seq += [("other", here, there), ("other", there, here)]
            bare += 2
        seq.append(("whole", here, there))
        here, there = there, here
    return seq


def _median(values) -> float | None:
    values = [v for v in values if v is not None]
    return round(statistics.median(values), 1) if values else None


def summarize(hops: list[dict]) -> dict:
    """Pure: medians per kind, the ratio whole/bare and the goal's verdict; when both transports
    were tried (bare hops), each one's median downtime and the ratio TLS/clear."""
    bare = _median(h["wall_ms"] for h in hops if h["kind"] == "bare")
    whole = _median(h["wall_ms"] for h in hops if h["kind"] == "whole")
    ratio = round(whole / bare, 2) if bare and whole else None
    doc = {"hops": hops, "bare_ms": bare, "whole_ms": whole, "ratio": ratio,
           "goal": GOAL, "goal_met": None if ratio is None else whole <= GOAL_RATIO * bare,
           "overhead_ms": None if ratio is None else round(whole - bare, 1)}
    moved = [h for h in hops if h["kind"] in ("bare", "other")]
    if {h.get("transport") for h in moved} >= {"tls", "clear"}:
        tls = _median(h["downtime_ms"] for h in moved if h["transport"] == "tls")
        clear = _median(h["downtime_ms"] for h in moved if h["transport"] == "clear")
        t_ratio = round(tls / clear, 2) if tls and clear else None
        doc["transport"] = {"tls_downtime_ms": tls, "clear_downtime_ms": clear, "ratio": t_ratio,
                            "tls_libvirt_ms": _median(h["libvirt_ms"] for h in moved if h["transport"] == "tls"),
                            "clear_libvirt_ms": _median(h["libvirt_ms"] for h in moved if h["transport"] == "clear"),
                            "goal": TRANSPORT_GOAL,
                            "goal_met": None if t_ratio is None else t_ratio <= TRANSPORT_RATIO}
    return doc


def bench_migrate(lab: Lab, hops: int = 3, hosts: tuple[str, str] = ("a", "b"), progress=lambda m: None,
                  compare_transport: bool = False) -> dict:
    from orchestrator.site import open_site

    sequence = bench_sequence(hops, *hosts, compare_transport=compare_transport)
    progress("lab up")
    lab.up(progress)
    ctl = open_site(lab=lab.name)
    try:
        spec = next(s for s in load_functions(lab.functions_file) if s.name == FUNCTION)
        if ctl.state.placement(FUNCTION):
            undeploy(ctl, FUNCTION)
        progress(f"deploying {FUNCTION} on {hosts[0]}")
        deploy(ctl, spec, hosts[0], progress=progress)
        for host in hosts:
            # NOTE: a bare hop has no precheck to put the CP's image on the target first
            ctl.image_files(host, spec)
        try:
            with CpuSampler() as cpu:
                results = [_hop(ctl, spec, kind, src, dst, progress, cpu) for kind, src, dst in sequence]
        finally:
            progress(f"undeploying {FUNCTION}")
            undeploy(ctl, FUNCTION)
    finally:
        ctl.close()
    return summarize(results)


def _hop(ctl, spec, kind: str, src: str, dst: str, progress, cpu: CpuSampler) -> dict:
    site_tls = ctl.inventory.migration_tls
    tls = site_tls if kind != "other" else not site_tls
    transport = "tls" if tls else "clear"
    progress(f"{kind} hop {src} -> {dst} ({transport})")
    before = cpu.snap()
    t0 = time.monotonic()
    if kind in ("bare", "other"):
        # NOTE: the bare hop as the whole function's: encrypted when the site's migration is,
        # pinned on the destination as a move pins it
        result = ctl.hypervisor(src).migrate(ctl.hypervisor(dst), spec.vm, ctl.host(dst).migration_address,
                                             MigrationOptions(tls=tls), dst_cpuset=ctl.guest_cpuset(dst))
        wall = (time.monotonic() - t0) * 1000
        libvirt_ms, downtime = result.total_ms, result.downtime_ms
        steps = []
    else:
        report = migrate_function(ctl, FUNCTION, dst, handover="make-before-break")
        wall = (time.monotonic() - t0) * 1000
        libvirt_ms, downtime = report.cp_libvirt_ms, report.cp_downtime_ms
        steps = [{"step": s.name, "start_ms": s.start_ms, "ms": round(s.ms, 1)} for s in report.steps]
    used = CpuSampler.between(before, cpu.snap())
    hop = {"kind": kind, "src": src, "dst": dst, "transport": transport, "wall_ms": round(wall, 1),
           "libvirt_ms": None if libvirt_ms is None else round(libvirt_ms, 1), "downtime_ms": downtime,
           "cpu": used}
    progress(f"{kind} hop {src} -> {dst} ({transport}): {wall:.0f} ms, downtime {downtime} ms; CPU: {render_cpu(used)}")
    if steps:
        hop["steps"] = steps
    return hop


def render_rows(doc: dict) -> list[tuple[str, ...]]:
    """Pure: the table an operator reads (kind, hop, transport, wall, libvirt, downtime, where the
    CPU went), then the medians and, with both transports, their downtimes and ratio."""
    rows = [("bare" if h["kind"] == "other" else h["kind"], f"{h['src']} -> {h['dst']}", h.get("transport", ""),
             f"{h['wall_ms']:.0f}", "-" if h["libvirt_ms"] is None else f"{h['libvirt_ms']:.0f}",
             "-" if h["downtime_ms"] is None else f"{h['downtime_ms']:.0f}", render_cpu(h.get("cpu") or {}))
            for h in doc["hops"]]
    rows.append(("median bare", "", "", f"{doc['bare_ms']:.0f}", "", "", ""))
    rows.append(("median whole", "", "", f"{doc['whole_ms']:.0f}", "", "", ""))
    verdict = "met" if doc["goal_met"] else "NOT met"
    rows.append(("ratio whole/bare", "", "", str(doc["ratio"]), "", "", f"goal {doc['goal']}: {verdict}"))
    t = doc.get("transport")
    if t:
        verdict = "met" if t["goal_met"] else "NOT met"
        rows.append(("downtime TLS/clear", "", "", "", "", f"{t['tls_downtime_ms']:.0f} / {t['clear_downtime_ms']:.0f}",
                     f"ratio {t['ratio']}; goal {t['goal']}: {verdict}"))
    return rows
