"""The services front (core.engine.swarm.services.SwarmServices) on a real one-member etcd, without
a cluster.

- ``service update`` / ``service rollback`` while the swarm writes the service too (the updater's
  ``UpdateStatus``): docker's CLI reads the service, then writes it at the version read; core's
  front reads it again and writes it at the stored version.  Writes of the swarm's own between
  any of these steps must not turn into 'update out of sequence'; a change of the spec in
  between must.
- ``service logs -f``: tasks that start after the logs were asked for are followed too (a fake
  gatherer stands for the nodes)."""
from __future__ import annotations

import copy
import shutil

import pytest
import trio

from core.engine.swarm.etcd import SequenceConflict
from core.engine.swarm.services import SwarmServices
from core.engine.swarm.store import SERVICES, TASKS, Store, now_text
from core.engine.swarm.tasks import status
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


class Gatherer:
    """The nodes' logs: each task says its ID once, then (following) nothing more."""

    def __init__(self) -> None:
        self.asked: list[tuple[list[str], int | None]] = []
        self.options: list[tuple[bool, bool, float]] = []

    async def logs(self, task_ids, *, follow, tail, timestamps, since):
        self.asked.append((list(task_ids), tail))
        self.options.append((follow, timestamps, since))
        for tid in task_ids:
            yield tid, "stdout", now_text(), f"hello from {tid}\n".encode()
        if follow:
            await trio.sleep_forever()


def task(tid: str, state: str, service_id: str = "web") -> dict:
    return {"ID": tid, "ServiceID": service_id, "NodeID": "n1", "Slot": 1, "DesiredState": "running",
            "Status": status(state, state), "CreatedAt": now_text()}


def test_logs_follow_tasks_that_start_later(tmp_path):
    async def main():
        async with etcd_store(tmp_path) as (store, _nursery):
            gatherer = Gatherer()
            front = SwarmServices(Access(store), logs=gatherer)
            await store.put(SERVICES, service(3), 0)
            await store.put_many(TASKS, [task("t1", "running"), task("t2", "preparing"), task("t0", "shutdown"),
                                         task("x1", "running", "other")])
            ids, _tty, known, service_id = await front.logs_of("web", task=False)
            assert service_id == "web"
            assert ids == ["t0", "t1", "t2"]
            seen: list[str] = []
            with trio.fail_after(20):
                source = front.logs_source(ids, known, service_id="web", follow=True, tail=5, timestamps=True,
                                           since=1234.5)
                try:
                    async for tid, _stream, _time, data in source:
                        seen.append(tid)
                        if seen == ["t0", "t1"]:
                            # one that was preparing starts, another is made and starts
                            await store.update(TASKS, "t2", lambda t: t.update(Status=status("running", "running")))
                            await store.put_many(TASKS, [task("t3", "new"), task("x2", "running", "other")])
                            await store.update(TASKS, "t3", lambda t: t.update(Status=status("starting", "starting")))
                            await store.update(TASKS, "t3", lambda t: t.update(Status=status("running", "running")))
                        if len(seen) == 4:
                            break
                finally:
                    await source.aclose()
            # the two later tasks are followed as they start: in either order
            assert seen[:2] == ["t0", "t1"] and sorted(seen[2:]) == ["t2", "t3"]
            assert gatherer.asked[0] == (["t0", "t1"], 5)
            assert sorted(gatherer.asked[1:]) == [(["t2"], None), (["t3"], None)]
            assert gatherer.options == [(True, True, 1234.5)] * 3  # --since and -t for the later ones too
            # without follow: what the gatherer gives for the tasks there are, no more
            plain = [item[0] async for item in front.logs_source(ids, known, service_id="web", tail=5)]
            assert plain == ["t0", "t1", "t2"]

    trio.run(main)
