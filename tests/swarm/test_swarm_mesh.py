"""The book's uber-net / uber-svc walk on the multi-host harness (one manager, two workers):
a service on an overlay network publishing port 80 in ingress mode, with tasks on mgr1 and wrk1
and none on wrk2.  ``core service create --network uber-net -p 80:80 --replicas 2`` (kept off wrk2 by a
constraint), the leader's loops and the nodes' task runners doing the rest.

- port 80 answers on every node's address, wrk2's included (the routing mesh: each node's
  ingress sandbox, nftables dnat over the ingress overlay), and spreads over both tasks;
- inside a task, the service's name is its VIP (balanced over the tasks by nftables in the
  task's namespace) and ``tasks.<service>`` the tasks' addresses, on the overlay;
- after the service and its tasks are gone, no node publishes port 80 any more and the tasks'
  overlay devices are gone.
"""
from __future__ import annotations

import shutil
from typing import Any

import pytest

from core.engine.swarm.store import TASKS, Store
from tests.support.swarm import core_ok as core, wait_for, with_store

pytestmark = [pytest.mark.slow,
              pytest.mark.skipif(not shutil.which("etcd"), reason="etcd (etcd-server) is not installed")]

CLUSTER_SHAPE = (1, 2)
SERVE = ["/bin/sh", "-c", "mkdir -p /www && hostname > /www/index.html && exec httpd -f -p 80 -h /www"]


def fetch(client, address: str) -> str | None:
    proc = client.exec("/bin/busybox", "wget", "-q", "-O", "-", f"http://{address}:80/", timeout=20)
    return proc.stdout.strip() if proc.returncode == 0 else None


@pytest.fixture(scope="module")
def swarm(cluster, test_images) -> dict[str, Any]:
    mgr1, wrk1, wrk2 = cluster["mgr1"], cluster["wrk1"], cluster["wrk2"]
    cluster.forward_loopback(test_images.registry.port)
    core(mgr1, "swarm", "init", "--advertise-addr", mgr1.address, "--dispatcher-heartbeat", "1s")
    token = core(mgr1, "swarm", "join-token", "-q", "worker").strip()
    for w in (wrk1, wrk2):
        core(w, "swarm", "join", "--token", token, "--advertise-addr", w.address, f"{mgr1.address}:2377")
    wait_for("the nodes ready", lambda: core(mgr1, "node", "ls", "--format", "{{.Status}}").split()
             == ["Ready"] * 3)
    net_id = core(mgr1, "network", "create", "-d", "overlay", "uber-net").strip()
    image = test_images["busybox:latest"].reference
    core(mgr1, "service", "create", "-d", "--name", "uber-svc", "--network", "uber-net", "-p", "80:80",
         "--replicas", "2", "--replicas-max-per-node", "1", "--constraint", "node.hostname!=wrk2",
         image, *SERVE)

    def tasks() -> list[dict[str, Any]] | None:
        async def read(store: Store) -> list[dict[str, Any]]:
            return [t for t, _v in await store.objects(TASKS)
                    if t.get("Status", {}).get("State") == "running" and t.get("DesiredState") == "running"]
        found = with_store(mgr1, read)
        return found if len(found) == 2 else None

    running = wait_for("both tasks running", tasks, timeout=120)
    return {"net": net_id, "tasks": running, "image": image}


def test_port_80_answers_on_every_node_and_spreads_over_the_tasks(cluster, swarm):
    mgr1, wrk1, wrk2 = cluster["mgr1"], cluster["wrk1"], cluster["wrk2"]
    names = {core(h, "ps", "-q", "--no-trunc").split()[0][:12] for h in (mgr1, wrk1)}
    for target in (mgr1, wrk1, wrk2):
        for client in (mgr1, wrk2):
            got = wait_for(f"port 80 of {target.name} from {client.name}", lambda: fetch(client, target.address))
            assert got in names
    seen = {fetch(mgr1, wrk2.address) for _ in range(8)}   # wrk2 runs no task
    assert seen == names


def test_inside_a_task_the_service_name_is_its_vip(cluster, swarm):
    mgr1 = cluster["mgr1"]
    task = core(mgr1, "ps", "--format", "{{.Names}}").split()[0]   # mgr1's task

    def vip_on_the_network() -> str | None:   # the API shows the VIPs once the leader wrote them
        svc = mgr1.docker().services.get("uber-svc").attrs
        vips = {v["NetworkID"]: v["Addr"].split("/")[0]
                for v in (svc.get("Endpoint") or {}).get("VirtualIPs") or []}
        return vips.get(swarm["net"])

    vip = wait_for("the service's VIP on its network", vip_on_the_network)

    def lookup() -> str | None:
        out = core(mgr1, "exec", task, "nslookup", "uber-svc", "127.0.0.11")
        return out if vip in out else None

    wait_for("the service's name", lookup)
    addresses = [a["Addresses"][0].split("/")[0] for t in swarm["tasks"] for a in t["NetworksAttachments"]
                 if a["Network"]["ID"] == swarm["net"]]
    tasks_out = core(mgr1, "exec", task, "nslookup", "tasks.uber-svc", "127.0.0.11")
    assert all(a in tasks_out for a in addresses)
    seen = {core(mgr1, "exec", task, "wget", "-q", "-O", "-", "http://uber-svc/").strip() for _ in range(6)}
    assert len(seen) == 2


def test_after_the_service_goes_no_node_publishes_port_80(cluster, swarm):
    mgr1 = cluster["mgr1"]

    core(mgr1, "service", "rm", "uber-svc")
    for host in cluster:
        wait_for(f"{host.name} stops publishing", lambda: "dport 80" not in host.exec(
            "nft", "list", "ruleset", check=True).stdout)
    for host in cluster:
        assert fetch(mgr1, host.address) is None


def test_network_rm_and_swarm_leave_leave_nothing(cluster, swarm):
    mgr1 = cluster["mgr1"]

    def gone() -> bool:
        return all(not core(h, "ps", "-aq") for h in cluster)

    wait_for("the task containers removed", gone)
    # the tasks' shutdown reports may still be on their way to the managers: docker's
    # `network rm` also refuses while a task of the network is not yet down
    wait_for("uber-net removed", lambda: mgr1.core("network", "rm", "uber-net").returncode == 0)
    for host in cluster:
        assert "uber-net" not in core(host, "network", "ls", "--format", "{{.Name}}").split()
    for name in ("wrk2", "wrk1"):
        host = cluster[name]
        core(host, "swarm", "leave")
        links = host.exec("ip", "-o", "link", "show", check=True).stdout
        assert not any(part.strip().startswith("ov") for line in links.splitlines()
                       for part in line.split(":")[1:2]), links
        assert "core-mesh" not in host.exec("nft", "list", "tables", check=True).stdout
