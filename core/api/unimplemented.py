"""The endpoints of Engine API v1.47 that core does not serve (yet), and what they answer.

A docker client that calls one gets a clear JSON error instead of ``404 page not found``:

* the swarm endpoints not served yet (secrets, configs) answer as a docker
  daemon that is not a manager does — 503 with moby's ``errNoManager`` message (the volume
  router's for cluster volume updates).  The swarm and node endpoints themselves are
  :mod:`core.api.swarm`'s, the service and task endpoints :mod:`core.api.services`'.
* every other endpoint of the spec core lacks answers 501 naming the endpoint.

The tables below are the whole of it: one row per endpoint of
``docker-engine-api-v1.47.yaml`` that no route module serves.
"""
from __future__ import annotations

from typing import Any

from core.api.http import Request, Response, error_response

# moby's daemon/cluster messages, word for word
NOT_A_MANAGER = ('This node is not a swarm manager. Use "docker swarm init" or "docker swarm join" to '
                 "connect this node to swarm and try again.")

# (method, path, status, message)
SWARM: tuple[tuple[str, str, int, str], ...] = (
    ("GET", "/secrets", 503, NOT_A_MANAGER),
    ("POST", "/secrets/create", 503, NOT_A_MANAGER),
    ("GET", "/secrets/{id}", 503, NOT_A_MANAGER),
    ("DELETE", "/secrets/{id}", 503, NOT_A_MANAGER),
    ("POST", "/secrets/{id}/update", 503, NOT_A_MANAGER),
    ("GET", "/configs", 503, NOT_A_MANAGER),
    ("POST", "/configs/create", 503, NOT_A_MANAGER),
    ("GET", "/configs/{id}", 503, NOT_A_MANAGER),
    ("DELETE", "/configs/{id}", 503, NOT_A_MANAGER),
    ("POST", "/configs/{id}/update", 503, NOT_A_MANAGER),
    ("PUT", "/volumes/{name}", 503, "volume update only valid for cluster volumes, but swarm is unavailable"),
)

# (method, path): answered 501 "METHOD PATH is not implemented yet"
NOT_IMPLEMENTED: tuple[tuple[str, str], ...] = (
    ("POST", "/build"),
    ("POST", "/session"),
    ("GET", "/images/search"),
    ("GET", "/plugins"),
    ("GET", "/plugins/privileges"),
    ("POST", "/plugins/pull"),
    ("POST", "/plugins/create"),
    ("GET", "/plugins/{name:path}/json"),
    ("DELETE", "/plugins/{name:path}"),
    ("POST", "/plugins/{name:path}/enable"),
    ("POST", "/plugins/{name:path}/disable"),
    ("POST", "/plugins/{name:path}/upgrade"),
    ("POST", "/plugins/{name:path}/push"),
    ("POST", "/plugins/{name:path}/set"),
)


def _answer(status: int, message: str) -> Any:
    async def handler(req: Request, _services: Any) -> Response:
        return error_response(status, message)

    return handler


ROUTES = [(method, path, _answer(status, message)) for method, path, status, message in SWARM] + [
    (method, path, _answer(501, f"{method} {path.replace(':path', '')} is not implemented yet"))
    for method, path in NOT_IMPLEMENTED
]

