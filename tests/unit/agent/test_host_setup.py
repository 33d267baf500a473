"""What the host bring-up decides, from literal inputs: libvirt's files, firewall openings, CPUs,
and the judgement of a host's network against what the site wants."""

import pytest

from orchestrator.agent import cpus, firewall, hostnet, libvirtconf

DEBIAN_QEMU_CONF = """# Master configuration file for the QEMU driver.
#migration_address = "0.0.0.0"
migration_port_min = 50000
#user = "qemu"
cgroup_controllers = [ "cpu",
    "memory" ]
vnc_listen = "0.0.0.0"
"""


def test_the_managed_block_wins_and_the_operators_lines_for_its_keys_are_commented_out():
    settings = libvirtconf.qemu_settings("192.0.2.11", (49152, 49215), container=True, no_init=False)
    text = libvirtconf.with_settings(DEBIAN_QEMU_CONF, settings)
    assert text.startswith(libvirtconf.BEGIN)
    assert libvirtconf.effective(text, "migration_address") == "192.0.2.11"
    assert libvirtconf.effective(text, "migration_port_min") == "49152"      # the first definition wins
    assert libvirtconf.effective(text, "cgroup_controllers") == "[ ]"
    assert '#vnfctl# cgroup_controllers = [ "cpu",' in text and '#vnfctl#     "memory" ]' in text
    assert 'vnc_listen = "0.0.0.0"' in text and "#user = \"qemu\"" in text      # the rest untouched
    assert libvirtconf.with_settings(text, settings) == text                      # idempotent
    # settings no longer wanted hand the operator's lines back
    fewer = libvirtconf.qemu_settings("192.0.2.11", (49152, 49215), container=False, no_init=False)
    again = libvirtconf.with_settings(text, fewer)
    rest = again.split(libvirtconf.END)[1].splitlines()
    assert 'cgroup_controllers = [ "cpu",' in rest and '    "memory" ]' in rest
    assert "#vnfctl# migration_port_min = 50000" in rest


def test_a_host_without_an_init_system_runs_qemu_itself_and_logs_to_files():
    s = libvirtconf.qemu_settings("10.10.1.11", (49152, 49215), container=False, no_init=True)
    assert s["stdio_handler"] == "file" and s["security_driver"] == "none" and s["user"] == "root"
    d = libvirtconf.libvirtd_settings("u", no_init=True)
    assert d["host_uuid"] == "u" and d["log_outputs"].startswith("3:file:")
    assert libvirtconf.libvirtd_settings("u", no_init=False) == {"host_uuid": "u"}
    with pytest.raises(ValueError):
        libvirtconf.render_value('a"b')


def test_host_uuids_differ_between_hosts_of_one_machine_and_are_stable():
    a, b = libvirtconf.host_uuid("m1", "a"), libvirtconf.host_uuid("m1", "b")
    assert a != b and a == libvirtconf.host_uuid("m1\n", "a") and a != libvirtconf.host_uuid("m2", "a")


def test_read_only_cgroups_mean_a_container():
    host = ("31 23 0:28 / /sys/fs/cgroup rw,relatime - tmpfs tmpfs rw,mode=755\n"
            "32 31 0:29 / /sys/fs/cgroup/cpu rw,relatime - cgroup cgroup rw,cpu\n")
    nspawn = host.replace("/sys/fs/cgroup/cpu rw,", "/sys/fs/cgroup/cpu ro,")
    assert not libvirtconf.cgroups_read_only(host)
    assert libvirtconf.cgroups_read_only(nspawn)
    assert libvirtconf.cgroups_read_only("22 1 0:5 / /proc rw - proc proc rw\n")        # no cgroups at all
    unified = "40 23 0:40 / /sys/fs/cgroup rw,nosuid - cgroup2 cgroup2 rw\n"
    assert not libvirtconf.cgroups_read_only(unified)


def test_the_root_of_a_cgroup_namespace_of_its_own_is_a_docker_container():
    assert libvirtconf.at_cgroup_namespace_root("0::/\n")                        # docker run, cgroupns private
    assert libvirtconf.at_cgroup_namespace_root("1:cpu:/\n0::/\n")
    assert not libvirtconf.at_cgroup_namespace_root("0::/system.slice/vnfctl-agent.service\n")   # a host's service
    assert not libvirtconf.at_cgroup_namespace_root("4:memory:/\n")              # v1 only: nothing said


def test_cpu_lists_and_dp_core_agreement():
    assert cpus.parse_cpu_list("0-3,8,10-11\n") == [0, 1, 2, 3, 8, 10, 11]
    assert cpus.parse_cpu_list("") == []
    assert cpus.format_cpu_list([0, 1, 2, 5, 7, 8]) == "0-2,5,7-8"
    assert cpus.dp_core_problem([8, 9], list(range(16)), []) is None
    assert cpus.dp_core_problem([8, 9], list(range(16)), [8, 9]) is None
    assert "do not exist here" in cpus.dp_core_problem([16], list(range(16)), [])
    assert "isolated" in cpus.dp_core_problem([8], list(range(16)), [8, 9])
    with pytest.raises(ValueError):
        cpus.parse_cpu_list("3-1")


def test_guests_get_the_cpus_that_are_neither_a_dp_core_nor_isolated():
    assert cpus.guest_cpus(list(range(16)), [], [8, 9]) == [0, 1, 2, 3, 4, 5, 6, 7, 10, 11, 12, 13, 14, 15]
    assert cpus.guest_cpus(list(range(16)), list(range(8, 16)), list(range(8, 16))) == list(range(8))
    assert cpus.guest_cpus([0, 1], [], [1]) == [0]
    assert cpus.guest_cpus([0, 1], [], [0, 1]) == []        # the DPs take every CPU: guests unpinned


def chain(name, hook, policy="accept", family="inet", table="filter"):
    return {"chain": {"family": family, "table": table, "name": name, "type": "filter", "hook": hook,
                      "prio": 0, "policy": policy}}


def rule(chain_, expr, comment=None, family="inet", table="filter"):
    r = {"family": family, "table": table, "chain": chain_, "expr": expr}
    if comment:
        r["comment"] = comment
    return {"rule": r}


def test_only_chains_that_drop_get_openings_and_only_once():
    openings = firewall.Openings(22, (49152, 49215), "10.20.0.0/24")
    open_host = {"nftables": [chain("input", "input"), chain("forward", "forward")]}
    assert firewall.missing(open_host, openings) == []
    guarded = {"nftables": [chain("input", "input", "drop"), chain("forward", "forward"),
                            chain("output", "output", "drop")]}
    got = firewall.missing(guarded, openings)
    assert [(c, name) for _f, _t, c, name, _r in got] == [("input", "ssh"), ("input", "migration")]
    assert got[1][4] == "tcp dport 49152-49215 accept"
    # an accepting policy with a final unconditional drop guards too; the forward chain lets guests out
    tail_drop = {"nftables": [chain("forward", "forward"), rule("forward", [{"counter": None}, {"drop": None}])]}
    assert [name for *_x, name, _r in firewall.missing(tail_drop, openings)] == ["guests out", "guests back"]
    done = {"nftables": guarded["nftables"] + [rule("input", [], "vnfctl: ssh"), rule("input", [], "vnfctl: migration")]}
    assert firewall.missing(done, openings) == []


HOST_OK = {"guest_bridge": {"present": True, "mac": "02:76:6e:00:00:01", "up": True, "addresses": ["10.20.0.1/24"]},
           "nat": True,
           "sysctls": {"net.ipv4.ip_forward": "1", "net.ipv4.conf.data0.arp_ignore": "8",
                       "net.ipv4.conf.data0.forwarding": "0", "net.ipv6.conf.data0.disable_ipv6": "1"},
           "data_interface": {"name": "data0", "present": True, "operstate": "up", "merging_offloads": []}}


def test_a_host_network_is_judged_against_the_site_with_a_fix_per_problem():
    want = hostnet.HostNetwork("10.20.0.0/24", "data0")
    assert hostnet.prereq_problems(HOST_OK, want) == []
    broken = {**HOST_OK, "nat": False,
              "guest_bridge": {**HOST_OK["guest_bridge"], "mac": "02:00:00:00:00:99", "addresses": []},
              "sysctls": {**HOST_OK["sysctls"], "net.ipv4.ip_forward": "0"},
              "data_interface": {**HOST_OK["data_interface"], "operstate": "down", "merging_offloads": ["rx-gro"]}}
    problems = [p for p, _fix in hostnet.prereq_problems(broken, want)]
    assert problems == ["guest bridge MAC 02:00:00:00:00:99, not the site's 02:76:6e:00:00:01",
                        "guest bridge has no address, not the guest gateway 10.20.0.1/24",
                        "no NAT for the guest network 10.20.0.0/24",
                        "net.ipv4.ip_forward is 0, not 1",
                        "data interface data0 is down",
                        "data interface data0 has rx-gro on"]
    assert all(fix for _p, fix in hostnet.prereq_problems(broken, want))


def test_sysctl_paths_keep_dotted_interface_names_whole():
    assert str(hostnet._sysctl_path("net.ipv4.conf.eth0.100.arp_ignore")) == "/proc/sys/net/ipv4/conf/eth0.100/arp_ignore"
    assert str(hostnet._sysctl_path("net.ipv4.ip_forward")) == "/proc/sys/net/ipv4/ip_forward"
    assert "masquerade" in hostnet.HostNetwork("10.20.0.0/24", "data0").nat_ruleset()


def entry(**kw):
    from orchestrator.controller.inventory import HostEntry
    from orchestrator.ssh import SshTarget
    from pathlib import Path

    base = dict(name="a", router="r1", libvirt_uri="qemu+ssh://root@192.0.2.11/system",
                ssh=SshTarget("a", "192.0.2.11", Path("/k"), Path("/kh")), migration_address="192.0.2.11",
                dp_cores=(8, 9), data_interface="data0")
    return HostEntry(**{**base, **kw})


SETUP_OK = {"guest_network": "10.20.0.0/24", "guest_gateway_mac": "02:76:6e:00:00:01", "migration_address": "192.0.2.11",
            "migration_ports": [49152, 49215], "network": HOST_OK, "channel_dir": True,
            "libvirt": {"migration_address": "192.0.2.11", "migration_port_min": "49152", "migration_port_max": "49215",
                        "host_uuid": "u"},
            "cpus": {"online": list(range(16)), "isolated": [8, 9], "dp_cores": [8, 9], "problem": None},
            "firewall": {"closed": []},
            "migration_tls": {"dir": "/etc/vnfctl/pki/migrate", "subject": "CN=a", "addresses": ["192.0.2.11"],
                              "not_after": "2029-01-01T00:00:00+00:00"},
            "hostname": {"name": "a", "seconds": 0.002, "addresses": ["192.0.2.11"]}}


def test_site_check_judges_what_the_bring_up_made_against_the_inventory():
    from orchestrator.agent.protocol import CoreTable, SetupFacts
    from orchestrator.controller.sitecheck import judge_cores, judge_setup

    setup = SetupFacts.from_json(SETUP_OK)
    assert all(ok for _c, ok, _d in judge_setup(setup, entry(), "10.20.0.0/24"))
    assert not any(ok for _c, ok, _d in judge_setup(None, entry(), "10.20.0.0/24"))      # an older agent
    moved = judge_setup(setup, entry(migration_address="192.0.2.99"), "10.30.0.0/24")
    verdicts = {c: (ok, d) for c, ok, d in moved}
    assert not verdicts["libvirt setup"][0] and "--migration-address 192.0.2.99" in verdicts["libvirt setup"][1]
    assert not verdicts["guest network"][0] and "--guest-network 10.30.0.0/24" in verdicts["guest network"][1]
    closed = SetupFacts.from_json({**SETUP_OK, "firewall": {"closed": ["inet filter input: migration"]}})
    assert [d for c, ok, d in judge_setup(closed, entry(), "10.20.0.0/24") if c == "firewall" and not ok]
    cores = CoreTable(offered=[8, 9], free=[8, 9], used={}, free_mask="0x300")
    assert judge_cores(cores, setup, entry())[0]
    ok, detail = judge_cores(cores, setup, entry(dp_cores=(8, 9, 10)))
    assert not ok and "[8, 9, 10]" in detail and "[8, 9]" in detail
    isolated = SetupFacts.from_json({**SETUP_OK, "cpus": {**SETUP_OK["cpus"], "problem": "CPUs 10 are isolated ..."}})
    assert not judge_cores(cores, isolated, entry())[0]
    # migration: encrypted unless the site says otherwise, and then named plain
    plain = SetupFacts.from_json({k: v for k, v in SETUP_OK.items() if k != "migration_tls"})
    tls = {c: (ok, d) for c, ok, d in judge_setup(plain, entry(), "10.20.0.0/24")}["migration tls"]
    assert not tls[0] and "--migration-tls-dir DIR" in tls[1] and "vnfctl site ca issue a --address 192.0.2.11" in tls[1]
    clear = {c: (ok, d) for c, ok, d in judge_setup(plain, entry(), "10.20.0.0/24", tls_wanted=False)}
    assert clear["migration tls"][0] and "PLAIN TCP" in clear["migration tls"][1]
    expired = SetupFacts.from_json({**SETUP_OK, "migration_tls": {"dir": "/x", "problem": "its certificate expired"}})
    assert not {c: ok for c, ok, _d in judge_setup(expired, entry(), "10.20.0.0/24")}["migration tls"]


def test_site_check_names_a_host_name_that_resolves_slowly():
    from orchestrator.agent.protocol import NameFacts, SetupFacts
    from orchestrator.controller.sitecheck import judge_name, judge_setup

    assert judge_name(NameFacts(name="a", seconds=0.002, addresses=("192.0.2.11",))) == \
        ("host name", True, "a resolves to 192.0.2.11 in 2 ms")
    ok, detail = judge_name(NameFacts(name="a", seconds=0.01, error="Name or service not known"))[1:]
    assert ok and "libvirt uses it as is" in detail                 # a quick "no such name" costs nothing
    for slow in (NameFacts(name="a", seconds=5.2, addresses=("192.0.2.11",)),
                 NameFacts(name="a", seconds=5.2, error="Temporary failure in name resolution"),
                 NameFacts(name="a", seconds=3.0, finished=False)):
        ok, detail = judge_name(slow)[1:]
        assert not ok and "127.0.1.1 a" in detail and "every migration step" in detail, detail
    assert not judge_name(None)[1]                                  # an older agent
    older = SetupFacts.from_json({k: v for k, v in SETUP_OK.items() if k != "hostname"})
    assert not {c: ok for c, ok, _d in judge_setup(older, entry(), "10.20.0.0/24")}["host name"]


def test_the_agent_times_its_own_name_and_does_not_wait_on_a_stuck_lookup(monkeypatch):
    import socket
    import threading

    from orchestrator.agent import hostname

    here = hostname.lookup("localhost")
    assert here.finished and here.error is None and "127.0.0.1" in here.addresses and here.seconds < 1
    assert hostname.lookup("no-such-host.invalid").error                     # an answer, not an exception
    stuck = threading.Event()
    monkeypatch.setattr(hostname.socket, "getaddrinfo", lambda *a, **kw: stuck.wait(10) and [])
    try:
        slow = hostname.lookup("a", wait_s=0.2)
        assert not slow.finished and 0.2 <= slow.seconds < 1 and slow.addresses == ()
    finally:
        stuck.set()
    assert socket.gethostname() == hostname.lookup().name
