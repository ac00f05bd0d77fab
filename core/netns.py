"""Network namespaces as files: a container's *sandbox*, made before its process exists.

As libnetwork does, a sandbox is a new network namespace bind-mounted on a file, here
``<exec-root>/netns/<name>``.  The executor is given that path (the OCI spec's ``network``
namespace ``path``) and puts the container's process in it; the network driver puts interfaces
in it through the same path; the embedded DNS server opens its sockets in it.  The file keeps the
namespace alive without any process, so endpoints can be made before the container starts and
removed after it died.

- :func:`create` makes the namespace (``unshare(CLONE_NEWNET)`` in a throwaway thread, so no
  thread of the daemon ever changes namespace for good), bind-mounts the thread's
  ``/proc/thread-self/ns/net`` on the file and brings ``lo`` up.  It is idempotent: a file that
  is a namespace already is kept; a plain file left by a run that died half-way is reused.
- :func:`delete` lazily unmounts the file (``umount2(MNT_DETACH)``: processes still in the
  namespace keep it) and removes it.  Idempotent; a missing file is fine.
- :func:`run_in` runs a function in a fresh thread that has entered a namespace (sockets made
  there stay in that namespace for their whole life, wherever they are used from).

All functions block (a few system calls, no subprocess): call them from a worker thread
(``trio.to_thread.run_sync``) in the daemon.
"""
from __future__ import annotations

import ctypes
import errno
import fcntl
import os
import socket
import struct
import threading
from typing import Any, Callable, TypeVar

__all__ = ["create", "delete", "exists", "run_in", "same_namespace", "CLONE_NEWNET"]

CLONE_NEWNET = 0x40000000
MS_BIND = 0x1000
MNT_DETACH = 0x2
SIOCGIFFLAGS = 0x8913
SIOCSIFFLAGS = 0x8914
IFF_UP = 0x1
_IFREQ = "16sH22x"  # struct ifreq: the name, then ifr_flags in a 24-byte union

_libc = ctypes.CDLL(None, use_errno=True)
_libc.mount.argtypes = [ctypes.c_char_p, ctypes.c_char_p, ctypes.c_char_p, ctypes.c_ulong,
                        ctypes.c_void_p]
_libc.umount2.argtypes = [ctypes.c_char_p, ctypes.c_int]
_libc.unshare.argtypes = [ctypes.c_int]
_libc.setns.argtypes = [ctypes.c_int, ctypes.c_int]

T = TypeVar("T")


def _oserror(what: str, path: str | None = None) -> OSError:
    err = ctypes.get_errno()
    return OSError(err, f"{what}: {os.strerror(err)}", path)


def _nsfs_device() -> int:
    return os.stat("/proc/self/ns/net").st_dev


def exists(path: str | os.PathLike[str]) -> bool:
    """Whether ``path`` is a network namespace handle (a bind mount of an ``nsfs`` file)."""
    try:
        st = os.stat(path)
    except OSError:
        return False
    return st.st_dev == _nsfs_device()


def same_namespace(a: str | os.PathLike[str], b: str | os.PathLike[str]) -> bool:
    """Whether two handles (files or ``/proc/<pid>/ns/net``) name the same namespace."""
    try:
        sa, sb = os.stat(a), os.stat(b)
    except OSError:
        return False
    return (sa.st_dev, sa.st_ino) == (sb.st_dev, sb.st_ino)


def _in_thread(fn: Callable[[], T]) -> T:
    """Run ``fn`` in a new thread that ends with it (its namespace changes die with it)."""
    result: list[Any] = []
    error: list[BaseException] = []

    def target() -> None:
        try:
            result.append(fn())
        except BaseException as exc:  # handed to the caller
            error.append(exc)

    thread = threading.Thread(target=target, name="core-netns")
    thread.start()
    thread.join()
    if error:
        raise error[0]
    return result[0]


def _setns(path: str) -> None:
    fd = os.open(path, os.O_RDONLY | os.O_CLOEXEC)
    try:
        if _libc.setns(fd, CLONE_NEWNET) != 0:
            raise _oserror("setns", path)
    finally:
        os.close(fd)


def run_in(path: str | os.PathLike[str], fn: Callable[..., T], *args: Any) -> T:
    """``fn(*args)`` in a fresh thread that entered the network namespace at ``path``.

    ``FileNotFoundError`` if there is no such namespace.  Sockets created by ``fn`` belong to
    that namespace for good and may be used from any thread afterwards.
    """
    target = os.fspath(path)

    def call() -> T:
        _setns(target)
        return fn(*args)

    return _in_thread(call)


def _loopback_up() -> None:
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
        raw = fcntl.ioctl(s.fileno(), SIOCGIFFLAGS, struct.pack(_IFREQ, b"lo", 0))
        flags = struct.unpack(_IFREQ, raw)[1]
        if not flags & IFF_UP:
            fcntl.ioctl(s.fileno(), SIOCSIFFLAGS, struct.pack(_IFREQ, b"lo", flags | IFF_UP))


def create(path: str | os.PathLike[str]) -> str:
    """Make a new network namespace (``lo`` up) bind-mounted on ``path``; return the path.

    The parent directory is created (mode 0711).  If ``path`` is a namespace already it is
    kept as it is.  On failure nothing is left behind.
    """
    target = os.fspath(path)
    if exists(target):
        return target
    os.makedirs(os.path.dirname(target) or ".", mode=0o711, exist_ok=True)
    fd = os.open(target, os.O_RDONLY | os.O_CREAT | os.O_CLOEXEC, 0o444)
    os.close(fd)

    def make() -> None:
        if _libc.unshare(CLONE_NEWNET) != 0:
            raise _oserror("unshare(CLONE_NEWNET)")
        source = f"/proc/self/task/{threading.get_native_id()}/ns/net"
        if _libc.mount(source.encode(), target.encode(), None, MS_BIND, None) != 0:
            raise _oserror(f"bind mount of {source}", target)
        _loopback_up()

    try:
        _in_thread(make)
    except BaseException:
        delete(target)
        raise
    return target


def delete(path: str | os.PathLike[str]) -> None:
    """Unmount (lazily) and remove the namespace file at ``path``.  Missing is fine."""
    target = os.fspath(path)
    for _ in range(64):  # stacked mounts (two racing creates) come off one by one
        if _libc.umount2(target.encode(), MNT_DETACH) == 0:
            continue
        err = ctypes.get_errno()
        if err in (errno.EINVAL, errno.ENOENT):
            break
        raise OSError(err, f"umount2: {os.strerror(err)}", target)
    try:
        os.unlink(target)
    except FileNotFoundError:
        pass
