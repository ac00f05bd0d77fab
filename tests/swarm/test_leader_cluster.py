"""The leader's loop inside real daemons (SwarmService.leader_loops) on the multi-host harness:
one manager and two workers; a service written straight into the managers' etcd (the service API
is another part's) gets its tasks created and assigned over the nodes, and a worker cut off from
the others has its tasks orphaned and assigned elsewhere once it is marked down.  The nodes' agents
run the tasks (a small image from the test registry)."""
from __future__ import annotations

import shutil
import subprocess
import time
from typing import Any

import pytest
import trio

from core.engine.swarm.etcd import EtcdClient
from core.engine.swarm.store import NODES, SERVICES, TASKS, Store, now_text
from tests.support.swarm import cluster_with_raft_tick

pytestmark = [pytest.mark.slow,
              pytest.mark.skipif(not shutil.which("etcd"), reason="etcd (etcd-server) is not installed"),
              pytest.mark.skipif(not shutil.which("docker"), reason="the docker CLI is not installed")]


def ok(host, *args: str) -> str:
    proc = subprocess.run(["docker", *args], env={**host.env, "DOCKER_CLI_HINTS": "false"},
                          capture_output=True, text=True, timeout=60)
    assert proc.returncode == 0, f"[{host.name}] docker {' '.join(args)}: {proc.stderr}\n{host.log()}"
    return proc.stdout


@pytest.fixture(scope="module")
def swarm(test_images):
    c = cluster_with_raft_tick((1, 2), "0.1")
    try:
        c.forward_loopback(test_images.registry.port)
        c.image = test_images["busybox:latest"].reference
        mgr = c["mgr1"]
        ok(mgr, "swarm", "init", "--advertise-addr", f"{mgr.address}:2377", "--listen-addr",
           f"{mgr.address}:2377", "--dispatcher-heartbeat", "1s")
        token = ok(mgr, "swarm", "join-token", "-q", "worker").strip()
        for host in c.workers:
            ok(host, "swarm", "join", "--token", token, f"{mgr.address}:2377",
               "--advertise-addr", host.address, "--listen-addr", f"{host.address}:2377")
        yield c
    finally:
        c.close()


def store_call(cluster, afn) -> Any:
    """Run ``afn(store)`` against the manager's etcd member (its local unix socket)."""
    sock = cluster["mgr1"].data_root / "swarm" / "etcd.sock:0"

    async def main():
        async with EtcdClient(sock, timeout=10) as client:
            return await afn(Store(client))
    return trio.run(main)


def wait_tasks(cluster, check, timeout: float = 30.0) -> list[dict]:
    deadline = time.monotonic() + timeout
    last: Any = None
    while time.monotonic() < deadline:
        async def read(store):
            return [t for t, _v in await store.objects(TASKS)], {n["ID"]: n for n, _v in await store.nodes()}
        tasks, nodes = store_call(cluster, read)
        last = tasks
        if check(tasks, nodes):
            return tasks
        time.sleep(0.2)
    raise AssertionError(f"timed out: {last!r}\n{cluster['mgr1'].log()[-3000:]}")


def test_service_tasks_assigned_and_moved_off_a_down_node(swarm):
    service = {"ID": "svc0000000000000000000001", "CreatedAt": now_text(),
               "Spec": {"Name": "web", "Labels": {}, "Mode": {"Replicated": {"Replicas": 6}},
                        "TaskTemplate": {"ContainerSpec": {"Image": swarm.image,
                                                           "Command": ["sleep", "1000"]},
                                         "ForceUpdate": 0}}}
    wait_tasks(swarm, lambda tasks, nodes: len(nodes) == 3 and all(
        n["Status"]["State"] == "ready" for n in nodes.values()))
    store_call(swarm, lambda store: store.put(SERVICES, service, 0))

    def assigned(tasks, nodes):
        live = [t for t in tasks if t["DesiredState"] in ("ready", "running")]
        return len(live) == 6 and all(t["Status"]["State"] == "running" for t in live)
    tasks = wait_tasks(swarm, assigned, timeout=60)
    by_node: dict[str, int] = {}
    for t in tasks:
        if t["DesiredState"] not in ("ready", "running"):
            continue
        by_node[t["NodeID"]] = by_node.get(t["NodeID"], 0) + 1
    assert sorted(by_node.values()) == [2, 2, 2]

    wrk1 = swarm["wrk1"]
    wrk1_id = next(n["ID"] for n, _v in store_call(swarm, lambda s: s.nodes())
                   if n["Description"]["Hostname"] == "wrk1")
    moved = [t["ID"] for t in tasks if t["NodeID"] == wrk1_id and t["DesiredState"] == "running"]
    wrk1.cut()
    try:
        def replaced(tasks, nodes):
            if nodes[wrk1_id]["Status"]["State"] != "down":
                return False
            old = {t["ID"]: t for t in tasks if t["ID"] in moved}
            live = [t for t in tasks if t["DesiredState"] in ("ready", "running")]
            return (all(o["Status"]["State"] == "orphaned" and o["DesiredState"] == "shutdown"
                        for o in old.values())
                    and len(live) == 6 and all(t["NodeID"] and t["NodeID"] != wrk1_id for t in live)
                    and sorted({t["Slot"] for t in live}) == [1, 2, 3, 4, 5, 6])
        wait_tasks(swarm, replaced, timeout=60)
    finally:
        wrk1.restore()

    store_call(swarm, lambda store: store.delete(SERVICES, service["ID"]))
    wait_tasks(swarm, lambda tasks, nodes: not [t for t in tasks if t["DesiredState"] != "remove"])
    assert "leader loop" not in swarm["mgr1"].log()  # the loop never failed
