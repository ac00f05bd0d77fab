"""A container's root filesystem: its snapshot ``ctr-<id>`` mounted on ``rootfs/`` while it
runs, new volumes filled from it, the roots ``docker cp``/``export`` read, its size, and the
image layers it kept after its image went."""
from __future__ import annotations

import logging
import os
from pathlib import Path

import trio

from core.engine.containers import archive
from core.engine.containers.context import Parts
from core.engine.containers.store import Container
from core.errors import CoreError

log = logging.getLogger("core.engine.containers.rootfs")


async def mount(parts: Parts, c: Container) -> Path:
    """Mount the container's snapshot on its ``rootfs/`` (anything there first unmounted)."""
    from core.storage.mount import mount_all, unmount

    rootfs = parts.files.rootfs(c)
    rootfs.mkdir(exist_ok=True)
    mounts = await parts.snapshotter(c).mounts(f"ctr-{c.id}")
    await trio.to_thread.run_sync(unmount, rootfs)
    await trio.to_thread.run_sync(mount_all, mounts, rootfs)
    return rootfs


async def unmount(parts: Parts, c: Container) -> None:
    """Unmount the container's ``rootfs/`` (lazily if busy); failures are logged."""
    from core.storage.mount import unmount as umount

    rootfs = parts.files.rootfs(c)

    def undo() -> None:
        try:
            umount(rootfs)
        except CoreError:
            umount(rootfs, detach=True)

    with trio.CancelScope(shield=True):
        try:
            await trio.to_thread.run_sync(undo)
        except CoreError as exc:
            log.warning("container %s: cannot unmount %s: %s", c.short_id, rootfs, exc)


def _copy_into(rootfs: Path, dest: str, data: Path) -> bool:
    """Copy what ``rootfs`` has at ``dest`` into the empty directory ``data``; False if
    ``data`` is not empty or ``dest`` is no directory."""
    if any(os.scandir(data)):
        return False
    rfd = os.open(rootfs, os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)
    try:
        try:
            sfd = archive.open_in_root(rfd, dest, os.O_RDONLY | os.O_DIRECTORY)
        except OSError:
            return False
        try:
            dfd = os.open(data, os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW | os.O_CLOEXEC)
            try:
                archive.copy_dir_contents(sfd, dfd)
            finally:
                os.close(dfd)
        finally:
            os.close(sfd)
    finally:
        os.close(rfd)
    return True


async def copy_up_volumes(parts: Parts, c: Container, rootfs: Path) -> None:
    """Fill each new, empty volume with what the image has at its mount point."""
    for mp in c.mounts:
        if mp.type != "volume" or not mp.copy_data or mp.subpath:
            continue
        vol = parts.volumes.find(mp.name)
        if vol is None:
            continue
        try:
            if await trio.to_thread.run_sync(_copy_into, rootfs, mp.destination, vol.mountpoint):
                mp.copy_data = False  # once: a volume is populated when first used
        except OSError as exc:
            raise CoreError(f"failed to copy the image's files into volume {mp.name}: {exc}") from exc


async def root(parts: Parts, c: Container, *, volumes: bool = True) -> archive.Root:
    """Where ``c``'s ``/`` is for a ``docker cp`` (``volumes``) or an export."""
    rootfs = parts.files.rootfs(c)
    if c.running and c.state.pid and os.path.exists(f"/proc/{c.state.pid}/root"):
        if volumes:
            return archive.Root(f"/proc/{c.state.pid}/root", expect=str(rootfs))
        return archive.Root(str(rootfs))
    mounts = await parts.snapshotter(c).mounts(f"ctr-{c.id}")
    binds = [(m.source, m.destination, not m.rw) for m in c.mounts if volumes and m.type in ("bind", "volume")]
    return archive.Root(str(rootfs), mounts=mounts, binds=binds)


async def sizes(parts: Parts, c: Container) -> tuple[int, int]:
    """(SizeRw, SizeRootFs): what the container wrote, and that plus its image."""
    try:
        rw = (await parts.snapshotter(c).usage(f"ctr-{c.id}")).size
    except CoreError:
        rw = 0
    image = parts.images.by_id(c.image_id)
    return rw, rw + (image.size if image else 0)


async def collect_layers(parts: Parts, snapshotter: object, chain: str) -> None:
    """The image went while this container kept its layers (``rmi -f`` with only stopped
    users): remove them from the top, down to one another image or container still uses."""
    in_use = parts.images.chains_in_use()
    while chain and chain not in in_use:
        try:
            parent = (await snapshotter.stat(chain)).parent  # type: ignore[attr-defined]
            await snapshotter.remove(chain)  # type: ignore[attr-defined]
        except CoreError:   # NotFound, or Conflict: another snapshot stands on it
            return
        chain = parent
