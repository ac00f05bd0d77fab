"""The swarm's events (core.engine.swarm.events) from etcd watch events, and docker's event filters
for them (core.engine.events.matches); end to end on a cluster: tests/swarm/test_services_e2e.py."""
from __future__ import annotations

import json

import trio

from core.engine.events import Events, matches
from core.engine.swarm.etcd import Event, KeyValue
from core.engine.swarm.events import cluster_event
from core.engine.swarm.store import NETWORKS, NODES, SERVICES


def kv(key: str, obj: dict | None, create: int, mod: int) -> KeyValue:
    return KeyValue(key=key, value=json.dumps(obj).encode() if obj is not None else b"",
                    create_revision=create, mod_revision=mod, version=1)


def service(replicas: int = 2, image: str = "img:1", state: str | None = None) -> dict:
    svc = {"ID": "s1", "CreatedAt": "2026-12-07T10:00:00.123456789Z", "UpdatedAt": "2026-12-07T10:00:05.5Z",
           "Spec": {"Name": "web", "Mode": {"Replicated": {"Replicas": replicas}},
                    "TaskTemplate": {"ContainerSpec": {"Image": image}}}}
    if state:
        svc["UpdateStatus"] = {"State": state}
    return svc


def test_service_create_update_remove():
    key = SERVICES + "s1"
    created = cluster_event(SERVICES, Event("PUT", kv(key, service(), 5, 5)))
    assert created == ("service", "create", "s1", {"name": "web"}, 1796637600123456789)
    updated = cluster_event(SERVICES, Event("PUT", kv(key, service(4, "img:2", "updating"), 5, 9),
                                            prev_kv=kv(key, service(), 5, 5)))
    assert updated[:4] == ("service", "update", "s1", {
        "name": "web", "image.old": "img:1", "image.new": "img:2", "replicas.old": "2", "replicas.new": "4",
        "updatestate.new": "updating"})
    assert updated[4] == 1796637605500000000
    done = cluster_event(SERVICES, Event("PUT", kv(key, service(4, "img:2", "completed"), 5, 12),
                                         prev_kv=kv(key, service(4, "img:2", "updating"), 5, 9)))
    assert done[3] == {"name": "web", "updatestate.old": "updating", "updatestate.new": "completed"}
    removed = cluster_event(SERVICES, Event("DELETE", kv(key, None, 0, 14), prev_kv=kv(key, service(), 5, 12)))
    assert removed[:4] == ("service", "remove", "s1", {"name": "web"})


def node(state: str = "ready", availability: str = "active", manager: bool = False) -> dict:
    n = {"ID": "n1", "CreatedAt": "2026-12-07T10:00:00Z", "UpdatedAt": "2026-12-07T10:00:01Z",
         "Spec": {"Role": "worker", "Availability": availability}, "Description": {"Hostname": "wrk1"},
         "Status": {"State": state}}
    if manager:
        n["ManagerStatus"] = {"Addr": "10.0.0.1:2377"}
    return n


def test_node_updates_name_what_changed():
    key = NODES + "n1"
    ev = cluster_event(NODES, Event("PUT", kv(key, node("down", "drain", True), 3, 8), prev_kv=kv(key, node(), 3, 7)))
    assert ev[:4] == ("node", "update", "n1", {
        "name": "wrk1", "state.old": "ready", "state.new": "down", "availability.old": "active",
        "availability.new": "drain", "role.old": "worker", "role.new": "manager"})
    assert cluster_event(NODES, Event("PUT", kv(key, node(), 3, 9), prev_kv=kv(key, node(), 3, 8)))[3] == \
        {"name": "wrk1"}
    net = {"ID": "x1", "Name": "uber-net", "CreatedAt": "2026-12-07T10:00:00Z"}
    assert cluster_event(NETWORKS, Event("PUT", kv(NETWORKS + "x1", net, 4, 4)))[:4] == \
        ("network", "create", "x1", {"name": "uber-net"})


def test_filters_type_scope_and_service():
    swarm_ev = {"Type": "service", "Action": "update", "Actor": {"ID": "abc123", "Attributes": {"name": "web"}},
                "scope": "swarm"}
    local_ev = {"Type": "container", "Action": "start", "Actor": {"ID": "c0ffee", "Attributes": {"name": "db"}},
                "scope": "local"}
    assert matches(swarm_ev, {"type": ["service"]}) and not matches(local_ev, {"type": ["service"]})
    assert matches(swarm_ev, {"scope": ["swarm"]}) and not matches(local_ev, {"scope": ["swarm"]})
    assert matches(local_ev, {"scope": ["local"]}) and not matches(swarm_ev, {"scope": ["local"]})
    # docker's fuzzy match: the actor's ID or name starts with the value, whatever the type
    assert matches(swarm_ev, {"service": ["web"]}) and matches(swarm_ev, {"service": ["abc"]})
    assert not matches(swarm_ev, {"service": ["api"]}) and not matches(local_ev, {"service": ["web"]})
    assert not matches(swarm_ev, {"node": ["n1"]})


def test_emit_with_scope_and_time():
    async def main():
        events = Events()
        async with events.subscribe(filters={"scope": ["swarm"]}) as sub:
            events.emit("container", "start", "c1", {})
            events.emit("service", "create", "s1", {"name": "web"}, scope="swarm", time_ns=1_700_000_000_5 * 10**8)
            got = await sub.__anext__()
        assert got["scope"] == "swarm" and got["Type"] == "service"
        assert got["time"] == 1_700_000_000 and got["timeNano"] == 1_700_000_000_500_000_000
        assert "status" not in got
    trio.run(main)
