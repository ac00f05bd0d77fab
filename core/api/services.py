"""Service and task endpoints: ``/services`` (list), ``/services/create``, ``/services/{id}``
(inspect, remove), ``/services/{id}/update``, ``/services/{id}/logs``, ``/tasks``,
``/tasks/{id}`` and ``/tasks/{id}/logs``.

Each handler parses the request and calls one method of the services front
(:class:`core.engine.swarm.services.SwarmServices`).  Errors are docker's: 503 not in a swarm /
not a manager (the swarm service's), 409 ``update out of sequence`` and name conflicts, 400 bad
specs and filters, 404 unknown services and tasks.

Logs are docker's: a multiplexed stream (raw when the service has a TTY; with ``follow``, a
service's tasks that start later too), each line prefixed
with its time (``timestamps``) and, with ``details`` (the docker CLI always asks), the task's
``com.docker.swarm.node.id=…,com.docker.swarm.service.id=…,com.docker.swarm.task.id=…``.
"""
from __future__ import annotations

import datetime as dt
import urllib.parse
from typing import Any, AsyncIterator, Awaitable, Callable, Protocol

from core.api.http import Request, Response, json_response
from core.api.streams import content_type, frame
from core.errors import InvalidArgument


class ServiceOperations(Protocol):
    """What these routes use (:class:`core.engine.swarm.services.SwarmServices`)."""

    async def list(self, filters: dict[str, list[str]], *, status: bool = False) -> list[dict[str, Any]]: ...
    async def get(self, ref: str, *, insert_defaults: bool = False) -> dict[str, Any]: ...
    async def create(self, body: Any, *, auth: str = "") -> dict[str, Any]: ...
    async def update(self, ref: str, version: int | None, body: Any, *, rollback: str = "",
                     registry_auth_from: str = "", auth: str = "") -> dict[str, Any]: ...
    async def remove(self, ref: str) -> None: ...
    async def list_tasks(self, filters: dict[str, list[str]]) -> list[dict[str, Any]]: ...
    async def get_task(self, ref: str) -> dict[str, Any]: ...
    async def logs_of(self, ref: str, *, task: bool
                      ) -> tuple[list[str], bool, dict[str, dict[str, Any]], str | None]: ...
    async def task(self, task_id: str) -> dict[str, Any] | None: ...
    def logs_source(self, task_ids: list[str], tasks: dict[str, dict[str, Any]], *, service_id: str | None,
                    follow: bool = False, tail: int | None = None, timestamps: bool = False,
                    since: float = 0) -> AsyncIterator[tuple[str, str, str, bytes]]: ...


def _auth_header(req: Request) -> str:
    """``X-Registry-Auth`` as sent (checked to decode: the agents will decode it)."""
    from core.api.images import registry_auth

    registry_auth(req)
    return req.headers.get("x-registry-auth", "").strip()


def _body(req: Request) -> Any:
    body = req.json(None)
    if body is None:
        raise InvalidArgument("invalid service spec: the request body is empty")
    return body


def _version(req: Request) -> int | None:
    value = req.q("version")
    if value is None or value == "":
        return None
    try:
        number = int(value)
        if number < 0:
            raise ValueError
    except ValueError:
        raise InvalidArgument(f"invalid service version '{value}': not an unsigned integer") from None
    return number


async def list_services(req: Request, services: ServiceOperations) -> Response:
    return json_response(await services.list(req.filters(), status=req.qbool("status")))


async def create(req: Request, services: ServiceOperations) -> Response:
    answer = await services.create(_body(req), auth=_auth_header(req))
    return json_response({"ID": answer["ID"], "Warnings": answer.get("Warnings")}, status=201)


async def inspect(req: Request, services: ServiceOperations) -> Response:
    return json_response(await services.get(req.params["id"], insert_defaults=req.qbool("insertDefaults")))


async def remove(req: Request, services: ServiceOperations) -> Response:
    await services.remove(req.params["id"])
    return Response(status=200, body=b"", content_type=None)


async def update(req: Request, services: ServiceOperations) -> Response:
    answer = await services.update(req.params["id"], _version(req), _body(req),
                                   rollback=req.q("rollback") or "",
                                   registry_auth_from=req.q("registryAuthFrom") or "",
                                   auth=_auth_header(req))
    return json_response({"Warnings": answer.get("Warnings")})


async def list_tasks(req: Request, services: ServiceOperations) -> Response:
    return json_response(await services.list_tasks(req.filters()))


async def inspect_task(req: Request, services: ServiceOperations) -> Response:
    return json_response(await services.get_task(req.params["id"]))


def _since(text: str | None) -> float:
    if not text:
        return 0.0
    try:
        return float(text)
    except ValueError:
        raise InvalidArgument(f'invalid value for "since": {text!r} is not a Unix time') from None


def _tail(text: str | None) -> int | None:
    if text is None or text in ("", "all"):
        return None
    try:
        number = int(text)
    except ValueError:
        raise InvalidArgument(f'invalid value for "tail": {text!r}') from None
    return None if number < 0 else number


def _time_text(value: str) -> str:
    """docker's jsonmessage.RFC3339NanoFixed of a log line's time."""
    try:
        head, _, rest = value.rstrip("Z").partition(".")
        digits = (rest + "000000000")[:9]
        t = dt.datetime.fromisoformat(head)
        return t.strftime("%Y-%m-%dT%H:%M:%S.") + digits + "Z"
    except ValueError:
        return value


def _details(task: dict[str, Any] | None, task_id: str) -> bytes:
    task = task or {}
    attrs = {"com.docker.swarm.node.id": task.get("NodeID", ""),
             "com.docker.swarm.service.id": task.get("ServiceID", ""),
             "com.docker.swarm.task.id": task_id}
    return ",".join(f"{urllib.parse.quote_plus(k)}={urllib.parse.quote_plus(v)}"
                    for k, v in sorted(attrs.items())).encode()


async def _logs(req: Request, services: ServiceOperations, *, task: bool) -> Response:
    stdout, stderr = req.qbool("stdout"), req.qbool("stderr")
    if not (stdout or stderr):
        raise InvalidArgument("Bad parameters: you must choose at least one stream")
    follow, timestamps, details = req.qbool("follow"), req.qbool("timestamps"), req.qbool("details")
    tail, since = _tail(req.q("tail")), _since(req.q("since"))
    task_ids, tty, known, service_id = await services.logs_of(req.params["id"], task=task)

    async def body() -> AsyncIterator[bytes]:
        if not task_ids:
            return
        source = services.logs_source(task_ids, known, service_id=service_id, follow=follow, tail=tail,
                                      timestamps=timestamps, since=since)
        try:
            async for task_id, stream, time, data in source:
                if (stream == "stdout" and not stdout) or (stream == "stderr" and not stderr):
                    continue
                line = data
                if details:
                    if task_id not in known:
                        known[task_id] = await services.task(task_id) or {}
                    line = _details(known[task_id], task_id) + b" " + line
                if timestamps:
                    line = _time_text(time).encode() + b" " + line
                yield line if tty else frame(2 if stream == "stderr" else 1, line)
        finally:
            aclose = getattr(source, "aclose", None)
            if aclose is not None:
                await aclose()

    return Response(status=200, body=body(), content_type=content_type(tty))


async def service_logs(req: Request, services: ServiceOperations) -> Response:
    return await _logs(req, services, task=False)


async def task_logs(req: Request, services: ServiceOperations) -> Response:
    return await _logs(req, services, task=True)


Handler = Callable[[Request, ServiceOperations], Awaitable[Response]]

ROUTES: list[tuple[str, str, Handler]] = [
    ("GET", "/services", list_services),
    ("POST", "/services/create", create),
    ("GET", "/services/{id}", inspect),
    ("DELETE", "/services/{id}", remove),
    ("POST", "/services/{id}/update", update),
    ("GET", "/services/{id}/logs", service_logs),
    ("GET", "/tasks", list_tasks),
    ("GET", "/tasks/{id}", inspect_task),
    ("GET", "/tasks/{id}/logs", task_logs),
]
