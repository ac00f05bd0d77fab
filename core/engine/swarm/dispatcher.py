"""Node sessions on the managers (the dispatcher), node health on the leader, and the agent.

The dispatcher (:class:`Dispatcher`, every manager) serves the ``session`` and ``heartbeat``
calls of the swarm channel (:mod:`core.engine.swarm.transport`).  When a node opens a session
the dispatcher records the node's description and address and puts ``/swarm/sessions/<id>``
(``{"Manager", "Addr", "Beat"}``) under the dispatcher's own etcd lease of :func:`lease_ttl`
(two periods; one lease for all its sessions, kept alive as they beat); each heartbeat puts the
key again (``Beat`` counts them, so its ``mod_revision`` moves).  The puts are batched: the
session opens and heartbeats that arrive within :meth:`Dispatcher._gather` (at most 0.2 s) are
written together, one etcd transaction per 50 nodes that also reads their node records (a
removed node is refused), so a thousand nodes beating twice a period cost a few transactions
a second, not a thousand.  A heartbeat answers the period, the role the swarm wants for the
node, the digest of the current trust bundle (a node renews its certificate when either differs
from its own) and the managers' addresses (the node fails over between them).

Node health is decided by heartbeat deadlines, not by the lease (etcd will not grant a lease
shorter than 1.5 election timeouts): the leader (the manager whose etcd member is the Raft
leader) runs :meth:`Dispatcher.check_nodes` every :func:`check_interval` (a tenth of a period,
0.5 s at the default 5 s) and notes, for each session
key, when its ``mod_revision`` last moved, on its own monotonic clock (no clocks are compared
across managers; a key seen moved is credited with the middle of the time since the previous
check, so a slow check loop does not delay the verdict by a whole loop).  A node whose key has
not moved for :func:`down_after` (1.5 periods; the agent beats twice a period, so that is two
beats missed in a row) or has no key at all is ``down`` (``heartbeat failure``) and its key is
deleted (unless it moved meanwhile: a manager shows ``Unreachable`` at once); the node's next
heartbeat puts it again and the node is ``ready`` at the next check.  A new leader (or one
whose checks stalled) starts every node's deadline afresh.  When the period is shortened
(``swarm update --dispatcher-heartbeat``) the nodes beat at the old one until a heartbeat's
answer tells them the new one: the old deadline holds for :func:`down_after` the old period
after the change, so no node is marked down for it.  The leader reads the node records
only when the sessions disagree with the states it read last, and at least once a period
(each record decoded once per version), and writes the changed states 50 records a
transaction (one by one after a lost race).  The session keys and the health check go through
an etcd client of the dispatcher's own, so a heartbeat never queues behind the bulk writes of
task states.  The lease is the backstop: the keys of a manager that died vanish by themselves.

The agent (:class:`Agent`, every node, managers too) keeps one session with some manager and
heartbeats on it twice a period; when the manager stops answering (within about a period) it
opens a session with the next one, with connection attempts bounded by the period too, so a
node whose network comes back is ``ready`` again within about a period.
"""
from __future__ import annotations

import copy
import json
import logging
import math
import random
from typing import Any, Awaitable, Callable, Iterable

import attrs
import trio

from core import errors
from core.engine.swarm.assignments import Assignments, LogBroker, TaskStatusWriter
from core.engine.swarm import tokens as swarm_tokens
from core.engine.swarm.etcd import Compare, Delete, Put
from core.engine.swarm.netpush import NetworkPush
from core.engine.swarm.store import NODES, SESSIONS, Decoded, Store, now_text, txn_chunks, write_gathered
from core.engine.swarm.transport import ManagerClient, Peer, Server, Sessions

log = logging.getLogger("core.swarm.dispatcher")


#: a node is down when its session key has not moved for this many periods
DOWN_AFTER_PERIODS = 1.5
#: the agent heartbeats this many times a period
BEATS_PER_PERIOD = 2


def lease_ttl(period: float) -> int:
    """The session lease (the backstop when a manager dies): two heartbeat periods (whole
    seconds, at least 2; etcd may grant more)."""
    return max(2, math.ceil(period * 2))


def down_after(period: float) -> float:
    """Seconds without a heartbeat after which the leader marks a node down."""
    return period * DOWN_AFTER_PERIODS


def check_interval(period: float) -> float:
    """Seconds between the leader's node checks: a tenth of a period, at least 0.25 s (a quarter
    of a period if that is shorter), at most 1 s.  The verdict on a cut node comes up to one
    interval after its deadline (:func:`down_after` from its last beat, which was up to half a
    period before the cut), and the orchestrator replaces its tasks right after: at the default
    5 s period, Down 5-8 s after the cut."""
    return min(1.0, period / 4, max(0.25, period / 10))


@attrs.define
class _Held:
    """The lease of this dispatcher's session keys (one for all its nodes)."""

    lease: int
    ttl: int
    kept: float  # trio.current_time() of the last grant or keep-alive


@attrs.define
class _Batch:
    """Session opens and heartbeats gathered for one etcd transaction (see :meth:`Dispatcher._touch`)."""

    nodes: dict[str, str] = attrs.field(factory=dict)  # node ID -> its address
    done: trio.Event = attrs.field(factory=trio.Event)
    found: dict[str, dict[str, Any] | None] = attrs.field(factory=dict)  # node ID -> its record
    error: BaseException | None = None


class Dispatcher:
    """A manager's node sessions, backed by etcd leases (see the module docstring)."""

    def __init__(self, store: Store, node_id: str, *, period: float,
                 managers: Callable[[], Awaitable[list[dict[str, str]]]],
                 trust_digest: Callable[[], str]) -> None:
        self.store = store
        self.node_id = node_id
        self.sessions = Sessions(period)
        # the node protocol (core.engine.swarm.assignments): tasks to the nodes, states back, logs
        self.assignments = Assignments(store, self.sessions)
        self.task_status = TaskStatusWriter(store)
        self.logs = LogBroker(store, self.sessions, node_id)
        self.network_push = NetworkPush(store, self.sessions)  # overlay peers, DNS, VIPs, mesh
        self._managers = managers
        self._trust_digest = trust_digest
        self._held: _Held | None = None  # the lease of this dispatcher's session keys
        self._addrs: dict[str, str] = {}  # node ID -> its session's address
        self._beat: dict[str, int] = {}  # node ID -> the heartbeats its session key counted
        self._batch: _Batch | None = None  # the heartbeats gathering for the next write
        # the leader's view of the node records' states (to read them only when it matters)
        self._states: dict[str, str] = {}
        self._records = Decoded(NODES)  # the node records, each decoded once per version
        self._keys: Any = None  # the session keys' own etcd client, while serving
        self._states_read: float | None = None
        # the leader's view: node ID -> (the session key's mod_revision, when it moved to it)
        self._beats: dict[str, tuple[int, float]] = {}
        self._checked: float | None = None  # trio.current_time() of the last check_nodes
        self._data_port: int | None = None  # the swarm's DataPathPort (fixed at init)
        # a shortened period: (the old one, when a check first saw the change)
        self._shortened: tuple[float, float | None] | None = None

    @property
    def period(self) -> float:
        return self.sessions.period

    @period.setter
    def period(self, value: float) -> None:
        old = self.sessions.period
        if value < old:  # the nodes beat at the old period until a heartbeat's answer says the new one
            self._shortened = (max(old, self._shortened[0] if self._shortened else 0.0), None)
        self.sessions.period = value

    def install(self, server: Server) -> None:
        from core.engine.swarm.transport import Access

        server.register("session", self.session, access=Access.NODE, stream=True)
        server.register("heartbeat", self.heartbeat, access=Access.NODE)
        server.register("tasks.status", self.task_status.call, access=Access.NODE)
        self.logs.install(server)

    async def serve(self, *, task_status=trio.TASK_STATUS_IGNORED) -> None:
        """The dispatcher's own loops (every manager): the assignment index's watch of the
        tasks (see :class:`Assignments`) and the networks' state pushed to the nodes
        (:class:`core.engine.swarm.netpush.NetworkPush`).  Meanwhile the session keys and the
        health check use an etcd client of their own: a heartbeat never waits behind the bulk
        writes of task states."""
        async with self.store.etcd.sibling() as etcd:
            self._keys = etcd
            try:
                async with trio.open_nursery() as nursery:
                    nursery.start_soon(self.network_push.run)
                    await self.assignments.run(task_status=task_status)
            finally:
                self._keys = None

    def _etcd(self) -> Any:
        """The client of the session keys and node states (see :meth:`serve`)."""
        return self._keys if self._keys is not None else self.store.etcd

    def _gather(self) -> float:
        """How long a batch of session-key writes gathers heartbeats before it is written."""
        return min(0.2, self.period / 20)

    async def _touch(self, node_id: str, addr: str | None = None) -> dict[str, Any] | None:
        """A session opened (``addr`` given) or a heartbeat: put the session key again (its
        ``mod_revision`` is what the leader watches) under this dispatcher's lease, and read
        the node's record (None: removed).

        Writes are batched: the first caller gathers for :meth:`_gather` seconds, then writes
        every node that beat meanwhile in one etcd transaction per :data:`~core.engine.swarm.
        store.TXN_OPS` / 2 nodes (each a put of the key and a get of the record) and keeps the
        lease alive; the others wait for that write."""
        if addr is not None:
            self._addrs[node_id] = addr
        batch = self._batch
        if batch is not None:
            batch.nodes[node_id] = self._addrs.get(node_id, "")
            await batch.done.wait()
        else:
            batch = self._batch = _Batch()
            batch.nodes[node_id] = self._addrs.get(node_id, "")
            try:
                with trio.move_on_after(self._gather()):
                    await trio.sleep_forever()  # cancelled: write at once, still for the others
            finally:
                self._batch = None
                await write_gathered(batch, self._write, max(10.0, self.period * 2),
                                     "the session keys' write")
        if batch.error is not None or node_id not in batch.found:
            raise errors.Unavailable(f"the session could not be recorded: {batch.error}")
        found = batch.found[node_id]
        if found is None:  # removed?  (read again: a refusal must be sure)
            again = await self.store.node(node_id)
            found = again[0] if again is not None else None
        return found

    async def _lease(self) -> int:
        etcd = self._etcd()
        ttl = lease_ttl(self.period)
        now = trio.current_time()
        held = self._held
        if held is not None and held.ttl == ttl:
            if now - held.kept < held.ttl / 3:
                return held.lease
            try:
                await etcd.lease_keepalive(held.lease)
                held.kept = now
                return held.lease
            except errors.NotFound:
                pass
        lease = await etcd.lease_grant(ttl)  # the first session, a new period, or expired
        self._held = _Held(lease.id, ttl, now)
        return lease.id

    async def _write(self, batch: _Batch) -> None:
        from core.engine.swarm.etcd import Get, Put
        from core.engine.swarm.store import NODES, TXN_OPS

        lease = await self._lease()
        items = list(batch.nodes.items())
        step = max(1, TXN_OPS // 2)
        for i in range(0, len(items), step):
            ops: list[Any] = []
            for node_id, addr in items[i:i + step]:
                beat = self._beat[node_id] = self._beat.get(node_id, 0) + 1
                ops.append(Put(SESSIONS + node_id, json.dumps(
                    {"Manager": self.node_id, "Addr": addr, "Beat": beat}), lease))
                ops.append(Get(NODES + node_id))
            result = await self._etcd().txn([], ops)
            for (node_id, _addr), kvs in zip(items[i:i + step], result.responses[1::2]):
                batch.found[node_id] = kvs[0].json() if kvs else None

    async def _extras(self, node_id: str, found: dict[str, Any] | None) -> dict[str, Any]:
        if found is None:
            raise errors.Forbidden(f"node {node_id} was removed from the swarm")
        if self._data_port is None:
            try:
                self._data_port = int((await self.store.cluster()).cluster.get("DataPathPort")
                                      or 4789)
            except (errors.CoreError, ValueError):
                pass
        extras = {"role": found["Spec"]["Role"], "digest": self._trust_digest(),
                  "managers": await self._managers()}
        if self._data_port is not None:  # the nodes' VXLAN port (swarm init --data-path-port)
            extras["data_port"] = self._data_port
        return extras

    async def session(self, peer: Peer, args: dict, send) -> Any:
        node_id = peer.identity.node_id
        addr = peer.address.rsplit(":", 1)[0].strip("[]")
        description = args.get("description")

        def describe(node: dict[str, Any]) -> bool | None:
            before = json.dumps([node["Description"], node["Spec"], node["Status"],
                                 node.get("DataPathAddr")], sort_keys=True)
            if isinstance(description, dict):
                node["Description"].update({k: v for k, v in description.items()
                                            if k in ("Hostname", "Platform", "Resources", "Engine")})
                if description.get("JoinAvailability") in ("active", "pause", "drain"):
                    node["Spec"]["Availability"] = description["JoinAvailability"]
                # --data-path-addr: the node's VXLAN underlay end (kept out of the API's view)
                if isinstance(description.get("DataPathAddr"), str):
                    node["DataPathAddr"] = description["DataPathAddr"]
                else:
                    node.pop("DataPathAddr", None)
            node["Status"]["Addr"] = addr
            after = json.dumps([node["Description"], node["Spec"], node["Status"],
                                node.get("DataPathAddr")], sort_keys=True)
            return False if after == before else None  # a session opened again: nothing to write

        found = await self._touch(node_id, addr)  # (the record read with the session key's write)
        if found is not None and describe(copy.deepcopy(found)) is not False:
            found = await self.store.update_node(node_id, describe)
        extras = await self._extras(node_id, found)
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
        node_id = peer.identity.node_id
        return {**result, **await self._extras(node_id, await self._touch(node_id))}

    def forget(self, node_id: str) -> None:
        """A removed node: end its session here."""
        self._addrs.pop(node_id, None)
        self._beat.pop(node_id, None)
        self.sessions.close(node_id)

    async def _alive(self) -> tuple[set[str], dict[str, dict[str, Any]]]:
        """The leader's view of the sessions: the nodes whose key moved within
        :func:`down_after`, and every session's value."""
        now, previous = trio.current_time(), self._checked
        if previous is None or now - previous > max(2.0, self.period):
            self._beats.clear()  # a new leadership, or checks that stalled: deadlines afresh
            self._states_read = None
            previous = None
        self._checked = now
        # a key that moved since the last check moved, on average, half-way between the two
        moved_at = now if previous is None else (previous + now) / 2
        values: dict[str, dict[str, Any]] = {}
        for kv in await self._etcd().get_prefix(SESSIONS):
            node_id = kv.key[len(SESSIONS):]
            try:
                values[node_id] = kv.json() if kv.value else {}
            except ValueError:
                values[node_id] = {}
            seen = self._beats.get(node_id)
            if seen is None or seen[0] != kv.mod_revision:
                self._beats[node_id] = (kv.mod_revision, moved_at)
        for node_id in set(self._beats) - set(values):
            del self._beats[node_id]
        limit = down_after(self.period)
        if self._shortened is not None:  # the old deadline holds until every node heard the new period
            old, since = self._shortened
            if since is None:
                self._shortened = (old, now)
                since = now
            if now - since <= down_after(old):
                limit = max(limit, down_after(old))
            else:
                self._shortened = None
        alive = {n for n, (_rev, seen) in self._beats.items() if now - seen <= limit}
        late = {node_id: self._beats.pop(node_id)[0] for node_id in set(self._beats) - alive}
        for node_id in late:
            values.pop(node_id, None)

        async def delete(node_id: str, rev: int) -> None:  # a late key goes now, not at its lease's end
            key = SESSIONS + node_id
            await self._etcd().txn([Compare("mod", key, "==", rev)], [Delete(key)])

        await _each(late.items(), delete)
        return alive, values

    async def check_nodes(self) -> None:
        """One pass of the leader's node-health loop (see the module docstring)."""
        alive, sessions = await self._alive()
        now, states = trio.current_time(), self._states
        if (self._states_read is not None and now - self._states_read < self.period
                and alive <= states.keys()
                and all((state == "ready") == (node_id in alive) for node_id, state in states.items())):
            return  # the records read last agree with the sessions: nothing to write
        self._states_read = now
        states.clear()
        changes: list[tuple[str, Any, str]] = []
        versions: dict[str, tuple[dict[str, Any], int]] = {}
        for node, version in await self._records.objects(Store(self._etcd())):
            versions[node["ID"]] = (node, version)
            node_id, state = node["ID"], node["Status"]["State"]
            states[node_id] = "ready" if node_id in alive else ("down" if state == "ready" else state)
            if node_id in alive and state != "ready":
                addr = sessions[node_id].get("Addr") or node["Status"].get("Addr", "")

                def ready(n: dict[str, Any], addr: str = addr) -> None:
                    n["Status"] = {"State": "ready", "Addr": addr}

                changes.append((node_id, ready, "ready"))
            elif node_id not in alive and state == "ready":
                def down(n: dict[str, Any]) -> bool | None:
                    if n["Status"]["State"] != "ready":
                        return False
                    n["Status"] = {"State": "down", "Message": "heartbeat failure",
                                   "Addr": n["Status"].get("Addr", "")}
                    return None

                changes.append((node_id, down, "down (heartbeat failure)"))

        async def change(node_id: str, fn: Any, what: str) -> None:
            await self.store.update_node(node_id, fn)
            log.info("node %s is %s", node_id, what)

        # the changes written as read, 50 nodes (at most 1 MiB) a transaction; a chunk in which some record
        # moved meanwhile goes node by node (read again, changed, written)
        alone: list[tuple[str, Any, str]] = []
        def size(change: tuple[str, Any, str]) -> int:
            return len(json.dumps(versions[change[0]][0]))

        for chunk in txn_chunks(changes, size, NODES_PER_TXN):
            if not await self._write_nodes(chunk, versions):
                alone += chunk
        await _each(alone, change)  # (a hundred nodes failing at once: not one by one)
        self._checked = trio.current_time()  # (a long check is no stall)

    async def _write_nodes(self, chunk: list[tuple[str, Any, str]],
                           versions: dict[str, tuple[dict[str, Any], int]]) -> bool:
        """The node records of ``chunk`` changed as read, in one transaction comparing their
        versions; False (nothing written) if one moved since."""
        compares, puts, done = [], [], []
        now = now_text()
        for node_id, fn, what in chunk:
            node, version = versions[node_id]
            node = copy.deepcopy(node)
            if fn(node) is False:
                continue
            compares.append(Compare("mod", NODES + node_id, "==", version))
            puts.append(Put(NODES + node_id, json.dumps({**node, "UpdatedAt": now})))
            done.append((node_id, what))
        if not puts:
            return True
        if not (await self._etcd().txn(compares, puts)).succeeded:
            return False
        for node_id, what in done:
            log.info("node %s is %s", node_id, what)
        return True


#: etcd calls the leader's health check makes at once
CHECK_CONCURRENCY = 16
#: node records the leader's health check writes per etcd transaction
NODES_PER_TXN = 50


async def _each(items: Iterable[tuple[Any, ...]], fn: Callable[..., Awaitable[None]]) -> None:
    """``fn(*item)`` for every item, :data:`CHECK_CONCURRENCY` at a time."""
    limit = trio.CapacityLimiter(CHECK_CONCURRENCY)

    async def one(item: tuple[Any, ...]) -> None:
        async with limit:
            await fn(*item)

    try:
        async with trio.open_nursery() as nursery:
            for item in items:
                nursery.start_soon(one, item)
    except BaseExceptionGroup as group:  # the first error, as the callers expect it
        raise _first(group) from None


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
        self.period = 5.0  # the heartbeat period the managers said last (docker's default first)

    def _patience(self) -> float:
        """How long a connection attempt or a heartbeat may take: about a period (at least a
        second, at most the client's timeout), so a cut-off node notices within a period and
        is back within one once its network returns."""
        return min(self.client.timeout, max(1.0, self.period))

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
            await trio.sleep(self.retry * 10 if self.error
                             else min(self.retry, max(0.2, self.period / 4)))

    def _next_manager(self) -> None:
        c = self.client
        if c.addresses:
            c._current = (c._current + 1) % len(c.addresses)

    async def _one_session(self, task_status) -> None:
        client = self.client
        # the session's connection attempts are bounded by the period (the client's own
        # timeout, for renewals, stays as it is)
        opener = ManagerClient(client.credentials, client.addresses, timeout=self._patience(), like=client)
        opener._current = client._current
        async with opener.stream("session", description=self.description()) as items:
            client._current = opener._current
            it = items.__aiter__()
            with trio.fail_after(client.timeout * 2):
                first = await it.__anext__()
            address = client.addresses[client._current]
            self.manager = address
            session_id = first["session_id"]
            period = self.period = float(first.get("period") or 5.0)
            await self.on_update(first)
            self.connected.set()
            if task_status is not None:
                task_status.started()
            beat = ManagerClient(client.credentials, [address], timeout=self._patience(), like=client)
            failure: list[BaseException] = []
            try:
                async with trio.open_nursery() as nursery:
                    async def heartbeats() -> None:
                        nonlocal period
                        try:
                            while True:
                                # twice a period (the leader marks a node down after 1.5),
                                # a little early at random so the nodes' beats spread out
                                await trio.sleep(period / BEATS_PER_PERIOD * random.uniform(0.8, 1.0))
                                answer = await beat.call("heartbeat", session_id=session_id)
                                period = self.period = float(answer.get("period") or period)
                                beat.timeout = self._patience()
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
