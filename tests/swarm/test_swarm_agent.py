"""The node side of swarm services on the multi-host harness (one manager, one worker): tasks
written into the store as the leader's scheduler writes them (state ``assigned``, a
``NodeID``) are run by the node's task runner (:mod:`core.engine.swarm.worker`) through its
local engine, and every change comes back through the dispatcher (``tasks.status``).

The leader's loops (orchestrator, scheduler) are not needed here: the tests play the leader
and read the store directly through the manager's etcd socket (the daemons run with
``CORE_SWARM_LEADER_LOOPS=0``).
"""
from __future__ import annotations

import json
import shutil
import sys
import time
from typing import Any

import pytest
import trio

from core.engine.swarm import tasks as swarm_tasks
from core.engine.swarm.store import TASKS, Store, now_text
from tests.support.swarm import core_ok as core, wait_for, with_store

pytestmark = [pytest.mark.slow,
              pytest.mark.skipif(not shutil.which("etcd"), reason="etcd (etcd-server) is not installed")]

CLUSTER_SHAPE = (1, 1)


@pytest.fixture(scope="module", autouse=True)
def no_leader_loops():
    """The tests play the leader (tasks of services that do not exist, which the real
    orchestrator would remove): the daemons run without the leader's loops (autouse: set before
    the module's ``cluster`` starts them)."""
    from core.engine.swarm.leader import LOOPS_ENV

    mp = pytest.MonkeyPatch()
    mp.setenv(LOOPS_ENV, "0")
    yield
    mp.undo()
SERVICE_ID = "svcagent0000000000000000a"


def get_task(host, task_id: str) -> dict[str, Any] | None:
    found = with_store(host, lambda s: s.get(TASKS, task_id))
    return found[0] if found else None


def state_of(host, task_id: str) -> str:
    t = get_task(host, task_id)
    return t["Status"]["State"] if t else ""


def history(host, task_id: str) -> list[str]:
    """Every state the task was stored with, in order (etcd keeps the key's revisions)."""
    async def read(store: Store) -> list[str]:
        kv = await store.etcd.get(TASKS + task_id)
        states = []
        async with store.etcd.watch(TASKS + task_id, start_revision=kv.create_revision) as events:
            with trio.move_on_after(1.0):
                async for e in events:
                    if e.type == "PUT":
                        states.append(e.kv.json()["Status"]["State"])
        return states
    return with_store(host, read)


def put_task(mgr, node_id: str, image: str, *, name: str = "web", slot: int = 1,
             spec: dict[str, Any] | None = None) -> dict[str, Any]:
    task_id = swarm_tasks.new_task_id()
    container_spec = {"Image": image, **(spec or {})}
    task = {"ID": task_id, "CreatedAt": now_text(), "Labels": {},
            "Spec": {"ContainerSpec": container_spec, "RestartPolicy": {"Condition": "none"}},
            "ServiceID": SERVICE_ID, "Slot": slot, "NodeID": node_id,
            "Status": swarm_tasks.status("assigned", "scheduler assigned task to node"),
            "DesiredState": "running", "NetworksAttachments": [],
            "ServiceAnnotations": {"Name": name, "Labels": {}}, "SpecVersion": {"Index": 1}}
    with_store(mgr, lambda s: s.put(TASKS, task, 0))
    return task


def set_desired(mgr, task_id: str, desired: str) -> None:
    def change(t):
        t["DesiredState"] = desired
    with_store(mgr, lambda s: s.update(TASKS, task_id, change))


def container(host, task: dict[str, Any]) -> dict[str, Any] | None:
    proc = host.core("inspect", swarm_tasks.container_name(task))
    return json.loads(proc.stdout)[0] if proc.returncode == 0 else None


@pytest.fixture(scope="module")
def swarm(cluster, test_images) -> dict[str, Any]:
    mgr1, wrk1 = cluster["mgr1"], cluster["wrk1"]
    cluster.forward_loopback(test_images.registry.port)
    core(mgr1, "swarm", "init", "--advertise-addr", f"{mgr1.address}:2377",
         "--listen-addr", f"{mgr1.address}:2377", "--dispatcher-heartbeat", "1s")
    token = core(mgr1, "swarm", "join-token", "-q", "worker").strip()
    core(wrk1, "swarm", "join", "--token", token, "--advertise-addr", wrk1.address,
         "--listen-addr", f"{wrk1.address}:2377", f"{mgr1.address}:2377")
    wait_for("both nodes ready", lambda: core(mgr1, "node", "ls", "--format", "{{.Status}}").split()
             == ["Ready", "Ready"])
    ids = {h: core(mgr1, "node", "inspect", "--format", "{{.ID}}", h).strip() for h in ("mgr1", "wrk1")}
    return {"mgr1": mgr1, "wrk1": wrk1, "ids": ids, "image": test_images["busybox:latest"].reference}


LOOP = ["/bin/sh", "-c", "echo hello from $HOSTNAME; echo oops >&2; exec sleep 1000"]


def test_an_assigned_task_runs_as_docker_names_and_labels_it(swarm):
    mgr1, wrk1 = swarm["mgr1"], swarm["wrk1"]
    task = put_task(mgr1, swarm["ids"]["wrk1"], swarm["image"],
                    spec={"Command": LOOP, "Hostname": "{{.Service.Name}}-{{.Task.Slot}}-{{.Node.Hostname}}",
                          "Env": ["NODE={{.Node.ID}}"], "Labels": {"tier": "front"},
                          "StopGracePeriod": 1_000_000_000})
    swarm["running"] = task
    wait_for("the task running", lambda: state_of(mgr1, task["ID"]) == "running", timeout=60)
    states = history(mgr1, task["ID"])
    assert states[0] == "assigned" and states[-1] == "running", states
    assert all(swarm_tasks.advances(a, b) for a, b in zip(states, states[1:])), states
    stored = get_task(mgr1, task["ID"])
    c = container(wrk1, task)
    assert c is not None and c["State"]["Running"], wrk1.log()
    assert c["Name"] == f"/web.1.{task['ID']}"
    assert stored["Status"]["ContainerStatus"]["ContainerID"] == c["Id"]
    assert c["Config"]["Hostname"] == "web-1-wrk1"
    assert f"NODE={swarm['ids']['wrk1']}" in c["Config"]["Env"]
    labels = c["Config"]["Labels"]
    assert {k: v for k, v in labels.items() if k.startswith("com.docker.swarm") or k == "tier"} == {
        "tier": "front", "com.docker.swarm.task": "", "com.docker.swarm.task.id": task["ID"],
        "com.docker.swarm.task.name": f"web.1.{task['ID']}", "com.docker.swarm.node.id": swarm["ids"]["wrk1"],
        "com.docker.swarm.service.id": SERVICE_ID, "com.docker.swarm.service.name": "web"}
    assert c["HostConfig"]["RestartPolicy"]["Name"] == "no" and not c["HostConfig"]["AutoRemove"]
    assert container(mgr1, task) is None  # only on the node it is assigned to


def test_logs_are_gathered_from_the_worker(swarm):
    mgr1, task = swarm["mgr1"], swarm["running"]
    # a manager's own call on the swarm channel (what GET /tasks/{id}/logs does through
    # SwarmService.logs), run inside mgr1's namespace with mgr1's certificate
    script = f"""
import json, trio
from core.engine.swarm.ca import NodeCredentials
from core.engine.swarm.transport import ManagerClient
async def main():
    client = ManagerClient(NodeCredentials.load({str(mgr1.data_root / 'swarm' / 'certificates')!r}),
                           [{mgr1.address + ':2377'!r}])
    out = {{}}
    for tail in (None, 1):
        out[str(tail)] = []
        async with client.stream("logs.relay", tasks=[{task['ID']!r}], follow=False, tail=tail,
                                 timestamps=False, since=0) as items:
            async for m in items:
                out[str(tail)].append(m)
    await client.aclose()
    print(json.dumps(out))
trio.run(main)
"""
    proc = mgr1.exec(sys.executable, "-c", script, timeout=60)
    assert proc.returncode == 0, proc.stderr
    import base64
    answers = json.loads(proc.stdout)
    got = [(m["task"], m["stream"], base64.b64decode(m["data"])) for m in answers["None"]]
    assert sorted(got) == [(task["ID"], "stderr", b"oops\n"), (task["ID"], "stdout", b"hello from web-1-wrk1\n")]
    assert all(m["time"].endswith("Z") for m in answers["None"])
    assert [(m["stream"], base64.b64decode(m["data"])) for m in answers["1"]] == [("stderr", b"oops\n")]


def test_a_daemon_restart_re_adopts_the_running_task(swarm):
    mgr1, wrk1, task = swarm["mgr1"], swarm["wrk1"], swarm["running"]
    before = container(wrk1, task)
    version = get_task(mgr1, task["ID"])["UpdatedAt"]
    wrk1.stop()
    wrk1.start()
    wait_for("the worker's session again", lambda: core(mgr1, "node", "ls", "--format", "{{.Status}}").split()
             == ["Ready", "Ready"])
    time.sleep(3)  # a few heartbeats: anything reported would be in the store by now
    after = container(wrk1, task)
    assert after["Id"] == before["Id"] and after["State"]["Running"]
    assert after["State"]["StartedAt"] == before["State"]["StartedAt"]
    stored = get_task(mgr1, task["ID"])
    assert stored["Status"]["State"] == "running" and stored["UpdatedAt"] == version
    all_tasks = with_store(mgr1, lambda s: s.objects(TASKS))
    assert [t["ID"] for t, _v in all_tasks if t["ServiceID"] == SERVICE_ID and t["Slot"] == 1] == [task["ID"]]


def test_desired_shutdown_stops_the_container(swarm):
    mgr1, wrk1, task = swarm["mgr1"], swarm["wrk1"], swarm["running"]
    set_desired(mgr1, task["ID"], "shutdown")
    wait_for("the task shut down", lambda: state_of(mgr1, task["ID"]) == "shutdown", timeout=30)
    c = container(wrk1, task)
    assert c is not None and not c["State"]["Running"]  # kept, as docker keeps it, until the task goes
    with_store(mgr1, lambda s: s.delete(TASKS, task["ID"]))  # the task reaper
    wait_for("the container removed", lambda: container(wrk1, task) is None)


def test_a_container_removed_by_hand_is_reported(swarm):
    mgr1, wrk1 = swarm["mgr1"], swarm["wrk1"]
    task = put_task(mgr1, swarm["ids"]["wrk1"], swarm["image"], slot=2, spec={"Command": LOOP})
    wait_for("the task running", lambda: state_of(mgr1, task["ID"]) == "running", timeout=60)
    core(wrk1, "rm", "-f", swarm_tasks.container_name(task))
    wait_for("the task failed", lambda: state_of(mgr1, task["ID"]) == "failed")
    assert get_task(mgr1, task["ID"])["Status"]["Err"].startswith("task: ")


def test_an_exit_is_complete_or_failed_with_dockers_error(swarm):
    mgr1 = swarm["mgr1"]
    ok = put_task(mgr1, swarm["ids"]["mgr1"], swarm["image"], slot=3, spec={"Command": ["true"]})
    bad = put_task(mgr1, swarm["ids"]["mgr1"], swarm["image"], slot=4,
                   spec={"Command": ["/bin/sh", "-c", "exit 3"]})
    try:
        wait_for("both finished", lambda: state_of(mgr1, ok["ID"]) == "complete"
                 and state_of(mgr1, bad["ID"]) == "failed", timeout=60)
    except AssertionError:
        raise AssertionError(f"{get_task(mgr1, ok['ID'])}\n{get_task(mgr1, bad['ID'])}\n{mgr1.log()[-5000:]}")
    status = get_task(mgr1, bad["ID"])["Status"]
    assert status["Err"] == "task: non-zero exit (3)" and status["ContainerStatus"]["ExitCode"] == 3


def test_a_bad_image_is_rejected_with_the_error(swarm):
    mgr1, wrk1 = swarm["mgr1"], swarm["wrk1"]
    image = swarm["image"].rsplit("/", 1)[0] + "/no-such-image:latest"
    task = put_task(mgr1, swarm["ids"]["wrk1"], image, slot=5)
    wait_for("the task rejected", lambda: state_of(mgr1, task["ID"]) == "rejected", timeout=60)
    err = get_task(mgr1, task["ID"])["Status"]["Err"]
    assert "no-such-image" in err, err
    assert container(wrk1, task) is None


def test_a_task_with_a_healthcheck_runs_once_healthy(swarm, test_images):
    mgr1, wrk1 = swarm["mgr1"], swarm["wrk1"]
    pinned = f"{swarm['image']}@{test_images['busybox:latest'].digest}"  # as docker's CLI pins it
    task = put_task(mgr1, swarm["ids"]["wrk1"], pinned, slot=6, spec={
        "Command": ["/bin/sh", "-c", "sleep 2; touch /tmp/ok; exec sleep 1000"],
        "Healthcheck": {"Test": ["CMD-SHELL", "test -e /tmp/ok"], "Interval": 300_000_000,
                        "Retries": 30}})
    wait_for("the container started", lambda: (container(wrk1, task) or {}).get("State", {}).get("Running"),
             timeout=60)
    assert state_of(mgr1, task["ID"]) == "starting"
    wait_for("the task running", lambda: state_of(mgr1, task["ID"]) == "running", timeout=30)
    assert container(wrk1, task)["State"]["Health"]["Status"] == "healthy"
    set_desired(mgr1, task["ID"], "remove")
    wait_for("the task shut down", lambda: state_of(mgr1, task["ID"]) == "shutdown", timeout=30)
    wait_for("its container removed", lambda: container(wrk1, task) is None)


def test_leaving_the_swarm_removes_the_nodes_task_containers(swarm):
    mgr1, wrk1 = swarm["mgr1"], swarm["wrk1"]
    task = put_task(mgr1, swarm["ids"]["wrk1"], swarm["image"], slot=7, spec={"Command": LOOP})
    wait_for("the task running", lambda: state_of(mgr1, task["ID"]) == "running", timeout=60)
    core(wrk1, "run", "-d", "--name", "not-a-task", "--label", "com.docker.swarm.node.id=elsewhere",
         swarm["image"], "sleep", "1000")
    core(wrk1, "swarm", "leave")
    assert container(wrk1, task) is None
    assert wrk1.core("inspect", "not-a-task").returncode == 0  # not a task of this node: kept
    core(wrk1, "rm", "-f", "not-a-task")
