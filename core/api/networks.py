"""Network endpoints: ``/networks`` (list), ``/networks/{id}`` (inspect, remove),
``/networks/create``, ``/networks/{id}/connect``, ``/networks/{id}/disconnect``,
``/networks/prune``, and the removal of a legacy link (``DELETE
/containers/<parent>/<alias>?link=1``).

:data:`ROUTES` is the table; each handler parses the request, calls one method of the network
service (:class:`core.engine.networks.service.NetworkManager`) and renders its answer.
:func:`register` adds them to a router with the service bound.
"""
from __future__ import annotations

from typing import Any, Awaitable, Callable

from core.api.http import Request, Response, json_response, no_content
from core.engine.networks.service import NetworkManager
from core.errors import InvalidArgument, NotFound


def _body(req: Request) -> dict[str, Any]:
    body = req.json({}) or {}
    if not isinstance(body, dict):
        raise InvalidArgument("expected a JSON object")
    return body


def _container(body: dict[str, Any]) -> str:
    container = body.get("Container")
    if not isinstance(container, str) or not container:
        raise InvalidArgument("no container specified: Container is required")
    return container


def _empty_ok() -> Response:
    return Response(status=200, body=b"", content_type=None)


async def list_networks(req: Request, networks: NetworkManager) -> Response:
    return json_response(await networks.list_networks(req.filters()))


async def inspect_network(req: Request, networks: NetworkManager) -> Response:
    return json_response(await networks.inspect_network(req.params["id"], req.q("scope") or ""))


async def create_network(req: Request, networks: NetworkManager) -> Response:
    result = await networks.create_network(_body(req), req.drivers.get("network") or "bridge")
    return json_response(result, status=201)


async def remove_network(req: Request, networks: NetworkManager) -> Response:
    await networks.remove_network(req.params["id"])
    return no_content()


async def connect(req: Request, networks: NetworkManager) -> Response:
    body = _body(req)
    container = _container(body)
    config = body.get("EndpointConfig")
    if config is not None and not isinstance(config, dict):
        raise InvalidArgument("invalid EndpointConfig: expected an object")
    await networks.connect(req.params["id"], container, config)
    return _empty_ok()


async def disconnect(req: Request, networks: NetworkManager) -> Response:
    body = _body(req)
    await networks.disconnect(req.params["id"], _container(body), bool(body.get("Force")))
    return _empty_ok()


async def remove_link(req: Request, networks: NetworkManager) -> Response:
    """``DELETE /containers/<parent>/<alias>?link=1`` (``docker rm --link /web/db``): a
    container's path of more than one segment is a link's name (the docker CLI sends
    ``/containers//web/db``)."""
    name = "/".join(p for p in (req.params.get("parent"), req.params["link"]) if p)
    if not req.qbool("link"):
        raise NotFound(f"No such container: {name}")
    await networks.remove_link(name)
    return no_content()


async def prune(req: Request, networks: NetworkManager) -> Response:
    deleted = await networks.prune(req.filters())
    return json_response({"NetworksDeleted": deleted or None})


Handler = Callable[[Request, NetworkManager], Awaitable[Response]]

ROUTES: list[tuple[str, str, Handler]] = [
    ("GET", "/networks", list_networks),
    ("GET", "/networks/{id}", inspect_network),
    ("POST", "/networks/create", create_network),
    ("DELETE", "/networks/{id}", remove_network),
    ("POST", "/networks/{id}/connect", connect),
    ("POST", "/networks/{id}/disconnect", disconnect),
    ("POST", "/networks/prune", prune),
    ("DELETE", "/containers//{link:path}", remove_link),
    ("DELETE", "/containers/{parent}/{link:path}", remove_link),
]

