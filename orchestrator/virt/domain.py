"""The CP guest's libvirt domain XML (pure: built from plain values, unit-tested).

The guest boots the project's kernel + initramfs directly (no disk, so live migration needs no
shared storage), has one virtio NIC on the host's guest bridge and one virtio-serial channel
through which the CP agent reports its state to the host. The channel socket has a fixed path
under /var/lib/libvirt: each host's /var/lib/libvirt is its own, so the same path names the
source's socket on the source and the destination's on the destination.
"""

from __future__ import annotations

from dataclasses import dataclass
from xml.sax.saxutils import quoteattr

CHANNEL_NAME = "org.vnfctl.cp.0"


@dataclass(frozen=True)
class CpGuestSpec:
    name: str
    domain_type: str          # "kvm" or "qemu" (TCG)
    kernel: str
    initrd: str
    cmdline: str
    memory_mib: int = 256
    vcpus: int = 1
    mac: str = "52:54:00:00:00:01"
    bridge: str = "brguest"
    channel_dir: str = "/var/lib/libvirt/qemu/channel/vnfctl"
    console_log: str = ""
    # NOTE: the host's CPUs that are not its DPs' (``agent.cpus.guest_cpus``), in the kernel's list
    # format; QEMU's vCPUs and every other thread of it (the emulator's: migration, multifd, I/O)
    # run there, never on a busy-poll DP's core. "" leaves them unpinned.
    cpuset: str = ""

    @property
    def channel_path(self) -> str:
        return f"{self.channel_dir}/{self.name}.sock"


def mac_for(name: str) -> str:
    """A stable locally-administered-style MAC for a guest name (QEMU's 52:54:00 prefix)."""
    import hashlib

    h = hashlib.sha256(name.encode()).digest()
    return "52:54:00:%02x:%02x:%02x" % (h[0], h[1], h[2])


def domain_xml(spec: CpGuestSpec) -> str:
    # NOTE: a named, conservative CPU model (not host-passthrough) keeps the guest migratable
    # between hosts with different CPUs; under TCG qemu64 is what QEMU emulates anyway.
    cpu = ("<cpu mode='custom' match='exact' check='none'><model fallback='allow'>qemu64</model></cpu>"
           if spec.domain_type == "qemu" else "<cpu mode='host-model' check='partial'/>")
    pin = f" cpuset={quoteattr(spec.cpuset)}" if spec.cpuset else ""
    tune = f"<cputune><emulatorpin cpuset={quoteattr(spec.cpuset)}/></cputune>" if spec.cpuset else ""
    log = (f"<log file={quoteattr(spec.console_log)} append='on'/>" if spec.console_log else "")
    return f"""<domain type={quoteattr(spec.domain_type)}>
  <name>{spec.name}</name>
  <memory unit='MiB'>{spec.memory_mib}</memory>
  <vcpu placement='static'{pin}>{spec.vcpus}</vcpu>
  {tune}
  <os>
    <type arch='x86_64' machine='pc'>hvm</type>
    <kernel>{spec.kernel}</kernel>
    <initrd>{spec.initrd}</initrd>
    <cmdline>{spec.cmdline}</cmdline>
  </os>
  {cpu}
  <on_poweroff>destroy</on_poweroff>
  <on_reboot>destroy</on_reboot>
  <on_crash>destroy</on_crash>
  <devices>
    <interface type='bridge'>
      <source bridge={quoteattr(spec.bridge)}/>
      <mac address={quoteattr(spec.mac)}/>
      <model type='virtio'/>
    </interface>
    <serial type='pty'>{log}<target port='0'/></serial>
    <console type='pty'><target type='serial' port='0'/></console>
    <channel type='unix'>
      <source mode='bind' path={quoteattr(spec.channel_path)}/>
      <target type='virtio' name={quoteattr(CHANNEL_NAME)}/>
    </channel>
    <memballoon model='none'/>
  </devices>
</domain>
"""


def pinned_xml(xml: str, cpuset: str) -> str:
    """A domain XML (the guest's, as libvirt gives it for a migration) with its vCPUs and emulator
    threads pinned to ``cpuset`` instead, or unpinned when it is "" (pure): the destination host's
    own CPUs for its guests, which need not be the source's."""
    import xml.etree.ElementTree as ET

    root = ET.fromstring(xml)
    vcpu = root.find("vcpu")
    if vcpu is not None:
        vcpu.attrib.pop("cpuset", None)
        if cpuset:
            vcpu.set("cpuset", cpuset)
    tune = root.find("cputune")
    if tune is not None:
        for old in tune.findall("emulatorpin") + tune.findall("vcpupin"):
            tune.remove(old)
    if cpuset:
        if tune is None:
            tune = ET.Element("cputune")
            root.insert(list(root).index(vcpu) + 1 if vcpu is not None else 0, tune)
        ET.SubElement(tune, "emulatorpin", cpuset=cpuset)
    elif tune is not None and not len(tune):
        root.remove(tune)
    return ET.tostring(root, encoding="unicode")
