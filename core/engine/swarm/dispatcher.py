"""Node sessions on the managers (the dispatcher), node health on the leader, and the agent.

The dispatcher (:class:`Dispatcher`, every manager) serves the ``session`` and ``heartbeat``
calls of the swarm channel (:mod:`core.engine.swarm.transport`).  When a node opens a session
the dispatcher records the node's description and address and puts ``/swarm/sessions/<id>``
(``{"Manager", "Addr", "Beat"}``) with an etcd lease of :func:`lease_ttl` (two periods); each
heartbeat puts the key again (``Beat`` counts them, so its ``mod_revision`` moves) and keeps the
lease alive.  A heartbeat answers the period, the role the swarm wants for the node, the digest
of the current trust bundle (a node renews its certificate when either differs from its own)
and the managers' addresses (the node fails over between them).

Node health is decided by heartbeat deadlines, not by the lease (etcd will not grant a lease
shorter than 1.5 election timeouts): the leader (the manager whose etcd member is the Raft
leader) runs :meth:`Dispatcher.check_nodes` several times a period and notes, for each session
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
after the change, so no node is marked down for it.  The lease is the backstop: keys
nobody checks vanish by themselves.

The agent (:class:`Agent`, every node, managers too) keeps one session with some manager and
heartbeats on it twice a period; when the manager stops answering (within about a period) it
opens a session with the next one, with connection attempts bounded by the period too, so a
node whose network comes back is ``ready`` again within about a period.
"""
from __future__ import annotations

import logging
import math
import random
from typing import Any, Awaitable, Callable

import attrs
import trio

from core import errors
from core.engine.swarm.assignments import Assignments, LogBroker, TaskStatusWriter
from core.engine.swarm import tokens as swarm_tokens
from core.engine.swarm.etcd import Compare, Delete
from core.engine.swarm.store import SESSIONS, Store
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


@attrs.define
class _Held:
    """A session's lease as this dispatcher holds it."""

    lease: int
    addr: str
    ttl: int
    kept: float  # trio.current_time() of the last grant or keep-alive
    beat: int = 0


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
        self._managers = managers
        self._trust_digest = trust_digest
        self._leases: dict[str, _Held] = {}  # node ID -> its session's lease
        # the leader's view: node ID -> (the session key's mod_revision, when it moved to it)
        self._beats: dict[str, tuple[int, float]] = {}
        self._checked: float | None = None  # trio.current_time() of the last check_nodes
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
        """The dispatcher's own loop (every manager): the assignment index's watch of the
        tasks (see :class:`Assignments`)."""
        await self.assignments.run(task_status=task_status)

    async def _touch(self, node_id: str, addr: str | None = None) -> None:
        """A session opened (``addr`` given) or a heartbeat: put the session key again (its
        ``mod_revision`` is what the leader watches) and keep its lease alive."""
        etcd = self.store.etcd
        held = self._leases.get(node_id)
        ttl = lease_ttl(self.period)
        now = trio.current_time()
        if held is not None and addr is None and held.ttl == ttl:
            if now - held.kept >= held.ttl / 3:
                try:
                    await etcd.lease_keepalive(held.lease)
                    held.kept = now
                except errors.NotFound:
                    held = None
        else:
            held = None
        if held is None:
            addr = addr if addr is not None else (self._leases[node_id].addr
                                                  if node_id in self._leases else "")
            lease = await etcd.lease_grant(ttl)  # a new session or period: a new lease
            held = _Held(lease.id, addr, ttl, now)
            self._leases[node_id] = held
        held.beat += 1
        await self.store.put_session(node_id, {"Manager": self.node_id, "Addr": held.addr,
                                               "Beat": held.beat}, held.lease)

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

    async def _alive(self) -> tuple[set[str], dict[str, dict[str, Any]]]:
        """The leader's view of the sessions: the nodes whose key moved within
        :func:`down_after`, and every session's value."""
        now, previous = trio.current_time(), self._checked
        if previous is None or now - previous > max(2.0, self.period):
            self._beats.clear()  # a new leadership, or checks that stalled: deadlines afresh
            previous = None
        self._checked = now
        # a key that moved since the last check moved, on average, half-way between the two
        moved_at = now if previous is None else (previous + now) / 2
        values: dict[str, dict[str, Any]] = {}
        for kv in await self.store.etcd.get_prefix(SESSIONS):
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
        for node_id in set(self._beats) - alive:  # a late session key goes now, not at its lease's end
            rev = self._beats.pop(node_id)[0]
            key = SESSIONS + node_id
            await self.store.etcd.txn([Compare("mod", key, "==", rev)], [Delete(key)])
            values.pop(node_id, None)
        return alive, values

    async def check_nodes(self) -> None:
        """One pass of the leader's node-health loop (see the module docstring)."""
        alive, sessions = await self._alive()
        for node, _version in await self.store.nodes():
            node_id, state = node["ID"], node["Status"]["State"]
            if node_id in alive and state != "ready":
                addr = sessions[node_id].get("Addr") or node["Status"].get("Addr", "")

                def ready(n: dict[str, Any], addr: str = addr) -> None:
                    n["Status"] = {"State": "ready", "Addr": addr}

                await self.store.update_node(node_id, ready)
                log.info("node %s is ready", node_id)
            elif node_id not in alive and state == "ready":
                def down(n: dict[str, Any]) -> bool | None:
                    if n["Status"]["State"] != "ready":
                        return False
                    n["Status"] = {"State": "down", "Message": "heartbeat failure",
                                   "Addr": n["Status"].get("Addr", "")}
                    return None

                await self.store.update_node(node_id, down)
                log.info("node %s is down (heartbeat failure)", node_id)


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
        opener = ManagerClient(client.credentials, client.addresses, timeout=self._patience())
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
            beat = ManagerClient(client.credentials, [address], timeout=self._patience())
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
