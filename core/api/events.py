"""``GET /events``: the engine's event stream (:mod:`core.engine.events`) as docker's JSON lines."""
from __future__ import annotations

import json
from typing import AsyncIterator, Protocol

from core.api.http import Request, Response
from core.engine.events import Events, Subscription, parse_time
from core.errors import InvalidArgument


class EventServices(Protocol):
    """What the event route uses."""

    events: Events


def _filters(req: Request) -> dict[str, list[str]]:
    """docker's ``filters``: ``{"type": ["container"]}`` or the old ``{"type": {"container": true}}``;
    entries of another shape are ignored, as docker does."""
    raw = req.qjson("filters", {}) or {}
    if not isinstance(raw, dict):
        raise InvalidArgument("invalid filters")
    return {k: (list(v) if isinstance(v, list) else [k2 for k2, on in v.items() if on])
            for k, v in raw.items() if isinstance(v, (list, dict))}


async def events(req: Request, services: EventServices) -> Response:
    since = parse_time(req.q("since"), "since")
    until = parse_time(req.q("until"), "until")
    subscription = services.events.subscribe(since=since, until=until, filters=_filters(req))
    return Response(status=200, body=_lines(subscription))


async def _lines(subscription: Subscription) -> AsyncIterator[bytes]:
    async with subscription:
        async for event in subscription:
            yield json.dumps(event).encode() + b"\n"


ROUTES = [("GET", "/events", events)]

