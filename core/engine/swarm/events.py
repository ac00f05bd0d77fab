"""The swarm's events on ``GET /events`` (moby's ``daemon/events.go``, ``ProcessClusterNotifications``).

Every manager follows the cluster's objects in its etcd member (watches of the services, nodes
and swarm networks, with the previous value of each key) and reports their changes in the
daemon's event stream, as docker's managers do from swarmkit's store watch: so every manager
reports every change, whichever manager took the request (or the leader's loops made it).
The events are docker's: ``Type`` ``service`` / ``node`` / ``network``, ``Action`` ``create`` /
``update`` / ``remove``, ``scope`` ``swarm``, the time of the object's ``CreatedAt`` (create),
``UpdatedAt`` (update) or now (remove), and ``Actor.Attributes``:

- every event: ``name`` (a node's ``Spec.Name``, else its host name);
- a service's update: ``image.old``/``image.new``, ``replicas.old``/``replicas.new`` (replicated
  services), ``updatestate.new`` (an ``UpdateStatus`` set where there was none) or
  ``updatestate.old``/``updatestate.new`` (its state changed) -- each only when it changed;
- a node's update: ``availability.old/new``, ``role.old/new`` (the role the node has: a
  manager once it holds ``ManagerStatus``), ``state.old/new`` (``Status.State``),
  ``leader.old/new`` and ``reachability.old/new`` when the record holds them.

A watch that breaks (no leader for a while, the member restarting) starts again from the
revision after the last one it reported, so nothing is lost or told twice; one too old for etcd
(compacted) starts again from now.  Workers report no swarm events (docker's neither).
"""
from __future__ import annotations

import logging
import time
from typing import Any, Callable

import trio

from core import errors
from core.engine.swarm.etcd import Event, WatchCompacted
from core.engine.swarm.store import NETWORKS, NODES, SERVICES, Store, time_ns

log = logging.getLogger("core.swarm.events")

#: ``emit(type, action, actor_id, attributes, scope=, time_ns=)`` (:meth:`core.engine.events.Events.emit`)
Emit = Callable[..., None]

KINDS = {SERVICES: "service", NODES: "node", NETWORKS: "network"}


def _changed(attrs: dict[str, str], key: str, old: Any, new: Any) -> None:
    if old != new:
        attrs[f"{key}.old"] = "" if old is None else str(old)
        attrs[f"{key}.new"] = "" if new is None else str(new)


def _image(service: dict[str, Any]) -> Any:
    return (((service.get("Spec") or {}).get("TaskTemplate") or {}).get("ContainerSpec") or {}).get("Image")


def _replicas(service: dict[str, Any]) -> int | None:
    mode = (service.get("Spec") or {}).get("Mode") or {}
    if "Replicated" not in mode:
        return None
    return int((mode.get("Replicated") or {}).get("Replicas") or 0)


def _update_state(service: dict[str, Any]) -> str | None:
    us = service.get("UpdateStatus")
    return str(us.get("State", "")).lower() if isinstance(us, dict) and us else None


def service_attributes(action: str, service: dict[str, Any], old: dict[str, Any] | None) -> dict[str, str]:
    """moby's ``logServiceEvent``."""
    attrs = {"name": (service.get("Spec") or {}).get("Name", "")}
    if action == "update" and old is not None:
        _changed(attrs, "image", _image(old), _image(service))
        if _replicas(service) is not None and _replicas(old) is not None:
            _changed(attrs, "replicas", _replicas(old), _replicas(service))
        new_state, old_state = _update_state(service), _update_state(old)
        if new_state is not None:
            if old_state is None:
                attrs["updatestate.new"] = new_state
            elif new_state != old_state:
                attrs["updatestate.old"], attrs["updatestate.new"] = old_state, new_state
    return attrs


def _role(node: dict[str, Any]) -> str:
    """The role the node has (not the one asked for): a manager holds ``ManagerStatus``."""
    return "manager" if node.get("ManagerStatus") else "worker"


def node_attributes(action: str, node: dict[str, Any], old: dict[str, Any] | None) -> dict[str, str]:
    """moby's ``logNodeEvent``."""
    name = (node.get("Spec") or {}).get("Name") or (node.get("Description") or {}).get("Hostname", "")
    attrs = {"name": name}
    if action == "update" and old is not None:
        _changed(attrs, "availability", (old.get("Spec") or {}).get("Availability"),
                 (node.get("Spec") or {}).get("Availability"))
        _changed(attrs, "role", _role(old), _role(node))
        _changed(attrs, "state", (old.get("Status") or {}).get("State"), (node.get("Status") or {}).get("State"))
        ms, old_ms = node.get("ManagerStatus"), old.get("ManagerStatus")
        if isinstance(ms, dict) and isinstance(old_ms, dict):
            _changed(attrs, "leader", str(bool(old_ms.get("Leader"))).lower(),
                     str(bool(ms.get("Leader"))).lower())
            if "Reachability" in ms and "Reachability" in old_ms:
                _changed(attrs, "reachability", old_ms["Reachability"], ms["Reachability"])
    return attrs


def network_attributes(action: str, network: dict[str, Any], old: dict[str, Any] | None) -> dict[str, str]:
    """moby's ``logNetworkEvent``."""
    return {"name": network.get("Name") or (network.get("Spec") or {}).get("Name", "")}


ATTRIBUTES = {"service": service_attributes, "node": node_attributes, "network": network_attributes}


def cluster_event(prefix: str, event: Event) -> tuple[str, str, str, dict[str, str], int] | None:
    """One watch event of the ``prefix`` kind as docker's (type, action, actor ID, attributes,
    time in ns); None for what is no object of that kind (a key under it that does not parse)."""
    kind = KINDS[prefix]
    object_id = event.kv.key[len(prefix):]
    if not object_id or "/" in object_id:
        return None
    try:
        old = event.prev_kv.json() if event.prev_kv is not None and event.prev_kv.value else None
        if event.type == "DELETE":
            if old is None:
                return None
            return kind, "remove", object_id, ATTRIBUTES[kind]("remove", old, None), time.time_ns()
        new = event.kv.json()
    except ValueError:
        return None
    if not isinstance(new, dict):
        return None
    if old is None or event.kv.create_revision == event.kv.mod_revision:
        action, when = "create", time_ns(new.get("CreatedAt"))
    else:
        action, when = "update", time_ns(new.get("UpdatedAt"))
    return kind, action, object_id, ATTRIBUTES[kind](action, new, old), when or time.time_ns()


async def report(store: Store, emit: Emit, *, retry: float = 1.0,
                 task_status=trio.TASK_STATUS_IGNORED) -> None:
    """Follow the cluster's services, nodes and networks and ``emit`` their events, until
    cancelled (see the module docstring)."""
    task_status.started()
    while True:
        try:
            start = await store.revision() + 1
            break
        except errors.CoreError as exc:  # no leader yet: the events start when there is one
            log.debug("swarm events: %s", exc)
            await trio.sleep(retry)
    async with trio.open_nursery() as nursery:
        for prefix in KINDS:
            nursery.start_soon(_follow, store, emit, prefix, start, retry)


async def _follow(store: Store, emit: Emit, prefix: str, start: int, retry: float) -> None:
    next_revision = start
    while True:
        try:
            async with store.etcd.watch(prefix, prefix=True, start_revision=next_revision,
                                        prev_kv=True) as events:
                async for event in events:
                    next_revision = event.kv.mod_revision + 1
                    found = cluster_event(prefix, event)
                    if found is not None:
                        kind, action, actor, attributes, when = found
                        emit(kind, action, actor, attributes, scope="swarm", time_ns=when)
        except WatchCompacted:
            next_revision = await _revision(store, next_revision)
        except errors.CoreError as exc:
            log.debug("swarm events (%s): %s", prefix, exc)
        await trio.sleep(retry)


async def _revision(store: Store, fallback: int) -> int:
    try:
        return await store.revision() + 1
    except errors.CoreError:
        return fallback
