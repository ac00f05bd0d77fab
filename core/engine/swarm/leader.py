"""What the swarm's leader runs: the orchestrator, the updater, the scheduler and the task reaper,
driven by watches of the store.

:func:`loops` gives :attr:`core.engine.swarm.service.SwarmService.leader_loops`: each ``async def
loop(store)`` runs while this manager leads and is cancelled when the leadership is lost.  There
is one loop, :meth:`Leader.run`: it reads the services, tasks, nodes and the cluster, keeps that
view current from watches of their keys (not of the sessions, which every heartbeat
refreshes; no polling: a change is acted on as soon as etcd reports it), and after every batch of changes (or when a timer is due: a restart delay, an
update's delay or monitor period) runs one pass.  A batch gathers for as long as the last pass
took to decide (at least :attr:`Leader.settle`, at most a second): a pass reads every task, and
a flood of changes (ten thousand tasks reporting) would otherwise keep the leader in passes;
a batch of nothing but tasks moving on between ``assigned`` and ``running`` needs no pass at
all (unless an update runs: its monitor counts from a task's start).  A pass:

1. the orchestrator (:mod:`core.engine.swarm.orchestrator`): tasks created, restarted, retired;
2. the updater (:mod:`core.engine.swarm.updater`): rolling updates, rollbacks, ``UpdateStatus``;
3. network attachments, when the build has the swarm networks' allocator
   (``core.engine.swarm.networks.AddressAllocator``): a new task whose template names
   ``Networks``, or whose service publishes a port in ingress mode, gets its
   ``NetworksAttachments`` (addresses) before it may be scheduled (a failure -- a network that
   does not exist -- stays on the task as ``Status.Err`` and is tried again); a stopped task's
   addresses are given back;
4. the scheduler (:mod:`core.engine.swarm.scheduler`): tasks assigned to nodes;
5. the reaper (:mod:`core.engine.swarm.reaper`): old and removed tasks deleted.

Each step sees the previous ones' decisions.  The writes go to etcd in transactions of up to
:data:`~core.engine.swarm.store.TXN_OPS` operations and
:data:`~core.engine.swarm.store.TXN_BYTES` (:func:`~core.engine.swarm.store.txn_chunks`), each
compared with the version it was
decided on (a new task: that its key is absent): an agent's status report or an API write that
came in between makes the transaction fail, and read the keys it wrote; the objects that moved
lost their race and are dropped (the view takes the stored ones), the others are written again
together, and the next pass decides again on the fresh objects.
"""
from __future__ import annotations

import contextlib
import json
import logging
import os
import time
from typing import Any, Awaitable, Callable

import trio

from core.engine.swarm import reaper
from core.engine.swarm.etcd import Compare, Delete, Get, Put
from core.engine.swarm.orchestrator import Changes, Orchestrator, View, runnable, state_of
from core.engine.swarm.scheduler import FailureLog, schedule, to_place
from core.engine.swarm.store import (CLUSTER_KEY, NODES, PREFIX, SERVICES, TASKS, Store, txn_chunks,
                                     now_text)
from core.engine.swarm.tasks import TERMINAL, status
from core.engine.swarm.updater import Updater

log = logging.getLogger("core.swarm.leader")

KINDS = {SERVICES: "services", TASKS: "tasks", NODES: "nodes"}


class LoopStats:
    """What the leader's loop spent its time on (logged every :attr:`every` seconds while it
    works: how many passes, watch events applied, seconds applying, deciding and writing, the
    objects written, the transactions and the objects written alone after a lost race)."""

    every = 10.0

    def __init__(self) -> None:
        self.since = time.monotonic()
        self.clear()

    def clear(self) -> None:
        self.passes = self.events = self.written = self.txns = self.alone = self.lost = self.quiet = 0
        self.apply_s = self.decide_s = self.write_s = 0.0

    def add(self, events: int, apply_s: float, decide_s: float, write_s: float, written: int) -> None:
        self.passes += 1
        self.events += events
        self.apply_s += apply_s
        self.decide_s += decide_s
        self.write_s += write_s
        self.written += written
        now = time.monotonic()
        if now - self.since >= self.every:
            if self.written or self.events > self.passes:
                log.info("leader: %d passes in %.1f s (%d batches needed none), %d events (%.2f s), "
                         "decided in %.2f s, %d objects written in %d txns (%.2f s), "
                         "%d alone after a lost race, %d lost",
                         self.passes, now - self.since, self.quiet, self.events, self.apply_s,
                         self.decide_s, self.written, self.txns, self.write_s, self.alone, self.lost)
            self.since = now
            self.clear()


class Leader:
    """The leader's state between passes (restart history, updates in progress) and its loop."""

    def __init__(self, *, clock: Callable[[], float] = time.time, settle: float = 0.01,
                 allocator: Any = None) -> None:
        self.clock = clock
        #: the swarm networks' address allocator (``attach(targets, task_id, ingress=)`` ->
        #: NetworksAttachments, ``detach(attachments, task_id)``); None: tasks get none
        self.allocator = allocator
        self.released: set[str] = set()
        self.settle = settle  # seconds to gather a burst of changes into one pass
        self.orchestrator = Orchestrator()
        self.updater = Updater()
        self.failures = FailureLog()  # the scheduler's memory of tasks that failed on nodes
        self.view = View()
        self.passes = 0
        self.stats = LoopStats()
        self.deciding = 0.0  # seconds the last pass's decisions took (its waits left out)

    # -- the view --

    async def load(self, store: Store) -> int:
        """Read everything; returns the revision the view is at."""
        result = await store.etcd.txn([], [Get(PREFIX, prefix=True)])  # one consistent read
        view = View()
        for kv in result.responses[0]:
            self._apply(view, kv.key, kv.value, kv.mod_revision)
        self.view = view
        self.orchestrator.seed(view, self.clock())  # the restart history an earlier leader made
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
                    if kind == TASKS:
                        view.share_spec(obj)
                    table[oid] = obj
                    view.versions[key] = revision
                return

    # -- one pass --

    def decide(self, now: float | None = None) -> Changes:
        """One pass over the view (pure but for the steps' memory): what to write.  (Without
        network allocation: :meth:`step` does that between :meth:`plan` and :meth:`place`.)"""
        return self.place(self.plan(now))

    def plan(self, now: float | None = None) -> Changes:
        """The orchestrator's and the updater's decisions."""
        now = self.clock() if now is None else now
        out = self.orchestrator.reconcile(self.view, now)
        self.updater.step(self.view, now, out)
        return out

    def place(self, out: Changes) -> Changes:
        """The scheduler's and the reaper's decisions, added to ``out``."""
        view = self.view
        waiting = to_place(view.tasks.values())
        failures = self.failures.observe(view.tasks.values())
        if self.allocator is not None:
            waiting = [t for t in waiting if allocated(view, t)]
        if waiting:
            for t in schedule(waiting, view.nodes.values(), view.tasks.values(),
                              failures=failures):
                out.put(view, t)
        reaper.reap(view, out)
        for tid in out.deletes:
            out.tasks.pop(tid, None)
        self.passes += 1
        return out

    async def step(self, store: Store) -> Changes:
        """One pass with the network allocation: plan, give new tasks their addresses, place.

        The decisions run in a worker thread: a pass over ten thousand tasks takes a good
        fraction of a second (seconds on a loaded machine), during which the daemon's event
        loop -- the dispatcher's heartbeats and sessions among others -- must go on.  Nothing
        else touches the view meanwhile (the watches' changes wait in the loop's list)."""
        t0 = time.perf_counter()
        out = await trio.to_thread.run_sync(self.plan)
        t1 = time.perf_counter()
        if self.allocator is not None:
            await self.allocate(out)
        t2 = time.perf_counter()
        out = await trio.to_thread.run_sync(self.place, out)
        self.deciding = (t1 - t0) + (time.perf_counter() - t2)  # (the allocator's I/O left out)
        return out

    # -- network attachments (the allocator of core.engine.swarm.networks) --

    async def allocate(self, out: Changes) -> None:
        """Give the new tasks that need them their ``NetworksAttachments`` (a task is scheduled
        only once it has them); give back the addresses of tasks that have stopped."""
        from core.errors import CoreError

        assert self.allocator is not None
        for t in list(self.view.tasks.values()):
            if not allocated(self.view, t) and runnable(t) and state_of(t) == "new":
                targets, ingress = needs_networks(self.view, t)
                try:
                    attachments = await self.allocator.attach(targets, t["ID"], ingress=ingress)
                except CoreError as exc:
                    err = str(exc)
                    if (t.get("Status") or {}).get("Err") != err:
                        out.put(self.view, {**t, "Status": status("new", "allocation failed", err)})
                    continue
                out.put(self.view, {**t, "NetworksAttachments": attachments,
                                    "Status": status("new", "created")})
            elif (t.get("NetworksAttachments") and state_of(t) in TERMINAL and not runnable(t)
                  and t["ID"] not in self.released):
                try:
                    await self.allocator.detach(t["NetworksAttachments"], t["ID"])
                    self.released.add(t["ID"])
                except CoreError as exc:
                    log.info("releasing the addresses of task %s: %s", t["ID"], exc)
        self.released &= set(self.view.tasks)

    async def write(self, store: Store, out: Changes) -> bool:
        """Write a pass's decisions; False when some lost a race (the next pass decides again)."""
        clean = True
        now = now_text()
        ops: list[tuple[str, Compare, Put | Delete]] = []
        # tasks newly assigned first: the nodes start them while the rest is written (the
        # orphans of a hundred failed nodes, say)
        for tid, task in sorted(out.tasks.items(), key=lambda kv: state_of(kv[1]) != "assigned"):
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
        for chunk in txn_chunks(ops, lambda op: len(op[2].value) if isinstance(op[2], Put) else 0):
            while chunk:
                # on failure the transaction reads the chunk's keys: the ones that moved lost
                # their race (the view takes the stored object), the rest go again together
                result = await store.etcd.txn([c for _k, c, _o in chunk], [o for _k, _c, o in chunk],
                                              [Get(k) for k, _c, _o in chunk])
                self.stats.txns += 1
                if result.succeeded:
                    self._written(chunk, result.revision)
                    chunk = []
                    break
                keep = []
                for one, kvs in zip(chunk, result.responses):
                    key, compare = one[0], one[1]
                    found = kvs[0] if isinstance(kvs, list) and kvs else None
                    if (found.mod_revision if found is not None else 0) == compare.value:
                        keep.append(one)
                        continue
                    self.stats.lost += 1
                    clean = False
                    self.view.versions.pop(key, None)
                    if found is None:
                        self._apply(self.view, key, None, result.revision)
                    else:
                        self._apply(self.view, key, found.value, found.mod_revision)
                if len(keep) == len(chunk):
                    break  # nothing moved that we can see: each alone (below)
                chunk = keep
            for one in chunk:  # each alone
                result = await store.etcd.txn([one[1]], [one[2]])
                self.stats.alone += 1
                if result.succeeded:
                    self._written([one], result.revision)
                else:
                    self.stats.lost += 1
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

    def _matters(self, key: str, old: dict[str, Any] | None) -> bool:
        """Whether a change of ``key`` (``old``: the task before it) may change a decision: all
        but a task's state moving on between ``assigned`` and ``running`` (ten thousand tasks
        starting, each a pass over every task, kept the leader busy doing nothing), unless an
        update is running."""
        if old is None or not key.startswith(TASKS) or self.updater.runs:
            return True
        new = self.view.tasks.get(key[len(TASKS):])
        if new is None:
            return True
        if new is old:
            return False
        return not (state_of(old) in QUIET and state_of(new) in QUIET
                    and all(old.get(k) == new.get(k) for k in DECIDED))

    async def run(self, store: Store) -> None:
        """Lead: load, watch, decide, write, until cancelled."""
        revision = await self.load(store)
        changed = trio.Event()
        pending: list[Any] = []

        async with contextlib.AsyncExitStack() as stack:
            # what the steps read; not the sessions (refreshed at every heartbeat) nor addresses
            streams = [await stack.enter_async_context(store.watch(kind, start_revision=revision + 1))
                       for kind in (SERVICES, TASKS, NODES, CLUSTER_KEY)]

            async def follow(events) -> None:
                async for event in events:
                    pending.append(event)
                    changed.set()

            async with trio.open_nursery() as nursery:
                for events in streams:
                    nursery.start_soon(follow, events)
                wake: float | None = 0.0
                busy = 0.0  # seconds the last pass took to apply the changes and decide
                while True:
                    if wake is None or wake > self.clock():
                        timeout = None if wake is None else max(0.0, wake - self.clock())
                        with trio.move_on_after(timeout if timeout is not None else float("inf")):
                            await changed.wait()
                    # a burst of changes gathers a while: at least ``settle``, and as long as
                    # the last pass took to decide (up to a second; the allocator's etcd calls
                    # not counted: they are no load on this process), so that a flood of status
                    # reports (ten thousand tasks starting) costs the leader at most half its
                    # time in passes over every task, not all of it
                    await trio.sleep(max(self.settle, min(busy, 1.0)))
                    due = wake is not None and wake <= self.clock()
                    changed = trio.Event()
                    batch, pending[:] = list(pending), []
                    t0 = time.perf_counter()
                    matters = due
                    for event in batch:
                        key = event.kv.key
                        old = self.view.tasks.get(key[len(TASKS):]) if key.startswith(TASKS) else None
                        self._apply(self.view, key, None if event.type == "DELETE" else event.kv.value,
                                    event.kv.mod_revision)
                        matters = matters or self._matters(key, old)
                    if not matters:  # only tasks moving on towards running: nothing to decide
                        self.stats.quiet += 1
                        continue
                    t1 = time.perf_counter()
                    out = await self.step(store)
                    t2 = time.perf_counter()
                    wake = out.wake
                    if out.tasks or out.services or out.deletes:
                        if not await self.write(store, out):
                            wake = 0.0
                    self.stats.add(len(batch), t1 - t0, t2 - t1, time.perf_counter() - t2,
                                   len(out.tasks) + len(out.services) + len(out.deletes))
                    busy = (t1 - t0) + self.deciding  # applying and deciding, not waiting on etcd


#: task states between its assignment and its end: a task moving within them changes no decision
#: of a pass (but while an update runs: its monitor counts the time since a task ran)
QUIET = frozenset({"assigned", "accepted", "preparing", "ready", "starting", "running"})
#: the fields of a task a pass decides on (beside its state)
DECIDED = ("DesiredState", "NodeID", "Slot", "ServiceID", "SpecVersion", "NetworksAttachments")


def needs_networks(view: View, task: dict[str, Any]) -> tuple[list[Any], bool]:
    """What a task attaches to: its template's ``Networks`` and, when its service publishes a
    port in ingress mode, the ingress network."""
    targets = list((task.get("Spec") or {}).get("Networks") or ())
    service = view.services.get(task.get("ServiceID", "")) or {}
    endpoint = (service.get("Endpoint") or {}).get("Spec") or (service.get("Spec") or {}).get("EndpointSpec") or {}
    ingress = any((p.get("PublishMode") or "ingress") == "ingress" for p in endpoint.get("Ports") or ())
    return targets, ingress


def allocated(view: View, task: dict[str, Any]) -> bool:
    """Whether the task has the network attachments it needs (or needs none)."""
    if task.get("NetworksAttachments"):
        return True
    targets, ingress = needs_networks(view, task)
    return not targets and not ingress


def default_allocator(store: Store) -> Any:
    """The swarm networks' allocator when this build has it (core.engine.swarm.networks)."""
    try:
        from core.engine.swarm.networks import AddressAllocator  # type: ignore[attr-defined]
    except ImportError:
        return None
    return AddressAllocator(store)


#: set to ``0`` in a daemon's environment, the leader runs none of these loops: for tests that
#: play the leader themselves (they write tasks of services that do not exist, which the
#: orchestrator would remove)
LOOPS_ENV = "CORE_SWARM_LEADER_LOOPS"


def loops(**options: Any) -> list[Callable[[Store], Awaitable[None]]]:
    """The leader's loops for :attr:`SwarmService.leader_loops` (a new :class:`Leader` each time
    the leadership is won: nothing carries over from an earlier term but the store); none when
    :data:`LOOPS_ENV` is ``0``."""
    if os.environ.get(LOOPS_ENV, "1").strip().lower() in ("0", "no", "off", "false"):
        return []
    async def lead(store: Store) -> None:
        opts = dict(options)
        if "allocator" not in opts:
            opts["allocator"] = default_allocator(store)
        await Leader(**opts).run(store)

    lead.__qualname__ = "leader.lead"
    return [lead]
