"""Performing :class:`core.types.Mount` values: :func:`mount_all` and :func:`unmount`.

Snapshotters describe mounts as data; the caller (the container runtime, the conformance suite)
performs them here, with the mount(2) system call — no ``mount`` binary.  Options are split as
mount(8) and containerd split them: flags (``ro``, ``nosuid``, ``rbind``...), propagation
(``rprivate``...) and the rest, passed to the filesystem as its data string.

Bind mounts: ``type="bind"`` or a ``bind``/``rbind`` option.  The kernel ignores other flags on
a new bind mount, so ``ro``, ``nosuid``, ``nodev``, ``noexec`` are applied by a second, remounting
call, as mount(8) does.

Overlay mounts with many layers: mount(2) takes at most one page (4 KiB) of data, about 70
absolute layer paths — docker's limit of ~120 layers (moby#26380).  When the data does not fit,
:func:`mount_all` rewrites ``lowerdir`` relative to the lower directories' common parent and
makes the call from that directory, as containerd does (``compactLowerdirOption`` +
``mountAt``).  The working directory is changed in a short-lived thread that first unshares its
filesystem attributes (``unshare(CLONE_FS)``), so the process's own working directory never
moves.  Snapshotters therefore return plain absolute paths, and any number of layers up to
overlayfs's own limit (500) mounts.

These functions block for the duration of the system calls (milliseconds for a large overlay):
from trio, call them through ``trio.to_thread.run_sync``.
"""
from __future__ import annotations

import ctypes
import errno
import os
import threading
from collections.abc import Sequence
from pathlib import Path

from core.errors import Conflict, CoreError, Forbidden, InvalidArgument, NotFound
from core.types import Mount

__all__ = ["mount", "mount_all", "unmount", "parse_options"]

from core.mountflags import (  # noqa: E402
    MNT_DETACH, MS_BIND, MS_NOATIME, MS_NODEV, MS_NODIRATIME, MS_NOEXEC, MS_NOSUID, MS_RDONLY,
    MS_RELATIME, MS_REMOUNT, MS_STRICTATIME, parse_options,
)

CLONE_FS = 0x200

_BIND_REMOUNT_FLAGS = MS_RDONLY | MS_NOSUID | MS_NODEV | MS_NOEXEC | MS_NOATIME | MS_NODIRATIME \
    | MS_RELATIME | MS_STRICTATIME

_libc = ctypes.CDLL(None, use_errno=True)
_libc.mount.argtypes = (ctypes.c_char_p, ctypes.c_char_p, ctypes.c_char_p, ctypes.c_ulong,
                        ctypes.c_char_p)
_libc.umount2.argtypes = (ctypes.c_char_p, ctypes.c_int)
_libc.unshare.argtypes = (ctypes.c_int,)


def _sys_mount(source: str, target: str, fstype: str, flags: int, data: str | None) -> None:
    if _libc.mount(os.fsencode(source), os.fsencode(target), os.fsencode(fstype), flags,
                   None if data is None else os.fsencode(data)) != 0:
        err = ctypes.get_errno()
        raise OSError(err, os.strerror(err))


def _mount_from(directory: str, source: str, target: str, fstype: str, flags: int, data: str) -> None:
    """mount(2) with ``directory`` as working directory, in a thread of its own (see module)."""
    failure: list[BaseException] = []

    def run() -> None:
        try:
            if _libc.unshare(CLONE_FS) != 0:
                err = ctypes.get_errno()
                raise OSError(err, f"unshare(CLONE_FS): {os.strerror(err)}")
            os.chdir(directory)
            _sys_mount(source, target, fstype, flags, data)
        except BaseException as exc:  # handed to the calling thread
            failure.append(exc)

    thread = threading.Thread(target=run, name="core-mount-from", daemon=True)
    thread.start()
    thread.join()
    if failure:
        raise failure[0]


def _compact_lowerdirs(data: list[str]) -> tuple[str, list[str]] | None:
    """``lowerdir`` relative to the lowers' common parent: (that parent, new data), or None."""
    for i, option in enumerate(data):
        if option.startswith("lowerdir="):
            dirs = option[len("lowerdir="):].split(":")
            if len(dirs) < 2 or not all(os.path.isabs(d) for d in dirs):
                return None
            common = os.path.commonpath(dirs)
            if common == "/" or common in dirs:
                return None
            relative = ":".join(os.path.relpath(d, common) for d in dirs)
            return common, [*data[:i], f"lowerdir={relative}", *data[i + 1:]]
    return None


def _error(exc: OSError, what: str) -> CoreError:
    kind = {errno.ENOENT: NotFound, errno.EINVAL: InvalidArgument, errno.EPERM: Forbidden,
            errno.EACCES: Forbidden, errno.EBUSY: Conflict}.get(exc.errno or 0, CoreError)
    return kind(f"{what}: {exc.strerror or exc}")


def _describe(m: Mount, target: str) -> str:
    options = ",".join(m.options)
    if len(options) > 300:
        options = options[:297] + "..."
    return f"mount -t {m.type} -o {options} {m.source} {target}"


def mount(m: Mount, target: str | Path) -> None:
    """Perform one mount on the directory ``target`` (``m.target`` is ignored here).

    Raises ``NotFound`` (no such source or target), ``InvalidArgument`` (the kernel refused the
    options, or an overlay's data cannot fit a page even compacted), ``Forbidden`` (no
    privilege), ``Conflict`` (busy), ``CoreError`` otherwise.
    """
    target = os.path.abspath(target)
    flags, propagation, data = parse_options(m.options)
    try:
        if m.type == "bind" or flags & MS_BIND:
            flags |= MS_BIND
            _sys_mount(m.source, target, "", flags & ~_BIND_REMOUNT_FLAGS & ~MS_REMOUNT, None)
            if flags & _BIND_REMOUNT_FLAGS:
                try:
                    _sys_mount("", target, "", MS_REMOUNT | MS_BIND | (flags & _BIND_REMOUNT_FLAGS),
                               None)
                except OSError:
                    _sys_unmount(target, MNT_DETACH)
                    raise
        else:
            text = ",".join(data)
            page = os.sysconf("SC_PAGESIZE")
            if len(os.fsencode(text)) < page:
                _sys_mount(m.source, target, m.type, flags, text)
            else:
                compact = _compact_lowerdirs(data) if m.type == "overlay" else None
                if compact is None or len(os.fsencode(",".join(compact[1]))) >= page:
                    raise InvalidArgument(f"{_describe(m, target)}: the options are longer than "
                                          f"mount(2) accepts ({page} bytes)")
                _mount_from(compact[0], m.source, target, m.type, flags, ",".join(compact[1]))
        if propagation:
            try:
                _sys_mount("", target, "", propagation, None)
            except OSError:
                _sys_unmount(target, MNT_DETACH)
                raise
    except OSError as exc:
        raise _error(exc, _describe(m, target)) from exc


def _target_of(m: Mount, root: str) -> str:
    relative = m.target.strip("/")
    if ".." in relative.split("/"):
        raise InvalidArgument(f"mount target {m.target!r} escapes {root}")
    return os.path.join(root, relative) if relative else root


def mount_all(mounts: Sequence[Mount], target: str | Path) -> None:
    """Perform ``mounts`` in order, each on ``target`` joined with its ``target``.

    All or nothing: if one fails, those already performed are unmounted before the error (see
    :func:`mount`) is raised.
    """
    root = os.path.abspath(target)
    done: list[str] = []
    try:
        for m in mounts:
            where = _target_of(m, root)
            mount(m, where)
            done.append(where)
    except BaseException:
        for where in reversed(done):
            try:
                unmount(where)
            except CoreError:
                unmount(where, detach=True)
        raise


def _sys_unmount(target: str, flags: int) -> None:
    if _libc.umount2(os.fsencode(target), flags) != 0:
        err = ctypes.get_errno()
        raise OSError(err, os.strerror(err))


def unmount(target: str | Path, *, detach: bool = False) -> None:
    """Unmount everything mounted on ``target``, stacked mounts included.

    Not mounted (or absent) is fine.  ``detach`` unmounts lazily (``MNT_DETACH``): the last
    resort for a busy mount.  Raises ``Conflict`` when busy, ``CoreError`` otherwise.
    """
    path = os.path.abspath(target)
    while True:
        try:
            _sys_unmount(path, MNT_DETACH if detach else 0)
        except OSError as exc:
            if exc.errno in (errno.EINVAL, errno.ENOENT):
                return  # not (or no longer) a mount point
            raise _error(exc, f"umount {path}") from exc
