"""``vnfctl bench gap``: the highest probe rate at which a make-before-break move loses nothing,
beside the DP's capacity measured in the same run.

On the lab (brought up as the demo does), ``fa`` is deployed anew with its rate limit lifted for
the run (see ``demo.unlimited_rate``). Then:

1. capacity: the probe floods ``fa`` (``FLOOD_PPS`` offered for ``FLOOD_S``) and the replies that
   arrive per second after a warm-up, while it still sends, are the DP's capacity as a client
   of it sees it: the client's sender, the routers' forwarding and the DP share this machine's
   cores, so this is the capacity of the whole path, measured on the path the moves use;
2. search (``next_rate``): at each rate the probe runs, warms up, and ``hops`` make-before-break
   moves are made under it (around the lab's hosts a→b→c→a..., so same-router and cross-router
   hops both occur); a rate is lossless when no request sent during any of its moves went
   unanswered. Rates go up a ladder (2k, 5k, 10k, 20k, 50k, ... up to the capacity) while every
   rate is lossless, then a few bisections between the highest lossless rate and the lowest
   lossy one (or the capacity).

The issue's goal: 0 lost at half the capacity (``goal_met``). Figures depend on this machine
and on what else runs on it: compare figures of one run. So each hop says where the machine's CPU
went while it ran (``orchestrator.bench.cpu``: QEMU's migration threads, vCPUs and main loops, the
DPs, the probe, the controller, the lab's watcher, the routers, the rest), beside the same for the
probe's warm-up before the first hop: a DP that lost its core to something else shows there.
"""

from __future__ import annotations

import itertools
import math
import time

from orchestrator.controller.migration import migrate_function
from orchestrator.errors import BenchError, InputError
from orchestrator.bench import demo, probe
from orchestrator.bench.cpu import CpuSampler, render as render_cpu
from orchestrator.bench import plot as plotting
from orchestrator.lab.lab import Lab

LADDER = (2_000, 5_000, 10_000, 20_000, 50_000, 100_000, 200_000, 500_000, 1_000_000)
BISECTIONS = 3
GRAIN_PPS = 500
FLOOD_PPS = 300_000
FLOOD_S = 2.0
FLOOD_WARMUP_S = 0.5
WARMUP_S = 1.0
SETTLE_S = 0.5
MAX_HOPS = 20


def check_hops(hops) -> int:
    if isinstance(hops, bool) or not isinstance(hops, int) or not 1 <= hops <= MAX_HOPS:
        raise InputError(f"--hops must be a whole number from 1 to {MAX_HOPS}, not {hops}")
    return hops


def capacity_pps(sent: dict[int, float], received: dict[int, float], warmup_s: float = FLOOD_WARMUP_S) -> float:
    """Pure: replies per second that arrived from ``warmup_s`` after the flood's first request
    until its last one was sent (replies still queued after that would flatter the figure)."""
    if not sent:
        return 0.0
    start, end = min(sent.values()) + warmup_s, max(sent.values())
    return probe.reply_rate(received.values(), start, end)


def next_rate(tries: list[dict], capacity: float, ladder=LADDER, bisections: int = BISECTIONS,
              grain: int = GRAIN_PPS) -> int | None:
    """Pure: the probe rate to try next, None when the search is over. Up the ladder's rungs (those
    not above ``capacity``) while every try lost nothing; then up to ``bisections`` tries halfway
    (rounded to ``grain``) between the highest lossless rate and the lowest lossy one (the
    capacity when none lost)."""
    lossless = {t["pps"] for t in tries if t["lost"] == 0}
    lossy = {t["pps"] for t in tries if t["lost"] > 0}
    rungs = [r for r in ladder if r <= capacity]
    if not lossy:
        untried = [r for r in rungs if r not in lossless]
        if untried:
            return untried[0]
    if sum(1 for t in tries if t["pps"] not in rungs) >= bisections:
        return None
    lo, hi = max(lossless, default=0), min(lossy, default=math.floor(capacity))
    mid = round((lo + hi) / 2 / grain) * grain
    return mid if lo < mid < hi and mid not in lossless | lossy else None


def max_lossless(tries: list[dict]) -> int:
    return max((t["pps"] for t in tries if t["lost"] == 0), default=0)


def combine(pps: int, hops: list[dict], baseline: dict) -> dict:
    """Pure: one try (a rate) from its hops' figures: requests summed, the longest gap."""
    return {"pps": pps, "sent": sum(h["sent"] for h in hops), "lost": sum(h["lost"] for h in hops),
            "gap_ms": max((h["gap_ms"] for h in hops), default=0.0),
            "sender_stall_ms": max((h["sender_stall_ms"] for h in hops), default=0.0),
            "baseline_sent": baseline["sent"], "baseline_lost": baseline["lost"], "hops": hops}


def bench_gap(lab: Lab, hops: int = 1, plot: str | None = None, progress=lambda m: None) -> dict:
    """The bench (see the module): its figures as the JSON ``vnfctl bench gap --json`` prints."""
    hops = check_hops(hops)
    plotting.plot_format(plot)                 # a bad name fails here, before the lab starts
    hosts = [h.name for h in lab.topology.hosts]
    if len(hosts) < 2:
        raise BenchError(f"bench gap needs a lab of two hosts or more to move {demo.FUNCTION} between")
    with demo.lab_controller(lab, progress) as ctl, demo.fresh_function(lab, ctl, hosts[0], progress) as spec, \
            demo.unlimited_rate(ctl, spec, hosts[0], progress):
        capacity, flood, sender = _capacity(lab, spec, progress)
        with CpuSampler() as cpu:
            run = _Search(lab, ctl, spec, hosts, hops, progress, cpu)
            while (pps := next_rate(run.tries, capacity)) is not None:
                run.try_rate(pps)
    best = max_lossless(run.tries)
    doc = {"dp_capacity_pps": round(capacity), "max_lossless_pps": best,
           "tries": sorted(run.tries, key=lambda t: t["pps"]), "half_capacity_pps": round(capacity / 2),
           "goal_met": best >= capacity / 2, "hops_per_rate": hops, "probe_sender": sender,
           "flood_offered_pps": FLOOD_PPS, "flood_sent_pps": round(flood),
           # the flood's sender could not outrun the path: the capacity is at least this figure
           "capacity_is_lower_bound": capacity >= 0.95 * flood}
    if plot:
        progress(f"drawing the moves into {plot}")
        plotting.render(run.panels, plot, f"vnfctl bench gap: {demo.FUNCTION}, DP capacity {capacity:,.0f} replies/s")
    return doc


def _capacity(lab: Lab, spec, progress) -> tuple[float, float, str]:
    """(replies/s, requests/s the flood sent, the sender)."""
    progress(f"DP capacity: flooding {spec.service_ip} at {FLOOD_PPS:,} requests/s for {FLOOD_S:g} s")
    pr = demo.Probe(lab, spec.service_ip, spec.port, FLOOD_PPS, seconds=FLOOD_S, rt_priority=0)
    sent, received = pr.finish(wait_s=FLOOD_S + 5.0)
    capacity = capacity_pps(sent, received)
    if capacity <= 0:
        raise BenchError(f"bench gap: {demo.FUNCTION} answered none of {len(sent):,} flood requests "
                         f"(sender {pr.sender}); is it serving? (vnfctl status {demo.FUNCTION})")
    progress(f"DP capacity: {capacity:,.0f} replies/s ({len(sent):,} requests sent, {len(received):,} answered)")
    return capacity, probe.reply_rate(sent.values(), *_span(sent)), pr.sender


def _span(sent: dict[int, float]) -> tuple[float, float]:
    return min(sent.values()), max(sent.values())


class _Search:
    """The tries so far: the function moves on around ``hosts`` from one try to the next."""

    def __init__(self, lab: Lab, ctl, spec, hosts: list[str], hops: int, progress, cpu: CpuSampler):
        self.lab, self.ctl, self.spec, self.hops, self.progress, self.cpu = lab, ctl, spec, hops, progress, cpu
        self.route = itertools.cycle(hosts)
        self.at = next(self.route)
        self.tries: list[dict] = []
        self.panels: list = []

    def try_rate(self, pps: int) -> None:
        pr = demo.Probe(self.lab, self.spec.service_ip, self.spec.port, pps)
        self.progress(f"{pps:,} requests/s: {self.hops} make-before-break hop(s) under the probe (sender {pr.sender})")
        warm = time.time()
        time.sleep(0.3)
        at_rest = self.cpu.snap()
        time.sleep(max(0.0, WARMUP_S - 0.3))
        rest = CpuSampler.between(at_rest, self.cpu.snap())
        windows, used = [], []
        try:
            for _ in range(self.hops):
                src, dst = self.at, next(self.route)
                before = self.cpu.snap()
                t0 = time.time()
                rep = migrate_function(self.ctl, demo.FUNCTION, dst, handover="make-before-break")
                self.at = dst
                windows.append((src, dst, rep, t0, time.time(), self.ctl.state.journal_of(rep.migration_id)))
                used.append(CpuSampler.between(before, self.cpu.snap()))
            time.sleep(SETTLE_S)
        finally:
            sent, received = pr.finish()
        # NOTE: the first 0.3 s are the sender's start (exec, first wake-ups), not the function's
        baseline = probe.analyze(sent, received, warm + 0.3, windows[0][3])
        arrivals = sorted(received.values())
        hops = []
        for (src, dst, rep, t0, t1, journal), cpu in zip(windows, used):
            seen = probe.analyze(sent, received, t0, t1)
            hops.append({"src": src, "dst": dst, "total_ms": round(rep.total_ms, 1), **seen,
                         "cp_downtime_ms": rep.cp_downtime_ms, "cpu": cpu})
            self.progress(f"{pps:,} requests/s {src}->{dst}: lost {seen['lost']:,}, gap {seen['gap_ms']:g} ms; "
                          f"CPU: {render_cpu(cpu)}")
            self.panels.append(plotting.move_panel(
                f"{demo.FUNCTION} {src}→{dst} at {pps:,}/s: sent {seen['sent']:,}, lost {seen['lost']:,}, "
                f"gap {seen['gap_ms']:g} ms", arrivals, t0, t1, journal, pps, rep.switchover_at))
        tried = combine(pps, hops, baseline)
        tried["cpu_at_rest"] = rest
        tried["probe_socket_drops"] = pr.record.tallies.get("rxq_drops", 0)
        self.progress(f"{pps:,} requests/s: sent {tried['sent']:,}, lost {tried['lost']:,}, "
                      f"gap {tried['gap_ms']:g} ms")
        self.tries.append(tried)
