"""The one place a DP command line is made: a signed manifest's ``Launch`` plus the agent's values.

Pure (no I/O). The manifest chooses only among things this module knows how to pass: its
runtime is a NAME looked up in the agent's own allow-list (``INTERPRETERS``; "native" runs the
verified file itself), its core argument a form ("mask" or "list"), and its options and flags
names from fixed sets, each mapped to a flag the manifest parser already checked
(``--lowercase-word``). The command line is::

    [interpreter] PROGRAM (-c 0x0000ff00 | -l 1,3-4) [FLAG VALUE]... [FLAG]...

Options come in the schema's order (``OPTION_NAMES``), then the boolean flags asked for (in
``FLAG_NAMES`` order). Values are argv words, never shell-parsed. A value the agent has but the
manifest does not declare is not passed (the program does not take it); an option the manifest
declares but the agent has no value for, or a flag the agent asks for but the manifest does not
declare, is refused: a DP must never start without something it was promised (a DP asked to
start in standby that starts active would answer for a function that is still served elsewhere).
"""

from __future__ import annotations

import sys

from orchestrator.agent.cores import cores_to_list, cores_to_mask
from orchestrator.agent.protocol import AgentError
from orchestrator.store.manifest import FLAG_NAMES, NATIVE, Launch

# The agent's allow-list of interpreters: a manifest names one of these keys, never a path.
INTERPRETERS = {"python3": sys.executable}


def core_arg(form: str, cores: list[int]) -> list[str]:
    """The EAL core argument: mask → ['-c', '0x0000ff00'] (the seed's form), list → ['-l', '1,3-4']."""
    if not cores or any(isinstance(c, bool) or not isinstance(c, int) or c < 0 for c in cores):
        raise AgentError(f"a DP needs a list of core numbers, not {cores!r}")
    if form == "mask":
        return ["-c", cores_to_mask(cores)]
    if form == "list":
        return ["-l", cores_to_list(cores)]
    raise AgentError(f"unknown core argument form {form!r}")


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
    for name, flag in launch.options:
        argv += [flag, _value(name, flag, values)]
    declared = dict(launch.flags)
    unknown = sorted(set(flags) - set(declared))
    if unknown:
        raise AgentError(f"the DP program does not declare the flag {', '.join(map(str, unknown))}: "
                         f"it cannot be started so")
    argv += [declared[name] for name in FLAG_NAMES if name in flags]
    return argv
