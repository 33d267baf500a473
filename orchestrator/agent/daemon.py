"""The host agent: the seed's migration control unit and core allocation unit, one per host.

A long-lived daemon (DPs and CP relays must outlive any one controller connection) listening on
a root-only unix socket; the controller reaches it over SSH through the ``vnfctl-agent``
subsystem (see ``bridge.py``). It runs only the operations in ``Agent.OPS``. Its configuration
(``/etc/vnfctl/agent.yaml``) is written by the host bring-up (``bringup.py``).
"""

from __future__ import annotations

import argparse
import hashlib
import os
import shutil
import signal
import socketserver
import stat
import sys
import threading
import time
from dataclasses import dataclass
from pathlib import Path

import psutil
import yaml

from orchestrator.agent import dp as dpproc
from orchestrator.agent import paths, telemetry
from orchestrator.agent.cores import cores_to_mask, needs_core_alone
from orchestrator.agent.dpnet import DpInterfaces, LinuxDpInterfaces, interface_name
from orchestrator.agent.launch import dp_argv, dp_env, run_dir, telemetry_socket
from orchestrator.agent import protocol as proto
from orchestrator.agent.protocol import (MAX_LINE, OPS, PROTOCOL_VERSION, AgentError, ProtocolError, encode,
                                         parse_request, reply_error, reply_ok)
from orchestrator.agent.dpuser import DpUser, caps_for
from orchestrator.agent.relay import CpRelay
from orchestrator.agent.tables import HostTables
from orchestrator.control.policy import DP_AREA, PolicyRefused, check_table
from orchestrator.errors import VnfctlError

CHANNEL_DIR = str(paths.CHANNEL_DIR)


def agent_version() -> str:
    try:
        from importlib.metadata import version

        return version("vnfctl")
    except Exception:  # noqa: BLE001 - not installed as a distribution: say so
        return "unknown"


@dataclass(frozen=True)
class AgentConfig:
    host: str
    state_dir: Path
    dp_cores: list[int]
    data_interface: str
    store_url: str
    trusted_store_keys: tuple[str, ...] = ()
    image_dir: Path = paths.IMAGE_DIR
    shm_dir: Path = Path("/dev/shm")
    dp_core_share: int = 1      # DPs that sleep when idle per core (1: every DP has its cores alone)
    # The host's own settings (the bring-up's), reported to site check.
    guest_network: str = "10.20.0.0/24"
    guest_gateway_mac: str = "02:76:6e:00:00:01"
    migration_address: str = ""
    migration_ports: tuple[int, int] = (49152, 49215)
    ssh_port: int = 22
    migration_tls: bool = True
    dp_user: str = ""           # the user DPs run as ('' or root: root; see dpuser.py)
    store_ca: str = ""          # the site CA's certificate: verifies an https store ('': the system's CAs)

    @classmethod
    def load(cls, path: Path) -> "AgentConfig":
        doc = yaml.safe_load(path.read_text())
        ports = doc.get("migration_ports") or (49152, 49215)
        return cls(doc["host"], Path(doc.get("state_dir", paths.STATE_DIR)), [int(c) for c in doc["dp_cores"]],
                   doc["data_interface"], doc["store_url"], tuple(doc.get("trusted_store_keys") or ()),
                   Path(doc.get("image_dir", paths.IMAGE_DIR)), Path(doc.get("shm_dir", "/dev/shm")),
                   int(doc.get("dp_core_share", 1)), str(doc.get("guest_network", "10.20.0.0/24")),
                   str(doc.get("guest_gateway_mac", "02:76:6e:00:00:01")), str(doc.get("migration_address", "")),
                   (int(ports[0]), int(ports[1])), int(doc.get("ssh_port", 22)),
                   bool(doc.get("migration_tls", True)), str(doc.get("dp_user", "")), str(doc.get("store_ca") or ""))


def dp_mac(host: str, dp: str) -> str:
    """The MAC a DP answers with: locally administered, stable per (host, DP), and never the
    data interface's own, so the host's kernel ignores the DP's traffic (it is "other host")
    and a moved function shows a new MAC in its neighbours' ARP caches."""
    h = hashlib.sha256(f"{host}/{dp}".encode()).digest()
    return "02:" + ":".join(f"{b:02x}" for b in h[:5])


class Agent:
    """The operations of ``protocol.OPS``, one method each: ``op_NAME(request) -> reply``, typed as
    the declaration says; ``handle`` checks the arguments against it before a method runs."""

    OPS = tuple(OPS)

    def __init__(self, config: AgentConfig, dpnet: DpInterfaces | None = None):
        from orchestrator.store.signing import parse_public_key

        self.config = config
        self.dpnet = dpnet or LinuxDpInterfaces()
        # The store keys this host trusts: a manifest not signed by one of them is never used.
        self.trusted = [parse_public_key(k) for k in config.trusted_store_keys]
        self.lock = threading.RLock()
        self.tables = HostTables.load(config.state_dir / "tables.json", config.dp_cores, config.dp_core_share)
        self.relays: dict[str, CpRelay] = {}
        self.writers: dict[str, object] = {}
        for vm, rec in self.tables.vm_cp.items():
            self._start_relay(vm, rec["channel"])
        self._remove_unrecorded_interfaces()

    def _remove_unrecorded_interfaces(self) -> None:
        """A DP interface no DP record names is what an agent that died starting a DP left."""
        recorded = {rec.get("dp_iface") for rec in self.tables.cp_dp.values()}
        try:
            for name in self.dpnet.names():
                if name not in recorded:
                    self.dpnet.remove(name)
        except Exception as exc:  # noqa: BLE001 - a start-up tidy-up must not keep the agent down
            print(f"vnfctl-agent: could not tidy DP interfaces: {exc}", file=sys.stderr)

    # -- dispatch ---------------------------------------------------------------------------
    def handle(self, doc: dict) -> dict:
        """One request as parse_request gave it: its arguments as the operation's request type
        (ProtocolError naming the field when they do not fit), the operation run, its typed
        reply as JSON."""
        op = OPS.get(doc["op"])
        if op is None or op.name not in self.OPS:
            raise ProtocolError(f"unknown operation {doc['op']!r}"[:120])
        req = op.request.from_json(doc.get("args", {}))
        reply = getattr(self, f"op_{op.name}")(req)
        if not isinstance(reply, op.reply):
            raise AgentError(f"op {op.name}: answered with {type(reply).__name__}, not {op.reply.__name__}")
        return reply.to_json()

    # -- operations -------------------------------------------------------------------------
    def op_hello(self, req: proto.Hello) -> proto.HelloReply:
        return proto.HelloReply(proto=PROTOCOL_VERSION, host=self.config.host, pid=os.getpid(), ops=self.OPS,
                                version=agent_version())

    def op_host_facts(self, req: proto.HostFacts) -> proto.HostFactsReply:
        """What the controller decides about this host from: the accelerator facts read here (never
        the controller's own), the DP's interface, the machine."""
        from orchestrator.agent import cpus
        from orchestrator.virt.accel import probe_facts

        iface = Path("/sys/class/net") / self.config.data_interface
        try:
            operstate = (iface / "operstate").read_text().strip()
        except OSError:
            operstate = None
        return proto.HostFactsReply(
            host=self.config.host, accel_facts=proto.AccelFacts.from_json(probe_facts().to_dict()),
            kernel=os.uname().release, cpus=len(os.sched_getaffinity(0)), agent_version=agent_version(),
            data_interface=proto.InterfaceFacts(name=self.config.data_interface, present=iface.exists(),
                                                operstate=operstate),
            setup=self._setup_facts() if req.setup else None,
            guest_cpus=cpus.guest_cpus(*cpus.read_cpus(), list(self.config.dp_cores)))

    def _setup_facts(self) -> proto.SetupFacts:
        """What the host bring-up made, as it is now (read only): the host's network, libvirt's
        settings in force, the CPUs, the firewall's openings. Site check judges it."""
        from orchestrator.agent import cpus, firewall, hostnet, libvirtconf

        c = self.config
        want = hostnet.HostNetwork(c.guest_network, c.data_interface, hostnet.GUEST_BRIDGE, c.guest_gateway_mac)
        try:
            qemu = libvirtconf.QEMU_CONF.read_text()
            lv = {k: libvirtconf.effective(qemu, k) for k in
                  ("migration_address", "migration_port_min", "migration_port_max")}
            lv["host_uuid"] = libvirtconf.effective(libvirtconf.LIBVIRTD_CONF.read_text(), "host_uuid")
            libvirt = proto.LibvirtFacts(**lv)
        except OSError as exc:
            libvirt = proto.LibvirtFacts(error=f"{exc.filename}: {exc.strerror}")
        online, isolated = cpus.read_cpus()
        cpu_facts = proto.CpuFacts(online=online, isolated=isolated, dp_cores=list(c.dp_cores),
                                   problem=cpus.dp_core_problem(list(c.dp_cores), online, isolated))
        try:
            fw = proto.FirewallFacts(closed=firewall.closed(firewall.Openings(c.ssh_port, c.migration_ports,
                                                                              c.guest_network)))
        except VnfctlError as exc:
            fw = proto.FirewallFacts(error=str(exc))
        from orchestrator.agent import hostname, migration_tls

        tls = migration_tls.describe(address=c.migration_address or None) if c.migration_tls else None
        return proto.SetupFacts(guest_network=c.guest_network, guest_gateway_mac=c.guest_gateway_mac,
                                migration_address=c.migration_address, migration_ports=c.migration_ports,
                                network=hostnet.read_state(want), channel_dir=paths.CHANNEL_DIR.is_dir(),
                                libvirt=libvirt, cpus=cpu_facts, firewall=fw, migration_tls=tls,
                                hostname=hostname.lookup())

    def op_cores(self, req: proto.Cores) -> proto.CoreTable:
        with self.lock:
            return proto.CoreTable.from_json(self.tables.cores.as_dict())

    def op_release_cores(self, req: proto.ReleaseCores) -> proto.ReleaseCoresReply:
        """Free the cores held for a DP that has no record here any more (an orphaned reservation);
        a DP with a record is stopped with stop_dp instead."""
        dp = req.dp
        with self.lock:
            if any(rec["dp"] == dp for rec in self.tables.cp_dp.values()):
                raise AgentError(f"DP {dp} is recorded on host {self.config.host}: stop it (stop_dp) instead")
            freed = self.tables.cores.release(dp)
            self.tables.save()
            return proto.ReleaseCoresReply(dp=dp, cores_freed=freed)

    def op_tables(self, req: proto.Tables) -> proto.TablesReply:
        with self.lock:
            return proto.TablesReply.from_json(self.tables.as_dict())

    def op_load(self, req: proto.Load) -> proto.LoadReply:
        per_core = psutil.cpu_percent(interval=req.interval_s, percpu=True)
        vm = psutil.virtual_memory()
        return proto.LoadReply(host=self.config.host, cpu_percent=per_core, loadavg=os.getloadavg(),
                               mem_available=vm.available, mem_total=vm.total,
                               dps=len(self.tables.cp_dp), cps=len(self.tables.vm_cp),
                               free_cores=len(self.tables.cores.free))

    def _fetch(self, program: proto.ProgramRef):
        from orchestrator.store.client import fetch_program

        return fetch_program(self.config.store_url, program.name, program.version,
                             self.config.state_dir / "programs", self.trusted, ca_file=self.config.store_ca or None)

    def op_fetch_program(self, req: proto.FetchProgram) -> proto.FetchProgramReply:
        """Fetch a DP program (signature checked before any byte of it is downloaded, then its hash)."""
        manifest, path = self._fetch(proto.ProgramRef(name=req.name, version=req.version))
        # NOTE: the launch's flags say which of the DP protocol's signals the program implements
        # (a program without "standby" cannot wait beside an active DP: break-before-make only),
        # its options whether it reads the CP's policy table.
        launch = manifest.launch
        return proto.FetchProgramReply(name=manifest.name, version=manifest.version, sha256=manifest.sha256,
                                       path=str(path), flags=[name for name, _flag in launch.flags],
                                       options=[name for name, _flag in launch.options], preset=launch.preset,
                                       takes_policy=launch.takes_policy)

    def op_fetch_image(self, req: proto.FetchImage) -> proto.FetchImageReply:
        """Fetch a CP guest image into this host's image directory: the same content-addressed
        paths on every host, so a migrating guest's XML names files that exist on the target."""
        from orchestrator.store.client import fetch_image

        manifest, files = fetch_image(self.config.store_url, req.name, req.version, self.config.image_dir,
                                      self.trusted, ca_file=self.config.store_ca or None)
        return proto.FetchImageReply(name=manifest.name, version=manifest.version, kernel=str(files["kernel"]),
                                     initrd=str(files["initrd"]))

    def op_check_store(self, req: proto.CheckStore) -> proto.CheckStoreReply:
        """Is the store reachable from here, signing with a key this host trusts?"""
        from orchestrator.store.client import check_store

        return proto.CheckStoreReply.from_json(check_store(self.config.store_url, self.trusted,
                                                           ca_file=self.config.store_ca or None))

    def op_start_dp(self, req: proto.StartDp) -> proto.StartDpReply:
        function, cp, dp, program, ip = req.function, req.cp, req.dp, req.program, req.ip
        iface = req.iface or self.config.data_interface
        with self.lock:
            existing = self.tables.cp_dp.get(cp)
            if existing and dpproc.alive(existing.get("pid"), existing.get("pid_start")):
                raise AgentError(f"DP {existing['dp']} for CP {cp} already runs here (pid {existing['pid']})")
            if existing:
                self._forget_dp(cp)
            idle = req.idle or "busy"
            user = DpUser.lookup(self.config.dp_user)
            cores = self.tables.cores.allocate(dp, req.cores, exclusive=needs_core_alone(idle))
            shm = self.config.shm_dir / f"vnfctl-{dp}.policy"
            work = self.config.state_dir / "dp" / f"{dp}.work"
            stats = work / "stats.json"
            mac = req.mac or dp_mac(self.config.host, dp)
            rec = {"dp": dp, "function": function, "core_mask": cores_to_mask(cores), "cores": cores, "ip": ip,
                   "mac": mac, "iface": iface, "started_at": time.time(), "active": not req.standby,
                   "user": user.name if user else "root", "work_dir": str(work)}
            try:
                manifest, path = self._fetch(program)
                self._dp_reaches(work, path, user)
                launch = manifest.launch
                rec.update(program=f"{manifest.name}@{manifest.version}", sha256=manifest.sha256,
                           takes_policy=launch.takes_policy, preset=launch.preset)
                values = {"iface": iface, "ip": ip, "mac": mac, "name": dp}
                if launch.takes_policy:
                    self._open_writer(cp, shm)
                    values["policy_shm"] = str(shm)
                    rec["policy_shm"] = str(shm)
                if launch.preset is None:
                    values["stats"] = str(stats)
                    rec["stats"] = str(stats)
                if req.port is not None:
                    values["port"] = str(req.port)
                if idle != "busy" and not any(name == "idle" for name, _ in launch.options):
                    raise AgentError(f"DP {dp}: program {rec['program']} has no idle mode (it busy-polls its "
                                     f"cores): give the function dp idle: busy")
                values["idle"] = idle
                if launch.preset is not None:
                    # A stock DPDK application: an interface of its own, and the agent claims the
                    # function's IP for it (see dpnet.py and arpclaim.py).
                    values["iface"] = rec["dp_iface"] = interface_name(dp)
                    rec["run_dir"] = str(run_dir(self.config.state_dir, dp))
                    Path(rec["run_dir"]).mkdir(mode=0o700, parents=True, exist_ok=True)
                    if user:
                        user.own(Path(rec["run_dir"]))
                    self.dpnet.guard(iface, True)
                    self.dpnet.create(values["iface"], iface, mac)
                argv = dp_argv(launch, str(path), cores, values, {"standby"} if req.standby else set())
                if user:
                    argv = user.argv(argv, caps_for(launch.preset))
                stats.unlink(missing_ok=True)
                rec["pid"], rec["pid_start"] = dpproc.launch(argv, cores, self.config.state_dir / "dp" / f"{dp}.log",
                                                             dp, env=dp_env(launch, self.config.state_dir, dp))
                if launch.preset is not None:
                    rec["claimer_pid"], rec["claimer_start"] = self._start_claimer(rec, claiming=rec["active"])
            except BaseException:
                self._undo_start(cp, rec)
                raise
            self.tables.cp_dp[cp] = rec
            self.tables.save()
            return proto.StartDpReply.from_json(dict(rec, cp=cp))

    def _dp_reaches(self, work: Path, program: Path, user: DpUser | None) -> None:
        """What a DP opens, made for it: its work directory (its own when it runs as the DP
        user), the directories above it and its program traversable, the program readable."""
        dp_dir = work.parent
        dp_dir.mkdir(mode=0o711, parents=True, exist_ok=True)
        if user is None:
            work.mkdir(mode=0o700, exist_ok=True)
            return
        user.own(work)
        for d in {self.config.state_dir, dp_dir, *[p for p in program.parents
                                                   if self.config.state_dir in p.parents]}:
            mode = stat.S_IMODE(d.stat().st_mode)
            if mode & 0o011 != 0o011:
                d.chmod(mode | 0o011)
        if program.stat().st_mode & 0o555 != 0o555:
            program.chmod(0o555)        # a verified program; its bytes are the store's, not secret

    def _start_claimer(self, rec: dict, claiming: bool) -> tuple[int, float]:
        argv = [sys.executable, "-m", "orchestrator.agent.arpclaim", "--iface", rec["iface"], "--ip", rec["ip"],
                "--mac", rec["mac"]] + ([] if claiming else ["--standby"])
        return dpproc.spawn(argv, self.config.state_dir / "dp" / f"{rec['dp']}.arp.log",
                            f"the ARP claim of DP {rec['dp']}")

    def _undo_start(self, cp: str, rec: dict) -> None:
        """Everything a start that failed half-way made, taken away again."""
        for key, start in (("pid", "pid_start"), ("claimer_pid", "claimer_start")):
            if rec.get(key):
                dpproc.stop(rec[key], rec.get(start), 1.0)
        self._release_dp_resources(rec)
        self.tables.cores.release(rec["dp"])
        self.writers.pop(cp, None)
        self.tables.save()

    def _release_dp_resources(self, rec: dict) -> None:
        """A DP's own interface, its guard (when no other DP interface is left on its data
        interface), DPDK runtime directory, policy memory."""
        if rec.get("policy_shm"):
            Path(rec["policy_shm"]).unlink(missing_ok=True)
        for directory in ("run_dir", "work_dir"):
            if rec.get(directory):
                shutil.rmtree(rec[directory], ignore_errors=True)
        if rec.get("dp_iface"):
            self.dpnet.remove(rec["dp_iface"])
            others = [r for r in self.tables.cp_dp.values() if r is not rec and r.get("dp_iface")
                      and r.get("iface") == rec.get("iface")]
            if not others:
                self.dpnet.guard(rec["iface"], False)

    def _open_writer(self, cp: str, shm: Path) -> None:
        """The DP's policy area, made or reopened safely (``policy_shm.open_area``: never through
        a link, never another user's file); the DP user's group reads it."""
        from dpdk_stub.policy_shm import PolicyWriter, UnsafeArea

        user = DpUser.lookup(self.config.dp_user)
        try:
            writer = PolicyWriter(str(shm), DP_AREA, 0o640 if user else 0o600, user.gid if user else None)
        except UnsafeArea as exc:
            raise AgentError(f"the DP's policy area {exc.filename} {exc.strerror}") from None
        self.writers[cp] = writer
        relay = self._relay_for_cp(cp)
        if relay and relay.table:
            self._publish(writer, *relay.table)

    @staticmethod
    def _publish(writer, version: int, table: dict) -> None:
        """Hand ``table`` to a DP only when the DP would take it (``control.policy.check_table``:
        its version, its shape, the DP's area and parser); PolicyRefused otherwise, the DP's
        table left as it was."""
        check_table(version, table, writer.capacity)
        writer.publish(version, table)

    def _relay_for_cp(self, cp: str) -> CpRelay | None:
        for vm, rec in self.tables.vm_cp.items():
            if rec["cp"] == cp:
                return self.relays.get(vm)
        return None

    def _forget_dp(self, cp: str) -> dict | None:
        rec = self.tables.cp_dp.pop(cp, None)
        if rec:
            if rec.get("claimer_pid"):
                dpproc.stop(rec["claimer_pid"], rec.get("claimer_start"), 1.0)
            self.tables.cores.release(rec["dp"])
            self.writers.pop(cp, None)
            self._release_dp_resources(rec)
        self.tables.save()
        return rec

    def _stats(self, rec: dict) -> dict | None:
        """The DP's counters: its stats file, or (a preset DP) DPDK's telemetry socket (None when
        neither holds a JSON object)."""
        if rec.get("preset"):
            stats = telemetry.dp_stats(telemetry_socket(self.config.state_dir, rec["dp"]), rec.get("pid"))
        else:
            stats = dpproc.read_stats(Path(rec["stats"])) if rec.get("stats") else None
        return stats if isinstance(stats, dict) else None

    def _find_dp(self, req) -> tuple[str, dict] | tuple[None, None]:
        """The CP-DP record of the DP a request names (by itself or by its CP)."""
        for cp, rec in self.tables.cp_dp.items():
            if (req.cp is not None and cp == req.cp) or (req.dp is not None and rec["dp"] == req.dp):
                return cp, rec
        return None, None

    def op_stop_dp(self, req: proto.StopDp) -> proto.StopDpReply:
        with self.lock:
            cp, rec = self._find_dp(req)
            if rec is None:
                return proto.StopDpReply(stopped=False, reason="no such DP here")
            # NOTE: a preset DP's counters are read before it stops (its telemetry socket goes with
            # it); the stub's after (it writes its final counters as it drains).
            final = self._stats(rec) if rec.get("preset") else None
            how = dpproc.stop(rec["pid"], rec.get("pid_start"), req.deadline_s)
            if not rec.get("preset"):
                final = self._stats(rec)
            self._forget_dp(cp)
            return proto.StopDpReply(stopped=True, dp=rec["dp"], how=how, cores_freed=rec["cores"], final_stats=final)

    def op_dp_status(self, req: proto.DpStatus) -> proto.DpStatusReply:
        # NOTE: whether each DP lives is read under the lock (from /proc: nothing a DP can hold), so
        # a DP restarted meanwhile is never reported dead by its old pid; what the DP itself
        # controls (its stats file, its telemetry socket) is read outside it, and never holds
        # another request of the host.
        with self.lock:
            seen = [(cp, dict(rec), self._liveness(rec)) for cp, rec in self.tables.cp_dp.items()
                    if not req.dp or rec["dp"] == req.dp]
        return proto.DpStatusReply(dps=[self._dp_state(cp, rec, live) for cp, rec, live in seen])

    @staticmethod
    def _liveness(rec: dict) -> tuple[bool, list[int] | None, bool | None]:
        """A DP's process as /proc has it: alive, its cores, and (a preset DP) its claim's."""
        up = dpproc.alive(rec["pid"], rec.get("pid_start"))
        claimer = dpproc.alive(rec.get("claimer_pid"), rec.get("claimer_start")) if rec.get("preset") else None
        return up, dpproc.affinity(rec["pid"]) if up else None, claimer

    def _dp_state(self, cp: str, rec: dict, live: tuple[bool, list[int] | None, bool | None]) -> proto.DpState:
        """One DP as it is now; counters that do not fit the protocol are that DP's "unreadable"
        (None), never a failure of the whole status."""
        up, aff, claimer = live
        stats = self._stats(rec)
        claims = rec.get("claims", rec.get("active", True))
        if rec.get("preset"):       # the agent claims the IP for it: only while its claim runs
            claims = claims and claimer
        state = dict(rec, cp=cp, alive=up, affinity=aff, pinned=aff == sorted(rec["cores"]), stats=stats,
                     claims=bool(claims), claimer_alive=claimer, takes_policy=rec.get("takes_policy", True),
                     healthy=bool(up and aff == sorted(rec["cores"]) and stats and claimer is not False))
        try:
            return proto.DpState.from_json(state)
        except proto.ProtocolError:
            return proto.DpState.from_json(dict(state, stats=None, healthy=False))

    def _signal_dp(self, req, sig: int, active: bool | None, claims: bool | None) -> proto.DpSignalReply:
        """Send a DP protocol signal. A preset DP (a stock DPDK application) knows none of them:
        they go to the agent's ARP claim for it, which is what claiming means for it (restarted
        when it should claim and its process is gone)."""
        with self.lock:
            cp, rec = self._find_dp(req)
            if rec is None or not dpproc.alive(rec["pid"], rec.get("pid_start")):
                raise AgentError(f"no running DP {req.dp or req.cp} on host {self.config.host}")
            if not rec.get("preset"):
                dpproc.send(rec["pid"], rec.get("pid_start"), sig)
            elif not dpproc.send(rec.get("claimer_pid"), rec.get("claimer_start"), sig) and claims:
                rec["claimer_pid"], rec["claimer_start"] = self._start_claimer(rec, claiming=True)
            if active is not None:
                rec["active"] = active
            if claims is not None:
                rec["claims"] = claims
            self.tables.save()
            return proto.DpSignalReply(dp=rec["dp"], pid=rec["pid"], active=rec.get("active", True),
                                       claims=rec.get("claims", rec.get("active", True)), at=time.time())

    def op_activate_dp(self, req: proto.ActivateDp) -> proto.DpSignalReply:
        """Standby -> active: the DP starts answering ARP and serving, and sends a gratuitous ARP."""
        return self._signal_dp(req, signal.SIGUSR1, True, True)

    def op_retire_dp(self, req: proto.RetireDp) -> proto.DpSignalReply:
        """Active -> retiring: the DP still serves what reaches it but no longer claims the IP (no
        ARP answers), so the DP taking over announces it alone."""
        return self._signal_dp(req, signal.SIGHUP, None, False)

    def op_deactivate_dp(self, req: proto.DeactivateDp) -> proto.DpSignalReply:
        """Active -> standby: the DP stops answering (its packets in flight are the only loss)."""
        return self._signal_dp(req, signal.SIGUSR2, False, False)

    def op_announce_dp(self, req: proto.AnnounceDp) -> proto.DpSignalReply:
        """Send the gratuitous ARP again (an active DP re-announces on SIGUSR1)."""
        return self._signal_dp(req, signal.SIGUSR1, None, True)

    def op_seed_table(self, req: proto.SeedTable) -> proto.SeedTableReply:
        """Give a DP the CP's table before the CP arrives here (make-before-break): the CP's
        relay replaces it with the same or a newer version once the CP runs on this host."""
        cp, version = req.cp, req.version
        with self.lock:
            writer = self.writers.get(cp)
            rec = self.tables.cp_dp.get(cp)
            if rec is not None and not rec.get("takes_policy", True):
                return proto.SeedTableReply(cp=cp, version=version, used=False)     # its program reads no table
            if writer is None:
                raise AgentError(f"no DP for CP {cp} on host {self.config.host}")
            try:
                self._publish(writer, version, req.table)
            except PolicyRefused as exc:
                raise proto.FieldError("op seed_table", "table", f"the DP would refuse it: {exc}") from None
        return proto.SeedTableReply(cp=cp, version=version)

    def op_cp_table(self, req: proto.CpTable) -> proto.CpTableReply:
        relay = self.relays.get(req.vm)
        if relay is None or relay.table is None:
            return proto.CpTableReply(vm=req.vm, version=None, table=None)
        return proto.CpTableReply(vm=req.vm, version=relay.table[0], table=relay.table[1])

    def _start_relay(self, vm: str, channel: str) -> None:
        relay = CpRelay(vm, Path(channel), self._on_table)
        self.relays[vm] = relay
        relay.start()

    def _on_table(self, vm: str, version: int, table: dict) -> None:
        with self.lock:
            rec = self.tables.vm_cp.get(vm)
            writer = self.writers.get(rec["cp"]) if rec else None
            dp = self.tables.cp_dp.get(rec["cp"]) if rec else None
            if writer is None and dp is not None and dp.get("policy_shm"):
                self._open_writer(rec["cp"], Path(dp["policy_shm"]))
                return
            if writer is not None:
                self._publish(writer, version, table)   # the relay checked it too; PolicyRefused goes back to it

    def op_register_cp(self, req: proto.RegisterCp) -> proto.RegisterCpReply:
        vm, cp = req.vm, req.cp
        channel = req.channel or f"{CHANNEL_DIR}/{vm}.sock"
        with self.lock:
            self.tables.vm_cp[vm] = {"cp": cp, "function": req.function, "cp_core_mask": req.cp_core_mask or "",
                                     "channel": channel, "since": time.time()}
            self.tables.save()
            if vm not in self.relays:
                self._start_relay(vm, channel)
        return proto.RegisterCpReply(vm=vm, cp=cp)

    def op_unregister_cp(self, req: proto.UnregisterCp) -> proto.UnregisterCpReply:
        vm = req.vm
        with self.lock:
            relay = self.relays.pop(vm, None)
            if relay:
                relay.stop()
            rec = self.tables.vm_cp.pop(vm, None)
            self.tables.save()
        return proto.UnregisterCpReply(vm=vm, removed=rec is not None)

    def op_cp_report(self, req: proto.CpReport) -> proto.CpReportReply:
        vm = req.vm
        relay = self.relays.get(vm)
        if relay is None:
            raise AgentError(f"CP guest {vm} is not registered on host {self.config.host}")
        return proto.CpReportReply(vm=vm, connected=relay.connected, report=relay.report, report_at=relay.report_at,
                                   table_version=relay.table[0] if relay.table else None, connections=relay.reconnects,
                                   refused=relay.refused or None, refusal=relay.refusal if relay.refused else None)


class _Handler(socketserver.StreamRequestHandler):
    def handle(self) -> None:
        agent: Agent = self.server.agent  # type: ignore[attr-defined]
        while True:
            line = self.rfile.readline(MAX_LINE + 1)
            if not line:
                return
            if len(line) > MAX_LINE:
                # NOTE: the rest of an over-long line cannot be told from the next request: the
                # reason goes back (no id: it answers whatever was asked) and the connection ends.
                self._send(reply_error(None, ProtocolError(f"request longer than {MAX_LINE} bytes")))
                return
            msg_id = None
            try:
                req = parse_request(line)
                msg_id = req.get("id")
                reply = reply_ok(msg_id, agent.handle(req))
            except VnfctlError as exc:
                reply = reply_error(msg_id, exc)
            except Exception as exc:  # noqa: BLE001 - reported to the controller, agent stays up
                reply = reply_error(msg_id, exc)
            self._send(reply, msg_id)

    def _send(self, reply: dict, msg_id=None) -> None:
        try:
            data = encode(reply)
        except ValueError:             # a NaN or an infinity from somewhere (a DP's counters): no JSON
            data = encode(reply_error(msg_id, ProtocolError("the reply holds a number that is no JSON (NaN or "
                                                            "infinite)")))
        if len(data) > MAX_LINE:
            data = encode(reply_error(msg_id, ProtocolError(f"the reply is longer than {MAX_LINE} bytes")))
        self.wfile.write(data)
        self.wfile.flush()


class AgentServer(socketserver.ThreadingUnixStreamServer):
    daemon_threads = True

    def __init__(self, path: Path, agent: Agent):
        path.unlink(missing_ok=True)
        old = os.umask(0o077)  # root-only socket: reaching it means being root here or via SSH
        try:
            super().__init__(str(path), _Handler)
        finally:
            os.umask(old)
        self.agent = agent


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="vnfctl-agent")
    p.add_argument("--config", default=str(paths.CONFIG), help=f"configuration (default {paths.CONFIG})")
    args = p.parse_args(argv)
    try:
        config = AgentConfig.load(Path(args.config))
        config.state_dir.mkdir(mode=0o700, parents=True, exist_ok=True)
        agent = Agent(config)
    except (OSError, KeyError, ValueError, TypeError, yaml.YAMLError, VnfctlError) as exc:
        print(f"vnfctl-agent: error: cannot load {args.config}: {exc}", file=sys.stderr)
        return 2
    state = config.state_dir
    server = AgentServer(state / "agent.sock", agent)
    (state / "agent.pid").write_text(str(os.getpid()))
    signal.signal(signal.SIGTERM, lambda *_: threading.Thread(target=server.shutdown).start())
    server.serve_forever()
    return 0


if __name__ == "__main__":
    sys.exit(main())
