"""Swarm and node endpoints: ``/swarm`` (inspect), ``/swarm/init``, ``/swarm/join``,
``/swarm/leave``, ``/swarm/update``, ``/swarm/unlockkey``, ``/swarm/unlock``, ``/nodes``,
``/nodes/{id}`` (inspect, remove) and ``/nodes/{id}/update``.

Each handler parses the request and calls one method of the swarm service
(:class:`core.engine.swarm.service.SwarmService`); errors are docker's (503 not in a swarm / not a
manager / no leader, 409 ``update out of sequence``, 400 bad input).  Autolock is not supported:
``/swarm/unlockkey`` answers an empty key (the docker CLI says ``no unlock key is set``) and
``/swarm/unlock`` docker's ``swarm is not locked``.
"""
from __future__ import annotations

from typing import Any, Awaitable, Callable, Protocol

from core.api.http import Request, Response, json_response
from core.engine.swarm.nodes import FILTERS as NODE_FILTERS
from core.errors import Conflict, InvalidArgument


class SwarmOperations(Protocol):
    """What these routes use (:class:`core.engine.swarm.service.SwarmService`)."""

    async def init(self, req: dict[str, Any]) -> str: ...
    async def join(self, req: dict[str, Any]) -> None: ...
    async def leave(self, force: bool) -> None: ...
    async def inspect(self) -> dict[str, Any]: ...
    async def update(self, version: int | None, spec: Any, *, rotate_worker: bool = False,
                     rotate_manager: bool = False, rotate_unlock: bool = False) -> None: ...
    async def unlock_key(self) -> dict[str, str]: ...
    async def list_nodes(self, filters: dict[str, list[str]]) -> list[dict[str, Any]]: ...
    async def get_node(self, ref: str) -> dict[str, Any]: ...
    async def update_node(self, ref: str, version: int | None, spec: Any) -> None: ...
    async def remove_node(self, ref: str, force: bool) -> None: ...


def _body(req: Request) -> dict[str, Any]:
    body = req.json({}) or {}
    if not isinstance(body, dict):
        raise InvalidArgument("expected a JSON object")
    return body


def _ok() -> Response:
    return Response(status=200, body=b"", content_type=None)


def _version(req: Request) -> int | None:
    value = req.q("version")
    if value is None or value == "":
        return None
    try:
        return int(value)
    except ValueError:
        raise InvalidArgument(f"invalid swarm version '{value}': not an integer") from None


async def inspect(req: Request, swarm: SwarmOperations) -> Response:
    return json_response(await swarm.inspect())


async def init(req: Request, swarm: SwarmOperations) -> Response:
    return json_response(await swarm.init(_body(req)))


async def join(req: Request, swarm: SwarmOperations) -> Response:
    await swarm.join(_body(req))
    return _ok()


async def leave(req: Request, swarm: SwarmOperations) -> Response:
    await swarm.leave(req.qbool("force"))
    return _ok()


async def update(req: Request, swarm: SwarmOperations) -> Response:
    await swarm.update(_version(req), _body(req), rotate_worker=req.qbool("rotateWorkerToken"),
                       rotate_manager=req.qbool("rotateManagerToken"),
                       rotate_unlock=req.qbool("rotateManagerUnlockKey"))
    return _ok()


async def unlock_key(req: Request, swarm: SwarmOperations) -> Response:
    return json_response(await swarm.unlock_key())


async def unlock(req: Request, swarm: SwarmOperations) -> Response:
    raise Conflict("swarm is not locked")


async def list_nodes(req: Request, swarm: SwarmOperations) -> Response:
    return json_response(await swarm.list_nodes(req.filters(NODE_FILTERS)))


async def get_node(req: Request, swarm: SwarmOperations) -> Response:
    return json_response(await swarm.get_node(req.params["id"]))


async def remove_node(req: Request, swarm: SwarmOperations) -> Response:
    await swarm.remove_node(req.params["id"], req.qbool("force"))
    return _ok()


async def update_node(req: Request, swarm: SwarmOperations) -> Response:
    await swarm.update_node(req.params["id"], _version(req), _body(req))
    return _ok()


Handler = Callable[[Request, SwarmOperations], Awaitable[Response]]

ROUTES: list[tuple[str, str, Handler]] = [
    ("GET", "/swarm", inspect),
    ("POST", "/swarm/init", init),
    ("POST", "/swarm/join", join),
    ("POST", "/swarm/leave", leave),
    ("POST", "/swarm/update", update),
    ("GET", "/swarm/unlockkey", unlock_key),
    ("POST", "/swarm/unlock", unlock),
    ("GET", "/nodes", list_nodes),
    ("GET", "/nodes/{id}", get_node),
    ("DELETE", "/nodes/{id}", remove_node),
    ("POST", "/nodes/{id}/update", update_node),
]

