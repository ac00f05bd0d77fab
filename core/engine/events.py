"""The engine's event stream: what every service did, for ``GET /events`` and ``core events``.

Every engine service reports what it did through :meth:`Events.emit` (it satisfies
:class:`core.engine.interfaces.EventSink`).  The last :data:`KEEP` events stay in memory for
``since`` queries; a :meth:`Events.subscribe` subscription gets the recent ones it asks for, then
the new ones as they come, until its ``until`` time or until the subscriber stops reading::

    async with events.subscribe(since=t0, until=None, filters={"type": ["container"]}) as sub:
        async for event in sub:         # docker's event JSON, as a dict
            ...

A subscriber that falls :data:`BUFFER` events behind is dropped (its stream ends): ``emit``
never blocks and never fails.
"""
from __future__ import annotations

import collections
import time
from typing import Any

import trio

from core.errors import InvalidArgument

KEEP = 1024     # events kept for ``since``
BUFFER = 256    # events a subscriber may fall behind before it is dropped

Event = dict[str, Any]


class Events:
    """The event stream (an :class:`~core.engine.interfaces.EventSink`)."""

    def __init__(self) -> None:
        self.recent: collections.deque[Event] = collections.deque(maxlen=KEEP)
        self._listeners: set[trio.MemorySendChannel[Event]] = set()

    def emit(self, type_: str, action: str, actor_id: str, attributes: dict[str, str], *,
             scope: str = "local", time_ns: int | None = None) -> None:
        """Record one event in docker's shape and hand it to every subscriber; never blocks.
        ``scope`` is docker's: ``local`` (this engine's) or ``swarm`` (the cluster's, with the
        time the object records: ``time_ns``; default now)."""
        now = time.time_ns() if time_ns is None else time_ns
        event = {
            "Type": type_,
            "Action": action,
            "Actor": {"ID": actor_id, "Attributes": attributes},
            "scope": scope,
            "time": now // 1_000_000_000,
            "timeNano": now,
        }
        if type_ == "container":  # the old fields docker still sends for containers
            event.update({"status": action, "id": actor_id, "from": attributes.get("image", "")})
        self.recent.append(event)
        for channel in list(self._listeners):
            try:
                channel.send_nowait(event)
            except (trio.WouldBlock, trio.BrokenResourceError, trio.ClosedResourceError):
                self._listeners.discard(channel)  # too slow or gone: drop it
                channel.close()

    def subscribe(self, *, since: float | None = None, until: float | None = None,
                  filters: dict[str, list[str]] | None = None) -> Subscription:
        """The events matching ``filters`` (docker's: type, event, scope, container, image,
        network, volume, service, node, secret, config, label): the kept ones from ``since`` (unix seconds; none if ``None``), then the
        new ones until ``until`` (unix seconds; forever if ``None``).  The subscription starts
        now, before this returns: it misses nothing emitted after.  Close it when done."""
        return Subscription(self, since, until, filters or {})


class Subscription:
    """One reader of the event stream: an async iterator of events, closed with :meth:`aclose`
    (or ``async with``).  Its iteration ends at its ``until`` time, or when it fell too far
    behind and was dropped."""

    def __init__(self, events: Events, since: float | None, until: float | None,
                 filters: dict[str, list[str]]) -> None:
        self._events, self._filters = events, filters
        self._send, self._receive = trio.open_memory_channel[Event](BUFFER)
        live = until is None or until > time.time()
        if live:
            events._listeners.add(self._send)
        else:
            self._send.close()
        self._backlog = collections.deque(
            e for e in events.recent
            if since is not None and e["timeNano"] >= since * 1e9 and (until is None or e["timeNano"] <= until * 1e9))
        self._deadline = trio.current_time() + (until - time.time()) if until is not None else float("inf")

    def __aiter__(self) -> Subscription:
        return self

    async def __anext__(self) -> Event:
        while self._backlog:
            event = self._backlog.popleft()
            if matches(event, self._filters):
                await trio.lowlevel.checkpoint()
                return event
        while True:
            with trio.move_on_at(self._deadline):
                try:
                    event = await self._receive.receive()
                except (trio.EndOfChannel, trio.ClosedResourceError):
                    raise StopAsyncIteration from None
                if matches(event, self._filters):
                    return event
                continue
            raise StopAsyncIteration  # its until time came

    async def aclose(self) -> None:
        """Stop receiving (idempotent)."""
        self._events._listeners.discard(self._send)
        self._send.close()
        self._receive.close()
        await trio.lowlevel.checkpoint()

    async def __aenter__(self) -> Subscription:
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.aclose()


def parse_time(value: str | None, name: str) -> float | None:
    """docker's ``since``/``until``: unix seconds (with a fraction); ``None`` when absent."""
    if not value:
        return None
    try:
        return float(value)
    except ValueError:
        raise InvalidArgument(f"invalid {name} value {value!r}: expected a unix timestamp") from None


_PREFIX_ACTIONS = ("health_status", "exec_create", "exec_start")
#: filters docker applies to every event, whatever its type (see :func:`_fuzzy`)
_CLUSTER_KINDS = ("service", "node", "secret", "config")


def _fuzzy(event: Event, values: list[str]) -> bool:
    """moby's ``fuzzyMatchName``: the actor's ID or name is one of ``values`` or starts with one."""
    actor = event["Actor"]
    names = (actor["ID"], (actor.get("Attributes") or {}).get("name", ""))
    return any(v in names or any(n.startswith(v) for n in names) for v in values)


def matches(event: Event, filters: dict[str, list[str]]) -> bool:
    """Whether ``event`` passes docker's event filters (each key: any of its values)."""
    for key, values in filters.items():
        if key == "type" and event["Type"] not in values:
            return False
        if key == "event" and event["Action"] not in values and not (
                # docker (moby#25798): these match their "<action>: <detail>" forms too
                any(v in _PREFIX_ACTIONS for v in values)
                and event["Action"].split(":", 1)[0] in values):
            return False
        if key in ("container", "image", "network", "volume") and event["Type"] == key \
                and not _fuzzy(event, values):
            return False
        if key == "scope" and event.get("scope", "local") not in values:
            return False
        if key in _CLUSTER_KINDS and not _fuzzy(event, values):
            return False
        if key == "label":
            attrs = event["Actor"]["Attributes"]
            for want in values:
                k, eq, v = want.partition("=")
                if k not in attrs or (eq and attrs[k] != v):
                    return False
    return True
