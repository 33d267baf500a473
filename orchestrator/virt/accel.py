"""Choosing KVM or TCG for a host's guests, honestly, from that host's own facts.

``/dev/kvm`` existing is not enough: some machines expose a paravirtual KVM (``kvm_pvm``) that
accepts KVM ioctls but cannot boot a stock guest kernel, and without ``vmx``/``svm`` in the CPU
flags there is no hardware virtualization to use. ``auto`` picks KVM only when the CPU has the
extension, the vendor KVM module is loaded, /dev/kvm opens and (when asked) the host's libvirt
offers KVM domains; TCG otherwise, with the reason.

The facts are read ON the host (``probe_facts`` runs in its agent) and the decision is a pure
function of them, so the controller never judges a host by its own CPU. ``VNFCTL_ACCEL=kvm|tcg``
overrides every host's configured choice.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

from orchestrator.errors import InputError

ACCELS = ("auto", "kvm", "tcg")
_FLAGS = frozenset({"vmx", "svm", "hypervisor"})   # the CPU flags the decision reads


@dataclass(frozen=True)
class KvmFacts:
    cpu_flags: frozenset[str]
    modules: frozenset[str]
    dev_kvm_usable: bool
    libvirt_kvm: bool | None = None     # the host's libvirt offers <domain type='kvm'> (None: not asked)

    def to_dict(self) -> dict:
        return {"cpu_flags": sorted(self.cpu_flags & _FLAGS), "modules": sorted(self.modules),
                "dev_kvm_usable": self.dev_kvm_usable, "libvirt_kvm": self.libvirt_kvm}

    @classmethod
    def from_dict(cls, doc: dict) -> "KvmFacts":
        return cls(frozenset(doc.get("cpu_flags") or ()), frozenset(doc.get("modules") or ()),
                   bool(doc.get("dev_kvm_usable")), doc.get("libvirt_kvm"))


@dataclass(frozen=True)
class AccelChoice:
    accel: str  # "kvm" or "tcg"
    reason: str

    @property
    def domain_type(self) -> str:
        """libvirt's <domain type=...>: 'kvm' for hardware acceleration, 'qemu' for TCG."""
        return "kvm" if self.accel == "kvm" else "qemu"

    @staticmethod
    def name_of(domain_type: str | None) -> str:
        """The accelerator a running guest's domain type stands for."""
        return "kvm" if domain_type == "kvm" else "tcg"


def requested_accel(configured: str, env: dict | None = None) -> str:
    """The choice to make for a host: ``VNFCTL_ACCEL`` when set, else the host's configured one."""
    env = os.environ if env is None else env
    value = env.get("VNFCTL_ACCEL") or configured or "auto"
    if value not in ACCELS:
        where = "VNFCTL_ACCEL" if env.get("VNFCTL_ACCEL") else "accel"
        raise InputError(f"{where} must be one of {', '.join(ACCELS)}, not {value!r}")
    return value


def choose_accel(requested: str, facts: KvmFacts) -> AccelChoice:
    """Pure decision from plain facts (unit-tested with literals)."""
    if requested == "tcg":
        return AccelChoice("tcg", "tcg requested")
    ext = "vmx" if "vmx" in facts.cpu_flags else "svm" if "svm" in facts.cpu_flags else None
    vendor = {"vmx": "kvm_intel", "svm": "kvm_amd"}.get(ext or "")
    problems = []
    if not facts.dev_kvm_usable:
        problems.append("/dev/kvm missing or not openable")
    if ext is None:
        problems.append("CPU has no vmx/svm")
    elif vendor not in facts.modules:
        problems.append(f"{vendor} module not loaded")
    if "kvm_pvm" in facts.modules:
        problems.append("only paravirtual kvm_pvm is loaded (cannot boot a stock kernel)")
    if facts.libvirt_kvm is False:
        problems.append("the host's libvirt offers no kvm domains")
    if requested == "kvm":
        return AccelChoice("kvm", "kvm requested" + (f" (warning: {'; '.join(problems)})" if problems else ""))
    if problems:
        return AccelChoice("tcg", "; ".join(problems))
    return AccelChoice("kvm", f"{ext} + {vendor} + /dev/kvm" + (" + libvirt kvm" if facts.libvirt_kvm else ""))


def probe_facts() -> KvmFacts:
    """Read the facts of the machine this runs on (cpuinfo, loaded modules, /dev/kvm): the host
    agent calls it on its host."""
    flags: set[str] = set()
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("flags"):
                flags.update(line.split(":", 1)[1].split())
                break
    except OSError:
        pass
    modules = {p.name for p in Path("/sys/module").glob("kvm*")}
    try:
        fd = os.open("/dev/kvm", os.O_RDWR)
        os.close(fd)
        usable = True
    except OSError:
        usable = False
    return KvmFacts(frozenset(flags & _FLAGS), frozenset(modules), usable)
