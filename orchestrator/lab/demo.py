"""``vnfctl demo``: the main job on the embedded lab.

lab up; deploy function ``fa`` on ``a``; a UDP probe from ``client`` at a fixed rate; migrate
a→b (same router) then b→c (across routers); per hop the CP's downtime (libvirt), the DP service
gap and lost requests (from the probe), total time, cores before/after, whether routes, steering
and ARP converged and whether the CP's policy was preserved.
"""

from __future__ import annotations

import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from orchestrator.controller.controller import Controller
from orchestrator.controller.deploy import deploy, undeploy
from orchestrator.controller.inventory import load_functions
from orchestrator.controller.migration import migrate_function
from orchestrator.lab import probe
from orchestrator.lab.lab import Lab
from orchestrator.lab.procs import stop_pid

FUNCTION = "fa"


class Probe:
    """The probe process in the client namespace."""

    def __init__(self, lab: Lab, ip: str, port: int, rate: float):
        fd, self.out = tempfile.mkstemp(prefix="vnfctl-probe-", suffix=".json")
        os.close(fd)
        ns = lab.topology.netns("client")
        self.proc = subprocess.Popen(
            ["nsenter", f"--net=/run/netns/{ns}", "--", sys.executable, "-m", "orchestrator.lab.probe",
             "--target", f"{ip}:{port}", "--rate", str(rate), "--out", self.out, "--max-seconds", "900"],
            stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)

    def finish(self) -> tuple[dict, dict]:
        stop_pid(self.proc.pid, grace=10.0)
        self.proc.wait()
        try:
            return probe.load(self.out)
        finally:
            Path(self.out).unlink(missing_ok=True)


def run_demo(lab: Lab, handovers: list[str], rate: float = 200.0, progress=lambda m: None,
             path: list[str] | None = None) -> list[dict]:
    from orchestrator.site import open_site

    progress("lab up")
    lab.up(progress)
    ctl = open_site(lab=lab.name)     # from here on, this process is the controller in mgmt
    try:
        spec = next(s for s in load_functions(lab.functions_file) if s.name == FUNCTION)
        path = path or ["a", "b", "c"]
        if ctl.state.placement(FUNCTION):
            undeploy(ctl, FUNCTION)
        progress(f"deploying {FUNCTION} on {path[0]}")
        deploy(ctl, spec, path[0], progress=progress)
        try:
            return _hops(lab, ctl, spec, path, handovers, rate, progress)
        finally:
            progress(f"undeploying {FUNCTION}")
            undeploy(ctl, FUNCTION)
    finally:
        ctl.close()


def _hops(lab: Lab, ctl: Controller, spec, path: list[str], handovers: list[str], rate: float, progress) -> list[dict]:
    """Migrate along ``path`` under the probe; one report per measured hop."""
    pr = Probe(lab, spec.service_ip, spec.port, rate)
    time.sleep(1.0)
    windows = []
    try:
        for src, dst in zip(path, path[1:]):
            for i, handover in enumerate(handovers):
                if i > 0:   # back to the hop's source, unmeasured, to run the hop again
                    migrate_function(ctl, FUNCTION, src, handover="make-before-break")
                progress(f"migrating {FUNCTION} {src} -> {dst} ({handover})")
                t0 = time.time()
                rep = migrate_function(ctl, FUNCTION, dst, handover=handover, progress=progress)
                windows.append((rep, t0, time.time()))
        time.sleep(0.5)
    finally:
        sent, received = pr.finish()
    hops = []
    for rep, t0, t1 in windows:
        seen = probe.analyze(sent, received, t0, t1)
        hops.append({"src": rep.src, "dst": rep.dst, "handover": rep.handover, "total_ms": round(rep.total_ms, 1),
                     "cp_downtime_ms": rep.cp_downtime_ms, "dp_gap_ms": seen["gap_ms"], "lost": seen["lost"],
                     "probe_sent": seen["sent"], "cores_before": len(rep.cores_before),
                     "cores_after": len(rep.cores_after), "core_mask_after": rep.core_mask_after,
                     "routes_ok": rep.routes_ok, "route_strategy": ctl.inventory.route_strategy,
                     "route_convergence_ms": max(rep.route_convergence_ms.values(), default=None),
                     "route_convergence_by_router": rep.route_convergence_ms,
                     "arp_ok": rep.arp_ok, "steering_ok": rep.steering_ok,
                     "policy_preserved": rep.policy_preserved, "cp_continuity": rep.cp_continuity})
    return hops


def hop_ok(h: dict) -> bool:
    return (h["routes_ok"] and h["arp_ok"] and h["steering_ok"] and h["policy_preserved"] and h["cp_continuity"]
            and h["cores_before"] == h["cores_after"])
