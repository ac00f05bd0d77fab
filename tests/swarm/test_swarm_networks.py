"""Swarm-scoped networks (core.engine.swarm.networks): overlay networks as cluster objects.

Two parts, in file order:

- the allocation against one real etcd member on loopback (Debian's etcd-server, the client on a
  unix socket): VNIs and subnets of networks that several "managers" (one etcd client each)
  create at once, and endpoint addresses that concurrent allocators take (a hypothesis property);
- the engine's networks API on a swarm of the multi-host harness (2 managers, 1 worker), with
  ``core`` CLI, the docker CLI and the Docker SDK: ``network create -d overlay`` on a manager,
  shown by the other, refused on the worker and outside a swarm, overlapping subnets refused,
  ``ingress`` from ``swarm init`` on every node, ``rm`` (refused while a service uses it),
  ``prune``, and what ``swarm leave`` leaves.
"""
from __future__ import annotations

import contextlib
import ipaddress
import json
import shutil
import subprocess
import threading
import time
from pathlib import Path
from typing import Any

import pytest
import trio
from hypothesis import HealthCheck, given, settings, strategies as st

from core.engine.swarm import networks as swarm_networks
from core.engine.swarm.ca import ClusterCA
from core.engine.swarm.etcd import Bootstrap, EtcdClient, EtcdMember, EtcdSettings
from core.engine.swarm.networks import (ERR_NOT_MANAGER, ERR_OVERLAP, AddressAllocator, SwarmNetworks,
                                        create_network, parse_request)
from core.engine.swarm.store import NETWORKS, SERVICES, TASKS, ClusterRecord, Store
from core.errors import AlreadyExists, Forbidden, Unavailable
from core.testing import TrioThread
from core.testing.registry_server import free_port
from tests.support.swarm import cluster_with_raft_tick, core_ok as ok, wait_for

pytestmark = [pytest.mark.skipif(not shutil.which("etcd"), reason="etcd (etcd-server) is not installed")]

CLUSTER_SHAPE = (2, 1)
RAFT_TICK = 0.1


# -- one etcd member on loopback -------------------------------------------------------------------

class Etcd:
    """A member in a trio loop of its own; ``run(afn)`` runs a test body in that loop."""

    def __init__(self, root: Path) -> None:
        self.loop = TrioThread(timeout=120)
        self.settings = EtcdSettings(name="n1", data_dir=root / "swarm" / "etcd", advertise_addr="127.0.0.1",
                                     peer_port=free_port(), heartbeat_ms=50, election_ms=500)
        self.member = EtcdMember(self.settings, Bootstrap.new(self.settings))
        self._stop: trio.Event | None = None
        self._done = threading.Event()
        self.error: BaseException | None = None

    def start(self) -> None:
        async def boot() -> None:
            ready = trio.Event()

            async def keeper() -> None:
                try:
                    async with trio.open_nursery() as n:
                        await n.start(self.member.serve)
                        self._stop = trio.Event()
                        ready.set()
                        await self._stop.wait()
                        await self.member.stop()
                        n.cancel_scope.cancel()
                except BaseException as exc:  # noqa: BLE001 - reported to the test
                    self.error = exc
                    ready.set()
                finally:
                    self._done.set()

            trio.lowlevel.spawn_system_task(keeper)
            await ready.wait()
            if self.error is not None:
                raise self.error

        self.loop.run(boot)

    def client(self) -> EtcdClient:
        return EtcdClient(self.settings.socket, timeout=10.0)

    def run(self, afn: Any, timeout: float = 120) -> Any:
        return self.loop.run(afn, timeout=timeout)

    def close(self) -> None:
        async def stop() -> None:
            if self._stop is not None:
                self._stop.set()

        with contextlib.suppress(Exception):
            self.loop.run(stop)
        self._done.wait(30)
        self.loop.close()


@pytest.fixture(scope="module")
def etcd(tmp_path_factory):
    e = Etcd(tmp_path_factory.mktemp("etcd"))
    try:
        e.start()

        async def cluster_object() -> None:
            async with e.client() as c:
                ca = ClusterCA.create()
                record = ClusterRecord({"ID": ca.cluster_id, "Spec": {}, "DefaultAddrPool": ["10.0.0.0/8"],
                                        "SubnetSize": 24}, ca, set(), 0)
                await Store(c).create_cluster(record)

        e.run(cluster_object)
        yield e
    finally:
        e.close()


def _request(name: str, **body: Any) -> dict[str, Any]:
    return parse_request({"Name": name, "Driver": "overlay", **body})


async def _clear(store: Store) -> None:
    """Every network and address gone (each test starts from the ingress network alone)."""
    await store.etcd.delete(NETWORKS, prefix=True)
    await store.etcd.delete(swarm_networks.IPAM, prefix=True)


def test_ingress_and_first_networks_take_dockers_defaults(etcd):
    async def main():
        async with etcd.client() as c:
            store = Store(c)
            await _clear(store)
            ingress = await SwarmNetworks(None).create_ingress(store)  # type: ignore[arg-type]
            assert ingress["Name"] == "ingress" and ingress["Ingress"] is True
            assert ingress["Allocation"] == {"VNI": 4096, "Subnets": [{"Subnet": "10.0.0.0/24",
                                                                       "Gateway": "10.0.0.1"}]}
            shown = swarm_networks.render(ingress)
            assert shown["Scope"] == "swarm" and shown["Driver"] == "overlay"
            assert shown["IPAM"]["Config"] == [{"Subnet": "10.0.0.0/24", "Gateway": "10.0.0.1"}]
            assert shown["Options"] == {"com.docker.network.driver.overlay.vxlanid_list": "4096"}
            net = await create_network(store, _request("uber-net", Options={"encrypted": ""}))
            assert net["Allocation"]["VNI"] == 4097
            assert net["Allocation"]["Subnets"] == [{"Subnet": "10.0.1.0/24", "Gateway": "10.0.1.1"}]
            assert net["Options"] == {"encrypted": "", "com.docker.network.driver.overlay.vxlanid_list": "4097"}
            with pytest.raises(AlreadyExists, match="network with name uber-net already exists"):
                await create_network(store, _request("uber-net"))
            # --subnet: overlapping another swarm network's is refused with docker's words
            with pytest.raises(Forbidden, match=ERR_OVERLAP):
                await create_network(store, _request("x", IPAM={"Config": [{"Subnet": "10.0.1.128/25"}]}))
            given_net = await create_network(store, _request("y", IPAM={"Config": [{"Subnet": "10.0.2.0/24",
                                                                                     "Gateway": "10.0.2.254"}]}))
            assert given_net["Allocation"]["Subnets"] == [{"Subnet": "10.0.2.0/24", "Gateway": "10.0.2.254"}]
            nxt = await create_network(store, _request("z"))  # the pool skips the given subnet
            assert nxt["Allocation"]["Subnets"][0]["Subnet"] == "10.0.3.0/24"
            await swarm_networks.delete_network(store, net["ID"])
            again = await create_network(store, _request("w"))  # freed VNI and subnet are reused
            assert again["Allocation"]["VNI"] == 4097
            assert again["Allocation"]["Subnets"][0]["Subnet"] == "10.0.1.0/24"

    etcd.run(main)


def test_bad_requests_have_clear_errors():
    from core.errors import InvalidArgument, NotFound

    for body, error, words in [
        ({"Name": ""}, InvalidArgument, "network name must not be empty"),
        ({"Name": "a", "EnableIPv6": True}, InvalidArgument, "IPv6 is not supported"),
        ({"Name": "a", "IPAM": {"Config": [{"Subnet": "10.1.0.0/33"}]}}, InvalidArgument, "invalid subnet"),
        ({"Name": "a", "IPAM": {"Driver": "other"}}, NotFound, 'plugin "other" not found'),
        ({"Name": "a", "Options": {"com.docker.network.driver.mtu": "x"}}, InvalidArgument, "invalid MTU"),
        ({"Name": "a", "IPAM": {"Config": [{"Subnet": "10.1.0.0/24"}, {"Subnet": "10.2.0.0/24"}]}},
         InvalidArgument, "one IPv4 subnet"),
    ]:
        with pytest.raises(error, match=words):
            parse_request({"Driver": "overlay", **body})


def test_managers_creating_networks_at_once_get_unique_vnis_and_subnets(etcd):
    async def main():
        async with etcd.client() as c:
            await _clear(Store(c))
        made: list[dict[str, Any]] = []

        async def manager(i: int) -> None:
            async with etcd.client() as c:  # one client per "manager": real concurrency on etcd
                for j in range(4):
                    made.append(await create_network(Store(c), _request(f"n{i}-{j}")))

        async with trio.open_nursery() as n:
            for i in range(4):
                n.start_soon(manager, i)
        assert len(made) == 16
        vnis = [m["Allocation"]["VNI"] for m in made]
        assert sorted(vnis) == list(range(4096, 4112))
        subnets = [ipaddress.ip_network(m["Allocation"]["Subnets"][0]["Subnet"]) for m in made]
        assert all(not a.overlaps(b) for i, a in enumerate(subnets) for b in subnets[i + 1:])
        async with etcd.client() as c:
            stored = await Store(c).objects(NETWORKS)
        assert {n["ID"] for n, _v in stored} == {m["ID"] for m in made}

        # the same name asked by many managers at once: exactly one wins
        results: list[Any] = []

        async def same(i: int) -> None:
            async with etcd.client() as c:
                try:
                    results.append(await create_network(Store(c), _request("same")))
                except AlreadyExists as exc:
                    results.append(exc)

        async with trio.open_nursery() as n:
            for i in range(4):
                n.start_soon(same, i)
        assert sum(isinstance(r, dict) for r in results) == 1

    etcd.run(main)


_example = iter(range(10_000))


@settings(max_examples=10, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(prefix=st.integers(26, 28), allocators=st.integers(2, 5), each=st.integers(1, 8),
       releases=st.sets(st.integers(0, 39), max_size=10))
def test_addresses_stay_unique_under_concurrent_allocators(etcd, prefix, allocators, each, releases):
    """Property: whatever the subnet size and the number of concurrent allocators, the addresses
    handed out are distinct, in the subnet, never its gateway; a full subnet says so; released
    addresses are taken again without duplicates; etcd holds exactly what the owners hold."""
    n = next(_example)
    subnet = ipaddress.ip_network(f"172.31.{n % 250}.0/{prefix}")

    async def main():
        async with etcd.client() as c:
            store = Store(c)
            for net, _v in await store.objects(NETWORKS):
                if net["Name"].startswith("prop-"):
                    await swarm_networks.delete_network(store, net["ID"])
            net = await create_network(store, _request(f"prop-{n}", IPAM={"Config": [{"Subnet": str(subnet)}]}))
        capacity = subnet.num_addresses - 3  # network, broadcast, gateway
        held: dict[str, str] = {}
        full: list[str] = []

        async def allocator(i: int, owners: list[str]) -> None:
            async with etcd.client() as c:
                alloc = AddressAllocator(Store(c))
                for owner in owners:
                    try:
                        address = await alloc.allocate(net["ID"], owner)
                    except Unavailable as exc:
                        assert "no available IPv4 addresses" in str(exc)
                        full.append(owner)
                        continue
                    assert owner not in held
                    held[owner] = address

        async def round_(owners_of: list[list[str]]) -> None:
            async with trio.open_nursery() as nursery:
                for i, owners in enumerate(owners_of):
                    nursery.start_soon(allocator, i, owners)

        def check() -> None:
            ips = [a.split("/")[0] for a in held.values()]
            assert len(ips) == len(set(ips))
            assert all(ipaddress.ip_address(ip) in subnet and a.endswith(f"/{prefix}")
                       for ip, a in zip(ips, held.values()))
            assert str(subnet.network_address + 1) not in ips
            assert len(held) == min(capacity, len(held) + len(full))

        await round_([[f"t{i}-{j}" for j in range(each)] for i in range(allocators)])
        check()
        assert len(held) == min(capacity, allocators * each)
        async with etcd.client() as c:
            alloc = AddressAllocator(Store(c))
            owners = sorted(held)
            for k in sorted(releases):
                if k < len(owners):
                    assert await alloc.release(net["ID"], held.pop(owners[k]), owners[k])
            assert not await alloc.release(net["ID"], "172.31.255.1", "nobody")
        full.clear()
        await round_([[f"u{i}-{j}" for j in range(each)] for i in range(allocators)])
        check()
        async with etcd.client() as c:
            alloc = AddressAllocator(Store(c))
            stored = await alloc.addresses(net["ID"])
            assert {ip: owner for owner, a in held.items() for ip in [a.split("/")[0]]} == stored
            some = next(iter(held))  # asking again for the same owner gives the same address
            assert await alloc.allocate(net["ID"], some) == held[some]
            await swarm_networks.delete_network(Store(c), net["ID"])
            assert await alloc.addresses(net["ID"]) == {}

    etcd.run(main)


def test_what_a_node_shows_and_what_a_removal_checks(etcd):
    """A worker is told of ingress and of the networks its tasks use; a network a service names
    (or a running task uses) cannot be removed (swarmkit's words)."""
    async def main():
        async with etcd.client() as c:
            store = Store(c)
            await _clear(store)

            class FakeSwarm:
                local = {"Role": "manager", "NodeID": "m1"}
                state = "active"
                client = None

                def _store(self) -> Store:
                    return store

                _require_manager = _store

            nets = SwarmNetworks(FakeSwarm())  # type: ignore[arg-type]
            await nets.create_ingress(store)
            a = (await nets.create_network({"Name": "a", "Driver": "overlay"}))["Id"]
            b = (await nets.create_network({"Name": "b", "Driver": "overlay"}))["Id"]
            task = {"ID": "t1", "NodeID": "w1", "Status": {"State": "running"}, "DesiredState": "running",
                    "Spec": {"Networks": [{"Target": a}]}}
            await store.put(TASKS, task)

            class Peer:
                node_id = "w1"

            shown = await nets._node_networks(Peer(), {})
            assert sorted(n["Name"] for n in shown["networks"]) == ["a", "ingress"]
            with pytest.raises(Exception, match=f"network {a} is in use by task t1"):
                await nets.remove_network("a")
            await store.put(SERVICES, {"ID": "s1", "Spec": {"TaskTemplate": {"Networks": [{"Target": b}]},
                                                            "EndpointSpec": {"Ports": [{"PublishedPort": 80,
                                                                                        "TargetPort": 80}]}}})
            with pytest.raises(Exception, match=f"network {b} is in use by service s1"):
                await nets.remove_network(b[:6])
            with pytest.raises(Exception, match="ingress network cannot be removed because service s1"):
                await nets.remove_network("ingress")
            assert await nets.prune() == []  # everything is in use (or ingress)
            await store.delete(SERVICES, "s1")
            await store.delete(TASKS, "t1")
            assert sorted(await nets.prune()) == ["a", "b"]
            assert [n["Name"] for n in await nets.list_networks()] == ["ingress"]
            await nets.remove_network("ingress")
            assert await nets.list_networks() == []

    etcd.run(main)


def test_a_tasks_attachments_in_dockers_shape(etcd):
    """What the leader's loops call when they create a task: its NetworksAttachments (ingress
    first when it publishes ports), all or nothing, given back by detach."""
    from core.errors import NotFound

    async def main():
        async with etcd.client() as c:
            store = Store(c)
            await _clear(store)
            ingress = await SwarmNetworks(None).create_ingress(store)  # type: ignore[arg-type]
            net = await create_network(store, _request("uber-net", Labels={"a": "b"}, Attachable=True))
            alloc = AddressAllocator(store)
            atts = await alloc.attach([{"Target": "uber-net"}, net["ID"][:7]], "task1", ingress=True)
            assert [a["Network"]["ID"] for a in atts] == [ingress["ID"], net["ID"]]  # uber-net once
            assert [a["Addresses"] for a in atts] == [["10.0.0.2/24"], ["10.0.1.2/24"]]
            shown = atts[1]["Network"]
            assert shown["Spec"]["Name"] == "uber-net" and shown["Spec"]["Attachable"] is True
            assert shown["Spec"]["Labels"] == {"a": "b"} and shown["Version"]["Index"] > 0
            assert shown["DriverState"] == {"Name": "overlay", "Options": {
                "com.docker.network.driver.overlay.vxlanid_list": "4097"}}
            assert shown["IPAMOptions"]["Configs"] == [{"Subnet": "10.0.1.0/24", "Gateway": "10.0.1.1"}]
            with pytest.raises(NotFound, match="network nope not found"):
                await alloc.attach(["uber-net", "nope"], "task2")
            assert "task2" not in (await alloc.addresses(net["ID"])).values()  # all or nothing
            await alloc.detach(atts, "task1")
            assert await alloc.addresses(net["ID"]) == {} and await alloc.addresses(ingress["ID"]) == {}

    etcd.run(main)


def test_attachable_networks_give_a_nodes_containers_addresses(etcd):
    """The manager's side of ``networks.attach``/``networks.detach`` (a node's container on an
    attachable network); the node then shows the network."""
    async def main():
        async with etcd.client() as c:
            store = Store(c)
            await _clear(store)

            class FakeSwarm:
                local = {"Role": "manager", "NodeID": "m1"}
                state = "active"
                client = None

                def _store(self) -> Store:
                    return store

                _require_manager = _store

            class Peer:
                node_id = "w1"

            nets = SwarmNetworks(FakeSwarm())  # type: ignore[arg-type]
            await nets.create_ingress(store)
            await nets.create_network({"Name": "att", "Driver": "overlay", "Attachable": True})
            await nets.create_network({"Name": "closed", "Driver": "overlay"})
            with pytest.raises(Forbidden, match="Could not attach to network closed: rpc error: code = "
                                                "PermissionDenied desc = network closed not manually attachable"):
                await nets._attach(Peer(), {"network": "closed", "container": "c1"})
            got = await nets._attach(Peer(), {"network": "att", "container": "c1"})
            assert got["Network"]["Spec"]["Name"] == "att" and got["Addresses"] == ["10.0.1.2/24"]
            assert (await nets._attach(Peer(), {"network": "att", "container": "c1"})) == got  # idempotent
            shown = await nets._node_networks(Peer(), {})
            assert sorted(n["Name"] for n in shown["networks"]) == ["att", "ingress"]
            await store.put_node({"ID": "w1", "Description": {"Hostname": "wrk1"}, "Status": {"Addr": "10.9.0.4"}})
            assert (await nets.inspect_network("att"))["Peers"] == [{"Name": "wrk1", "IP": "10.9.0.4"}]
            await store.put_node({"ID": "m1", "Description": {"Hostname": "mgr1"}, "Status": {"Addr": "10.9.0.2"}})
            task = {"ID": "t9", "NodeID": "m1", "Status": {"State": "running"}, "DesiredState": "running"}
            task["NetworksAttachments"] = await AddressAllocator(store).attach(["att"], "t9")
            await store.put(TASKS, task)
            assert await swarm_networks.peers(store, got["Network"]["ID"]) == [
                {"NodeID": "m1", "Name": "mgr1", "IP": "10.9.0.2", "Endpoints": ["10.0.1.3"]},
                {"NodeID": "w1", "Name": "wrk1", "IP": "10.9.0.4", "Endpoints": ["10.0.1.2"]}]
            await AddressAllocator(store).detach(task["NetworksAttachments"], "t9")
            await store.delete(TASKS, "t9")
            await nets._detach(Peer(), {"network": got["Network"]["ID"], "container": "c1"})
            assert await AddressAllocator(store).addresses(got["Network"]["ID"]) == {}
            shown = await nets._node_networks(Peer(), {})
            assert [n["Name"] for n in shown["networks"]] == ["ingress"]

    etcd.run(main)


def test_the_leader_frees_addresses_whose_owner_is_gone(etcd):
    async def main():
        async with etcd.client() as c:
            store = Store(c)
            await _clear(store)
            await store.etcd.delete(TASKS, prefix=True)
            await store.etcd.delete(SERVICES, prefix=True)
            net = await create_network(store, _request("reap"))
            alloc = AddressAllocator(store)
            await store.put_node({"ID": "n1"})
            await store.put(SERVICES, {"ID": "s1"})
            await store.put(TASKS, {"ID": "live", "Status": {"State": "running"}})
            await store.put(TASKS, {"ID": "done", "Status": {"State": "complete"}})
            names = f"{swarm_networks.NAMES}{net['ID']}/"
            for owner in ("live", "done", "missing", "n1/c1", "n9/c1", "vip:s1", "vip:s9"):
                ip = (await alloc.allocate(net["ID"], owner)).split("/")[0]
                if "/" in owner:  # a node's container: its DNS names are kept with its address
                    await store.etcd.put(names + ip, json.dumps({"owner": owner, "names": ["c1"]}))
            candidates = await swarm_networks.reap_addresses_once(store, {})
            assert len(candidates) == 4  # a first pass only marks them
            assert len(await alloc.addresses(net["ID"])) == 7
            await swarm_networks.reap_addresses_once(store, candidates)
            assert sorted((await alloc.addresses(net["ID"])).values()) == ["live", "n1/c1", "vip:s1"]
            # the gone container's names went with its address (its next holder gets none of them)
            kept = await store.etcd.get_prefix(names)
            assert [json.loads(kv.value)["owner"] for kv in kept] == ["n1/c1"]
            await alloc.release_owner("n1/c1")
            assert await store.etcd.get_prefix(names) == []
            await store.etcd.delete(TASKS, prefix=True)
            await store.etcd.delete(SERVICES, prefix=True)
            await store.etcd.delete(swarm_networks.PREFIX + "nodes/n1")

    etcd.run(main)


# -- on a swarm of the harness ---------------------------------------------------------------------

def core(host, *args: str) -> subprocess.CompletedProcess:
    return host.core(*args, timeout=60)


def docker_cli(host, *args: str) -> subprocess.CompletedProcess:
    return subprocess.run(["docker", *args], env={**host.env, "DOCKER_CLI_HINTS": "false"},
                          capture_output=True, text=True, timeout=60)


def ls(host) -> dict[str, tuple[str, str]]:
    """``network ls`` on ``host``: name -> (driver, scope)."""
    out = ok(host, "network", "ls", "--format", "{{.Name}}|{{.Driver}}|{{.Scope}}")
    return {name: (driver, scope) for name, driver, scope in (l.split("|") for l in out.splitlines())}


def inspect(host, name: str) -> dict[str, Any]:
    return json.loads(ok(host, "network", "inspect", name))[0]


@pytest.fixture(scope="module")
def cluster():
    """2 managers and a worker with a fast Raft tick (the harness's machines)."""
    c = cluster_with_raft_tick(CLUSTER_SHAPE, RAFT_TICK)
    try:
        yield c
    finally:
        c.close()


@pytest.fixture(scope="module")
def swarm(cluster) -> dict[str, Any]:
    """What an engine outside a swarm answers, then the swarm: mgr1 inits with a default address
    pool of its own, mgr2 and wrk1 join."""
    mgr1, mgr2, wrk1 = cluster["mgr1"], cluster["mgr2"], cluster["wrk1"]
    out: dict[str, Any] = {"outside": core(mgr1, "network", "create", "-d", "overlay", "early"),
                           "outside_ls": ls(mgr1)}
    ok(mgr1, "swarm", "init", "--advertise-addr", mgr1.address, "--default-addr-pool", "10.20.0.0/16",
       "--default-addr-pool-mask-length", "26", "--dispatcher-heartbeat", "1s")
    manager_token = ok(mgr1, "swarm", "join-token", "-q", "manager").strip()
    worker_token = ok(mgr1, "swarm", "join-token", "-q", "worker").strip()
    ok(mgr2, "swarm", "join", "--token", manager_token, "--advertise-addr", mgr2.address, f"{mgr1.address}:2377")
    ok(wrk1, "swarm", "join", "--token", worker_token, "--advertise-addr", wrk1.address, f"{mgr1.address}:2377")
    return out


def test_outside_a_swarm_overlay_networks_are_refused(swarm):
    proc = swarm["outside"]
    assert proc.returncode != 0
    assert proc.stderr.strip() == f"Error response from daemon: {ERR_NOT_MANAGER}"
    assert "early" not in swarm["outside_ls"] and "ingress" not in swarm["outside_ls"]


def test_ingress_on_every_node_from_the_default_address_pool(cluster, swarm):
    for host in cluster:
        assert wait_for(f"ingress on {host.name}", lambda: ls(host).get("ingress")) == ("overlay", "swarm")
    net = inspect(cluster["mgr2"], "ingress")
    assert net["Ingress"] is True and net["Scope"] == "swarm" and net["Driver"] == "overlay"
    assert net["IPAM"]["Config"] == [{"Subnet": "10.20.0.0/26", "Gateway": "10.20.0.1"}]
    assert net["Options"] == {"com.docker.network.driver.overlay.vxlanid_list": "4096"}
    assert inspect(cluster["wrk1"], "ingress")["Id"] == net["Id"]
    # the pool shown as docker shows it
    info = cluster["mgr1"].docker().info()["Swarm"]["Cluster"]
    assert info["DefaultAddrPool"] == ["10.20.0.0/16"] and info["SubnetSize"] == 26
    assert "Default Address Pool: 10.20.0.0/16" in ok(cluster["mgr2"], "info")


def test_create_on_a_manager_is_seen_by_the_other_not_by_a_worker_without_tasks(cluster, swarm):
    mgr1, mgr2, wrk1 = cluster["mgr1"], cluster["mgr2"], cluster["wrk1"]
    net_id = ok(mgr1, "network", "create", "-d", "overlay", "--attachable", "--opt", "encrypted",
                "-o", "com.docker.network.driver.mtu=1400", "--label", "book=ch7", "uber-net").strip()
    assert len(net_id) == 25
    assert ls(mgr2)["uber-net"] == ("overlay", "swarm")
    net = inspect(mgr2, "uber-net")
    assert net["Id"] == net_id and net["Scope"] == "swarm" and net["Attachable"] is True
    assert net["Internal"] is False and net["Ingress"] is False and net["Labels"] == {"book": "ch7"}
    assert net["IPAM"]["Config"] == [{"Subnet": "10.20.0.64/26", "Gateway": "10.20.0.65"}]
    assert net["Options"] == {"encrypted": "", "com.docker.network.driver.mtu": "1400",
                              "com.docker.network.driver.overlay.vxlanid_list": "4097"}
    assert inspect(mgr2, net_id[:8])["Name"] == "uber-net"
    # filters
    out = ok(mgr1, "network", "ls", "--filter", "driver=overlay", "--format", "{{.Name}}")
    assert sorted(out.split()) == ["ingress", "uber-net"]
    out = ok(mgr1, "network", "ls", "--filter", "scope=local", "--format", "{{.Name}}")
    assert "uber-net" not in out.split() and "bridge" in out.split()
    # a worker shows the swarm networks it has tasks on: none but ingress
    assert "uber-net" not in ls(wrk1)
    proc = core(wrk1, "network", "inspect", "uber-net")
    assert proc.returncode != 0 and "network uber-net not found" in proc.stderr
    # the docker CLI reads the same
    proc = docker_cli(mgr2, "network", "ls", "--filter", "name=uber-net", "--format", "{{.Driver}} {{.Scope}}")
    assert proc.returncode == 0 and proc.stdout.strip() == "overlay swarm", proc.stderr
    # a name taken: by a swarm network for a local one, and the other way round
    proc = core(mgr2, "network", "create", "uber-net")
    assert proc.returncode != 0 and "network with name uber-net already exists" in proc.stderr
    proc = core(mgr1, "network", "create", "-d", "overlay", "bridge")
    assert proc.returncode != 0 and "network with name bridge already exists" in proc.stderr


def test_refused_on_a_worker_with_dockers_message(cluster, swarm):
    proc = core(cluster["wrk1"], "network", "create", "-d", "overlay", "wnet")
    assert proc.returncode != 0
    assert proc.stderr.strip() == f"Error response from daemon: {ERR_NOT_MANAGER}"
    proc = docker_cli(cluster["wrk1"], "network", "create", "--driver", "overlay", "wnet")
    assert proc.returncode != 0 and ERR_NOT_MANAGER in proc.stderr
    assert "wnet" not in ls(cluster["mgr1"])
    proc = cluster["wrk1"].core("network", "rm", "ingress", input="y\n")
    assert proc.returncode != 0 and swarm_networks.ERR_WORKER in proc.stderr
    proc = core(cluster["wrk1"], "network", "rm", "uber-net")
    assert proc.returncode != 0 and "network uber-net not found" in proc.stderr


def test_overlapping_subnets_are_refused(cluster, swarm):
    mgr1, mgr2 = cluster["mgr1"], cluster["mgr2"]
    proc = core(mgr1, "network", "create", "-d", "overlay", "--subnet", "10.20.0.0/24", "over1")
    assert proc.returncode != 0 and ERR_OVERLAP in proc.stderr  # it covers ingress and uber-net
    ok(mgr1, "network", "create", "-d", "overlay", "--subnet", "192.168.77.0/24", "given")
    proc = core(mgr2, "network", "create", "-d", "overlay", "--subnet", "192.168.77.128/25", "over2")
    assert proc.returncode != 0 and ERR_OVERLAP in proc.stderr
    assert inspect(mgr2, "given")["IPAM"]["Config"] == [{"Subnet": "192.168.77.0/24", "Gateway": "192.168.77.1"}]
    assert "over1" not in ls(mgr2) and "over2" not in ls(mgr2)
    ok(mgr2, "network", "rm", "given")


def test_two_managers_creating_at_once_get_unique_vnis_and_subnets(cluster, swarm):
    results: dict[str, Any] = {}

    def create(host, name: str) -> None:
        try:
            results[name] = host.docker().networks.create(name, driver="overlay").id
        except Exception as exc:  # noqa: BLE001 - reported below
            results[name] = exc

    threads = [threading.Thread(target=create, args=(cluster[h], f"c-{h}-{i}"))
               for i in range(3) for h in ("mgr1", "mgr2")]
    for t in threads:
        t.start()
    for t in threads:
        t.join(120)
    assert all(isinstance(v, str) for v in results.values()), results
    nets = [inspect(cluster["mgr1"], name) for name in results]
    vnis = [n["Options"]["com.docker.network.driver.overlay.vxlanid_list"] for n in nets]
    assert len(set(vnis)) == 6
    subnets = [ipaddress.ip_network(n["IPAM"]["Config"][0]["Subnet"]) for n in nets]
    assert all(not a.overlaps(b) for i, a in enumerate(subnets) for b in subnets[i + 1:])
    assert all(s.subnet_of(ipaddress.ip_network("10.20.0.0/16")) and s.prefixlen == 26 for s in subnets)
    for name in results:
        ok(cluster["mgr2"], "network", "rm", name)


def test_docker_sdk_create_list_get_remove(cluster, swarm):
    client = cluster["mgr2"].docker()
    net = client.networks.create("sdk-net", driver="overlay", attachable=True, internal=True,
                                 labels={"k": "v"})
    assert net.attrs["Scope"] == "swarm"
    assert [n.name for n in client.networks.list(names=["sdk-net"])] == ["sdk-net"]
    assert "sdk-net" in [n.name for n in cluster["mgr1"].docker().networks.list(filters={"driver": "overlay"})]
    got = cluster["mgr1"].docker().networks.get(net.id)
    assert got.name == "sdk-net" and got.attrs["Internal"] is True and got.attrs["Labels"] == {"k": "v"}
    got.remove()
    import docker.errors

    with pytest.raises(docker.errors.NotFound):
        client.networks.get(net.id)


def test_rm_refused_while_a_service_uses_it_then_prune(cluster, swarm):
    mgr1, mgr2 = cluster["mgr1"], cluster["mgr2"]
    net_id = inspect(mgr1, "uber-net")["Id"]
    service = {"ID": "svcnetstest0000000000000", "Spec": {"Name": "uber-svc",
               "TaskTemplate": {"Networks": [{"Target": net_id}]}}}

    async def put_service(delete: bool = False) -> None:  # the services API is another issue's
        async with EtcdClient(EtcdSettings.load(mgr1.data_root / "swarm" / "etcd.json").socket, timeout=10) as c:
            if delete:
                await Store(c).delete(SERVICES, service["ID"])
            else:
                await Store(c).put(SERVICES, service)

    trio.run(put_service)
    try:
        proc = core(mgr2, "network", "rm", "uber-net")
        assert proc.returncode != 0
        assert (f"Error response from daemon: rpc error: code = FailedPrecondition desc = network {net_id} "
                f"is in use by service {service['ID']}") in proc.stderr
        ok(mgr1, "network", "create", "-d", "overlay", "unused")
        out = ok(mgr2, "network", "prune", "-f")
        assert "unused" in out and "uber-net" not in out and "ingress" not in out
        assert set(ls(mgr1)) >= {"uber-net", "ingress"} and "unused" not in ls(mgr1)
    finally:
        trio.run(lambda: put_service(delete=True))
    # the routing mesh's network: docker's question first ("n": kept)
    proc = mgr1.core("network", "rm", "ingress", input="n\n")
    assert proc.returncode == 0 and proc.stdout.startswith("WARNING! Before removing the routing-mesh network")
    assert "ingress" in ls(mgr2)
    assert ok(mgr2, "network", "rm", "uber-net").strip() == "uber-net"
    assert "uber-net" not in ls(mgr1)
    proc = core(mgr1, "network", "rm", "uber-net")
    assert proc.returncode != 0 and "network uber-net not found" in proc.stderr


def test_after_swarm_leave_no_swarm_network_is_left(cluster, swarm):
    wrk1 = cluster["wrk1"]
    assert "ingress" in ls(wrk1)
    ok(wrk1, "swarm", "leave")
    names = ls(wrk1)
    assert "ingress" not in names and not any(scope == "swarm" for _d, scope in names.values())
    # docker_gwbridge, the node's local way out of swarm networks, stays (as docker's does)
    assert set(names) == {"bridge", "host", "none", "docker_gwbridge"}
    assert names["docker_gwbridge"] == ("bridge", "local")


def test_ingress_can_be_removed_when_asked(cluster, swarm):
    mgr1, mgr2 = cluster["mgr1"], cluster["mgr2"]
    proc = mgr1.core("network", "rm", "ingress", input="y\n")
    assert proc.returncode == 0 and proc.stdout.splitlines()[-1].endswith("ingress"), proc.stderr
    assert "ingress" not in ls(mgr2)
    ok(mgr2, "network", "create", "-d", "overlay", "--ingress", "my-ingress")
    net = inspect(mgr1, "my-ingress")
    assert net["Ingress"] is True and net["Options"]["com.docker.network.driver.overlay.vxlanid_list"] == "4096"
    proc = core(mgr1, "network", "create", "-d", "overlay", "--ingress", "second-ingress")
    assert proc.returncode != 0 and "ingress network already exists" in proc.stderr


def test_every_manager_reports_the_swarms_events(cluster, swarm):
    """docker's swarm events (core.engine.swarm.events) come from the cluster's watches: each
    manager reports the changes the other made (network create/remove, a node's availability)."""
    mgr1, mgr2 = cluster["mgr1"], cluster["mgr2"]
    t0 = time.time()
    net_id = ok(mgr1, "network", "create", "-d", "overlay", "evt-net").strip()
    ok(mgr2, "network", "rm", "evt-net")
    ok(mgr2, "node", "update", "--availability", "pause", "mgr1")
    ok(mgr1, "node", "update", "--availability", "active", "mgr1")
    mgr1_id = mgr1.docker().info()["Swarm"]["NodeID"]

    def swarm_events(host) -> list[tuple[str, str, str, dict[str, str]]] | None:
        got = [(e["Type"], e["Action"], e["Actor"]["ID"], e["Actor"]["Attributes"])
               for e in host.docker().events(since=t0, until=time.time(), decode=True, filters={"scope": "swarm"})
               if e["Actor"]["ID"] in (net_id, mgr1_id)]
        return got if len(got) >= 4 else None

    for host in (mgr1, mgr2):
        got = wait_for(f"the swarm's events on {host.name}", lambda: swarm_events(host), timeout=15)
        assert got[:2] == [("network", "create", net_id, {"name": "evt-net"}),
                           ("network", "remove", net_id, {"name": "evt-net"})]
        nodes = [attrs for kind, action, _id, attrs in got if kind == "node" and action == "update"]
        assert {"name": "mgr1", "availability.old": "active", "availability.new": "pause"} in nodes
        assert {"name": "mgr1", "availability.old": "pause", "availability.new": "active"} in nodes
