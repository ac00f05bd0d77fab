"""Service discovery's records (core.engine.swarm.vip) and ``networks.peers`` against one real
etcd member on loopback (the ``etcd`` fixture of test_swarm_networks): services' VIPs allocated
by the leader loop and recorded in ``Endpoint.VirtualIPs``, the names the nodes' DNS answer
(``<service>``, ``tasks.<service>``, dnsrr), the VIP backends (running tasks only: a task wanted
stopped has left the set), a node's attached container with its names, and the VIPs given back.
"""
from __future__ import annotations

import shutil

import pytest

from core.engine.swarm import vip
from core.engine.swarm.networks import AddressAllocator, SwarmNetworks, endpoints_of
from core.engine.swarm.store import SERVICES, TASKS, Store
from tests.swarm.test_swarm_networks import _clear, etcd  # noqa: F401 - the module's fixture

pytestmark = [pytest.mark.skipif(not shutil.which("etcd"), reason="etcd (etcd-server) is not installed")]


def test_vips_names_and_backends(etcd):  # noqa: F811 - the fixture
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
            net_id = (await nets.create_network({"Name": "uber-net", "Driver": "overlay",
                                                 "Attachable": True}))["Id"]
            await store.put_node({"ID": "m1", "Description": {"Hostname": "mgr1"}, "Status": {"Addr": "10.9.0.2"}})
            await store.put_node({"ID": "w1", "Description": {"Hostname": "wrk1"}, "Status": {"Addr": "10.9.0.4"}})
            web = {"ID": "s1", "Spec": {"Name": "Web", "TaskTemplate": {"Networks": [{"Target": "uber-net"}]},
                                        "EndpointSpec": {"Ports": [{"TargetPort": 80, "PublishedPort": 80}]}}}
            rr = {"ID": "s2", "Spec": {"Name": "rr", "TaskTemplate": {"Networks": [{"Target": net_id}]},
                                       "EndpointSpec": {"Mode": "dnsrr"}}}
            await store.put(SERVICES, web, 0)
            await store.put(SERVICES, rr, 0)
            await vip.vips_once(store)
            allocated = await vip.virtual_ips(store)
            got = {s["ID"]: vip.with_vips(s, allocated) for s, _v in await store.objects(SERVICES)}
            vips = got["s1"]["Endpoint"]["VirtualIPs"]
            ingress_id = next(n["Id"] for n in await nets.list_networks() if n["Name"] == "ingress")
            assert [v["NetworkID"] for v in vips] == [ingress_id, net_id]  # ingress first: it publishes
            assert "VirtualIPs" not in (got["s2"].get("Endpoint") or {})
            web_vip = next(v["Addr"] for v in vips if v["NetworkID"] == net_id).split("/")[0]
            before = (await store.get(SERVICES, "s1"))[1]
            await vip.vips_once(store)  # stable: nothing written again, the service never
            assert (await store.get(SERVICES, "s1"))[1] == before and await vip.virtual_ips(store) == allocated

            alloc = AddressAllocator(store)
            tasks = []
            for tid, sid, node, state, desired in (("t1", "s1", "m1", "running", "running"),
                                                   ("t2", "s1", "w1", "running", "running"),
                                                   ("t3", "s1", "w1", "running", "shutdown"),
                                                   ("t4", "s2", "w1", "running", "running"),
                                                   ("t5", "s2", "m1", "starting", "running")):
                task = {"ID": tid, "ServiceID": sid, "NodeID": node, "DesiredState": desired,
                        "Status": {"State": state},
                        "NetworksAttachments": await alloc.attach(["uber-net"], tid)}
                tasks.append(task)
                await store.put(TASKS, task, 0)
            addr = {t["ID"]: t["NetworksAttachments"][0]["Addresses"][0].split("/")[0] for t in tasks}
            records = await vip.service_records(store, net_id)
            assert records["names"] == {"web": [web_vip], "tasks.web": sorted([addr["t1"], addr["t2"]]),
                                        "rr": [addr["t4"]], "tasks.rr": [addr["t4"]]}
            assert records["backends"] == {web_vip: sorted([addr["t1"], addr["t2"]])}

            # a node's attached container with its names, and the tasks, as the nodes see them
            att = await nets._attach(Peer(), {"network": "uber-net", "container": "c1", "names": ["box", "b0x"]})
            box = att["Addresses"][0].split("/")[0]
            peers = {e["Address"]: (e["VTEP"], e["Names"]) for e in await endpoints_of(store, net_id)}
            assert peers[box] == ("10.9.0.4", ["box", "b0x"])
            assert peers[addr["t1"]] == ("10.9.0.2", []) and web_vip not in peers
            await nets._detach(Peer(), {"network": net_id, "container": "c1"})
            assert box not in {e["Address"] for e in await endpoints_of(store, net_id)}

            # a service turned dnsrr gives its VIPs back
            await store.update(SERVICES, "s1", lambda s: s["Spec"].update(EndpointSpec={"Mode": "dnsrr"}))
            await vip.vips_once(store)
            assert "s1" not in await vip.virtual_ips(store)
            assert not any(o == "vip:s1" for o in (await alloc.addresses(net_id)).values())

    etcd.run(main)
