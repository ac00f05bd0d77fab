"""Swarm services end to end (issue 12's "Done when") on the multi-host harness: one manager and
two workers (CLUSTER_SHAPE (1, 2), ``--dispatcher-heartbeat 1s``), real daemons running real task
containers from the test registry (forwarded into every host), driven through core's CLI and
read back through the API (``/services``, ``/tasks``, ``/nodes``).

What is checked: a rolling update's parallelism and delay in the new tasks' timestamps; an update
whose tasks fail pausing (``--update-failure-action pause``) or rolling back (``rollback``);
``service rollback``; a worker cut off and its tasks replaced elsewhere; a task container removed
by hand and replaced; a worker's daemon restarted with nothing rescheduled; ``node update
--availability drain``; global mode; a constraint no node meets and a bad image, as ``service
ps`` shows them.  Each test removes its services; delays and monitor periods are short.
"""
from __future__ import annotations

import datetime as dt
import json
import re
import shutil
import time
from typing import Any

import pytest
from tests.support.swarm import core_ok as core

pytestmark = [pytest.mark.slow,
              pytest.mark.skipif(not shutil.which("etcd"), reason="etcd (etcd-server) is not installed")]

CLUSTER_SHAPE = (1, 2)
LIVE = ("new", "pending", "assigned", "accepted", "preparing", "ready", "starting", "running")


def wait_for(what: str, check, timeout: float = 40.0, cluster=None) -> Any:
    deadline = time.monotonic() + timeout
    last = None
    while time.monotonic() < deadline:
        last = check()
        if last:
            return last
        time.sleep(0.25)
    logs = f"\n{cluster['mgr1'].log()[-4000:]}" if cluster is not None else ""
    raise AssertionError(f"timed out waiting for {what}: {last!r}{logs}")


def ts(text: str) -> float:
    """A swarm timestamp (RFC 3339, nanoseconds) as seconds since the epoch."""
    head, _, frac = text.rstrip("Z").partition(".")
    return dt.datetime.fromisoformat(head).replace(tzinfo=dt.timezone.utc).timestamp() + float(f"0.{frac or 0}")


class Swarm:
    def __init__(self, cluster, test_images) -> None:
        self.cluster = cluster
        self.mgr = cluster["mgr1"]
        self.image = test_images["busybox:latest"].ref()
        self.registry_port = test_images.registry.port
        self.node_ids: dict[str, str] = {}

    @property
    def api(self):
        return self.mgr.docker().api

    def service(self, name: str) -> dict[str, Any]:
        return self.api.inspect_service(name)

    def tasks(self, name: str) -> list[dict[str, Any]]:
        return self.api.tasks(filters={"service": name})

    def live(self, name: str) -> list[dict[str, Any]]:
        return [t for t in self.tasks(name) if t["DesiredState"] in ("ready", "running")]

    def running(self, name: str, n: int) -> list[dict[str, Any]] | None:
        """The service's live tasks when exactly ``n`` are live and all run, else None."""
        live = self.live(name)
        if len(live) == n and all(t["Status"]["State"] == "running" for t in live):
            return live
        return None

    def create(self, name: str, *args: str) -> str:
        """``service create -d``; ``sleep`` ignores SIGTERM: a short grace period keeps stops short."""
        return core(self.mgr, "service", "create", "-d", "--name", name, "--stop-grace-period", "1s", *args,
                    timeout=120).strip()

    def rm(self, *names: str) -> None:
        for name in names:
            self.mgr.core("service", "rm", name)

    def node_states(self) -> list[str]:
        return [n["Status"]["State"] for n in self.api.nodes()]

    def ps(self, name: str) -> list[list[str]]:
        out = core(self.mgr, "service", "ps", "--no-trunc", "--format",
                   "{{.Name}}\t{{.Node}}\t{{.DesiredState}}\t{{.CurrentState}}\t{{.Error}}", name)
        return [line.split("\t") for line in out.splitlines()]


@pytest.fixture(scope="module")
def swarm(cluster, test_images) -> Swarm:
    s = Swarm(cluster, test_images)
    cluster.forward_loopback(s.registry_port)
    mgr = s.mgr
    core(mgr, "swarm", "init", "--advertise-addr", f"{mgr.address}:2377", "--listen-addr",
         f"{mgr.address}:2377", "--dispatcher-heartbeat", "1s")
    token = core(mgr, "swarm", "join-token", "-q", "worker").strip()
    for host in cluster.workers:
        core(host, "swarm", "join", "--token", token, f"{mgr.address}:2377",
             "--advertise-addr", host.address, "--listen-addr", f"{host.address}:2377")
    wait_for("three ready nodes", lambda: sorted(core(mgr, "node", "ls", "--format", "{{.Status}}").split())
             == ["Ready"] * 3, cluster=cluster)
    s.node_ids = {n["Description"]["Hostname"]: n["ID"] for n in s.api.nodes()}
    return s


def test_global_mode_runs_one_task_per_node(swarm):
    try:
        swarm.create("glob", "--mode", "global", swarm.image, "sleep", "3600")
        live = wait_for("a task running on each node", lambda: swarm.running("glob", 3), cluster=swarm.cluster)
        assert sorted(t["NodeID"] for t in live) == sorted(swarm.node_ids.values())
        assert core(swarm.mgr, "service", "ls", "--filter", "name=glob", "--format", "{{.Mode}} {{.Replicas}}") \
            == "global 3/3\n"
        [listed] = swarm.api.services(filters={"name": "glob"}, status=True)
        assert listed["ServiceStatus"] == {"RunningTasks": 3, "DesiredTasks": 3, "CompletedTasks": 0}
        # a drained node is no longer eligible: desired 2 (docker's count of tasks desired running)
        core(swarm.mgr, "node", "update", "--availability", "drain", "wrk2")
        wait_for("global 2/2", lambda: core(swarm.mgr, "service", "ls", "--filter", "name=glob", "--format",
                                            "{{.Replicas}}") == "2/2\n", cluster=swarm.cluster)
        core(swarm.mgr, "node", "update", "--availability", "active", "wrk2")
        wait_for("global 3/3 again", lambda: core(swarm.mgr, "service", "ls", "--filter", "name=glob", "--format",
                                                  "{{.Replicas}}") == "3/3\n", cluster=swarm.cluster)
    finally:
        core(swarm.mgr, "node", "update", "--availability", "active", "wrk2")
        swarm.rm("glob")


def test_constraint_no_node_meets_is_pending_with_dockers_reason(swarm):
    try:
        swarm.create("nowhere", "--constraint", "node.labels.zone==mars", swarm.image, "sleep", "3600")
        reason = "no suitable node (scheduling constraints not satisfied on 3 nodes)"
        wait_for("the task pending with the reason",
                 lambda: [t["Status"].get("Err") for t in swarm.tasks("nowhere")] == [reason],
                 cluster=swarm.cluster)
        [row] = swarm.ps("nowhere")
        assert row[0] == "nowhere.1" and row[1] == "" and row[2] == "Running"
        assert row[3].startswith("Pending ") and row[4] == json.dumps(reason)  # docker quotes it (%q)
    finally:
        swarm.rm("nowhere")


def test_bad_image_is_rejected_with_the_error_in_service_ps(swarm):
    image = f"127.0.0.1:{swarm.registry_port}/no-such-image:latest"
    try:
        swarm.create("badimg", "--no-resolve-image", "--restart-condition", "none", image)
        [task] = wait_for("the task rejected",
                          lambda: [t for t in swarm.tasks("badimg") if t["Status"]["State"] == "rejected"],
                          cluster=swarm.cluster)
        err = task["Status"]["Err"]
        assert "no-such-image" in err
        rows = swarm.ps("badimg")
        assert rows[0][0] == "badimg.1" and rows[0][3].startswith("Rejected ") and rows[0][4] == json.dumps(err)
    finally:
        swarm.rm("badimg")


def test_rolling_update_parallelism_and_delay_in_the_task_timestamps(swarm):
    try:
        swarm.create("roll", "--replicas", "4", "--update-parallelism", "2", "--update-delay", "3s",
                     "--update-monitor", "1s", swarm.image, "sleep", "3600")
        old = wait_for("4 tasks running", lambda: swarm.running("roll", 4), cluster=swarm.cluster)
        core(swarm.mgr, "service", "update", "-d", "--env-add", "V=2", "roll")
        wait_for("the update completed",
                 lambda: (swarm.service("roll").get("UpdateStatus") or {}).get("State") == "completed",
                 timeout=60, cluster=swarm.cluster)
        svc = swarm.service("roll")
        assert svc["UpdateStatus"]["Message"] == "update completed"
        new = wait_for("4 new tasks running", lambda: swarm.running("roll", 4), cluster=swarm.cluster)
        assert not {t["ID"] for t in new} & {t["ID"] for t in old}
        assert all(t["Spec"]["ContainerSpec"]["Env"] == ["V=2"] for t in new)
        created = {t["Slot"]: ts(t["CreatedAt"]) for t in new}
        assert sorted(created) == [1, 2, 3, 4]
        # batches of two, lowest slots first; the second starts 3 s after the first runs
        assert abs(created[1] - created[2]) < 1.0 and abs(created[3] - created[4]) < 1.0
        first_ran = max(ts(t["Status"]["Timestamp"]) for t in new if t["Slot"] in (1, 2))
        assert min(created[3], created[4]) - max(created[1], created[2]) >= 3.0
        assert min(created[3], created[4]) >= first_ran + 2.9
        assert ts(svc["UpdateStatus"]["CompletedAt"]) >= ts(svc["UpdateStatus"]["StartedAt"]) + 3.0
    finally:
        swarm.rm("roll")


def _update_status(swarm, name: str, state: str, timeout: float = 60) -> dict[str, Any]:
    def check():
        us = swarm.service(name).get("UpdateStatus") or {}
        return us if us.get("State") == state else None
    return wait_for(f"UpdateStatus {state}", check, timeout=timeout, cluster=swarm.cluster)


def test_failing_update_pauses(swarm):
    try:
        swarm.create("pausy", "--replicas", "2", "--update-failure-action", "pause", "--update-monitor", "2s",
                     "--update-delay", "10s",
                     swarm.image, "sleep", "3600")
        wait_for("2 tasks running", lambda: swarm.running("pausy", 2), cluster=swarm.cluster)
        core(swarm.mgr, "service", "update", "-d", "--args", "false", "pausy")
        us = _update_status(swarm, "pausy", "paused")
        failed = [t for t in swarm.tasks("pausy") if t["Status"]["State"] == "failed"]
        assert failed and us["Message"] in {f"update paused due to failure or early termination of task {t['ID']}"
                                            for t in failed}
        assert failed[0]["Status"]["Err"] == "task: non-zero exit (1)"
        assert any(row[3].startswith("Failed ") and row[4] == '"task: non-zero exit (1)"' for row in swarm.ps("pausy"))
        # paused before the next batch (10 s later): the other slot was not touched
        assert any(t["Spec"]["ContainerSpec"]["Args"] == ["sleep", "3600"] for t in swarm.live("pausy"))
        assert "update paused due to failure" in core(swarm.mgr, "service", "inspect", "--pretty", "pausy")
    finally:
        swarm.rm("pausy")


def test_failing_update_rolls_back(swarm):
    try:
        swarm.create("rolly", "--replicas", "2", "--update-failure-action", "rollback", "--update-monitor", "2s",
                     "--rollback-monitor", "1s", swarm.image, "sleep", "3600")
        wait_for("2 tasks running", lambda: swarm.running("rolly", 2), cluster=swarm.cluster)
        core(swarm.mgr, "service", "update", "-d", "--args", "false", "rolly")
        us = _update_status(swarm, "rolly", "rollback_completed")
        assert us["Message"] == "rollback completed"
        svc = swarm.service("rolly")
        assert svc["Spec"]["TaskTemplate"]["ContainerSpec"]["Args"] == ["sleep", "3600"]
        assert "PreviousSpec" not in svc  # swarmkit's rollback clears it (a manual one swaps)
        live = wait_for("2 tasks running the old spec", lambda: swarm.running("rolly", 2), cluster=swarm.cluster)
        assert all(t["Spec"]["ContainerSpec"]["Args"] == ["sleep", "3600"] for t in live)
    finally:
        swarm.rm("rolly")


def test_service_rollback(swarm):
    try:
        swarm.create("back", "--replicas", "2", "--update-monitor", "1s", "--rollback-monitor", "1s",
                     swarm.image, "sleep", "3600")
        wait_for("2 tasks running", lambda: swarm.running("back", 2), cluster=swarm.cluster)
        core(swarm.mgr, "service", "update", "-d", "--env-add", "V=2", "back")
        _update_status(swarm, "back", "completed")
        out = core(swarm.mgr, "service", "rollback", "-d", "back")
        assert out == "back\n"
        us = _update_status(swarm, "back", "rollback_completed")
        assert us["Message"] == "rollback completed"
        svc = swarm.service("back")
        assert "Env" not in svc["Spec"]["TaskTemplate"]["ContainerSpec"]
        assert svc["PreviousSpec"]["TaskTemplate"]["ContainerSpec"]["Env"] == ["V=2"]  # swapped
        live = wait_for("2 tasks running the old spec", lambda: swarm.running("back", 2), cluster=swarm.cluster)
        assert all("Env" not in t["Spec"]["ContainerSpec"] for t in live)
    finally:
        swarm.rm("back")


def _task_container(host, task_id: str) -> str | None:
    out = core(host, "ps", "-aq", "--no-trunc", "--filter", f"label=com.docker.swarm.task.id={task_id}")
    return out.strip() or None


def test_task_container_removed_by_hand_is_replaced(swarm):
    wrk1 = swarm.cluster["wrk1"]
    try:
        swarm.create("byhand", "--constraint", "node.hostname==wrk1", "--restart-delay", "1s",
                     swarm.image, "sleep", "3600")
        [task] = wait_for("the task running", lambda: swarm.running("byhand", 1), cluster=swarm.cluster)
        assert task["NodeID"] == swarm.node_ids["wrk1"]
        container = _task_container(wrk1, task["ID"])
        assert container
        core(wrk1, "rm", "-f", container)
        [new] = wait_for("a new task running",
                         lambda: [t for t in swarm.running("byhand", 1) or [] if t["ID"] != task["ID"]],
                         cluster=swarm.cluster)
        assert new["Slot"] == task["Slot"] and new["NodeID"] == swarm.node_ids["wrk1"]
        [old] = [t for t in swarm.tasks("byhand") if t["ID"] == task["ID"]]
        assert old["Status"]["State"] == "failed" and old["DesiredState"] == "shutdown"
        assert old["Status"]["Err"] == "task: non-zero exit (137)"  # rm -f kills it first, as docker says
        assert _task_container(wrk1, new["ID"])
    finally:
        swarm.rm("byhand")


def test_drain_moves_tasks_off_the_node(swarm):
    mgr = swarm.mgr
    try:
        swarm.create("drainy", "--replicas", "3", swarm.image, "sleep", "3600")
        live = wait_for("3 tasks running", lambda: swarm.running("drainy", 3), cluster=swarm.cluster)
        assert swarm.node_ids["wrk2"] in {t["NodeID"] for t in live}
        core(mgr, "node", "update", "--availability", "drain", "wrk2")
        live = wait_for("3 tasks running off wrk2", lambda: (lambda ts: ts if ts and all(
            t["NodeID"] != swarm.node_ids["wrk2"] for t in ts) else None)(swarm.running("drainy", 3)),
            cluster=swarm.cluster)
        wait_for("the drained tasks shut down", lambda: all(
            t["DesiredState"] == "shutdown" and t["Status"]["State"] == "shutdown"
            for t in swarm.tasks("drainy") if t["NodeID"] == swarm.node_ids["wrk2"]), cluster=swarm.cluster)
        assert core(mgr, "node", "inspect", "--format", "{{.Spec.Availability}}", "wrk2") == "drain\n"
        wait_for("no task container left on wrk2",
                 lambda: core(swarm.cluster["wrk2"], "ps", "-q", "--filter",
                              "label=com.docker.swarm.service.name=drainy") == "", cluster=swarm.cluster)
    finally:
        core(mgr, "node", "update", "--availability", "active", "wrk2")
        swarm.rm("drainy")


def test_daemon_restart_on_a_node_reschedules_nothing(swarm):
    mgr, wrk2 = swarm.mgr, swarm.cluster["wrk2"]
    # a restart takes longer than 1.5 heartbeats of 1 s: the node would be marked down
    core(mgr, "swarm", "update", "--dispatcher-heartbeat", "20s")
    try:
        swarm.create("steady", "--replicas", "2", "--constraint", "node.hostname==wrk2",
                     swarm.image, "sleep", "3600")
        before = wait_for("2 tasks running", lambda: swarm.running("steady", 2), cluster=swarm.cluster)
        containers = {t["ID"]: _task_container(wrk2, t["ID"]) for t in before}
        started = core(wrk2, "inspect", "--format", "{{.State.StartedAt}}", *containers.values())
        time.sleep(2.5)  # the agent has heard the new period
        wrk2.stop()
        wrk2.start()
        wait_for("wrk2 ready", lambda: swarm.api.inspect_node("wrk2")["Status"]["State"] == "ready",
                 cluster=swarm.cluster)
        time.sleep(3)  # time for the worker to re-adopt and report
        after = swarm.running("steady", 2)
        assert after and {t["ID"] for t in after} == set(containers)
        assert len(swarm.tasks("steady")) == 2  # no task was replaced
        assert {t["ID"]: _task_container(wrk2, t["ID"]) for t in after} == containers
        # the same containers, never restarted
        assert core(wrk2, "inspect", "--format", "{{.State.StartedAt}}", *containers.values()) == started
        assert swarm.node_states() == ["ready"] * 3
    finally:
        core(mgr, "swarm", "update", "--dispatcher-heartbeat", "1s")
        swarm.rm("steady")
    # back to 1 s: the nodes beat every 10 s until they hear it, and are not marked down meanwhile
    for _ in range(48):
        assert swarm.node_states() == ["ready"] * 3
        time.sleep(0.25)


def test_worker_cut_off_has_its_tasks_replaced_elsewhere(swarm):
    wrk1 = swarm.cluster["wrk1"]
    wrk1_id = swarm.node_ids["wrk1"]
    assert swarm.node_states() == ["ready"] * 3
    try:
        swarm.create("cutoff", "--replicas", "3", swarm.image, "sleep", "3600")
        live = wait_for("3 tasks running", lambda: swarm.running("cutoff", 3), cluster=swarm.cluster)
        moved = [t["ID"] for t in live if t["NodeID"] == wrk1_id]
        assert moved
        wrk1.cut()
        try:
            wait_for("wrk1 down", lambda: swarm.api.inspect_node("wrk1")["Status"]["State"] == "down",
                     cluster=swarm.cluster)
            live = wait_for("3 tasks running elsewhere", lambda: (lambda ts: ts if ts and all(
                t["NodeID"] != wrk1_id for t in ts) else None)(swarm.running("cutoff", 3)),
                timeout=60, cluster=swarm.cluster)
            assert sorted(t["Slot"] for t in live) == [1, 2, 3]
            old = [t for t in swarm.tasks("cutoff") if t["ID"] in moved]
            assert all(t["Status"]["State"] == "orphaned" and t["DesiredState"] == "shutdown" for t in old)
        finally:
            wrk1.restore()
        wait_for("wrk1 ready again", lambda: swarm.api.inspect_node("wrk1")["Status"]["State"] == "ready",
                 cluster=swarm.cluster)
        wait_for("the orphaned containers removed from wrk1",
                 lambda: core(wrk1, "ps", "-q", "--filter", "label=com.docker.swarm.service.name=cutoff") == "",
                 cluster=swarm.cluster)
    finally:
        swarm.rm("cutoff")
    assert "leader loop" not in swarm.mgr.log()  # the loop never failed


def test_swarm_events_through_the_docker_sdk(swarm):
    """``GET /events`` on the manager shows docker's swarm events (scope ``swarm``): a service's
    create, its updates with what changed (replicas, update state), its removal; a node's update
    with its availability."""
    mgr = swarm.mgr
    client = mgr.docker()
    t0 = time.time()
    try:
        service_id = swarm.create("evt", "--replicas", "1", "--update-delay", "0s", "--update-monitor", "1s",
                                  swarm.image, "sleep", "3600")
        wait_for("1 task running", lambda: swarm.running("evt", 1), cluster=swarm.cluster)
        core(mgr, "service", "scale", "-d", "evt=2")
        wait_for("2 tasks running", lambda: swarm.running("evt", 2), cluster=swarm.cluster)
        core(mgr, "service", "update", "-d", "--env-add", "A=1", "evt")
        _update_status(swarm, "evt", "completed")
        core(mgr, "node", "update", "--availability", "pause", "wrk1")
        core(mgr, "node", "update", "--availability", "active", "wrk1")
    finally:
        swarm.rm("evt")

    def seen(**filters: Any) -> list[dict[str, Any]]:
        return list(client.events(since=t0, until=time.time(), decode=True, filters=filters))

    def service_events() -> list[tuple[str, dict[str, str]]] | None:
        events = [(e["Action"], e["Actor"]["Attributes"]) for e in seen(type="service", scope="swarm")
                  if e["Actor"]["ID"] == service_id]
        return events if events and events[-1][0] == "remove" else None

    events = wait_for("the service's removal event", service_events, timeout=20, cluster=swarm.cluster)
    assert events[0] == ("create", {"name": "evt"})
    assert ("update", {"name": "evt", "replicas.old": "1", "replicas.new": "2"}) in events
    assert ("update", {"name": "evt", "updatestate.new": "updating"}) in events
    assert ("update", {"name": "evt", "updatestate.old": "updating", "updatestate.new": "completed"}) in events
    assert events[-1] == ("remove", {"name": "evt"})
    # docker's service filter: the actor's ID or name starts with it (the task containers' names too)
    named = seen(service="evt")
    assert "service" in {e["Type"] for e in named} and {e["Type"] for e in named} <= {"service", "container"}
    assert all(e["Actor"]["Attributes"]["name"].startswith("evt") for e in named)
    nodes = [e["Actor"]["Attributes"] for e in seen(type="node") if e["Actor"]["ID"] == swarm.node_ids["wrk1"]]
    assert {"name": "wrk1", "availability.old": "active", "availability.new": "pause"} in nodes
    assert {"name": "wrk1", "availability.old": "pause", "availability.new": "active"} in nodes
    assert not [e for e in seen(scope="swarm") if e["Type"] not in ("service", "node", "network")]
    # core's CLI, docker's line format
    out = core(mgr, "events", "--since", str(t0), "--until", str(time.time()), "--filter", "type=service",
               "--filter", "event=create")
    assert out.count("\n") == 1 and f" service create {service_id} (name=evt)" in out


def test_service_logs_follow_tasks_started_later(swarm):
    """``service logs -f --tail 1 -t``: the last line of the task there is, then every line of a task
    that starts after the command began (scaled up), each with its time and task prefix."""
    import subprocess
    import threading

    from tests.support.hosts import CORE

    mgr = swarm.mgr
    proc = None
    try:
        swarm.create("talk", "--replicas", "1", "--hostname", "talk-{{.Task.Slot}}", swarm.image,
                     "sh", "-c", "echo one; echo two $(hostname); sleep 3600")
        wait_for("1 task running", lambda: swarm.running("talk", 1), cluster=swarm.cluster)
        wait_for("its output", lambda: "two talk-1" in core(mgr, "service", "logs", "talk"), cluster=swarm.cluster)
        proc = subprocess.Popen([*mgr.launcher, *CORE, "service", "logs", "-f", "--tail", "1", "-t", "talk"],
                                env=mgr.env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        lines: list[str] = []
        threading.Thread(target=lambda: lines.extend(iter(proc.stdout.readline, "")), daemon=True).start()
        wait_for("the first task's last line", lambda: any("two talk-1" in line for line in lines),
                 cluster=swarm.cluster)
        core(mgr, "service", "scale", "-d", "talk=2")
        wait_for(f"the new task's lines (so far {lines})", lambda: sum(" talk.2." in line for line in lines) >= 2,
                 timeout=60, cluster=swarm.cluster)
        assert not any(line.endswith("| one\n") and " talk.1." in line for line in lines)  # --tail 1
        new = [line for line in lines if " talk.2." in line]
        assert [line.split("| ", 1)[1] for line in new] == ["one\n", "two talk-2\n"]
        for line in lines:  # docker's time first, then the task's prefix
            assert re.match(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{9}Z talk\.[12]\.\w{12}@\w+ +\| ", line), line
        assert proc.poll() is None  # still following
    finally:
        if proc is not None:
            proc.kill()
            proc.wait(timeout=10)
        swarm.rm("talk")
