"""Files inside a container's root, reached safely: ``docker cp`` both ways, and reading
``/etc/passwd`` for ``--user``.

A container's root filesystem is hostile ground: whoever built the image, or whatever runs in
the container, may have planted symlinks (``/etc/passwd -> /../../../etc/shadow``), swapped
directories for links while we walk, or put a FIFO where a file should be.  Every path here is
resolved *inside* the root, as the container would see it:

- :func:`open_in_root` opens a path relative to a directory descriptor that stands for ``/``:
  ``..`` stops at the root and symlinks — absolute or relative — resolve inside it.  It uses
  ``openat2(RESOLVE_IN_ROOT | RESOLVE_NO_MAGICLINKS)`` (Linux 5.6+): the kernel does the walk,
  so a concurrent rename cannot make it escape.  On older kernels the same walk is done one
  component at a time with ``O_NOFOLLOW`` descriptors and ``readlinkat``.
- Files are read through descriptors opened ``O_NOFOLLOW | O_NONBLOCK`` and checked with
  ``fstat`` (a regular file, and no more than a bound), so a FIFO or ``/dev/zero`` in the image
  cannot hang or flood the daemon.
- Archives are written by walking directories with descriptors (``os.fwalk``, never following
  symlinks) and extracted with :mod:`core.storage.layer`'s applier, which creates every entry
  with ``*at`` calls relative to its parent's descriptor and rejects ``..``, absolute names,
  and entries below symlinks.

The HTTP side (``GET``/``HEAD``/``PUT /containers/{id}/archive``) lives in
``core.api.containers``, the streaming of the tars in ``core.engine.containers.copy``; which
root to use (``/proc/<pid>/root`` of a running container, or its snapshot mounted in a private
mount namespace) in ``core.engine.containers.rootfs``.
"""
from __future__ import annotations

import base64
import ctypes
import errno
import io
import json
import os
import stat
import tarfile
import threading
import time
from collections.abc import Callable
from typing import Any, BinaryIO

from core.errors import Conflict, CoreError, Forbidden, InvalidArgument, NotFound

__all__ = [
    "open_in_root", "resolve_parent", "read_file_in_root", "split_path", "path_stat", "stat_header",
    "write_tar", "extract_tar", "go_file_mode", "rfc3339", "copy_dir_contents", "mkdir_in_root",
]

RESOLVE_NO_XDEV = 0x01
RESOLVE_NO_MAGICLINKS = 0x02
RESOLVE_NO_SYMLINKS = 0x04
RESOLVE_BENEATH = 0x08
RESOLVE_IN_ROOT = 0x10
_SYS_OPENAT2 = 437          # the same number on every architecture (the unified table)
MAX_SYMLINKS = 40           # as the kernel's own limit
_OPEN_DIR = os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW | os.O_CLOEXEC
_OPEN_PATH = os.O_PATH | os.O_NOFOLLOW | os.O_CLOEXEC

_libc = ctypes.CDLL(None, use_errno=True)
_libc.syscall.restype = ctypes.c_long


class _OpenHow(ctypes.Structure):
    _fields_ = [("flags", ctypes.c_uint64), ("mode", ctypes.c_uint64), ("resolve", ctypes.c_uint64)]


_openat2_works: bool | None = None


def _openat2(dirfd: int, path: str, flags: int, mode: int, resolve: int) -> int:
    how = _OpenHow(flags | os.O_CLOEXEC, mode if flags & os.O_CREAT else 0, resolve)
    fd = _libc.syscall(_SYS_OPENAT2, ctypes.c_int(dirfd), os.fsencode(path), ctypes.byref(how),
                       ctypes.c_size_t(ctypes.sizeof(how)))
    if fd < 0:
        err = ctypes.get_errno()
        raise OSError(err, os.strerror(err), path)
    return fd


def _walk(root_fd: int, path: str, flags: int, mode: int) -> int:
    """openat2(RESOLVE_IN_ROOT) by hand: one component at a time, never following a link
    with the kernel's help, ``..`` clamped at the root."""
    parts = [p for p in path.split("/") if p and p != "."]
    stack = [os.dup(root_fd)]  # descriptors of the directories walked (O_PATH), root first
    links = 0
    try:
        while parts:
            part = parts.pop(0)
            if part == "..":
                if len(stack) > 1:
                    os.close(stack.pop())
                continue
            last = not parts
            if last:
                try:
                    fd = os.open(part, flags | os.O_NOFOLLOW | os.O_CLOEXEC, mode, dir_fd=stack[-1])
                except OSError as exc:
                    if exc.errno != errno.ELOOP and not (exc.errno == errno.ENOTDIR and flags & os.O_DIRECTORY):
                        raise
                    st = os.stat(part, dir_fd=stack[-1], follow_symlinks=False)
                    if not stat.S_ISLNK(st.st_mode):
                        raise
                    fd = -1
                if fd >= 0:
                    return fd
            else:
                try:
                    fd = os.open(part, os.O_PATH | os.O_DIRECTORY | os.O_NOFOLLOW | os.O_CLOEXEC, dir_fd=stack[-1])
                    stack.append(fd)
                    continue
                except OSError as exc:
                    if exc.errno not in (errno.ENOTDIR, errno.ELOOP):
                        raise
                    st = os.stat(part, dir_fd=stack[-1], follow_symlinks=False)
                    if not stat.S_ISLNK(st.st_mode):
                        raise
            # ``part`` is a symlink: splice its target in front of what is left
            links += 1
            if links > MAX_SYMLINKS:
                raise OSError(errno.ELOOP, os.strerror(errno.ELOOP), path)
            target = os.readlink(part, dir_fd=stack[-1])
            if target.startswith("/"):
                while len(stack) > 1:
                    os.close(stack.pop())
            parts = [p for p in target.split("/") if p and p != "."] + parts
        # the path was the root itself (or walked back to it)
        return os.open(".", flags & ~(os.O_CREAT | os.O_EXCL) | os.O_CLOEXEC, dir_fd=stack[-1])
    finally:
        for fd in stack:
            os.close(fd)


def open_in_root(root_fd: int, path: str, flags: int = os.O_RDONLY, mode: int = 0o644) -> int:
    """Open ``path`` as the container sees it, with ``root_fd`` as its ``/``.

    Symlinks anywhere in ``path`` (the last component too) are followed, inside the root;
    ``..`` never climbs above it; magic links (``/proc/self/fd/...``) are refused.  Raises
    ``OSError`` as ``open(2)`` does (``ENOENT``, ``ENOTDIR``, ``ELOOP``...).
    """
    global _openat2_works
    if _openat2_works is not False:
        try:
            fd = _openat2(root_fd, path.lstrip("/") or ".", flags, mode, RESOLVE_IN_ROOT | RESOLVE_NO_MAGICLINKS)
            _openat2_works = True
            return fd
        except OSError as exc:
            if exc.errno not in (errno.ENOSYS, errno.EPERM) or _openat2_works:
                if exc.errno == errno.EAGAIN:  # a concurrent rename raced the kernel's walk: retry by hand
                    return _walk(root_fd, path, flags, mode)
                raise
            _openat2_works = False  # no openat2 here (old kernel, or a seccomp filter denies it)
    return _walk(root_fd, path, flags, mode)


def split_path(path: str) -> tuple[str, str]:
    """``/a/b/c`` -> (``/a/b``, ``c``), as Go's filepath.Split after docker's cleaning: a
    trailing ``/`` gives an empty last part and ``/.`` a ``.``, which both mean "the directory
    itself, followed"."""
    absolute = "/" + path.lstrip("/")
    parent, _, base = absolute.rpartition("/")
    return parent or "/", base


def resolve_parent(root_fd: int, path: str) -> tuple[int, str]:
    """The directory holding ``path``'s last component (resolved in the root, as a descriptor
    opened ``O_RDONLY|O_DIRECTORY``) and that component, *not* followed: ``docker cp`` copies a
    symlink itself unless the path ends in ``/`` or ``/.``.  For those the component is ``""``
    or ``"."`` and the descriptor is the directory itself."""
    parent, base = split_path(path)
    fd = open_in_root(root_fd, parent, os.O_RDONLY | os.O_DIRECTORY)
    if base in ("", "."):
        try:
            inner = open_in_root(fd, ".", os.O_RDONLY | os.O_DIRECTORY)
        finally:
            os.close(fd)
        return inner, base
    return fd, base


def read_file_in_root(root_fd: int, path: str, limit: int = 4 << 20) -> bytes | None:
    """The content of the regular file ``path`` in the root, or ``None`` if there is none.

    Anything else at that path (a directory, a FIFO, a device) counts as absent; a file larger
    than ``limit`` raises ``InvalidArgument``.
    """
    try:
        fd = open_in_root(root_fd, path, os.O_RDONLY | os.O_NONBLOCK | os.O_NOCTTY)
    except OSError as exc:
        if exc.errno in (errno.ENOENT, errno.ENOTDIR, errno.ELOOP, errno.EACCES, errno.ENXIO, errno.EISDIR):
            return None
        raise
    try:
        st = os.fstat(fd)
        if not stat.S_ISREG(st.st_mode):
            return None
        if st.st_size > limit:
            raise InvalidArgument(f"{path} in the container is larger than {limit} bytes")
        chunks, total = [], 0
        while True:
            data = os.read(fd, 65536)
            if not data:
                break
            total += len(data)
            if total > limit:
                raise InvalidArgument(f"{path} in the container is larger than {limit} bytes")
            chunks.append(data)
        return b"".join(chunks)
    finally:
        os.close(fd)


def mkdir_in_root(root_fd: int, path: str, mode: int = 0o755) -> int:
    """``mkdir -p path`` inside the root; returns a descriptor of the directory.

    Existing components are followed inside the root; new ones are created with ``mkdirat``
    relative to their parent's descriptor.  A component that exists and is not a directory
    raises ``NotADirectoryError``.
    """
    parts = [p for p in path.split("/") if p and p != "."]
    fd = os.dup(root_fd)
    try:
        for i, part in enumerate(parts):
            if part == "..":
                raise InvalidArgument(f"invalid path {path!r}: '..' is not allowed")
            try:
                nfd = open_in_root(root_fd, "/".join(parts[: i + 1]), os.O_RDONLY | os.O_DIRECTORY)
            except FileNotFoundError:
                try:
                    os.mkdir(part, mode, dir_fd=fd)
                except FileExistsError:
                    pass
                nfd = os.open(part, _OPEN_DIR, dir_fd=fd)
            os.close(fd)
            fd = nfd
        return fd
    except BaseException:
        os.close(fd)
        raise


# --------------------------------------------------------------------------- stat
_GO_MODE_DIR = 1 << 31
_GO_MODE_SYMLINK = 1 << 27
_GO_MODE_DEVICE = 1 << 26
_GO_MODE_NAMED_PIPE = 1 << 25
_GO_MODE_SOCKET = 1 << 24
_GO_MODE_SETUID = 1 << 23
_GO_MODE_SETGID = 1 << 22
_GO_MODE_CHAR_DEVICE = 1 << 21
_GO_MODE_STICKY = 1 << 20


def go_file_mode(st_mode: int) -> int:
    """A ``stat`` mode as Go's ``os.FileMode`` bits (what docker puts in its path-stat JSON)."""
    mode = st_mode & 0o777
    fmt = stat.S_IFMT(st_mode)
    if fmt == stat.S_IFDIR:
        mode |= _GO_MODE_DIR
    elif fmt == stat.S_IFLNK:
        mode |= _GO_MODE_SYMLINK
    elif fmt == stat.S_IFBLK:
        mode |= _GO_MODE_DEVICE
    elif fmt == stat.S_IFCHR:
        mode |= _GO_MODE_DEVICE | _GO_MODE_CHAR_DEVICE
    elif fmt == stat.S_IFIFO:
        mode |= _GO_MODE_NAMED_PIPE
    elif fmt == stat.S_IFSOCK:
        mode |= _GO_MODE_SOCKET
    if st_mode & stat.S_ISUID:
        mode |= _GO_MODE_SETUID
    if st_mode & stat.S_ISGID:
        mode |= _GO_MODE_SETGID
    if st_mode & stat.S_ISVTX:
        mode |= _GO_MODE_STICKY
    return mode


def rfc3339(ns: int, zero: str = "0001-01-01T00:00:00Z") -> str:
    """Go's ``time.RFC3339Nano`` in UTC (trailing zeros of the fraction dropped)."""
    if ns <= 0:
        return zero
    seconds, frac = divmod(int(ns), 1_000_000_000)
    text = time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(seconds))
    if frac:
        text += "." + f"{frac:09d}".rstrip("0")
    return text + "Z"


def _not_found(path: str, container: str) -> NotFound:
    return NotFound(f"Could not find the file {path} in container {container}")


def path_stat(root_fd: int, path: str, container: str) -> dict[str, Any]:
    """docker's ``ContainerPathStat`` of ``path``: ``name``, ``size``, ``mode`` (Go bits),
    ``mtime``, and for a symlink ``linkTarget``, its full resolution inside the root."""
    try:
        dfd, base = resolve_parent(root_fd, path)
    except (FileNotFoundError, NotADirectoryError):
        raise _not_found(path, container) from None
    except OSError as exc:
        raise _os_error(exc, path, container) from exc
    try:
        st = os.fstat(dfd) if base in ("", ".") else os.stat(base, dir_fd=dfd, follow_symlinks=False)
    except (FileNotFoundError, NotADirectoryError):
        raise _not_found(path, container) from None
    finally:
        os.close(dfd)
    link_target = ""
    if stat.S_ISLNK(st.st_mode):
        link_target = _resolve_name(root_fd, path)
    name = "/" + path.strip("/")
    name = name.rsplit("/", 1)[1] if name != "/" else "/"
    if path.endswith("/."):
        name = "."
    return {"name": name, "size": st.st_size, "mode": go_file_mode(st.st_mode),
            "mtime": rfc3339(st.st_mtime_ns), "linkTarget": link_target}


def _resolve_name(root_fd: int, path: str) -> str:
    """The absolute in-container path ``path`` resolves to (symlinks followed in the root)."""
    parts: list[str] = []
    todo = [p for p in path.split("/") if p and p != "."]
    links = 0
    while todo:
        part = todo.pop(0)
        if part == "..":
            if parts:
                parts.pop()
            continue
        current = "/".join(parts)
        try:
            dfd = open_in_root(root_fd, current or ".", os.O_RDONLY | os.O_DIRECTORY)
        except OSError:
            parts.append(part)
            parts.extend(todo)
            break
        try:
            st = os.stat(part, dir_fd=dfd, follow_symlinks=False)
            target = os.readlink(part, dir_fd=dfd) if stat.S_ISLNK(st.st_mode) else None
        except OSError:
            st, target = None, None
        finally:
            os.close(dfd)
        if target is None:
            parts.append(part)
            continue
        links += 1
        if links > MAX_SYMLINKS:
            break
        if target.startswith("/"):
            parts = []
        todo = [p for p in target.split("/") if p and p != "."] + todo
    return "/" + "/".join(parts)


def stat_header(info: dict[str, Any]) -> str:
    """The ``X-Docker-Container-Path-Stat`` header value: base64 of the stat JSON."""
    return base64.b64encode(json.dumps(info).encode()).decode()


def _os_error(exc: OSError, path: str, container: str) -> CoreError:
    if exc.errno in (errno.ENOENT, errno.ENOTDIR):
        return _not_found(path, container)
    if exc.errno in (errno.EACCES, errno.EPERM, errno.EROFS):
        return Forbidden(f"{path}: {exc.strerror}")
    if exc.errno == errno.ELOOP:
        return InvalidArgument(f"{path}: too many levels of symbolic links")
    return CoreError(f"{path}: {exc.strerror or exc}")


# --------------------------------------------------------------------------- tar out
class _FileReader(io.RawIOBase):
    """A file's bytes, exactly ``size`` of them: padded with zeros if it shrank while being
    read, cut if it grew (a running container may be writing it)."""

    def __init__(self, fd: int, size: int) -> None:
        self.fd, self.left, self.eof = fd, size, False

    def readable(self) -> bool:
        return True

    def readinto(self, buf: Any) -> int:
        if self.left <= 0:
            return 0
        n = min(len(buf), self.left)
        data = b"" if self.eof else os.read(self.fd, n)
        if not data:
            self.eof = True
            data = b"\0" * n
        buf[: len(data)] = data
        self.left -= len(data)
        return len(data)


def _tarinfo(name: str, st: os.stat_result, link: str = "") -> tarfile.TarInfo:
    ti = tarfile.TarInfo(name)
    ti.mode = stat.S_IMODE(st.st_mode)
    ti.uid, ti.gid = st.st_uid, st.st_gid
    ti.uname = ti.gname = ""
    ti.mtime = st.st_mtime
    fmt = stat.S_IFMT(st.st_mode)
    if fmt == stat.S_IFDIR:
        ti.type = tarfile.DIRTYPE
        if not ti.name.endswith("/"):
            ti.name += "/"
    elif fmt == stat.S_IFREG:
        ti.type, ti.size = tarfile.REGTYPE, st.st_size
    elif fmt == stat.S_IFLNK:
        ti.type, ti.linkname = tarfile.SYMTYPE, link
    elif fmt in (stat.S_IFCHR, stat.S_IFBLK):
        ti.type = tarfile.CHRTYPE if fmt == stat.S_IFCHR else tarfile.BLKTYPE
        ti.devmajor, ti.devminor = os.major(st.st_rdev), os.minor(st.st_rdev)
    elif fmt == stat.S_IFIFO:
        ti.type = tarfile.FIFOTYPE
    return ti


class _Sink(io.RawIOBase):
    def __init__(self, write: Callable[[bytes], None]) -> None:
        self._write = write

    def writable(self) -> bool:
        return True

    def write(self, data: Any) -> int:
        self._write(bytes(data))
        return len(data)


def write_tar(root_fd: int, path: str, container: str, write: Callable[[bytes], None],
              rebase: str | None = None) -> None:
    """Write a tar of ``path`` (resolved as :func:`resolve_parent` does) to ``write``.

    Entries are named as docker names them: the resource's own name first (``hostname``,
    ``etc/``, ``./`` for ``dir/.``), then what is below it.  Sockets are skipped; hardlinks
    within the archive stay hardlinks; file sizes are those seen when each file was opened.
    """
    try:
        dfd, base = resolve_parent(root_fd, path)
    except OSError as exc:
        raise _os_error(exc, path, container) from exc
    try:
        if base in ("", "."):
            top_st = os.fstat(dfd)
            top_name = rebase if rebase is not None else ("." if base == "." else
                                                          (("/" + path.strip("/")).rsplit("/", 1)[1] or "."))
            _write_tree(dfd, None, top_st, top_name, write)
            return
        try:
            st = os.stat(base, dir_fd=dfd, follow_symlinks=False)
        except (FileNotFoundError, NotADirectoryError):
            raise _not_found(path, container) from None
        _write_tree(dfd, base, st, rebase if rebase is not None else base, write)
    finally:
        os.close(dfd)


def _write_tree(dfd: int, base: str | None, st: os.stat_result, name: str, write: Callable[[bytes], None]) -> None:
    sink = io.BufferedWriter(_Sink(write), buffer_size=256 * 1024)
    with tarfile.open(fileobj=sink, mode="w|", format=tarfile.PAX_FORMAT) as tar:
        links: dict[tuple[int, int], str] = {}

        def add(parent_fd: int, entry: str | None, est: os.stat_result, arcname: str) -> None:
            fmt = stat.S_IFMT(est.st_mode)
            if fmt == stat.S_IFSOCK:
                return
            if fmt != stat.S_IFDIR and est.st_nlink > 1:
                first = links.setdefault((est.st_dev, est.st_ino), arcname)
                if first != arcname:
                    ti = _tarinfo(arcname, est)
                    ti.type, ti.linkname, ti.size = tarfile.LNKTYPE, first, 0
                    tar.addfile(ti)
                    return
            if fmt == stat.S_IFLNK:
                tar.addfile(_tarinfo(arcname, est, os.readlink(entry, dir_fd=parent_fd)))  # type: ignore[arg-type]
            elif fmt == stat.S_IFREG:
                fd = os.open(entry, os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK | os.O_CLOEXEC | os.O_NOCTTY,
                             dir_fd=parent_fd)  # type: ignore[arg-type]
                try:
                    now = os.fstat(fd)
                    if not stat.S_ISREG(now.st_mode):
                        return  # swapped for something else while we looked
                    ti = _tarinfo(arcname, now)
                    tar.addfile(ti, io.BufferedReader(_FileReader(fd, ti.size)))
                finally:
                    os.close(fd)
            else:
                tar.addfile(_tarinfo(arcname, est))

        if not stat.S_ISDIR(st.st_mode):
            add(dfd, base, st, name)
        else:
            top = os.open(base, _OPEN_DIR, dir_fd=dfd) if base is not None else os.dup(dfd)
            try:
                if name:  # "" (an export): the entries below the top, without the top itself
                    tar.addfile(_tarinfo(name, os.fstat(top)))
                prefix = name.rstrip("/")
                for dirpath, dirnames, filenames, dirfd in os.fwalk(".", dir_fd=top, follow_symlinks=False):
                    rel = dirpath[2:] if dirpath.startswith("./") else ("" if dirpath == "." else dirpath)
                    for entry in sorted(dirnames + filenames):
                        try:
                            est = os.stat(entry, dir_fd=dirfd, follow_symlinks=False)
                        except FileNotFoundError:
                            continue  # gone while we walked
                        arc = "/".join(p for p in (prefix, rel, entry) if p)
                        if stat.S_ISDIR(est.st_mode):
                            tar.addfile(_tarinfo(arc, est))
                        else:
                            try:
                                add(dirfd, entry, est, arc)
                            except (FileNotFoundError, OSError) as exc:
                                if exc.errno not in (errno.ENOENT, errno.ELOOP):
                                    raise
            finally:
                os.close(top)
    sink.flush()


# --------------------------------------------------------------------------- tar in
def _applier_class() -> Any:
    from core.storage import layer

    class CopyApplier(layer._Applier):  # noqa: SLF001 - the project's own safe extractor
        """The layer applier, on a directory descriptor, with ``docker cp``'s rules: names
        that look like whiteouts are plain files, optional owner override, and optional
        refusal to replace a directory by a non-directory (or the reverse)."""

        def __init__(self, dir_fd: int, owner: tuple[int, int] | None, no_overwrite_dir_nondir: bool) -> None:
            super().__init__("/", layer.WhiteoutMode.DELETE, [])
            os.close(self.root_fd)
            self.root_fd = os.dup(dir_fd)
            self.owner = owner
            self.strict = no_overwrite_dir_nondir

        def _entry(self, path: str, m: Any, source: Any) -> None:   # a TarEntry, its TarReader
            if self.owner is not None:
                m.uid, m.gid = self.owner
            parent, name = layer._split(path)
            if not path:
                if not m.isdir():
                    raise InvalidArgument(f"archive entry {m.name!r} would replace the extraction directory")
                return  # the extraction point keeps its own attributes
            if self.strict:
                pfd = self._dir(parent, layer._NEVER)
                if pfd is not None:
                    try:
                        st = os.stat(name, dir_fd=pfd, follow_symlinks=False)
                    except FileNotFoundError:
                        st = None
                    if st is not None and stat.S_ISDIR(st.st_mode) and not m.isdir():
                        raise InvalidArgument(f'cannot overwrite directory "/{path}" with non-directory "{m.name}"')
                    if st is not None and not stat.S_ISDIR(st.st_mode) and m.isdir():
                        raise InvalidArgument(f'cannot overwrite non-directory "/{path}" with directory "{m.name}"')
            self._make(parent, name, path, m, source)

    return CopyApplier


def extract_tar(root_fd: int, path: str, container: str, data: BinaryIO, *,
                owner: tuple[int, int] | None = None, no_overwrite_dir_nondir: bool = False) -> None:
    """Extract the tar (plain, gzip, bzip2 or xz) read from ``data`` into the directory
    ``path`` of the root (``PUT /containers/{id}/archive``).

    ``path`` must exist and be a directory (``NotFound`` / ``InvalidArgument("extraction point
    is not a directory")``); a read-only one raises ``Forbidden``.  Hostile entries raise
    ``InvalidArgument`` (what came before them stays, as with docker).
    Read with core's own tar reader (:mod:`core.storage.tarstream`), as layers are.
    """
    from core.storage.tarstream import TarReader

    try:
        dfd = open_in_root(root_fd, path, os.O_RDONLY | os.O_DIRECTORY)
    except NotADirectoryError:
        raise InvalidArgument("extraction point is not a directory") from None
    except OSError as exc:
        raise _os_error(exc, path, container) from exc
    try:
        if os.fstatvfs(dfd).f_flag & os.ST_RDONLY:
            raise Forbidden("container rootfs is marked read-only")
        applier = _applier_class()(dfd, owner, no_overwrite_dir_nondir)
        try:
            stream = _uncompressed(data)

            def fill() -> bytes:
                try:
                    return stream.read(1 << 20)
                except CoreError:
                    raise   # the request's body itself (cut short)
                except Exception as exc:   # a corrupt gzip, bzip2, xz stream (OSError, LZMAError...)
                    raise InvalidArgument(f"invalid archive: {exc}") from None

            reader = TarReader(fill)
            while (member := reader.next()) is not None:
                try:
                    applier.entry(member, reader)
                except CoreError as exc:
                    if "Read-only file system" in exc.message:
                        raise Forbidden("container rootfs is marked read-only") from None
                    raise
            applier.finish()
        finally:
            applier.close()
    finally:
        os.close(dfd)


def _uncompressed(data: BinaryIO) -> BinaryIO:
    """``data``, decompressed when it starts like gzip, bzip2 or xz (docker cp accepts them);
    every read returns a bounded piece, whatever the ratio."""
    head = data.read(6)
    whole = io.BufferedReader(_Prefixed(head, data))  # type: ignore[arg-type]
    if head.startswith(b"\x1f\x8b"):
        import gzip

        return gzip.GzipFile(fileobj=whole)  # type: ignore[return-value]
    if head.startswith(b"BZh"):
        import bz2

        return bz2.BZ2File(whole)  # type: ignore[return-value]
    if head.startswith(b"\xfd7zXZ\x00"):
        import lzma

        return lzma.LZMAFile(whole)  # type: ignore[return-value]
    return whole  # type: ignore[return-value]


class _Prefixed(io.RawIOBase):
    """``head`` (bytes already read), then the rest of ``data``."""

    def __init__(self, head: bytes, data: BinaryIO) -> None:
        self._head, self._data = head, data

    def readable(self) -> bool:
        return True

    def readinto(self, b: Any) -> int:
        if self._head:
            n = min(len(b), len(self._head))
            b[:n], self._head = self._head[:n], self._head[n:]
            return n
        chunk = self._data.read(len(b))
        b[:len(chunk)] = chunk
        return len(chunk)


# --------------------------------------------------------------------------- copy-up
def copy_dir_contents(src_fd: int, dst_fd: int) -> None:
    """Copy what is in the directory ``src_fd`` into the directory ``dst_fd`` (a new volume
    from the image's content at its mount point), faithfully, never following symlinks; the
    destination takes the source's owner and mode, as docker's volume copy-up does."""
    from core.storage import fs

    def copy(sfd: int, dfd: int) -> None:
        for name in sorted(os.listdir(sfd)):
            st = os.stat(name, dir_fd=sfd, follow_symlinks=False)
            if stat.S_ISDIR(st.st_mode):
                os.mkdir(name, 0o700, dir_fd=dfd)
                child_s = os.open(name, _OPEN_DIR, dir_fd=sfd)
                try:
                    child_d = os.open(name, _OPEN_DIR, dir_fd=dfd)
                    try:
                        copy(child_s, child_d)
                        fs.copy_attributes(child_s, st, child_d)
                    finally:
                        os.close(child_d)
                finally:
                    os.close(child_s)
            else:
                fs.copy_node(f"/proc/self/fd/{sfd}/{name}", st, dfd, name)

    copy(src_fd, dst_fd)
    st = os.fstat(src_fd)
    os.fchown(dst_fd, st.st_uid, st.st_gid)
    os.fchmod(dst_fd, stat.S_IMODE(st.st_mode))


# --------------------------------------------------------------------------- roots
CLONE_NEWNS = 0x00020000
_MS_REC = 0x4000
_MS_PRIVATE = 1 << 18
_MS_BIND = 0x1000
_MS_RDONLY = 0x1
_MS_REMOUNT = 0x20


class Root:
    """Where a container's ``/`` is, for one archive operation.

    ``path``    the directory to open as the root (``/proc/<pid>/root`` of a running
                container: its own view, volumes included; or the host-side rootfs mount point).
    ``mounts``  when not empty, the operation runs in a private mount namespace of its own
                thread, where these storage mounts are performed on ``path`` first (a stopped
                container's snapshot), and ``binds`` — ``(source, destination, read_only)`` of
                its volumes — on top (a mount point the image lacks is made in the
                container's layer, as a start makes it); the namespace, and every mount in it,
                goes when the thread ends.  Nothing of it is seen on the host.
    """

    def __init__(self, path: str, mounts: list[Any] | None = None,
                 binds: list[tuple[str, str, bool]] | None = None, expect: str | None = None) -> None:
        self.path = path
        self.mounts = list(mounts or [])
        self.binds = list(binds or [])
        self.expect = expect  # a directory the opened root must be (a pid reused by another process is not)


def _mount_point(root_fd: int, dest: str, source: str) -> int:
    """An ``O_PATH`` descriptor of a volume's or bind's mount point in the root, made first
    when the image has none (docker too makes it in the container's layer, as a start would:
    ``docker cp`` into a volume of a never-started container reaches the volume)."""
    is_dir = not os.path.exists(source) or os.path.isdir(source)
    try:
        return open_in_root(root_fd, dest, os.O_PATH | (os.O_DIRECTORY if is_dir else 0))
    except FileNotFoundError:
        pass
    if is_dir:
        fd = mkdir_in_root(root_fd, dest)
    else:
        parent, name = split_path(dest)
        pfd = mkdir_in_root(root_fd, parent)
        try:
            os.close(os.open(name, os.O_WRONLY | os.O_CREAT | os.O_NOFOLLOW | os.O_CLOEXEC, 0o644, dir_fd=pfd))
            fd = os.open(name, os.O_PATH | os.O_NOFOLLOW | os.O_CLOEXEC, dir_fd=pfd)
        finally:
            os.close(pfd)
    return fd


def _setup_private(roots: list[Root]) -> None:
    from core.storage.mount import _sys_mount, mount_all  # noqa: SLF001

    if _libc.unshare(CLONE_NEWNS) != 0:
        err = ctypes.get_errno()
        raise CoreError(f"unshare(CLONE_NEWNS): {os.strerror(err)}")
    _sys_mount("", "/", "", _MS_REC | _MS_PRIVATE, None)
    for root in roots:
        if not root.mounts:
            continue
        mount_all(root.mounts, root.path)
        rfd = os.open(root.path, _OPEN_DIR)
        try:
            for source, dest, read_only in root.binds:
                try:
                    tfd = _mount_point(rfd, dest, source)
                except OSError:
                    continue  # no mount point can be made there (a file in the way): not reachable
                try:
                    target = f"/proc/self/fd/{tfd}"
                    _sys_mount(source, target, "", _MS_BIND | _MS_REC, None)
                    if read_only:
                        _sys_mount("", target, "", _MS_REMOUNT | _MS_BIND | _MS_RDONLY, None)
                except OSError:
                    pass
                finally:
                    os.close(tfd)
        finally:
            os.close(rfd)


def run_in_roots(roots: list[Root], fn: Callable[[list[int]], Any]) -> Any:
    """Run ``fn([root_fd, ...])`` in a dedicated thread (see :class:`Root`) and return its
    result.  Blocks: call it through ``trio.to_thread.run_sync``.  The thread is never reused,
    so a private mount namespace cannot leak into other work."""
    result: list[Any] = []
    failure: list[BaseException] = []

    def body() -> None:
        fds: list[int] = []
        try:
            if any(r.mounts for r in roots):
                _setup_private(roots)
            for r in roots:  # /proc/<pid>/root is a link: followed here, on purpose
                fds.append(os.open(r.path, os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC))
                if r.expect is not None:
                    got, want = os.fstat(fds[-1]), os.stat(r.expect)
                    if (got.st_dev, got.st_ino) != (want.st_dev, want.st_ino):
                        raise Conflict("the container is not running any more")
            result.append(fn(fds))
        except BaseException as exc:  # handed to the caller's thread
            failure.append(exc)
        finally:
            for fd in fds:
                os.close(fd)

    thread = threading.Thread(target=body, name="core-container-root", daemon=True)
    thread.start()
    thread.join()
    if failure:
        exc = failure[0]
        if isinstance(exc, OSError) and not isinstance(exc, CoreError):
            raise _os_error(exc, roots[0].path if roots else "", "") from exc
        raise exc
    return result[0]


def run_in_root(root: Root, fn: Callable[[int], Any]) -> Any:
    """:func:`run_in_roots` with one root."""
    return run_in_roots([root], lambda fds: fn(fds[0]))


# --------------------------------------------------------------------------- docker diff
def changes(base_fd: int, top_fd: int, ignore: set[str] | frozenset[str] = frozenset(),
            ignore_below: tuple[str, ...] = ()) -> list[dict[str, Any]]:
    """docker's naive diff of a container's root (``top_fd``) against its image's
    (``base_fd``): ``{"Path", "Kind"}`` with Kind 0 changed, 1 added, 2 deleted.

    A file changed when its type, mode, owner, device, size or mtime differ (for a directory:
    its mode or owner); an added directory lists what is in it, a deleted one does not; the
    directories above a change are listed as changed.  ``ignore``/``ignore_below`` leave out
    what the engine itself puts in a container (mount points such as ``/etc/hosts``).
    """
    found: dict[str, int] = {}

    def skip(path: str) -> bool:
        return path in ignore or any(path == p or path.startswith(p + "/") for p in ignore_below)

    def lst(fd: int | None, name: str) -> os.stat_result | None:
        if fd is None:
            return None
        try:
            return os.stat(name, dir_fd=fd, follow_symlinks=False)
        except FileNotFoundError:
            return None

    def sub(fd: int | None, name: str) -> int | None:
        if fd is None:
            return None
        try:
            return os.open(name, _OPEN_DIR, dir_fd=fd)
        except OSError:
            return None

    def added_tree(path: str, parent_fd: int, dir_name: str) -> None:
        """Everything below the directory ``dir_name`` of ``parent_fd`` (at ``path``) is added."""
        fd = sub(parent_fd, dir_name)
        if fd is None:
            return
        try:
            for name in sorted(os.listdir(fd)):
                child = f"{path}/{name}"
                if skip(child):
                    continue
                found[child] = 1
                st = os.stat(name, dir_fd=fd, follow_symlinks=False)
                if stat.S_ISDIR(st.st_mode):
                    added_tree(child, fd, name)
        finally:
            os.close(fd)

    def walk(path: str, bfd: int | None, tfd: int) -> None:
        tnames = set(os.listdir(tfd))
        bnames = set(os.listdir(bfd)) if bfd is not None else set()
        for name in sorted(tnames | bnames):
            child = f"{path}/{name}"
            if skip(child):
                continue
            tst = lst(tfd, name) if name in tnames else None
            bst = lst(bfd, name) if name in bnames else None
            if tst is None:
                if bst is not None:
                    found[child] = 2
                continue
            is_dir = stat.S_ISDIR(tst.st_mode)
            if bst is None or stat.S_IFMT(bst.st_mode) != stat.S_IFMT(tst.st_mode):
                found[child] = 1 if bst is None else 0
                if is_dir:
                    added_tree(child, tfd, name)
                continue
            if (tst.st_mode, tst.st_uid, tst.st_gid, tst.st_rdev) != (bst.st_mode, bst.st_uid, bst.st_gid, bst.st_rdev) \
                    or (not is_dir and (tst.st_size != bst.st_size or tst.st_mtime_ns != bst.st_mtime_ns)):
                found[child] = 0
            if is_dir:
                cfd, bcfd = sub(tfd, name), sub(bfd, name)
                try:
                    if cfd is not None:
                        walk(child, bcfd, cfd)
                finally:
                    for fd in (cfd, bcfd):
                        if fd is not None:
                            os.close(fd)

    walk("", base_fd, top_fd)
    for path in list(found):
        parent = path.rsplit("/", 1)[0]
        while parent:
            found.setdefault(parent, 0)
            parent = parent.rsplit("/", 1)[0]
    return [{"Path": p, "Kind": k} for p, k in sorted(found.items())]


__all__ += ["Root", "run_in_root", "run_in_roots", "changes"]
