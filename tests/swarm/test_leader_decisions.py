"""The leader's decisions without a store: core.engine.swarm.{orchestrator,scheduler,updater,reaper}
driven through :meth:`Leader.decide` over an in-memory view, with a fake agent moving tasks on."""
from __future__ import annotations

import copy
import time

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from core.engine.swarm import scheduler
from core.engine.swarm.leader import Leader
from core.engine.swarm.orchestrator import View
from core.engine.swarm.store import SERVICES
from core.engine.swarm.tasks import TERMINAL, status
from core.errors import InvalidArgument

S = 10**9


def node(nid: str, *, state: str = "ready", availability: str = "active", role: str = "worker",
         labels: dict | None = None, cpus: int = 4, memory: int = 8 << 30, hostname: str = "") -> dict:
    return {"ID": nid, "Spec": {"Labels": labels or {}, "Role": role, "Availability": availability},
            "Description": {"Hostname": hostname or nid, "Platform": {"Architecture": "x86_64", "OS": "linux"},
                            "Resources": {"NanoCPUs": cpus * S, "MemoryBytes": memory},
                            "Engine": {"EngineVersion": "1", "Labels": {}}},
            "Status": {"State": state, "Addr": "10.0.0.1"}}


def service(sid: str = "svc1", *, replicas: int | None = 3, image: str = "img:1", restart: dict | None = None,
            placement: dict | None = None, update: dict | None = None, rollback: dict | None = None,
            resources: dict | None = None) -> dict:
    mode = {"Global": {}} if replicas is None else {"Replicated": {"Replicas": replicas}}
    tmpl = {"ContainerSpec": {"Image": image}, "ForceUpdate": 0,
            "RestartPolicy": restart if restart is not None else {"Condition": "any", "Delay": 0}}
    if placement:
        tmpl["Placement"] = placement
    if resources:
        tmpl["Resources"] = resources
    spec = {"Name": sid, "Labels": {}, "Mode": mode, "TaskTemplate": tmpl}
    if update:
        spec["UpdateConfig"] = update
    if rollback:
        spec["RollbackConfig"] = rollback
    return {"ID": sid, "Spec": spec}


class Sim:
    """A leader deciding over an in-memory view, a fake clock and a fake agent on every node."""

    def __init__(self, nodes: list[dict], services: list[dict] = ()) -> None:
        self.now = 1000.0
        self.leader = Leader(clock=lambda: self.now)
        self.view: View = self.leader.view
        self.version = 1
        for n in nodes:
            self.view.nodes[n["ID"]] = n
        for s in services:
            self.put_service(s)
        self.fail_images: set[str] = set()

    def put_service(self, svc: dict) -> None:
        self.version += 1
        self.view.services[svc["ID"]] = copy.deepcopy(svc)
        self.view.versions[SERVICES + svc["ID"]] = self.version

    def decide(self):
        out = self.leader.decide(self.now)
        for tid in out.deletes:
            self.view.tasks.pop(tid, None)
        return out

    def agent(self) -> bool:
        """Every node's agent, one move per task; True if anything moved."""
        moved = False
        for t in list(self.view.tasks.values()):
            state = t["Status"]["State"]
            if not t.get("NodeID") or state in TERMINAL or self.view.nodes[t["NodeID"]]["Status"]["State"] == "down":
                continue
            new = None
            if t["DesiredState"] in ("shutdown", "remove"):
                new = "shutdown"
            elif state == "assigned" and t["DesiredState"] == "ready":
                new = "ready"
            elif state in ("assigned", "ready") and t["DesiredState"] == "running":
                new = "failed" if t["Spec"]["ContainerSpec"]["Image"] in self.fail_images else "running"
            if new:
                self.view.tasks[t["ID"]] = {**t, "Status": status(new, new)}
                moved = True
        return moved

    def settle(self, rounds: int = 30, advance: float = 0.0) -> None:
        for _ in range(rounds):
            out = self.decide()
            moved = self.agent()
            if not (out.tasks or out.services or out.deletes or moved):
                if out.wake is not None and advance:
                    self.now = max(self.now + 0.001, out.wake)
                    continue
                return
            self.now += advance

    def tasks(self, sid: str = "svc1", *, live: bool = True) -> list[dict]:
        return sorted((t for t in self.view.tasks.values() if t["ServiceID"] == sid
                       and (not live or t["DesiredState"] in ("ready", "running"))),
                      key=lambda t: (t.get("Slot") or 0, t["CreatedAt"]))

    def running(self, sid: str = "svc1") -> list[dict]:
        return [t for t in self.tasks(sid) if t["Status"]["State"] == "running"]


def per_node(tasks: list[dict]) -> dict[str, int]:
    out: dict[str, int] = {}
    for t in tasks:
        out[t["NodeID"]] = out.get(t["NodeID"], 0) + 1
    return out


# -- the orchestrator ------------------------------------------------------------------------

def test_replicas_created_in_slots_and_spread():
    sim = Sim([node("n1"), node("n2"), node("n3")], [service(replicas=5)])
    sim.settle()
    tasks = sim.running()
    assert [t["Slot"] for t in tasks] == [1, 2, 3, 4, 5]
    assert sorted(per_node(tasks).values()) == [1, 2, 2]
    t = tasks[0]
    assert t["ServiceAnnotations"]["Name"] == "svc1" and t["SpecVersion"]["Index"] == sim.version
    assert t["Spec"]["ContainerSpec"]["Image"] == "img:1"


def test_scale_up_and_down_balances_and_reaps_removed_slots():
    svc = service(replicas=6)
    sim = Sim([node("n1"), node("n2"), node("n3")], [svc])
    sim.settle()
    assert sorted(per_node(sim.running()).values()) == [2, 2, 2]
    svc["Spec"]["Mode"]["Replicated"]["Replicas"] = 3
    sim.put_service(svc)
    sim.settle()
    left = sim.running()
    assert len(left) == 3 and sorted(per_node(left).values()) == [1, 1, 1]
    assert len(sim.tasks(live=False)) == 3  # the removed slots' tasks were deleted once stopped
    svc["Spec"]["Mode"]["Replicated"]["Replicas"] = 5
    sim.put_service(svc)
    sim.settle()
    assert sorted(t["Slot"] for t in sim.running()) == [1, 2, 3, 4, 5]


def test_failed_task_replaced_in_its_slot_after_the_delay():
    sim = Sim([node("n1"), node("n2")], [service(replicas=2, restart={"Condition": "any", "Delay": 3 * S})])
    sim.settle()
    victim = sim.running()[0]
    sim.view.tasks[victim["ID"]] = {**victim, "Status": status("failed", "exit 1")}
    out = sim.decide()
    replacement = [t for t in out.tasks.values() if t["ID"] != victim["ID"] and t["Slot"] == victim["Slot"]]
    assert len(replacement) == 1 and replacement[0]["DesiredState"] == "ready"
    assert out.tasks[victim["ID"]]["DesiredState"] == "shutdown"
    assert out.wake == pytest.approx(sim.now + 3)
    sim.agent()
    sim.decide()
    assert sim.view.tasks[replacement[0]["ID"]]["DesiredState"] == "ready"  # delay not over
    sim.now += 3
    sim.settle()
    assert sim.view.tasks[replacement[0]["ID"]]["Status"]["State"] == "running"
    assert len(sim.running()) == 2


@pytest.mark.parametrize("condition,end,replaced", [("none", "failed", False), ("on-failure", "complete", False),
                                                    ("on-failure", "failed", True), ("any", "complete", True)])
def test_restart_condition(condition, end, replaced):
    sim = Sim([node("n1")], [service(replicas=1, restart={"Condition": condition, "Delay": 0})])
    sim.settle()
    t = sim.running()[0]
    sim.view.tasks[t["ID"]] = {**t, "Status": status(end, end)}
    sim.settle()
    assert len(sim.running()) == (1 if replaced else 0)


def test_restart_max_attempts():
    sim = Sim([node("n1")], [service(replicas=1, restart={"Condition": "any", "Delay": 0, "MaxAttempts": 2})])
    sim.fail_images.add("img:1")
    sim.settle()
    slot1 = [t for t in sim.view.tasks.values() if t["Slot"] == 1]
    assert len(slot1) == 3 and all(t["Status"]["State"] == "failed" for t in slot1)  # first run + 2 restarts


def test_node_down_orphans_and_replaces_elsewhere():
    sim = Sim([node("n1"), node("n2")], [service(replicas=4)])
    sim.settle()
    on_n1 = [t for t in sim.running() if t["NodeID"] == "n1"]
    sim.view.nodes["n1"] = node("n1", state="down")
    sim.settle()
    assert all(sim.view.tasks[t["ID"]]["Status"]["State"] == "orphaned" for t in on_n1)
    assert per_node(sim.running()) == {"n2": 4}


def test_drain_moves_tasks_and_pause_takes_nothing_new():
    sim = Sim([node("n1"), node("n2"), node("n3")], [service(replicas=3)])
    sim.settle()
    sim.view.nodes["n1"] = node("n1", availability="drain")
    sim.view.nodes["n2"] = node("n2", availability="pause")
    sim.settle()
    assert per_node(sim.running()) == {"n2": 1, "n3": 2}


def test_global_one_per_eligible_node():
    sim = Sim([node("n1"), node("n2"), node("n3", availability="drain"), node("m1", role="manager")],
              [service("g", replicas=None, placement={"Constraints": ["node.role==worker"]})])
    sim.settle()
    assert per_node(sim.running("g")) == {"n1": 1, "n2": 1}
    sim.view.nodes["n4"] = node("n4")
    sim.view.nodes["n1"] = node("n1", availability="drain")
    sim.settle()
    assert per_node(sim.running("g")) == {"n2": 1, "n4": 1}


def test_removed_service_tasks_removed_then_deleted():
    sim = Sim([node("n1")], [service(replicas=2)])
    sim.settle()
    del sim.view.services["svc1"]
    sim.settle()
    assert sim.view.tasks == {}


def test_history_limit_per_slot():
    sim = Sim([node("n1")], [service(replicas=1, restart={"Condition": "any", "Delay": 0})])
    sim.view.cluster = {"Spec": {"Orchestration": {"TaskHistoryRetentionLimit": 3}}}
    sim.settle()
    for _ in range(6):
        t = sim.running()[0]
        sim.view.tasks[t["ID"]] = {**t, "Status": status("failed", "x")}
        sim.settle()
    assert len(sim.view.tasks) == 3 and len(sim.running()) == 1


# -- the scheduler ---------------------------------------------------------------------------

def test_unsatisfiable_constraint_stays_pending_with_dockers_reason():
    sim = Sim([node("n1"), node("n2"), node("n3", state="down")],
              [service(replicas=1, placement={"Constraints": ["node.labels.zone==mars"]})])
    sim.settle()
    [t] = sim.tasks()
    assert t["Status"]["State"] == "pending"
    assert t["Status"]["Err"] == ("no suitable node (scheduling constraints not satisfied on 2 nodes; "
                                  "1 node not available for new tasks)")


def test_resources_and_max_replicas():
    sim = Sim([node("n1", cpus=2), node("n2", cpus=1)],
              [service(replicas=4, resources={"Reservations": {"NanoCPUs": S}})])
    sim.settle()
    tasks = sim.tasks()
    assert per_node([t for t in tasks if t["NodeID"]]) == {"n1": 2, "n2": 1}
    pending = [t for t in tasks if t["Status"]["State"] == "pending"]
    assert [t["Status"]["Err"] for t in pending] == ["no suitable node (insufficient resources on 2 nodes)"]
    sim2 = Sim([node("n1"), node("n2")], [service(replicas=3, placement={"MaxReplicas": 1})])
    sim2.settle()
    errs = [t["Status"].get("Err") for t in sim2.tasks() if t["Status"]["State"] == "pending"]
    assert errs == ["no suitable node (max replicas per node limit exceed)"]


def test_constraints_parse_and_match():
    n = node("abc", labels={"zone": "East"}, hostname="host1")
    n["Description"]["Engine"]["Labels"] = {"disk": "ssd"}
    assert scheduler.node_matches(scheduler.parse_constraints(
        ["node.labels.zone==east", "engine.labels.disk == ssd", "node.hostname!=host2",
         "node.role==worker", "node.id==abc", "node.platform.os==linux", "node.ip==10.0.0.0/8"]), n)
    assert not scheduler.node_matches(scheduler.parse_constraints(["node.labels.rack==1"]), n)
    with pytest.raises(InvalidArgument, match="constraint expected one operator from ==, !="):
        scheduler.parse_constraints(["node.role=worker"])


def test_spread_preference_over_zones():
    nodes = [node("a1", labels={"zone": "a"}), node("a2", labels={"zone": "a"}), node("a3", labels={"zone": "a"}),
             node("b1", labels={"zone": "b"})]
    sim = Sim(nodes, [service(replicas=4, placement={
        "Preferences": [{"Spread": {"SpreadDescriptor": "node.labels.zone"}}]})])
    sim.settle()
    counts = per_node(sim.running())
    assert counts["b1"] == 2 and sum(counts.values()) == 4


@settings(max_examples=40, deadline=None)
@given(n_nodes=st.integers(1, 12), replicas=st.integers(0, 60),
       loads=st.lists(st.integers(0, 3), min_size=12, max_size=12))
def test_property_spread_is_even_by_service_then_total(n_nodes, replicas, loads):
    """Every replica is placed; the service's tasks differ by at most one between nodes."""
    nodes = [node(f"n{i}") for i in range(n_nodes)]
    busy = [{"ID": f"o{i}{j}", "ServiceID": "other", "NodeID": f"n{i}", "DesiredState": "running",
             "Status": {"State": "running"}, "Spec": {}} for i in range(n_nodes) for j in range(loads[i])]
    waiting = [{"ID": f"t{k:03d}", "ServiceID": "s", "Slot": k + 1, "NodeID": "", "DesiredState": "running",
                "Status": {"State": "new"}, "Spec": {}} for k in range(replicas)]
    out = scheduler.schedule(waiting, nodes, busy + waiting)
    assert len(out) == replicas and all(t["Status"]["State"] == "assigned" for t in out)
    counts = per_node(out)
    values = [counts.get(n["ID"], 0) for n in nodes]
    assert max(values) - min(values) <= 1
    if replicas % n_nodes:  # the extra ones went to the least loaded nodes
        extra = [i for i, v in enumerate(values) if v > replicas // n_nodes]
        rest = [i for i, v in enumerate(values) if v == replicas // n_nodes]
        assert max(loads[i] for i in extra) <= min(loads[i] for i in rest) or not rest


@settings(max_examples=30, deadline=None)
@given(replicas=st.integers(0, 20), down=st.sets(st.integers(0, 4)), drained=st.sets(st.integers(0, 4)))
def test_property_orchestrator_converges(replicas, down, drained):
    """Whatever nodes fail, the service converges: one running task per slot 1..N on usable
    nodes (or pending when none is left), never two runnable tasks in a slot."""
    sim = Sim([node(f"n{i}") for i in range(5)], [service(replicas=replicas)])
    sim.settle()
    for i in down:
        sim.view.nodes[f"n{i}"] = node(f"n{i}", state="down")
    for i in drained - down:
        sim.view.nodes[f"n{i}"] = node(f"n{i}", availability="drain")
    sim.settle()
    live = sim.tasks()
    assert sorted(t["Slot"] for t in live) == list(range(1, replicas + 1))
    usable = {f"n{i}" for i in range(5)} - {f"n{i}" for i in down | drained}
    for t in live:
        if usable:
            assert t["Status"]["State"] == "running" and t["NodeID"] in usable
        else:
            assert t["Status"]["State"] == "pending"


# -- the updater -----------------------------------------------------------------------------

def rolled(sim: Sim, image: str) -> list[dict]:
    return [t for t in sim.running() if t["Spec"]["ContainerSpec"]["Image"] == image]


def test_rolling_update_in_batches_with_delay():
    svc = service(replicas=5, update={"Parallelism": 2, "Delay": 10 * S, "FailureAction": "pause",
                                      "Monitor": 1 * S, "Order": "stop-first"})
    sim = Sim([node("n1"), node("n2"), node("n3")], [svc])
    sim.settle()
    svc["PreviousSpec"] = copy.deepcopy(svc["Spec"])
    svc["Spec"]["TaskTemplate"]["ContainerSpec"]["Image"] = "img:2"
    sim.put_service(svc)
    sim.settle()
    assert sim.view.services["svc1"]["UpdateStatus"]["State"] == "updating"
    assert len(rolled(sim, "img:2")) == 2 and len(sim.running()) == 5
    sim.now += 10
    sim.settle()
    assert len(rolled(sim, "img:2")) == 4
    sim.now += 10
    sim.settle()
    assert len(rolled(sim, "img:2")) == 5
    sim.now += 11
    sim.settle()
    us = sim.view.services["svc1"]["UpdateStatus"]
    assert us["State"] == "completed" and us["Message"] == "update completed" and us["CompletedAt"]


def test_update_without_task_change_replaces_nothing():
    svc = service(replicas=2)
    sim = Sim([node("n1")], [svc])
    sim.settle()
    before = {t["ID"] for t in sim.running()}
    svc["Spec"]["UpdateConfig"] = {"Parallelism": 5}
    sim.put_service(svc)
    sim.settle()
    assert {t["ID"] for t in sim.running()} == before
    assert "UpdateStatus" not in sim.view.services["svc1"]


def test_start_first_keeps_old_until_new_runs():
    svc = service(replicas=1, update={"Parallelism": 1, "Order": "start-first", "Monitor": 0})
    sim = Sim([node("n1")], [svc])
    sim.settle()
    old = sim.running()[0]
    svc["Spec"]["TaskTemplate"]["ForceUpdate"] = 1
    sim.put_service(svc)
    sim.decide()
    assert len(sim.tasks()) == 2  # both runnable while the new one starts
    assert sim.view.tasks[old["ID"]]["DesiredState"] == "running"
    sim.settle()
    assert [t["ID"] for t in sim.running()] != [old["ID"]] and len(sim.running()) == 1


def test_failure_pauses_update():
    svc = service(replicas=4, update={"Parallelism": 1, "FailureAction": "pause", "Monitor": 5 * S})
    sim = Sim([node("n1"), node("n2")], [svc])
    sim.settle()
    sim.fail_images.add("bad:1")
    svc["PreviousSpec"] = copy.deepcopy(svc["Spec"])
    svc["Spec"]["TaskTemplate"]["ContainerSpec"]["Image"] = "bad:1"
    sim.put_service(svc)
    sim.settle()
    us = sim.view.services["svc1"]["UpdateStatus"]
    assert us["State"] == "paused"
    assert us["Message"].startswith("update paused due to failure or early termination of task ")
    assert len([t for t in sim.running() if t["Spec"]["ContainerSpec"]["Image"] == "img:1"]) == 3


def test_failure_rolls_back():
    svc = service(replicas=3, update={"Parallelism": 1, "FailureAction": "rollback", "Monitor": 5 * S},
                  rollback={"Parallelism": 0, "Monitor": 1 * S})
    sim = Sim([node("n1"), node("n2")], [svc])
    sim.settle()
    sim.fail_images.add("bad:1")
    svc["PreviousSpec"] = copy.deepcopy(svc["Spec"])
    svc["Spec"]["TaskTemplate"]["ContainerSpec"]["Image"] = "bad:1"
    sim.put_service(svc)
    sim.settle(advance=0.5)
    now = sim.view.services["svc1"]
    assert now["UpdateStatus"]["State"] == "rollback_completed"
    assert now["UpdateStatus"]["Message"] == "rollback completed"
    assert now["Spec"]["TaskTemplate"]["ContainerSpec"]["Image"] == "img:1"
    assert len(rolled(sim, "img:1")) == 3


def test_manual_rollback_uses_rollback_config():
    svc = service(replicas=2, update={"Parallelism": 1, "Monitor": 0}, rollback={"Parallelism": 0, "Monitor": 0})
    sim = Sim([node("n1")], [svc])
    sim.settle()
    svc["PreviousSpec"] = copy.deepcopy(svc["Spec"])
    svc["Spec"]["TaskTemplate"]["ContainerSpec"]["Image"] = "img:2"
    sim.put_service(svc)
    sim.settle()
    assert len(rolled(sim, "img:2")) == 2
    back = copy.deepcopy(sim.view.services["svc1"])
    back["Spec"], back["PreviousSpec"] = back["PreviousSpec"], back["Spec"]
    back["UpdateStatus"] = {"State": "rollback_started", "Message": "manually requested rollback"}
    sim.put_service(back)
    sim.decide()
    assert len([t for t in sim.tasks() if t["Spec"]["ContainerSpec"]["Image"] == "img:1"]) == 2  # all at once
    sim.settle()
    assert sim.view.services["svc1"]["UpdateStatus"]["State"] == "rollback_completed"


# -- scale ------------------------------------------------------------------------------------

def test_scale_2000_replicas_over_100_nodes_decided_fast():
    sim = Sim([node(f"n{i:03d}") for i in range(100)], [service(replicas=2000)])
    t0 = time.monotonic()
    out = sim.decide()
    took = time.monotonic() - t0
    assigned = [t for t in out.tasks.values() if t["Status"]["State"] == "assigned"]
    assert len(assigned) == 2000 and set(per_node(assigned).values()) == {20}
    assert took < 5, took


def test_node_no_longer_meeting_constraints_rejects_and_moves():
    sim = Sim([node("n1", labels={"zone": "a"}), node("n2", labels={"zone": "a"})],
              [service(replicas=2, placement={"Constraints": ["node.labels.zone==a"]})])
    sim.settle()
    on_n1 = [t for t in sim.running() if t["NodeID"] == "n1"]
    sim.view.nodes["n1"] = node("n1", labels={"zone": "b"})
    sim.settle()
    assert per_node(sim.running()) == {"n2": 2}
    old = sim.view.tasks[on_n1[0]["ID"]]["Status"]
    assert old["State"] == "rejected" and old["Err"] == "assigned node no longer meets constraints"


def test_constraint_change_moves_only_tasks_on_nodes_that_no_longer_fit():
    svc = service(replicas=2, update={"Parallelism": 0, "Monitor": 0})
    sim = Sim([node("n1", labels={"disk": "ssd"}), node("n2")], [svc])
    sim.settle()
    before = {t["NodeID"]: t["ID"] for t in sim.running()}
    svc["Spec"]["TaskTemplate"]["Placement"] = {"Constraints": ["node.labels.disk==ssd"]}
    sim.put_service(svc)
    sim.settle()
    after = sim.running()
    assert per_node(after) == {"n1": 2}
    assert before["n1"] in {t["ID"] for t in after}  # the task already on a fitting node stayed


# -- network attachments --------------------------------------------------------------------

class FakeAllocator:
    def __init__(self) -> None:
        self.held: dict[str, list[str]] = {}
        self.missing: set[str] = set()

    async def attach(self, targets, owner, *, ingress=False):
        from core.errors import NotFound
        names = (["ingress"] if ingress else []) + [t["Target"] for t in targets]
        for n in names:
            if n in self.missing:
                raise NotFound(f"network {n} not found")
        self.held[owner] = names
        return [{"Network": {"ID": n}, "Addresses": [f"10.0.{i}.{len(self.held)}/24"]} for i, n in enumerate(names)]

    async def detach(self, attachments, owner):
        self.held.pop(owner, None)


def test_tasks_get_network_attachments_before_scheduling_and_give_them_back():
    import trio

    svc = service(replicas=2)
    svc["Spec"]["TaskTemplate"]["Networks"] = [{"Target": "backend"}]
    svc["Endpoint"] = {"Spec": {"Ports": [{"TargetPort": 80, "PublishedPort": 8080}]}}
    sim = Sim([node("n1")], [svc])
    alloc = sim.leader.allocator = FakeAllocator()
    alloc.missing.add("backend")

    def run_step():
        out = trio.run(sim.leader.step, None)
        for tid in out.deletes:
            sim.view.tasks.pop(tid, None)
        sim.agent()
        return out

    run_step()
    tasks = sim.tasks()
    assert len(tasks) == 2 and all(t["Status"]["State"] == "new" for t in tasks)
    assert tasks[0]["Status"]["Err"] == "network backend not found"
    alloc.missing.clear()
    for _ in range(3):
        run_step()
    tasks = sim.running()
    assert len(tasks) == 2
    assert [a["Network"]["ID"] for a in tasks[0]["NetworksAttachments"]] == ["ingress", "backend"]
    victim = tasks[0]
    sim.view.tasks[victim["ID"]] = {**victim, "Status": status("failed", "x")}
    for _ in range(3):
        run_step()
    assert victim["ID"] not in alloc.held and len(alloc.held) == 2


def test_loops_switch(monkeypatch):
    from core.engine.swarm import leader
    assert len(leader.loops()) == 1
    monkeypatch.setenv(leader.LOOPS_ENV, "0")
    assert leader.loops() == []


def test_empty_parts_of_a_spec_change_nothing():
    """A client that sends ``"Placement": {}`` (the Docker SDK's update) replaces no task."""
    svc = service(replicas=2)
    sim = Sim([node("n1")], [svc])
    sim.settle()
    before = {t["ID"] for t in sim.running()}
    svc["Spec"]["TaskTemplate"].update(Placement={}, Resources={"Limits": {}, "Reservations": {}}, Networks=[])
    svc["Spec"]["TaskTemplate"]["ContainerSpec"]["Env"] = []
    sim.put_service(svc)
    sim.settle()
    assert {t["ID"] for t in sim.running()} == before and "UpdateStatus" not in sim.view.services["svc1"]


def test_defaults_sent_back_change_nothing():
    """The Docker SDK's update sends the spec read with insertDefaults: no task is replaced."""
    svc = service(replicas=2, restart={})
    del svc["Spec"]["TaskTemplate"]["RestartPolicy"]
    sim = Sim([node("n1")], [svc])
    sim.settle()
    before = {t["ID"] for t in sim.running()}
    tmpl = svc["Spec"]["TaskTemplate"]
    tmpl["ContainerSpec"].update(StopGracePeriod=10 * S, DNSConfig={}, Isolation="default")
    tmpl.update(RestartPolicy={"Condition": "any", "Delay": 5 * S, "MaxAttempts": 0}, Runtime="container")
    sim.put_service(svc)
    sim.settle()
    assert {t["ID"] for t in sim.running()} == before
    tmpl["ContainerSpec"]["StopGracePeriod"] = 20 * S
    sim.put_service(svc)
    sim.settle(advance=1)
    assert not ({t["ID"] for t in sim.running()} & before)


def test_tasks_of_a_down_node_start_elsewhere_without_the_restart_delay():
    sim = Sim([node("n1"), node("n2")], [service(replicas=2, restart={"Condition": "any", "Delay": 5 * S})])
    sim.settle()
    sim.view.nodes["n1"] = node("n1", state="down")
    sim.settle()  # the clock does not move
    assert per_node(sim.running()) == {"n2": 2}


def test_node_down_during_a_stop_first_update_adds_no_second_task_to_the_slot():
    svc = service(replicas=2, update={"Parallelism": 2, "Order": "stop-first", "Monitor": 0})
    sim = Sim([node("n1"), node("n2"), node("n3")], [svc])
    sim.settle()
    svc["Spec"]["TaskTemplate"]["ContainerSpec"]["Image"] = "img:2"
    sim.put_service(svc)
    sim.decide()  # new tasks (desired ready) made, old ones told to stop
    down = {t["NodeID"] for t in sim.tasks() if t["Spec"]["ContainerSpec"]["Image"] == "img:1"}
    for nid in list(down)[:1]:
        sim.view.nodes[nid] = node(nid, state="down")
    sim.settle(advance=0.5)
    live = sim.tasks()
    assert sorted(t["Slot"] for t in live) == [1, 2]
    assert all(t["Spec"]["ContainerSpec"]["Image"] == "img:2" and t["Status"]["State"] == "running" for t in live)
    assert sim.view.services["svc1"]["UpdateStatus"]["State"] == "completed"


@settings(max_examples=25, deadline=None)
@given(replicas=st.integers(1, 12), parallelism=st.integers(0, 4), order=st.sampled_from(["stop-first", "start-first"]),
       images=st.lists(st.sampled_from(["img:1", "img:2", "img:3"]), min_size=1, max_size=3),
       scale_to=st.none() | st.integers(0, 12))
def test_property_updates_converge_to_the_last_spec(replicas, parallelism, order, images, scale_to):
    """Whatever updates follow each other (and a scale in the middle), the service ends with one
    running task in each of N slots, all of the last spec, and no update in progress."""
    svc = service(replicas=replicas, update={"Parallelism": parallelism, "Order": order, "Monitor": 0,
                                             "Delay": S // 2})
    sim = Sim([node(f"n{i}") for i in range(4)], [svc])
    sim.settle()
    for i, image in enumerate(images):
        svc = copy.deepcopy(sim.view.services["svc1"])
        svc.pop("UpdateStatus", None)
        svc["Spec"]["TaskTemplate"]["ContainerSpec"]["Image"] = image
        if i == 1 and scale_to is not None:
            svc["Spec"]["Mode"]["Replicated"]["Replicas"] = scale_to
        sim.put_service(svc)
        sim.decide()
        sim.agent()
    sim.settle(rounds=400, advance=0.25)
    want = svc["Spec"]["Mode"]["Replicated"]["Replicas"]
    live = sim.tasks()
    slots = [t["Slot"] for t in live]
    assert len(slots) == len(set(slots)) == want  # (a scale-down keeps the balance, not slots 1..N)
    assert all(t["Status"]["State"] == "running" and t["Spec"]["ContainerSpec"]["Image"] == images[-1] for t in live)
    assert (sim.view.services["svc1"].get("UpdateStatus") or {}).get("State") in (None, "completed")


def test_a_new_leader_counts_restarts_from_the_task_history():
    """The orchestrator's restart history rebuilt from the tasks (swarmkit's RecordRestartHistory):
    a new leader over the same tasks makes only the restarts left."""
    sim = Sim([node("n1")], [service(replicas=1, restart={"Condition": "any", "Delay": 0, "MaxAttempts": 3})])
    sim.fail_images.add("img:1")
    sim.settle(rounds=3)  # the first run and a restart or so, not all
    made = len([t for t in sim.view.tasks.values() if t["Slot"] == 1])
    assert 1 < made < 4
    new = Leader(clock=lambda: sim.now)
    new.view = sim.view
    new.orchestrator.seed(sim.view, sim.now)
    assert len(new.orchestrator.restarts[("svc1", 1)]) == made - 1
    sim.leader = new
    sim.settle()
    slot1 = [t for t in sim.view.tasks.values() if t["Slot"] == 1]
    assert len(slot1) == 4 and all(t["Status"]["State"] == "failed" for t in slot1)  # first run + 3 restarts
