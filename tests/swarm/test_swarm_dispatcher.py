"""The leader's node health (:meth:`Dispatcher.check_nodes`) against a real etcd member.

One member on a machine of the harness (a network namespace, no daemon), a heartbeat period of
0.6 s: a node whose session key stops moving is ``down`` after 1.5 periods (its key deleted),
``ready`` again at its next heartbeat; a new leader gives every node a fresh deadline.
"""
from __future__ import annotations

import shutil

import pytest
import trio

from core.engine.swarm import nodes as swarm_nodes
from core.engine.swarm.dispatcher import Dispatcher, down_after
from core.engine.swarm.etcd_member import Bootstrap, EtcdMember, EtcdSettings
from core.engine.swarm.store import SESSIONS, Store
from tests.support import hosts as hs

pytestmark = pytest.mark.skipif(shutil.which("etcd") is None, reason="etcd-server (Debian) is not installed")

PERIOD = 0.6


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


def test_down_by_heartbeat_deadline_and_ready_at_the_next_beat(member_settings):
    async def main() -> None:
        async with trio.open_nursery() as nursery:
            member = await nursery.start(EtcdMember(member_settings, Bootstrap.new(member_settings)).serve)
            async with member.client() as etcd:
                store = Store(etcd)
                await store.put_node(swarm_nodes.new_record("n1", "worker"), 0)
                d = dispatcher(store)
                await d._touch("n1", "10.0.0.9")  # the session opens
                await d.check_nodes()
                assert await state(store, "n1") == "ready"
                for _ in range(4):  # beats twice a period: ready throughout
                    await trio.sleep(PERIOD / 2)
                    await d._touch("n1")
                    await d.check_nodes()
                    assert await state(store, "n1") == "ready"
                # the beats stop: down after 1.5 periods, and the session key goes with it
                stopped = trio.current_time()
                while await state(store, "n1") == "ready":
                    await trio.sleep(PERIOD / 8)
                    await d.check_nodes()
                    assert trio.current_time() - stopped < down_after(PERIOD) + PERIOD
                assert trio.current_time() - stopped >= down_after(PERIOD)
                found = await store.node("n1")
                assert found is not None and found[0]["Status"]["Message"] == "heartbeat failure"
                assert await etcd.get(SESSIONS + "n1") is None
                # the next heartbeat (same session, same lease) puts the key again: ready
                await d._touch("n1")
                await d.check_nodes()
                assert await state(store, "n1") == "ready"
                assert (await etcd.get(SESSIONS + "n1")).json()["Addr"] == "10.0.0.9"
                # a new leader (another dispatcher) starts every deadline afresh
                await trio.sleep(PERIOD)
                d2 = dispatcher(store)
                await d2.check_nodes()
                assert await state(store, "n1") == "ready"
                await trio.sleep(down_after(PERIOD) + PERIOD / 4)
                await d2.check_nodes()
                assert await state(store, "n1") == "down"
            nursery.cancel_scope.cancel()

    trio.run(main)
