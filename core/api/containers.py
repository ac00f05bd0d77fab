"""Container and exec endpoints of the Engine API: ``/containers/*`` and ``/exec/*``.

:data:`ROUTES` is the table; each handler parses the request, calls one method of the
container service (:class:`core.engine.containers.service.Containers`) and renders its answer.
The streams are docker's (:mod:`core.api.streams`):

- ``attach`` and ``exec start`` hijack the connection (``101 UPGRADED``, then raw bytes both
  ways), output framed without a TTY, raw with one; the detach keys (default ctrl-p ctrl-q,
  :mod:`core.detachkeys`) detach the client, the container runs on;
- ``logs`` streams the json-file log (``follow`` until the container stops), with
  ``since``/``until``/``tail``/``timestamps``;
- ``wait`` answers its headers at once and its body when the condition is met, so a client can
  register it before starting the container (docker's CLI does);
- ``archive`` (``docker cp``) and ``export`` stream tars as they are made; the ``archive`` PUT
  reads its body as it arrives (``stream_body``).

``update`` changes resources in place when the container's executor can (else 501).

Not served: ``attach/ws`` (501).
"""
from __future__ import annotations

import io
import json
import logging
import signal as _signal
from typing import Any, AsyncIterator

import trio

from core.api.http import Request, Response, Route, json_response, no_content
from core.api.streams import close_client, content_type, frame, pump, wants_upgrade
from core.detachkeys import parse_detach_keys
from core.engine.containers import archive, oci
from core.engine.containers.logs import fixed_time, parse_since, parse_tail
from core.engine.containers.ps import PRUNE_FILTERS, PS_FILTERS
from core.engine.containers.service import Containers
from core.engine.containers.store import Container, Exec, NotModified
from core.errors import CoreError, InvalidArgument, NotImplemented_

log = logging.getLogger("core.api.containers")


def _signal_param(req: Request, default: int | None) -> int | None:
    value = req.q("signal")
    if value is None or value == "":
        return default
    return oci.parse_signal(value)


def _not_modified() -> Response:
    return Response(status=304, body=b"", content_type=None)


def _empty_ok(content: str | None = None) -> Response:
    return Response(status=200, body=b"", content_type=content)


def _size(req: Request) -> tuple[int, int]:
    h, w = req.qint("h"), req.qint("w")
    if h is None or w is None or h < 0 or w < 0:
        raise InvalidArgument("invalid resize: h and w must be non-negative integers")
    return h, w


# -- create / list / inspect ----------------------------------------------------------------------
async def create(req: Request, containers: Containers) -> Response:
    c, warnings = await containers.create(req.json({}), name=req.q("name"), drivers=req.drivers,
                                          platform=req.q("platform"))
    return json_response({"Id": c.id, "Warnings": warnings}, status=201)


async def list_containers(req: Request, containers: Containers) -> Response:
    filters = req.filters(PS_FILTERS)
    return json_response(await containers.list(filters, all_=req.qbool("all"), limit=req.qint("limit", 0) or 0,
                                                size=req.qbool("size")))


async def inspect(req: Request, containers: Containers) -> Response:
    return json_response(await containers.inspect(req.params["id"], size=req.qbool("size")))


# -- lifecycle --------------------------------------------------------------------------------------
async def start(req: Request, containers: Containers) -> Response:
    c = containers.lookup(req.params["id"])
    body = req.json(None)
    if isinstance(body, dict) and body:
        raise InvalidArgument("starting container with non-empty request body was deprecated since API v1.22 "
                              "and removed in v1.24")
    if req.q("detachKeys"):
        parse_detach_keys(req.q("detachKeys"))
    try:
        await containers.start(c.id)
    except NotModified:
        return _not_modified()
    return no_content()


async def stop(req: Request, containers: Containers) -> Response:
    c = containers.lookup(req.params["id"])
    t = req.qint("t")
    try:
        await containers.stop(c.id, t, _signal_param(req, None))
    except NotModified:
        return _not_modified()
    return no_content()


async def restart(req: Request, containers: Containers) -> Response:
    c = containers.lookup(req.params["id"])
    await containers.restart(c.id, req.qint("t"), _signal_param(req, None))
    return no_content()


async def kill(req: Request, containers: Containers) -> Response:
    c = containers.lookup(req.params["id"])
    await containers.kill(c.id, _signal_param(req, _signal.SIGKILL))  # type: ignore[arg-type]
    return no_content()


async def pause(req: Request, containers: Containers) -> Response:
    await containers.pause(req.params["id"])
    return no_content()


async def unpause(req: Request, containers: Containers) -> Response:
    await containers.unpause(req.params["id"])
    return no_content()


async def wait(req: Request, containers: Containers) -> Response:
    result = containers.waiter(req.params["id"], req.q("condition") or "not-running")

    async def body() -> AsyncIterator[bytes]:
        yield json.dumps(await result()).encode() + b"\n"

    return Response(status=200, body=body())


async def remove(req: Request, containers: Containers) -> Response:
    c = containers.lookup(req.params["id"])
    if req.qbool("link"):
        raise InvalidArgument("Conflict, cannot remove the default link name of the container")
    await containers.remove(c.id, force=req.qbool("force"), volumes=req.qbool("v"))
    return no_content()


async def rename(req: Request, containers: Containers) -> Response:
    containers.rename(req.params["id"], req.q("name") or "")
    return no_content()


async def update(req: Request, containers: Containers) -> Response:
    c = containers.lookup(req.params["id"])
    return json_response({"Warnings": await containers.update(c.id, req.json({}) or {})})


async def prune(req: Request, containers: Containers) -> Response:
    deleted, reclaimed = await containers.prune(req.filters(PRUNE_FILTERS))
    return json_response({"ContainersDeleted": deleted or None, "SpaceReclaimed": reclaimed})


# -- logs / attach ----------------------------------------------------------------------------------
async def logs(req: Request, containers: Containers) -> Response:
    c = containers.lookup(req.params["id"])
    want_out, want_err = req.qbool("stdout"), req.qbool("stderr")
    if not want_out and not want_err:
        raise InvalidArgument("Bad parameters: you must choose at least one stream")
    follow, timestamps = req.qbool("follow"), req.qbool("timestamps")
    tail = parse_tail(req.q("tail"))
    since, until = parse_since(req.q("since"), "since"), parse_since(req.q("until"), "until")
    c, entries = containers.logs(c.id, tail=tail, since=since, until=until, follow=follow)
    tty = bool(c.config.get("Tty"))

    async def body() -> AsyncIterator[bytes]:
        async for stream, data, ts in entries:
            if (stream == 1 and not want_out) or (stream == 2 and not want_err):
                continue
            if timestamps:
                data = fixed_time(ts).encode() + b" " + data
            yield data if tty else frame(stream, data)

    return Response(status=200, body=body(), content_type=content_type(tty))


class _Attach:
    """One ``POST /containers/{id}/attach``: what the client asked for, and its streams."""

    def __init__(self, req: Request, containers: Containers, c: Container) -> None:
        self.containers, self.c = containers, c
        self.keys = parse_detach_keys(req.q("detachKeys"))
        self.logs, self.stream = req.qbool("logs"), req.qbool("stream")
        self.stdout, self.stderr = req.qbool("stdout"), req.qbool("stderr")
        self.tty = bool(c.config.get("Tty"))
        self.stdin = req.qbool("stdin") and bool(c.config.get("OpenStdin"))
        self.stdin_once = bool(c.config.get("StdinOnce")) and not self.tty

    def _out(self, fd: int, data: bytes) -> bytes | None:
        if self.tty or (fd == 1 and self.stdout):
            return data if self.tty else frame(1, data)
        if fd == 2 and self.stderr:
            return frame(2, data)
        return None

    async def replay(self, limit: int | None = None) -> AsyncIterator[bytes]:
        """``logs=1``: the output logged so far (up to byte ``limit``)."""
        if not self.logs:
            return
        async for stream, data, _ts in self.containers.replay(self.c, limit):
            if (stream == 1 and self.stdout) or (stream == 2 and self.stderr):
                yield data if self.tty else frame(stream, data)

    async def output(self) -> AsyncIterator[bytes]:
        """A client that did not ask to upgrade gets the output as a plain streamed body."""
        async for chunk in self.replay():
            yield chunk
        if not self.stream:
            return
        att = await self.containers.attach(self.c)
        if att is None:
            return
        try:
            while (item := await att.receive()) is not None:
                chunk = self._out(*item)
                if chunk is not None:
                    yield chunk
        finally:
            with trio.CancelScope(shield=True):
                await att.aclose()

    async def _open(self, client: Any) -> Any | None:
        """Replay the log and attach: the stream, or None when there is nothing to attach."""
        if self.stream and self.c.status in ("running", "paused"):
            # attach first, then replay the log as it was then: nothing falls in between
            att = await self.containers.attach(self.c)
            try:
                async for chunk in self.replay(self.containers.log_size(self.c)):
                    await client.send_all(chunk)
            except BaseException:
                with trio.CancelScope(shield=True):
                    await att.aclose()
                raise
            return att
        async for chunk in self.replay():
            await client.send_all(chunk)
        return await self.containers.attach(self.c) if self.stream else None

    async def hijacked(self, client: Any, leftover: bytes) -> None:
        try:
            att = await self._open(client)
        except CoreError as exc:
            log.debug("attach to %s: %s", self.c.short_id, exc)
            att = None
        except (trio.BrokenResourceError, trio.ClosedResourceError):
            att = None
        if att is None:
            await close_client(client)
            return
        detached = await pump(client, leftover, att, tty=self.tty, stdin=self.stdin, stdout=self.stdout,
                              stderr=self.stderr, detach_keys=self.keys, stdin_once=self.stdin_once)
        if detached:
            self.containers.detached(self.c)


async def attach(req: Request, containers: Containers) -> Response:
    c = containers.lookup(req.params["id"])
    parse_detach_keys(req.q("detachKeys"))
    c = containers.attachable(c.id)
    session = _Attach(req, containers, c)
    if not wants_upgrade(req):
        return Response(status=200, body=session.output(), content_type=content_type(session.tty))
    return Response(status=101, content_type=content_type(session.tty), hijack=session.hijacked)


async def attach_ws(req: Request, containers: Containers) -> Response:
    raise NotImplemented_("attaching over a websocket is not supported; use POST /containers/{id}/attach")


async def resize(req: Request, containers: Containers) -> Response:
    c = containers.lookup(req.params["id"])
    h, w = _size(req)
    await containers.resize(c.id, h, w)
    return _empty_ok("text/plain; charset=utf-8")


# -- top / stats ------------------------------------------------------------------------------------
async def top(req: Request, containers: Containers) -> Response:
    return json_response(await containers.top(req.params["id"], req.q("ps_args")))


async def stats(req: Request, containers: Containers) -> Response:
    result = await containers.stats(req.params["id"], stream=req.qbool("stream", True), one_shot=req.qbool("one-shot"))
    if isinstance(result, dict):
        return json_response(result)
    return Response(status=200, body=result)


# -- archive / export / changes ---------------------------------------------------------------------
def _archive_path(req: Request) -> str:
    path = req.q("path")
    if not path:
        raise InvalidArgument("path is required: the path of a file or directory in the container")
    return path


def _stat_header(info: Any) -> list[tuple[str, str]]:
    return [("X-Docker-Container-Path-Stat", archive.stat_header(info))]


async def archive_head(req: Request, containers: Containers) -> Response:
    c = containers.lookup(req.params["id"])
    info = await containers.archive_stat(c.id, _archive_path(req))
    return Response(status=200, body=b"", content_type=None, headers=_stat_header(info))


async def archive_get(req: Request, containers: Containers) -> Response:
    if req.method == "HEAD":
        return await archive_head(req, containers)
    c = containers.lookup(req.params["id"])
    info, body = await containers.archive_get(c.id, _archive_path(req))
    return Response(status=200, body=body, content_type="application/x-tar", headers=_stat_header(info))


async def archive_put(req: Request, containers: Containers) -> Response:
    c = containers.lookup(req.params["id"])
    path = _archive_path(req)
    no_overwrite, copy_ids = req.qbool("noOverwriteDirNonDir"), req.qbool("copyUIDGID")
    # read as it arrives, any size: the tar goes to the worker thread in pieces
    data = req.body_stream.reader() if req.body_stream is not None else io.BytesIO(req.body)
    await containers.archive_put(c.id, path, data, no_overwrite_dir_nondir=no_overwrite, copy_uid_gid=copy_ids)
    return _empty_ok()


async def export(req: Request, containers: Containers) -> Response:
    body = await containers.export(req.params["id"])
    return Response(status=200, body=body, content_type="application/octet-stream")


async def changes(req: Request, containers: Containers) -> Response:
    """``docker diff``: the container's root against a read-only view of its parent."""
    return json_response(await containers.changes(req.params["id"]))


# -- exec -------------------------------------------------------------------------------------------
async def exec_create(req: Request, containers: Containers) -> Response:
    c = containers.lookup(req.params["id"])
    body = req.json({}) or {}
    if isinstance(body, dict) and body.get("DetachKeys"):
        parse_detach_keys(body["DetachKeys"])
    e = containers.exec_create(c.id, body)
    return json_response({"Id": e.id}, status=201)


async def _exec_session(containers: Containers, e: Exec, client: Any, leftover: bytes, tty: bool,
                        console: tuple[int, int] | None) -> None:
    """A hijacked ``exec start``: run it, pump its stdio; the client's connection closes once
    its exit code is recorded, since clients inspect the exec as soon as its stream ends.
    ``tty`` is how the stream is framed (the start's ``Tty``: raw, else multiplexed); the
    process has a terminal when the exec's create asked for one."""
    async def exited() -> None:
        with trio.move_on_after(10):
            await e.done.wait()

    try:
        await containers.exec_start(e, console=console)
    except CoreError as exc:
        msg = (exc.message + "\r\n").encode()
        try:
            await client.send_all(msg if tty else frame(1, msg))
        except (trio.BrokenResourceError, trio.ClosedResourceError):
            pass
        await close_client(client)
        return
    try:
        att = await containers.exec_attach(e)
    except CoreError as exc:  # e.g. the exec ended before we attached: wait for its exit all the same
        log.info("attach to exec %s: %s", e.id[:12], exc)
        await exited()
        await close_client(client)
        return
    await pump(client, leftover, att, tty=tty, stdin=bool(e.config.get("AttachStdin")),
               stdout=bool(e.config.get("AttachStdout")), stderr=bool(e.config.get("AttachStderr")),
               detach_keys=parse_detach_keys(e.config.get("DetachKeys")),
               stdin_once=not e.config.get("Tty"), before_close=exited)


async def exec_start(req: Request, containers: Containers) -> Response:
    e = containers.exec_lookup(req.params["id"])
    body = req.json({}) or {}
    if not isinstance(body, dict):
        raise InvalidArgument("exec start: expected a JSON object")
    tty, console = body.get("Tty"), body.get("ConsoleSize")
    console_t = (int(console[0]), int(console[1])) if isinstance(console, list) and len(console) == 2 else None
    containers.exec_startable(e)
    if body.get("Detach"):
        await containers.exec_start(e, console=console_t)
        return _empty_ok()
    tty_on = bool(tty) if isinstance(tty, bool) else bool(e.config.get("Tty"))   # the framing only
    parse_detach_keys(e.config.get("DetachKeys"))
    if not wants_upgrade(req):
        raise InvalidArgument("exec start without Detach needs a connection upgrade (Upgrade: tcp)")

    async def run(client: Any, leftover: bytes) -> None:
        await _exec_session(containers, e, client, leftover, tty_on, console_t)

    return Response(status=101, content_type=content_type(tty_on), hijack=run)


async def exec_resize(req: Request, containers: Containers) -> Response:
    e = containers.exec_lookup(req.params["id"])
    h, w = _size(req)
    await containers.exec_resize(e.id, h, w)
    return _empty_ok("text/plain; charset=utf-8")


async def exec_inspect(req: Request, containers: Containers) -> Response:
    return json_response(containers.exec_lookup(req.params["id"]).inspect())


ROUTES: list[Route | tuple[str, str, Any]] = [
    ("POST", "/containers/create", create),
    ("GET", "/containers/json", list_containers),
    ("GET", "/containers/{id}/json", inspect),
    ("POST", "/containers/{id}/start", start),
    ("POST", "/containers/{id}/stop", stop),
    ("POST", "/containers/{id}/restart", restart),
    ("POST", "/containers/{id}/kill", kill),
    ("POST", "/containers/{id}/pause", pause),
    ("POST", "/containers/{id}/unpause", unpause),
    ("POST", "/containers/{id}/wait", wait),
    ("DELETE", "/containers/{id}", remove),
    ("POST", "/containers/{id}/rename", rename),
    ("POST", "/containers/{id}/update", update),
    ("POST", "/containers/prune", prune),
    ("GET", "/containers/{id}/logs", logs),
    ("POST", "/containers/{id}/attach", attach),
    ("GET", "/containers/{id}/attach/ws", attach_ws),
    ("POST", "/containers/{id}/resize", resize),
    ("GET", "/containers/{id}/top", top),
    ("GET", "/containers/{id}/stats", stats),
    ("GET", "/containers/{id}/archive", archive_get),
    ("HEAD", "/containers/{id}/archive", archive_head),
    Route("PUT", "/containers/{id}/archive", archive_put, stream_body=True),
    ("GET", "/containers/{id}/export", export),
    ("GET", "/containers/{id}/changes", changes),
    ("POST", "/containers/{id}/exec", exec_create),
    ("POST", "/exec/{id}/start", exec_start),
    ("POST", "/exec/{id}/resize", exec_resize),
    ("GET", "/exec/{id}/json", exec_inspect),
]

