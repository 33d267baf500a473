"""The controller's context: inventory, state, and doors to hosts (agent over SSH, libvirt over
SSH) and routers. One object per CLI invocation; agent and libvirt connections are opened once
per host and reused."""

from __future__ import annotations

import base64
import ipaddress
import ssl
import threading
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

from orchestrator.agent import protocol as proto
from orchestrator.agent.client import AgentClient
from orchestrator.control.tokens import cp_token, read_token
from orchestrator import httpjson as http
from orchestrator.controller.inventory import FunctionSpec, HostEntry, Inventory, load_inventory
from orchestrator.controller.routing import FunctionRoutes
from orchestrator.controller.state import State
from orchestrator.errors import InputError, SshError, VnfctlError
from orchestrator.power.api import Bmc
from orchestrator.power.redfish import RedfishBmc
from orchestrator.routers.api import Router
from orchestrator.routers.frr import FrrRouter
from orchestrator.routers.netns import NetnsRouter
from orchestrator.agent.cpus import format_cpu_list
from orchestrator.virt.accel import AccelChoice, KvmFacts, choose_accel, requested_accel
from orchestrator.virt.domain import CpGuestSpec, mac_for
from orchestrator.virt.libvirt_host import Hypervisor
from orchestrator.virt.pinned_ssh import ensure_wrapper, pinned_uri


ROUTER_DRIVERS = {
    "frr": lambda e: FrrRouter(e.name, e.ssh, e.data_bridge),
    "netns": lambda e: NetnsRouter(e.name, e.netns, e.data_bridge),
}


class Controller:
    def __init__(self, inventory: Inventory, state: State):
        self.inventory, self.state = inventory, state
        self.routers: dict[str, Router] = {r.name: ROUTER_DRIVERS[r.driver](r) for r in inventory.routers}
        self.routing = FunctionRoutes(self.routers, inventory.routers, inventory.route_strategy)
        self._agents: dict[str, AgentClient] = {}
        self._hypervisors: dict[str, Hypervisor] = {}
        self._bmcs: dict[str, Bmc] = {}
        self._accel: dict[str, AccelChoice] = {}
        self._facts: dict[str, proto.HostFactsReply] = {}
        self._opening: dict[str, threading.Lock] = {}      # per door: opened once, even by threads
        self._opening_guard = threading.Lock()
        self._control_token: str | None = None

    @classmethod
    def from_files(cls, inventory: str, db: str) -> "Controller":
        return cls(load_inventory(inventory), State(Path(db)))

    def close(self) -> None:
        for a in self._agents.values():
            try:
                a.close()
            except Exception:  # noqa: BLE001 - closing is best effort
                pass
        self._agents.clear()
        for hv in self._hypervisors.values():
            hv.close()
        self._hypervisors.clear()
        for bmc in self._bmcs.values():
            bmc.close()
        self._bmcs.clear()
        for router in self.routers.values():
            router.close()
        self.state.close()

    # -- doors ------------------------------------------------------------------------------
    def host(self, name: str) -> HostEntry:
        return self.inventory.host(name)

    def _door_lock(self, door: str) -> threading.Lock:
        with self._opening_guard:
            return self._opening.setdefault(door, threading.Lock())

    def agent(self, host: str, connect_timeout: float = 10.0) -> AgentClient:
        """The host's agent over SSH: one connection, opened at first use and again after it was
        closed for good (a request that got no reply in time closes it: see ``AgentClient``)."""
        client = self._agents.get(host)
        if client is None or not client.usable:
            with self._door_lock(f"agent {host}"):
                client = self._agents.get(host)
                if client is None or not client.usable:
                    client = AgentClient.over_ssh(self.host(host).ssh, connect_timeout=connect_timeout)
                    self._agents[host] = client
        return client

    def open_doors(self, hosts: list[str]) -> None:
        """Open the agent and libvirt connections of ``hosts`` side by side (each costs an SSH
        handshake), so a command's first steps do not open them one after the other. Errors are
        left to the first step that uses the door, which names it."""
        opens = [lambda h=h: self.agent(h) for h in hosts] + [lambda h=h: self.hypervisor(h).conn for h in hosts]
        with ThreadPoolExecutor(max_workers=len(opens) or 1) as pool:
            for f in [pool.submit(o) for o in opens]:
                f.exception()

    def close_agent(self, host: str) -> None:
        client = self._agents.pop(host, None)
        if client:
            client.close()

    def bmc(self, host: str) -> Bmc | None:
        """The host's BMC (Redfish, from its inventory entry's ``bmc``), None when it has none."""
        entry = self.host(host).bmc
        if entry is None:
            return None
        if host not in self._bmcs:
            with self._door_lock(f"bmc {host}"):
                if host not in self._bmcs:
                    self._bmcs[host] = RedfishBmc(host, entry.url, entry.username, entry.password_file, entry.verify)
        return self._bmcs[host]

    def libvirt_uri(self, host: str) -> str:
        """The URI to reach ``host``'s libvirtd with: over SSH, its host key pinned to the
        inventory's known_hosts as the agent's is."""
        entry = self.host(host)
        if not entry.ssh.known_hosts.is_file():
            raise SshError(f"host {host}: known_hosts {entry.ssh.known_hosts} is missing")
        wrapper = ensure_wrapper(self.state.path.parent / "ssh-pinned", entry.ssh.known_hosts)
        return pinned_uri(entry.libvirt_uri, wrapper)

    def hypervisor(self, host: str) -> Hypervisor:
        """The host's libvirtd, one connection per command."""
        if host not in self._hypervisors:
            with self._door_lock(f"libvirt {host}"):
                if host not in self._hypervisors:
                    self._hypervisors[host] = Hypervisor(self.libvirt_uri(host), host)
        return self._hypervisors[host]

    def accel(self, host: str) -> AccelChoice:
        """KVM or TCG for guests on ``host``, decided from that host's own facts: its agent's
        probe (CPU flags, KVM modules, /dev/kvm) and its libvirt's domain capabilities."""
        if host not in self._accel:
            requested = requested_accel(self.host(host).accel)
            got = self.host_facts(host).accel_facts
            facts = KvmFacts(frozenset(got.cpu_flags), frozenset(got.modules), got.dev_kvm_usable, got.libvirt_kvm)
            if choose_accel(requested, facts).accel == "kvm":
                # NOTE: libvirt is asked only where the host's own facts allow KVM: probing a
                # QEMU for KVM on a host that cannot run it is slow and tells nothing more.
                libvirt_kvm, _why = self.hypervisor(host).supports("kvm")
                facts = KvmFacts(facts.cpu_flags, facts.modules, facts.dev_kvm_usable, libvirt_kvm)
            self._accel[host] = choose_accel(requested, facts)
        return self._accel[host]

    def host_facts(self, host: str) -> proto.HostFactsReply:
        """What ``host``'s agent reads of its machine (without the bring-up's part), asked once."""
        if host not in self._facts:
            self._facts[host] = self.agent(host).request(proto.HostFacts(setup=False))
        return self._facts[host]

    def guest_cpuset(self, host: str) -> str:
        """The CPUs ``host`` pins its CP guests' QEMU to (its agent's ``guest_cpus``: not its DPs'
        cores), in the kernel's list format; "" when it gives none (guests unpinned)."""
        return format_cpu_list(self.host_facts(host).guest_cpus or ())

    def image_files(self, host: str, spec: FunctionSpec) -> proto.FetchImageReply:
        """The function's CP image on ``host``: the agent fetches it from the store (signature and
        hashes verified) into its image directory; returns the paths it reported."""
        if not spec.image:
            raise InputError(f"function {spec.name}: its spec names no CP image (cp: image: NAME@VERSION)")
        return self.agent(host).request(proto.FetchImage(name=spec.image_name, version=spec.image_version))

    def router_of(self, host: str) -> Router:
        return self.routers[self.host(host).router]

    def control_token(self) -> str:
        """The controller's token for the control server, read once from the inventory's
        ``control_token_file``; InputError naming the key when there is none to read."""
        if self._control_token is None:
            path = self.inventory.control_token_file
            if path is None:
                raise InputError(f"inventory {self.inventory.source}: no control_token_file: the control server "
                                 f"needs the controller's token (make it with 'vnfctl control token --token-file "
                                 f"FILE' on the management machine and name FILE there)")
            self._control_token = read_token(path)
        return self._control_token

    def http(self, method: str, url: str, body=None):
        """A JSON call; calls to the control server carry the controller's token, and its refusal
        is one line naming ``control_token_file``."""
        control = self.inventory.control_url.rstrip("/") + "/"
        if not url.startswith(control):
            return http.call(method, url, body, ca_file=self.inventory.site_ca)
        try:
            return http.call(method, url, body, token=self.control_token(), ca_file=self.inventory.site_ca)
        except http.HttpError as exc:
            if exc.status in (401, 403):
                raise http.HttpError(f"{method} {url}: the control server refused the controller's token "
                                     f"({exc.status}): control_token_file {self.inventory.control_token_file} "
                                     f"must hold the token the server runs with", exc.status) from None
            raise

    def site_ca_b64(self) -> str:
        """The site CA's certificate as base64 DER, one word for a CP guest's kernel command line
        (the guest verifies the https control server against it); InputError naming site_ca."""
        path = self.inventory.site_ca
        try:
            text = Path(path).read_text()
            der = ssl.PEM_cert_to_DER_cert(text[text.index("-----BEGIN CERTIFICATE-----"):])
        except (OSError, ValueError) as exc:
            raise InputError(f"inventory {self.inventory.source}: site_ca {path}: not a certificate to give the CP "
                             f"guests ({getattr(exc, 'strerror', None) or exc}): 'vnfctl site ca init' makes it") from None
        return base64.b64encode(der).decode()

    # -- CP guests --------------------------------------------------------------------------
    def allocate_cp_ip(self) -> str:
        net = ipaddress.IPv4Network(self.inventory.guest_network)
        used = self.state.used_cp_ips() | {self.inventory.guest_gateway}
        for addr in list(net.hosts())[9:]:      # .1 gateway; .2-.9 left for operators
            if str(addr) not in used:
                return str(addr)
        raise VnfctlError(f"no free CP address left in {net}")

    def cp_guest(self, spec: FunctionSpec, host: str, cp_ip: str) -> CpGuestSpec:
        """The CP guest's definition for ``host``: the image files as that host's agent reported
        them, the accelerator chosen from that host's facts."""
        from images.builder import guest_cmdline

        image = self.image_files(host, spec)
        net = ipaddress.IPv4Network(self.inventory.guest_network)
        accel = self.accel(host)
        # NOTE: the CP's token reads only its own function's table (see orchestrator.control.tokens).
        params = {"control": self.inventory.control_url, "function": spec.name,
                  "token": cp_token(self.control_token(), spec.name)}
        if self.inventory.control_url.startswith("https://"):
            params["control_ca"] = self.site_ca_b64()
        cmdline = guest_cmdline(f"{cp_ip}/{net.prefixlen}", self.inventory.guest_gateway, spec.vm, params)
        return CpGuestSpec(name=spec.vm, domain_type=accel.domain_type, kernel=image.kernel,
                           initrd=image.initrd, cmdline=cmdline, memory_mib=spec.memory_mib,
                           vcpus=spec.vcpus, mac=mac_for(spec.vm),
                           console_log=f"/var/log/libvirt/qemu/{spec.vm}-console.log",
                           cpuset=self.guest_cpuset(host))

    def require_function(self, name: str) -> tuple[FunctionSpec, dict]:
        """The deployed function's spec and placement; FunctionBusy / OperationInterrupted when an
        operation holds it (an interrupted one must be recovered first)."""
        self.state.require_idle(name)
        spec, placement = self.state.spec(name), self.state.placement(name)
        if spec is None or placement is None:
            raise InputError(f"unknown function '{name}' (not deployed)")
        return spec, placement
