"""The volume service: ``docker volume ls/create/inspect/rm/prune`` over the
:class:`core.engine.volumes.VolumeStore`, with docker's filters and events.

``ls`` filters: ``dangling`` (no container uses it), ``driver``, ``label`` (``key``,
``key=value``, also ``key:value``), ``name`` (a substring).  ``prune`` removes the volumes no
container uses — only anonymous ones unless ``all=true`` — that pass ``label``/``label!``.
"""
from __future__ import annotations

from typing import Any

from core.engine import filters as engine_filters
from core.engine.interfaces import EventSink
from core.engine.volumes import ANONYMOUS_LABEL, Volume, VolumeStore
from core.errors import InvalidArgument

LIST_FILTERS = frozenset({"dangling", "driver", "label", "name"})
PRUNE_FILTERS = frozenset({"label", "label!", "all"})


def _bool_filter(values: list[str], name: str) -> bool:
    v = values[-1].lower()
    if v in ("1", "true"):
        return True
    if v in ("0", "false"):
        return False
    raise InvalidArgument(f"invalid filter '{name}={values[-1]}'")


def label_match(labels: dict[str, str], want: str) -> bool:
    """:func:`core.engine.filters.label_match`, where docker's volume filters also take
    ``key:value`` for ``key=value``."""
    if "=" not in want and ":" in want:
        want = want.replace(":", "=", 1)
    return engine_filters.label_match(labels, want)


class Volumes:
    """The volumes of ``store``; events to ``events``."""

    def __init__(self, store: VolumeStore, events: EventSink) -> None:
        self.store = store
        self.events = events

    async def list(self, filters: dict[str, list[str]]) -> list[dict[str, Any]]:
        """``GET /volumes``: docker's volume objects the filters select."""
        out = []
        for vol in self.store.list():
            if "dangling" in filters and _bool_filter(filters["dangling"], "dangling") == await self.store.in_use(vol.name):
                continue
            if "driver" in filters and vol.driver not in filters["driver"]:
                continue
            if "label" in filters and not all(label_match(vol.labels, w) for w in filters["label"]):
                continue
            if "name" in filters and not any(n in vol.name for n in filters["name"]):
                continue
            out.append(vol.to_json())
        return out

    async def create(self, body: Any) -> dict[str, Any]:
        """``POST /volumes/create``: the volume (an existing one of that name as it is)."""
        if not isinstance(body, dict):
            raise InvalidArgument("volume create: expected a JSON object")
        name = body.get("Name") or None
        if name is not None and not isinstance(name, str):
            raise InvalidArgument("volume create: Name must be a string")
        vol, new = self.store.create(name, body.get("Driver") or "local", body.get("Labels"), body.get("DriverOpts"))
        if new:
            self.events.emit("volume", "create", vol.name, {"driver": vol.driver})
        return vol.to_json()

    async def inspect(self, name: str) -> dict[str, Any]:
        return self.store.get(name).to_json()

    async def remove(self, name: str, *, force: bool = False) -> None:
        """``docker volume rm``: refused while a container uses it; ``force`` ignores absence."""
        vol = await self.store.remove(name, force=force)
        if vol.created:
            self.events.emit("volume", "destroy", vol.name, {"driver": vol.driver})

    def _prunable(self, vol: Volume, filters: dict[str, list[str]], everything: bool) -> bool:
        if not everything and ANONYMOUS_LABEL not in vol.labels:
            return False
        if "label" in filters and not all(label_match(vol.labels, w) for w in filters["label"]):
            return False
        return not ("label!" in filters and any(label_match(vol.labels, w) for w in filters["label!"]))

    async def prune(self, filters: dict[str, list[str]]) -> tuple[list[str], int]:
        """``docker volume prune``: the names removed and the bytes reclaimed."""
        everything = _bool_filter(filters["all"], "all") if "all" in filters else False
        deleted: list[str] = []
        reclaimed = 0
        for vol in self.store.list():
            if await self.store.in_use(vol.name) or not self._prunable(vol, filters, everything):
                continue
            size = self.store.usage(vol)
            await self.store.remove(vol.name)
            self.events.emit("volume", "destroy", vol.name, {"driver": vol.driver})
            deleted.append(vol.name)
            reclaimed += max(size, 0)
        self.events.emit("volume", "prune", "", {"reclaimed": str(reclaimed)})
        return deleted, reclaimed
