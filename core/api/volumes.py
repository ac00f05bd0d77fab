"""Volume endpoints: ``/volumes`` (list), ``/volumes/create``, ``/volumes/{name}`` (inspect,
remove) and ``/volumes/prune``.  The store is :class:`core.engine.volumes.VolumeStore`."""
from __future__ import annotations

from typing import TYPE_CHECKING

from core.api.http import Request, Response, json_response, no_content
from core.errors import InvalidArgument
from core.engine.volumes import ANONYMOUS_LABEL, Volume

if TYPE_CHECKING:
    from core.daemon.app import Daemon


def _bool_filter(values: list[str], name: str) -> bool:
    v = values[-1].lower()
    if v in ("1", "true"):
        return True
    if v in ("0", "false"):
        return False
    raise InvalidArgument(f"invalid filter '{name}={values[-1]}'")


def _label_match(labels: dict[str, str], want: str) -> bool:
    key, sep, value = want.partition("=")
    if not sep:
        key, sep, value = want.partition(":")
    return key in labels and (not sep or labels[key] == value)


def register(daemon: Daemon) -> None:
    r = daemon.router

    def in_use(vol: Volume) -> bool:
        return bool(daemon.volumes.users(vol.name))

    async def list_(req: Request) -> Response:
        filters = req.filters({"dangling", "driver", "label", "name"})
        out = []
        for vol in daemon.volumes.list():
            if "dangling" in filters and _bool_filter(filters["dangling"], "dangling") == in_use(vol):
                continue
            if "driver" in filters and vol.driver not in filters["driver"]:
                continue
            if "label" in filters and not all(_label_match(vol.labels, w) for w in filters["label"]):
                continue
            if "name" in filters and not any(n in vol.name for n in filters["name"]):
                continue
            out.append(vol.to_json())
        return json_response({"Volumes": out, "Warnings": []})

    r.add("GET", "/volumes", list_)

    async def create(req: Request) -> Response:
        body = req.json({}) or {}
        if not isinstance(body, dict):
            raise InvalidArgument("volume create: expected a JSON object")
        name = body.get("Name") or None
        if name is not None and not isinstance(name, str):
            raise InvalidArgument("volume create: Name must be a string")
        vol, new = daemon.volumes.create(name, body.get("Driver") or "local", body.get("Labels"),
                                         body.get("DriverOpts"))
        if new:
            daemon.events.emit("volume", "create", vol.name, {"driver": vol.driver})
        return json_response(vol.to_json(), status=201)

    r.add("POST", "/volumes/create", create)

    async def inspect(req: Request) -> Response:
        return json_response(daemon.volumes.get(req.params["name"]).to_json())

    r.add("GET", "/volumes/{name}", inspect)

    async def remove(req: Request) -> Response:
        vol = daemon.volumes.remove(req.params["name"], force=req.qbool("force"))
        if vol.created:
            daemon.events.emit("volume", "destroy", vol.name, {"driver": vol.driver})
        return no_content()

    r.add("DELETE", "/volumes/{name}", remove)

    async def prune(req: Request) -> Response:
        filters = req.filters({"label", "label!", "all"})
        everything = _bool_filter(filters["all"], "all") if "all" in filters else False
        deleted: list[str] = []
        reclaimed = 0
        for vol in daemon.volumes.list():
            if in_use(vol):
                continue
            if not everything and ANONYMOUS_LABEL not in vol.labels:
                continue
            if "label" in filters and not all(_label_match(vol.labels, w) for w in filters["label"]):
                continue
            if "label!" in filters and any(_label_match(vol.labels, w) for w in filters["label!"]):
                continue
            size = daemon.volumes.usage(vol)
            daemon.volumes.remove(vol.name)
            daemon.events.emit("volume", "destroy", vol.name, {"driver": vol.driver})
            deleted.append(vol.name)
            reclaimed += max(size, 0)
        daemon.events.emit("volume", "prune", "", {"reclaimed": str(reclaimed)})
        return json_response({"VolumesDeleted": deleted or None, "SpaceReclaimed": reclaimed})

    r.add("POST", "/volumes/prune", prune)

