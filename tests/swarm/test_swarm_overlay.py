"""The overlay data path on real nodes (core.engine.networks.swarmlocal + drivers/net_overlay):
containers of two hosts of a swarm (the multi-host harness: 2 managers, 1 worker) on an
attachable overlay network reach each other by address and by name (the embedded DNS answers
the other node's container), over TCP (a download much larger than the MTU), UDP (a datagram
larger than the MTU: fragments through the VXLAN tunnel) and ICMP; a service on the network
answers by its name (VIP, balanced) and ``tasks.<name>`` from a plain container of another
node; ``network connect``/``disconnect``; ``rm`` of the last container
removes the node's overlay devices and its local row of the network; ``swarm leave`` takes a
running container off the overlay and leaves no overlay device on the node; a new container is
reached from another node at once (the managers push the network's state).

One shared cluster for the module: the tests run in file order and build on each other.
"""
from __future__ import annotations

import shutil
import subprocess
import sys
import time
from typing import Any

import pytest
import trio

from core.engine.swarm.vip import virtual_ips
from core.engine.swarm.etcd import CLIENT_SOCKET_NAME, EtcdClient
from core.engine.swarm.store import SERVICES, TASKS, Store
from tests.support.swarm import cluster_fixture, core_ok as ok, wait_for

pytestmark = [pytest.mark.skipif(not shutil.which("etcd"), reason="etcd (etcd-server) is not installed")]

CLUSTER_SHAPE = (2, 1)
RAFT_TICK = 0.1
BIG = 200_000       # bytes served over TCP
DATAGRAM = 3000     # bytes of one UDP datagram (the overlay's MTU is 1450)


def overlay_devices(host) -> list[str]:
    """The overlay driver's devices and the routing mesh's link on ``host``."""
    out = host.exec("ip", "-o", "link", "show", check=True).stdout
    return [line.split(":")[1].strip().split("@")[0] for line in out.splitlines()
            if line.split(":")[1].strip().startswith(("ovb", "ovx", "ove", "ovm"))]


def sandbox(host, name: str) -> str:
    cid = ok(host, "inspect", "-f", "{{.Id}}", name).strip()
    return str(host.exec_root / "netns" / cid[:12])


cluster = cluster_fixture(CLUSTER_SHAPE, RAFT_TICK)


@pytest.fixture(scope="module")
def swarm(cluster, test_images) -> dict[str, Any]:
    mgr1, mgr2, wrk1 = cluster["mgr1"], cluster["mgr2"], cluster["wrk1"]
    ref = test_images["busybox:latest"].reference
    cluster.forward_loopback(int(ref.split("/", 1)[0].rsplit(":", 1)[1]))
    ok(mgr1, "swarm", "init", "--advertise-addr", mgr1.address, "--dispatcher-heartbeat", "1s")
    manager_token = ok(mgr1, "swarm", "join-token", "-q", "manager").strip()
    worker_token = ok(mgr1, "swarm", "join-token", "-q", "worker").strip()
    ok(mgr2, "swarm", "join", "--token", manager_token, "--advertise-addr", mgr2.address, f"{mgr1.address}:2377")
    ok(wrk1, "swarm", "join", "--token", worker_token, "--advertise-addr", wrk1.address, f"{mgr1.address}:2377")
    for host in (mgr1, wrk1):
        ok(host, "pull", ref, timeout=120)
    ok(mgr1, "network", "create", "-d", "overlay", "--attachable", "--subnet", "10.30.0.0/24", "uber-net")
    ok(mgr1, "network", "create", "-d", "overlay", "closed-net")
    # every node's routing mesh: its ingress sandbox on the ingress overlay (devices ovx + ovm)
    baseline = {}
    for host in cluster:
        # complete: its link to the host (ovm) and its endpoint on ingress (the VXLAN device ovx)
        baseline[host.name] = wait_for(f"{host.name}'s ingress sandbox", lambda: sorted(
            d for d in overlay_devices(host)) if {d[:3] for d in overlay_devices(host)} >= {
                "ovm", "ovx"} else None)
    return {"image": ref, "baseline": baseline}


def test_containers_on_two_hosts_talk_over_the_overlay(cluster, swarm):
    mgr1, wrk1 = cluster["mgr1"], cluster["wrk1"]
    image = swarm["image"]
    ok(mgr1, "run", "-d", "--name", "c1", "--network", "uber-net", image, "sh", "-c",
       f"mkdir -p /www && head -c {BIG} /dev/zero > /www/big && echo c1 > /www/who && exec httpd -f -p 80 -h /www")
    ok(wrk1, "run", "-d", "--name", "c2", "--network", "uber-net", image, "sleep", "3600")
    a1 = ok(mgr1, "inspect", "-f", "{{(index .NetworkSettings.Networks \"uber-net\").IPAddress}}", "c1").strip()
    a2 = ok(wrk1, "inspect", "-f", "{{(index .NetworkSettings.Networks \"uber-net\").IPAddress}}", "c2").strip()
    assert a1.startswith("10.30.0.") and a2.startswith("10.30.0.") and a1 != a2
    # the network made locally is the swarm's (same ID, scope swarm)
    net_id = ok(mgr1, "network", "inspect", "-f", "{{.Id}}", "uber-net").strip()
    assert ok(wrk1, "network", "inspect", "-f", "{{.Id}} {{.Scope}} {{.Driver}}", "uber-net").split() == \
        [net_id, "swarm", "overlay"]

    # ICMP by address, a packet larger than the MTU, both ways (the peers are programmed)
    wait_for("c2 pings c1", lambda: wrk1.core("exec", "c2", "ping", "-c1", "-W1", a1).returncode == 0)
    assert wrk1.core("exec", "c2", "ping", "-c1", "-W2", "-s", "3000", a1).returncode == 0
    assert mgr1.core("exec", "c1", "ping", "-c1", "-W2", a2).returncode == 0
    # by name: the embedded DNS answers the other node's container
    wait_for("c2 resolves c1", lambda: wrk1.core("exec", "c2", "ping", "-c1", "-W1", "c1").returncode == 0)
    wait_for("c1 resolves c2", lambda: mgr1.core("exec", "c1", "ping", "-c1", "-W1", "c2").returncode == 0)
    # TCP by name: a download of many MTUs
    got = ok(wrk1, "exec", "c2", "sh", "-c", "wget -q -O - http://c1/big | wc -c")
    assert int(got.strip()) == BIG
    # UDP: one datagram larger than the MTU, from c2's namespace to c1's
    server = subprocess.Popen(
        ["nsenter", f"--net={sandbox(mgr1, 'c1')}", sys.executable, "-c",
         "import socket; s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM); s.bind(('0.0.0.0', 5001));"
         "s.settimeout(20); data, peer = s.recvfrom(65535); print(len(data), peer[0])"],
        stdout=subprocess.PIPE, text=True)
    try:
        time.sleep(0.5)
        subprocess.run(["nsenter", f"--net={sandbox(wrk1, 'c2')}", sys.executable, "-c",
                        f"import socket; s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM);"
                        f"s.sendto(b'x' * {DATAGRAM}, ('{a1}', 5001))"], check=True, timeout=20)
        out, _ = server.communicate(timeout=30)
    finally:
        if server.poll() is None:
            server.kill()
            server.wait()
    assert out.split() == [str(DATAGRAM), a2]


REACH = r"""
import os, socket, sys, time
for dev in os.listdir("/proc/sys/net/ipv4/neigh"):   # ARP retries every 10 ms, not every second
    if dev not in ("default", "lo"):
        with open(f"/proc/sys/net/ipv4/neigh/{dev}/retrans_time_ms", "w") as f:
            f.write("10")
print("ready", flush=True)
addr, t0 = sys.stdin.readline().split()
t0 = float(t0)
while time.time() < t0 + 30:
    c = socket.socket(); c.settimeout(0.05)
    try:
        c.connect((addr, 80))
    except ConnectionRefusedError:
        pass
    except OSError:
        time.sleep(0.005); continue
    finally:
        c.close()
    print(time.time() - t0); sys.exit(0)
sys.exit(1)
"""


def test_a_new_container_is_reached_from_another_node_at_once(cluster, swarm):
    """The managers push a network's new endpoint to the nodes it spans: a container started on
    mgr1 is reached from c2 (wrk1) within a fraction of a second, far sooner than the nodes'
    backstop poll (10 s) would program it."""
    mgr1, wrk1 = cluster["mgr1"], cluster["wrk1"]
    api = mgr1.docker()
    took = []
    try:
        for name in ("c5", "c6", "c7"):
            prober = subprocess.Popen(["nsenter", f"--net={sandbox(wrk1, 'c2')}", sys.executable, "-c", REACH],
                                      stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
            try:
                assert prober.stdout.readline().strip() == "ready"
                c = api.containers.run(swarm["image"], ["sleep", "3600"], name=name, network="uber-net",
                                       detach=True)
                t0 = time.time()
                c.reload()
                address = c.attrs["NetworkSettings"]["Networks"]["uber-net"]["IPAddress"]
                out, _ = prober.communicate(f"{address} {t0}\n", timeout=60)
                assert prober.returncode == 0, f"{name} ({address}) never reached from c2"
                took.append(float(out))
            finally:
                if prober.poll() is None:
                    prober.kill()
                    prober.wait()
        assert max(took) < 3.0, took
    finally:
        for name in ("c5", "c6", "c7"):
            mgr1.core("rm", "-f", name)


def _etcd(host, afn) -> Any:
    """Run ``afn(store)`` against a manager's etcd member (its client socket)."""
    async def main():
        async with EtcdClient(host.data_root / "swarm" / CLIENT_SOCKET_NAME, timeout=10.0) as c:
            return await afn(Store(c))

    return trio.run(main)


def test_service_names_and_vip_balancing(cluster, swarm):
    """A service on the attachable network (two tasks on mgr1): its VIP (allocated by the
    leader), its name and ``tasks.<name>`` in the DNS of a plain container of another node, and
    connections to the VIP balanced over its running tasks by nftables in that container's
    namespace."""
    mgr1, wrk1 = cluster["mgr1"], cluster["wrk1"]
    net_id = ok(mgr1, "network", "inspect", "-f", "{{.Id}}", "uber-net").strip()
    ok(mgr1, "service", "create", "-d", "--name", "web", "--network", "uber-net", "--replicas", "2",
       "--constraint", "node.hostname==mgr1", swarm["image"], "sh", "-c",
       "mkdir -p /www && hostname > /www/who && exec httpd -f -p 80 -h /www")
    try:
        async def state(store: Store) -> tuple[list, list]:
            svc = next(s for s, _v in await store.objects(SERVICES) if s["Spec"]["Name"] == "web")
            running = [t for t, _v in await store.objects(TASKS) if t.get("ServiceID") == svc["ID"]
                       and t["Status"]["State"] == "running"]
            return (await virtual_ips(store)).get(svc["ID"], []), running

        vips, tasks = wait_for("the service's VIP and tasks", lambda: (
            got if (got := _etcd(mgr1, state))[0] and len(got[1]) == 2 else None), timeout=90)
        vip = next(v["Addr"] for v in vips if v["NetworkID"] == net_id).split("/")[0]
        addresses = [a["Addresses"][0].split("/")[0] for t in tasks for a in t["NetworksAttachments"]
                     if a["Network"]["ID"] == net_id]
        assert vip.startswith("10.30.0.") and vip not in addresses
        wait_for("web answers through its VIP", lambda: wrk1.core(
            "exec", "c2", "wget", "-q", "-O", "-", "http://web/who").returncode == 0)
        seen = {ok(wrk1, "exec", "c2", "wget", "-q", "-O", "-", "http://web/who").strip() for _ in range(6)}
        assert len(seen) == 2
        assert ok(wrk1, "exec", "c2", "wget", "-q", "-O", "-", f"http://{vip}/who").strip() in seen
        looked = ok(wrk1, "exec", "c2", "nslookup", "tasks.web", "127.0.0.11")
        assert all(a in looked for a in addresses)
        assert vip in ok(wrk1, "exec", "c2", "nslookup", "web", "127.0.0.11")
    finally:
        mgr1.core("service", "rm", "web")


def test_only_attachable_networks_take_containers(cluster, swarm):
    proc = cluster["wrk1"].core("run", "-d", "--network", "closed-net", swarm["image"], "sleep", "1")
    assert proc.returncode != 0
    assert "not manually attachable" in proc.stderr and "Traceback" not in proc.stderr


def test_network_connect_and_disconnect_of_a_running_container(cluster, swarm):
    wrk1 = cluster["wrk1"]
    ok(wrk1, "run", "-d", "--name", "c4", swarm["image"], "sleep", "3600")
    try:
        ok(wrk1, "network", "connect", "uber-net", "c4")
        address = ok(wrk1, "inspect", "-f", "{{(index .NetworkSettings.Networks \"uber-net\").IPAddress}}", "c4")
        assert address.strip().startswith("10.30.0.")
        wait_for("c4 reaches c1 by name", lambda: wrk1.core("exec", "c4", "ping", "-c1", "-W1", "c1").returncode == 0)
        ok(wrk1, "network", "disconnect", "uber-net", "c4")
        assert "uber-net" not in ok(wrk1, "inspect", "-f",
                                    "{{range $k, $v := .NetworkSettings.Networks}}{{$k}} {{end}}", "c4").split()
        assert wrk1.core("exec", "c4", "ping", "-c1", "-W1", "c1").returncode != 0
    finally:
        wrk1.core("rm", "-f", "c4")


def test_rm_of_the_last_container_removes_the_nodes_overlay(cluster, swarm):
    mgr1 = cluster["mgr1"]
    assert sorted(overlay_devices(mgr1)) != swarm["baseline"]["mgr1"]
    wait_for("the service's tasks gone", lambda: not ok(mgr1, "ps", "-aq", "--filter", "label=com.docker.swarm.task"))
    ok(mgr1, "rm", "-f", "c1")
    wait_for("mgr1 back to its ingress sandbox only",
             lambda: sorted(overlay_devices(mgr1)) == swarm["baseline"]["mgr1"])
    # the swarm's network stays (a manager shows it), the node's own row went
    assert ok(mgr1, "network", "inspect", "-f", "{{.Scope}}", "uber-net").strip() == "swarm"
    # and the address went back: a new container may take it again
    wait_for("c2's peers forget c1", lambda: cluster["wrk1"].core(
        "exec", "c2", "ping", "-c1", "-W1", "c1").returncode != 0)


def test_swarm_leave_leaves_no_overlay_behind(cluster, swarm):
    wrk1 = cluster["wrk1"]
    assert overlay_devices(wrk1)
    ok(wrk1, "swarm", "leave")
    assert overlay_devices(wrk1) == []
    assert "core-mesh" not in wrk1.exec("nft", "list", "tables", check=True).stdout
    assert not list((wrk1.exec_root / "netns").glob("ingress*"))
    assert "uber-net" not in ok(wrk1, "network", "ls", "--format", "{{.Name}}").split()
    nets = ok(wrk1, "inspect", "-f", "{{range $k, $v := .NetworkSettings.Networks}}{{$k}} {{end}}", "c2")
    assert "uber-net" not in nets.split()
    ok(wrk1, "rm", "-f", "c2")
