"""Bringing up a host: everything a server needs so that vnfctl can drive it.

The same code brings up a real host (``scripts/host-setup.sh`` runs it with ``--service
systemd``) and each lab host (the lab runs it inside the host's namespaces with ``--service
daemon``: only the namespaces themselves are lab-specific).

    python -m orchestrator.agent.bringup --host a --store-url http://10.10.5.2:8780 \\
        --trust-store-key 'vnfctl-ed25519 BASE64 KEYID' --data-interface ens2f1 --dp-cores 8-15 \\
        --authorized-key 'ssh-ed25519 AAAA... controller' --service systemd

Idempotent: run it again with other values to change them. What it does, in order:

1. checks (root; the data interface exists; the DP cores exist on this machine; the store keys
   parse) before it changes anything;
2. ``/etc/vnfctl/agent.yaml`` (0600): host name, DP cores, data interface, store URL, trusted
   store keys;
3. the agent's state and image directories;
4. sshd: ``/etc/ssh/sshd_config.d/vnfctl-agent.conf`` declares the ``vnfctl-agent`` subsystem
   (the controller's way in to the agent's named operations), and the controller's key goes to
   root's ``authorized_keys``;
5. the agent as a service: a systemd unit (enabled, started, restarted when the config changed),
   or a plain daemon (the lab has no systemd), or nothing (``--service none``).
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import time
from pathlib import Path

import yaml

from orchestrator.agent import paths
from orchestrator.errors import BringUpError, InputError, VnfctlError  # BringUpError: re-export

SERVICES = ("systemd", "daemon", "none")



def parse_cores(text: str) -> list[int]:
    """'8-11,14' -> [8, 9, 10, 11, 14] (pure)."""
    cores: set[int] = set()
    for part in str(text).split(","):
        part = part.strip()
        if not part:
            continue
        try:
            lo, _, hi = part.partition("-")
            first, last = int(lo), int(hi or lo)
        except ValueError:
            raise InputError(f"--dp-cores: {part!r} is not a core number or range") from None
        if first < 0 or last < first:
            raise InputError(f"--dp-cores: bad range {part!r}")
        cores.update(range(first, last + 1))
    if not cores:
        raise InputError("--dp-cores: give at least one core (for example 8-15)")
    return sorted(cores)


def agent_config(host: str, store_url: str, keys: list[str], data_interface: str, dp_cores: list[int],
                 dp_core_share: int = 1) -> dict:
    """The agent's configuration document (pure)."""
    return {"host": host, "store_url": store_url.rstrip("/"), "trusted_store_keys": list(keys),
            "data_interface": data_interface, "dp_cores": list(dp_cores), "dp_core_share": dp_core_share,
            "state_dir": str(paths.STATE_DIR), "image_dir": str(paths.IMAGE_DIR), "shm_dir": "/dev/shm"}


def sshd_dropin(python: str) -> str:
    return (f"# vnfctl: the controller reaches the host agent's named operations through this subsystem.\n"
            f"Subsystem {paths.SUBSYSTEM} {python} -m orchestrator.agent.bridge\n")


def systemd_unit(python: str) -> str:
    # NOTE: KillMode=process: DPs run in sessions of their own and must outlive an agent restart
    # (the agent finds them again from its tables); systemd would otherwise kill the whole cgroup.
    return ("[Unit]\nDescription=vnfctl host agent (DP launcher, core allocation, CP relay)\n"
            "After=network-online.target libvirtd.service\nWants=network-online.target\n\n"
            f"[Service]\nExecStart={python} -m orchestrator.agent.daemon --config {paths.CONFIG}\n"
            "Restart=on-failure\nKillMode=process\n\n[Install]\nWantedBy=multi-user.target\n")


def _write(path: Path, text: str, mode: int) -> bool:
    """Write ``path`` atomically when its content differs; True when it changed."""
    if path.exists() and path.read_text() == text:
        os.chmod(path, mode)
        return False
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.tmp")
    tmp.write_text(text)
    os.chmod(tmp, mode)
    os.replace(tmp, path)
    return True


def _check_sshd_includes_dropins(sshd_config: Path = Path("/etc/ssh/sshd_config")) -> None:
    try:
        lines = sshd_config.read_text().splitlines()
    except OSError as exc:
        raise BringUpError(f"cannot read {sshd_config}: {exc.strerror} (is openssh-server installed?)") from None
    for line in lines:
        words = line.split()
        if words and words[0].lower() == "include" and any(
                w.startswith("/etc/ssh/sshd_config.d/") or w.startswith("sshd_config.d/") for w in words[1:]):
            return
    raise BringUpError(f"{sshd_config} does not include /etc/ssh/sshd_config.d/*.conf: add "
                       f"'Include /etc/ssh/sshd_config.d/*.conf' at its top, then run this again")


def _authorize(key: str) -> bool:
    words = key.split()
    if len(words) < 2 or not words[0].startswith(("ssh-", "ecdsa-", "sk-")):
        raise InputError(f"--authorized-key: not an OpenSSH public key line: {key[:40]!r}")
    path = paths.AUTHORIZED_KEYS
    have = path.read_text().splitlines() if path.exists() else []
    if any(line.split()[:2] == words[:2] for line in have if line.strip()):
        return False
    path.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
    _write(path, "".join(f"{line}\n" for line in have) + key.strip() + "\n", 0o600)
    return True


def _agent_pid() -> int | None:
    try:
        pid = int(paths.PIDFILE.read_text().split()[0])
        os.kill(pid, 0)
        return pid
    except (OSError, ValueError, IndexError):
        return None


def _start_daemon(python: str, restart: bool) -> str:
    """The agent as a plain detached daemon (hosts without systemd: the lab)."""
    pid = _agent_pid()
    if pid and not restart:
        return f"agent running (pid {pid})"
    if pid:
        os.kill(pid, 15)
        deadline = time.monotonic() + 10
        while _agent_pid() and time.monotonic() < deadline:
            time.sleep(0.05)
    paths.SOCKET.unlink(missing_ok=True)
    log = paths.STATE_DIR / "agent.log"
    with open(log, "ab") as out:
        proc = subprocess.Popen([python, "-m", "orchestrator.agent.daemon", "--config", str(paths.CONFIG)],
                                stdin=subprocess.DEVNULL, stdout=out, stderr=out, start_new_session=True)
    deadline = time.monotonic() + 20
    while not paths.SOCKET.exists():
        if proc.poll() is not None or time.monotonic() > deadline:
            tail = log.read_text(errors="replace").strip().splitlines()[-1:] if log.exists() else []
            raise BringUpError(f"the host agent did not start{': ' + tail[0] if tail else ''} (log {log})")
        time.sleep(0.05)
    return f"agent {'restarted' if pid else 'started'} (pid {proc.pid})"


def _systemctl(*args: str) -> None:
    done = subprocess.run(["systemctl", *args], capture_output=True, text=True)
    if done.returncode != 0:
        raise BringUpError(f"systemctl {' '.join(args)}: {(done.stderr.strip().splitlines() or ['failed'])[0]}")


def _start_systemd(python: str, restart: bool, sshd_changed: bool) -> str:
    changed = _write(paths.SYSTEMD_UNIT, systemd_unit(python), 0o644)
    _systemctl("daemon-reload")
    _systemctl("enable", "--now", "vnfctl-agent.service")
    if restart or changed:
        _systemctl("restart", "vnfctl-agent.service")
    if sshd_changed:
        try:
            _systemctl("reload", "ssh.service")
        except BringUpError:
            _systemctl("reload", "sshd.service")
    return "vnfctl-agent.service enabled and running"


def bring_up(host: str, store_url: str, keys: list[str], data_interface: str, dp_cores: list[int],
             authorized_key: str | None = None, service: str = "daemon", python: str | None = None,
             sys_class_net: Path = Path("/sys/class/net"), dp_core_share: int = 1) -> list[str]:
    """Bring this machine up as vnfctl host ``host``; returns one line per thing done."""
    from orchestrator.store.signing import parse_public_key

    python = python or sys.executable
    if os.geteuid() != 0:
        raise BringUpError("run the host bring-up as root")
    if service not in SERVICES:
        raise InputError(f"--service must be one of {', '.join(SERVICES)}")
    if not (sys_class_net / data_interface).exists():
        raise InputError(f"host {host}: no network interface {data_interface!r} for the DP "
                         f"(have: {', '.join(sorted(p.name for p in sys_class_net.iterdir()))})")
    usable = os.sched_getaffinity(0)
    missing = [c for c in dp_cores if c not in usable]
    if missing:
        raise InputError(f"host {host}: DP cores {missing} do not exist here (usable: {sorted(usable)})")
    if isinstance(dp_core_share, bool) or not isinstance(dp_core_share, int) or not 1 <= dp_core_share <= 64:
        raise InputError(f"--dp-core-share must be a whole number from 1 to 64, not {dp_core_share!r}")
    if not keys:
        raise InputError("give the store's public key with --trust-store-key (vnfctl store keygen prints it)")
    for key in keys:
        parse_public_key(key)
    if not store_url.startswith(("http://", "https://")):
        raise InputError(f"--store-url must be an http(s) URL, not {store_url!r}")
    _check_sshd_includes_dropins()

    done = []
    cfg = yaml.safe_dump(agent_config(host, store_url, keys, data_interface, dp_cores, dp_core_share),
                         sort_keys=False)
    cfg_changed = _write(paths.CONFIG, cfg, 0o600)
    done.append(f"{paths.CONFIG} {'written' if cfg_changed else 'unchanged'}")
    paths.STATE_DIR.mkdir(mode=0o700, parents=True, exist_ok=True)
    paths.IMAGE_DIR.mkdir(mode=0o755, parents=True, exist_ok=True)
    sshd_changed = _write(paths.SSHD_DROPIN, sshd_dropin(python), 0o644)
    done.append(f"sshd subsystem {paths.SUBSYSTEM} {'declared' if sshd_changed else 'unchanged'}")
    if authorized_key:
        done.append("controller key " + ("authorized" if _authorize(authorized_key) else "already authorized"))
    if service == "daemon":
        done.append(_start_daemon(python, cfg_changed))
    elif service == "systemd":
        done.append(_start_systemd(python, cfg_changed, sshd_changed))
    return done


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m orchestrator.agent.bringup",
                                description="Bring this machine up as a vnfctl host (idempotent).")
    p.add_argument("--host", required=True, help="this host's name in the controller's inventory")
    p.add_argument("--store-url", required=True, help="the program store, as this host reaches it")
    p.add_argument("--trust-store-key", action="append", default=[], metavar="KEY",
                   help="a store public key line (vnfctl store keygen prints it); repeat to trust several")
    p.add_argument("--data-interface", required=True, help="the interface reserved for DPs")
    p.add_argument("--dp-cores", required=True, help="cores offered to DPs, e.g. 8-15")
    p.add_argument("--dp-core-share", type=int, default=1, metavar="N",
                   help="how many DPs that sleep when idle (idle: adaptive) may share one core (default 1: "
                        "every DP has its cores alone; a busy-polling DP always does)")
    p.add_argument("--authorized-key", help="the controller's SSH public key line")
    p.add_argument("--service", choices=SERVICES, default="systemd")
    args = p.parse_args(argv)
    try:
        for line in bring_up(args.host, args.store_url, args.trust_store_key, args.data_interface,
                             parse_cores(args.dp_cores), args.authorized_key, args.service,
                             dp_core_share=args.dp_core_share):
            print(f"host {args.host}: {line}")
    except VnfctlError as exc:
        print(f"vnfctl host bring-up: error: {exc}", file=sys.stderr)
        return exc.exit_code
    return 0


if __name__ == "__main__":
    sys.exit(main())
