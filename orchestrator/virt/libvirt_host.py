"""The controller's one door to libvirt (libvirt-python): one ``Hypervisor`` per host holding one
connection for the whole command (as nova's host.py), to start, find and stop guests, read job
stats and facts, and run a live migration between two hosts' daemons.

The migration is "direct" (not peer-to-peer): the controller holds a connection to both
daemons and libvirt moves the memory over the destination's fabric address. Hosts are reached
with ``qemu+libssh://`` (or ``qemu+ssh://``) URIs whose host keys are checked against a pinned
known_hosts file: libvirt refuses an unknown key because the controller gives it no callback
to accept one with. The lab's builder alone uses the hosts' local unix sockets.
"""

from __future__ import annotations

import contextlib
import os
import threading
import time
import xml.etree.ElementTree as ET
from dataclasses import dataclass

import libvirt

from orchestrator.errors import Aborted, MigrationError, VirtError
from orchestrator.virt.domain import pinned_xml


def _silence(_ctx, _err):
    """libvirt prints every error to stderr by default; ours become one-line VirtErrors."""


libvirt.registerErrorHandler(_silence, None)

KEEPALIVE_INTERVAL_S, KEEPALIVE_COUNT = 2, 3
_events_started = threading.Lock()
_events = []


def _event_loop() -> None:
    """libvirt's default event loop, run once per process in a daemon thread: it drives the
    connections' keepalive, so a host that goes silent (a link down, a libvirtd killed) fails
    the call waiting on it within seconds instead of hanging until TCP gives up."""
    with _events_started:
        if _events:
            return
        libvirt.virEventRegisterDefaultImpl()

        def run():
            while True:
                libvirt.virEventRunDefaultImpl()

        thread = threading.Thread(target=run, name="libvirt-events", daemon=True)
        thread.start()
        _events.append(thread)


@dataclass(frozen=True)
class MigrationResult:
    total_ms: float
    downtime_ms: float | None      # None after post-copy: libvirt keeps no completed stats then
    data_total: int | None
    postcopy: bool = False         # the switch to post-copy happened
    paused: bool = False           # copied with the guest paused (not live): see ``copy_paused``


@dataclass(frozen=True)
class MigrationOptions:
    max_downtime_ms: int | None = None
    auto_converge: bool = False
    postcopy: bool = False
    postcopy_after_passes: int = 1     # complete pre-copy passes before the switch (0: at once)
    bandwidth_mib_s: int | None = None
    tls: bool = False                  # QEMU encrypts the memory stream (the hosts' certificates, site CA)
    # NOTE: QEMU's multifd: the memory crosses on this many connections, each sent (and with TLS
    # encrypted) by a thread of its own, so a copy is not bound to one core; 0: one stream
    parallel: int = 0


def copy_paused(domain_type: str | None, env) -> str | None:
    """Pure: why a guest of this libvirt domain type is copied paused instead of live, or None.

    NOTE: under TCG ('qemu' domains) QEMU 7.2's live copy left guests' memory corrupt: of 37 live
    moves of 8 busy TCG CPs here, 3 guests' kernels crashed on the target within seconds (their
    hrtimer trees broken: pages written during the copy that never reached the target), while 48
    moves of the same guests copied paused lost none. A paused copy keeps the CP frozen for the
    whole copy (about 0.5-1.5 s here) instead of a ~0.2 s downtime; a make-before-break DP serves
    throughout. KVM guests (their dirty pages tracked by the kernel) are copied live.
    ``VNFCTL_ALLOW_TCG_LIVE=1`` insists on a live copy under TCG."""
    if domain_type == "qemu" and env.get("VNFCTL_ALLOW_TCG_LIVE") != "1":
        return ("a TCG guest is copied paused: QEMU's live copy of TCG guests corrupted their memory in testing "
                "(VNFCTL_ALLOW_TCG_LIVE=1 insists on live)")
    return None


def migration_flags(opts: MigrationOptions, live: bool = True) -> int:
    """Pure: libvirt flags for a migration of a transient CP guest (live unless told otherwise)."""
    flags = libvirt.VIR_MIGRATE_LIVE if live else 0
    if opts.auto_converge:
        flags |= libvirt.VIR_MIGRATE_AUTO_CONVERGE
    if opts.postcopy:
        flags |= libvirt.VIR_MIGRATE_POSTCOPY
    if opts.tls:
        flags |= libvirt.VIR_MIGRATE_TLS
    if opts.parallel:
        flags |= libvirt.VIR_MIGRATE_PARALLEL
    return flags


def should_switch_to_postcopy(stats: dict, after_passes: int = 1) -> bool:
    """Pure: pre-copy has had its passes (QEMU counts the pass under way, from 1) and memory is
    still left to send: switch to post-copy (the guest runs on the destination at once and
    fetches the rest on demand)."""
    return (stats.get("memory_iteration") or 0) > after_passes and (stats.get("memory_remaining") or 0) > 0


class Hypervisor:
    """One host's libvirtd. The connection opens on first use and stays open until ``close``."""

    def __init__(self, uri: str, host: str = ""):
        self.uri, self.host = uri, host or uri
        self._conn: libvirt.virConnect | None = None
        self._lock = threading.Lock()

    @property
    def conn(self) -> libvirt.virConnect:
        with self._lock:
            if self._conn is not None:
                try:
                    alive = self._conn.isAlive()
                except libvirt.libvirtError:
                    alive = False
                if not alive:       # a connection keepalive found dead: open a new one
                    with contextlib.suppress(libvirt.libvirtError):
                        self._conn.close()
                    self._conn = None
            if self._conn is None:
                remote = not self.uri.startswith("qemu+unix") and not self.uri.startswith("qemu:///")
                if remote:
                    # NOTE: only a remote connection needs the event loop (keepalive); a local one
                    # (the lab's own warm-up) must not leave a thread behind: a process with threads
                    # can no longer enter the lab's management mount namespace.
                    _event_loop()
                try:
                    self._conn = libvirt.open(self.uri)
                except libvirt.libvirtError as exc:
                    raise VirtError(f"host {self.host}: libvirt {self.uri.split('?')[0]}: "
                                    f"{exc.get_error_message()}") from None
                if remote:
                    with contextlib.suppress(libvirt.libvirtError):
                        self._conn.setKeepAlive(KEEPALIVE_INTERVAL_S, KEEPALIVE_COUNT)
            return self._conn

    def close(self) -> None:
        with self._lock:
            if self._conn is not None:
                with contextlib.suppress(libvirt.libvirtError):
                    self._conn.close()
                self._conn = None

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()

    # -- facts ------------------------------------------------------------------------------
    def version(self) -> str:
        v = self.conn.getLibVersion()
        return f"{v // 1000000}.{v // 1000 % 1000}.{v % 1000}"

    def supports(self, virttype: str) -> tuple[bool, str]:
        """Can this host's QEMU run guests of ``virttype`` ('kvm' or 'qemu'), by libvirt's domain
        capabilities? (True, '') or (False, libvirt's reason)."""
        try:
            self.conn.getDomainCapabilities(None, "x86_64", None, virttype, 0)
            return True, ""
        except libvirt.libvirtError as exc:
            return False, exc.get_error_message()

    def free_memory_mib(self) -> int:
        return int(self.conn.getFreeMemory() // (1024 * 1024))

    def warm_up(self, virttype: str) -> None:
        """Have a fresh libvirtd probe its QEMU now (domain capabilities, cached by libvirt), so the
        first guest start or migration precheck on that host does not pay for it."""
        self.supports(virttype)

    # -- guests -----------------------------------------------------------------------------
    def guests(self) -> list[str]:
        return sorted(d.name() for d in self.conn.listAllDomains(libvirt.VIR_CONNECT_LIST_DOMAINS_ACTIVE))

    def _domain(self, name: str) -> libvirt.virDomain | None:
        try:
            return self.conn.lookupByName(name)
        except libvirt.libvirtError:
            return None

    def start_guest(self, xml: str, name: str) -> None:
        """Start a transient guest (it lives where it runs: a migration carries its definition)."""
        try:
            self.conn.createXML(xml, 0)
        except libvirt.libvirtError as exc:
            raise VirtError(f"guest {name} on {self.host}: cannot start: {exc.get_error_message()}") from None

    def destroy_guest(self, name: str) -> bool:
        """Stop a guest if it runs there; True when one was stopped."""
        dom = self._domain(name)
        if dom is None:
            return False
        with contextlib.suppress(libvirt.libvirtError):
            dom.destroy()
        return True

    def destroy_all(self) -> None:
        """Stop every guest of that daemon at once (lab teardown)."""
        for dom in self.conn.listAllDomains():
            with contextlib.suppress(libvirt.libvirtError):
                if dom.isActive():
                    dom.destroy()
            with contextlib.suppress(libvirt.libvirtError):
                dom.undefine()

    def guest_running(self, name: str) -> bool:
        dom = self._domain(name)
        try:
            return bool(dom and dom.isActive())
        except libvirt.libvirtError:
            return False

    STATES = {libvirt.VIR_DOMAIN_RUNNING: "running", libvirt.VIR_DOMAIN_PAUSED: "paused",
              libvirt.VIR_DOMAIN_SHUTOFF: "shutoff", libvirt.VIR_DOMAIN_SHUTDOWN: "shutting down",
              libvirt.VIR_DOMAIN_CRASHED: "crashed", libvirt.VIR_DOMAIN_PMSUSPENDED: "suspended",
              libvirt.VIR_DOMAIN_BLOCKED: "running"}

    def guest_state(self, name: str) -> str | None:
        """'running', 'paused', ... for a guest defined here, None when there is none."""
        dom = self._domain(name)
        try:
            return self.STATES.get(dom.state()[0], "other") if dom else None
        except libvirt.libvirtError:
            return None

    def resume_guest(self, name: str) -> None:
        dom = self._domain(name)
        if dom is None:
            raise VirtError(f"guest {name} is not on {self.host}")
        try:
            dom.resume()
        except libvirt.libvirtError as exc:
            raise VirtError(f"guest {name} on {self.host}: cannot resume: {exc.get_error_message()}") from None

    def guest_xml(self, name: str) -> ET.Element | None:
        """The running guest's live definition, parsed (None when it does not run here)."""
        dom = self._domain(name)
        try:
            return ET.fromstring(dom.XMLDesc(0)) if dom else None
        except libvirt.libvirtError:
            return None

    def boot_files(self, name: str) -> tuple[str | None, str | None]:
        """(kernel, initrd) paths the running guest was started with, as this host names them."""
        root = self.guest_xml(name)
        if root is None:
            return None, None
        return root.findtext("os/kernel"), root.findtext("os/initrd")

    def domain_type(self, name: str) -> str | None:
        """'kvm' or 'qemu' (TCG) for a running guest, None when it does not run here."""
        root = self.guest_xml(name)
        return root.get("type") if root is not None else None

    def cpu_compatible(self, dst: "Hypervisor", name: str) -> tuple[bool, str]:
        """Can the destination's hypervisor provide the CPU the running guest was given? (libvirt
        compares the guest's live CPU definition against what the destination's QEMU can offer)."""
        root = self.guest_xml(name)
        if root is None:
            return False, f"guest {name} is not running on {self.host}"
        cpu = root.find("cpu")
        if cpu is None:
            return True, "guest uses the hypervisor's default CPU"
        try:
            verdict = dst.conn.compareHypervisorCPU(None, "x86_64", None, root.get("type"),
                                                    ET.tostring(cpu, encoding="unicode"), 0)
        except libvirt.libvirtError as exc:
            return False, exc.get_error_message()
        if verdict == libvirt.VIR_CPU_COMPARE_INCOMPATIBLE:
            return False, "the destination cannot provide the guest's CPU model"
        return True, "identical" if verdict == libvirt.VIR_CPU_COMPARE_IDENTICAL else "superset"

    def abort_job(self, name: str) -> None:
        """Ask libvirt to abort the guest's running job (a migration): the guest stays here."""
        dom = self._domain(name)
        if dom is not None:
            with contextlib.suppress(libvirt.libvirtError):
                dom.abortJob()

    def migrate(self, dst: "Hypervisor", name: str, dst_address: str, opts: MigrationOptions = MigrationOptions(),
                on_progress=None, poll_s: float = 0.1, stop_reason=None, dst_cpuset: str | None = None) -> MigrationResult:
        """Live-migrate guest ``name`` from here to ``dst``; on any failure before a post-copy
        switch the guest is still running here.

        A monitor thread polls the source's job stats and hands them to ``on_progress``; it only
        observes, except that when ``stop_reason()`` gives a reason (an abort was asked, a timeout
        passed) it asks libvirt to abort the job, and the migration fails with that reason
        (Aborted). Downtime is what libvirt measured, read from the destination's completed job.
        ``dst_cpuset`` pins the guest's QEMU on the destination to those CPUs ("" unpinned) from
        the moment it starts receiving; None keeps the source's pinning.
        """
        src, dst_conn = self.conn, dst.conn
        try:
            dom = src.lookupByName(name)
        except libvirt.libvirtError:
            raise MigrationError(f"guest {name} is not running on the source") from None
        if opts.max_downtime_ms:
            dom.migrateSetMaxDowntime(opts.max_downtime_ms, 0)
        # NOTE: post-copy is live by nature (refused under TCG unless insisted on, see migration.py)
        paused = not opts.postcopy and copy_paused(self.domain_type(name), os.environ) is not None
        params = {libvirt.VIR_MIGRATE_PARAM_URI: f"tcp://{dst_address}"}
        if opts.bandwidth_mib_s:
            params[libvirt.VIR_MIGRATE_PARAM_BANDWIDTH] = opts.bandwidth_mib_s
        if opts.parallel:
            params[libvirt.VIR_MIGRATE_PARAM_PARALLEL_CONNECTIONS] = opts.parallel
        if dst_cpuset is not None:
            params[libvirt.VIR_MIGRATE_PARAM_DEST_XML] = pinned_xml(
                dom.XMLDesc(libvirt.VIR_DOMAIN_XML_MIGRATABLE | libvirt.VIR_DOMAIN_XML_SECURE), dst_cpuset)
        done = threading.Event()
        switched = threading.Event()
        stopped: list[str] = []

        def monitor():
            while not done.wait(poll_s):
                reason = stop_reason() if stop_reason and not switched.is_set() else None
                if reason and not stopped:
                    stopped.append(reason)
                    with contextlib.suppress(libvirt.libvirtError):
                        dom.abortJob()
                try:
                    stats = dom.jobStats()
                except libvirt.libvirtError:
                    continue
                if stats.get("type", 0) == libvirt.VIR_DOMAIN_JOB_NONE:
                    continue
                if on_progress:
                    on_progress(stats)
                if opts.postcopy and not switched.is_set() and \
                        should_switch_to_postcopy(stats, opts.postcopy_after_passes):
                    try:
                        dom.migrateStartPostCopy(0)
                        switched.set()
                    except libvirt.libvirtError:
                        pass     # not yet possible: pre-copy goes on, the next poll tries again

        watcher = threading.Thread(target=monitor, daemon=True)
        watcher.start()
        started = time.monotonic()
        outcome: dict = {}

        def perform():
            try:
                outcome["new"] = dom.migrate3(dst_conn, params, migration_flags(opts, live=not paused))
            except libvirt.libvirtError as exc:
                outcome["failure"] = exc.get_error_message()
            except BaseException as exc:  # noqa: BLE001 - handed to the caller below
                outcome["error"] = exc

        # NOTE: the copy runs in a thread of its own and this one waits in short steps: a Python
        # signal handler (SIGTERM/SIGINT aborting the move) only runs in the main thread between
        # bytecodes, never while it sits inside libvirt's C call for the whole copy.
        mover = threading.Thread(target=perform, name=f"migrate-{name}", daemon=True)
        mover.start()
        try:
            while mover.is_alive():
                mover.join(0.1)
        finally:
            mover.join()
            done.set()
            watcher.join()      # after this, ``switched`` no longer changes
        if "error" in outcome:
            raise outcome["error"]
        failure, new = outcome.get("failure"), outcome.get("new")
        if failure is not None and stopped:
            raise Aborted(f"guest {name}: migration aborted: {stopped[0]}")
        if failure is not None and switched.is_set():
            raise MigrationError(f"guest {name}: live migration failed after the switch to post-copy; its memory is "
                                 f"split between the hosts, so it cannot return to the source: {failure}")
        if failure is not None:
            raise MigrationError(f"guest {name}: live migration failed: {failure}")
        try:
            stats = new.jobStats(libvirt.VIR_DOMAIN_JOB_STATS_COMPLETED)
        except libvirt.libvirtError:
            stats = {}
        return MigrationResult(
            total_ms=float(stats.get("time_elapsed") or (time.monotonic() - started) * 1000),
            downtime_ms=float(stats["downtime"]) if "downtime" in stats else None,
            data_total=stats.get("data_total"),
            postcopy=switched.is_set(),
            paused=paused,
        )




def _with(uri: str, fn):
    with Hypervisor(uri) as hv:
        return fn(hv)


def list_guests(uri: str) -> list[str]:
    return _with(uri, Hypervisor.guests)


def destroy_all(uri: str) -> None:
    _with(uri, Hypervisor.destroy_all)


def warm_up(uri: str, virttype: str) -> None:
    _with(uri, lambda hv: hv.warm_up(virttype))
