"""The warm spawner (zygote): forks shims without starting Python, one per executor.

Run by :class:`core.shim.client.Zygote` as ``python -I -S zygote.py SOCKET HELPER_PATH
HELPER_MODULE`` (with ``GLIBC_TUNABLES`` set for the shims' malloc, see :mod:`core.shim.server`),
its stdin a pipe from the driver: at end of file (the driver closed it, or died) it exits — the
shims it forked live on, in sessions of their own.  It imports the shim (``server``) and the
executor's runtime helper ``HELPER_MODULE`` (importable from ``HELPER_PATH``), and ctypes for
``PR_SET_CHILD_SUBREAPER``; freezes the heap (``gc.freeze``: fewer pages copied on write in the
children), prints ``ready`` and serves its unix socket: one connection per create, the request
one line of JSON (the shim's argv, as the launcher takes it).  It forks; the child calls
``setsid`` and forks again (so the shim is nobody's child: re-parented to init, as with the
launcher) and exits; the grandchild becomes the shim in-process: subreaper, stdio on
``/dev/null`` and ``shim.log``, every other fd closed but the connection, signals reset, cwd the
state directory (how an executor recognises its shim), ``server.serve`` with the connection as
its verdict fd — the driver reads ``ok`` or ``error <Kind> <message>`` there.  The shim then
forks the runtime helper in-process (its ``main``) instead of exec'ing a new interpreter.
"""
import os
import sys

HERE = os.path.dirname(os.path.abspath(__file__))
if HERE not in sys.path:
    sys.path.insert(0, HERE)

import _signal  # noqa: E402
import _socket  # noqa: E402
import ctypes  # noqa: E402
import gc  # noqa: E402
import json  # noqa: E402
import select  # noqa: E402

import server  # noqa: E402
from sigreset import reset_signals  # noqa: E402

LIBC = ctypes.CDLL(None, use_errno=True)
PRCTL = LIBC.prctl


def become_shim(conn_fd, argv):
    """In the grandchild: turn into the shim of ``argv``; never returns."""
    try:
        if PRCTL(server.PR_SET_CHILD_SUBREAPER, 1, 0, 0, 0) != 0:
            raise OSError(ctypes.get_errno(), "prctl(PR_SET_CHILD_SUBREAPER)")
        state = argv[0]
        null = os.open("/dev/null", os.O_RDWR)
        err = os.open(os.path.join(state, "shim.log"), os.O_WRONLY | os.O_APPEND | os.O_CREAT,
                      0o600)
        conn = os.dup(conn_fd)
        os.dup2(null, 0)
        os.dup2(null, 1)
        os.dup2(err, 2)
        os.dup2(conn, 3)
        os.closerange(4, 1 << 16)
        reset_signals()
        _signal.signal(_signal.SIGPIPE, _signal.SIG_IGN)   # as a fresh interpreter has it
        # the executor recognises its shim by its cwd (the cmdline is the zygote's)
        os.chdir(state)
        gc.enable()
    except BaseException as exc:
        try:
            os.write(conn_fd, ("error CoreError starting the shim: %s\n" % exc).encode())
        except OSError:
            pass
        os._exit(1)
    server.serve(3, argv)
    os._exit(0)


def handle(listener, conn_fd):
    """One create request on ``conn_fd`` (blocking, bounded)."""
    data = b""
    try:
        select.select([conn_fd], [], [], 5)
        while not data.endswith(b"\n"):
            chunk = os.read(conn_fd, 65536)
            if not chunk:
                return
            data += chunk
        argv = [str(a) for a in json.loads(data)]
    except (OSError, ValueError, TypeError):
        return
    pid = os.fork()
    if pid == 0:
        try:
            listener.detach()
            os.setsid()
            if os.fork() == 0:
                become_shim(conn_fd, argv)
        finally:
            os._exit(0)
    try:
        os.waitpid(pid, 0)
    except ChildProcessError:
        pass


def main(path, helper_path, helper_module):
    if helper_path not in sys.path:
        sys.path.insert(0, helper_path)
    __import__(helper_module, fromlist=["main"])   # forked shims run it without starting Python
    server.HELPER_PATH, server.HELPER_MODULE = helper_path, helper_module
    _signal.signal(_signal.SIGPIPE, _signal.SIG_IGN)
    try:
        os.unlink(path)
    except FileNotFoundError:
        pass
    listener = _socket.socket(_socket.AF_UNIX, _socket.SOCK_STREAM)
    bind, dfd = server.sock_path(path)
    listener.bind(bind)
    if dfd >= 0:
        os.close(dfd)
    os.chmod(path, 0o600)
    listener.listen(64)
    lfd = listener.fileno()
    gc.collect()
    gc.disable()
    gc.freeze()
    os.write(1, b"ready\n")
    null = os.open("/dev/null", os.O_WRONLY)
    os.dup2(null, 1)
    os.close(null)
    poll = select.poll()
    poll.register(0, select.POLLIN)
    poll.register(lfd, select.POLLIN)
    while True:
        try:
            events = poll.poll()
        except InterruptedError:
            continue
        for fd, _ev in events:
            if fd == 0:
                try:
                    if os.read(0, 4096):
                        continue
                except OSError:
                    pass
                os._exit(0)
            try:
                conn_fd, _ = listener._accept()
            except OSError:
                continue
            try:
                handle(listener, conn_fd)
            finally:
                os.close(conn_fd)


if __name__ == "__main__":
    main(sys.argv[1], sys.argv[2], sys.argv[3])
