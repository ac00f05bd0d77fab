"""The engine's event stream: ``GET /events`` and ``core events``.

Every part of the daemon reports what it did with :meth:`Events.emit`; the last events are kept
in memory for ``since`` queries and every open ``/events`` request gets the new ones as they come.
"""
from __future__ import annotations

import collections
import json
import time
from typing import TYPE_CHECKING, Any, AsyncIterator

import trio

from core.api.http import Request, Response
from core.errors import InvalidArgument

if TYPE_CHECKING:
    from core.daemon.app import Daemon

KEEP = 1024


class Events:
    def __init__(self) -> None:
        self.recent: collections.deque[dict[str, Any]] = collections.deque(maxlen=KEEP)
        self.listeners: set[trio.MemorySendChannel[dict[str, Any]]] = set()

    def emit(self, type_: str, action: str, actor_id: str, attributes: dict[str, str]) -> None:
        now = time.time_ns()
        event = {
            "Type": type_,
            "Action": action,
            "Actor": {"ID": actor_id, "Attributes": attributes},
            "scope": "local",
            "time": now // 1_000_000_000,
            "timeNano": now,
        }
        if type_ == "container":  # the old fields docker still sends for containers
            event.update({"status": action, "id": actor_id, "from": attributes.get("image", "")})
        self.recent.append(event)
        for channel in list(self.listeners):
            try:
                channel.send_nowait(event)
            except (trio.WouldBlock, trio.BrokenResourceError, trio.ClosedResourceError):
                self.listeners.discard(channel)  # too slow or gone: drop it
                channel.close()


def _time(value: str | None, name: str) -> float | None:
    if not value:
        return None
    try:
        return float(value)
    except ValueError:
        raise InvalidArgument(f"invalid {name} value {value!r}: expected a unix timestamp") from None


def _matches(event: dict[str, Any], filters: dict[str, list[str]]) -> bool:
    for key, values in filters.items():
        if key == "type" and event["Type"] not in values:
            return False
        if key == "event" and event["Action"] not in values:
            return False
        if key in ("container", "image", "network", "volume") and event["Type"] == key:
            attrs = event["Actor"]["Attributes"]
            if not any(v in (event["Actor"]["ID"], attrs.get("name")) or event["Actor"]["ID"].startswith(v)
                       for v in values):
                return False
        if key == "label":
            attrs = event["Actor"]["Attributes"]
            for want in values:
                k, eq, v = want.partition("=")
                if k not in attrs or (eq and attrs[k] != v):
                    return False
    return True


def register(daemon: Daemon) -> None:
    async def events(req: Request) -> Response:
        since = _time(req.q("since"), "since")
        until = _time(req.q("until"), "until")
        raw = req.qjson("filters", {}) or {}
        if not isinstance(raw, dict):
            raise InvalidArgument("invalid filters")
        filters = {k: (list(v) if isinstance(v, list) else [k2 for k2, on in v.items() if on])
                   for k, v in raw.items() if isinstance(v, (list, dict))}
        send, receive = trio.open_memory_channel[dict[str, Any]](256)
        if until is None or until > time.time():
            daemon.events.listeners.add(send)
        backlog = [e for e in daemon.events.recent if since is not None and e["timeNano"] >= since * 1e9]

        async def body() -> AsyncIterator[bytes]:
            try:
                for event in backlog:
                    if (until is None or event["timeNano"] <= until * 1e9) and _matches(event, filters):
                        yield json.dumps(event).encode() + b"\n"
                if until is not None and until <= time.time():
                    return
                deadline = trio.current_time() + (until - time.time()) if until is not None else float("inf")
                with trio.move_on_at(deadline):
                    async for event in receive:
                        if _matches(event, filters):
                            yield json.dumps(event).encode() + b"\n"
            finally:
                daemon.events.listeners.discard(send)
                send.close()

        return Response(status=200, body=body())

    daemon.router.add("GET", "/events", events)
