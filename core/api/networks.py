"""Network endpoints: ``/networks`` (list), ``/networks/{id}`` (inspect, remove),
``/networks/create``, ``/networks/{id}/connect``, ``/networks/{id}/disconnect`` and
``/networks/prune``.  The logic is :class:`core.engine.networks.service.NetworkManager` (``daemon.networks``,
made here if the daemon has none yet)."""
from __future__ import annotations

from typing import TYPE_CHECKING, Any

from core.api.http import Request, Response, json_response, no_content
from core.errors import InvalidArgument, NotFound

if TYPE_CHECKING:
    from core.daemon.app import Daemon


def _body(req: Request) -> dict[str, Any]:
    body = req.json({}) or {}
    if not isinstance(body, dict):
        raise InvalidArgument("expected a JSON object")
    return body


def register(daemon: Daemon) -> None:
    if getattr(daemon, "networks", None) is None:
        from core.engine.networks.service import NetworkManager

        daemon.networks = NetworkManager(daemon)  # type: ignore[attr-defined]
    networks = daemon.networks  # type: ignore[attr-defined]
    r = daemon.router

    async def list_(req: Request) -> Response:
        await networks.start()
        return json_response(networks.list_networks(req.filters()))

    r.add("GET", "/networks", list_)

    async def inspect(req: Request) -> Response:
        await networks.start()
        scope = req.q("scope")
        if scope and scope != "local":
            raise NotFound(f"network {req.params['id']} not found")
        return json_response(networks.inspect_network(req.params["id"]))

    r.add("GET", "/networks/{id}", inspect)

    async def create(req: Request) -> Response:
        result = await networks.create_network(_body(req), req.drivers.get("network") or "bridge")
        return json_response(result, status=201)

    r.add("POST", "/networks/create", create)

    async def remove(req: Request) -> Response:
        await networks.remove_network(req.params["id"])
        return no_content()

    r.add("DELETE", "/networks/{id}", remove)

    async def connect(req: Request) -> Response:
        body = _body(req)
        container = body.get("Container")
        if not isinstance(container, str) or not container:
            raise InvalidArgument("no container specified: Container is required")
        config = body.get("EndpointConfig")
        if config is not None and not isinstance(config, dict):
            raise InvalidArgument("invalid EndpointConfig: expected an object")
        await networks.connect(req.params["id"], container, config)
        return Response(status=200, body=b"", content_type=None)

    r.add("POST", "/networks/{id}/connect", connect)

    async def disconnect(req: Request) -> Response:
        body = _body(req)
        container = body.get("Container")
        if not isinstance(container, str) or not container:
            raise InvalidArgument("no container specified: Container is required")
        await networks.disconnect(req.params["id"], container, bool(body.get("Force")))
        return Response(status=200, body=b"", content_type=None)

    r.add("POST", "/networks/{id}/disconnect", disconnect)

    async def prune(req: Request) -> Response:
        deleted = await networks.prune(req.filters())
        return json_response({"NetworksDeleted": deleted or None})

    r.add("POST", "/networks/prune", prune)
