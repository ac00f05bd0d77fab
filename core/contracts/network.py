"""The network contract: networks, endpoints and published ports.

A *network* is a broadcast domain with an address pool (IPAM); an *endpoint* is one container's
attachment to it: an interface inside the container's network namespace, an address from the
pool, and the routes and name entries that go with it.  *Published ports* forward traffic that
reaches the host to an endpoint.

Lifecycle
---------
::

    await net.create_network("n1", NetworkSpec(subnet="172.30.0.0/24", ...))
    ep = await net.join("n1", "ctr-id", netns_path="/proc/<pid>/ns/net", request=EndpointRequest(...))
    #   ep.address, ep.gateway, ep.mac are what ``docker inspect`` shows
    await net.publish("n1", "ctr-id", [PortBinding(...), ...])
    await net.leave("n1", "ctr-id")          # address freed, interface gone, ports unpublished
    await net.delete_network("n1")           # Conflict while endpoints remain

Rules: an address is never handed out twice and survives daemon restarts (the driver keeps its
IPAM state under its root); joining twice raises ``AlreadyExists``; leaving a network the
container is not on raises ``NotFound``; deleting a network leaves nothing of it on the host
(links, routes, rules).  The conformance suite ``core.testing.network`` checks these.
"""
from __future__ import annotations

from typing import Any, Protocol, runtime_checkable


@runtime_checkable
class NetworkDriver(Protocol):
    async def create_network(self, network_id: str, spec: Any) -> dict[str, Any]:
        """Create the network; return its IPAM configuration (subnet, gateway)."""

    async def delete_network(self, network_id: str) -> None:
        """Delete the network.  ``Conflict`` while endpoints remain, ``NotFound`` if unknown."""

    async def join(self, network_id: str, endpoint_id: str, netns_path: str, request: Any) -> dict[str, Any]:
        """Attach the network namespace at ``netns_path``; return the endpoint's settings."""

    async def leave(self, network_id: str, endpoint_id: str) -> None:
        """Detach the endpoint, free its address and unpublish its ports."""

    async def publish(self, network_id: str, endpoint_id: str, bindings: list[Any]) -> list[Any]:
        """Forward host ports to the endpoint; return the bindings with host ports chosen."""

    async def close(self) -> None:
        """Release what the driver holds; networks and endpoints stay."""
