"""The managers' pushes of networks' state (:class:`core.engine.swarm.netpush.NetworkPush`):
what a change in etcd marks (pure), and, against one real etcd member, what is sent to whom
(the nodes a network spans; every session when a network is made).  On real nodes:
tests/swarm/test_swarm_overlay.py (a new container is reached from another node well before the
nodes' backstop poll)."""
from __future__ import annotations

import shutil

import pytest
import trio

from core.engine.swarm import tasks as swarm_tasks
from core.engine.swarm.ca import ClusterCA
from core.engine.swarm.netpush import NetworkPush
from core.engine.swarm.networks import (ADDRESSES, NAMES, AddressAllocator, SwarmNetworks,
                                        create_network, parse_request)
from core.engine.swarm.store import NETWORKS, NODES, SERVICES, TASKS, ClusterRecord, Store, now_text
from core.engine.swarm.vip import VIPS


def push() -> NetworkPush:
    return NetworkPush(None, None)  # type: ignore[arg-type]


def attached(*nets: str) -> dict:
    return {"NetworksAttachments": [{"Network": {"ID": n}, "Addresses": ["10.0.0.5/24"]} for n in nets]}


def test_a_task_marks_the_networks_it_is_and_was_on():
    p = push()
    p.note(TASKS + "t1", attached("n1"), {})
    assert p._dirty == {"n1"} and not p._all and p._wake.is_set()
    p._dirty.clear()
    p.note(TASKS + "t1", {}, attached("n1", "n2"))  # deleted: its old networks
    assert p._dirty == {"n1", "n2"}
    p._dirty.clear()
    p.note(TASKS + "t2", {"Spec": {}}, {})  # on no network: nothing
    assert p._dirty == set()


def test_addresses_and_names_mark_their_network():
    p = push()
    p.note(ADDRESSES + "n1/10.0.0.7", {}, {})
    p.note(NAMES + "n2/10.0.1.7", {"names": ["c1"]}, {})
    assert p._dirty == {"n1", "n2"} and not p._all


def test_a_node_marks_every_network_only_when_its_address_moves():
    p = push()
    up = {"Status": {"State": "ready", "Addr": "10.1.0.11"}}
    p.note(NODES + "a", {"Status": {"State": "down", "Addr": "10.1.0.11"}}, up)
    assert not p._all  # a state change: the peers do not move
    p.note(NODES + "a", {"Status": {"State": "ready", "Addr": "10.1.0.12"}}, up)
    assert p._all
    p._all = False
    p.note(NODES + "b", {}, up)  # removed
    assert p._all


def test_services_and_vips_mark_every_network_and_networks_are_listed_when_made_or_removed():
    p = push()
    p.note(SERVICES + "s1", {"Spec": {}}, {})
    assert p._all
    p._all = False
    p.note(VIPS + "s1", {}, {})
    assert p._all
    p.note(NETWORKS + "n9", {"ID": "n9"}, {})
    assert p._listed == {"n9"} and "n9" in p._dirty
    p._listed.clear()
    p.note(NETWORKS + "n9", {"ID": "n9", "Labels": {"a": "b"}}, {"ID": "n9"})  # an update
    assert p._listed == set()


def test_other_keys_wake_nothing():
    p = push()
    p.note("/swarm/sessions/x", {"Beat": 3}, {})
    assert not p._wake.is_set() and not p._dirty and not p._all


# -- against one real etcd member (the networks tests' fixture): what is sent, to whom --------

class FakeSessions:
    def __init__(self, nodes: list[str]) -> None:
        self.nodes = nodes
        self.sent: list[tuple[str, dict]] = []

    def send(self, node_id: str, message: dict) -> bool:
        if node_id not in self.nodes:
            return False
        self.sent.append((node_id, message))
        return True


@pytest.fixture(scope="module")
def etcd(tmp_path_factory):
    if not shutil.which("etcd"):
        pytest.skip("etcd (etcd-server) is not installed")
    from tests.swarm.test_swarm_networks import Etcd

    e = Etcd(tmp_path_factory.mktemp("etcd"))
    try:
        e.start()

        async def cluster_object() -> None:  # the default address pool comes from it
            async with e.client() as c:
                ca = ClusterCA.create()
                await Store(c).create_cluster(ClusterRecord(
                    {"ID": ca.cluster_id, "Spec": {}, "DefaultAddrPool": ["10.0.0.0/8"], "SubnetSize": 24},
                    ca, set(), 0))

        e.run(cluster_object)
        yield e
    finally:
        e.close()


def test_a_networks_new_endpoint_is_pushed_to_the_nodes_it_spans_only(etcd):
    sessions = FakeSessions(["n1", "n2", "n3"])

    async def until(check, timeout: float = 10.0):
        with trio.fail_after(timeout):
            while not check():
                await trio.sleep(0.02)

    def items(node: str) -> list[dict]:
        return [m["networks"] for n, m in sessions.sent if n == node and "networks" in m]

    async def main():
        async with etcd.client() as c:
            store = Store(c)
            for nid, addr in (("n1", "10.9.0.11"), ("n2", "10.9.0.12"), ("n3", "10.9.0.13")):
                await store.put_node({"ID": nid, "Description": {"Hostname": nid},
                                      "Status": {"State": "ready", "Addr": addr}})
            await SwarmNetworks(None).create_ingress(store)  # type: ignore[arg-type]
            net = await create_network(store, parse_request({"Name": "push-net", "Driver": "overlay"}))
            push = NetworkPush(store, sessions, delay=0.01)

            async def task(tid: str, node: str) -> None:
                await store.put(TASKS, {
                    "ID": tid, "CreatedAt": now_text(), "ServiceID": "", "NodeID": node,
                    "DesiredState": "running", "Status": swarm_tasks.status("assigned", "assigned"),
                    "NetworksAttachments": await AddressAllocator(store).attach([net["ID"]], tid)}, 0)

            async with trio.open_nursery() as nursery:
                nursery.start_soon(push.run)
                await task("ta", "n1")
                await until(lambda: any(net["ID"] in i for i in items("n1")))
                first = [i[net["ID"]] for i in items("n1") if net["ID"] in i][-1]
                assert [p["NodeID"] for p in first["peers"]] == ["n1"] and first["revision"] > 0
                await task("tb", "n2")  # n1 and n2 hear of both; n3, on no such network, nothing
                await until(lambda: any(net["ID"] in i and len(i[net["ID"]]["peers"]) == 2
                                        for i in items("n1")))
                await until(lambda: any(net["ID"] in i for i in items("n2")))
                last = [i[net["ID"]] for i in items("n2") if net["ID"] in i][-1]
                assert sorted(p["VTEP"] for p in last["peers"]) == ["10.9.0.11", "10.9.0.12"]
                assert not any(net["ID"] in i for i in items("n3"))
                # the task on n2 deleted: n2 is told its peers left (it spanned the network)
                sent = len(sessions.sent)
                await store.delete(TASKS, "tb")
                await until(lambda: any(net["ID"] in m["networks"] and
                                        [p["NodeID"] for p in m["networks"][net["ID"]]["peers"]] == ["n1"]
                                        for n, m in sessions.sent[sent:] if n == "n2"))
                # a network made: every session lists its networks again
                other = await create_network(store, parse_request({"Name": "other", "Driver": "overlay"}))
                await until(lambda: all({other["ID"]: None} in items(n) for n in ("n1", "n2", "n3")))
                nursery.cancel_scope.cancel()

    etcd.run(main)
