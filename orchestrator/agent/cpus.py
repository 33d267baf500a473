"""The CPUs a host has, as the kernel lists them, and whether a DP core list fits them.

DP cores are checked against the CPUs that exist (``/sys/devices/system/cpu/online``), not
against the CPUs this process may run on: a DPDK host usually isolates its DP cores from the
scheduler (``isolcpus=``), and a process started normally then cannot run on them, although a
DP pinned there explicitly can. An isolated core that is not offered to DPs is refused too: on
such a host it serves nobody (nothing is scheduled there), which is a configuration error.
"""

from __future__ import annotations

from pathlib import Path

from orchestrator.errors import InputError

CPU_SYSFS = Path("/sys/devices/system/cpu")


def parse_cpu_list(text: str) -> list[int]:
    """The kernel's CPU list format ('0-3,8,10-11', '' for none) -> sorted CPU numbers (pure)."""
    cpus: set[int] = set()
    for part in text.strip().split(","):
        part = part.strip()
        if not part:
            continue
        lo, _, hi = part.partition("-")
        try:
            first, last = int(lo), int(hi or lo)
        except ValueError:
            raise ValueError(f"{part!r} is not a CPU number or range") from None
        if first < 0 or last < first:
            raise ValueError(f"bad CPU range {part!r}")
        cpus.update(range(first, last + 1))
    return sorted(cpus)


def format_cpu_list(cpus) -> str:
    """[0, 1, 2, 5] -> '0-2,5' (pure)."""
    out, run = [], []
    for c in sorted(set(cpus)):
        if run and c == run[-1] + 1:
            run.append(c)
            continue
        if run:
            out.append(f"{run[0]}-{run[-1]}" if len(run) > 1 else str(run[0]))
        run = [c]
    if run:
        out.append(f"{run[0]}-{run[-1]}" if len(run) > 1 else str(run[0]))
    return ",".join(out)


def read_cpus(sysfs: Path = CPU_SYSFS) -> tuple[list[int], list[int]]:
    """(online CPUs, isolated CPUs) of this machine."""
    def one(name: str) -> list[int]:
        try:
            return parse_cpu_list((sysfs / name).read_text())
        except OSError:
            return []

    online = one("online")
    if not online:
        import os

        online = sorted(os.sched_getaffinity(0))
    return online, one("isolated")


def dp_core_problem(dp_cores: list[int], online: list[int], isolated: list[int]) -> str | None:
    """What is wrong with offering ``dp_cores`` to DPs on a machine with these CPUs, as one line
    naming both sides and the fix; None when they agree (pure)."""
    if not dp_cores:
        return "no DP cores given (for example --dp-cores 8-15)"
    missing = [c for c in dp_cores if c not in online]
    if missing:
        return (f"DP cores {format_cpu_list(missing)} do not exist here (online CPUs: {format_cpu_list(online)}): "
                f"give cores of this machine")
    unlisted = [c for c in isolated if c not in dp_cores]
    if unlisted:
        return (f"CPUs {format_cpu_list(unlisted)} are isolated (isolcpus: {format_cpu_list(isolated)}) but not "
                f"offered to DPs (DP cores: {format_cpu_list(dp_cores)}): add them to the DP cores or remove them "
                f"from isolcpus")
    return None


def guest_cpus(online: list[int], isolated: list[int], dp_cores: list[int]) -> list[int]:
    """The CPUs a host gives its CP guests' QEMU (vCPUs, emulator, migration and I/O threads):
    every online CPU that is neither a DP core nor isolated (pure). Empty when the DP cores take
    every CPU: the guests are then left unpinned, sharing the DPs' cores."""
    return [c for c in online if c not in set(dp_cores) | set(isolated)]


def check_dp_cores(dp_cores: list[int], sysfs: Path = CPU_SYSFS) -> None:
    online, isolated = read_cpus(sysfs)
    problem = dp_core_problem(dp_cores, online, isolated)
    if problem:
        raise InputError(problem)
