"""Where a benchmark's CPU goes: per role (QEMU's migration threads, its vCPUs, its main loop, the
DPs, the probe's sender, the controller making the move (this process), the watcher, the routers,
the rest of the lab, everything else), sampled from /proc while a hop runs.

The lab's machines share this machine's kernel, so one /proc shows every host's processes. A
window's ends read every thread's CPU time (utime + stime); between them a sampler thread follows
QEMU's and the DPs' threads every ``SAMPLE_S``, since those may end inside the window. A role's
CPU in a window is the growth of its threads' times across it (a thread that starts inside the
window counts from zero, one that ends counts to its last sample: a source QEMU that exits at the
end of its copy loses at most one sample's worth). The machine's whole CPU comes from /proc/stat, so "other"
is what none of the roles used (the kernel's softirqs forwarding packets among it).
"""

from __future__ import annotations

import os
import threading
import time
from pathlib import Path

SAMPLE_S = 0.05
PROC = Path("/proc")
CLK_TCK = os.sysconf("SC_CLK_TCK")
ROLES = ("qemu_migration", "qemu_vcpu", "qemu_main", "dp", "probe", "controller", "watcher", "routers", "lab_services",
         "other")
DP_PROGRAMS = "/var/lib/vnfctl/agent/programs/"
ROUTER_DAEMONS = {"zebra", "bgpd", "staticd", "watchfrr", "mgmtd", "vtysh"}


def role_of(comm: str, argv: list[str], thread: str) -> str | None:
    """Pure: the role of a thread (its name ``thread``) of the process ``comm`` run as ``argv``;
    None for a process the bench does not name (counted in "other")."""
    if comm.startswith("qemu-system"):
        if thread == "live_migration" or thread.startswith(("multifdsend", "multifdrecv", "mig/")):
            return "qemu_migration"
        if thread.startswith("CPU ") and thread.endswith(("/TCG", "/KVM")):
            return "qemu_vcpu"
        return "qemu_main"
    if any(a.startswith(DP_PROGRAMS) for a in argv[:2]):
        return "dp"
    if argv and (argv[0].endswith("probe_sender") or "orchestrator.bench.probe" in argv):
        return "probe"
    if "orchestrator.cli" in argv and "watch" in argv:
        return "watcher"
    if comm in ROUTER_DAEMONS:
        return "routers"
    if any(a.startswith("orchestrator.") for a in argv[:3]) or comm in {"libvirtd", "sshd", "virtlogd"}:
        return "lab_services"
    return None


def shares(before: dict[tuple[int, int], tuple[str, float]], after: dict[tuple[int, int], tuple[str, float]],
           machine_s: float) -> dict[str, float]:
    """Pure: CPU seconds per role between two samples (thread -> (role, seconds)); a thread absent
    before counts from zero; "other" is the machine's CPU (``machine_s``) the roles did not use."""
    out = dict.fromkeys(ROLES, 0.0)
    for key, (role, cpu) in after.items():
        out[role] += max(0.0, cpu - before.get(key, (role, 0.0))[1])
    named = sum(v for k, v in out.items() if k != "other")
    out["other"] = max(0.0, machine_s - named)
    return {k: round(v, 3) for k, v in out.items()}


def _threads(proc: Path = PROC, only_comm: str | None = None,
             pids: set[int] | None = None) -> dict[tuple[int, int], tuple[str, float]]:
    """Thread -> (role, CPU seconds) of every thread with a role (only processes whose name starts
    with ``only_comm``, and those of ``pids``, when given)."""
    seen: dict[tuple[int, int], tuple[str, float]] = {}
    me = str(os.getpid())
    dirs = proc.iterdir() if pids is None else (proc / str(p) for p in pids)
    for pdir in dirs:
        if not pdir.name.isdigit():
            continue
        try:
            comm = (pdir / "comm").read_text().strip()
            if only_comm and not comm.startswith(only_comm) and pids is None:
                continue
            argv = [a.decode(errors="replace") for a in (pdir / "cmdline").read_bytes().split(b"\0") if a]
            tasks = list((pdir / "task").iterdir())
        except OSError:
            continue
        for t in tasks:
            try:
                name = (t / "comm").read_text().strip()
                fields = (t / "stat").read_text().rsplit(")", 1)[1].split()
            except (OSError, IndexError):
                continue
            role = "controller" if pdir.name == me else role_of(comm, argv, name)
            if role is not None:
                seen[(int(pdir.name), int(t.name))] = (role, (int(fields[11]) + int(fields[12])) / CLK_TCK)
    return seen


def _machine_s(proc: Path = PROC) -> float:
    """The machine's busy CPU seconds so far (every CPU, idle and iowait left out)."""
    fields = [int(x) for x in (proc / "stat").read_text().splitlines()[0].split()[1:]]
    return (sum(fields[:8]) - fields[3] - fields[4]) / CLK_TCK


class CpuSampler:
    """``snap()`` reads every role's threads now; in between, a thread of its own follows QEMU's
    threads and those of the processes of QEMU and the DPs the last snap saw, every ``interval_s``
    (a source QEMU ends with its copy, a source DP at the move's cleanup: their last times are
    kept), so ``between(snap_a, snap_b)`` counts a QEMU or a DP that ended between the two."""

    def __init__(self, interval_s: float = SAMPLE_S):
        self.interval_s = interval_s
        self._qemu: dict[tuple[int, int], tuple[str, float]] = {}
        self._pids: set[int] = set()          # QEMUs and DPs the last snap saw
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="cpu-sampler", daemon=True)

    def __enter__(self) -> "CpuSampler":
        self._follow()
        self._thread.start()
        return self

    def __exit__(self, *exc) -> None:
        self._stop.set()
        self._thread.join()

    def _follow(self) -> None:
        got = _threads(only_comm="qemu-system")
        got.update(_threads(pids=set(self._pids)))
        with self._lock:
            self._qemu.update(got)

    def _run(self) -> None:
        while not self._stop.wait(self.interval_s):
            self._follow()

    def snap(self) -> tuple[float, float, dict]:
        """(time.time(), the machine's busy CPU seconds, thread -> (role, seconds))."""
        self._follow()
        now, machine, threads = time.time(), _machine_s(), _threads()
        with self._lock:
            self._pids = {pid for (pid, _), (role, _) in threads.items() if role == "dp" or role.startswith("qemu")}
            return now, machine, {**self._qemu, **threads}

    @staticmethod
    def between(a: tuple[float, float, dict], b: tuple[float, float, dict]) -> dict:
        """CPU seconds per role from snap ``a`` to snap ``b``, with the window's length and each
        role's share of one CPU (``pct``: 100 is one CPU busy the whole window)."""
        span = max(b[0] - a[0], 1e-3)
        cpu = shares(a[2], b[2], b[1] - a[1])
        return {"window_s": round(span, 3), "cpu_s": cpu,
                "pct": {k: round(100 * v / span) for k, v in cpu.items() if v}}


def render(window: dict) -> str:
    """Pure: one line of a window's CPU by role, biggest first ('qemu_migration 61%, dp 98%, ...')."""
    pct = window.get("pct") or {}
    return ", ".join(f"{k} {v}%" for k, v in sorted(pct.items(), key=lambda kv: -kv[1]) if v)
