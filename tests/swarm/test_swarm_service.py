"""The swarm service's pure parts: the cluster spec (docker's defaults and checks), addresses,
docker's Node shape (rendering, lookups, filters, specs), and the answers of a node outside a
swarm.  The cluster itself is tests/test_swarm_cluster.py's."""
from __future__ import annotations

import pytest
import trio

from core.engine.swarm import nodes
from core.engine.swarm.service import (AUTOLOCK_UNSUPPORTED, DEFAULT_SPEC, ERR_NO_MANAGER, ERR_NO_SWARM,
                                       SwarmService, normalize_spec, parse_pool, split_addr)
from core.engine.swarm.tokens import format_token, new_secret
from core.errors import InvalidArgument, NotFound, Unavailable


def _free_port() -> int:
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]

NS = 10**9


def test_spec_defaults_are_dockers():
    spec = normalize_spec(None)
    assert spec == DEFAULT_SPEC
    assert spec["Dispatcher"]["HeartbeatPeriod"] == 5 * NS
    assert spec["CAConfig"]["NodeCertExpiry"] == 90 * 24 * 3600 * NS
    assert spec["Raft"]["ElectionTick"] == 10 and spec["Orchestration"]["TaskHistoryRetentionLimit"] == 5
    # what docker-py sends: nulls and zeros mean the default
    given = {"Name": "default", "Orchestration": {"TaskHistoryRetentionLimit": 3},
             "Dispatcher": {"HeartbeatPeriod": None}, "CAConfig": {"NodeCertExpiry": 0},
             "Raft": {"ElectionTick": 0, "SnapshotInterval": 20000}, "EncryptionConfig": None}
    spec = normalize_spec(given)
    assert spec["Orchestration"]["TaskHistoryRetentionLimit"] == 3
    assert spec["Dispatcher"]["HeartbeatPeriod"] == 5 * NS
    assert spec["Raft"]["SnapshotInterval"] == 20000 and spec["Raft"]["ElectionTick"] == 10


@pytest.mark.parametrize("given,message", [
    ({"Name": "other"}, 'swarm spec must be named "default"'),
    ({"CAConfig": {"NodeCertExpiry": 60 * NS}}, "minimum certificate expiry time is: 1h0m0s"),
    ({"Dispatcher": {"HeartbeatPeriod": -NS}}, "heartbeat time period cannot be a negative duration"),
    ({"EncryptionConfig": {"AutoLockManagers": True}}, AUTOLOCK_UNSUPPORTED),
    ({"CAConfig": {"ExternalCAs": [{"Protocol": "cfssl", "URL": "https://ca"}]}}, "external CAs"),
    ({"Orchestration": {"TaskHistoryRetentionLimit": "five"}}, "TaskHistoryRetentionLimit"),
    ([], "expected a JSON object"),
    ({"Raft": {"ElectionTick": "x"}}, "invalid Raft.ElectionTick: expected an integer"),
    ({"Raft": {"ElectionTick": 3, "HeartbeatTick": 1}}, "ElectionTick (3) must be at least five times"),
    ({"Raft": {"ElectionTick": 100000}}, "etcd's election timeout is at most 50 s"),
    ({"Raft": {"SnapshotInterval": -1}}, "invalid Raft.SnapshotInterval: -1 is out of range"),
    ({"Dispatcher": {"HeartbeatPeriod": 1}}, "invalid heartbeat period"),
    ({"Dispatcher": {"HeartbeatPeriod": 2**62}}, "invalid heartbeat period"),
    ({"CAConfig": {"NodeCertExpiry": 10**30}}, "out of range"),
    ({"CAConfig": {"ForceRotate": "abc"}}, "invalid CAConfig.ForceRotate"),
    ({"Labels": {"a": 1}}, "Labels must map strings to strings"),
    ({"TaskDefaults": {"LogDriver": {"Name": 5}}}, "invalid TaskDefaults.LogDriver"),
])
def test_bad_specs_are_refused_clearly(given, message):
    with pytest.raises(InvalidArgument) as exc:
        normalize_spec(given)
    assert message in str(exc.value)


def test_force_rotate_is_kept_across_updates():
    current = normalize_spec({"CAConfig": {"ForceRotate": 2}})
    assert normalize_spec({}, current)["CAConfig"]["ForceRotate"] == 2
    assert normalize_spec({"CAConfig": {"ForceRotate": 3}}, current)["CAConfig"]["ForceRotate"] == 3


def test_addresses_and_pools():
    assert split_addr("10.0.0.1:2377", 2377) == ("10.0.0.1", 2377)
    assert split_addr("10.0.0.1", 2377) == ("10.0.0.1", 2377)
    assert split_addr(":4000", 2377) == ("0.0.0.0", 4000)
    assert split_addr("tcp://10.0.0.1:1", 2377) == ("10.0.0.1", 1)
    for bad in ("", None, "10.0.0.1:http", "10.0.0.1:70000"):
        with pytest.raises(InvalidArgument):
            split_addr(bad, 2377)
    assert parse_pool(None, None) == (["10.0.0.0/8"], 24)
    assert parse_pool(["10.20.0.0/16"], 26) == (["10.20.0.0/16"], 26)
    with pytest.raises(InvalidArgument):
        parse_pool(["nonsense"], 24)
    with pytest.raises(InvalidArgument):
        parse_pool(["10.20.0.0/16"], 8)
    with pytest.raises(InvalidArgument, match="IPv4 only"):
        parse_pool(["fd00::/48"], 64)
    with pytest.raises(InvalidArgument, match="invalid SubnetSize"):
        parse_pool(["10.20.0.0/16"], "24")


def _node(node_id, hostname, role="worker", state="ready", labels=None, manager_addr=None):
    record = nodes.new_record(node_id, role)
    record["Description"]["Hostname"] = hostname
    record["Status"]["State"] = state
    record["Spec"]["Labels"] = labels or {}
    if manager_addr:
        record["ManagerStatus"] = {"Addr": manager_addr}
    return record


def test_render_shows_version_and_live_manager_status():
    leader = _node("a" * 25, "mgr1", "manager", manager_addr="10.0.0.1:2377")
    other = _node("b" * 25, "mgr2", "manager", manager_addr="10.0.0.2:2377")
    worker = _node("c" * 25, "wrk1")
    sessions = {"a" * 25: {}, "c" * 25: {}}
    shown = [nodes.render(n, 7, leader="a" * 25, sessions=sessions) for n in (leader, other, worker)]
    assert shown[0]["Version"] == {"Index": 7} and list(shown[0])[:2] == ["ID", "Version"]
    assert shown[0]["ManagerStatus"] == {"Leader": True, "Reachability": "reachable",
                                         "Addr": "10.0.0.1:2377"}
    assert shown[1]["ManagerStatus"] == {"Reachability": "unreachable", "Addr": "10.0.0.2:2377"}
    assert "ManagerStatus" not in shown[2]


def test_find_by_id_hostname_or_prefix():
    listed = [(_node("abc" + "0" * 22, "mgr1"), 1), (_node("abd" + "0" * 22, "wrk1"), 2)]
    assert nodes.find(listed, "wrk1")[1] == 2
    assert nodes.find(listed, "abc")[1] == 1
    assert nodes.find(listed, "abc" + "0" * 22)[1] == 1
    with pytest.raises(InvalidArgument) as ambiguous:
        nodes.find(listed, "ab")
    assert str(ambiguous.value) == "node ab is ambiguous (2 matches found)"
    with pytest.raises(NotFound) as missing:
        nodes.find(listed, "zz")
    assert str(missing.value) == "node zz not found"


def test_filters():
    mgr = _node("m" * 25, "mgr1", "manager", labels={"zone": "east"})
    wrk = _node("w" * 25, "wrk1")
    assert nodes.matches(mgr, {"role": ["manager"]}) and not nodes.matches(wrk, {"role": ["manager"]})
    assert nodes.matches(mgr, {"node.label": ["zone=east"]})
    assert nodes.matches(mgr, {"node.label": ["zone"]}) and not nodes.matches(wrk, {"node.label": ["zone"]})
    assert nodes.matches(wrk, {"name": ["wrk"]}) and nodes.matches(wrk, {"id": ["www"]})
    assert nodes.matches(wrk, {"membership": ["accepted"]})
    with pytest.raises(InvalidArgument):
        nodes.matches(wrk, {"colour": ["red"]})
    with pytest.raises(InvalidArgument):
        nodes.matches(wrk, {"role": ["boss"]})


def test_node_specs_are_checked_as_dockers():
    assert nodes.parse_spec({"Role": "manager", "Availability": "drain", "Labels": {"a": "b"}}) == \
        {"Role": "manager", "Availability": "drain", "Labels": {"a": "b"}}
    with pytest.raises(InvalidArgument, match='invalid Role: "boss"'):
        nodes.parse_spec({"Role": "boss", "Availability": "active"})
    with pytest.raises(InvalidArgument, match='invalid Availability: ""'):
        nodes.parse_spec({"Role": "worker"})
    with pytest.raises(InvalidArgument):
        nodes.parse_spec({"Role": "worker", "Availability": "active", "Labels": {"a": 1}})


def test_a_node_outside_a_swarm(tmp_path):
    async def main() -> None:
        svc = SwarmService(tmp_path)
        async with trio.open_nursery() as nursery:
            await nursery.start(svc.serve)
            assert svc.status_text() == "inactive"
            info = await svc.info()
            assert info["LocalNodeState"] == "inactive" and info["NodeID"] == ""
            for call in (svc.inspect(), svc.list_nodes({}), svc.get_node("x"), svc.unlock_key()):
                with pytest.raises(Unavailable) as exc:
                    await call
                assert str(exc.value) == ERR_NO_MANAGER
            with pytest.raises(Unavailable) as exc:
                await svc.leave(force=True)
            assert str(exc.value) == ERR_NO_SWARM
            with pytest.raises(InvalidArgument, match="invalid join token"):
                await svc.join({"RemoteAddrs": ["127.0.0.1:9"], "JoinToken": "SWMTKN-1-x"})
            with pytest.raises(InvalidArgument, match="at least 1 RemoteAddr is required to join"):
                await svc.join({"JoinToken": "x"})
            with pytest.raises(InvalidArgument, match="invalid ListenAddr"):
                await svc.init({"ListenAddr": "10.0.0.1:notaport"})
            # a manager that does not answer: a clear error, and nothing changed
            token = format_token("ab" * 32, new_secret())
            with pytest.raises(Unavailable, match="no manager could be reached: 127.0.0.1:"):
                await svc.join({"RemoteAddrs": [f"127.0.0.1:{_free_port()}"], "JoinToken": token})
            assert svc.status_text() == "inactive" and not (tmp_path / "swarm").exists()
            nursery.cancel_scope.cancel()

    trio.run(main)


@pytest.mark.skipif(not __import__("shutil").which("openssl"), reason="openssl is not installed")
def test_peer_chain_with_the_cross_signed_roots_verifies_against_the_old_root(tmp_path):
    """What etcd's peers are shown after a CA rotation (``etcd-peer.crt``) verifies against the
    root a member started with before the rotation, and against the new one."""
    import subprocess

    from core.engine.swarm.ca import MANAGER_ROLE, ClusterCA, cert_pem

    ca = ClusterCA.create()
    old_root = ca.trust_pem
    ca.start_rotation()
    cross = cert_pem(ca.intermediates[0])
    ca.finish_rotation()
    creds = ca.issue(MANAGER_ROLE, ip_addresses=["10.0.0.1"])
    leaf = creds.chain_pem
    assert cross not in leaf  # after the rotation, node certificates carry no intermediate
    (tmp_path / "old.pem").write_bytes(old_root)
    (tmp_path / "new.pem").write_bytes(ca.trust_pem)
    (tmp_path / "leaf.pem").write_bytes(leaf)
    (tmp_path / "cross.pem").write_bytes(cross)

    def verify(root: str, untrusted: bool) -> int:
        argv = ["openssl", "verify", "-CAfile", str(tmp_path / root)]
        if untrusted:
            argv += ["-untrusted", str(tmp_path / "cross.pem")]
        return subprocess.run(argv + [str(tmp_path / "leaf.pem")], capture_output=True).returncode

    assert verify("old.pem", untrusted=False) != 0  # why the cross-signed root is needed
    assert verify("old.pem", untrusted=True) == 0
    assert verify("new.pem", untrusted=True) == 0


def test_transactions_are_bounded_in_operations_and_bytes():
    """The leader's writes and ``put_many`` go to etcd in runs that etcd takes: at most
    TXN_OPS operations and TXN_BYTES of values (a big task alone), in order."""
    from core.engine.swarm.store import TXN_BYTES, TXN_OPS, txn_chunks

    small = list(range(250))
    assert [len(c) for c in txn_chunks(small, lambda _i: 10)] == [TXN_OPS, TXN_OPS, 50]
    big = TXN_BYTES // 2 + 1
    sizes = [big, 10, big, big, TXN_BYTES * 2, 10]
    chunks = list(txn_chunks(list(range(len(sizes))), lambda i: sizes[i]))
    assert chunks == [[0, 1], [2], [3], [4], [5]]
    assert [i for c in chunks for i in c] == list(range(len(sizes)))
    assert list(txn_chunks([], len)) == []
