"""The one place a DP command line is made: a signed manifest's ``Launch`` plus the agent's values.

Pure (no I/O). The manifest chooses only among things this module knows how to pass: its
runtime is a NAME looked up in the agent's own allow-list (``INTERPRETERS``; "native" runs the
verified file itself), its core argument a form ("mask" or "list"), and its options and flags
names from fixed sets, each mapped to a flag the manifest parser already checked
(``--lowercase-word``). The command line is::

    [interpreter] PROGRAM (-c 0x0000ff00 | -l 1,3-4 | --lcores=0@1,1@1,2@3) [FLAG VALUE]... [FLAG]...

or, for a program whose manifest names a preset (a stock DPDK application, which takes none of
the agent's options), the preset's own words (``PRESETS``): EAL options, ``--``, application
options, filled in with values the agent chose (the DP's own interface, its file prefix, one
queue per core). Options come in the schema's order (``OPTION_NAMES``), then the boolean flags asked for (in
``FLAG_NAMES`` order). Values are argv words, never shell-parsed. A value the agent has but the
manifest does not declare is not passed (the program does not take it); an option the manifest
declares but the agent has no value for, or a flag the agent asks for but the manifest does not
declare, is refused: a DP must never start without something it was promised (a DP asked to
start in standby that starts active would answer for a function that is still served elsewhere).
"""

from __future__ import annotations

import re
import sys
from dataclasses import dataclass
from pathlib import Path

from orchestrator.agent.cores import cores_to_list, cores_to_mask
from orchestrator.agent.protocol import AgentError
from orchestrator.store.manifest import FLAG_NAMES, NATIVE, PRESET_NAMES, Launch

_PLAIN = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,63}$")

# The agent's allow-list of interpreters: a manifest names one of these keys, never a path.
INTERPRETERS = {"python3": sys.executable}


def core_arg(form: str, cores: list[int]) -> list[str]:
    """The EAL core argument: mask → ['-c', '0x0000ff00'] (the seed's form), list → ['-l', '1,3-4'],
    lcores → ['--lcores=0@1,1@1,2@3']: DPDK's main lcore 0 shares the first core with worker
    lcore 1, worker lcore i+1 runs on the i-th core. A DPDK application needs a main lcore beside
    its forwarding ones; it mostly sleeps, so it costs the DP no core of its own."""
    if not cores or any(isinstance(c, bool) or not isinstance(c, int) or c < 0 for c in cores):
        raise AgentError(f"a DP needs a list of core numbers, not {cores!r}")
    if form == "mask":
        return ["-c", cores_to_mask(cores)]
    if form == "list":
        return ["-l", cores_to_list(cores)]
    if form == "lcores":
        ordered = sorted(set(cores))
        return ["--lcores=" + ",".join([f"0@{ordered[0]}"] + [f"{i + 1}@{c}" for i, c in enumerate(ordered)])]
    raise AgentError(f"unknown core argument form {form!r}")


@dataclass(frozen=True)
class Preset:
    """A command line the agent owns for a stock DPDK application (the manifest names it, never
    the words). ``eal`` and ``app`` are templates over the agent's values: ``{iface}`` (the DP's
    own interface), ``{prefix}`` (its DPDK file prefix), ``{queues}`` (one RX/TX queue pair per
    core). Such a program answers no ARP (the agent claims the IP for it), reads no policy table
    and writes no statistics file: its counters are read through DPDK's telemetry socket."""

    name: str
    eal: tuple[str, ...]
    app: tuple[str, ...]

    def words(self, iface: str, prefix: str, queues: int) -> list[str]:
        # NOTE: the values go inside DPDK's own argument syntax ("--vdev=NAME,key=value"), where
        # a ',' or '=' would add keys: only plain names pass.
        for what, value in (("interface", iface), ("file prefix", prefix)):
            if not _PLAIN.match(value):
                raise AgentError(f"preset {self.name}: the DP's {what} {value[:40]!r} must be letters, digits, "
                                 f"'.', '_' or '-'")
        fill = {"iface": iface, "prefix": prefix, "queues": str(queues)}
        return [w.format(**fill) for w in self.eal] + ["--"] + [w.format(**fill) for w in self.app]


# NOTE: dpdk-testpmd as a function's DP: an af_packet port on the DP's own interface, no
# hugepages, 5tswap (each frame goes back with its MAC, IP and L4 addresses swapped: a reply,
# as the stub's), one port looped on itself. --stats-period keeps it running with stdin at
# /dev/null (it would exit at once) without filling its log (one report a day); --no-mlockall
# cuts its start by ~200 ms (LAB-NOTES).
PRESETS = {
    "testpmd-5tswap": Preset(
        "testpmd-5tswap",
        eal=("--no-huge", "-m", "256", "--no-pci", "--file-prefix", "{prefix}",
             "--vdev=net_af_packet0,iface={iface},qpairs={queues}"),
        app=("--no-mlockall", "--total-num-mbufs=16384", "--auto-start", "--stats-period", "86400",
             "--forward-mode=5tswap", "--port-topology=loop", "--rxq={queues}", "--txq={queues}",
             "--nb-cores={queues}")),
}
assert set(PRESETS) == set(PRESET_NAMES), "every preset a manifest may name has its command line here"


def run_dir(state_dir: Path, dp: str) -> Path:
    """A preset DP's DPDK runtime directory (its RUNTIME_DIRECTORY): per host and DP, so two DPs
    (or two lab hosts on one machine) never share DPDK's config and telemetry sockets."""
    return state_dir / "dp" / f"{dp}.run"


def telemetry_socket(state_dir: Path, dp: str) -> Path:
    return run_dir(state_dir, dp) / "dpdk" / dp / "dpdk_telemetry.v2"


def dp_env(launch: Launch, state_dir: Path, dp: str) -> dict[str, str]:
    """What a DP's environment adds to the agent's: a preset DP's DPDK runtime directory."""
    return {"RUNTIME_DIRECTORY": str(run_dir(state_dir, dp))} if launch.preset else {}


def _value(name: str, flag: str, values: dict[str, str]) -> str:
    if name not in values:
        raise AgentError(f"the DP takes {flag} ({name}) and the agent has no value for it")
    value = values[name]
    if not isinstance(value, str):
        raise AgentError(f"the DP's {name} ({flag}) must be text, not {type(value).__name__}")
    # NOTE: a value starting with '-' would be read by the program as another option, and a NUL
    # cannot be in an argv word at all.
    if value.startswith("-") or "\0" in value or "\n" in value:
        raise AgentError(f"the DP's {name} ({flag}) {value[:40]!r} may not start with '-' or hold NUL or "
                         f"newline")
    return value


def dp_argv(launch: Launch, program: str, cores: list[int], values: dict[str, str],
            flags: set[str] | frozenset[str] = frozenset(), interpreters: dict[str, str] = INTERPRETERS) -> list[str]:
    """The argv for one DP instance of the verified file ``program`` on ``cores``; AgentError
    (one line) when the manifest's runtime is not allowed here, a declared option has no value,
    or a flag asked for is not declared."""
    if not isinstance(launch, Launch):
        raise AgentError("a DP launch must come from a verified program manifest")
    if launch.runtime == NATIVE:
        argv = [program]
    elif launch.runtime in interpreters:
        argv = [interpreters[launch.runtime], program]
    else:
        allowed = ", ".join(sorted(interpreters)) or "none"
        raise AgentError(f"interpreter {launch.runtime} is not allowed on this host (allowed: {allowed}, or native)")
    argv += core_arg(launch.cores, list(cores))
    if launch.preset is not None:
        if flags:
            raise AgentError(f"the DP program (preset {launch.preset}) does not declare the flag "
                             f"{', '.join(sorted(map(str, flags)))}: it cannot be started so")
        return argv + PRESETS[launch.preset].words(_value("iface", "its interface", values),
                                                   _value("name", "its file prefix", values), len(set(cores)))
    for name, flag in launch.options:
        argv += [flag, _value(name, flag, values)]
    declared = dict(launch.flags)
    unknown = sorted(set(flags) - set(declared))
    if unknown:
        raise AgentError(f"the DP program does not declare the flag {', '.join(map(str, unknown))}: "
                         f"it cannot be started so")
    argv += [declared[name] for name in FLAG_NAMES if name in flags]
    return argv
