"""The runtime helper: what runc does, for one container (``init``) or one exec (``exec``).

The built-in executor's :class:`core.shim.client.RuntimeHelper`: core's shim (:mod:`core.shim`,
whose PROTOCOL section is the contract) calls ``main`` with ``init STATE_DIR BUNDLE ID WIDTH
HEIGHT`` (or ``exec STATE_DIR EXEC_ID PID WIDTH HEIGHT``; the size is the pty's) — forked from
the zygote, or in a fresh ``python -I -S`` — with the process's stdio on fds 0-2, the *sync
socket* (a unix stream socket) on fd 3 and, for ``init``, the *start pipe* (read end) on fd 4.
It reports to the shim on the sync socket, one line per message::

    pid <host pid>            the container's init (or the exec'd process) has been forked
    console                   with SCM_RIGHTS: the master of the pty (``process.terminal``)
    created                   init: namespaces, mounts and pivot_root done; waiting to start
    error <Kind> <message>    a failure (Kind: NotFound, Forbidden, InvalidArgument, CoreError)

``init``
    reads ``config.json``, compiles the seccomp filter while a thread creates the cgroup,
    applies ``linux.resources`` and moves the helper in (so the cgroup namespace is rooted
    there; the move waits for an RCU grace period, the slowest step of a start), joins
    the namespaces that have a ``path`` and unshares the others (a user namespace is refused),
    then forks: the child is PID 1 of the new PID namespace.  The helper writes ``pid`` and
    exits at once — the init is re-parented to the shim, a child subreaper.  The init makes
    ``/`` rslave (``linux.rootfsPropagation``), binds the rootfs onto itself, performs
    ``mounts[]`` in order (binds with their flags applied by a remount, runc's ``rro`` by
    ``mount_setattr(AT_RECURSIVE, MOUNT_ATTR_RDONLY)`` over every mount below; cgroup v1 hierarchies
    mounted one by one under a tmpfs, as runc), creates the standard devices (mknod) and the
    ``/dev`` symlinks, creates ``process.cwd``, ``pivot_root(".", ".")`` +
    ``umount2(".", MNT_DETACH)``, writes sysctls, makes ``readonlyPaths`` read-only, masks
    ``maskedPaths``, opens the pty in the container's own devpts (``/dev/ptmx``), binds its
    slave onto ``/dev/console`` and sends the master to the shim (runc's console socket), sets
    the hostname, brings ``lo`` up in a new network namespace, remounts ``/`` read-only
    (``root.readonly``), reports ``created`` and blocks on the start pipe.
``start`` (one byte on the start pipe)
    umask, setsid (+ ``TIOCSCTTY`` with a terminal), rlimits, no_new_privs, seccomp (here when
    no_new_privs is off: installing it needs CAP_SYS_ADMIN), bounding set, keep-caps +
    groups/gid/uid, HOME (from the container's /etc/passwd when the spec has none, as runc),
    cwd, capset + ambient, the ``$PATH`` lookup in the container's root (Go's LookPath, docker's
    messages), seccomp (here with no_new_privs: the last step), signal dispositions reset,
    execve.  Any failure is written as an ``error`` line before the process exits 127 (not
    found) or 126 (cannot run): the sync socket is close-on-exec, so the shim reads end-of-file
    exactly when execve succeeded (runc's exec.fifo).
``exec``
    joins the cgroup and the namespaces of the container's init (``/proc/<pid>/ns/*``, the
    mount namespace last), forks (the child is in the container's PID namespace) and runs the
    OCI ``process`` of ``<state>/exec-<id>.json`` as above, with the container's seccomp filter.

Everything is imported before ``pivot_root``: after it, the host's Python library is gone.
Not done: user namespaces, hooks, AppArmor/SELinux labels, ``linux.intelRdt``, personality.
"""
from __future__ import annotations

import os
import sys

if __name__ == "__main__":   # run as a script with -I -S: make the package importable
    sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__)))))

import _thread  # noqa: E402
import errno  # noqa: E402
import fcntl  # noqa: E402
import gc  # noqa: E402
import json  # noqa: E402
import resource  # noqa: E402
import socket  # noqa: E402
import stat  # noqa: E402
import struct  # noqa: E402
from typing import Any, Callable  # noqa: E402

from core.shim import cgroups  # noqa: E402
from core.shim.lookup import look_path  # noqa: E402
from core.shim.sigreset import reset_signals  # noqa: E402
from drivers.executor_container import linux, seccomp  # noqa: E402

SYNC_FD, START_FD = 3, 4
TIOCGPTN, TIOCSPTLCK = 0x80045430, 0x40045431
# runc's default devices (specconv.AllowedDevices): path, major, minor
DEFAULT_DEVICES = (("/dev/null", 1, 3), ("/dev/zero", 1, 5), ("/dev/full", 1, 7),
                   ("/dev/random", 1, 8), ("/dev/urandom", 1, 9), ("/dev/tty", 5, 0))
DEV_SYMLINKS = (("/proc/self/fd", "/dev/fd"), ("/proc/self/fd/0", "/dev/stdin"),
                ("/proc/self/fd/1", "/dev/stdout"), ("/proc/self/fd/2", "/dev/stderr"))
NS_JOIN_ORDER = ("user", "cgroup", "ipc", "uts", "network", "pid", "time", "mount")


class Fail(Exception):
    """A failure to report to the shim: ``kind`` names a ``core.errors`` class."""

    def __init__(self, kind: str, message: str, code: int = 1) -> None:
        super().__init__(message)
        self.kind, self.message, self.code = kind, message, code


def send(line: str) -> None:
    data = (line.replace("\n", " ") + "\n").encode("utf-8", "replace")
    while data:
        data = data[os.write(SYNC_FD, data):]


def send_console(master: int) -> None:
    sock = socket.socket(fileno=os.dup(SYNC_FD))
    try:
        socket.send_fds(sock, [b"console\n"], [master])
    finally:
        sock.close()


CONSOLE_SIZE = [80, 24]   # width, height: from the shim's command line


def open_console(bind_console: bool = False) -> None:
    """A pty from the container's own devpts (``/dev/ptmx``): the slave becomes our stdio, the
    master goes to the shim (runc's console socket).  ``bind_console``: the slave is also bound
    onto ``/dev/console``, as runc does for the init."""
    try:
        master = os.open("/dev/ptmx", os.O_RDWR | os.O_NOCTTY | os.O_CLOEXEC)
    except OSError as exc:
        raise Fail("InvalidArgument", f"a terminal needs /dev/ptmx in the container: "
                   f"{exc.strerror}") from None
    fcntl.ioctl(master, TIOCSPTLCK, struct.pack("i", 0))
    width, height = CONSOLE_SIZE   # set before the process can ask (stty size)
    fcntl.ioctl(master, linux.TIOCSWINSZ, struct.pack("HHHH", height, width, 0, 0))
    number = struct.unpack("I", fcntl.ioctl(master, TIOCGPTN, b"\0\0\0\0"))[0]
    slave_path = f"/dev/pts/{number}"
    slave = os.open(slave_path, os.O_RDWR | os.O_NOCTTY)
    for fd in (0, 1, 2):
        os.dup2(slave, fd)
    os.close(slave)
    send_console(master)
    os.close(master)
    if bind_console:
        try:
            _touch("/dev/console")
            linux.mount(slave_path, "/dev/console", None, linux.MS_BIND)
        except OSError:
            pass   # a read-only /dev: no console, as with runc's best effort


def report(exc: BaseException) -> int:
    if isinstance(exc, Fail):
        kind, message, code = exc.kind, exc.message, exc.code
    elif isinstance(exc, OSError) and exc.errno == errno.EAGAIN:
        # fork/clone refused: the container's pids limit (or the host's) is reached
        kind, code = "Conflict", 1
        message = ("cannot start another process in the container: its process limit "
                   f"(--pids-limit) is reached ({exc.strerror})")
    elif isinstance(exc, OSError):
        kind = {errno.ENOENT: "NotFound", errno.EACCES: "Forbidden",
                errno.EPERM: "Forbidden", errno.EINVAL: "InvalidArgument"}.get(exc.errno or 0,
                                                                              "CoreError")
        message, code = str(exc), 1
    else:
        kind, message, code = "CoreError", f"{type(exc).__name__}: {exc}", 1
    try:
        send(f"error {kind} {message}")
    except OSError:
        pass
    return code


# =========================================================================== the spec
def load_spec(bundle: str) -> dict[str, Any]:
    try:
        with open(os.path.join(bundle, "config.json"), "rb") as f:
            spec = json.load(f)
    except FileNotFoundError:
        raise Fail("InvalidArgument", f"bundle {bundle}: no config.json") from None
    except (OSError, ValueError) as exc:
        raise Fail("InvalidArgument", f"bundle {bundle}: config.json: {exc}") from None
    if not isinstance(spec, dict) or not isinstance(spec.get("process"), dict):
        raise Fail("InvalidArgument", f"bundle {bundle}: config.json has no process")
    return spec


class Process:
    """An OCI ``process`` object, validated, with everything computed before pivot_root."""

    def __init__(self, p: dict[str, Any], seccomp_spec: dict[str, Any] | None,
                 cache_dir: str | None = None) -> None:
        try:
            self.args = [str(a) for a in p.get("args") or []]
            if not self.args:
                raise Fail("InvalidArgument", "process.args must not be empty")
            self.env = [str(e) for e in p.get("env") or []]
            self.cwd = p.get("cwd") or "/"
            if not self.cwd.startswith("/"):
                raise Fail("InvalidArgument", f"process.cwd {self.cwd!r} is not absolute")
            user = p.get("user") or {}
            self.uid, self.gid = int(user.get("uid", 0)), int(user.get("gid", 0))
            self.groups = [int(g) for g in user.get("additionalGids") or []]
            self.umask = int(user["umask"]) if user.get("umask") is not None else 0o022
            self.terminal = bool(p.get("terminal"))
            self.nnp = bool(p.get("noNewPrivileges"))
            self.oom_score_adj = p.get("oomScoreAdj")
            last = linux.cap_last_cap()
            self.last_cap = last
            caps = p.get("capabilities")
            self.caps_given = caps is not None   # none: leave them as they are, as runc
            self.bounding = self.effective = self.permitted = set()
            self.inheritable, self.ambient = set(), set()
            if caps is not None:
                self.bounding = linux.cap_numbers(caps.get("bounding"), last)
                self.effective = linux.cap_numbers(caps.get("effective"), last)
                self.permitted = linux.cap_numbers(caps.get("permitted"), last)
                self.inheritable = linux.cap_numbers(caps.get("inheritable"), last)
                self.ambient = linux.cap_numbers(caps.get("ambient"), last)
            self.rlimits = []
            for r in p.get("rlimits") or []:
                if r.get("type") not in linux.RLIMITS:
                    raise Fail("InvalidArgument", f"unknown rlimit {r.get('type')!r}")
                self.rlimits.append((linux.RLIMITS[r["type"]], int(r["soft"]), int(r["hard"])))
        except Fail:
            raise
        except (TypeError, ValueError, KeyError, AttributeError) as exc:
            raise Fail("InvalidArgument", f"malformed process in config.json: {exc}") from None
        self.seccomp: tuple[bytes, int] | None = None
        if seccomp_spec:
            try:
                self.seccomp = seccomp.compile_cached(seccomp_spec, cache_dir)
            except seccomp.SeccompError as exc:
                raise Fail("InvalidArgument", f"linux.seccomp: {exc}") from None

    def getenv(self, name: str) -> str | None:
        for e in reversed(self.env):
            k, sep, v = e.partition("=")
            if sep and k == name:
                return v
        return None

    # ------------------------------------------------------------------ after start
    def finish_and_exec(self, setsid: bool = True) -> None:
        """From setsid to execve; never returns (raises :class:`Fail`)."""
        os.umask(self.umask)
        if setsid:
            try:
                os.setsid()
            except OSError:
                pass
        if self.terminal:
            fcntl.ioctl(0, linux.TIOCSCTTY, 0)
        for number, soft, hard in self.rlimits:
            try:
                resource.setrlimit(number, (soft, hard))
            except (OSError, ValueError) as exc:
                raise Fail("InvalidArgument", f"setrlimit {number}: {exc}") from None
        if self.nnp:
            linux.set_no_new_privs()
        if self.seccomp and not self.nnp:
            self._seccomp()
        try:
            if self.caps_given:
                linux.drop_bounding(self.bounding, self.last_cap)
                linux.set_keepcaps(True)
            os.setgroups(self.groups)
            os.setresgid(self.gid, self.gid, self.gid)
            os.setresuid(self.uid, self.uid, self.uid)
            if self.caps_given:
                linux.set_keepcaps(False)
        except OSError as exc:
            raise Fail("CoreError", f"setting user {self.uid}:{self.gid}: {exc.strerror}") from None
        if self.getenv("HOME") is None:
            self.env.append(f"HOME={home_of(self.uid)}")
        try:
            os.chdir(self.cwd)
        except OSError as exc:
            raise Fail("ProgramNotRunnable" if exc.errno == errno.EACCES else "ProgramNotFound",
                       f"chdir to cwd ({self.cwd!r}) set in config.json failed: "
                       f"{os.strerror(exc.errno or 0).lower()}", 126 if exc.errno == errno.EACCES
                       else 127) from None
        try:
            if self.caps_given:
                linux.capset(self.effective, self.permitted, self.inheritable)
                if self.ambient:
                    linux.set_ambient(self.ambient)
        except OSError as exc:
            raise Fail("CoreError", f"applying capabilities: {exc}") from None
        path = lookup(self.args[0], self.getenv("PATH"))
        if self.seccomp and self.nnp:
            self._seccomp()
        reset_signals()
        try:
            os.execve(path, self.args, dict_env(self.env))
        except OSError as exc:
            raise exec_error(self.args[0], exc) from None

    def _seccomp(self) -> None:
        assert self.seccomp is not None
        try:
            linux.seccomp_install(*self.seccomp)
        except OSError as exc:
            raise Fail("CoreError", f"installing the seccomp filter: {exc}") from None


def dict_env(env: list[str]) -> dict[bytes, bytes]:
    """``env`` as execve wants it; later entries win, as in a real environment."""
    out: dict[bytes, bytes] = {}
    for e in env:
        k, _, v = e.partition("=")
        if k:
            out[os.fsencode(k)] = os.fsencode(v)
    return out


def home_of(uid: int) -> str:
    """The user's home from the container's /etc/passwd, else ``/`` (runc's rule)."""
    try:
        with open("/etc/passwd", "rb") as f:
            for line in f:
                fields = line.decode("utf-8", "replace").rstrip("\n").split(":")
                if len(fields) >= 6 and fields[2] == str(uid):
                    return fields[5] or "/"
    except OSError:
        pass
    return "/"


def lookup(name: str, path_env: str | None) -> str:
    """Go's ``exec.LookPath``, as runc runs it inside the container (docker's messages)."""
    path, failure = look_path(name, path_env)
    if failure:
        raise Fail(*failure)
    return path


def exec_error(name: str, exc: OSError) -> Fail:
    reason = os.strerror(exc.errno or 0).lower()
    if exc.errno in (errno.ENOENT, errno.ENOTDIR):
        return Fail("ProgramNotFound", f'exec: "{name}": {reason}', 127)
    if exc.errno in (errno.EACCES, errno.EISDIR):
        return Fail("ProgramNotRunnable", f'exec: "{name}": {reason}', 126)
    if exc.errno in (errno.ENOEXEC, errno.EPERM, errno.ETXTBSY):  # docker's CLI exits 126 on these words
        return Fail("ProgramNotRunnable", f'exec: "{name}": {reason}: permission denied', 126)
    return Fail("CoreError", f'exec: "{name}": {reason}', 126)


# =========================================================================== paths, mounts
def secure_join(root: str, unsafe: str) -> str:
    """``unsafe`` resolved inside ``root``: symlinks followed as if ``root`` were ``/``, ``..``
    never above it (filepath-securejoin's rule, which runc uses for mount destinations)."""
    parts = [p for p in unsafe.split("/") if p]
    current: list[str] = []
    links = 0
    while parts:
        part = parts.pop(0)
        if part == ".":
            continue
        if part == "..":
            if current:
                current.pop()
            continue
        candidate = os.path.join(root, *current, part)
        try:
            st = os.lstat(candidate)
        except OSError:
            current.append(part)
            continue
        if stat.S_ISLNK(st.st_mode):
            links += 1
            if links > 255:
                raise Fail("InvalidArgument", f"too many symlinks resolving {unsafe}")
            target = os.readlink(candidate)
            if target.startswith("/"):
                current = []
            parts = [p for p in target.split("/") if p] + parts
            continue
        current.append(part)
    return os.path.join(root, *current)


def _mkdirs(path: str) -> None:
    try:
        os.makedirs(path, 0o755, exist_ok=True)
    except FileExistsError:
        pass


def _touch(path: str) -> None:
    _mkdirs(os.path.dirname(path))
    if not os.path.lexists(path):
        os.close(os.open(path, os.O_CREAT | os.O_WRONLY | os.O_CLOEXEC, 0o755))


def _statvfs_flags(path: str) -> int:
    try:
        f_flag = os.statvfs(path).f_flag
    except OSError:
        return 0
    return sum(ms for st_bit, ms in linux.ST_TO_MS if f_flag & st_bit)


def _remount_bind(path: str, flags: int, recursive: bool = False) -> None:
    keep = _statvfs_flags(path) & (linux.MS_NOSUID | linux.MS_NODEV | linux.MS_NOEXEC)
    linux.mount(None, path, None, linux.MS_BIND | linux.MS_REMOUNT | flags | keep
                | (linux.MS_REC if recursive else 0))


class Container:
    """The ``init`` side: the container's root filesystem and namespaces from the spec."""

    def __init__(self, spec: dict[str, Any], bundle: str, container_id: str,
                 cache_dir: str | None = None) -> None:
        self.spec, self.bundle, self.id = spec, bundle, container_id
        lx = spec.get("linux") or {}
        if not isinstance(lx, dict):
            raise Fail("InvalidArgument", "linux must be an object")
        self.linux = lx
        root = spec.get("root") or {}
        if not root.get("path"):
            raise Fail("InvalidArgument", "config.json has no root.path")
        self.rootfs = os.path.realpath(os.path.join(bundle, root["path"]))
        if not os.path.isdir(self.rootfs):
            raise Fail("InvalidArgument", f"root.path {self.rootfs} is not a directory")
        self.readonly = bool(root.get("readonly"))
        self.process = Process(spec["process"], lx.get("seccomp"), cache_dir)
        self.hostname = spec.get("hostname")
        self.domainname = spec.get("domainname")
        self.mounts = spec.get("mounts") or []
        self.namespaces: list[tuple[str, str | None]] = []
        for ns in lx.get("namespaces") or []:
            kind = ns.get("type")
            if kind not in linux.NAMESPACES:
                raise Fail("InvalidArgument", f"unknown namespace type {kind!r}")
            if kind == "user":
                raise Fail("InvalidArgument", "user namespaces are not supported")
            self.namespaces.append((kind, ns.get("path") or None))
        kinds = {k for k, _ in self.namespaces}
        if "mount" not in kinds:
            raise Fail("InvalidArgument", "a mount namespace is required")
        self.new_net = ("network", None) in self.namespaces
        self.new_uts = ("uts", None) in self.namespaces
        self.cgroupns = "cgroup" in kinds
        self.devices = lx.get("devices") or []
        self.propagation = lx.get("rootfsPropagation") or "rslave"
        if self.propagation not in linux.PROPAGATION:
            raise Fail("InvalidArgument", f"unknown rootfsPropagation {self.propagation!r}")
        self.masked = lx.get("maskedPaths") or []
        self.readonly_paths = lx.get("readonlyPaths") or []
        self.sysctl = lx.get("sysctl") or {}
        self.hierarchies = cgroups.hierarchies()

    # ------------------------------------------------------------------ namespaces
    def enter_namespaces(self) -> None:
        flags = 0
        fds = []
        for kind in NS_JOIN_ORDER:
            for k, path in self.namespaces:
                if k != kind:
                    continue
                if path:
                    try:
                        fds.append((os.open(path, os.O_RDONLY | os.O_CLOEXEC), kind, path))
                    except OSError as exc:
                        raise Fail("NotFound" if exc.errno == errno.ENOENT else "CoreError",
                                   f"{kind} namespace {path}: {exc.strerror}") from None
                else:
                    flags |= linux.NAMESPACES[kind][0]
        for fd, kind, path in fds:
            try:
                linux.setns(fd, linux.NAMESPACES[kind][0])
            except OSError as exc:
                raise Fail("CoreError", f"joining the {kind} namespace {path}: {exc}") from None
            os.close(fd)
        if flags:
            linux.unshare(flags)

    # ------------------------------------------------------------------ root filesystem
    def setup_rootfs(self) -> None:
        rootfs = self.rootfs
        linux.mount(None, "/", None, linux.PROPAGATION[self.propagation])
        linux.mount(rootfs, rootfs, None, linux.MS_BIND | linux.MS_REC)
        dev_mounted = False
        for m in self.mounts:
            self.do_mount(m)
            if m.get("destination", "").rstrip("/") == "/dev" and m.get("type") != "bind" and \
                    "bind" not in (m.get("options") or []) and "rbind" not in (m.get("options") or []):
                dev_mounted = True
        if dev_mounted:
            self.setup_dev()
        else:
            self.create_devices(self.devices)
        if self.process.oom_score_adj is not None:
            with open("/proc/self/oom_score_adj", "w") as f:
                f.write(str(int(self.process.oom_score_adj)))
        _mkdirs(secure_join(rootfs, self.process.cwd))
        os.chdir(rootfs)
        linux.pivot_root(".", ".")
        linux.umount2(".", linux.MNT_DETACH)
        os.chdir("/")
        if self.propagation in ("shared", "rshared"):
            linux.mount(None, "/", None, linux.PROPAGATION[self.propagation])
        for key, value in self.sysctl.items():
            path = "/proc/sys/" + key.replace(".", "/")
            try:
                with open(path, "w") as f:
                    f.write(str(value))
            except OSError as exc:
                raise Fail("InvalidArgument", f"sysctl {key}={value}: {exc.strerror}") from None
        for path in self.readonly_paths:
            try:
                linux.mount(path, path, None, linux.MS_BIND | linux.MS_REC)
            except OSError as exc:
                if exc.errno == errno.ENOENT:
                    continue
                raise
            _remount_bind(path, linux.MS_RDONLY, recursive=True)
        for path in self.masked:
            try:
                if os.path.isdir(path):
                    linux.mount("tmpfs", path, "tmpfs", linux.MS_RDONLY)
                else:
                    linux.mount("/dev/null", path, None, linux.MS_BIND)
            except OSError as exc:
                if exc.errno not in (errno.ENOENT, errno.ENOTDIR):
                    raise
        if self.process.terminal:
            open_console(bind_console=True)
        if self.hostname is not None and self.new_uts:
            linux.sethostname(self.hostname)
        if self.domainname is not None and self.new_uts:
            linux.setdomainname(self.domainname)
        if self.new_net:
            loopback_up()
        if self.readonly:
            _remount_bind("/", linux.MS_RDONLY)

    def do_mount(self, m: dict[str, Any]) -> None:
        dest_rel = m.get("destination")
        if not dest_rel or not str(dest_rel).startswith("/"):
            raise Fail("InvalidArgument", f"mount destination {dest_rel!r} must be absolute")
        options = [str(o) for o in m.get("options") or []]
        fstype = m.get("type") or ""
        flags, propagation, data = linux.parse_mount_options(options)
        dest = secure_join(self.rootfs, dest_rel)
        source = m.get("source") or fstype or "none"
        if fstype == "bind" or flags & linux.MS_BIND:
            if not source.startswith("/"):
                source = os.path.join(self.bundle, source)
            try:
                st = os.stat(source)
            except OSError as exc:
                raise Fail("NotFound", f"bind mount source {source}: {exc.strerror}") from None
            if stat.S_ISDIR(st.st_mode):
                _mkdirs(dest)
            else:
                _touch(dest)
            linux.mount(source, dest, None, linux.MS_BIND | (flags & linux.MS_REC))
            extra = flags & ~(linux.MS_BIND | linux.MS_REC | linux.MS_REMOUNT)
            if extra:
                _remount_bind(dest, extra)
            if "rro" in data:   # runc's recursive read-only: the mounts below the bind too
                try:
                    linux.mount_setattr_recursive(dest, linux.MOUNT_ATTR_RDONLY)
                except OSError as exc:
                    raise Fail("CoreError", f"making {dest_rel} recursively read-only: {exc}") from None
        elif fstype == "cgroup":
            self.mount_cgroup(dest, flags)
        else:
            _mkdirs(dest)
            linux.mount(source, dest, fstype or None, flags, ",".join(data) or None)
        if propagation:
            linux.mount(None, dest, None, propagation)

    def mount_cgroup(self, dest: str, flags: int) -> None:
        """v2: the unified hierarchy.  v1, as runc: a tmpfs (mode 0555, left read-write), each
        hierarchy mounted below it in the host's order (the cgroup namespace roots it at the
        container's cgroup; without one, the container's directory is bound instead), and
        symlinks for co-mounted controllers (``cpu`` -> ``cpu,cpuacct``)."""
        version, mounts = self.hierarchies
        _mkdirs(dest)
        if version == 2:
            linux.mount("cgroup2", dest, "cgroup2", flags)
            return
        linux.mount("tmpfs", dest, "tmpfs", flags & ~linux.MS_RDONLY, "mode=755")
        for name, point in mounts.items():
            if not name:
                continue   # the hybrid cgroup2 hierarchy is not shown (runc does not either)
            sub = os.path.basename(point)
            target = os.path.join(dest, sub)
            _mkdirs(target)
            if self.cgroupns:
                source = name[len("name="):] if name.startswith("name=") else "cgroup"
                linux.mount(source, target, "cgroup", flags, name)
            else:   # no cgroup namespace: bind the container's own cgroup directory
                path = os.path.join(point, cgroups.cgroup_path(self.spec, self.id).lstrip("/"))
                linux.mount(path, target, None, linux.MS_BIND)
                if flags & ~linux.MS_BIND:
                    _remount_bind(target, flags & ~linux.MS_BIND)
            for controller in name.split(","):
                if controller != sub and not controller.startswith("name="):
                    link = os.path.join(dest, controller)
                    if not os.path.lexists(link):
                        os.symlink(sub, link)
        if flags & linux.MS_RDONLY:
            os.chmod(dest, 0o555)

    def create_devices(self, devices: list[dict[str, Any]]) -> None:
        for d in devices:
            path = d.get("path")
            if not path:
                continue
            kind = d.get("type", "c")
            fmt = {"c": stat.S_IFCHR, "u": stat.S_IFCHR, "b": stat.S_IFBLK, "p": stat.S_IFIFO}.get(kind)
            if fmt is None:
                raise Fail("InvalidArgument", f"device {path}: unknown type {kind!r}")
            target = secure_join(self.rootfs, path)
            _mkdirs(os.path.dirname(target))
            if os.path.lexists(target):
                if os.path.isdir(target) and not os.path.islink(target):
                    raise Fail("InvalidArgument", f"device {path}: a directory is in the way")
                os.unlink(target)
            mode = int(d.get("fileMode", 0o666)) & 0o7777
            os.mknod(target, fmt | mode, os.makedev(int(d.get("major", 0)), int(d.get("minor", 0))))
            os.chmod(target, mode)
            os.chown(target, int(d.get("uid", 0)), int(d.get("gid", 0)))

    def setup_dev(self) -> None:
        spec_paths = {d.get("path") for d in self.devices}
        defaults = [{"path": p, "type": "c", "major": a, "minor": b, "fileMode": 0o666}
                    for p, a, b in DEFAULT_DEVICES if p not in spec_paths]
        self.create_devices(defaults + list(self.devices))
        dev = secure_join(self.rootfs, "/dev")
        links = list(DEV_SYMLINKS)
        if os.path.exists("/proc/kcore"):
            links.append(("/proc/kcore", "/dev/core"))
        for target, link in links:
            path = os.path.join(dev, os.path.basename(link))
            if not os.path.lexists(path):
                os.symlink(target, path)
        ptmx = os.path.join(dev, "ptmx")
        if os.path.lexists(ptmx):
            os.unlink(ptmx)
        os.symlink("pts/ptmx", ptmx)


def loopback_up() -> None:
    s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    try:
        req = struct.pack("16sH14s", b"lo", 0, b"")
        flags = struct.unpack("16sH14s", fcntl.ioctl(s.fileno(), linux.SIOCGIFFLAGS, req))[1]
        fcntl.ioctl(s.fileno(), linux.SIOCSIFFLAGS, struct.pack("16sH14s", b"lo",
                                                                   flags | linux.IFF_UP, b""))
    finally:
        s.close()


# =========================================================================== entry points
def init_main(state_dir: str, bundle: str, container_id: str) -> int:
    """The ``init`` mode: returns the helper's exit code (the init never returns)."""
    os.umask(0o022)
    try:
        spec = load_spec(bundle)
        try:
            cg = cgroups.Cgroup.for_path(cgroups.cgroup_path(spec, container_id))
        except ValueError as exc:
            raise Fail("InvalidArgument", str(exc)) from None
        gc.disable()   # no collection touching every object: fewer pages copied on write and
        gc.freeze()    # charged to the (perhaps small) memory cgroup the init now lives in
        # Moving a process between cgroups waits for an RCU grace period (~10 ms on cgroup v1):
        # the longest step of a start.  It runs in a thread while this one validates the spec
        # and compiles the seccomp filter.  Joining a mount namespace needs a single thread.
        placing = Background(place_in_cgroup, cg, spec, state_dir,
                             inline=any(kind == "mount" and path for kind, path in spec_namespaces(spec)))
        try:
            ctr = Container(spec, bundle, container_id, seccomp_cache(state_dir))
        finally:
            placing.result()
        ctr.enter_namespaces()
    except BaseException as exc:
        return report(exc)

    def child() -> None:
        os.set_inheritable(START_FD, False)
        ctr.setup_rootfs()
        send("created")
        try:
            go = os.read(START_FD, 1)
        except OSError:
            go = b""
        if not go:
            os._exit(0)   # deleted before it started
        os.close(START_FD)
        ctr.process.finish_and_exec()

    return fork_child(child)


def fork_child(child: Callable[[], None]) -> int:
    """Fork the container's process, which runs ``child()`` (it execs the program or exits;
    an error in it is reported on the sync socket and is its exit status) without the sync
    socket across its execve; report its ``pid``.  Returns the helper's exit code."""
    try:
        pid = os.fork()
    except BaseException as exc:
        return report(exc)
    if pid == 0:
        try:
            os.set_inheritable(SYNC_FD, False)
            child()
        except BaseException as exc:
            os._exit(report(exc))
        os._exit(1)
    send(f"pid {pid}")
    return 0


def seccomp_cache(state_dir: str) -> str:
    """Compiled seccomp filters, shared by the executor's containers: ``<exec root>/.seccomp``
    (no container id starts with a dot)."""
    return os.path.join(os.path.dirname(os.path.abspath(state_dir)), ".seccomp")


def place_in_cgroup(cg: cgroups.Cgroup, spec: dict[str, Any], state_dir: str) -> None:
    """Create the container's cgroup, record it, apply ``linux.resources``, move in."""
    cg.create()
    cg.save(os.path.join(state_dir, "cgroup"))
    lx = spec.get("linux")
    try:
        cg.apply(lx.get("resources") if isinstance(lx, dict) else None)
    except OSError as exc:
        raise Fail("InvalidArgument", f"applying linux.resources: {exc}") from None
    cg.join(os.getpid())


def spec_namespaces(spec: dict[str, Any]) -> list[tuple[Any, Any]]:
    lx = spec.get("linux")
    entries = lx.get("namespaces") if isinstance(lx, dict) else None
    return [(ns.get("type"), ns.get("path")) for ns in entries or [] if isinstance(ns, dict)]


class Background:
    """``fn(*args)`` in a thread of its own (``inline``: right here); :meth:`result` waits for
    it and raises what it raised.  A bare ``_thread``: the helper stays small."""

    def __init__(self, fn: Any, *args: Any, inline: bool = False) -> None:
        self.error: BaseException | None = None
        self.done = _thread.allocate_lock()
        self.done.acquire()
        if inline:
            self._run(fn, args)
        else:
            _thread.start_new_thread(self._run, (fn, args))

    def _run(self, fn: Any, args: tuple[Any, ...]) -> None:
        try:
            fn(*args)
        except BaseException as exc:
            self.error = exc
        finally:
            self.done.release()

    def result(self) -> None:
        self.done.acquire()
        if self.error is not None:
            raise self.error


def exec_main(state_dir: str, exec_id: str, init_pid: int) -> int:
    """The ``exec`` mode: one more process in the container of ``init_pid``."""
    os.umask(0o022)
    try:
        try:
            with open(os.path.join(state_dir, f"exec-{exec_id}.json"), "rb") as f:
                request = json.load(f)
            with open(os.path.join(state_dir, "bundle")) as f:
                bundle = f.read()
        except (OSError, ValueError) as exc:
            raise Fail("InvalidArgument", f"exec {exec_id}: {exc}") from None
        spec = load_spec(bundle)
        process = request.get("process")
        if not isinstance(process, dict):
            raise Fail("InvalidArgument", "exec: no process object")
        proc = Process(process, (spec.get("linux") or {}).get("seccomp"), seccomp_cache(state_dir))
        cg = cgroups.Cgroup.load(os.path.join(state_dir, "cgroup"))
        fds = []
        for kind in NS_JOIN_ORDER:
            flag, name = linux.NAMESPACES[kind]
            theirs = f"/proc/{init_pid}/ns/{name}"
            try:
                if os.stat(theirs).st_ino == os.stat(f"/proc/self/ns/{name}").st_ino:
                    continue
                fds.append((os.open(theirs, os.O_RDONLY | os.O_CLOEXEC), flag))
            except FileNotFoundError:
                if kind == "mount":
                    raise Fail("Conflict", "the container is not running") from None
        if cg is not None:
            try:
                cg.join(os.getpid())
            except OSError as exc:
                raise Fail("Conflict", f"joining the container's cgroup: {exc}") from None
        for fd, flag in fds:
            linux.setns(fd, flag)
            os.close(fd)
    except BaseException as exc:
        return report(exc)

    def child() -> None:
        if proc.terminal:
            open_console()
        proc.finish_and_exec()

    return fork_child(child)


def main(argv: list[str]) -> int:
    if len(argv) in (5, 7) and argv[1] in ("init", "exec"):
        if len(argv) == 7:
            CONSOLE_SIZE[:] = [int(argv[5]), int(argv[6])]
        if argv[1] == "init":
            return init_main(argv[2], argv[3], argv[4])
        return exec_main(argv[2], argv[3], int(argv[4]))
    sys.stderr.write("usage: runtime.py init STATE BUNDLE ID WIDTH HEIGHT | "
                     "exec STATE EXEC_ID PID WIDTH HEIGHT\n")
    return 2


if __name__ == "__main__":
    sys.exit(main(sys.argv))
