"""Fake doors for unit tests of the controller's operations: an in-memory agent and hypervisor per
host and the fake router fabric, behind a real Controller (real inventory, real SQLite state),
so deploy, migrate, recover and their rollbacks run their real code against them."""

from __future__ import annotations

import itertools
from pathlib import Path

import yaml

from orchestrator.controller.controller import Controller
from orchestrator.controller.inventory import FunctionSpec, parse_inventory
from orchestrator.controller.routing import FunctionRoutes
from orchestrator.controller.state import State
from orchestrator.errors import AgentError, CoreAllocationError, MigrationError
from orchestrator.routers.fake import FakeFabric
from orchestrator.virt.accel import AccelChoice

INVENTORY = """
store_url: http://192.0.2.5:8780
control_url: http://192.0.2.6:8080
route_strategy: bgp
hosts:
  - {name: a, router: r1, ssh: {address: 192.0.2.11, key: /k, known_hosts: /kh}, dp_cores: [1], data_interface: d0}
  - {name: b, router: r1, ssh: {address: 192.0.2.12, key: /k, known_hosts: /kh}, dp_cores: [1], data_interface: d0}
  - {name: c, router: r2, ssh: {address: 192.0.2.13, key: /k, known_hosts: /kh}, dp_cores: [1], data_interface: d0}
routers:
  - {name: r1, ssh: {address: 192.0.2.1, key: /k, known_hosts: /kh}, asn: 65001, peers: {r2: 10.0.0.2}}
  - {name: r2, ssh: {address: 192.0.2.2, key: /k, known_hosts: /kh}, asn: 65002, peers: {r1: 10.0.0.1}}
"""

SPEC = FunctionSpec(name="fa", service_ip="10.40.0.10", vcpus=1, memory_mib=256, program="dp@1", dp_cores=1,
                    steering_mark=0x10, policy={"allow": ["10.0.0.0/8"], "rate_pps": 0, "burst": 0, "reply": "x"},
                    image="cp@1")


class FakeAgent:
    """The agent's named operations, on dicts."""

    def __init__(self, host: str, cores: list[int], world: "FakeWorld"):
        self.host, self.world = host, world
        self.offered, self.used = list(cores), {}
        self.dps: dict[str, dict] = {}        # dp name -> record
        self.vm_cp: dict[str, dict] = {}
        self.calls: list[str] = []
        self.info = {"proto": 1, "pid": 1, "version": "test"}
        self.down = False

    def call(self, op: str, **args):
        if self.down:
            raise AgentError(f"host {self.host}: the host agent is not running")
        self.calls.append(op)
        fail = self.world.fail_ops.get((self.host, op))
        if fail:
            raise AgentError(f"host {self.host}: {op}: {fail}")
        return getattr(self, f"op_{op}")(**args)

    def free(self):
        taken = {c for cs in self.used.values() for c in cs}
        return [c for c in self.offered if c not in taken]

    def op_cores(self):
        return {"offered": self.offered, "free": self.free(), "used": dict(self.used), "free_mask": "0x0"}

    def op_tables(self):
        return {"vm_cp": dict(self.vm_cp), "cp_dp": {r["cp"]: r for r in self.dps.values()},
                "cores": self.op_cores()}

    def op_start_dp(self, function, cp, dp, cores, ip, program, port=7777, standby=False, **_):
        if dp in self.dps:
            raise AgentError(f"DP {dp} already runs here")
        if len(self.free()) < cores:
            raise CoreAllocationError(f"host {self.host}: not enough free cores")
        self.used[dp] = self.free()[:cores]
        rec = {"dp": dp, "cp": cp, "function": function, "ip": ip, "cores": self.used[dp], "core_mask": "0x00000002",
               "pid": next(self.world.pids), "mac": f"02:00:00:00:00:{ord(self.host[0]):02x}", "alive": True,
               "active": not standby, "claims": not standby, "healthy": True, "stats": {"policy_version": 1}}
        self.dps[dp] = rec
        return dict(rec)

    def op_stop_dp(self, dp, **_):
        rec = self.dps.pop(dp, None)
        freed = self.used.pop(dp, [])
        return {"stopped": rec is not None, "how": "drained", "cores_freed": freed} if rec else \
            {"stopped": False, "reason": "no such DP here"}

    def op_release_cores(self, dp):
        return {"dp": dp, "cores_freed": self.used.pop(dp, [])}

    def op_dp_status(self, dp=None):
        return {"dps": [dict(r) for n, r in self.dps.items() if dp is None or n == dp]}

    def _set(self, dp, **state):
        if dp not in self.dps:
            raise AgentError(f"no running DP {dp} on host {self.host}")
        self.dps[dp].update(state)
        self.world.log.append(f"{self.host} {dp} {state}")
        return dict(self.dps[dp])

    def op_activate_dp(self, dp):
        return self._set(dp, active=True, claims=True)

    def op_retire_dp(self, dp):
        return self._set(dp, claims=False)

    def op_deactivate_dp(self, dp):
        return self._set(dp, active=False, claims=False)

    def op_announce_dp(self, dp):
        rec = self._set(dp, active=True, claims=True)
        for router in self.world.fabric.routers.values():
            router.neighbours[rec.get("ip", SPEC.service_ip)] = rec["mac"]
        return rec

    def op_seed_table(self, cp, version, table):
        return {"cp": cp, "version": version}

    def op_register_cp(self, vm, cp, function, channel=None, **_):
        self.vm_cp[vm] = {"cp": cp, "function": function}
        return {"vm": vm}

    def op_unregister_cp(self, vm):
        return {"vm": vm, "removed": self.vm_cp.pop(vm, None) is not None}

    def op_cp_report(self, vm):
        guest = self.world.hvs[self.host].doms.get(vm)
        if vm not in self.vm_cp or guest is None:
            return {"vm": vm, "connected": False, "report": None, "report_at": None, "connections": 0}
        guest["counter"] += 1
        return {"vm": vm, "connected": True, "report_at": 0.0, "connections": 1,
                "report": {"boot_id": guest["boot"], "counter": guest["counter"], "uptime_s": guest["counter"] * 0.1,
                           "table_version": 1}}

    def op_cp_table(self, vm):
        return {"vm": vm, "version": 1, "table": {"allow": []}}

    def op_fetch_program(self, name, version):
        return {"name": name, "version": version, "sha256": "0" * 64, "path": "/p"}

    def op_fetch_image(self, name, version):
        return {"name": name, "version": version, "kernel": "/img/k", "initrd": "/img/i"}

    def op_host_facts(self):
        return {"accel_facts": {"cpu_flags": [], "modules": [], "dev_kvm_usable": False},
                "data_interface": {"name": "d0", "present": True, "operstate": "up"}}


class FakeHypervisor:
    def __init__(self, host: str, world: "FakeWorld"):
        self.host, self.world = host, world
        self.doms: dict[str, dict] = {}       # guest name -> {"state", "boot", "counter"}

    def guests(self):
        return sorted(n for n, d in self.doms.items() if d["state"] == "running")

    def guest_running(self, name):
        return self.doms.get(name, {}).get("state") == "running"

    def guest_state(self, name):
        return self.doms.get(name, {}).get("state")

    def start_guest(self, xml, name):
        self.doms[name] = {"state": "running", "boot": f"boot-{name}", "counter": 0}

    def destroy_guest(self, name):
        return self.doms.pop(name, None) is not None

    def resume_guest(self, name):
        self.doms[name]["state"] = "running"

    def migrate(self, dst, name, address, opts=None, on_progress=None, stop_reason=None):
        from orchestrator.errors import Aborted
        from orchestrator.virt.libvirt_host import MigrationResult

        if stop_reason and stop_reason():
            raise Aborted(f"guest {name}: migration aborted: {stop_reason()}")
        if self.world.fail_migration:
            raise MigrationError(f"guest {name}: live migration failed: {self.world.fail_migration}")
        guest = self.doms.pop(name)
        if not self.world.crash_on_arrival:
            dst.doms[name] = guest
        return MigrationResult(500.0, 20.0, 1, False)

    def free_memory_mib(self):
        return 4096

    def domain_type(self, name):
        return "qemu"

    def boot_files(self, name):
        return "/img/k", "/img/i"

    def cpu_compatible(self, dst, name):
        return True, "identical"


class FakeWorld:
    def __init__(self):
        self.pids = itertools.count(100)
        self.log: list[str] = []
        self.fail_ops: dict[tuple[str, str], str] = {}
        self.fail_migration: str | None = None
        self.crash_on_arrival = False          # the copy completes, then the guest dies on the target
        self.fabric = FakeFabric(bgp=True)
        self.agents: dict[str, FakeAgent] = {}
        self.hvs: dict[str, FakeHypervisor] = {}


class FakeController(Controller):
    """A real Controller whose doors are the fakes above."""

    def __init__(self, tmp: Path):
        inventory = parse_inventory(yaml.safe_load(INVENTORY), "fake.yaml")
        super().__init__(inventory, State(Path(tmp) / "controller.db"))
        self.world = w = FakeWorld()
        self.routers = {r.name: w.fabric.add(r.name, r.peers, r.data_bridge) for r in inventory.routers}
        self.routing = FunctionRoutes(self.routers, inventory.routers, inventory.route_strategy, timeout_s=1.0,
                                      poll_s=0.001)
        for h in inventory.hosts:
            w.agents[h.name] = FakeAgent(h.name, list(h.dp_cores), w)
            w.hvs[h.name] = FakeHypervisor(h.name, w)

    def agent(self, host):
        self.host(host)
        return self.world.agents[host]

    def hypervisor(self, host):
        return self.world.hvs[host]

    def accel(self, host):
        return AccelChoice("tcg", "fake")

    def cp_guest(self, spec, host, cp_ip):
        from orchestrator.virt.domain import CpGuestSpec

        return CpGuestSpec(name=spec.vm, domain_type="qemu", kernel="/img/k", initrd="/img/i", cmdline="")

    def http(self, method, url, body=None):
        return {"version": 1, "table": body or {}}

    def close(self):
        self.state.close()
