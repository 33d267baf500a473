"""Secure by default on the lab's network: a move's memory stream is TLS on the fabric (QEMU's
own stream, which starts 'QEVM', never crosses it in clear), with each host's certificate from
the site CA, and site check says so per host; the control server's and the store's requests
(the controller's token, the CP's token) cross the fabric and the guest bridge only in TLS."""

import json
import os
import struct
import subprocess
import sys
import time

import psutil
import pytest

from orchestrator.controller.migration import migrate_function

pytestmark = pytest.mark.lab


def tcp_streams(pcap: bytes, opened: set | None = None) -> dict[tuple[int, int], bytes]:
    """The TCP payloads of a pcap file (Ethernet, or Linux cooked capture v1 or v2 as ``tcpdump -i
    any`` writes it; IPv4), joined per (source port, destination port) in capture order: a small
    reader for the test's eyes. ``opened`` gets the keys whose SYN the capture saw (a connection
    that began before the capture shows only its later records)."""
    magic = struct.unpack_from("<I", pcap)[0]
    endian = "<" if magic in (0xA1B2C3D4, 0xA1B23C4D) else ">"
    linktype = struct.unpack_from(endian + "I", pcap, 20)[0]
    ip_at, type_at = {113: (16, 14), 276: (20, 0)}.get(linktype, (14, 12))    # LINUX_SLL, _SLL2, Ethernet
    out: dict[tuple[int, int], list[bytes]] = {}
    off = 24
    while off + 16 <= len(pcap):
        _s, _us, incl, _orig = struct.unpack_from(endian + "IIII", pcap, off)
        frame = pcap[off + 16: off + 16 + incl]
        off += 16 + incl
        if len(frame) < ip_at + 20 or frame[type_at:type_at + 2] != b"\x08\x00":
            continue
        ihl = (frame[ip_at] & 0x0F) * 4
        if frame[ip_at + 9] != 6:
            continue
        tcp = frame[ip_at + ihl:]
        doff = (tcp[12] >> 4) * 4
        if opened is not None and tcp[13] & 0x02:
            opened.add(struct.unpack_from("!HH", tcp))
        if tcp[doff:]:
            key = struct.unpack_from("!HH", tcp)
            out.setdefault(key, []).append(tcp[doff:])
    return {key: b"".join(parts) for key, parts in out.items()}


def capture(netns: str, path, bpf: str, iface: str = "any") -> subprocess.Popen:
    """tcpdump on an interface (every one by default) of a lab namespace, writing ``path``, once it
    says it listens (on a busy machine that can take more than a second: a fixed pause missed whole
    exchanges). Immediate mode: without it the kernel hands packets over a block at a time, and a
    block not yet full when tcpdump is stopped is lost ("96 received by filter, 0 captured")."""
    import select

    p = subprocess.Popen(["ip", "netns", "exec", netns, "tcpdump", "-i", iface, "--immediate-mode", "-U",
                          "-w", str(path), bpf],
                         stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    said, deadline = b"", time.monotonic() + 20
    while b"listening on" not in said:
        assert time.monotonic() < deadline and p.poll() is None, f"tcpdump in {netns} did not start: {said!r}"
        if select.select([p.stderr], [], [], 0.5)[0]:
            said += os.read(p.stderr.fileno(), 4096)
    time.sleep(0.2)
    return p


def test_a_moves_memory_stream_is_tls_on_the_fabric(lab, ctl, deployed, tmp_path):
    pcap = tmp_path / "migration.pcap"
    tcpdump = capture(lab.topology.netns("r1"), pcap, "tcp portrange 49152-49215", "lan")
    try:
        rep = migrate_function(ctl, deployed.name, "b")          # a -> b: both behind r1's lan
        assert rep.cp_tls and rep.cp_continuity, rep.as_json()
        time.sleep(0.5)
    finally:
        tcpdump.terminate()
        tcpdump.wait(10)
    streams = tcp_streams(pcap.read_bytes())
    assert sum(len(s) for s in streams.values()) > 100_000, "the capture saw no migration stream"
    # NOTE: QEMU's stream starts with its magic and version, "QEVM" 00 00 00 03; in clear it would be the
    # first bytes a source sends, and those 8 bytes anywhere would be a clear stream (4 of them alone turn
    # up in that much ciphertext by chance). Every stream on the migration ports opens with TLS instead.
    assert all(s[:2] == b"\x16\x03" for s in streams.values()), {k: s[:8] for k, s in streams.items()}
    assert not any(b"QEVM\x00\x00\x00\x03" in s for s in streams.values()), \
        "QEMU's migration stream crossed the fabric in clear"
    migration = next(s for s in rep.steps if s.name == "migrate_cp")
    assert "encrypted" in migration.detail


def test_site_check_names_each_host_s_migration_certificate(lab):
    run = subprocess.run([sys.executable, "-m", "orchestrator.cli", "site", "check", "--lab", lab.name, "--json"],
                         capture_output=True, text=True, timeout=300)
    checks = [c for c in json.loads(run.stdout)["checks"] if c["check"] == "migration tls"]
    assert {c["scope"] for c in checks} == {"host a", "host b", "host c"}, checks
    assert all(c["ok"] and c["detail"].startswith("encrypted: CN=") for c in checks), checks


def test_the_controller_s_keys_get_no_shell_and_no_tunnel_only_their_purpose(lab, ctl):
    from orchestrator import ssh

    host = ctl.inventory.host("a")
    for target in (host.ssh, host.libvirt_ssh, ctl.inventory.router("r1").ssh):
        ok, how = ssh.restriction(target)
        assert ok, f"{target.key_file}: {how}"
    # each still does its own work: the agent answers, libvirt answers, the router reads its FIB
    assert ctl.agent("a").info.version and ctl.hypervisor("a").version()
    client = ssh.connect(ctl.inventory.router("r1").ssh)
    try:
        status, out, err = ssh.run(client, "r1", "sh -c 'echo vnfctl-$((6*7))-shell'")
        assert status == 126 and "vnfctl-42-shell" not in out and "refused" in err, (status, out, err)
        status, out, _ = ssh.run(client, "r1", "cat /proc/sys/net/ipv4/ip_forward")
        assert (status, out.strip()) == (0, "1")
    finally:
        client.close()
    # the operator's own key (the lab's) is still root's, unrestricted: the bring-up took nothing from it
    ok, how = ssh.restriction(lab.ssh_target("a"))
    assert not ok and "shell" in how
    run = subprocess.run([sys.executable, "-m", "orchestrator.cli", "site", "check", "--lab", lab.name, "--json"],
                         capture_output=True, text=True, timeout=300)
    keys = [c for c in json.loads(run.stdout)["checks"] if c["check"] in ("ssh keys", "ssh key")]
    assert {c["scope"] for c in keys} == {"host a", "host b", "host c", "router r1", "router r2"}, keys
    assert all(c["ok"] for c in keys), keys


def test_a_stub_dp_runs_as_the_dp_user_with_only_raw_packets(lab, ctl, deployed):
    import pwd

    from orchestrator.agent.protocol import DpStatus
    from tests.lab.helpers import capabilities, udp_from

    d = ctl.agent("a").request(DpStatus(dp=deployed.dp)).first
    assert d.alive and d.healthy and d.user == "vnfctl-dp", d
    assert psutil.Process(d.pid).uids().real == pwd.getpwnam("vnfctl-dp").pw_uid
    assert capabilities(d.pid) == {"CapEff": 0x2000, "CapPrm": 0x2000, "CapBnd": 0x2000}   # CAP_NET_RAW alone
    assert udp_from(lab, "client", deployed.service_ip, 7777, n=5)["got"] == 5        # and it serves


def test_the_control_server_and_the_store_are_spoken_to_only_in_tls(lab, ctl, deployed, tmp_path):
    """A policy change (controller -> control server), the CP's poll that takes it up (guest ->
    its host's bridge -> fabric -> control server) and the agent's store check (host -> store),
    captured on the control server's machine and on the CP's host: every stream opens with a TLS
    handshake, and no token, header or request line crosses in clear."""
    from orchestrator.agent.protocol import CheckStore, DpStatus
    from tests.lab.helpers import wait_until

    def served_version() -> int:
        return ctl.agent("a").request(DpStatus(dp=deployed.dp)).first.stats["policy_version"]

    assert ctl.inventory.control_url.startswith("https://") and ctl.inventory.store_url.startswith("https://")
    on_server, on_host = tmp_path / "server.pcap", tmp_path / "host.pcap"
    dumps = [capture(lab.topology.netns("server"), on_server, "tcp port 8080"),
             capture(lab.topology.netns("a"), on_host, "tcp port 8080 or tcp port 8780")]
    try:
        url = f"{ctl.inventory.control_url}/v1/policy/{deployed.name}"
        doc = ctl.http("PUT", url, {"allow": ["10.10.3.0/24"], "rate_pps": 0, "reply": "sealed"})
        assert wait_until(lambda: served_version() >= doc["version"], 10.0)
        assert ctl.agent("a").request(CheckStore()).trusted
        time.sleep(0.5)
    finally:
        for p in dumps:
            p.terminate()
            p.wait(10)
    opened: set = set()
    server, host = tcp_streams(on_server.read_bytes(), opened), tcp_streams(on_host.read_bytes(), opened)
    asked = {k: s for k, s in {**server, **host}.items() if k[1] in (8080, 8780) and k in opened}
    # NOTE: a CP's long poll may have opened its connection before the capture began: the capture
    # then holds only TLS records of it (application data), no handshake
    later = {k: s for k, s in {**server, **host}.items() if k[1] in (8080, 8780) and k not in opened}
    assert all(s[0] in (0x14, 0x15, 0x16, 0x17) and s[1:2] == b"\x03" for s in later.values()), \
        {k: s[:8] for k, s in later.items()}
    assert any(k[1] == 8780 for k in host), ("the capture saw no store request from the host", sorted(host), sorted(server))
    assert sum(1 for k in server if k[1] == 8080) >= 2, "the capture saw not both the controller and the CP"
    assert any(k[1] == 8080 for k in host), "the capture saw no CP poll leaving the host"
    assert any(k[1] == 8080 for k in asked), "the capture saw no connection to the control server begin"
    assert all(s[:2] == b"\x16\x03" for s in asked.values()), {k: s[:8] for k, s in asked.items()}
    for clear in (b"Bearer", b"Authorization", b"GET /v1", b"PUT /v1", b"HTTP/1.", b"sealed"):
        assert not any(clear in s for s in {**server, **host}.values()), f"{clear!r} crossed in clear"
