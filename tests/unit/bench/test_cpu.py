"""bench cpu: which role a thread plays, and a window's CPU per role (pure), beside a real sample."""

import time

from orchestrator.bench.cpu import CpuSampler, render, role_of, shares


def test_each_thread_gets_its_role_from_its_process_and_its_name():
    qemu = ["/usr/bin/qemu-system-x86_64", "-name", "guest=fa-cp"]
    assert role_of("qemu-system-x86", qemu, "live_migration") == "qemu_migration"
    assert role_of("qemu-system-x86", qemu, "multifdsend_0") == "qemu_migration"
    assert role_of("qemu-system-x86", qemu, "CPU 0/TCG") == "qemu_vcpu"
    assert role_of("qemu-system-x86", qemu, "CPU 1/KVM") == "qemu_vcpu"
    assert role_of("qemu-system-x86", qemu, "qemu-system-x86") == "qemu_main"
    assert role_of("python3", ["/usr/bin/python3", "/var/lib/vnfctl/agent/programs/dp@1/dp.py", "-l", "1"], "x") == "dp"
    assert role_of("dp", ["/var/lib/vnfctl/agent/programs/x/dp", "-c", "0x2"], "dp") == "dp"
    assert role_of("probe_sender", ["/tmp/probe_sender", "--target", "10.40.0.10"], "probe_sender") == "probe"
    watch = ["/v/python", "-m", "orchestrator.cli", "watch", "--interval", "5"]
    assert role_of("python", watch, "python") == "watcher"
    assert role_of("bgpd", ["/usr/lib/frr/bgpd", "-d"], "bgpd") == "routers"
    assert role_of("python", ["/v/python", "-m", "orchestrator.agent.daemon"], "python") == "lab_services"
    assert role_of("bash", ["bash"], "bash") is None


def test_a_window_counts_each_thread_s_growth_new_threads_from_zero_and_the_rest_as_other():
    before = {(1, 1): ("dp", 10.0), (2, 2): ("qemu_migration", 3.0)}
    after = {(1, 1): ("dp", 10.9), (2, 2): ("qemu_migration", 3.5), (3, 3): ("qemu_main", 0.2)}
    got = shares(before, after, machine_s=2.0)
    assert got["dp"] == 0.9 and got["qemu_migration"] == 0.5 and got["qemu_main"] == 0.2
    assert got["other"] == 0.4 and got["probe"] == 0.0
    assert shares(before, after, machine_s=1.0)["other"] == 0.0          # never below zero
    assert render({"pct": {"dp": 90, "qemu_main": 20, "probe": 0}}) == "dp 90%, qemu_main 20%"


def test_a_real_sample_sees_this_process_busy_as_the_controller():
    with CpuSampler(interval_s=0.02) as cpu:
        a = cpu.snap()
        end = time.monotonic() + 0.5
        while time.monotonic() < end:
            pass
        b = cpu.snap()
    w = CpuSampler.between(a, b)
    # NOTE: no upper bound that a loaded machine (a lab running beside) could break: a snap
    # reads every process's /proc files, and the window is what the snaps measured.
    assert 0.4 <= w["window_s"] <= 30.0
    assert w["cpu_s"]["controller"] >= 0.2, w
