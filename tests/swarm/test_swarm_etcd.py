"""core.engine.swarm.etcd against real etcd members (Debian's etcd-server), one per machine of the
multi-host harness, peers over mutual TLS with the certificates of the swarm's own CA.

Each test forms its own cluster (members added one by one, as ``swarm join`` will), with short
heartbeat/election timeouts (50/500 ms; production keeps docker's 1/10 s).
"""
from __future__ import annotations

import contextlib
import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import AsyncIterator

import pytest
import trio

from core.errors import InvalidArgument, NotFound, Unavailable
from core.engine.swarm.ca import MANAGER_ROLE, NODE_CERT, NODE_KEY, ROOT_CERT, ClusterCA
from core.engine.swarm.etcd import (NO_LEADER_MESSAGE, Compare, EtcdClient, Get, Member, NoLeader, Put,
                                    SequenceConflict, prefix_end)
from core.engine.swarm.etcd_member import Bootstrap, EtcdMember, EtcdSettings, PeerTLS
from core.testing import TrioThread
from tests.support import hosts as hs

pytestmark = pytest.mark.skipif(shutil.which("etcd") is None, reason="etcd-server (Debian) is not installed")

FAST = {"heartbeat_ms": 50, "election_ms": 500}


def make_peer_certs(directory: Path, nodes: dict[str, str], ca: ClusterCA | None = None) -> dict[str, PeerTLS]:
    """Per node (name -> address), manager credentials from the swarm's CA (``core.engine.swarm.ca``:
    a certificate for the node's address, good for server and client auth), saved as a node
    keeps them, and the :class:`PeerTLS` pointing at them."""
    ca = ca or ClusterCA.create()
    out = {}
    for name, address in nodes.items():
        d = directory / name
        ca.issue(MANAGER_ROLE, name, ip_addresses=[address]).save(d)
        out[name] = PeerTLS(cert_file=d / NODE_CERT, key_file=d / NODE_KEY, ca_file=d / ROOT_CERT)
    return out


@pytest.fixture(scope="module")
def machines3():
    with hs.Cluster(3, daemons=False) as c:
        c.certs = make_peer_certs(c.root / "certs", {h.name: h.address for h in c})
        yield c


@pytest.fixture
def workdir(machines3):
    path = machines3.root / f"t{time.monotonic_ns()}"
    path.mkdir()
    yield path
    shutil.rmtree(path, ignore_errors=True)


def settings_for(host: hs.Host, workdir: Path, certs: dict[str, PeerTLS] | None, port: int) -> EtcdSettings:
    return EtcdSettings(name=host.name, data_dir=workdir / host.name / "swarm" / "etcd", advertise_addr=host.address,
                        peer_port=port, tls=certs[host.name] if certs else None, launcher=host.launcher, **FAST)


class Members:
    """The members of one test's etcd cluster and the nursery their supervisors run in."""

    def __init__(self, nursery: trio.Nursery, members: list[EtcdMember]) -> None:
        self.nursery = nursery
        self.members = members
        self.clients = [m.client() for m in members]

    async def leader_index(self, among: list[int] | None = None, timeout: float = 10) -> int:
        """The index of the member that leads, as the members in ``among`` agree."""
        among = among if among is not None else list(range(len(self.members)))
        with trio.fail_after(timeout):
            while True:
                try:
                    statuses = [await self.clients[i].status() for i in among]
                except Exception:  # noqa: BLE001 - a member in the middle of restarting
                    statuses = []
                leaders = {s.leader for s in statuses}
                by_id = {s.member_id: i for i, s in zip(among, statuses)}
                if len(leaders) == 1 and (leader := leaders.pop()) in by_id:
                    return by_id[leader]
                await trio.sleep(0.05)

    async def restart(self, i: int) -> None:
        await self.nursery.start(self.members[i].serve)


@contextlib.asynccontextmanager
async def etcd_cluster(machines3, workdir: Path, n: int = 3, tls: bool = True) -> AsyncIterator[Members]:
    """A cluster of ``n`` members for one test, on mgr1..n (peer port 2390: the shared cluster
    has 2380)."""
    async with trio.open_nursery() as nursery:
        group = await form(nursery, machines3.hosts[:n], workdir, machines3.certs if tls else None, port=2390)
        try:
            yield group
        finally:
            for client in group.clients:
                await client.aclose()
            nursery.cancel_scope.cancel()


async def form(nursery: trio.Nursery, hosts: list[hs.Host], workdir: Path,
               certs: dict[str, PeerTLS] | None, port: int = 2380) -> Members:
    """mgr1 starts a new cluster; each next member is added through mgr1's client and joins
    with ``--initial-cluster-state existing``, as ``swarm join`` will."""
    first = settings_for(hosts[0], workdir, certs, port)
    members = [EtcdMember(first, Bootstrap.new(first))]
    await nursery.start(members[0].serve)
    async with members[0].client() as c:
        for host in hosts[1:]:
            s = settings_for(host, workdir, certs, port)
            _, after = await c.member_add([s.peer_url])  # once the members are connected
            members.append(EtcdMember(s, Bootstrap.from_members(s, after)))
            await nursery.start(members[-1].serve)
    return Members(nursery, members)


async def wait_for_value(client: EtcdClient, key: str, value: bytes, timeout: float) -> None:
    """Until ``client``'s member reads ``value`` at ``key`` (a member without a leader yet retries)."""
    with trio.fail_after(timeout):
        while True:
            try:
                if (await client.get(key)).value == value:
                    return
            except NoLeader:
                pass
            await trio.sleep(0.1)


def run(afn, timeout: float = 90):
    async def bounded():
        with trio.fail_after(timeout):
            return await afn()

    return trio.run(bounded)


@pytest.fixture(scope="module")
def shared3(machines3):
    """One 3-member cluster over mutual TLS for the module (forming one takes a second or two:
    members are added without etcd's 5 s health wait).  Its supervisors run in a trio loop of
    their own; tests run their bodies there with ``shared3.run(afn)`` and leave it with three
    members and a leader."""
    loop = TrioThread(timeout=120)
    workdir = machines3.root / "shared"
    workdir.mkdir()
    holder: dict[str, trio.Nursery] = {}

    async def open_nursery() -> None:
        ready = trio.Event()

        async def keeper() -> None:
            try:
                async with trio.open_nursery() as n:
                    holder["nursery"] = n
                    holder["stop"] = trio.Event()
                    ready.set()
                    await holder["stop"].wait()
                    n.cancel_scope.cancel()
            except BaseException as exc:  # noqa: BLE001 - never crash the loop; tests see the failure
                holder["error"] = exc
                ready.set()

        trio.lowlevel.spawn_system_task(keeper)
        await ready.wait()

    group: Members | None = None
    try:
        loop.run(open_nursery)
        group = loop.run(lambda: form(holder["nursery"], machines3.hosts, workdir, machines3.certs))
        group.run = loop.run
        yield group
    finally:
        async def close() -> None:
            if group is not None:
                for client in group.clients:
                    await client.aclose()
                for m in group.members:
                    await m.stop()
            if "stop" in holder:
                holder["stop"].set()

        with contextlib.suppress(Exception):
            loop.run(close)
        loop.close()
        shutil.rmtree(workdir, ignore_errors=True)


def test_three_members_over_mutual_tls_replicate(shared3):
    async def main():
        g = shared3
        members = await g.clients[2].members()
        assert sorted(m.name for m in members) == ["mgr1", "mgr2", "mgr3"]
        assert all(url.startswith("https://") for m in members for url in m.peer_urls)
        rev = await g.clients[0].put("/swarm/nodes/a", b'{"ID": "a"}')
        kv = await g.clients[2].get("/swarm/nodes/a")
        assert kv is not None and kv.json() == {"ID": "a"} and kv.mod_revision == rev
        await g.clients[1].put("/swarm/nodes/b", "2")
        assert [kv.key for kv in await g.clients[0].get_prefix("/swarm/nodes/")] == ["/swarm/nodes/a",
                                                                                    "/swarm/nodes/b"]
        assert await g.clients[2].delete("/swarm/nodes/", prefix=True) == 2
        assert await g.clients[0].get("/swarm/nodes/a") is None
        # every member's etcd runs in its own machine: its peer port is on that address only
        assert all(m.pid for m in g.members)
        assert all(m.initialized and m.settings.data_dir.name == "etcd" for m in g.members)

    shared3.run(main)


def test_a_transaction_with_a_stale_revision_fails(machines3, workdir):
    async def main():
        async with etcd_cluster(machines3, workdir, n=1) as g:
            c = g.clients[0]
            assert await c.create("/swarm/services/web", "v1")
            kv = await c.get("/swarm/services/web")
            new_rev = await c.put_if("/swarm/services/web", "v2", kv.mod_revision)
            with pytest.raises(SequenceConflict, match="update out of sequence"):
                await c.put_if("/swarm/services/web", "v3", kv.mod_revision)  # the revision read before v2
            assert (await c.get("/swarm/services/web")).value == b"v2"
            result = await c.txn([Compare("mod", "/swarm/services/web", "==", new_rev)],
                                 [Put("/swarm/services/web", "v3"), Get("/swarm/services/", prefix=True)])
            assert result.succeeded and result.responses[1][0].value == b"v3"
            with pytest.raises(Exception, match="already exists"):
                await c.create("/swarm/services/web", "again")
            pid = g.members[0].pid
        assert pid and not hs.pid_alive(pid)  # cancelled with its nursery: etcd is stopped
        assert EtcdMember.reattach(workdir / "nobody") is None

    run(main)


def test_a_watch_on_one_member_sees_a_put_on_another(shared3):
    async def main():
        g = shared3
        async with g.clients[1].watch("/swarm/tasks/", prefix=True) as events:
            await g.clients[0].put("/swarm/tasks/t1", "new")
            await g.clients[2].delete("/swarm/tasks/t1")
            seen = []
            with trio.fail_after(10):
                async for ev in events:
                    seen.append((ev.type, ev.kv.key, ev.kv.value))
                    if len(seen) == 2:
                        break
        assert seen == [("PUT", "/swarm/tasks/t1", b"new"), ("DELETE", "/swarm/tasks/t1", b"")]

    shared3.run(main)


def test_a_lease_expires_unless_kept_alive(machines3, workdir):
    async def main():
        async with etcd_cluster(machines3, workdir, n=1) as g:
            c = g.clients[0]
            short = await c.lease_grant(1)
            kept = await c.lease_grant(1)
            await c.put("/swarm/sessions/short", "x", lease=short.id)
            await c.put("/swarm/sessions/kept", "x", lease=kept.id)
            async with trio.open_nursery() as n:
                await n.start(c.keep_lease_alive, kept)
                with trio.fail_after(10):
                    while await c.get("/swarm/sessions/short") is not None:
                        await trio.sleep(0.1)
                assert await c.lease_time_to_live(short.id) == -1
                with pytest.raises(NotFound):
                    await c.lease_keepalive(short.id)
                assert await c.get("/swarm/sessions/kept") is not None  # 1 s TTL outlived
                n.cancel_scope.cancel()
            await c.lease_revoke(kept.id)
            assert await c.get("/swarm/sessions/kept") is None

    run(main)


def test_election_campaign_and_resign(shared3):
    async def main():
        g = shared3
        a, b = g.clients[0], g.clients[1]
        lease_a, lease_b = await a.lease_grant(5), await b.lease_grant(5)
        assert await a.leader("swarm-leader") is None
        key_a = await a.campaign("swarm-leader", "mgr1", lease_a.id)
        won = trio.Event()

        async def campaign_b():
            await b.campaign("swarm-leader", "mgr2", lease_b.id)
            won.set()

        async with trio.open_nursery() as n:
            n.start_soon(campaign_b)
            await trio.sleep(0.5)
            assert not won.is_set()
            assert (await g.clients[2].leader("swarm-leader")).value == b"mgr1"
            await a.resign(key_a)
            with trio.fail_after(10):
                await won.wait()
        assert (await g.clients[2].leader("swarm-leader")).value == b"mgr2"

    shared3.run(main)


def test_leader_killed_new_leader_elected_and_restart_reattaches(shared3):
    async def main():
        g = shared3
        old = await g.leader_index()
        old_id = (await g.clients[old].status()).member_id
        await g.clients[0].put("/k", "before")
        await g.members[old].stop()
        assert g.members[old].pid is None
        others = [i for i in range(3) if i != old]
        new = await g.leader_index(among=others)
        assert new != old and (await g.clients[new].status()).leader != old_id
        await g.clients[others[0]].put("/k", "after")
        assert (await g.clients[others[1]].get("/k")).value == b"after"
        # the stopped member's data directory holds a member: it starts without a bootstrap
        g.members[old].bootstrap = None
        await g.restart(old)
        await wait_for_value(g.clients[old], "/k", b"after", 10)
        assert len(await g.clients[old].members()) == 3

    shared3.run(main)


def test_losing_quorum_is_no_leader_then_it_comes_back(shared3):
    async def main():
        g = shared3
        await g.clients[2].put("/k", "1")
        async with g.clients[2].watch("/k") as events:
            await g.members[0].stop()
            await g.members[1].stop()
            with pytest.raises(NoLeader), trio.fail_after(15):  # a watch ends when the leader is gone
                async for _ in events:
                    pass
        began = time.monotonic()
        with pytest.raises(NoLeader) as info:
            for _ in range(50):  # the survivor notices within an election timeout
                await g.clients[2].put("/k", "2")
                await trio.sleep(0.1)
        assert str(info.value) == NO_LEADER_MESSAGE
        assert time.monotonic() - began < 15
        with pytest.raises(NoLeader):
            await g.clients[2].get("/k")
        assert (await g.clients[2].status()).leader == 0
        for i in (0, 1):
            await g.restart(i)
        await g.leader_index()
        await g.clients[2].put("/k", "3")
        assert (await g.clients[0].get("/k")).value == b"3"

    shared3.run(main)


def test_a_killed_etcd_is_restarted_by_its_supervisor(machines3, workdir):
    async def main():
        async with etcd_cluster(machines3, workdir, n=1) as g:
            m = g.members[0]
            await g.clients[0].put("/k", "v")
            first = m.pid
            m.kill()
            with trio.fail_after(15):
                while m.pid in (None, first) or m.restarts < 1:
                    await trio.sleep(0.05)
                while True:
                    try:
                        assert (await g.clients[0].get("/k")).value == b"v"
                        break
                    except NoLeader:
                        await trio.sleep(0.05)
                    except Exception as exc:  # noqa: BLE001 - not answering yet
                        if "not answering" not in str(exc):
                            raise
                        await trio.sleep(0.05)

    run(main)


def test_a_member_cut_off_the_network_has_no_leader_and_catches_up(shared3, machines3):
    async def main():
        g = shared3
        cut = await g.leader_index()  # the worst case: the leader is cut off
        rest = [i for i in range(3) if i != cut]
        machines3.hosts[cut].cut()
        try:
            with trio.fail_after(15):
                while True:  # the cut-off member notices within an election timeout or so
                    try:
                        await g.clients[cut].put("/partition", "cut side")
                    except NoLeader:
                        break
                    await trio.sleep(0.1)
            await g.leader_index(among=rest)
            await g.clients[rest[0]].put("/partition", "majority side")
        finally:
            machines3.hosts[cut].restore()
        await wait_for_value(g.clients[cut], "/partition", b"majority side", 15)
        await g.leader_index()

    shared3.run(main)


def test_member_changes_are_checked_without_waiting(shared3, machines3):
    """Members run without etcd's strict reconfiguration check (its 5 s wait); the client checks
    instead: a member added or removed only while the members it would need are connected."""
    async def main():
        g = shared3
        ids = [(await c.status()).member_id for c in g.clients]
        assert await g.clients[0].active_peers() == {ids[1], ids[2]}
        cut = 2 if await g.leader_index() != 2 else 1
        other = 3 - cut  # neither 0 nor the cut one
        machines3.hosts[cut].cut()
        try:
            with trio.fail_after(30):
                while ids[cut] in await g.clients[0].active_peers():
                    await trio.sleep(0.1)
            members = await g.clients[0].members()
            with pytest.raises(Unavailable, match="unhealthy cluster: not connected to member"):
                await g.clients[0].member_add(["https://10.255.255.1:2390"], wait=0.5)
            # removing a member that is up would leave 1 of 2 connected: refused
            with pytest.raises(Unavailable, match="would lose the quorum"):
                await g.clients[0].member_remove(ids[other], wait=0.5)
            assert await g.clients[0].members() == members  # nothing changed
        finally:
            machines3.hosts[cut].restore()
        with trio.fail_after(30):
            while await g.clients[0].active_peers() != {ids[1], ids[2]}:
                await trio.sleep(0.1)
        await g.leader_index()

    shared3.run(main)


def test_a_member_leaves_and_the_rest_carry_on(shared3):
    async def main():
        g = shared3
        await g.members[2].leave()
        assert not g.members[2].settings.data_dir.exists()
        assert sorted(m.name for m in await g.clients[0].members()) == ["mgr1", "mgr2"]
        await g.leader_index(among=[0, 1])  # if mgr3 led, the other two elect a leader first
        await g.clients[0].put("/k", "two members")
        assert (await g.clients[1].get("/k")).value == b"two members"

    shared3.run(main)


def test_a_member_without_data_or_bootstrap_refuses_to_start(tmp_path):
    member = EtcdMember(EtcdSettings(name="x", data_dir=tmp_path / "swarm" / "etcd", advertise_addr="127.0.0.1"))

    async def main():
        with pytest.raises(InvalidArgument, match="holds no member"):
            await member.serve()

    run(main)


def test_a_stopped_member_is_unavailable_not_a_traceback(tmp_path):
    async def main():
        async with EtcdClient(tmp_path / "etcd.sock:0") as c:
            with pytest.raises(Exception) as info:
                await c.put("/k", "v")
            assert type(info.value).__name__ == "Unavailable" and "not answering" in str(info.value)

    run(main)


ORPHAN = """
import sys, trio
from core.engine.swarm.etcd_member import Bootstrap, EtcdMember, EtcdSettings
settings = EtcdSettings.load(sys.argv[1])
async def main():
    async with trio.open_nursery() as n:
        member = await n.start(EtcdMember(settings, Bootstrap.new(settings)).serve)
        async with member.client() as c:
            await c.put("/k", "before the crash")
        print(member.pid, flush=True)
        await trio.sleep_forever()
trio.run(main)
"""


def test_after_a_daemon_crash_the_member_reattaches(machines3, workdir):
    """A daemon killed outright leaves its etcd running; the next daemon stops that one (by the
    pid file, checking its command line) and starts the member again from its data alone."""
    host = machines3["mgr1"]
    settings = settings_for(host, workdir, machines3.certs, port=2391)
    path = settings.save()
    assert EtcdSettings.load(path) == settings
    daemon = subprocess.Popen([sys.executable, "-c", ORPHAN, str(path)], stdout=subprocess.PIPE, text=True)
    orphan = None
    try:
        orphan = int(daemon.stdout.readline())
        daemon.kill()
        daemon.wait()
        assert hs.pid_alive(orphan)  # etcd outlived the daemon that started it

        async def main():
            async with trio.open_nursery() as n:
                again = EtcdMember.reattach(workdir / "mgr1")  # what the daemon finds at start
                assert again is not None and again.settings == settings and again.bootstrap is None
                member = await n.start(again.serve)
                assert member.pid != orphan and not hs.pid_alive(orphan)
                async with member.client() as c:
                    with trio.fail_after(10):
                        while True:
                            try:
                                assert (await c.get("/k")).value == b"before the crash"
                                break
                            except NoLeader:
                                await trio.sleep(0.05)
                await member.stop()

        run(main)
    finally:
        daemon.kill()
        if orphan and hs.pid_alive(orphan) and str(settings.data_dir).encode() in Path(f"/proc/{orphan}/cmdline").read_bytes():
            os.kill(orphan, signal.SIGKILL)


def test_peers_need_a_certificate_of_the_swarm_ca(machines3, workdir):
    """The peer port is mutual TLS: a client without a certificate, or with one of another CA,
    is refused; one with a certificate of the swarm's CA gets through."""
    async def main():
        async with etcd_cluster(machines3, workdir, n=1) as g:
            url = g.members[0].settings.peer_url
            assert url.startswith("https://")
            target = url.removeprefix("https://")
            mgr2 = machines3["mgr2"]
            other = make_peer_certs(workdir / "other-ca", {"mgr2": mgr2.address})["mgr2"]  # another swarm
            mine = machines3.certs["mgr2"]

            def probe(cert: PeerTLS | None) -> subprocess.CompletedProcess:
                args = ["openssl", "s_client", "-connect", target, "-CAfile", str(machines3.certs["mgr1"].ca_file),
                        "-verify_return_error", "-brief", "-ign_eof"]
                if cert:
                    args += ["-cert", str(cert.cert_file), "-key", str(cert.key_file)]
                # a TLS 1.3 server refuses a client certificate after the handshake: ask for
                # something so the refusal shows
                return subprocess.run([*mgr2.launcher, *args], input="GET /version HTTP/1.0\r\n\r\n",
                                      capture_output=True, text=True, timeout=20)

            ok = await trio.to_thread.run_sync(probe, mine)
            assert "etcdserver" in ok.stdout, ok.stdout + ok.stderr
            for cert in (None, other):
                refused = await trio.to_thread.run_sync(probe, cert)
                assert "etcdserver" not in refused.stdout, refused.stdout

    run(main)


def test_etcd_missing_is_a_clear_error(tmp_path):
    settings = EtcdSettings(name="x", data_dir=tmp_path / "swarm" / "etcd", advertise_addr="127.0.0.1",
                            binary=str(tmp_path / "no-etcd"))

    async def main():
        with pytest.raises(Unavailable, match="etcd-server"):
            await EtcdMember(settings, Bootstrap.new(settings)).serve()

    run(main)


def test_values_and_bootstrap():
    assert prefix_end("/a/") == b"/a0" and prefix_end(b"a\xff") == b"b" and prefix_end("") == b"\0"
    s = EtcdSettings(name="n2", data_dir=Path("/x/swarm/etcd"), advertise_addr="fd00::2", tls=None)
    assert s.peer_url == "http://[fd00::2]:2380" and s.socket == Path("/x/swarm/etcd.sock:0")
    members = [Member(1, "n1", ("http://10.0.0.1:2380",)), Member(2, "", ("http://[fd00::2]:2380",))]
    boot = Bootstrap.from_members(s, members)
    assert boot.state == "existing" and boot.initial_cluster == "n1=http://10.0.0.1:2380,n2=http://[fd00::2]:2380"
    with pytest.raises(InvalidArgument):
        Bootstrap.from_members(s, members[:1])  # this member was not added
    assert Compare("mod", "/k", "==", 3).to_json() == {"key": "L2s=", "target": "MOD", "result": "EQUAL",
                                                        "mod_revision": "3"}
    with pytest.raises(InvalidArgument):
        Compare("nope", "/k", "==", 3).to_json()

