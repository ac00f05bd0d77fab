"""The runtime helper of the ``runc`` driver: what core's shim spawns to create a container or
an exec, here by running runc.

core's shim (:mod:`core.shim`, the public kit) imports this module and calls ``main(argv)``
with ``argv[1:]`` ``init STATE BUNDLE ID WIDTH HEIGHT`` (or ``exec STATE EXEC_ID PID WIDTH
HEIGHT``), in a process of its own with the process's stdio on fds 0-2, the *sync socket* on fd 3 and, for ``init``, the
*start pipe* on fd 4, and expects on the sync socket, one line each::

    pid <host pid>            the container's init (or the exec'd process)
    console                   with SCM_RIGHTS: the pty's master (``process.terminal``)
    created                   init: created, waiting to start
    error <Kind> <message>    a failure (ProgramNotFound, ProgramNotRunnable, InvalidArgument, CoreError)

and end-of-file on the sync socket once the process runs its program.

``init``: ``runc create --bundle B --pid-file F [--console-socket S] ID`` (runc hands our fds
0-2 to the container's init; with a terminal it sends the pty master to the console socket,
which we pass on to the shim); the init, an orphan once runc returns, is re-parented to the shim
(a child subreaper).  We report ``pid`` and ``created``, write ``cgroup`` (the paths runc chose,
for the shim's OOM check and the driver's fallbacks), let go of the container's stdio and wait
for the start pipe: one byte is ``runc start ID``.
``exec``: ``runc exec --detach --process P --pid-file F [--console-socket S] ID``.

runc looks the program up before it is started (``runc create`` would fail); the contract wants
that failure from ``start`` with docker's message, so the lookup is done first, here, chrooted
in the container's root: a failing init is replaced by a placeholder process that reports the
error when it is started and exits 127 (not found) or 126 (cannot run), as runc's init would.
"""
import fcntl
import json
import os
import select
import socket
import subprocess
import sys
import tempfile
import termios
import time

from core.shim.cgroups import Cgroup
from core.shim.lookup import DEFAULT_PATH, look_path
from core_runc_executor.runc import error_text, find_runc

SYNC_FD, START_FD = 3, 4
TIOCGPTPEER = 0x5441
HELD = []       # fds of the process's output kept open until finish()


class Fail(Exception):
    def __init__(self, kind, message, code=126):
        super().__init__(message)
        self.kind, self.message, self.code = kind, message, code


def send(line, fds=()):
    sock = socket.socket(fileno=os.dup(SYNC_FD))
    try:
        if fds:
            socket.send_fds(sock, [(line + "\n").encode()], list(fds))
        else:
            sock.sendall((line + "\n").encode())
    finally:
        sock.close()


def report(exc):
    if isinstance(exc, Fail):
        kind, message, code = exc.kind, exc.message, exc.code
    else:
        kind, message, code = "CoreError", "%s: %s" % (type(exc).__name__, exc), 1
    try:
        send("error %s %s" % (kind, " ".join(str(message).split())))
    except OSError:
        pass
    return code


# ----------------------------------------------------------------------------- the lookup
def check_program(root, process):
    """The lookup of ``process.args[0]``, chrooted in ``root`` (a child does it: symlinks
    resolve as in the container).  None when runnable, else (kind, message, code)."""
    args = process.get("args") or []
    if not args:
        return ("InvalidArgument", "process.args is empty", 126)
    path_env = None
    for e in process.get("env") or []:
        if e.startswith("PATH="):
            path_env = e[5:]
    r, w = os.pipe()
    pid = os.fork()
    if pid == 0:
        try:
            os.close(r)
            os.chroot(root)
            try:
                os.chdir(process.get("cwd") or "/")
            except OSError:
                os.chdir("/")
            os.write(w, json.dumps(look_path(args[0], path_env)[1]).encode())
        finally:
            os._exit(0)
    os.close(w)
    data = b""
    while True:
        chunk = os.read(r, 65536)
        if not chunk:
            break
        data += chunk
    os.close(r)
    os.waitpid(pid, 0)
    try:
        got = json.loads(data)
    except ValueError:
        return None     # could not tell: let runc decide
    return tuple(got) if got else None


# ----------------------------------------------------------------------------- runc
def runc_root(state):
    with open(os.path.join(state, "runc-root")) as f:
        return f.read().strip()


def run_runc(state, args, console=None, size=(80, 24), stdio=True):
    """Run runc with our fds 0-2 (handed to the container's process); with ``console``
    (a listening socket), receive the pty master it sends and pass it on to the shim."""
    log = os.path.join(state, "runc.log")
    argv = [find_runc() or "runc", "--root", runc_root(state), "--log", log,
            "--log-format", "json"] + args
    errfd = None
    if console is not None or not stdio:   # runc's stdio are not the process's: keep stderr
        errfd = tempfile.TemporaryFile()
    proc = subprocess.Popen(argv, stdin=0 if stdio else subprocess.DEVNULL,
                            stdout=1 if stdio else subprocess.DEVNULL,
                            stderr=errfd if errfd else 2, close_fds=True)
    got_console = False
    if console is not None:
        console.setblocking(False)
        while proc.poll() is None and not got_console:
            ready, _, _ = select.select([console], [], [], 0.05)
            if not ready:
                continue
            conn, _ = console.accept()
            conn.setblocking(True)
            try:
                _msg, fds, _flags, _addr = socket.recv_fds(conn, 4096, 4)
            finally:
                conn.close()
            if fds:
                master = fds[0]
                for extra in fds[1:]:
                    os.close(extra)
                try:
                    data = b"".join(v.to_bytes(2, sys.byteorder)
                                    for v in (size[1], size[0], 0, 0))
                    fcntl.ioctl(master, termios.TIOCSWINSZ, data)
                except OSError:
                    pass
                try:    # hold the pty's slave side until we are done (see finish)
                    HELD.append(fcntl.ioctl(master, TIOCGPTPEER, os.O_RDWR | os.O_NOCTTY))
                except OSError:
                    pass
                send("console", [master])
                os.close(master)
                got_console = True
    code = proc.wait()
    if code != 0:
        message = ""
        if errfd is not None:
            errfd.seek(0)
            message = error_text(errfd.read())
        if not message or message == "runc failed":
            message = last_error(log) or "runc %s failed" % args[0]
        raise Fail("CoreError", message, 1)


def last_error(log):
    try:
        with open(log) as f:
            lines = f.read().splitlines()
    except OSError:
        return None
    for line in reversed(lines):
        try:
            entry = json.loads(line)
        except ValueError:
            continue
        if entry.get("level") in ("error", "fatal"):
            return entry.get("msg")
    return None


def console_socket():
    d = tempfile.mkdtemp(prefix="runc-console-", dir="/tmp")
    path = os.path.join(d, "s")
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    sock.bind(path)
    sock.listen(1)
    return sock, path, d


def drop_console(sock, path, d):
    sock.close()
    for p, rm in ((path, os.unlink), (d, os.rmdir)):
        try:
            rm(p)
        except OSError:
            pass


def read_pid(path):
    for _ in range(100):
        try:
            with open(path) as f:
                text = f.read().strip()
            if text:
                return int(text)
        except (OSError, ValueError):
            pass
        time.sleep(0.01)
    raise Fail("CoreError", "runc wrote no pid file", 1)


def save_cgroup(state, pid):
    """``<state>/cgroup``, the state file of core's shim protocol (:mod:`core.shim`): runc's cgroup
    of the init."""
    cgroup = Cgroup.of_pid(pid)
    if cgroup is not None:
        cgroup.save(os.path.join(state, "cgroup"))


def drained(fd, timeout=2.0):
    """Wait until the shim has read what we sent on ``fd`` (SIOCOUTQ: bytes not yet read)."""
    end = time.monotonic() + timeout
    while time.monotonic() < end:
        try:
            left = int.from_bytes(fcntl.ioctl(fd, termios.TIOCOUTQ, b"\0\0\0\0"), sys.byteorder)
        except OSError:
            return
        if left == 0:
            return
        time.sleep(0.002)


def finish():
    """End of the sync socket first, then of our copies of the process's output: the shim
    answers start/exec (on that end of file) before it can see the output end and, the init
    having exited, shut down."""
    os.close(SYNC_FD)
    for fd in HELD:
        os.close(fd)
    let_go_of_stdio()
    return 0


def let_go_of_stdio():
    null = os.open("/dev/null", os.O_RDWR)
    for fd in (0, 1, 2):
        os.dup2(null, fd)
    os.close(null)


# ----------------------------------------------------------------------------- modes
def join_namespaces(spec):
    """setns(2) into the namespaces the spec gives a ``path`` (the sandbox's network one: the
    daemon checks that the container is in it)."""
    import ctypes
    libc = ctypes.CDLL(None, use_errno=True)
    for ns in ((spec.get("linux") or {}).get("namespaces") or []):
        path = ns.get("path")
        if not path or ns.get("type") in ("mount", "pid", "user"):
            continue
        fd = os.open(path, os.O_RDONLY | os.O_CLOEXEC)
        try:
            if libc.setns(fd, 0) != 0:
                err = ctypes.get_errno()
                raise Fail("CoreError", "joining %s: %s" % (path, os.strerror(err)), 1)
        finally:
            os.close(fd)


def placeholder(failure, spec):
    """An init that cannot run: a process standing for it until it is started, which then
    reports the failure and exits with its code (runc's init would have)."""
    kind, message, code = failure
    join_namespaces(spec)   # in the helper, before the fork: errors are reported
    pid = os.fork()
    if pid == 0:
        try:
            go = os.read(START_FD, 1)
        except OSError:
            go = b""
        if go:
            report(Fail(kind, message, code))
            drained(SYNC_FD)        # the shim has read the error line, then sees its end
            os.close(SYNC_FD)       # before the output's end (it then answers start at once)
            os._exit(code)
        os._exit(0)
    send("pid %d" % pid)
    send("created")
    return 0


def init_main(state, bundle, container_id, width, height):
    try:
        with open(os.path.join(bundle, "config.json")) as f:
            spec = json.load(f)
        process = spec.get("process") or {}
        root = (spec.get("root") or {}).get("path") or "rootfs"
        failure = check_program(os.path.join(bundle, root), process)
        if failure is not None:
            if failure[0] == "InvalidArgument":
                raise Fail(*failure)
            return placeholder(failure, spec)
        rroot = runc_root(state)
        if os.path.isdir(os.path.join(rroot, container_id)):   # a stopped one, left behind
            subprocess.run([find_runc() or "runc", "--root", rroot, "delete", "-f", container_id],
                           stdin=subprocess.DEVNULL, capture_output=True)
        pid_file = os.path.join(state, "runc-init.pid")
        args = ["create", "--bundle", bundle, "--pid-file", pid_file]
        console = None
        if process.get("terminal"):
            console = console_socket()
            args += ["--console-socket", console[1]]
        try:
            run_runc(state, args + [container_id], console and console[0], (width, height))
        finally:
            if console:
                drop_console(*console)
        pid = read_pid(pid_file)
        try:
            save_cgroup(state, pid)
        except (OSError, ValueError):
            pass
        send("pid %d" % pid)
        send("created")
    except BaseException as exc:
        return report(exc)
    try:
        pidfd = os.pidfd_open(pid)
    except OSError:
        return 0
    ready, _, _ = select.select([START_FD, pidfd], [], [])
    if START_FD not in ready:
        return 0        # the init is gone (deleted before it started)
    try:
        go = os.read(START_FD, 1)
    except OSError:
        go = b""
    if not go:
        return 0        # the shim is gone
    try:
        run_runc(state, ["start", container_id], stdio=False)
    except BaseException as exc:
        return report(exc)
    return finish()


def exec_main(state, exec_id, init_pid, width, height):
    try:
        try:
            with open(os.path.join(state, "exec-%s.json" % exec_id)) as f:
                process = json.load(f)["process"]
        except (OSError, ValueError, KeyError) as exc:
            raise Fail("InvalidArgument", "exec %s: %s" % (exec_id, exc)) from None
        process = dict(process)
        process.setdefault("cwd", "/")
        process.setdefault("user", {"uid": 0, "gid": 0})
        process.setdefault("env", ["PATH=" + DEFAULT_PATH])
        if process.get("terminal"):
            process.setdefault("consoleSize", {"width": width, "height": height})
        failure = check_program("/proc/%d/root" % init_pid, process)
        if failure is not None:
            raise Fail(*failure)
        path = os.path.join(state, "exec-%s.process.json" % exec_id)
        with open(path, "w") as f:
            json.dump(process, f)
        pid_file = os.path.join(state, "exec-%s.pid" % exec_id)
        args = ["exec", "--detach", "--process", path, "--pid-file", pid_file]
        console = None
        if process.get("terminal"):
            console = console_socket()
            args += ["--console-socket", console[1]]
        try:
            with open(os.path.join(state, "id")) as f:
                container_id = f.read().strip()
            run_runc(state, args + [container_id], console and console[0], (width, height))
        finally:
            if console:
                drop_console(*console)
        send("pid %d" % read_pid(pid_file))
    except BaseException as exc:
        return report(exc)
    return finish()


def main(argv):
    if len(argv) == 7 and argv[1] == "init":
        return init_main(argv[2], argv[3], argv[4], int(argv[5]), int(argv[6]))
    if len(argv) == 7 and argv[1] == "exec":
        return exec_main(argv[2], argv[3], int(argv[4]), int(argv[5]), int(argv[6]))
    sys.stderr.write("usage: helper init STATE BUNDLE ID W H | exec STATE EXEC_ID PID W H\n")
    return 2
