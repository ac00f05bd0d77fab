"""What a change in etcd marks for the managers' pushes of networks' state
(:class:`core.engine.swarm.netpush.NetworkPush.note`), without a cluster; the pushes themselves
run on the harness in tests/swarm/test_swarm_overlay.py (peers reach a node well before its
backstop poll)."""
from __future__ import annotations

from core.engine.swarm.netpush import NetworkPush
from core.engine.swarm.networks import ADDRESSES, NAMES
from core.engine.swarm.store import NETWORKS, NODES, SERVICES, TASKS
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
