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

The agent (:class:`Agent`, every node, managers too) keeps one session with some manager and
heartbeats on it; when the manager stops answering it opens a session with the next one.
"""
from __future__ import annotations

import logging
import math
from typing import Any, Awaitable, Callable

import trio

from core import errors
from core.engine.swarm.assignments import Assignments, LogBroker, TaskStatusWriter
from core.engine.swarm import tokens as swarm_tokens
from core.engine.swarm.store import Store
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
        # the node protocol (core.engine.swarm.assignments): tasks to the nodes, states back, logs
        self.assignments = Assignments(store, self.sessions)
        self.task_status = TaskStatusWriter(store)
        self.logs = LogBroker(store, self.sessions, node_id)
        self._managers = managers
        self._trust_digest = trust_digest
        self._leases: dict[str, tuple[int, str, int]] = {}  # node ID -> (lease, address, TTL)

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
