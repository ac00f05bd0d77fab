"""``service update`` / ``service rollback`` (core.engine.swarm.services.SwarmServices.update) on a
real one-member etcd while the swarm writes the service too (the updater's ``UpdateStatus``):
docker's CLI reads the service, then writes it at the version read; core's front reads it again
and writes it at the stored version.  Writes of the swarm's own between any of these steps must
not turn into 'update out of sequence'; a change of the spec in between must."""
from __future__ import annotations

import copy
import shutil

import pytest
import trio

from core.engine.swarm.etcd import SequenceConflict
from core.engine.swarm.services import SwarmServices
from core.engine.swarm.store import SERVICES, Store, now_text
from tests.swarm.test_leader_etcd import etcd_store, service

pytestmark = pytest.mark.skipif(shutil.which("etcd") is None, reason="etcd-server (Debian) is not installed")


class RacyStore(Store):
    """Writes the updater's ``UpdateStatus`` right after each of the next ``race`` reads of the
    services (so between the front's read and its write)."""

    race = 0

    async def objects(self, kind: str):
        out = await super().objects(kind)
        if kind == SERVICES and self.race:
            self.race -= 1
            await status_write(self)
        return out


async def status_write(store: Store) -> None:
    def change(svc: dict) -> None:
        done = (svc.get("UpdateStatus") or {}).get("State") == "completed"
        svc["UpdateStatus"] = {"State": "updating" if done else "completed", "Message": "update in progress",
                               "StartedAt": now_text()}
    await Store.update(store, SERVICES, "web", change)


class Access:
    def __init__(self, store: Store) -> None:
        self.store = store

    def _require_manager(self) -> Store:
        return self.store

    async def _read(self, fn, *, wait: float = 10.0):
        return await fn(self.store)


def test_update_and_rollback_while_the_swarm_writes_the_status(tmp_path):
    async def main():
        async with etcd_store(tmp_path) as (plain, _nursery):
            store = RacyStore(plain.etcd)
            front = SwarmServices(Access(store))
            svc = service(3)
            svc["PreviousSpec"] = copy.deepcopy(svc["Spec"])
            svc["PreviousSpec"]["Mode"]["Replicated"]["Replicas"] = 2
            await store.put(SERVICES, svc, 0)

            # docker's CLI: inspect, (the updater writes), update at the version it read,
            # and the updater writes again between the front's read and its write
            seen = await front.get("web")
            await status_write(store)
            store.race = 2
            spec = copy.deepcopy(seen["Spec"])
            spec["Mode"]["Replicated"]["Replicas"] = 4
            await front.update("web", seen["Version"]["Index"], spec)
            now = await front.get("web")
            assert now["Spec"]["Mode"]["Replicated"]["Replicas"] == 4 and "UpdateStatus" not in now

            # service rollback, the same way
            seen = now
            await status_write(store)
            store.race = 3
            await front.update("web", seen["Version"]["Index"], seen["Spec"], rollback="previous")
            back = await front.get("web")
            assert back["Spec"]["Mode"]["Replicated"]["Replicas"] == 3
            assert back["PreviousSpec"]["Mode"]["Replicated"]["Replicas"] == 4
            assert back["UpdateStatus"]["State"] == "rollback_started"

            # a change of the spec since the version read stays docker's refusal
            seen = back
            other = copy.deepcopy(seen["Spec"])
            other["Mode"]["Replicated"]["Replicas"] = 7
            await front.update("web", seen["Version"]["Index"], other)
            with pytest.raises(SequenceConflict):
                await front.update("web", seen["Version"]["Index"], seen["Spec"], rollback="previous")
            assert (await front.get("web"))["Spec"]["Mode"]["Replicated"]["Replicas"] == 7

    trio.run(main)
