"""Swarm networks' state pushed to the nodes (the node protocol's ``networks`` item, see
:mod:`core.engine.swarm.tasks`), so that a node's overlay forwarding entries, embedded DNS, VIP
rules and routing mesh follow the cluster within a fraction of a second instead of the next
pass of the node's poll (:meth:`core.engine.networks.swarmlocal.SwarmLocal.keep_peers`, which
stays as the backstop).

Every manager runs one :class:`NetworkPush` (started by its dispatcher), with one watch per
prefix whose changes move a network's state: the tasks (their attachments, node and state),
the IPAM records (endpoint addresses, names, VIPs), the nodes (their addresses), the services
(VIPs, published ports) and the networks themselves.  A change marks the networks it touches;
the marks are gathered for :attr:`NetworkPush.delay` seconds, then each marked network's state
is computed once — what the ``networks.peers`` call answers: ``{"peers": [...], "names":
{...}, "backends": {...}, "published": [...]}`` — and, when it differs from the one sent
before, sent as ``{"networks": {<id>: {<state>, "revision": <etcd revision it was read at or
after>}}}`` to the nodes in session with this manager that the network spans (its peers'
``NodeID`` s) and to those it spanned at the last send (so a node learns that its peers left).
A network created or removed is sent as ``{"networks": {<id>: null}}`` to every node in session
here: the node lists the networks again (a removed one goes, a new ingress gets its mesh).

The managers compute independently: a node hears from the manager it is in session with only.
Failures (etcd restarting, no leader) start the watches again and resend every network.
"""
from __future__ import annotations

import json
import logging
from typing import Any

import trio

from core import errors
from core.engine.swarm.networks import ADDRESSES, IPAM, NAMES, endpoints_of, task_networks, vtep
from core.engine.swarm.store import NETWORKS, NODES, SERVICES, TASKS, Decoded, Store
from core.engine.swarm.transport import Sessions
from core.engine.swarm.vip import VIPS, service_records

log = logging.getLogger("core.swarm.netpush")

WATCHED = (TASKS, IPAM, NODES, SERVICES, NETWORKS)  # IPAM: addresses, names, VIPs


def _json(kv: Any) -> dict[str, Any]:
    if kv is None or not kv.value:
        return {}
    try:
        value = kv.json()
    except ValueError:
        return {}
    return value if isinstance(value, dict) else {}


class NetworkPush:
    """One manager's pushes of swarm networks' state to its nodes (see the module docstring)."""

    def __init__(self, store: Store, sessions: Sessions, *, delay: float = 0.05) -> None:
        self.store = store
        self.sessions = sessions
        self.delay = delay
        self._dirty: set[str] = set()      # networks whose state may have moved
        self._all = False                  # every network's (a node's address, a service)
        self._listed: set[str] = set()     # networks created or removed
        # network -> (its state as last sent, without the revision; the nodes it went to)
        self._sent: dict[str, tuple[str, frozenset[str]]] = {}
        self._wake = trio.Event()
        self.pushes = 0                    # items queued on sessions (for tests and benches)
        self._nodes = Decoded(NODES)       # node records, decoded once per version

    # -- what a change touches (pure: unit-tested without etcd) --

    def note(self, key: str, value: dict[str, Any], prev: dict[str, Any]) -> None:
        """One put or delete under a watched prefix (``value``/``prev``: the object after and
        before, ``{}`` when absent)."""
        if key.startswith(TASKS):
            self._dirty |= task_networks(value) | task_networks(prev)
        elif key.startswith(ADDRESSES):
            self._dirty.add(key[len(ADDRESSES):].split("/", 1)[0])
        elif key.startswith(NAMES):
            self._dirty.add(key[len(NAMES):].split("/", 1)[0])
        elif key.startswith(NODES):
            if not value or not prev or vtep(value) != vtep(prev):  # (its data path address)
                self._all = True
        elif key.startswith((SERVICES, VIPS)):
            self._all = True
        elif key.startswith(NETWORKS):
            nid = key[len(NETWORKS):]
            if not value or not prev:
                self._listed.add(nid)
            self._dirty.add(nid)
        else:
            return
        self._wake.set()

    # -- the watches and the sender --

    async def run(self) -> None:
        """Run until cancelled: watch, gather, send; a broken watch (no leader, etcd
        restarting) starts every watch over, and every network is sent again if it changed
        meanwhile."""
        async with trio.open_nursery() as nursery:
            nursery.start_soon(self._sender)
            while True:
                try:
                    revision = await self.store.revision()
                except errors.CoreError as exc:
                    log.info("network push: no revision (%s); trying again", exc)
                else:
                    self._all = True
                    self._wake.set()
                    async with trio.open_nursery() as watches:  # one ends: all end
                        for prefix in WATCHED:
                            await watches.start(self._watch, prefix, revision + 1,
                                                watches.cancel_scope)
                await trio.sleep(0.5)

    async def _watch(self, prefix: str, start: int, all_watches: trio.CancelScope, *,
                     task_status=trio.TASK_STATUS_IGNORED) -> None:
        started = False
        try:
            async with self.store.etcd.watch(prefix, prefix=True, start_revision=start,
                                             prev_kv=True) as events:
                task_status.started()
                started = True
                async for event in events:
                    self.note(event.kv.key, _json(event.kv) if event.type == "PUT" else {},
                              _json(event.prev_kv))
        except errors.CoreError as exc:
            log.info("network push: the watch of %s ended (%s); watching again", prefix, exc)
        finally:
            all_watches.cancel()
            if not started:
                task_status.started()

    async def _sender(self) -> None:
        while True:
            await self._wake.wait()
            await trio.sleep(self.delay)  # gather a burst of changes
            self._wake = trio.Event()
            try:
                await self.flush()
            except Exception as exc:  # noqa: BLE001 - etcd or a record it did not expect
                if isinstance(exc, errors.CoreError):
                    log.info("network push: %s (the nodes' poll catches up)", exc)
                else:
                    log.exception("network push failed (the nodes' poll catches up)")
                self._all = True
                await trio.sleep(0.5)
                self._wake.set()

    async def flush(self) -> int:
        """Compute the marked networks' states and send those that changed; returns how many
        items were queued."""
        dirty, self._dirty = self._dirty, set()
        every, self._all = self._all, False
        listed, self._listed = self._listed, set()
        sessions = set(self.sessions.nodes)
        if not sessions:
            self._sent.clear()  # nobody to tell; a new session's node lists for itself
            return 0
        revision = await self.store.revision()
        existing = {n["ID"] for n, _v in await self.store.objects(NETWORKS)}
        targets = (existing if every else dirty & existing) | (dirty & set(self._sent))
        sent = 0
        if listed:
            item = {"networks": {nid: None for nid in sorted(listed)}}
            for node in sessions:
                sent += self.sessions.send(node, item)
        for nid in targets - existing:
            self._sent.pop(nid, None)
        # the tasks read once for every network of this flush (and both of its tables)
        tasks = ({t["ID"]: t for t, _v in await self.store.objects(TASKS)}
                 if targets & existing else {})
        for nid in sorted(targets & existing):
            state = {"peers": await endpoints_of(self.store, nid, tasks, self._nodes),
                     **await service_records(self.store, nid, tasks)}
            text = json.dumps(state, sort_keys=True)
            nodes = frozenset(p["NodeID"] for p in state["peers"])
            old_text, old_nodes = self._sent.get(nid, ("", frozenset()))
            if text == old_text:
                continue
            self._sent[nid] = (text, nodes)
            item = {"networks": {nid: {**state, "revision": revision}}}
            for node in (nodes | old_nodes) & sessions:
                sent += self.sessions.send(node, item)
        self.pushes += sent
        return sent
