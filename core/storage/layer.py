"""Applying a layer — an uncompressed tar stream — onto a snapshot directory, safely.

:func:`apply_layer` reads the stream incrementally (a trio task hands it in bounded batches to a
worker thread that parses it with :mod:`core.storage.tarstream`, a strict tar reader that
writes file contents straight from the stream's pieces), and writes every entry below
``target`` and nowhere else, whatever the tar says.  The guarantees, for hostile input:

- Every path is resolved one component at a time from a descriptor of ``target``
  (``openat(..., O_NOFOLLOW | O_DIRECTORY)``), and every file is created with the ``*at``
  system calls relative to its parent's descriptor.  No symlink is ever followed: not one the
  tar planted earlier, not one in a lower layer.
- Rejected with ``InvalidArgument`` (the snapshot is then partial, for the caller to remove):
  absolute names, ``..`` components, names longer than 4096 bytes or components longer than
  255, an entry below a symlink or a non-directory, hardlinks to anything but an existing
  non-directory of the snapshot (or of its lowers), whiteouts of ``.``/``..``, device nodes
  named like whiteouts, unknown entry types, extended headers over 1 MiB, truncated or
  corrupt tars (bad checksums, malformed numbers or PAX records: see
  :mod:`core.storage.tarstream`).  Errors of the host (``ENOSPC``, ``EIO``...) raise
  ``CoreError``.

Semantics, as docker and the OCI image spec have them:

- Entries are applied in order; a later entry for the same path wins.  An entry replaces what
  is there, except that a directory over a directory keeps the contents and takes the new
  attributes.  Missing parent directories are created (``0755``, root) — in overlay mode, with
  the attributes of the lower directory when there is one (overlayfs's copy-up).
- Kept: owner (numeric ids), mode with setuid/setgid/sticky, times (directories' after their
  contents are written), symlinks, hardlinks, character/block devices and fifos (created, never
  opened), and the xattrs ``user.*``, ``security.capability`` and ``system.posix_acl_*`` from
  ``SCHILY.xattr.*`` PAX records (others — ``trusted.*``, SELinux labels — are host policy and
  are skipped; so are xattrs the filesystem refuses, as docker does).
- Whiteouts: ``.wh.<name>`` deletes ``<name>`` of the lower layers; ``.wh..wh..opq`` hides every
  entry the lower layers have in its directory.  Both apply to the lower layers only: what this
  layer writes, before or after the whiteout, stays.  Other ``.wh..wh.*`` entries are AUFS
  bookkeeping and are skipped with everything below them.  A ``0:0`` character device is
  overlayfs's own whiteout and is read as one in both modes, so the two agree.
- :class:`WhiteoutMode` says how whiteouts are written:

  ``OVERLAY``  ``target`` is the upper layer of an overlay over ``lowers`` (nearest first):
               a whiteout is a ``0:0`` character device; an opaque directory carries
               ``trusted.overlay.opaque=y`` (or, at the root, where overlayfs ignores that
               attribute, a whiteout per lower entry).  A directory that replaces a
               non-directory of this layer is made opaque too, so that lower contents the
               replaced entry hid do not resurface.  A hardlink to a file of the lowers copies
               that file up first.  With no lowers (a bottom layer, which may be bind-mounted)
               nothing is hidden and no whiteout is written.
  ``DELETE``   ``target`` is a full copy of the parent (vfs): whiteouts delete.

:func:`apply_tar` is the same on a synchronous binary file object.
"""
from __future__ import annotations

import enum
import errno
import os
import shutil
import stat
from collections.abc import AsyncIterable, Sequence
from pathlib import Path
from typing import BinaryIO, Callable, Protocol

import trio

from core.errors import CoreError, InvalidArgument
from core.storage import fs
from core.storage.tarstream import MAX_HEADER_BYTES, TarEntry, TarReader

__all__ = ["WhiteoutMode", "apply_layer", "apply_tar", "MAX_PATH_BYTES", "MAX_HEADER_BYTES"]

MAX_PATH_BYTES = 4096        # PATH_MAX: longer names and link targets are rejected
NAME_MAX = 255               # a single component

WHITEOUT_PREFIX = ".wh."
WHITEOUT_META_PREFIX = ".wh..wh."
WHITEOUT_OPAQUE = ".wh..wh..opq"
OPAQUE_XATTR = "trusted.overlay.opaque"

_XATTR_KEPT_PREFIXES = ("user.", "system.posix_acl_")
_XATTR_KEPT = {"security.capability"}

_OPEN_DIR = os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW | os.O_CLOEXEC
_CREATE_FILE = os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW | os.O_CLOEXEC
_READ_CHUNK = 1 << 20         # apply_tar reads its file in pieces of this
_BATCH_BYTES = 1 << 20        # the stream is handed to the worker in batches of about this
_PREFETCH_BATCHES = 4         # batches read ahead of the worker
_FD_CACHE = 128              # directory descriptors kept open between entries
_MAX_ID = 2**32 - 2          # (uid_t)-1 means "unchanged" to chown
_NS_LIMIT = 2**63 - 1
# Errors of the kernel that a tar's content provokes (as opposed to the host's troubles).
_INPUT_ERRNOS = {errno.ENOENT, errno.ENOTDIR, errno.ELOOP, errno.EEXIST, errno.EISDIR,
                 errno.ENAMETOOLONG, errno.EINVAL, errno.EMLINK, errno.ENOTEMPTY}


class WhiteoutMode(enum.Enum):
    """How whiteouts are written: see the module docstring."""

    OVERLAY = "overlay"
    DELETE = "delete"


# Policies of _Applier._dir for a directory that does not exist in the target.
_MAKE = "make"          # create it (copying the lower one's attributes, in overlay mode)
_COPY_UP = "copy-up"    # create it only if a lower layer has it; else report None
_NEVER = "never"        # report None


# --------------------------------------------------------------------------- entry points
async def apply_layer(stream: AsyncIterable[bytes], target: Path, *, whiteouts: WhiteoutMode,
                      lowers: Sequence[Path] = ()) -> int:
    """Unpack the tar read from ``stream`` into the existing directory ``target``.

    ``lowers`` are the directories of the lower layers, nearest first (``OVERLAY`` mode only:
    they are read, never written).  Returns the number of bytes read: the whole stream,
    padding after the end-of-archive blocks included, so a caller hashing the stream sees all
    of it.  An empty stream is an empty layer.  Raises ``InvalidArgument`` for a hostile or
    corrupt tar, ``CoreError`` for errors of the host, and whatever ``stream`` raises.

    The stream is read by a trio task into batches of about 1 MiB — lists of the chunks as they
    came, never joined — at most a few ahead of a worker thread that pulls them and writes the
    files: download and unpacking overlap, memory stays bounded, file contents go from the
    stream's chunks to the files without a copy, and the two threads meet once per batch rather
    than once per chunk.  On cancellation both stop before this returns.
    """
    send, receive = trio.open_memory_channel[list[bytes]](_PREFETCH_BATCHES)
    total = 0
    stream_error: Exception | None = None
    worker_error: Exception | None = None

    async def produce() -> None:
        nonlocal total, stream_error
        async with send:  # closing it is the worker's end of input
            parts: list[bytes] = []
            size = 0
            try:
                async for chunk in stream:
                    if not chunk:
                        continue
                    if not isinstance(chunk, bytes):
                        chunk = bytes(chunk)
                    total += len(chunk)
                    parts.append(chunk)
                    size += len(chunk)
                    if size >= _BATCH_BYTES:
                        await send.send(parts)
                        parts, size = [], 0
                if parts:
                    await send.send(parts)
            except Exception as exc:  # raised below, after the worker has stopped
                stream_error = exc

    batch: list[bytes] = []

    def next_chunk() -> bytes:
        nonlocal batch
        if not batch:
            try:
                batch = trio.from_thread.run(receive.receive)
            except trio.EndOfChannel:
                return b""
            batch.reverse()  # popped from the end, in order
        return batch.pop()

    def work() -> None:
        _apply(next_chunk, target, whiteouts, lowers).drain()  # and the stream's tail

    async with trio.open_nursery() as nursery:
        nursery.start_soon(produce)
        try:
            await trio.to_thread.run_sync(work)
        except Exception as exc:
            worker_error = exc
            nursery.cancel_scope.cancel()  # stop reading a stream nobody will apply
    if stream_error is not None:
        raise stream_error  # the cause; the worker's error is its consequence
    if worker_error is not None:
        raise worker_error
    return total


def apply_tar(fileobj: BinaryIO, target: Path, *, whiteouts: WhiteoutMode,
              lowers: Sequence[Path] = ()) -> None:
    """Unpack the tar read from the binary file object ``fileobj`` into ``target``.

    Reads up to the end-of-archive marker (or the end of the input: an empty input is an empty
    layer).  See :func:`apply_layer` for the arguments and errors.
    """
    _apply(lambda: fileobj.read(_READ_CHUNK), target, whiteouts, lowers)


def _apply(fill: Callable[[], bytes], target: Path, whiteouts: WhiteoutMode,
           lowers: Sequence[Path]) -> TarReader:
    """Apply the archive read from ``fill``; returns the reader, at the end of the archive."""
    reader = TarReader(fill)
    entry = reader.next()
    if entry is None:
        return reader  # an empty layer
    applier = _Applier(str(target), whiteouts, [str(p) for p in lowers])
    try:
        while entry is not None:
            applier.entry(entry, reader)
            entry = reader.next()
        applier.finish()
    finally:
        applier.close()
    return reader


# --------------------------------------------------------------------------- entry data
class _DataSource(Protocol):
    def write_data(self, fd: int, size: int) -> None:
        """Write the next ``size`` bytes of the entry's data to ``fd``."""


# --------------------------------------------------------------------------- names
def _show(name: str) -> str:
    text = repr(name)
    return text if len(text) <= 120 else text[:117] + "..."


def _clean(name: str, what: str = "entry") -> str:
    """The normalised relative path of a tar name (``""`` is the root); rejects escapes."""
    # a character is at most 4 bytes in UTF-8: shorter names need no encoding to check
    if len(name) > MAX_PATH_BYTES // 4 and len(name.encode("utf-8", "surrogateescape")) > MAX_PATH_BYTES:
        raise InvalidArgument(f"layer {what} name is longer than {MAX_PATH_BYTES} bytes: {_show(name)}")
    if "\0" in name:
        raise InvalidArgument(f"layer {what} name contains NUL: {_show(name)}")
    if name.startswith("/"):
        raise InvalidArgument(f"layer {what} {_show(name)} is an absolute path")
    parts = [p for p in name.split("/") if p and p != "."]
    ascii_ = name.isascii()  # then characters are bytes: no need to encode each component
    for part in parts:
        if part == "..":
            raise InvalidArgument(f"layer {what} {_show(name)} contains '..'")
        if (len(part) if ascii_ else len(part.encode("utf-8", "surrogateescape"))) > NAME_MAX:
            raise InvalidArgument(f"layer {what} {_show(name)} has a component longer than "
                                  f"{NAME_MAX} bytes")
    return "/".join(parts)


def _split(path: str) -> tuple[str, str]:
    parent, _, name = path.rpartition("/")
    return parent, name


def _join(parent: str, name: str) -> str:
    return f"{parent}/{name}" if parent else name


def _is_whiteout(st: os.stat_result) -> bool:
    return stat.S_ISCHR(st.st_mode) and st.st_rdev == 0


def _is_opaque(path: str | int) -> bool:
    try:
        if isinstance(path, int):
            return os.getxattr(path, OPAQUE_XATTR) == b"y"
        return os.getxattr(path, OPAQUE_XATTR, follow_symlinks=False) == b"y"
    except OSError:
        return False


def _clamp_ns(ns: int) -> int:
    return max(-_NS_LIMIT, min(_NS_LIMIT, ns))


def _times(member: TarEntry) -> tuple[int, int]:
    """``(atime, mtime)`` in nanoseconds, as ``utime`` takes them (atime defaults to mtime)."""
    mtime = _clamp_ns(member.mtime_ns)
    return (mtime if member.atime_ns is None else _clamp_ns(member.atime_ns)), mtime


def _xattrs(member: TarEntry) -> list[tuple[str, bytes]]:
    return [(name, value) for name, value in member.xattrs
            if name in _XATTR_KEPT or name.startswith(_XATTR_KEPT_PREFIXES)]


# --------------------------------------------------------------------------- applying
class _Applier:
    """Applies tar entries to one target directory; see the module docstring.

    Paths are normalised relative strings (``"usr/bin"``; ``""`` the root).  ``_fds`` caches
    descriptors of directories of the target, each opened with ``O_NOFOLLOW`` from its parent's;
    an entry that removes a directory drops it (and those below) from the cache, and the cache
    is trimmed only between entries, so a descriptor in use is never closed.
    """

    def __init__(self, target: str, mode: WhiteoutMode, lowers: Sequence[str]) -> None:
        if mode is not WhiteoutMode.OVERLAY and lowers:
            raise ValueError("lowers are only read in overlay mode")
        self.target = target
        self.mode = mode
        self.overlay = mode is WhiteoutMode.OVERLAY
        self.layers = [target, *lowers]          # the merged view, top first
        # Whether what this layer hides must be written down (as whiteouts and opaque
        # directories): in overlay mode over lower layers.  A bottom layer has nothing below
        # it to hide, and may be bind-mounted, where whiteouts would show as devices.
        self.hides = self.overlay and bool(lowers)
        self.root_fd = os.open(target, _OPEN_DIR)
        self._fds: dict[str, int] = {}
        self._dir_times: dict[str, tuple[int, int]] = {}
        self._written: set[str] = set()          # paths of this layer's entries, and parents

    def close(self) -> None:
        for fd in self._fds.values():
            os.close(fd)
        self._fds.clear()
        os.close(self.root_fd)

    # ------------------------------------------------------------------- one entry
    def entry(self, member: TarEntry, source: _DataSource) -> None:
        """Apply ``member``, whose data ``source`` has (its :class:`TarReader`)."""
        if len(self._fds) > _FD_CACHE:
            self._trim()
        path = _clean(member.name)
        try:
            self._entry(path, member, source)
        except OSError as exc:
            kind = InvalidArgument if exc.errno in _INPUT_ERRNOS else CoreError
            raise kind(f"layer entry {_show(member.name)}: {exc.strerror or exc}") from exc
        except (ValueError, OverflowError) as exc:
            raise InvalidArgument(f"layer entry {_show(member.name)}: {exc}") from exc

    def _entry(self, path: str, m: TarEntry, source: _DataSource) -> None:
        parent, name = _split(path)
        if WHITEOUT_PREFIX in path:
            if any(p.startswith(WHITEOUT_META_PREFIX) for p in path.split("/")[:-1]):
                return  # inside AUFS bookkeeping (.wh..wh.plnk/...): not part of the filesystem
            if name == WHITEOUT_OPAQUE:
                self._opaque(parent)
                return
            if name.startswith(WHITEOUT_META_PREFIX):
                return  # AUFS bookkeeping
            if name.startswith(WHITEOUT_PREFIX):
                if m.ischr() or m.isblk():
                    raise InvalidArgument(f"layer entry {_show(m.name)} is a device named like a whiteout")
                hidden = name[len(WHITEOUT_PREFIX):]
                if hidden in ("", ".", ".."):
                    raise InvalidArgument(f"layer whiteout {_show(m.name)} names no entry")
                self._whiteout(_join(parent, hidden))
                return
        if not path:
            if not m.isdir():
                raise InvalidArgument(f"layer entry {_show(m.name)} would replace the root directory")
            self._check_owner(m)
            self._attributes(self.root_fd, m)
            self._dir_times[""] = _times(m)
            return
        if m.ischr() and m.devmajor == 0 and m.devminor == 0:
            self._whiteout(path)  # overlayfs's whiteout form, read as a whiteout in every mode
            return
        self._make(parent, name, path, m, source)

    def _make(self, parent: str, name: str, path: str, m: TarEntry, source: _DataSource) -> None:
        """Create the entry ``m`` at ``path`` (``name`` in ``parent``), whatever its type."""
        self._check_owner(m)
        pfd = self._dir(parent, _MAKE)
        if m.isdir():
            self._mkdir(pfd, name, path, m)
        elif m.isreg():
            self._file(pfd, name, path, m, source)
        elif m.issym():
            self._symlink(pfd, name, path, m)
        elif m.islnk():
            self._hardlink(pfd, name, path, m)
        elif m.ischr() or m.isblk() or m.isfifo():
            self._device(pfd, name, path, m)
        else:
            raise InvalidArgument(f"entry {_show(m.name)} has the unsupported type "
                                  f"{m.type.decode('latin-1')!r}")
        self._mark(path)

    @staticmethod
    def _check_owner(m: TarEntry) -> None:
        if not (0 <= m.uid <= _MAX_ID and 0 <= m.gid <= _MAX_ID):
            raise InvalidArgument(f"layer entry {_show(m.name)} has an invalid owner {m.uid}:{m.gid}")

    def _attributes(self, fd: int, m: TarEntry) -> None:
        """Owner, mode, xattrs of an open file or directory (times are the caller's)."""
        os.fchown(fd, m.uid, m.gid)
        os.fchmod(fd, m.mode & 0o7777)
        for name, value in _xattrs(m):
            try:
                os.setxattr(fd, name, value)
            except OSError as exc:
                if exc.errno not in (errno.ENOTSUP, errno.EPERM):
                    raise

    def _create(self, make: Callable[[], object], pfd: int, name: str, path: str) -> object:
        """``make()`` the entry ``name``; if something is in the way, remove it first."""
        try:
            return make()
        except FileExistsError:
            self._remove(pfd, name, path)
            return make()

    def _mkdir(self, pfd: int, name: str, path: str, m: TarEntry) -> None:
        replaced = False
        try:
            os.mkdir(name, 0o700, dir_fd=pfd)
        except FileExistsError:
            st = os.stat(name, dir_fd=pfd, follow_symlinks=False)
            if not stat.S_ISDIR(st.st_mode):
                self._remove(pfd, name, path, st)
                os.mkdir(name, 0o700, dir_fd=pfd)
                replaced = True
        fd = self._dir(path, _NEVER)
        self._attributes(fd, m)
        if replaced and self.hides:
            os.setxattr(fd, OPAQUE_XATTR, b"y")  # what the replaced entry hid stays hidden
        self._dir_times[path] = _times(m)

    def _file(self, pfd: int, name: str, path: str, m: TarEntry, source: _DataSource) -> None:
        fd = self._create(lambda: os.open(name, _CREATE_FILE, 0o600, dir_fd=pfd), pfd, name, path)
        try:
            if m.sparse is not None:
                for offset, size in m.sparse:
                    os.lseek(fd, offset, os.SEEK_SET)
                    source.write_data(fd, size)
                os.ftruncate(fd, m.size)
            elif m.size:
                source.write_data(fd, m.size)
            self._attributes(fd, m)
            os.utime(fd, ns=_times(m))
        finally:
            os.close(fd)

    def _symlink(self, pfd: int, name: str, path: str, m: TarEntry) -> None:
        target = m.linkname
        if not target or len(target.encode("utf-8", "surrogateescape")) > MAX_PATH_BYTES:
            raise InvalidArgument(f"layer symlink {_show(m.name)} has an empty or too long target")
        self._create(lambda: os.symlink(target, name, dir_fd=pfd), pfd, name, path)
        os.chown(name, m.uid, m.gid, dir_fd=pfd, follow_symlinks=False)
        os.utime(name, ns=_times(m), dir_fd=pfd, follow_symlinks=False)

    def _device(self, pfd: int, name: str, path: str, m: TarEntry) -> None:
        kind = stat.S_IFCHR if m.ischr() else stat.S_IFBLK if m.isblk() else stat.S_IFIFO
        device = os.makedev(m.devmajor, m.devminor) if kind != stat.S_IFIFO else 0
        self._create(lambda: os.mknod(name, kind | 0o600, device, dir_fd=pfd), pfd, name, path)
        os.chown(name, m.uid, m.gid, dir_fd=pfd, follow_symlinks=False)
        os.chmod(name, m.mode & 0o7777, dir_fd=pfd)  # just made by us: not a symlink
        os.utime(name, ns=_times(m), dir_fd=pfd, follow_symlinks=False)

    def _hardlink(self, pfd: int, name: str, path: str, m: TarEntry) -> None:
        target = _clean(m.linkname, "hardlink target")
        if not target or target == path or target.startswith(path + "/"):
            raise InvalidArgument(f"layer hardlink {_show(m.name)} points to "
                                  f"{_show(m.linkname)}, which it would replace")
        tparent, tname = _split(target)
        tfd = self._dir(tparent, _NEVER)
        st = None
        if tfd is not None:
            try:
                st = os.stat(tname, dir_fd=tfd, follow_symlinks=False)
            except FileNotFoundError:
                pass
        if st is None and self.overlay:
            tfd, st = self._copy_up(target)
        if st is None or stat.S_ISDIR(st.st_mode) or _is_whiteout(st):
            raise InvalidArgument(f"layer hardlink {_show(m.name)} points to {_show(m.linkname)}, "
                                  "which is not a file of this layer or the layers below")
        self._create(lambda: os.link(tname, name, src_dir_fd=tfd, dst_dir_fd=pfd,
                                     follow_symlinks=False), pfd, name, path)

    # ------------------------------------------------------------------- whiteouts
    def _whiteout(self, path: str) -> None:
        """Hide ``path`` of the lower layers (never what this layer wrote)."""
        parent, name = _split(path)
        pfd = self._dir(parent, _COPY_UP if self.overlay else _NEVER)
        if pfd is None:
            return  # no such directory below: nothing to hide
        try:
            st = os.stat(name, dir_fd=pfd, follow_symlinks=False)
        except FileNotFoundError:
            st = None
        if path in self._written:
            if st is not None and stat.S_ISDIR(st.st_mode):
                self._hide_below(path)
            return  # a non-directory of this layer already hides the lowers' entry
        if st is not None:
            if self.overlay and _is_whiteout(st):
                return
            # in overlay mode: a directory copied up to hold whiteouts, or a file copied up
            # for a hardlink; in delete mode: the lower entry itself
            self._remove(pfd, name, path, st)
        if self.hides:
            os.mknod(name, stat.S_IFCHR | 0o600, os.makedev(0, 0), dir_fd=pfd)

    def _opaque(self, path: str) -> None:
        """Hide every entry the lower layers have in the directory ``path``."""
        if self.overlay and not path:
            self._opaque_root()
            return
        if self._dir(path, _COPY_UP if self.overlay else _NEVER) is not None:
            self._hide_below(path)

    def _hide_below(self, path: str) -> None:
        """Hide what the lower layers have below the directory ``path``, keep this layer's."""
        self._purge(path)
        if self.hides:
            os.setxattr(self._dir(path, _NEVER), OPAQUE_XATTR, b"y")  # type: ignore[arg-type]

    def _opaque_root(self) -> None:
        # overlayfs ignores the opaque attribute on the root: white out each lower entry.
        self._purge("")
        seen: set[str] = set()
        for layer in self.layers[1:]:
            for name in os.listdir(layer):
                if name not in seen:
                    seen.add(name)
                    if not _is_whiteout(os.lstat(f"{layer}/{name}")):
                        self._whiteout(name)

    def _purge(self, path: str) -> None:
        """Remove what is below the directory ``path`` of the target and was not written by
        this layer, recursing into what was.  In delete mode that is the lower layers' files;
        in overlay mode, directories and files copied up, and whiteouts."""
        stack = [path]
        while stack:
            dir_path = stack.pop()
            fd = self._dir(dir_path, _NEVER)
            if fd is None:
                continue
            for name in os.listdir(fd):
                child = _join(dir_path, name)
                st = os.stat(name, dir_fd=fd, follow_symlinks=False)
                if child not in self._written:
                    self._remove(fd, name, child, st)
                elif stat.S_ISDIR(st.st_mode):
                    stack.append(child)

    def _mark(self, path: str) -> None:
        written = self._written
        while path and path not in written:
            written.add(path)
            path = _split(path)[0]

    # ------------------------------------------------------------------- directories
    def _dir(self, path: str, policy: str) -> int | None:
        """A descriptor of the directory ``path`` of the target, never through a symlink.

        A missing directory is created or not according to ``policy`` (``None`` when not).
        A component this layer whited out (overlay mode) is ``None`` too — or, under
        ``_MAKE``, becomes a new opaque directory.  Raises ``InvalidArgument`` when a component
        is a symlink or another non-directory.
        """
        if not path:
            return self.root_fd
        fd = self._fds.get(path)
        if fd is not None:
            return fd
        fd = self.root_fd
        prefix = ""
        for part in path.split("/"):
            prefix = _join(prefix, part)
            cached = self._fds.get(prefix)
            if cached is not None:
                fd = cached
                continue
            try:
                child = os.open(part, _OPEN_DIR, dir_fd=fd)
            except FileNotFoundError:
                if policy == _NEVER:
                    return None
                child = self._implicit_dir(fd, part, prefix, policy)
                if child is None:
                    return None
            except OSError as exc:
                if exc.errno not in (errno.ENOTDIR, errno.ELOOP):
                    raise
                st = os.stat(part, dir_fd=fd, follow_symlinks=False)
                if self.overlay and _is_whiteout(st):
                    if policy != _MAKE:
                        return None  # whited out by this layer: nothing below it to hide
                    # an entry below what this layer whited out: a new, opaque directory
                    os.unlink(part, dir_fd=fd)
                    os.mkdir(part, 0o755, dir_fd=fd)
                    child = os.open(part, _OPEN_DIR, dir_fd=fd)
                    os.fchmod(child, 0o755)
                    os.setxattr(child, OPAQUE_XATTR, b"y")
                else:
                    what = "a symlink" if stat.S_ISLNK(st.st_mode) else "not a directory"
                    where = f"{_show(path)}: {_show(prefix)}" if prefix != path else _show(path)
                    raise InvalidArgument(f"layer path {where} is {what}") from None
            self._fds[prefix] = child
            fd = child
        return fd

    def _implicit_dir(self, pfd: int, name: str, path: str, policy: str) -> int | None:
        """Create the missing parent directory ``path``, as docker does (``0755``, root), or
        in overlay mode as a copy-up of the lower directory's attributes."""
        lower = self._lookup(path) if self.overlay else None
        if lower is not None and not stat.S_ISDIR(lower[1].st_mode):
            what = "a symlink" if stat.S_ISLNK(lower[1].st_mode) else "not a directory"
            raise InvalidArgument(f"layer path {_show(path)} is {what} in a lower layer")
        if lower is None and policy == _COPY_UP:
            return None
        os.mkdir(name, 0o700, dir_fd=pfd)
        fd = os.open(name, _OPEN_DIR, dir_fd=pfd)
        if lower is not None:
            fs.copy_attributes(lower[0], lower[1], fd, times=False)
        else:
            os.fchmod(fd, 0o755)
        return fd  # not marked written: an entry below marks it, a whiteout holder stays not

    def _lookup(self, path: str) -> tuple[str, os.stat_result] | None:
        """Where ``path`` is in the merged view of the target over its lowers, by overlayfs's
        rules (whiteouts, opaque directories, a non-directory hiding what is below it).

        Returns the host path and ``lstat`` of the topmost entry, or ``None`` if the merged
        view has no such entry.  Each layer is consulted below a prefix only where that prefix
        is a directory of that layer, so no symlink is followed.
        """
        layers = self.layers
        rel = ""
        found: tuple[str, os.stat_result] | None = None
        parts = path.split("/")
        for depth, part in enumerate(parts, 1):
            rel = _join(rel, part)
            found, below = None, []
            for layer in layers:
                full = f"{layer}/{rel}"
                try:
                    st = os.lstat(full)
                except (FileNotFoundError, NotADirectoryError):
                    continue
                if _is_whiteout(st):
                    break
                is_dir = stat.S_ISDIR(st.st_mode)
                if found is None:
                    found = (full, st)
                    if not is_dir:
                        break
                elif not is_dir:
                    break
                below.append(layer)
                if _is_opaque(full):
                    break
            if found is None or (depth < len(parts) and not stat.S_ISDIR(found[1].st_mode)):
                return None
            layers = below
        return found

    def _copy_up(self, path: str) -> tuple[int | None, os.stat_result | None]:
        """Overlay mode: copy the lower non-directory ``path`` into the target (so a hardlink
        can point to it); ``(None, None)`` if the merged view has no such file."""
        lower = self._lookup(path)
        if lower is None or stat.S_ISDIR(lower[1].st_mode):
            return None, None
        parent, name = _split(path)
        pfd = self._dir(parent, _COPY_UP)
        if pfd is None:
            return None, None
        fs.copy_node(lower[0], lower[1], pfd, name)
        return pfd, os.stat(name, dir_fd=pfd, follow_symlinks=False)

    def _remove(self, pfd: int, name: str, path: str, st: os.stat_result | None = None) -> None:
        """Remove the entry ``path`` (``name`` in ``pfd``), a whole tree if a directory."""
        if st is None:
            st = os.stat(name, dir_fd=pfd, follow_symlinks=False)
        if not stat.S_ISDIR(st.st_mode):
            os.unlink(name, dir_fd=pfd)
            return
        self._forget(path)
        shutil.rmtree(name, dir_fd=pfd)  # walks with descriptors, never follows symlinks

    def _forget(self, path: str) -> None:
        """Drop cached descriptors and pending times of the directory ``path`` and below."""
        below = path + "/"
        for key in [k for k in self._fds if k == path or k.startswith(below)]:
            os.close(self._fds.pop(key))
        if path in self._written:  # else no times are pending below it
            for key in [k for k in self._dir_times if k == path or k.startswith(below)]:
                del self._dir_times[key]

    def _trim(self) -> None:
        for fd in self._fds.values():
            os.close(fd)
        self._fds.clear()

    def finish(self) -> None:
        """Set the directories' times, now that their contents are written."""
        for path, times in self._dir_times.items():
            if len(self._fds) > _FD_CACHE:
                self._trim()
            try:
                fd = self._dir(path, _NEVER)
            except InvalidArgument:
                continue
            if fd is not None:
                os.utime(fd, ns=times)

