"""The lab is real: namespaces that route, libvirtd and sshd per host, verified host keys."""

import json
import subprocess
import sys

import pytest

from orchestrator.errors import SshError
from orchestrator.lab import netlink
from orchestrator.ssh import SshTarget, connect
from orchestrator.virt.accel import choose_accel, probe_facts

pytestmark = pytest.mark.lab


def vnfctl(*args, timeout=600):
    return subprocess.run([sys.executable, "-m", "orchestrator.cli", *args], capture_output=True, text=True,
                          timeout=timeout)


def test_status_shows_every_host_with_daemons_and_verified_ssh(lab):
    doc = json.loads(vnfctl("lab", "status", "--lab", lab.name, "--json").stdout)
    assert doc["up"] is True
    assert [h["name"] for h in doc["hosts"]] == ["a", "b", "c"]
    for h in doc["hosts"]:
        assert h["netns_up"] and h["libvirtd"] and h["sshd"], h
        assert h["ssh"] == "ok", h
        assert h["guests"] == []
    routes = {r["name"]: r["routes"] for r in doc["routers"]}
    assert "10.10.2.0/24 via 10.10.0.2" in routes["r1"]
    assert "10.10.1.0/24 via 10.10.0.1" in routes["r2"]


def test_up_again_changes_nothing(lab):
    assert lab.up() is False


def test_auto_accel_matches_what_this_machine_can_run(lab):
    facts = probe_facts()
    expected = choose_accel("auto", facts)
    assert lab.accel("a") == expected
    if "kvm_pvm" in facts.modules or not ({"vmx", "svm"} & facts.cpu_flags):
        assert expected.accel == "tcg" and expected.domain_type == "qemu"


def ping(ns, address):
    return subprocess.run(["ip", "netns", "exec", ns, "ping", "-c", "1", "-W", "2", address],
                          capture_output=True).returncode == 0


def test_routers_forward_between_the_two_sides(lab):
    t = lab.topology
    assert ping(t.netns("client"), str(t.endpoint("server").address))
    assert ping(t.netns("a"), str(t.host("c").address))
    assert ping(t.netns("mgmt"), str(t.host("c").address))


def test_lab_addresses_exist_only_inside_lab_namespaces(lab):
    import ipaddress
    from pyroute2 import IPRoute

    with IPRoute() as ipr:
        root_addrs = {ipaddress.ip_address(a.get("address")) for a in ipr.get_addr(family=2)}
    lab_nets = [h.address for h in lab.topology.hosts]
    assert not root_addrs & set(lab_nets)


def test_dp_data_interface_has_no_kernel_ip(lab):
    from pyroute2 import NetNS

    with NetNS(lab.topology.netns("a")) as ns:
        idx = ns.link_lookup(ifname="data0")[0]
        assert ns.get_addr(index=idx, family=2) == ()  or list(ns.get_addr(index=idx, family=2)) == []
        assert ns.get_links(idx)[0].get("operstate") in ("UP", "UNKNOWN")
    assert "data0" in netlink.link_names(lab.topology.netns("b"))


def test_ssh_refuses_a_host_whose_key_is_not_known(lab, tmp_path):
    good = lab.ssh_target("b")
    client = connect(good)
    client.close()
    other = tmp_path / "known_hosts"
    a_key = lab.known_hosts.read_text().splitlines()[0].split(None, 1)[1]
    other.write_text(f"{good.address} {a_key}\n")   # b's address with a's key
    with pytest.raises(SshError, match="host key"):
        connect(SshTarget("b", good.address, good.key_file, other))
    empty = tmp_path / "empty"
    empty.write_text("")
    with pytest.raises(SshError, match="b"):
        connect(SshTarget("b", good.address, good.key_file, empty))


def test_selftest_migrates_a_b_c_with_continuity(lab):
    run = vnfctl("lab", "selftest", "--lab", lab.name, "--json")
    assert run.returncode == 0, run.stderr
    hops = json.loads(run.stdout)["hops"]
    assert [(h["src"], h["dst"]) for h in hops] == [("a", "b"), ("b", "c")]
    for h in hops:
        assert h["continuity"] is True, h
        assert h["total_ms"] > 0
        assert h["downtime_ms"] is not None and h["downtime_ms"] >= 0
    assert lab.status()["hosts"][2]["guests"] == []  # the selftest guest was removed
