"""Deploy, migrate, undeploy and recover against fake doors: the step order, each step's undo,
the lease, aborts, and the recovery decision (pure, with literals)."""

import dataclasses
import os

import pytest

from orchestrator.agent.protocol import FetchProgramReply, ProgramRef, StartDp
from orchestrator.controller.deploy import deploy, undeploy
from orchestrator.controller.migration import move_stages, move_steps, migrate_function, should_abort, validate_options
from orchestrator.controller.recover import decide, find_orphans, recover_function, remove_orphans
from orchestrator.errors import FunctionBusy, InputError, OperationInterrupted, RecoveryError, StepFailed
from orchestrator.virt.libvirt_host import MigrationOptions
from tests.unit.fakes import SPEC, FakeController

MBB = ["precheck", "migrate_cp", "prepare_dp", "handover_dp", "verify", "host_tables", "routes", "steering", "announce_arp",
       "cleanup"]
BBM = [s for s in MBB if s != "prepare_dp"]


@pytest.fixture
def ctl(tmp_path):
    c = FakeController(tmp_path)
    deploy(c, SPEC, "a")
    yield c
    c.close()


def whole_on(ctl, host):
    """One CP, one active DP, routes and steering, the tables: on ``host`` and nowhere else."""
    w = ctl.world
    for h in "abc":
        mine = h == host
        assert (SPEC.vm in w.hvs[h].doms) == mine, f"guest on {h}"
        assert (SPEC.dp in w.agents[h].dps) == mine, f"DP on {h}"
        assert (SPEC.dp in w.agents[h].used) == mine, f"cores held on {h}"
        assert (SPEC.vm in w.agents[h].vm_cp) == mine, f"VM-CP on {h}"
    dp = w.agents[host].dps[SPEC.dp]
    assert dp["active"] and dp["claims"]
    router = ctl.host(host).router
    assert ctl.routing.converged(SPEC.service_ip, router)
    assert [n for n, r in ctl.routers.items() if r.steering(SPEC.name)] == [router]
    assert ctl.state.placement(SPEC.name)["host"] == host
    assert ctl.state.lease(SPEC.name) is None


def test_the_steps_of_each_handover_are_a_pure_decision():
    assert [s.name for s in move_steps("make-before-break")] == MBB
    assert [s.name for s in move_steps("break-before-make")] == BBM
    assert [[s.name for s in stage] for stage in move_stages("make-before-break")] == [
        ["precheck"], ["migrate_cp", "prepare_dp"], ["handover_dp"],
        ["verify", "host_tables", "routes", "steering", "announce_arp"], ["cleanup"]]
    with pytest.raises(InputError):
        move_steps("teleport")


def stages_in_order(names: list[str], handover: str) -> bool:
    """The names, a stage's in any order, stage after stage."""
    stages = [{s.name for s in stage} for stage in move_stages(handover)]
    i = 0
    for stage in stages:
        if set(names[i:i + len(stage)]) != stage:
            return False
        i += len(stage)
    return i == len(names)


@pytest.mark.parametrize("handover,steps", [("make-before-break", MBB), ("break-before-make", BBM)])
def test_a_move_runs_its_steps_in_order_and_ends_whole_on_the_target(ctl, handover, steps):
    rep = migrate_function(ctl, "fa", "c", handover=handover)
    assert stages_in_order([s.name for s in rep.steps], handover) and all(s.ok for s in rep.steps)
    assert stages_in_order([j["step"] for j in ctl.state.journal_of(rep.migration_id) if j["phase"] == "done"],
                           handover)
    assert all(s.start_ms is not None for s in rep.steps)
    whole_on(ctl, "c")
    op = ctl.state.operation(rep.migration_id)
    assert op["result"] == "done" and op["context"]["dst_dp"]["cores"] == [1]


def test_the_cp_guest_runs_on_each_host_s_guest_cpus_and_goes_back_encrypted_and_pinned(tmp_path):
    ctl = FakeController(tmp_path)
    ctl.world.guest_cpus.update(a=(0,), c=(2, 3, 4))
    deploy(ctl, SPEC, "a")
    assert ctl.world.hvs["a"].doms[SPEC.vm]["cpuset"] == "0"
    migrate_function(ctl, "fa", "c")
    assert ctl.world.hvs["c"].doms[SPEC.vm]["cpuset"] == "2-4"
    assert ctl.world.hvs["c"].doms[SPEC.vm]["tls"]

    def fault(step):
        if step == "handover_dp":
            raise RuntimeError("handover broke")

    with pytest.raises(StepFailed, match="rolled back"):
        migrate_function(ctl, "fa", "a", fault=fault)
    guest = ctl.world.hvs["c"].doms[SPEC.vm]
    assert guest["cpuset"] == "2-4" and guest["tls"]       # back to c, pinned as c pins, encrypted
    ctl.close()


def test_make_before_break_retires_the_source_before_the_target_claims_the_ip(ctl):
    migrate_function(ctl, "fa", "b")
    states = [e for e in ctl.world.log if SPEC.dp in e]
    retire = next(i for i, e in enumerate(states) if e.startswith("a ") and "'claims': False" in e)
    claim = next(i for i, e in enumerate(states) if e.startswith("b ") and "'claims': True" in e)
    assert retire < claim


@pytest.mark.parametrize("handover,steps", [("make-before-break", MBB), ("break-before-make", BBM)])
def test_a_failing_step_rolls_back_what_was_done_and_the_function_is_whole_on_the_source(tmp_path, handover, steps):
    for failing in steps:
        ctl = FakeController(tmp_path / f"{handover}-{failing}")
        deploy(ctl, SPEC, "a")

        def fault(step, failing=failing):
            if step == failing:
                raise RuntimeError(f"{step} broke")

        with pytest.raises(StepFailed, match=f"step {failing} failed: {failing} broke; rolled back"):
            migrate_function(ctl, "fa", "c", handover=handover, fault=fault)
        whole_on(ctl, "a")
        ctl.close()


def test_a_second_operation_is_refused_while_one_runs_and_a_dead_holder_means_recover(ctl):
    op = ctl.state.begin_operation("fa", "migrate", "a", "b", "make-before-break")
    with pytest.raises(FunctionBusy, match=r"function fa is busy: migrate a -> b .* is running \(pid"):
        migrate_function(ctl, "fa", "c")
    ctl.state.db.execute("UPDATE lease SET holder_pid=? WHERE operation=?", (2 ** 22 + 7, op))   # a dead pid
    for command in (lambda: migrate_function(ctl, "fa", "c"), lambda: undeploy(ctl, "fa"),
                    lambda: ctl.require_function("fa")):
        with pytest.raises(OperationInterrupted, match="was interrupted .* run 'vnfctl recover fa'"):
            command()
    assert ctl.state.lease("fa")["alive"] is False


def test_an_abort_before_a_step_rolls_back_with_its_own_exit_code(ctl):
    import threading

    stop = threading.Event()

    def fault(step):
        if step == "handover_dp":
            stop.set()          # as a SIGTERM handler would, while migrate_cp ran

    with pytest.raises(StepFailed) as e:
        migrate_function(ctl, "fa", "c", fault=fault, abort=stop)
    assert e.value.exit_code == 20 and "abort" in str(e.value)
    whole_on(ctl, "a")


def test_an_abort_asked_from_another_process_stops_the_cps_copy(ctl):
    def fault(step):
        if step == "migrate_cp":
            ctl.state.request_abort(ctl.state.lease("fa")["operation"])

    with pytest.raises(StepFailed, match="migration aborted") as e:
        migrate_function(ctl, "fa", "c", fault=fault)
    assert e.value.exit_code == 20
    whole_on(ctl, "a")


def test_options_are_refused_before_anything_moves(ctl):
    for opts, kw, msg in ((MigrationOptions(max_downtime_ms=-5), {}, "--max-downtime"),
                          (MigrationOptions(postcopy_after_passes=-1), {}, "--postcopy-after"),
                          (MigrationOptions(), {"timeout_s": 0}, "--timeout"),
                          (MigrationOptions(), {"progress_timeout_s": -1}, "--progress-timeout")):
        with pytest.raises(InputError, match=msg):
            migrate_function(ctl, "fa", "c", options=opts, **kw)
    whole_on(ctl, "a")
    validate_options(MigrationOptions(max_downtime_ms=300), 60, 10)


def test_timeouts_decide_with_plain_numbers():
    assert should_abort(100, 0, None, 0, None) is None
    assert "--timeout 30s" in should_abort(31, 0, 30, 30, None)
    assert should_abort(31, 0, 60, 30, 5) is None
    assert "no progress for 5s" in should_abort(36, 0, 60, 30, 5)


@pytest.mark.parametrize("op,placed,running,paused,done,want", [
    ({"kind": "migrate", "src": "a", "dst": "b"}, "a", ["b"], [], ["precheck", "migrate_cp"], ("forward", "b")),
    ({"kind": "migrate", "src": "a", "dst": "b"}, "a", ["a"], [], ["precheck", "prepare_dp"], ("back", "a")),
    ({"kind": "migrate", "src": "a", "dst": "b"}, "a", ["a", "b"], [], ["migrate_cp"], ("forward", "b")),
    ({"kind": "migrate", "src": "a", "dst": "b"}, "a", ["a", "b"], [], ["prepare_dp"], ("back", "a")),
    ({"kind": "migrate", "src": "a", "dst": "b"}, "a", [], ["a"], [], ("back", "a")),
    ({"kind": "migrate", "src": "a", "dst": "b"}, "a", [], [], [], ("rebuild", "a")),
    (None, "a", [], [], [], ("rebuild", "a")),
    ({"kind": "deploy", "dst": "a"}, None, ["a"], [], ["boot_cp"], ("forward", "a")),
    ({"kind": "deploy", "dst": "a"}, None, [], [], ["policy"], ("remove", None)),
    ({"kind": "undeploy", "src": "a"}, "a", ["a"], [], [], ("remove", None)),
    (None, "a", ["a"], [], [], ("keep", "a")),
    (None, None, [], [], [], ("nothing", None)),
])
def test_recovery_decides_from_where_the_cp_really_runs(op, placed, running, paused, done, want):
    d = decide(op, placed, running, paused, done)
    assert (d.action, d.host) == want, d


def interrupt(ctl, handover, at):
    """Run a move that 'dies' when step ``at`` starts: the step does not run, nothing is undone,
    the lease stays with a holder that no longer exists (as after a SIGKILL)."""
    class Died(BaseException):
        pass

    def fault(step):
        if step == at:
            raise Died()

    import orchestrator.controller.steps as steps_mod

    real_rollback, real_end = steps_mod.Runner._rollback, ctl.state.end_operation
    steps_mod.Runner._rollback = lambda self, done: []       # a killed process undoes nothing...
    ctl.state.end_operation = lambda *a, **k: None           # ...and ends nothing
    try:
        with pytest.raises(BaseException):
            migrate_function(ctl, "fa", "c", handover=handover, fault=fault)
    finally:
        steps_mod.Runner._rollback, ctl.state.end_operation = real_rollback, real_end
    ctl.state.db.execute("UPDATE lease SET holder_pid=? WHERE function='fa'", (2 ** 22 + 9,))


@pytest.mark.parametrize("handover,steps", [("make-before-break", MBB), ("break-before-make", BBM)])
def test_recover_makes_the_function_whole_after_a_kill_at_any_step(tmp_path, handover, steps):
    for at in steps:
        ctl = FakeController(tmp_path / f"{handover}-{at}")
        deploy(ctl, SPEC, "a")
        interrupt(ctl, handover, at)
        with pytest.raises(OperationInterrupted):
            ctl.require_function("fa")
        rec = recover_function(ctl, "fa")
        assert rec.ok and rec.decision.action in ("forward", "back"), rec
        whole_on(ctl, rec.host)
        assert find_orphans(ctl) == []
        other = "a" if rec.host == "c" else "c"
        migrate_function(ctl, "fa", other)          # a fresh move to the other side works
        whole_on(ctl, other)
        ctl.close()


def test_undeploy_removes_what_really_exists_even_what_the_state_does_not_know(ctl):
    ctl.world.agents["c"].request(StartDp(function="fa", cp="fa-cp", dp="fa-dp", cores=1, ip=SPEC.service_ip,
                                          program=ProgramRef(name="dp", version="1")))   # a stray DP
    ctl.world.hvs["b"].start_guest("", "fa-cp")                                     # and a stray guest
    undeploy(ctl, "fa")
    for h in "abc":
        assert not ctl.world.agents[h].dps and not ctl.world.hvs[h].doms and not ctl.world.agents[h].used
    assert ctl.state.placement("fa") is None and ctl.state.lease("fa") is None
    assert all(r.route(SPEC.service_ip) is None for r in ctl.routers.values())


def test_orphans_are_found_and_removed(ctl):
    ctl.world.agents["b"].request(StartDp(function="zz", cp="zz-cp", dp="zz-dp", cores=1, ip="10.40.0.99",
                                          program=ProgramRef(name="dp", version="1"), standby=True))
    ctl.world.agents["c"].used["yy-dp"] = [1]
    ctl.world.hvs["c"].start_guest("", "yy-cp")
    found = {(o.host, o.kind, o.name) for o in find_orphans(ctl)}
    assert found == {("b", "dp", "zz-dp"), ("c", "reservation", "yy-dp"), ("c", "guest", "yy-cp")}
    remove_orphans(ctl, find_orphans(ctl))
    assert find_orphans(ctl) == []
    whole_on(ctl, "a")


def test_a_pid_reused_by_another_process_is_not_the_holder(ctl):
    op = ctl.state.begin_operation("zz", "deploy", dst="a")
    ctl.state.db.execute("UPDATE lease SET holder_start=holder_start-100 WHERE operation=?", (op,))
    assert ctl.state.lease("zz")["alive"] is False and ctl.state.lease("zz")["holder_pid"] == os.getpid()


def test_postcopy_is_refused_under_tcg_unless_insisted_on():
    from orchestrator.controller.migration import postcopy_refused

    pc = MigrationOptions(postcopy=True)
    assert "refused for a CP under TCG" in postcopy_refused(pc, "tcg", {})
    assert postcopy_refused(pc, "tcg", {"VNFCTL_ALLOW_TCG_POSTCOPY": "1"}) is None
    assert postcopy_refused(pc, "kvm", {}) is None
    assert postcopy_refused(MigrationOptions(), "tcg", {}) is None


def test_a_program_without_standby_is_moved_break_before_make_only(ctl):
    from orchestrator.controller.migration import standby_refused

    assert standby_refused("make-before-break", "testpmd@1", ["standby"]) is None
    assert standby_refused("break-before-make", "testpmd@1", []) is None
    assert "only be moved break-before-make" in standby_refused("make-before-break", "testpmd@1", [])
    for agent in ctl.world.agents.values():
        agent.op_fetch_program = lambda req: FetchProgramReply(name=req.name, version=req.version, sha256="0" * 64,
                                                               path="/p", flags=())
    with pytest.raises(StepFailed, match="precheck.*does not implement the standby/activate signals"):
        migrate_function(ctl, "fa", "b")
    whole_on(ctl, "a")
    rep = migrate_function(ctl, "fa", "b", handover="break-before-make")
    assert rep.handover == "break-before-make"
    whole_on(ctl, "b")


def test_a_steering_install_that_fails_on_the_target_leaves_the_rule_on_the_source(ctl):
    ctl.routers["r2"].install_steering = lambda *a, **k: (_ for _ in ()).throw(OSError("nft refused"))
    with pytest.raises(StepFailed, match="steering"):
        migrate_function(ctl, "fa", "c")
    whole_on(ctl, "a")
    assert ctl.routers["r1"].steering(SPEC.name) is not None and ctl.routers["r2"].steering(SPEC.name) is None


def test_a_move_behind_the_same_router_keeps_its_steering_rule_and_a_changed_one_is_remade(ctl):
    log = ctl.routers["r1"].fabric.log
    log.clear()
    rep = migrate_function(ctl, "fa", "b")               # a and b are both behind r1
    assert not [e for e in log if e.startswith("r1 steer")]
    assert "already on r1" in next(s.detail for s in rep.steps if s.name == "steering")
    whole_on(ctl, "b")
    ctl.routers["r1"].rules[SPEC.name]["port"] = SPEC.port + 1          # not the rule the spec makes
    migrate_function(ctl, "fa", "a")
    assert [e for e in log if e.startswith("r1 steer")] == [f"r1 steer {SPEC.name}"]
    assert ctl.routers["r1"].steering(SPEC.name)["port"] == SPEC.port
    whole_on(ctl, "a")


def test_a_steering_rule_reads_back_as_nft_lists_it():
    from orchestrator.routers import steering as nft
    listed = {"nftables": [{"metainfo": {}}, {"table": {"family": "ip", "name": "vnfctl_fa"}}, {"rule": {"expr": [
        {"match": {"op": "==", "left": {"payload": {"protocol": "ip", "field": "daddr"}}, "right": "10.40.0.10"}},
        {"match": {"op": "==", "left": {"payload": {"protocol": "udp", "field": "dport"}}, "right": 5000}},
        {"counter": {"packets": 7, "bytes": 300}},
        {"mangle": {"key": {"meta": {"key": "mark"}}, "value": 16}}]}}]}
    rule = nft.parse(listed)
    assert rule == {"packets": 7, "mark": 16, "ip": "10.40.0.10", "port": 5000}
    assert nft.same(rule, "10.40.0.10", 5000, 16) and not nft.same(rule, "10.40.0.10", 5000, 17)
    assert nft.parse({"nftables": []}) is None and not nft.same(None, "10.40.0.10", 5000, 16)


@pytest.mark.parametrize("handover", ["make-before-break", "break-before-make"])
def test_a_cp_that_dies_on_the_target_after_its_copy_is_named_lost_and_left_to_recover(ctl, handover):
    ctl.world.crash_on_arrival = True
    with pytest.raises(StepFailed, match="runs on neither a nor b.*its state is lost.*vnfctl recover fa"):
        migrate_function(ctl, SPEC.name, "b", handover=handover)
    # the rest of the function went back to a, but it is not whole: the lease stays for recover
    w = ctl.world
    assert SPEC.vm not in w.hvs["a"].doms and SPEC.vm not in w.hvs["b"].doms
    assert SPEC.dp in w.agents["a"].dps and SPEC.dp not in w.agents["b"].dps
    op = ctl.state.operation(ctl.state.lease(SPEC.name)["operation"])
    assert op["result"] == "CP lost" and "runs on neither" in op["context"]["cp_lost"]
    with pytest.raises(OperationInterrupted):
        migrate_function(ctl, SPEC.name, "c")


def test_recover_asks_each_step_of_the_real_world_and_runs_only_what_is_not_so(ctl):
    """A DP that died at rest: recover restarts it in place; every other effect (the guest, the
    host tables, routes, steering, ARP, the record) is found already so and left alone."""
    ctl.world.agents["a"].dps[SPEC.dp]["alive"] = False
    before = ctl.world.agents["a"].calls.count("start_dp")
    rec = recover_function(ctl, "fa")
    assert rec.ok and rec.decision.action == "keep" and rec.host == "a", rec.as_json()
    steps = dict(a.split(": ", 1) for a in rec.actions)
    assert "started on a" in steps["dp"] and "forgot the dead DP on a" in steps["dp"]
    for step in ("cp_guest", "host_tables", "routes", "steering", "record"):
        assert steps[step] == "already so", (step, rec.actions)
    assert ctl.world.agents["a"].calls.count("start_dp") == before + 1
    whole_on(ctl, "a")
    journal = [row["step"] for row in ctl.state.journal_of(ctl.state.db.execute(
        "SELECT max(id) AS id FROM operation").fetchone()["id"]) if row["phase"] == "done"]
    assert journal[0] == "recover:dp" and set(journal[1:5]) == {
        "recover:host_tables", "recover:routes", "recover:steering", "recover:announce_arp"}, journal
    assert journal[5:] == ["recover:serving", "recover:record", "recover:cp_guest", "recover:cp_reports"], journal


def test_a_function_whose_cp_guest_is_gone_is_rebuilt_in_place_with_its_policy_kept(ctl):
    ctl.world.hvs["a"].doms.pop(SPEC.vm)                       # the guest died; the host is fine
    rec = recover_function(ctl, "fa")
    assert rec.ok and rec.decision.action == "rebuild" and rec.host == "a", rec.as_json()
    assert any("a fresh CP booted on a" in a for a in rec.actions), rec.actions
    assert "dp: already so" in rec.actions                   # its DP kept serving the table it had
    assert rec.notes and "in-memory state restarted" in rec.notes[0] and "policy was kept" in rec.notes[0]
    whole_on(ctl, "a")


def test_a_dead_host_s_function_is_rebuilt_elsewhere_and_never_asked_of_the_dead_host(ctl):
    w = ctl.world
    w.agents["a"].down = True                                  # host a lost its power
    with pytest.raises(RecoveryError, match="cannot see every host.*--evacuate HOST --dead"):
        recover_function(ctl, "fa")
    ctl.state.end_operation(ctl.state.lease("fa")["operation"], "recovery failed")
    w.hvs["a"].doms.clear()
    rec = recover_function(ctl, "fa", dead={"a"})
    assert rec.ok and rec.decision.action == "rebuild" and rec.host in ("b", "c"), rec.as_json()
    assert ctl.state.placement("fa")["host"] == rec.host and ctl.state.lease("fa") is None
    here = rec.host
    assert SPEC.vm in w.hvs[here].doms and w.agents[here].dps[SPEC.dp]["active"]
    assert any("seeded with policy v1 from the control server" in a for a in rec.actions), rec.actions
    assert ctl.routing.converged(SPEC.service_ip, ctl.host(here).router)
    # served before its fresh CP boots: the DP, the routes and the ARP come first
    done = [row["step"] for row in ctl.state.journal_of(ctl.state.db.execute(
        "SELECT max(id) AS id FROM operation").fetchone()["id"]) if row["phase"] == "done"]
    assert done.index("recover:serving") < done.index("recover:cp_guest"), done
    assert max(done.index(f"recover:{s}") for s in ("dp", "routes", "announce_arp")) < done.index("recover:cp_guest")


def test_a_rebuild_with_no_room_anywhere_says_so_and_leaves_the_function_recorded_as_down(ctl):
    w = ctl.world
    w.hvs["a"].doms.pop(SPEC.vm)
    w.agents["a"].down = True
    for h in ("b", "c"):
        w.agents[h].used["other-dp"] = list(w.agents[h].offered)     # every core held
    with pytest.raises(RecoveryError, match="no host that answers has 1 free DP core.*stays recorded as down"):
        recover_function(ctl, "fa", dead={"a"})
    assert ctl.state.placement("fa")["host"] == "a" and ctl.state.lease("fa") is None
    assert SPEC.vm not in w.hvs["b"].doms and SPEC.vm not in w.hvs["c"].doms


def test_evacuate_dead_fences_the_host_by_its_bmc_rebuilds_elsewhere_and_the_returning_host_is_cleaned(ctl):
    from orchestrator.controller.recover import evacuate_dead, rejoin_hosts

    w = ctl.world
    with pytest.raises(InputError, match="host a answers"):
        evacuate_dead(ctl, "a")
    assert ctl.state.fenced() == {} and w.bmcs["a"].log == []
    w.agents["a"].down = True                           # silent (cut off, or dead: the controller cannot tell)
    rebuilt = evacuate_dead(ctl, "a", parallel=2)
    assert w.bmcs["a"].log[:2] == ["state", "ForceOff"] and w.bmcs["a"].state == "Off"
    assert [r.function for r in rebuilt] == ["fa"] and rebuilt[0].host in ("b", "c")
    assert ctl.state.fenced()["a"]["method"] == "bmc" and "power confirmed off by its BMC" in \
        ctl.state.fenced()["a"]["reason"]
    with pytest.raises(InputError, match="host a is fenced"):
        migrate_function(ctl, "fa", "a")
    w.bmcs["a"].reset("On")          # powered on: its guest died with the power, its agent remembers the old DP
    left = find_orphans(ctl)
    assert {(o.host, o.kind) for o in left} >= {("a", "dp")} and all(o.host == "a" for o in left), left
    assert rejoin_hosts(ctl) == [f"host a is back and holds nothing of its old functions after removing {len(left)} "
                                 f"leftover(s): no longer fenced"]
    assert ctl.state.fenced() == {} and find_orphans(ctl) == []
    whole_on(ctl, rebuilt[0].host)


def test_a_host_without_a_bmc_is_never_rebuilt_from_until_an_operator_confirms_it_off(tmp_path):
    from orchestrator.controller.fencing import confirm_off
    from orchestrator.controller.recover import evacuate_dead
    from orchestrator.errors import PowerError

    ctl = FakeController(tmp_path)
    try:
        deploy(ctl, SPEC, "a")
        ctl.world.bmcs.pop("a")
        ctl.inventory = dataclasses.replace(ctl.inventory, hosts=tuple(
            dataclasses.replace(h, bmc=None) if h.name == "a" else h for h in ctl.inventory.hosts))
        with pytest.raises(InputError, match="host a answers"):
            confirm_off(ctl, "a")
        ctl.world.agents["a"].down = True
        with pytest.raises(PowerError, match="host a has no BMC.*vnfctl host confirm-off a"):
            evacuate_dead(ctl, "a")
        assert ctl.state.fenced() == {} and ctl.state.placement("fa")["host"] == "a"
        assert SPEC.vm in ctl.world.hvs["a"].doms             # nothing started elsewhere
        assert all(SPEC.vm not in ctl.world.hvs[h].doms for h in "bc")
        fence = confirm_off(ctl, "a")
        assert (fence.method, ctl.state.fenced()["a"]["method"]) == ("operator", "operator")
        (rec,) = evacuate_dead(ctl, "a")
        assert rec.host in ("b", "c")
    finally:
        ctl.close()


def test_a_bmc_that_does_not_confirm_the_host_off_leaves_it_unfenced_and_nothing_rebuilt(ctl):
    from orchestrator.controller.recover import evacuate_dead
    from orchestrator.errors import PowerError

    w = ctl.world
    w.agents["a"].down = True
    w.bmcs["a"].fail = "connection refused"
    with pytest.raises(PowerError, match="connection refused"):
        evacuate_dead(ctl, "a")
    w.bmcs["a"].fail, w.bmcs["a"].stuck = None, True
    import orchestrator.power.api as power_api
    with pytest.raises(PowerError, match="still reports PowerState On"):
        power_api.cut_power(w.bmcs["a"], timeout_s=0.05)
    assert ctl.state.fenced() == {} and ctl.state.placement("fa")["host"] == "a"
    assert all(SPEC.vm not in w.hvs[h].doms for h in "bc")


def test_a_fenced_host_back_with_its_old_copy_running_is_cleaned_before_it_rejoins_even_while_a_rebuild_runs(ctl):
    """A partition without a power cut (an operator who confirmed off a host that was not): its old
    CP guest and DP still run when it answers again, while the rebuild elsewhere holds the lease."""
    from orchestrator.controller.recover import rejoin_host

    w = ctl.world
    old_guest = dict(w.hvs["a"].doms)
    w.agents["a"].down = True
    ctl.state.fence("a", "confirmed off by the operator", "operator")
    rec = recover_function(ctl, "fa", dead={"a"})
    here = rec.host
    w.hvs["a"].doms.update(old_guest)             # it was never off: everything of it still runs
    w.agents["a"].down = False
    op = ctl.state.begin_operation("fa", "recover")          # a heal of fa in flight (its lease held)
    try:
        found = {(o.kind, o.name) for o in find_orphans(ctl, hosts=["a"])}
        assert {("guest", SPEC.vm), ("dp", SPEC.dp)} <= found, found
        back = rejoin_host(ctl, "a")
        assert back.rejoined and "after removing" in back.describe()
        assert SPEC.vm not in w.hvs["a"].doms and SPEC.dp not in w.agents["a"].dps
    finally:
        ctl.state.end_operation(op, "done")
    assert ctl.state.fenced() == {}
    whole_on(ctl, here)


def test_a_host_that_still_holds_something_after_the_cleanup_stays_fenced(ctl):
    from orchestrator.controller.recover import rejoin_host

    w = ctl.world
    w.agents["a"].down = True
    ctl.state.fence("a", "confirmed off by the operator", "operator")
    recover_function(ctl, "fa", dead={"a"})
    w.agents["a"].down = False
    w.hvs["a"].destroy_guest = lambda name: False            # a guest libvirt will not destroy
    back = rejoin_host(ctl, "a")
    assert not back.rejoined and f"guest {SPEC.vm}" in back.describe() and "a" in ctl.state.fenced()


def test_a_deploy_waits_for_a_booting_cp_while_its_guest_runs_and_then_gives_the_policy_its_own_time(ctl):
    import time as clock

    from orchestrator.controller.deploy import wait_dp_policy
    from orchestrator.errors import DeployError

    agent, guests = ctl.world.agents["a"], ctl.world.hvs["a"].doms
    # the CP reports: the policy's way gets the timeout from then, and the error says which part
    with pytest.raises(DeployError, match="no policy table 0s after its CP first reported"):
        wait_dp_policy(ctl, "a", SPEC, 999, 0.3)
    # still booting (no report yet), its guest running: waited past the timeout, up to the boot cap
    said = []
    registered = agent.vm_cp.pop(SPEC.vm)
    t0 = clock.monotonic()
    with pytest.raises(DeployError, match="has not reported after 1s of booting"):
        wait_dp_policy(ctl, "a", SPEC, 999, 0.3, said.append, boot_max_s=1.2)
    assert clock.monotonic() - t0 >= 1.1
    # a guest that stops while booting fails the wait at once
    guest = guests.pop(SPEC.vm)
    t0 = clock.monotonic()
    with pytest.raises(DeployError, match="stopped before its CP reported"):
        wait_dp_policy(ctl, "a", SPEC, 999, 30.0)
    assert clock.monotonic() - t0 < 1.0
    guests[SPEC.vm], agent.vm_cp[SPEC.vm] = guest, registered
    assert wait_dp_policy(ctl, "a", SPEC, None, 1.0).alive
