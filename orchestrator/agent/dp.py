"""The agent's one door to DP processes: launch pinned, check the pinning, read health, stop.

A DP runs in its own session so it outlives the agent (an agent restart must not stop traffic);
the agent finds it again through the pid in its CP-DP table.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import time
from pathlib import Path

import psutil

from orchestrator.agent.protocol import AgentError


def launch(argv: list[str], cores: list[int], log: Path, dp: str, settle_s: float = 0.3) -> int:
    """Start a DP pinned to ``cores`` (pinned before it runs a single instruction of its own) and
    verify with psutil that it is still alive and still pinned; returns its pid."""
    log.parent.mkdir(parents=True, exist_ok=True)
    with open(log, "ab") as out:
        try:
            proc = subprocess.Popen(argv, stdin=subprocess.DEVNULL, stdout=out, stderr=out,
                                    start_new_session=True, preexec_fn=lambda: os.sched_setaffinity(0, cores))
        except OSError as exc:
            raise AgentError(f"DP {dp}: cannot start {argv[0]}: {exc.strerror}") from None
    deadline = time.monotonic() + settle_s
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            break
        time.sleep(0.02)
    if proc.poll() is not None:
        tail = log.read_text(errors="replace").strip().splitlines()[-1:] if log.exists() else []
        raise AgentError(f"DP {dp} exited at start (code {proc.returncode}){': ' + tail[0] if tail else ''}")
    affinity = sorted(psutil.Process(proc.pid).cpu_affinity())
    if affinity != sorted(cores):
        stop(proc.pid, 1.0)
        raise AgentError(f"DP {dp} is on cores {affinity}, not {sorted(cores)}: stopped")
    return proc.pid


def alive(pid: int | None) -> bool:
    if not pid:
        return False
    try:
        p = psutil.Process(pid)
        return p.status() != psutil.STATUS_ZOMBIE
    except psutil.NoSuchProcess:
        return False


def affinity(pid: int) -> list[int] | None:
    try:
        return sorted(psutil.Process(pid).cpu_affinity())
    except psutil.NoSuchProcess:
        return None


def stop(pid: int, deadline_s: float = 2.0) -> str:
    """Graceful drain (SIGTERM: the DP finishes its batch and publishes final counters), then
    SIGKILL after the deadline. Returns 'drained', 'killed' or 'gone'."""
    try:
        p = psutil.Process(pid)
        p.send_signal(signal.SIGTERM)
    except psutil.NoSuchProcess:
        return "gone"
    try:
        p.wait(deadline_s)
        return "drained"
    except psutil.TimeoutExpired:
        p.kill()
        try:
            p.wait(2)
        except psutil.TimeoutExpired:
            pass
        return "killed"
    except psutil.NoSuchProcess:
        return "drained"


def read_stats(path: Path) -> dict | None:
    try:
        return json.loads(path.read_text())
    except (OSError, ValueError):
        return None
