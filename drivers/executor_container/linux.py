"""The Linux system calls the runtime needs and Python 3.11's ``os`` lacks, through ctypes.

unshare(2), setns(2), mount(2), mount_setattr(2), umount2(2), pivot_root(2), sethostname(2), setdomainname(2),
prctl(2) (bounding set, keep-caps, no-new-privs, ambient set, child subreaper), capset(2) and
seccomp(2) — plus the tables that go with them: namespace types, mount flags and options (split
as mount(8) and :mod:`core.storage.mount` split them), capability names, rlimit names.

Stdlib only, no ``core`` import: this module is loaded by the runtime helper (``runtime.py``,
run as ``python -I -S``) and must be imported *before* ``pivot_root`` — after it, the host's
Python library is out of reach.  Every call raises ``OSError`` with the errno and a message
naming the call.
"""
from __future__ import annotations

import ctypes
import os

# --------------------------------------------------------------------------- namespaces
CLONE_NEWNS = 0x00020000
CLONE_NEWCGROUP = 0x02000000
CLONE_NEWUTS = 0x04000000
CLONE_NEWIPC = 0x08000000
CLONE_NEWUSER = 0x10000000
CLONE_NEWPID = 0x20000000
CLONE_NEWNET = 0x40000000
CLONE_NEWTIME = 0x00000080
CLONE_FS = 0x200

# OCI namespace type -> (clone flag, name under /proc/<pid>/ns)
NAMESPACES: dict[str, tuple[int, str]] = {
    "pid": (CLONE_NEWPID, "pid"),
    "network": (CLONE_NEWNET, "net"),
    "mount": (CLONE_NEWNS, "mnt"),
    "ipc": (CLONE_NEWIPC, "ipc"),
    "uts": (CLONE_NEWUTS, "uts"),
    "cgroup": (CLONE_NEWCGROUP, "cgroup"),
    "user": (CLONE_NEWUSER, "user"),
    "time": (CLONE_NEWTIME, "time"),
}

# --------------------------------------------------------------------------- mounts
from core.mountflags import (  # noqa: E402,F401 - re-exported for the runtime
    MS_RDONLY,
    MS_NOSUID,
    MS_NODEV,
    MS_NOEXEC,
    MS_SYNCHRONOUS,
    MS_REMOUNT,
    MS_MANDLOCK,
    MS_DIRSYNC,
    MS_NOSYMFOLLOW,
    MS_NOATIME,
    MS_NODIRATIME,
    MS_BIND,
    MS_MOVE,
    MS_REC,
    MS_SILENT,
    MS_UNBINDABLE,
    MS_PRIVATE,
    MS_SLAVE,
    MS_SHARED,
    MS_RELATIME,
    MS_STRICTATIME,
    MNT_DETACH,
    MOUNT_FLAGS,
    PROPAGATION,
    parse_options as parse_mount_options,
)
# statvfs f_flag bits -> mount flags (what a bind remount must keep)
ST_TO_MS = ((os.ST_RDONLY, MS_RDONLY), (os.ST_NOSUID, MS_NOSUID), (os.ST_NODEV, MS_NODEV),
            (os.ST_NOEXEC, MS_NOEXEC), (os.ST_NOATIME, MS_NOATIME),
            (os.ST_NODIRATIME, MS_NODIRATIME), (os.ST_RELATIME, MS_RELATIME))


# --------------------------------------------------------------------------- prctl
PR_SET_PDEATHSIG = 1
PR_SET_KEEPCAPS = 8
PR_SET_NAME = 15
PR_SET_SECCOMP = 22
PR_CAPBSET_READ = 23
PR_CAPBSET_DROP = 24
PR_SET_NO_NEW_PRIVS = 38
PR_GET_NO_NEW_PRIVS = 39
PR_CAP_AMBIENT = 47
PR_CAP_AMBIENT_RAISE = 2
PR_CAP_AMBIENT_CLEAR_ALL = 4

SECCOMP_MODE_FILTER = 2
SECCOMP_SET_MODE_FILTER = 1
SECCOMP_FILTER_FLAGS = {
    "SECCOMP_FILTER_FLAG_TSYNC": 1,
    "SECCOMP_FILTER_FLAG_LOG": 2,
    "SECCOMP_FILTER_FLAG_SPEC_ALLOW": 4,
}

TIOCSCTTY = 0x540E
TIOCSWINSZ = 0x5414
SIOCGIFFLAGS = 0x8913
SIOCSIFFLAGS = 0x8914
IFF_UP = 0x1

# --------------------------------------------------------------------------- capabilities
CAPABILITIES: dict[str, int] = {name: number for number, name in enumerate((
    "CAP_CHOWN", "CAP_DAC_OVERRIDE", "CAP_DAC_READ_SEARCH", "CAP_FOWNER", "CAP_FSETID",
    "CAP_KILL", "CAP_SETGID", "CAP_SETUID", "CAP_SETPCAP", "CAP_LINUX_IMMUTABLE",
    "CAP_NET_BIND_SERVICE", "CAP_NET_BROADCAST", "CAP_NET_ADMIN", "CAP_NET_RAW",
    "CAP_IPC_LOCK", "CAP_IPC_OWNER", "CAP_SYS_MODULE", "CAP_SYS_RAWIO", "CAP_SYS_CHROOT",
    "CAP_SYS_PTRACE", "CAP_SYS_PACCT", "CAP_SYS_ADMIN", "CAP_SYS_BOOT", "CAP_SYS_NICE",
    "CAP_SYS_RESOURCE", "CAP_SYS_TIME", "CAP_SYS_TTY_CONFIG", "CAP_MKNOD", "CAP_LEASE",
    "CAP_AUDIT_WRITE", "CAP_AUDIT_CONTROL", "CAP_SETFCAP", "CAP_MAC_OVERRIDE", "CAP_MAC_ADMIN",
    "CAP_SYSLOG", "CAP_WAKE_ALARM", "CAP_BLOCK_SUSPEND", "CAP_AUDIT_READ", "CAP_PERFMON",
    "CAP_BPF", "CAP_CHECKPOINT_RESTORE",
))}
_LINUX_CAPABILITY_VERSION_3 = 0x20080522

RLIMITS: dict[str, int] = {
    "RLIMIT_CPU": 0, "RLIMIT_FSIZE": 1, "RLIMIT_DATA": 2, "RLIMIT_STACK": 3, "RLIMIT_CORE": 4,
    "RLIMIT_RSS": 5, "RLIMIT_NPROC": 6, "RLIMIT_NOFILE": 7, "RLIMIT_MEMLOCK": 8, "RLIMIT_AS": 9,
    "RLIMIT_LOCKS": 10, "RLIMIT_SIGPENDING": 11, "RLIMIT_MSGQUEUE": 12, "RLIMIT_NICE": 13,
    "RLIMIT_RTPRIO": 14, "RLIMIT_RTTIME": 15,
}

# --------------------------------------------------------------------------- libc
_libc = ctypes.CDLL(None, use_errno=True)
_libc.unshare.argtypes = (ctypes.c_int,)
_libc.setns.argtypes = (ctypes.c_int, ctypes.c_int)
_libc.mount.argtypes = (ctypes.c_char_p, ctypes.c_char_p, ctypes.c_char_p, ctypes.c_ulong,
                        ctypes.c_char_p)
_libc.umount2.argtypes = (ctypes.c_char_p, ctypes.c_int)
_libc.sethostname.argtypes = (ctypes.c_char_p, ctypes.c_size_t)
_libc.setdomainname.argtypes = (ctypes.c_char_p, ctypes.c_size_t)
_libc.prctl.argtypes = (ctypes.c_int, ctypes.c_ulong, ctypes.c_ulong, ctypes.c_ulong,
                        ctypes.c_ulong)
_libc.syscall.restype = ctypes.c_long


class _CapHeader(ctypes.Structure):
    _fields_ = [("version", ctypes.c_uint32), ("pid", ctypes.c_int)]


class _CapData(ctypes.Structure):
    _fields_ = [("effective", ctypes.c_uint32), ("permitted", ctypes.c_uint32),
                ("inheritable", ctypes.c_uint32)]


class _SockFprog(ctypes.Structure):
    _fields_ = [("len", ctypes.c_ushort), ("filter", ctypes.c_void_p)]


_libc.capset.argtypes = (ctypes.POINTER(_CapHeader), ctypes.POINTER(_CapData))

_MACHINE = os.uname().machine
_SYSCALLS = {  # the few numbers glibc has no wrapper for
    "x86_64": {"pivot_root": 155, "seccomp": 317, "mount_setattr": 442},
    "aarch64": {"pivot_root": 41, "seccomp": 277, "mount_setattr": 442},
}


def _check(result: int, what: str) -> int:
    if result < 0:
        err = ctypes.get_errno()
        raise OSError(err, f"{what}: {os.strerror(err)}")
    return result


def _syscall_number(name: str) -> int:
    try:
        return _SYSCALLS[_MACHINE][name]
    except KeyError:
        raise OSError(38, f"{name}: no system call number known for {_MACHINE}") from None


def unshare(flags: int) -> None:
    _check(_libc.unshare(flags), f"unshare({flags:#x})")


def setns(fd: int, nstype: int = 0) -> None:
    _check(_libc.setns(fd, nstype), f"setns({nstype:#x})")


def mount(source: str | None, target: str, fstype: str | None, flags: int = 0,
          data: str | None = None) -> None:
    enc = (lambda s: None if s is None else os.fsencode(s))
    _check(_libc.mount(enc(source), os.fsencode(target), enc(fstype), flags, enc(data)),
           f"mount {source or 'none'} on {target} (type {fstype or '-'}, flags {flags:#x}"
           f"{', ' + data if data else ''})")


class _MountAttr(ctypes.Structure):
    _fields_ = [("attr_set", ctypes.c_uint64), ("attr_clr", ctypes.c_uint64),
                ("propagation", ctypes.c_uint64), ("userns_fd", ctypes.c_uint64)]


AT_FDCWD = -100
AT_RECURSIVE = 0x8000
MOUNT_ATTR_RDONLY = 0x1


def mount_setattr_recursive(target: str, attr_set: int, attr_clr: int = 0) -> None:
    """mount_setattr(2) with ``AT_RECURSIVE``: set (and clear) ``MOUNT_ATTR_*`` on the mount at
    ``target`` and every mount below it (Linux 5.12; ``ENOSYS`` before)."""
    attr = _MountAttr(attr_set, attr_clr, 0, 0)
    _check(_libc.syscall(ctypes.c_long(_syscall_number("mount_setattr")), ctypes.c_int(AT_FDCWD),
                         ctypes.c_char_p(os.fsencode(target)), ctypes.c_uint(AT_RECURSIVE),
                         ctypes.byref(attr), ctypes.c_size_t(ctypes.sizeof(attr))),
           f"mount_setattr {target} (AT_RECURSIVE, set {attr_set:#x})")


def umount2(target: str, flags: int = 0) -> None:
    _check(_libc.umount2(os.fsencode(target), flags), f"umount {target}")


def pivot_root(new_root: str, put_old: str) -> None:
    _check(_libc.syscall(ctypes.c_long(_syscall_number("pivot_root")),
                         ctypes.c_char_p(os.fsencode(new_root)),
                         ctypes.c_char_p(os.fsencode(put_old))), "pivot_root")


def sethostname(name: str) -> None:
    raw = name.encode()
    _check(_libc.sethostname(raw, len(raw)), f"sethostname {name!r}")


def setdomainname(name: str) -> None:
    raw = name.encode()
    _check(_libc.setdomainname(raw, len(raw)), f"setdomainname {name!r}")


def prctl(option: int, arg2: int = 0, arg3: int = 0, arg4: int = 0, arg5: int = 0) -> int:
    return _check(_libc.prctl(option, arg2, arg3, arg4, arg5), f"prctl({option})")


def set_no_new_privs() -> None:
    prctl(PR_SET_NO_NEW_PRIVS, 1)


def set_keepcaps(on: bool) -> None:
    prctl(PR_SET_KEEPCAPS, 1 if on else 0)


def cap_last_cap() -> int:
    try:
        with open("/proc/sys/kernel/cap_last_cap") as f:
            return int(f.read())
    except OSError:
        return max(CAPABILITIES.values())


def cap_numbers(names: list[str] | None, last: int) -> set[int]:
    """Capability numbers of ``names``; unknown or unavailable ones are skipped (as runc)."""
    return {CAPABILITIES[n] for n in names or () if n in CAPABILITIES and CAPABILITIES[n] <= last}


def drop_bounding(keep: set[int], last: int) -> None:
    for cap in range(last + 1):
        if cap not in keep:
            try:
                prctl(PR_CAPBSET_DROP, cap)
            except OSError as exc:
                if exc.errno != 22:  # EINVAL: not supported by this kernel
                    raise


def capset(effective: set[int], permitted: set[int], inheritable: set[int]) -> None:
    header = _CapHeader(_LINUX_CAPABILITY_VERSION_3, 0)
    data = (_CapData * 2)()
    for i in range(2):
        def word(caps: set[int]) -> int:
            return sum(1 << (c - 32 * i) for c in caps if 32 * i <= c < 32 * (i + 1))
        data[i].effective, data[i].permitted, data[i].inheritable = (
            word(effective), word(permitted), word(inheritable))
    _check(_libc.capset(ctypes.byref(header), data), "capset")


def set_ambient(caps: set[int]) -> None:
    prctl(PR_CAP_AMBIENT, PR_CAP_AMBIENT_CLEAR_ALL)
    for cap in sorted(caps):
        prctl(PR_CAP_AMBIENT, PR_CAP_AMBIENT_RAISE, cap)


def seccomp_install(program: bytes, flags: int = 0) -> None:
    """Install a classic BPF seccomp filter (``program``: packed ``struct sock_filter``s)."""
    buf = ctypes.create_string_buffer(program, len(program))
    prog = _SockFprog(len(program) // 8, ctypes.cast(buf, ctypes.c_void_p))
    if flags:
        _check(_libc.syscall(ctypes.c_long(_syscall_number("seccomp")),
                             ctypes.c_uint(SECCOMP_SET_MODE_FILTER), ctypes.c_uint(flags),
                             ctypes.byref(prog)), "seccomp(SECCOMP_SET_MODE_FILTER)")
    else:
        _check(_libc.prctl(PR_SET_SECCOMP, SECCOMP_MODE_FILTER,
                           ctypes.cast(ctypes.byref(prog), ctypes.c_void_p).value or 0, 0, 0),
               "prctl(PR_SET_SECCOMP)")
