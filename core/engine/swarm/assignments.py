"""The managers' side of the node protocol (:mod:`core.engine.swarm.tasks` describes it): what
each manager's dispatcher (:class:`core.engine.swarm.dispatcher.Dispatcher`) adds to the node
sessions for swarm services.

- :class:`Assignments`: one watch of the tasks per manager (not one per node: the scale
  simulation has a thousand), an index node -> assigned tasks, each node's set pushed on its
  session (and in the session's first item);
- :class:`TaskStatusWriter`: the call ``tasks.status`` (a node reports its tasks' states):
  checked, never backwards, written in batched etcd transactions;
- :class:`LogBroker`: ``service logs`` / ``task logs`` gathered from the nodes (``logs`` items
  on the sessions, the calls ``logs.publish`` and, between managers, ``logs.relay``).
"""
from __future__ import annotations

import base64
import contextlib
import itertools
import json
import logging
import time
from typing import Any, AsyncIterator, Callable

import attrs
import trio

from core import errors
from core.engine.swarm import tasks as swarm_tasks
from core.engine.swarm.etcd import Compare, Get, Put, TxnResult
from core.engine.swarm.store import TASKS, Store, now_text, write_gathered
from core.engine.swarm.transport import Peer, Server, Sessions

log = logging.getLogger("core.swarm.dispatcher")

LOG_EVERY = 10.0  # seconds between the busy figures logged


#: what a node does not need to hear about again: the status it reported itself, and stamps
_OWN = frozenset({"Status", "UpdatedAt", "Version"})


def _news(old: dict[str, Any] | None, new: dict[str, Any]) -> bool:
    """Whether a node must be sent ``new`` again, having been sent ``old``: anything changed
    but the status it reported itself."""
    if old is None:
        return True
    if old.keys() - _OWN != new.keys() - _OWN:
        return True
    return any(old[k] != new[k] for k in new.keys() - _OWN)


class Specs:
    """One decoded copy of each task template (tasks of a service at one version share it):
    ten thousand tasks hold a few specs, not ten thousand.  Nothing edits a task's ``Spec``
    in place."""

    def __init__(self, limit: int = 1000) -> None:
        self.limit = limit
        self._specs: dict[tuple[str, int], dict[str, Any]] = {}

    def share(self, task: dict[str, Any]) -> dict[str, Any]:
        spec = task.get("Spec")
        if not isinstance(spec, dict):
            return task
        key = (task.get("ServiceID", ""), (task.get("SpecVersion") or {}).get("Index", 0))
        known = self._specs.get(key)
        if known is not None and known == spec:
            task["Spec"] = known
        else:
            if len(self._specs) >= self.limit:
                self._specs.clear()
            self._specs[key] = spec
        return task


class Assignments:
    """The tasks assigned to each node, from one watch of :data:`TASKS` per manager (not one
    per node: a swarm may have a thousand), pushed as ``{"assignments": [...]}`` on the nodes'
    sessions.

    A node's set is every task with its ``NodeID`` whose state is at least ``assigned``, until
    the task is deleted (docker's dispatcher does the same: a finished task stays in the set,
    and its container on the node, until the task reaper deletes it).  A change the node made
    itself (only its ``Status``) is not sent back; any other (``DesiredState``, a new or deleted
    task) sends the node its whole set again.  Changes are gathered for :attr:`delay` seconds
    and sent once per node.
    """

    def __init__(self, store: Store, sessions: Sessions, *, delay: float = 0.02) -> None:
        self.store = store
        self.sessions = sessions
        self.delay = delay
        self.by_node: dict[str, dict[str, dict[str, Any]]] = {}
        self._tasks: dict[str, dict[str, Any]] = {}  # every task of by_node, by ID
        self._specs = Specs()
        self._dirty: set[str] = set()
        self._wake = trio.Event()
        self.ready = trio.Event()
        self.revision = 0
        # figures logged every LOG_EVERY seconds while busy: watch events, seconds applying
        # them, items sent, tasks in them
        self.counts = {"events": 0, "apply_s": 0.0, "sent": 0, "tasks_sent": 0}
        self._logged = time.monotonic()

    # -- the index (pure: unit-tested without etcd) --

    def apply(self, task_id: str, task: dict[str, Any] | None, version: int = 0) -> set[str]:
        """One task put (``task``) or deleted (None); returns the nodes whose set changed for
        them (and marks them to be sent)."""
        affected: set[str] = set()
        old_node = self.node_of(task_id)
        node = ""
        if task is not None:
            state = task.get("Status", {}).get("State", "")
            if task.get("NodeID") and swarm_tasks.ORDER.get(state, -1) >= swarm_tasks.ORDER["assigned"]:
                node = task["NodeID"]
        old: dict[str, Any] | None = None
        if old_node and old_node != node:
            self.by_node.get(old_node, {}).pop(task_id, None)
            if not self.by_node.get(old_node):
                self.by_node.pop(old_node, None)
            del self._tasks[task_id]
            affected.add(old_node)
        elif old_node:
            old = self.by_node.get(old_node, {}).get(task_id)
        if node and task is not None:
            task = self._specs.share({"ID": task_id, "Version": {"Index": version},
                                      **{k: v for k, v in task.items() if k not in ("ID", "Version")}})
            self.by_node.setdefault(node, {})[task_id] = task
            self._tasks[task_id] = task
            if _news(old, task):
                affected.add(node)
        self._dirty |= affected
        if affected:
            self._wake.set()
        return affected

    def reset(self, tasks: list[tuple[dict[str, Any], int]]) -> None:
        """The whole index again (a new watch): every node is sent its set."""
        before = set(self.by_node)
        self.by_node.clear()
        self._tasks.clear()
        for task, version in tasks:
            self.apply(task["ID"], task, version)
        self._dirty |= before | set(self.sessions.nodes)
        self._wake.set()

    def assigned(self, node_id: str) -> list[dict[str, Any]]:
        return sorted(self.by_node.get(node_id, {}).values(), key=lambda t: t["ID"])

    def tasks(self) -> dict[str, dict[str, Any]] | None:
        """Every assigned task by ID (what ``networks.peers`` needs: a live task is assigned),
        None before the index is read.  The index's own mapping: read it, never change it."""
        if not self.ready.is_set():
            return None
        return self._tasks

    def node_of(self, task_id: str) -> str | None:
        task = self._tasks.get(task_id)
        return task["NodeID"] if task is not None else None

    def message(self, node_id: str) -> dict[str, Any]:
        """The ``assignments`` item for a node (nothing before the index is read)."""
        if not self.ready.is_set():
            return {}
        self._dirty.discard(node_id)
        return {"assignments": self.assigned(node_id)}

    def flush(self) -> int:
        """Send the marked nodes their sets; returns how many were sent."""
        dirty, self._dirty = self._dirty, set()
        self._wake = trio.Event()
        sent = 0
        for node in dirty:
            tasks = self.assigned(node)
            if self.sessions.send(node, {"assignments": tasks}):
                sent += 1
                self.counts["tasks_sent"] += len(tasks)
        self.counts["sent"] += sent
        now = time.monotonic()
        if now - self._logged >= LOG_EVERY:
            log.info("assignments: %d task events (%.2f s), %d items sent with %d tasks in %.1f s",
                     self.counts["events"], self.counts["apply_s"], self.counts["sent"],
                     self.counts["tasks_sent"], now - self._logged)
            self.counts = dict.fromkeys(self.counts, 0)
            self._logged = now
        return sent

    # -- the watch --

    async def run(self, *, task_status=trio.TASK_STATUS_IGNORED) -> None:
        """Read every task, then watch; a broken watch (no leader, etcd restarting) starts
        over.  ``task_status.started()`` at once (the index fills in the background)."""
        task_status.started()
        async with trio.open_nursery() as nursery:
            nursery.start_soon(self._sender)
            while True:
                try:
                    await self._watch()
                except errors.CoreError as exc:
                    log.info("dispatcher: tasks watch ended (%s); reading again", exc)
                await trio.sleep(0.5)

    async def _watch(self) -> None:
        revision = await self.store.revision()
        kvs = await self.store.etcd.range(TASKS, prefix=True, revision=revision)
        self.reset([(kv.json(), kv.mod_revision) for kv in kvs])
        self.revision = revision
        self.ready.set()
        async with self.store.watch(TASKS, start_revision=revision + 1) as events:
            async for event in events:
                t0 = time.perf_counter()
                task_id = event.kv.key[len(TASKS):]
                if event.type == "DELETE":
                    self.apply(task_id, None)
                else:
                    try:
                        self.apply(task_id, event.kv.json(), event.kv.mod_revision)
                    except ValueError:
                        continue
                self.revision = event.kv.mod_revision
                self.counts["events"] += 1
                self.counts["apply_s"] += time.perf_counter() - t0

    async def _sender(self) -> None:
        while True:
            await self._wake.wait()
            await trio.sleep(self.delay)  # gather a burst of changes
            self.flush()


@attrs.define
class _Reports:
    """Status reports gathered for one write (see :meth:`TaskStatusWriter.call`)."""

    #: task ID -> {reporting node: its latest status} (the task's own node's is written)
    statuses: dict[str, dict[str, dict[str, Any]]] = attrs.field(factory=dict)
    done: trio.Event = attrs.field(factory=trio.Event)
    #: task ID -> the nodes that reported it without holding it (their calls are Forbidden)
    refused: dict[str, set[str]] = attrs.field(factory=dict)
    error: BaseException | None = None


class TaskStatusWriter:
    """The call ``tasks.status`` (a node reports its tasks' states): checked, then written
    in etcd transactions of up to :data:`BATCH` tasks, each comparing the versions it read.

    Reports are gathered across nodes: the first call waits :attr:`gather` seconds, then
    writes every report that came in meanwhile (one read transaction and one write per
    :data:`BATCH` tasks; a task whose version moved between the two is read again); the other
    calls wait for that write.  A report of a task assigned to another node fails its call
    (Forbidden) and no other."""

    BATCH = 50  # a compare and a put per task: within etcd's 128 operations per transaction

    def __init__(self, store: Store, *, gather: float = 0.05) -> None:
        self.store = store
        self.gather = gather
        self.writes = 0  # tasks written (the scale simulation's figure)
        self._reports: _Reports | None = None
        self.counts = {"calls": 0, "updates": 0, "txns": 0, "conflicts": 0, "seconds": 0.0}
        self._logged = time.monotonic()

    async def call(self, peer: Peer, args: dict) -> dict:
        node_id = peer.identity.node_id
        updates = args.get("updates")
        if not isinstance(updates, list):
            raise errors.InvalidArgument("tasks.status: updates must be a list")
        latest: dict[str, dict[str, Any]] = {}
        for u in updates:
            if not (isinstance(u, dict) and isinstance(u.get("ID"), str) and u["ID"]
                    and isinstance(u.get("Status"), dict)
                    and u["Status"].get("State") in swarm_tasks.ORDER):
                raise errors.InvalidArgument(f"tasks.status: invalid update {u!r}")
            old = latest.get(u["ID"])
            if old is None or swarm_tasks.advances(old["State"], u["Status"]["State"]):
                latest[u["ID"]] = u["Status"]
        if not latest:
            return {}
        self.counts["calls"] += 1
        self.counts["updates"] += len(latest)
        reports = self._reports
        if reports is not None:
            self._add(reports, node_id, latest)
            await reports.done.wait()
        else:
            reports = self._reports = _Reports()
            self._add(reports, node_id, latest)
            try:
                await trio.sleep(self.gather)
            finally:
                self._reports = None
                await write_gathered(reports, self._write_all, 30.0, "tasks.status: the write")
        refused = sorted(t for t in latest if node_id in reports.refused.get(t, ()))
        if refused:
            raise errors.Forbidden(f"task {refused[0]} is not assigned to node {node_id}")
        if reports.error is not None:
            if isinstance(reports.error, errors.CoreError):
                raise reports.error
            raise errors.Unavailable(f"tasks.status: {reports.error}")
        return {}

    @staticmethod
    def _add(reports: _Reports, node_id: str, latest: dict[str, dict[str, Any]]) -> None:
        for task_id, status in latest.items():
            by_node = reports.statuses.setdefault(task_id, {})
            old = by_node.get(node_id)
            if old is None or swarm_tasks.advances(old["State"], status["State"]):
                by_node[node_id] = status

    async def _write_all(self, reports: _Reports) -> None:
        t0 = time.perf_counter()
        items = sorted(reports.statuses.items())
        for i in range(0, len(items), self.BATCH):
            await self._write(dict(items[i:i + self.BATCH]), reports.refused)
        c = self.counts
        c["seconds"] += time.perf_counter() - t0
        now = time.monotonic()
        if now - self._logged >= LOG_EVERY:
            log.info("tasks.status: %d calls, %d updates, %d txns, %d conflicts, %.2f s in %.1f s",
                     c["calls"], c["updates"], c["txns"], c["conflicts"], c["seconds"], now - self._logged)
            self.counts = dict.fromkeys(c, 0)
            self._logged = now

    async def _write(self, statuses: dict[str, dict[str, dict[str, Any]]], refused: dict[str, set[str]]) -> None:
        for _ in range(10):
            ids = sorted(statuses)
            read = await self.store.etcd.txn([], [Get(TASKS + i) for i in ids])
            compares, puts = [], []
            now = now_text()
            for task_id, kvs in zip(ids, read.responses):
                if not kvs:
                    continue  # deleted (reaped, its service removed): nothing to record
                task = kvs[0].json()
                for node_id in statuses[task_id]:
                    if node_id != task.get("NodeID"):
                        refused.setdefault(task_id, set()).add(node_id)
                status = statuses[task_id].get(task.get("NodeID", ""))
                if status is None:
                    continue
                if not swarm_tasks.advances(task.get("Status", {}).get("State", ""), status["State"]):
                    continue  # never back (a late or repeated report)
                task["Status"] = {"Timestamp": now, **status}
                task["UpdatedAt"] = now
                compares.append(Compare("mod", TASKS + task_id, "==", kvs[0].mod_revision))
                puts.append(Put(TASKS + task_id, json.dumps(task)))
            self.counts["txns"] += 1
            if not puts:
                return
            result: TxnResult = await self.store.etcd.txn(compares, puts)
            self.counts["txns"] += 1
            if result.succeeded:
                self.writes += len(puts)
                return
            self.counts["conflicts"] += 1
            # a task changed meanwhile (the orchestrator set its DesiredState): read again
        raise errors.Unavailable("tasks.status: too many conflicting writes; report again")


class LogBroker:
    """``service logs`` / ``task logs`` gathered from the nodes (the node protocol's
    ``logs`` items and ``logs.publish`` calls).

    :meth:`logs` asks each node holding one of the tasks for its logs: on its session when the
    node's session is with this manager, else through the manager holding the session (the
    call ``logs.relay``, manager to manager).
    """

    def __init__(self, store: Store, sessions: Sessions, node_id: str, *,
                 manager_client: Callable[[str], Any] | None = None) -> None:
        self.store = store
        self.sessions = sessions
        self.node_id = node_id
        #: ``manager_client(node_id)``: a :class:`ManagerClient` to that manager (set by the
        #: swarm service: it has the credentials and the managers' addresses)
        self.manager_client = manager_client
        self._subs: dict[str, tuple[trio.MemorySendChannel, set[str]]] = {}
        self._ids = itertools.count(1)

    def install(self, server: Server) -> None:
        from core.engine.swarm.transport import Access

        server.register("logs.publish", self.publish, access=Access.NODE)
        server.register("logs.relay", self.relay, access=Access.MANAGER, stream=True)

    async def publish(self, peer: Peer, args: dict) -> dict:
        sub = self._subs.get(str(args.get("id", "")))
        if sub is None:
            return {"open": False}  # the reader is gone: the node stops sending
        channel, nodes = sub
        node_id = peer.identity.node_id
        try:
            for m in args.get("messages") or ():
                await channel.send((m["task"], m.get("stream", "stdout"), m.get("time", ""),
                                    base64.b64decode(m.get("data", ""))))
            if args.get("close"):
                nodes.discard(node_id)
                await channel.send(("", "", "", b""))  # a node finished: the reader counts
        except (trio.BrokenResourceError, trio.ClosedResourceError):
            return {"open": False}
        return {"open": True}

    async def relay(self, peer: Peer, args: dict, send) -> dict:
        """Another manager's reader: the logs of the nodes whose sessions are here."""
        async for item in self._local(list(args.get("tasks") or ()), args):
            task_id, stream, time_, data = item
            await send({"task": task_id, "stream": stream, "time": time_,
                        "data": base64.b64encode(data).decode()})
        return {}

    async def _task_nodes(self, task_ids: list[str]) -> dict[str, list[str]]:
        by_node: dict[str, list[str]] = {}
        for task_id in task_ids:
            found = await self.store.get(TASKS, task_id)
            if found is not None and found[0].get("NodeID"):
                by_node.setdefault(found[0]["NodeID"], []).append(task_id)
        return by_node

    async def logs(self, task_ids: list[str], *, follow: bool = False, tail: int | None = None,
                   timestamps: bool = False, since: float = 0) -> AsyncIterator[tuple[str, str, str, bytes]]:
        """The tasks' log entries ``(task ID, "stdout"|"stderr", time (RFC 3339), data)`` from
        every node that holds one; ends when every node sent all (with ``follow``, when the
        reader stops).  ``tail``: the last lines of each task (None: all); ``since``: unix
        seconds.  A node without a session (down) is skipped."""
        opts = {"follow": bool(follow), "tail": tail, "timestamps": bool(timestamps), "since": since}
        by_node = await self._task_nodes(task_ids)
        sessions = await self.store.sessions()
        local = [t for n, ts in by_node.items() if sessions.get(n, {}).get("Manager") in (None, self.node_id)
                 for t in ts]
        remote: dict[str, list[str]] = {}
        for n, ts in by_node.items():
            manager = sessions.get(n, {}).get("Manager")
            if manager not in (None, self.node_id):
                remote.setdefault(manager, []).extend(ts)
        if not remote:  # the usual case: no nursery around the yields
            if local:
                async with contextlib.aclosing(self._local(local, opts)) as items:
                    async for item in items:
                        yield item
            return
        send, receive = trio.open_memory_channel[tuple[str, str, str, bytes]](256)
        async with trio.open_nursery() as nursery:
            async def pump(source: AsyncIterator[tuple[str, str, str, bytes]], out) -> None:
                async with out:
                    try:
                        async for item in source:
                            await out.send(item)
                    except trio.BrokenResourceError:
                        pass  # the reader is gone

            if local:
                nursery.start_soon(pump, self._local(local, opts), send.clone())
            for manager, ts in remote.items():
                nursery.start_soon(pump, self._remote(manager, ts, opts), send.clone())
            send.close()
            try:
                async with receive:
                    async for item in receive:
                        yield item
            except GeneratorExit:  # the reader closed this generator: no exception out of the nursery
                pass
            nursery.cancel_scope.cancel()

    async def _remote(self, manager: str, task_ids: list[str], opts: dict[str, Any]
                      ) -> AsyncIterator[tuple[str, str, str, bytes]]:
        if self.manager_client is None:
            return
        client = await self.manager_client(manager)
        if client is None:
            return
        try:
            async with client.stream("logs.relay", tasks=task_ids, **opts) as items:
                async for m in items:
                    if isinstance(m, dict) and "task" in m:
                        yield m["task"], m.get("stream", "stdout"), m.get("time", ""), \
                            base64.b64decode(m.get("data", ""))
        except errors.CoreError as exc:
            log.info("logs from manager %s: %s", manager, exc)
        finally:
            await client.aclose()

    async def _local(self, task_ids: list[str], opts: dict[str, Any]
                     ) -> AsyncIterator[tuple[str, str, str, bytes]]:
        by_node = await self._task_nodes(task_ids)
        sub_id = f"{self.node_id}-{next(self._ids)}"
        send, receive = trio.open_memory_channel[tuple[str, str, str, bytes]](256)
        waiting: set[str] = set()
        self._subs[sub_id] = (send, waiting)
        try:
            for node, ts in by_node.items():
                if self.sessions.send(node, {"logs": {"id": sub_id, "tasks": ts, **opts}}):
                    waiting.add(node)
            async with receive:
                while waiting:
                    item = None
                    with trio.move_on_after(1.0):
                        item = await receive.receive()
                    if item is None:  # a node whose session ended sends no more
                        waiting &= set(self.sessions.nodes)
                    elif item[0]:
                        yield item
        finally:
            self._subs.pop(sub_id, None)
            send.close()
