"""``docker cp`` (``archive``), ``export`` and ``diff`` (``changes``): tars made in a worker
thread from the container's root (see :mod:`core.engine.containers.archive`), streamed as they
are made; uploads extracted as they arrive; changes against a read-only view of the image."""
from __future__ import annotations

import contextlib
import json
import logging
import os
import secrets
import shutil
import tempfile
from typing import Any, AsyncIterator, BinaryIO, Callable

import trio

from core.engine.containers import archive, oci, rootfs
from core.engine.containers.context import Parts
from core.engine.containers.store import Container
from core.engine.interfaces import CommitSource
from core.errors import CoreError, Forbidden

log = logging.getLogger("core.engine.containers.copy")

Work = Callable[[int, Callable[[Any], None], Callable[[bytes], None]], None]
IGNORED_BY_DIFF = {"/proc", "/sys", "/dev", "/etc/hostname", "/etc/hosts", "/etc/resolv.conf"}


async def _run_in_root(root: archive.Root, work: Work, send: Any, c: Container) -> None:
    token = trio.lowlevel.current_trio_token()

    def thread(root_fd: int) -> None:
        def put(kind: str, payload: Any) -> None:
            trio.from_thread.run(send.send, (kind, payload), trio_token=token)

        work(root_fd, lambda info: put("first", info), lambda chunk: put("data", chunk))

    async with send:
        try:
            await trio.to_thread.run_sync(archive.run_in_root, root, thread, abandon_on_cancel=True)
            return
        except (trio.BrokenResourceError, trio.ClosedResourceError):
            return
        except CoreError as exc:
            error = exc
        except Exception as exc:
            log.exception("archive of container %s failed", c.short_id)
            error = CoreError(f"internal error: {type(exc).__name__}: {exc}")
        try:
            await send.send(("error", error))
        except (trio.BrokenResourceError, trio.ClosedResourceError):
            pass


async def tar_stream(parts: Parts, c: Container, root: archive.Root, work: Work) -> tuple[Any, AsyncIterator[bytes]]:
    """Run ``work(root_fd, send_first, write)`` in the root's thread: its first result
    (the path's stat) comes back before the response starts; then the tar's bytes."""
    send, recv = trio.open_memory_channel[tuple[str, Any]](8)
    parts.tasks.start_soon(_run_in_root, root, work, send, c)
    try:
        kind, payload = await recv.receive()
    except trio.EndOfChannel:
        raise CoreError("the archive ended before it began") from None
    if kind == "error":
        await recv.aclose()
        raise payload

    async def body() -> AsyncIterator[bytes]:
        async with recv:
            async for k, p in recv:
                if k == "data":
                    yield p
                elif k == "error":
                    log.warning("archive of container %s: %s", c.short_id, p)
                    return

    return payload, body()


async def stat(parts: Parts, c: Container, path: str) -> dict[str, Any]:
    """``HEAD /containers/{id}/archive``: the stat of ``path`` in the container."""
    root = await rootfs.root(parts, c)
    info = await trio.to_thread.run_sync(archive.run_in_root, root, lambda fd: archive.path_stat(fd, path, c.name))
    parts.emit(c, "archive-path", path=path)
    return info


async def get(parts: Parts, c: Container, path: str) -> tuple[Any, AsyncIterator[bytes]]:
    """``GET /containers/{id}/archive``: the stat of ``path`` and a tar of it."""
    root = await rootfs.root(parts, c)

    def work(fd: int, first: Callable[[Any], None], write: Callable[[bytes], None]) -> None:
        first(archive.path_stat(fd, path, c.name))
        archive.write_tar(fd, path, c.name, write)

    info, body = await tar_stream(parts, c, root, work)
    parts.emit(c, "archive-path", path=path)
    return info, body


def _check_writable(c: Container, path: str) -> None:
    """A stopped container with a read-only root takes files only in its writable mounts."""
    if c.host_config.get("ReadonlyRootfs") and not c.running:
        target = os.path.normpath("/" + path.lstrip("/"))
        if not any(m.rw and (target == m.destination or target.startswith(m.destination.rstrip("/") + "/"))
                   for m in c.mounts if m.type in ("bind", "volume", "tmpfs")):
            raise Forbidden("container rootfs is marked read-only")


async def put(parts: Parts, c: Container, path: str, data: BinaryIO, *, no_overwrite_dir_nondir: bool,
              copy_uid_gid: bool) -> None:
    """``PUT /containers/{id}/archive``: extract the tar read from ``data`` (a blocking file,
    read in the worker thread as it arrives) at ``path``."""
    _check_writable(c, path)
    root = await rootfs.root(parts, c)

    def work(fd: int) -> None:
        owner = None
        if copy_uid_gid:
            passwd, group = oci.read_user_db(fd)
            u = oci.resolve_user(c.config.get("User") or "", passwd, group)
            owner = (u.uid, u.gid)
        archive.extract_tar(fd, path, c.name, data, owner=owner, no_overwrite_dir_nondir=no_overwrite_dir_nondir)

    await trio.to_thread.run_sync(archive.run_in_root, root, work)
    parts.emit(c, "extract-to-dir", path=path)


async def export(parts: Parts, c: Container) -> AsyncIterator[bytes]:
    """``docker export``: a tar of the container's root filesystem (without its volumes)."""
    root = await rootfs.root(parts, c, volumes=False)

    def work(fd: int, first: Callable[[Any], None], write: Callable[[bytes], None]) -> None:
        first(None)
        archive.write_tar(fd, "/", c.name, write, rebase="")

    _info, body = await tar_stream(parts, c, root, work)
    parts.emit(c, "export")
    return body


async def changes(parts: Parts, c: Container) -> Any:
    """``docker diff``: the container's root against a read-only view of its parent."""
    sn = parts.snapshotter(c)
    parent = (await sn.stat(f"ctr-{c.id}")).parent
    key = f"diff-{c.id[:12]}-{secrets.token_hex(4)}"
    base_dir = tempfile.mkdtemp(prefix="diff-", dir=parts.files.dir(c))
    viewed = False
    try:
        base_mounts = []
        if parent:
            base_mounts = await sn.view(key, parent=parent)
            viewed = True
        roots = [archive.Root(base_dir, mounts=base_mounts), await rootfs.root(parts, c, volumes=False)]
        ignore = IGNORED_BY_DIFF | {m.destination for m in c.mounts}
        return await trio.to_thread.run_sync(archive.run_in_roots, roots,
                                             lambda fds: archive.changes(fds[0], fds[1], ignore))
    finally:
        with trio.CancelScope(shield=True):
            if viewed:
                try:
                    await sn.remove(key)
                except CoreError as exc:
                    log.warning("diff of %s: removing view %s: %s", c.short_id, key, exc)
            shutil.rmtree(base_dir, ignore_errors=True)


@contextlib.asynccontextmanager
async def commit_source(parts: Parts, stopper: Any, c: Container, *, pause: bool) -> AsyncIterator[CommitSource]:
    """``docker commit``'s view of ``c`` (:class:`core.engine.interfaces.CommitSources`): paused
    while held, when ``pause`` and it runs (as docker; unpaused after)."""
    paused = False
    if pause and c.running and c.status != "paused":
        try:
            await stopper.pause(c)
            paused = True
        except CoreError:
            pass  # it stopped meanwhile: nothing to pause (docker ignores this too)
    try:
        ignore = {"/proc", "/sys", "/dev", "/etc/hostname", "/etc/hosts", "/etc/resolv.conf"}
        yield CommitSource(id=c.id, name=c.name, image_id=c.image_id, config=json.loads(json.dumps(c.config)),
                           storage=c.storage, key=f"ctr-{c.id}", root=await rootfs.root(parts, c, volumes=False),
                           scratch=parts.files.dir(c), ignore=frozenset(ignore | {m.destination for m in c.mounts}))
    finally:
        if paused:
            with trio.CancelScope(shield=True):
                try:
                    await stopper.unpause(c)
                except CoreError as exc:
                    log.warning("container %s: unpause after commit failed: %s", c.short_id, exc)
