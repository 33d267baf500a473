"""The CP guest's domain XML follows the accelerator choice and stays migratable."""

import xml.etree.ElementTree as ET

import dataclasses

from orchestrator.virt.domain import CHANNEL_NAME, CpGuestSpec, domain_xml, mac_for, pinned_xml


def spec(domain_type="qemu"):
    return CpGuestSpec(name="fn1-cp", domain_type=domain_type, kernel="/k", initrd="/i",
                       cmdline="console=ttyS0 vnfctl.ip=10.20.0.5/24", memory_mib=192, vcpus=2,
                       mac=mac_for("fn1-cp"))


def test_domain_type_follows_accel():
    assert ET.fromstring(domain_xml(spec("qemu"))).get("type") == "qemu"
    assert ET.fromstring(domain_xml(spec("kvm"))).get("type") == "kvm"


def test_devices_nic_channel_and_no_disk():
    root = ET.fromstring(domain_xml(spec()))
    assert root.find("devices/disk") is None
    assert root.find("devices/interface/source").get("bridge") == "brguest"
    ch = root.find("devices/channel")
    assert ch.find("target").get("name") == CHANNEL_NAME
    assert ch.find("source").get("path").endswith("/fn1-cp.sock")
    assert root.find("memory").text == "192" and root.find("vcpu").text == "2"
    assert root.find("os/cmdline").text.startswith("console=ttyS0")


def test_mac_is_stable_and_qemu_prefixed():
    assert mac_for("x") == mac_for("x") != mac_for("y")
    assert mac_for("x").startswith("52:54:00:")


def test_postcopy_switch_decision():
    from orchestrator.virt.libvirt_host import MigrationOptions, migration_flags, should_switch_to_postcopy
    import libvirt

    assert not should_switch_to_postcopy({"memory_iteration": 1, "memory_remaining": 10})
    assert should_switch_to_postcopy({"memory_iteration": 2, "memory_remaining": 10})
    assert not should_switch_to_postcopy({"memory_iteration": 5, "memory_remaining": 0})
    assert should_switch_to_postcopy({"memory_iteration": 1, "memory_remaining": 10}, after_passes=0)
    assert not should_switch_to_postcopy({"memory_iteration": 2, "memory_remaining": 10}, after_passes=2)
    flags = migration_flags(MigrationOptions(auto_converge=True, postcopy=True))
    assert flags & libvirt.VIR_MIGRATE_LIVE and flags & libvirt.VIR_MIGRATE_POSTCOPY
    assert flags & libvirt.VIR_MIGRATE_AUTO_CONVERGE
    assert not migration_flags(MigrationOptions()) & libvirt.VIR_MIGRATE_POSTCOPY


def test_tcg_guests_are_copied_paused_unless_insisted_on():
    import libvirt

    from orchestrator.virt.libvirt_host import MigrationOptions, copy_paused, migration_flags

    assert "copied paused" in copy_paused("qemu", {})
    assert copy_paused("qemu", {"VNFCTL_ALLOW_TCG_LIVE": "1"}) is None
    assert copy_paused("kvm", {}) is None
    assert migration_flags(MigrationOptions()) & libvirt.VIR_MIGRATE_LIVE
    assert not migration_flags(MigrationOptions(), live=False) & libvirt.VIR_MIGRATE_LIVE


def test_a_guest_s_vcpus_and_every_other_qemu_thread_are_pinned_to_the_host_s_guest_cpus():
    root = ET.fromstring(domain_xml(dataclasses.replace(spec(), cpuset="0-3,6")))
    assert root.find("vcpu").get("cpuset") == "0-3,6"
    assert root.find("cputune/emulatorpin").get("cpuset") == "0-3,6"
    unpinned = ET.fromstring(domain_xml(spec()))
    assert unpinned.find("vcpu").get("cpuset") is None and unpinned.find("cputune") is None


def test_the_destination_s_xml_carries_the_destination_s_cpus_or_none():
    xml = domain_xml(dataclasses.replace(spec(), cpuset="0"))
    there = ET.fromstring(pinned_xml(xml, "2-5"))
    assert there.find("vcpu").get("cpuset") == "2-5"
    assert [e.get("cpuset") for e in there.findall("cputune/emulatorpin")] == ["2-5"]
    assert there.find("os/cmdline").text == ET.fromstring(xml).find("os/cmdline").text
    free = ET.fromstring(pinned_xml(xml, ""))
    assert free.find("vcpu").get("cpuset") is None and free.find("cputune") is None
    # a guest started unpinned gets pinned on a destination that has CPUs for it
    assert ET.fromstring(pinned_xml(domain_xml(spec()), "1")).find("cputune/emulatorpin").get("cpuset") == "1"
