"""What every lab machine (host or router) is: a network namespace, a mount namespace in which
the directories it keeps are its own, and an sshd that takes only the lab's key.

A machine's own directories live under its ``root`` on this machine and are bind-mounted, in its
mount namespace, over the paths a real machine keeps them at (``DIRS``). Everything else of the
file system is shared: it stands for software installed alike everywhere. The controller's own
directories are always covered, so a machine never sees them.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import ClassVar

from orchestrator.lab import procs

# Every machine covers these: the controller's state, the store and its key, its image cache.
# NOTE: /var/lib/vnfctl must be the last bind: it covers the lab's state directory, where the
# sources of every other bind live.
CONTROLLER_DIRS = {"/var/cache/vnfctl": "cache-vnfctl", "/var/lib/vnfctl": "vnfctl"}


@dataclass(frozen=True)
class Machine:
    lab: str
    netns: str
    root: Path     # this machine's own directory tree
    mntns: Path    # its persistent mount-namespace file

    DIRS: ClassVar[dict[str, str]] = {"/run": "run", "/etc/ssh": "etc-ssh", "/root": "root-home"}
    TMPFS: ClassVar[tuple[str, ...]] = ()
    KIND: ClassVar[str] = "machine"

    @property
    def name(self) -> str:
        raise NotImplementedError

    @property
    def ssh_listen(self) -> str:
        raise NotImplementedError

    @classmethod
    def dirs(cls) -> dict[str, str]:
        return {**cls.DIRS, **CONTROLLER_DIRS}

    def software(self) -> tuple[Path, ...]:
        """Installed software this machine runs from the shared file system (none by default)."""
        return ()

    # -- paths as the root mount namespace sees them ---------------------------------------
    def outside(self, inside: str | Path) -> Path:
        """Translate a path inside the machine's mount namespace to the same file seen from here
        (the lab builder's and the tests' view; the controller never has one)."""
        inside, dirs = str(inside), self.dirs()
        for target in sorted(dirs, key=len, reverse=True):
            if inside == target or inside.startswith(target + "/"):
                return self.root / dirs[target] / inside[len(target):].lstrip("/")
        return Path(inside)

    def _in(self, cmd: list[str]) -> list[str]:
        return procs.in_host(self.netns, self.mntns, cmd)

    # -- mount namespace --------------------------------------------------------------------
    def prepare_dirs(self) -> None:
        """Create what the machine's daemons expect in its own directories (before mounting)."""

    def ensure_mounts(self) -> None:
        for sub in self.dirs().values():
            (self.root / sub).mkdir(parents=True, exist_ok=True)
        for inside in ("/root", "/root/.ssh"):
            self.outside(inside).mkdir(mode=0o700, parents=True, exist_ok=True)
            self.outside(inside).chmod(0o700)
        self.outside("/etc/ssh/sshd_config.d").mkdir(parents=True, exist_ok=True)
        privsep = self.outside("/run/sshd")
        privsep.mkdir(mode=0o755, exist_ok=True)
        privsep.chmod(0o755)
        self.prepare_dirs()
        binds = {t: self.root / s for t, s in self.dirs().items()}
        keep = {t: tuple(p for p in self.software() if Path(t) in p.parents) for t in binds}
        procs.ensure_mount_namespace(self.mntns, binds, tmpfs=self.TMPFS, netns=self.netns,
                                     keep={t: k for t, k in keep.items() if k})

    def remove_mounts(self) -> None:
        procs.remove_mount_namespace(self.mntns)

    # -- sshd -------------------------------------------------------------------------------
    @property
    def host_key(self) -> Path:
        return self.outside("/etc/ssh/ssh_host_ed25519_key")

    def write_sshd_config(self) -> None:
        """The machine's base sshd configuration (a real one has its distribution's); drop-ins
        under /etc/ssh/sshd_config.d add to it, as on a real machine."""
        if not self.host_key.exists():
            procs.run(["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-C", f"{self.name}.{self.lab}",
                       "-f", str(self.host_key)], f"host key for {self.name}")
        self.outside("/etc/ssh/sshd_config").write_text(
            "Include /etc/ssh/sshd_config.d/*.conf\n"
            f"ListenAddress {self.ssh_listen}\nPort 22\n"
            "HostKey /etc/ssh/ssh_host_ed25519_key\nPidFile /run/sshd.pid\n"
            "PermitRootLogin prohibit-password\nPubkeyAuthentication yes\n"
            "PasswordAuthentication no\nKbdInteractiveAuthentication no\n"
            "UsePAM no\nPrintMotd no\nUseDNS no\n")

    def authorize(self, key: str) -> None:
        """Put a public key line in root's authorized_keys (what an operator does by hand)."""
        path = self.outside("/root/.ssh/authorized_keys")
        have = path.read_text().splitlines() if path.exists() else []
        if key.strip() not in have:
            path.write_text("".join(f"{line}\n" for line in have + [key.strip()]))
        path.chmod(0o600)

    def host_public_key(self) -> list[str]:
        """[key type, base64 key] of the host key, for the controller's known_hosts file."""
        return self.host_key.with_suffix(".pub").read_text().split()[:2]

    @property
    def sshd_pidfile(self) -> Path:
        return self.outside("/run/sshd.pid")

    def sshd_pid(self) -> int | None:
        return procs.read_pid(self.sshd_pidfile)

    def start_sshd(self) -> None:
        if self.sshd_pid():
            return
        procs.run(self._in(["/usr/sbin/sshd", "-f", "/etc/ssh/sshd_config"]), f"start sshd on {self.KIND} {self.name}")
        procs.wait_for(self.sshd_pid, 10, f"sshd on {self.KIND} {self.name}")
