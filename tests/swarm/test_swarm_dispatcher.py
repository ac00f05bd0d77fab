"""The leader's node health (:meth:`Dispatcher.check_nodes`) against a real etcd member.

One member on a machine of the harness (a network namespace, no daemon); the dispatcher's clock
(trio's) is a mock the test jumps, so a loaded machine cannot make it late: a node whose
session key stops moving is ``down`` after 1.5 periods (its key deleted), ``ready`` again at its
next heartbeat; a new leader, or one whose checks stalled, gives every node a fresh deadline; a
shortened period keeps the old deadline until the nodes have heard the new one.
"""
from __future__ import annotations

import shutil

import pytest
import trio
from trio.testing import MockClock

from core.engine.swarm import nodes as swarm_nodes
from core.engine.swarm.dispatcher import Dispatcher, check_interval, down_after
from core.engine.swarm.etcd_member import Bootstrap, EtcdMember, EtcdSettings
from core.engine.swarm.store import SESSIONS, Store
from tests.support import hosts as hs

pytestmark = pytest.mark.skipif(shutil.which("etcd") is None, reason="etcd-server (Debian) is not installed")

PERIOD = 60.0  # seconds of trio's clock, which the test jumps


@pytest.fixture(scope="module")
def member_settings():
    with hs.Cluster(1, daemons=False) as c:
        host = c.hosts[0]
        yield EtcdSettings(name=host.name, data_dir=c.root / "m" / "swarm" / "etcd", advertise_addr=host.address,
                           tls=None, launcher=host.launcher, heartbeat_ms=50, election_ms=500)


def dispatcher(store: Store) -> Dispatcher:
    async def managers() -> list[dict[str, str]]:
        return []

    return Dispatcher(store, "mgr", period=PERIOD, managers=managers, trust_digest=lambda: "")


async def state(store: Store, node_id: str) -> str:
    found = await store.node(node_id)
    assert found is not None
    return found[0]["Status"]["State"]


def test_check_interval_a_tenth_of_a_period_within_bounds():
    # the default 5 s: checks every 0.5 s, so a cut node is Down at most 0.5 s after its deadline
    # (7.5 s after its last beat) and its tasks run elsewhere within about 8 s of the cut
    assert check_interval(5.0) == 0.5
    assert check_interval(1.0) == 0.25  # the tests' 1 s heartbeat: as before
    assert check_interval(0.4) == 0.1  # short periods: a quarter of one
    assert check_interval(60.0) == 1.0
    assert all(check_interval(p) <= p / 4 for p in (0.2, 1, 2, 5, 10, 30))


def test_down_by_heartbeat_deadline_and_ready_at_the_next_beat(member_settings):
    clock = MockClock(rate=1.0)  # trio's clock runs, and the test jumps it: no timing races

    async def check_after(d: Dispatcher, seconds: float) -> None:
        clock.jump(seconds)
        await d.check_nodes()

    async def main() -> None:
        async with trio.open_nursery() as nursery:
            member = await nursery.start(EtcdMember(member_settings, Bootstrap.new(member_settings)).serve)
            async with member.client() as etcd:
                store = Store(etcd)
                await store.put_node(swarm_nodes.new_record("n1", "worker"), 0)
                d = dispatcher(store)
                found = await d._touch("n1", "10.0.0.9")  # the session opens (and reads the record)
                assert found is not None and found["ID"] == "n1"
                assert await d._touch("gone") is None
                await d.check_nodes()
                assert await state(store, "n1") == "ready"
                for _ in range(4):  # beats twice a period: ready throughout
                    clock.jump(PERIOD / 2)
                    await d._touch("n1")
                    await d.check_nodes()
                    assert await state(store, "n1") == "ready"
                # the beats stop.  The last one was seen by a check half a period after the one
                # before: credited with the middle, a quarter period before.  Still ready 1.45
                # periods after that (checked every half period) ...
                await check_after(d, PERIOD / 2)
                await check_after(d, PERIOD / 2)
                await check_after(d, PERIOD * 0.2)
                assert await state(store, "n1") == "ready"
                # ... down past 1.5, and the session key goes with it
                await check_after(d, PERIOD * 0.1)
                found = await store.node("n1")
                assert found is not None and found[0]["Status"] == {
                    "State": "down", "Message": "heartbeat failure", "Addr": "10.0.0.9"}
                assert await etcd.get(SESSIONS + "n1") is None
                # the next heartbeat (same session, same lease) puts the key again: ready
                await d._touch("n1")
                await d.check_nodes()
                assert await state(store, "n1") == "ready"
                assert (await etcd.get(SESSIONS + "n1")).json()["Addr"] == "10.0.0.9"
                # a new leader (another dispatcher) gives every node a fresh deadline
                clock.jump(PERIOD)
                d2 = dispatcher(store)
                await d2.check_nodes()
                assert await state(store, "n1") == "ready"
                await check_after(d2, PERIOD / 2)
                await check_after(d2, PERIOD / 2)
                await check_after(d2, PERIOD * 0.6)
                assert await state(store, "n1") == "down"
                # so does a leader whose checks stalled for more than a period
                await d._touch("n1")
                await d.check_nodes()
                assert await state(store, "n1") == "ready"
                await check_after(d, down_after(PERIOD) + PERIOD)
                assert await state(store, "n1") == "ready"
                # a shortened period: the node beats at the old one until it hears the new one,
                # so the old deadline holds for a while (1.5 old periods) ...
                await d._touch("n1")
                await d.check_nodes()
                d.period = PERIOD / 10
                for _ in range(19):  # checked often (no stall), no beat for 0.95 old periods
                    await check_after(d, PERIOD / 20)
                assert await state(store, "n1") == "ready"
                await d._touch("n1")  # its next beat, at the old period: it hears the new one
                for _ in range(20):
                    await check_after(d, PERIOD / 20)
                    await d._touch("n1")
                assert await state(store, "n1") == "ready"
                # ... then the new one holds
                await check_after(d, PERIOD / 20)
                await check_after(d, PERIOD / 20)
                await check_after(d, PERIOD / 20)
                await check_after(d, PERIOD / 20)
                assert await state(store, "n1") == "down"
                d.period = PERIOD  # a longer period needs no grace
            nursery.cancel_scope.cancel()

    trio.run(main, clock=clock)
