"""Volume endpoints: ``/volumes`` (list), ``/volumes/create``, ``/volumes/{name}`` (inspect,
remove) and ``/volumes/prune``.

:data:`ROUTES` is the table; each handler parses the request, calls one method of the volume
service (:class:`core.engine.volume_service.Volumes`) and renders its answer.
"""
from __future__ import annotations

from core.api.http import Request, Response, json_response, no_content
from core.engine.volume_service import LIST_FILTERS, PRUNE_FILTERS, Volumes


async def list_volumes(req: Request, volumes: Volumes) -> Response:
    return json_response({"Volumes": await volumes.list(req.filters(LIST_FILTERS)), "Warnings": []})


async def create_volume(req: Request, volumes: Volumes) -> Response:
    return json_response(await volumes.create(req.json({}) or {}), status=201)


async def inspect_volume(req: Request, volumes: Volumes) -> Response:
    return json_response(await volumes.inspect(req.params["name"]))


async def remove_volume(req: Request, volumes: Volumes) -> Response:
    await volumes.remove(req.params["name"], force=req.qbool("force"))
    return no_content()


async def prune(req: Request, volumes: Volumes) -> Response:
    deleted, reclaimed = await volumes.prune(req.filters(PRUNE_FILTERS))
    return json_response({"VolumesDeleted": deleted or None, "SpaceReclaimed": reclaimed})


ROUTES = [
    ("GET", "/volumes", list_volumes),
    ("POST", "/volumes/create", create_volume),
    ("GET", "/volumes/{name}", inspect_volume),
    ("DELETE", "/volumes/{name}", remove_volume),
    ("POST", "/volumes/prune", prune),
]

