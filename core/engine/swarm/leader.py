"""What the swarm's leader runs: the orchestrator, the updater, the scheduler and the task reaper,
driven by one watch of the store.

:func:`loops` gives :attr:`core.engine.swarm.service.SwarmService.leader_loops`: each ``async def
loop(store)`` runs while this manager leads and is cancelled when the leadership is lost.  There
is one loop, :meth:`Leader.run`: it reads the services, tasks, nodes and the cluster, keeps that
view current from a watch of ``/swarm/`` (no polling: a change is acted on as soon as etcd
reports it), and after every batch of changes (or when a timer is due: a restart delay, an
update's delay or monitor period) runs one pass:

1. the orchestrator (:mod:`core.engine.swarm.orchestrator`): tasks created, restarted, retired;
2. the updater (:mod:`core.engine.swarm.updater`): rolling updates, rollbacks, ``UpdateStatus``;
3. the scheduler (:mod:`core.engine.swarm.scheduler`): tasks assigned to nodes;
4. the reaper (:mod:`core.engine.swarm.reaper`): old and removed tasks deleted.

Each step sees the previous ones' decisions.  The writes go to etcd in transactions of up to
:data:`~core.engine.swarm.store.TXN_OPS` operations, each compared with the version it was
decided on (a new task: that its key is absent): an agent's status report or an API write that
came in between makes the transaction fail, and then each object is written alone, the ones
that lost their race are dropped and the next pass decides again on the fresh objects.
"""
from __future__ import annotations

import json
import logging
import time
from typing import Any, Awaitable, Callable

import trio

from core.engine.swarm import reaper
from core.engine.swarm.etcd import Compare, Delete, Get, Put
from core.engine.swarm.orchestrator import Changes, Orchestrator, View
from core.engine.swarm.scheduler import schedule, to_place
from core.engine.swarm.store import (CLUSTER_KEY, NODES, PREFIX, SERVICES, TASKS, TXN_OPS, Store,
                                     now_text)
from core.engine.swarm.updater import Updater

log = logging.getLogger("core.swarm.leader")

KINDS = {SERVICES: "services", TASKS: "tasks", NODES: "nodes"}


class Leader:
    """The leader's state between passes (restart history, updates in progress) and its loop."""

    def __init__(self, *, clock: Callable[[], float] = time.time, settle: float = 0.01) -> None:
        self.clock = clock
        self.settle = settle  # seconds to gather a burst of changes into one pass
        self.orchestrator = Orchestrator()
        self.updater = Updater()
        self.view = View()
        self.passes = 0

    # -- the view --

    async def load(self, store: Store) -> int:
        """Read everything; returns the revision the view is at."""
        result = await store.etcd.txn([], [Get(PREFIX, prefix=True)])  # one consistent read
        view = View()
        for kv in result.responses[0]:
            self._apply(view, kv.key, kv.value, kv.mod_revision)
        self.view = view
        return result.revision

    @staticmethod
    def _apply(view: View, key: str, value: bytes | None, revision: int) -> None:
        if key == CLUSTER_KEY:
            if value:
                view.cluster = json.loads(value).get("Cluster") or {}
            return
        for kind, attr in KINDS.items():
            if key.startswith(kind):
                table = getattr(view, attr)
                oid = key[len(kind):]
                if value is None:
                    # a tombstone: an older PUT of the key still in the watch's queue (our own
                    # write's echo) must not bring the object back
                    if revision >= view.versions.get(key, 0):
                        table.pop(oid, None)
                        view.versions[key] = revision
                elif revision > view.versions.get(key, 0) or (
                        revision == view.versions.get(key, 0) and oid in table):
                    obj = json.loads(value)
                    obj.setdefault("ID", oid)
                    table[oid] = obj
                    view.versions[key] = revision
                return

    # -- one pass --

    def decide(self, now: float | None = None) -> Changes:
        """One pass over the view (pure but for the steps' memory): what to write."""
        now = self.clock() if now is None else now
        view = self.view
        out = self.orchestrator.reconcile(view, now)
        self.updater.step(view, now, out)
        waiting = to_place(view.tasks.values())
        if waiting:
            for t in schedule(waiting, view.nodes.values(), view.tasks.values()):
                out.put(view, t)
        reaper.reap(view, out)
        for tid in out.deletes:
            out.tasks.pop(tid, None)
        self.passes += 1
        return out

    async def write(self, store: Store, out: Changes) -> bool:
        """Write a pass's decisions; False when some lost a race (the next pass decides again)."""
        clean = True
        now = now_text()
        ops: list[tuple[str, Compare, Put | Delete]] = []
        for tid, task in out.tasks.items():
            key = TASKS + tid
            body = json.dumps({**task, "UpdatedAt": now})
            ops.append((key, Compare("mod", key, "==", self.view.versions.get(key, 0)), Put(key, body)))
        for sid, svc in out.services.items():
            key = SERVICES + sid
            body = json.dumps({k: v for k, v in svc.items() if k != "Version"} | {"UpdatedAt": now})
            ops.append((key, Compare("mod", key, "==", self.view.versions.get(key, 0)), Put(key, body)))
        for tid in out.deletes:
            key = TASKS + tid
            ops.append((key, Compare("mod", key, "==", self.view.versions.get(key, 0)), Delete(key)))
        for i in range(0, len(ops), TXN_OPS):
            chunk = ops[i:i + TXN_OPS]
            result = await store.etcd.txn([c for _k, c, _o in chunk], [o for _k, _c, o in chunk])
            if result.succeeded:
                self._written(chunk, result.revision)
                continue
            for one in chunk:  # someone else wrote one of them: each alone
                result = await store.etcd.txn([one[1]], [one[2]])
                if result.succeeded:
                    self._written([one], result.revision)
                else:
                    clean = False
                    await self._reread(store, one[0])
        return clean

    def _written(self, chunk, revision: int) -> None:
        for key, _c, op in chunk:
            self._apply(self.view, key, None if isinstance(op, Delete) else
                        (op.value.encode() if isinstance(op.value, str) else op.value), revision)

    async def _reread(self, store: Store, key: str) -> None:
        kv = await store.etcd.get(key)
        self.view.versions.pop(key, None)
        if kv is None:
            self._apply(self.view, key, None, await store.revision())
        else:
            self._apply(self.view, key, kv.value, kv.mod_revision)

    # -- the loop --

    async def run(self, store: Store) -> None:
        """Lead: load, watch, decide, write, until cancelled."""
        revision = await self.load(store)
        changed = trio.Event()
        pending: list[Any] = []

        async with store.watch(PREFIX, start_revision=revision + 1) as events:
            async def follow() -> None:
                nonlocal changed
                async for event in events:
                    pending.append(event)
                    changed.set()

            async with trio.open_nursery() as nursery:
                nursery.start_soon(follow)
                wake: float | None = 0.0
                while True:
                    if wake is None or wake > self.clock():
                        timeout = None if wake is None else max(0.0, wake - self.clock())
                        with trio.move_on_after(timeout if timeout is not None else float("inf")):
                            await changed.wait()
                    await trio.sleep(self.settle)
                    changed = trio.Event()
                    batch, pending[:] = list(pending), []
                    for event in batch:
                        self._apply(self.view, event.kv.key,
                                    None if event.type == "DELETE" else event.kv.value,
                                    event.kv.mod_revision)
                    out = self.decide()
                    wake = out.wake
                    if out.tasks or out.services or out.deletes:
                        if not await self.write(store, out):
                            wake = 0.0


def loops(**options: Any) -> list[Callable[[Store], Awaitable[None]]]:
    """The leader's loops for :attr:`SwarmService.leader_loops` (a new :class:`Leader` each time
    the leadership is won: nothing carries over from an earlier term but the store)."""
    async def lead(store: Store) -> None:
        await Leader(**options).run(store)

    lead.__qualname__ = "leader.lead"
    return [lead]
