"""Node sessions on the managers (the dispatcher), node health on the leader, and the agent.

The dispatcher (:class:`Dispatcher`, every manager) serves the ``session`` and ``heartbeat``
calls of the swarm channel (:mod:`core.engine.swarm.transport`).  When a node opens a session
the dispatcher records the node's description and address and puts ``/swarm/sessions/<id>``
with an etcd lease of ``period × 2`` seconds; each heartbeat refreshes that lease.  When the
heartbeats stop (the node or its manager died, or the network between them), the lease expires
and etcd deletes the key.  A heartbeat answers the period, the role the swarm wants for the
node, the digest of the current trust bundle (a node renews its certificate when either
differs from its own) and the managers' addresses (the node fails over between them).

The leader (the manager whose etcd member is the Raft leader) runs
:meth:`Dispatcher.check_nodes` several times a period: a node with a session key is ``ready``,
a ready node without one goes ``down`` (``heartbeat failure``).

The dispatcher is also the managers' side of the node protocol
(:mod:`core.engine.swarm.tasks`): :class:`Assignments` (one watch of the tasks per manager,
each node's set pushed on its session), :class:`TaskStatusWriter` (the call ``tasks.status``)
and :class:`LogBroker` (``service logs``: ``logs`` items, ``logs.publish``, ``logs.relay``).

The agent (:class:`Agent`, every node, managers too) keeps one session with some manager and
heartbeats on it; when the manager stops answering it opens a session with the next one.  It
hands every item of the session to ``on_update``: the node's task runner
(:class:`core.engine.swarm.worker.Worker`) takes the assignments and log requests.
"""
from __future__ import annotations

import base64
import contextlib
import itertools
import json
import logging
import math
from typing import Any, AsyncIterator, Awaitable, Callable

import trio

from core import errors
from core.engine.swarm import tasks as swarm_tasks
from core.engine.swarm import tokens as swarm_tokens
from core.engine.swarm.etcd import Compare, Get, Put, TxnResult
from core.engine.swarm.store import TASKS, Store, now_text
from core.engine.swarm.transport import ManagerClient, Peer, Server, Sessions

log = logging.getLogger("core.swarm.dispatcher")


def lease_ttl(period: float) -> int:
    """The session lease: two heartbeat periods (whole seconds, at least 2)."""
    return max(2, math.ceil(period * 2))


class Dispatcher:
    """A manager's node sessions, backed by etcd leases (see the module docstring)."""

    def __init__(self, store: Store, node_id: str, *, period: float,
                 managers: Callable[[], Awaitable[list[dict[str, str]]]],
                 trust_digest: Callable[[], str]) -> None:
        self.store = store
        self.node_id = node_id
        self.sessions = Sessions(period)
        self._managers = managers
        self._trust_digest = trust_digest
        self._leases: dict[str, tuple[int, str, int]] = {}  # node ID -> (lease, address, TTL)
        self.assignments = Assignments(store, self.sessions)
        self.task_status = TaskStatusWriter(store)
        self.logs = LogBroker(store, self.sessions, node_id)

    @property
    def period(self) -> float:
        return self.sessions.period

    @period.setter
    def period(self, value: float) -> None:
        self.sessions.period = value

    def install(self, server: Server) -> None:
        from core.engine.swarm.transport import Access

        server.register("session", self.session, access=Access.NODE, stream=True)
        server.register("heartbeat", self.heartbeat, access=Access.NODE)
        server.register("tasks.status", self.task_status.call, access=Access.NODE)
        self.logs.install(server)

    async def serve(self, *, task_status=trio.TASK_STATUS_IGNORED) -> None:
        """The dispatcher's own loop (every manager): the assignment index's watch of the
        tasks (see :class:`Assignments`)."""
        await self.assignments.run(task_status=task_status)

    async def _touch(self, node_id: str, addr: str | None = None) -> None:
        held = self._leases.get(node_id)
        ttl = lease_ttl(self.period)
        if held is not None and addr is None and held[2] == ttl:
            try:
                await self.store.etcd.lease_keepalive(held[0])
                return
            except errors.NotFound:
                pass
        addr = addr if addr is not None else (held[1] if held else "")
        lease = await self.store.etcd.lease_grant(ttl)  # a new period: a new lease
        await self.store.put_session(node_id, {"Manager": self.node_id, "Addr": addr}, lease.id)
        self._leases[node_id] = (lease.id, addr, ttl)

    async def _extras(self, node_id: str) -> dict[str, Any]:
        found = await self.store.node(node_id)
        if found is None:
            raise errors.Forbidden(f"node {node_id} was removed from the swarm")
        return {"role": found[0]["Spec"]["Role"], "digest": self._trust_digest(),
                "managers": await self._managers()}

    async def session(self, peer: Peer, args: dict, send) -> Any:
        node_id = peer.identity.node_id
        addr = peer.address.rsplit(":", 1)[0].strip("[]")
        description = args.get("description")

        def describe(node: dict[str, Any]) -> None:
            if isinstance(description, dict):
                node["Description"].update({k: v for k, v in description.items()
                                            if k in ("Hostname", "Platform", "Resources", "Engine")})
                if description.get("JoinAvailability") in ("active", "pause", "drain"):
                    node["Spec"]["Availability"] = description["JoinAvailability"]
            node["Status"]["Addr"] = addr

        if await self.store.update_node(node_id, describe) is None:
            raise errors.Forbidden(f"node {node_id} was removed from the swarm")
        await self._touch(node_id, addr)
        extras = await self._extras(node_id)
        first = True

        async def send_first_with_extras(item: Any) -> None:
            nonlocal first
            if first:
                # the session is registered now: the set taken here misses no later change
                item, first = {**item, **extras, **self.assignments.message(node_id)}, False
            await send(item)

        return await self.sessions.session(peer, args, send_first_with_extras)

    async def heartbeat(self, peer: Peer, args: dict) -> dict:
        result = await self.sessions.heartbeat(peer, args)
        await self._touch(peer.identity.node_id)
        return {**result, **await self._extras(peer.identity.node_id)}

    def forget(self, node_id: str) -> None:
        """A removed node: end its session here."""
        self._leases.pop(node_id, None)
        self.sessions.close(node_id)

    async def check_nodes(self) -> None:
        """One pass of the leader's node-health loop."""
        sessions = await self.store.sessions()
        for node, _version in await self.store.nodes():
            node_id, state = node["ID"], node["Status"]["State"]
            if node_id in sessions and state != "ready":
                addr = sessions[node_id].get("Addr") or node["Status"].get("Addr", "")

                def ready(n: dict[str, Any], addr: str = addr) -> None:
                    n["Status"] = {"State": "ready", "Addr": addr}

                await self.store.update_node(node_id, ready)
                log.info("node %s is ready", node_id)
            elif node_id not in sessions and state == "ready":
                def down(n: dict[str, Any]) -> bool | None:
                    if n["Status"]["State"] != "ready":
                        return False
                    n["Status"] = {"State": "down", "Message": "heartbeat failure",
                                   "Addr": n["Status"].get("Addr", "")}
                    return None

                await self.store.update_node(node_id, down)
                log.info("node %s is down (heartbeat failure)", node_id)


# -- the node protocol's manager side (core.engine.swarm.tasks has the protocol) -------------

def _fingerprint(task: dict[str, Any]) -> str:
    """What a node needs to hear about again: anything but the status it reported itself."""
    return json.dumps({k: v for k, v in task.items() if k not in ("Status", "UpdatedAt", "Version")},
                      sort_keys=True)


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
        self._node_of: dict[str, str] = {}
        self._prints: dict[str, str] = {}
        self._dirty: set[str] = set()
        self._wake = trio.Event()
        self.ready = trio.Event()
        self.revision = 0

    # -- the index (pure: unit-tested without etcd) --

    def apply(self, task_id: str, task: dict[str, Any] | None, version: int = 0) -> set[str]:
        """One task put (``task``) or deleted (None); returns the nodes whose set changed for
        them (and marks them to be sent)."""
        affected: set[str] = set()
        old_node = self._node_of.get(task_id)
        node = ""
        if task is not None:
            state = task.get("Status", {}).get("State", "")
            if task.get("NodeID") and swarm_tasks.ORDER.get(state, -1) >= swarm_tasks.ORDER["assigned"]:
                node = task["NodeID"]
        if old_node and old_node != node:
            self.by_node.get(old_node, {}).pop(task_id, None)
            if not self.by_node.get(old_node):
                self.by_node.pop(old_node, None)
            del self._node_of[task_id]
            self._prints.pop(task_id, None)
            affected.add(old_node)
        if node and task is not None:
            task = {"ID": task_id, "Version": {"Index": version},
                    **{k: v for k, v in task.items() if k not in ("ID", "Version")}}
            self.by_node.setdefault(node, {})[task_id] = task
            self._node_of[task_id] = node
            fp = _fingerprint(task)
            if self._prints.get(task_id) != fp:
                self._prints[task_id] = fp
                affected.add(node)
        self._dirty |= affected
        if affected:
            self._wake.set()
        return affected

    def reset(self, tasks: list[tuple[dict[str, Any], int]]) -> None:
        """The whole index again (a new watch): every node is sent its set."""
        before = set(self.by_node)
        self.by_node.clear()
        self._node_of.clear()
        self._prints.clear()
        for task, version in tasks:
            self.apply(task["ID"], task, version)
        self._dirty |= before | set(self.sessions.nodes)
        self._wake.set()

    def assigned(self, node_id: str) -> list[dict[str, Any]]:
        return sorted(self.by_node.get(node_id, {}).values(), key=lambda t: t["ID"])

    def node_of(self, task_id: str) -> str | None:
        return self._node_of.get(task_id)

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
            sent += self.sessions.send(node, {"assignments": self.assigned(node)})
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
                task_id = event.kv.key[len(TASKS):]
                if event.type == "DELETE":
                    self.apply(task_id, None)
                else:
                    try:
                        self.apply(task_id, event.kv.json(), event.kv.mod_revision)
                    except ValueError:
                        continue
                self.revision = event.kv.mod_revision

    async def _sender(self) -> None:
        while True:
            await self._wake.wait()
            await trio.sleep(self.delay)  # gather a burst of changes
            self.flush()


class TaskStatusWriter:
    """The call ``tasks.status`` (a node reports its tasks' states): checked, then written
    in etcd transactions of up to :data:`BATCH` tasks, each comparing the versions it read."""

    BATCH = 50  # a compare and a put per task: within etcd's 128 operations per transaction

    def __init__(self, store: Store) -> None:
        self.store = store
        self.writes = 0  # tasks written (the scale simulation's figure)

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
        items = list(latest.items())
        for i in range(0, len(items), self.BATCH):
            await self._write(node_id, dict(items[i:i + self.BATCH]))
        return {}

    async def _write(self, node_id: str, statuses: dict[str, dict[str, Any]]) -> None:
        for _ in range(10):
            ids = sorted(statuses)
            read = await self.store.etcd.txn([], [Get(TASKS + i) for i in ids])
            compares, puts = [], []
            now = now_text()
            for task_id, kvs in zip(ids, read.responses):
                if not kvs:
                    continue  # deleted (reaped, its service removed): nothing to record
                task = kvs[0].json()
                if task.get("NodeID") != node_id:
                    raise errors.Forbidden(f"task {task_id} is not assigned to node {node_id}")
                status = statuses[task_id]
                if not swarm_tasks.advances(task.get("Status", {}).get("State", ""), status["State"]):
                    continue  # never back (a late or repeated report)
                task["Status"] = {"Timestamp": now, **status}
                task["UpdatedAt"] = now
                compares.append(Compare("mod", TASKS + task_id, "==", kvs[0].mod_revision))
                puts.append(Put(TASKS + task_id, json.dumps(task)))
            if not puts:
                return
            result: TxnResult = await self.store.etcd.txn(compares, puts)
            if result.succeeded:
                self.writes += len(puts)
                return
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
                    async for item in source:
                        await out.send(item)

            if local:
                nursery.start_soon(pump, self._local(local, opts), send.clone())
            for manager, ts in remote.items():
                nursery.start_soon(pump, self._remote(manager, ts, opts), send.clone())
            send.close()
            async with receive:
                async for item in receive:
                    yield item
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


class _Ended(Exception):
    pass


def _first(group: BaseExceptionGroup) -> BaseException:
    exc: BaseException = group
    while isinstance(exc, BaseExceptionGroup):
        exc = exc.exceptions[0]
    return exc


class Agent:
    """A node's side: one session with a manager at a time, heartbeats, failover.

    ``client`` is the node's :class:`ManagerClient` (its certificate, the managers' addresses);
    ``description()`` what the node says about itself; ``on_update(info)`` is awaited with each
    session's first item and each heartbeat answer (``role``, ``digest``, ``managers``,
    ``period``).
    """

    def __init__(self, client: ManagerClient, *, description: Callable[[], dict[str, Any]],
                 on_update: Callable[[dict[str, Any]], Awaitable[None]],
                 retry: float = 1.0) -> None:
        self.client = client
        self.description = description
        self.on_update = on_update
        self.retry = retry
        self.manager: str | None = None  # the address of the session's manager
        self.error = ""  # the managers' refusal (a removed node), shown by /info
        self.connected = trio.Event()

    async def run(self, *, task_status=trio.TASK_STATUS_IGNORED) -> None:
        """Keep a session for ever; ``task_status.started()`` once the first one is open."""
        started = False
        while True:
            try:
                await self._one_session(task_status if not started else None)
                started = True
            except* (errors.CoreError, _Ended, trio.TooSlowError, OSError) as group:
                if self.manager is not None:
                    started = True
                first = _first(group)
                log.info("swarm session ended: %s", first)
                self.error = str(first) if isinstance(first, errors.Forbidden) else ""
                self._next_manager()
            self.manager = None
            # a removed node asks again, but seldom (it has to leave and join again)
            await trio.sleep(self.retry * (10 if self.error else 1))

    def _next_manager(self) -> None:
        c = self.client
        if c.addresses:
            c._current = (c._current + 1) % len(c.addresses)

    async def _one_session(self, task_status) -> None:
        client = self.client
        async with client.stream("session", description=self.description()) as items:
            it = items.__aiter__()
            with trio.fail_after(client.timeout * 2):
                first = await it.__anext__()
            address = client.addresses[client._current]
            self.manager = address
            session_id = first["session_id"]
            await self.on_update(first)
            self.connected.set()
            if task_status is not None:
                task_status.started()
            beat = ManagerClient(client.credentials, [address], timeout=client.timeout)
            period = float(first.get("period") or 5.0)
            failure: list[BaseException] = []
            try:
                async with trio.open_nursery() as nursery:
                    async def heartbeats() -> None:
                        nonlocal period
                        try:
                            while True:
                                await trio.sleep(period)
                                answer = await beat.call("heartbeat", session_id=session_id)
                                period = float(answer.get("period") or period)
                                await self.on_update(answer)
                        except (errors.CoreError, trio.TooSlowError) as exc:
                            failure.append(exc)
                        nursery.cancel_scope.cancel()

                    nursery.start_soon(heartbeats)
                    async for item in it:
                        if isinstance(item, dict):
                            await self.on_update(item)
                    nursery.cancel_scope.cancel()
            finally:
                await beat.aclose()
            raise _Ended(f"heartbeat failed: {failure[0]}" if failure
                         else f"manager {address} ended the session")


def bundle_digest(trust_pem: bytes) -> str:
    return swarm_tokens.ca_digest(trust_pem)
