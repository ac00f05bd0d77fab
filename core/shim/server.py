"""The shim program: one small supervisor per container, independent of the daemon.

See :mod:`core.shim` for what it does and its protocol (argv, socket messages, state files,
log format, exit records, the runtime helper's contract).  Run by an executor (through
:class:`core.shim.executor.ShimExecutor`) as::

    python -I -S server.py --helper-path PATH --helper-module MODULE \
        STATE ID BUNDLE TERMINAL STDIN STDIN_ONCE WIDTH HEIGHT LOG SOCKET

(the *launcher*), or forked by the warm spawner (:mod:`core.shim.zygote`).  It is what stays
in memory for every running container, so it imports only C modules (``os``, ``select``,
``fcntl``, ``termios``, ``_signal``, ``_socket``, ``_json``) and no ``core`` code: in a shim
it is the top-level module ``server``, with :mod:`core.shim.stdio` (each process's stdio and
each client connection) as ``stdio``, both imported from their own directory.  This module is
the reactor, the container's lifecycle, the requests, the launcher and ``serve``.

The launcher calls ``setsid`` and forks; the child sets ``PR_SET_CHILD_SUBREAPER`` (with ctypes,
then execs a fresh interpreter: the flag survives execve, ctypes does not stay in memory) and
becomes the shim; the launcher waits on a pipe for the shim's verdict on the container's
creation, prints ``ok`` or ``error <Kind> <message>`` and exits — the shim is left re-parented
to init, in a session of its own: killing the daemon or its process group does not reach it.

The shim creates the stdio pipes (with a terminal, the runtime helper opens the pty inside the
container and sends the master back), the *sync* socket and the *start* pipe; spawns the
runtime helper (``init``) and waits for ``created``; listens on its socket; writes ``shim.pid``
and ``init.pid``; appends the container's output to the log, serves attachers, forwards stdin,
reaps, and when the init has exited and its output is drained writes ``exit.json``, answers
its waiters and exits.  Exec'd processes are spawned the same way (``exec``).
"""
import os
import sys
import select
import time
import _signal
import _socket

if __package__:         # imported as core.shim.server (the daemon's side)
    from core.shim import stdio
else:                   # the launcher, a shim: top-level modules of this directory
    if __name__ == "__main__":
        sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
    import stdio
Conn, Proc, frame, jdump, set_nonblock, sock_path, winsize, write_atomic = (
    stdio.Conn, stdio.Proc, stdio.frame, stdio.jdump, stdio.set_nonblock, stdio.sock_path,
    stdio.winsize, stdio.write_atomic)
HIGH_WATER, EXEC_KEEP, MALLOC_TUNABLES, PR_SET_CHILD_SUBREAPER, PY = (
    stdio.HIGH_WATER, stdio.EXEC_KEEP, stdio.MALLOC_TUNABLES, stdio.PR_SET_CHILD_SUBREAPER, stdio.PY)

# The runtime helper: the module ``HELPER_MODULE`` (with a ``main(argv) -> int``), importable
# from ``HELPER_PATH``; set by ``serve`` (from the launcher's argv) or by the zygote.  The helper
# is imported (its compiled form cached in __pycache__), not run as a script.
HELPER_PATH = None
HELPER_MODULE = None


class Shim:
    """The supervisor of one container: a poll(2) reactor over the processes' output and input,
    the sync sockets, the signal wake-up pipe and the clients; the requests (``do_*``)."""

    def __init__(self, argv):
        self.helper = (HELPER_PATH, HELPER_MODULE)
        (self.state, self.id, self.bundle, terminal, stdin, stdin_once, width, height,
         log, self.sock_file) = argv
        self.handlers = {}          # fd -> (on_read, on_write or None)
        self.registered = {}
        self.poll = select.poll()
        self.conns = set()
        self.execs = {}
        self.unclaimed = {}         # pid -> exit code of children reaped before we knew them
        self.replay_total = 0
        self.helpers = {}           # helper pid -> Proc
        self.verdict_fd = -1
        self.phase = "creating"     # creating, created, running, stopped
        self.done = False
        self.delete_conn = None
        self.deadline = None
        log_fd = -1
        if log != "-":
            os.makedirs(os.path.dirname(log), exist_ok=True)
            log_fd = os.open(log, os.O_WRONLY | os.O_APPEND | os.O_CREAT | os.O_CLOEXEC, 0o640)
        self.init = Proc(self, None, terminal == "1", stdin == "1", stdin_once == "1",
                         int(width), int(height), log_fd)
        self.start_r, self.start_w = os.pipe()
        r, w = os.pipe()
        set_nonblock(r)
        set_nonblock(w)
        self.wake_r = r
        _signal.set_wakeup_fd(w)
        _signal.signal(_signal.SIGCHLD, lambda s, f: None)
        _signal.signal(_signal.SIGHUP, _signal.SIG_IGN)
        _signal.signal(_signal.SIGTERM, _signal.SIG_IGN)
        self.watch(r, self.on_signal)

    # ------------------------------------------------------------------ reactor
    def watch(self, fd, on_read, on_write=None):
        self.handlers[fd] = (on_read, on_write)

    def interest(self, fd, on_read, on_write):
        """Watch ``fd`` only while there is something to do: an fd registered for no event
        still reports POLLHUP/POLLERR, and would spin the loop."""
        if on_read is None and on_write is None:
            self.handlers.pop(fd, None)
        else:
            self.handlers[fd] = (on_read, on_write)

    def forget(self, fd):
        self.handlers.pop(fd, None)
        if fd in self.registered:
            del self.registered[fd]
            self.poll.unregister(fd)

    def procs(self):
        return [self.init] + list(self.execs.values())

    def loop(self):
        while not self.done:
            for p in self.procs():
                blocked = any(len(c.outbuf) > HIGH_WATER for c in p.attachers)
                for fd in p.outs:
                    rd = None if blocked else p.reader(fd)
                    wr = p.flush_stdin if fd == p.stdin_fd and p.stdin_buf else None
                    self.interest(fd, rd, wr)
                if p.stdin_fd >= 0 and p.stdin_fd not in p.outs:
                    self.interest(p.stdin_fd, None, p.flush_stdin if p.stdin_buf else None)
            for c in list(self.conns):
                if c.closing and not c.outbuf:
                    c.close()
                    continue
                full = c.proc is not None and len(c.proc.stdin_buf) > HIGH_WATER
                self.interest(c.fd, None if c.closing or full else c.on_read,
                              c.flush if c.outbuf else None)
            for fd in list(self.registered):
                if fd not in self.handlers:
                    del self.registered[fd]
                    self.poll.unregister(fd)
            for fd, (rd, wr) in self.handlers.items():
                ev = (select.POLLIN if rd else 0) | (select.POLLOUT if wr else 0)
                old = self.registered.get(fd)
                if old is None:
                    self.poll.register(fd, ev)
                    self.registered[fd] = ev
                elif old != ev:
                    self.poll.modify(fd, ev)
                    self.registered[fd] = ev
            timeout = None
            if self.deadline is not None:
                timeout = max(0, int((self.deadline - time.monotonic()) * 1000))
            try:
                events = self.poll.poll(timeout)
            except InterruptedError:
                continue
            for fd, ev in events:
                h = self.handlers.get(fd)
                if h is None:
                    continue
                rd, wr = h
                if ev & (select.POLLIN | select.POLLHUP | select.POLLERR | select.POLLNVAL):
                    if rd is not None:
                        rd()
                    elif wr is not None:
                        wr()
                elif ev & select.POLLOUT and wr is not None:
                    wr()
            if self.deadline is not None and time.monotonic() >= self.deadline:
                self.on_deadline()

    # ------------------------------------------------------------------ children
    def on_signal(self):
        try:
            while os.read(self.wake_r, 512):
                pass
        except OSError:
            pass
        while True:
            try:
                pid, status = os.waitpid(-1, os.WNOHANG)
            except ChildProcessError:
                return
            if pid == 0:
                return
            code = os.waitstatus_to_exitcode(status)
            code = 128 - code if code < 0 else code
            if pid in self.helpers:
                p = self.helpers.pop(pid)
                if code != 0 and p.error is None and not p.pid:
                    p.error = ("CoreError", "the runtime helper exited with %d" % code)
                continue
            for p in self.procs():
                if p.pid == pid:
                    self.exited(p, code)
                    break
            else:
                self.unclaimed[pid] = code

    def exited(self, p, code):
        p.status = code
        p.finished_at = time.time()
        if p is self.init:
            self.kill_cgroup()
        if not p.ended:
            # a process that escaped (no PID namespace, a daemonised child of an exec) may
            # hold the output open: wait for it a bounded time
            p.drain_by = time.monotonic() + (5 if p is self.init else 1)
            self.deadline = min(self.deadline or p.drain_by, p.drain_by)
        self.check_done(p)

    def kill_cgroup(self):
        try:
            with open(os.path.join(self.state, "cgroup")) as f:
                lines = f.read().splitlines()
            path = lines[1].split(" ", 1)[1]
            with open(os.path.join(path, "cgroup.procs")) as f:
                pids = [int(x) for x in f.read().split()]
        except (OSError, IndexError, ValueError):
            return
        for pid in pids:
            try:
                os.kill(pid, 9)
            except OSError:
                pass

    def on_deadline(self):
        now = time.monotonic()
        self.deadline = None
        for name, p in list(self.execs.items()):
            if p.drop_at is not None:
                if p.drop_at <= now and not p.attachers:
                    self.forget_replay(p)
                    del self.execs[name]
                else:
                    self.deadline = min(self.deadline or p.drop_at, max(p.drop_at, now + 1))
        for p in self.procs():
            if p.drain_by is None or p.ended:
                continue
            if p.drain_by <= now:
                for fd in list(p.outs):
                    self.forget(fd)
                    os.close(fd)
                p.outs.clear()
                p.stdin_fd = -1 if p.stdin_fd == p.master else p.stdin_fd
                p.end_output()
            else:
                self.deadline = min(self.deadline or p.drain_by, p.drain_by)

    # ------------------------------------------------------------------ sync socket
    def on_sync(self, p):
        try:
            data, anc, _flags, _addr = p.sync.recvmsg(4096, _socket.CMSG_SPACE(4 * 4))
        except BlockingIOError:
            return
        except OSError:
            data, anc = b"", []
        for level, kind, cdata in anc:
            if level == _socket.SOL_SOCKET and kind == _socket.SCM_RIGHTS:
                for i in range(0, len(cdata) - len(cdata) % 4, 4):
                    fd = int.from_bytes(cdata[i:i + 4], sys.byteorder, signed=True)
                    os.set_inheritable(fd, False)
                    if p.master < 0 and p.status is None:
                        p.got_console(fd)
                    else:
                        os.close(fd)
        if data:
            p.sync_buf += data
            while b"\n" in p.sync_buf:
                line, _, rest = bytes(p.sync_buf).partition(b"\n")
                p.sync_buf = bytearray(rest)
                self.on_sync_line(p, line.decode("utf-8", "replace"))
            return
        self.forget(p.sync_fd)
        p.sync.close()
        p.sync_fd = -1
        if p is self.init and self.phase == "creating":
            self.creation_failed(p.error or ("CoreError", "the container's init exited before "
                                             "it was created"))
            return
        if p.error is not None and not p.pid and p.status is None:
            # the helper failed before forking the process: it "exited" with the error
            p.status = 127 if p.error[0] in ("NotFound", "ProgramNotFound") else 126
            p.finished_at = time.time()
            self.check_done(p)
        if p.requester is not None:
            conn, p.requester = p.requester, None
            if p.error is not None:
                conn.fail(*p.error)
            elif not p.pid:
                conn.fail("CoreError", "the runtime helper failed")
            else:
                p.started_at = time.time()
                if p is self.init:
                    self.phase = "running"
                    self.write_started()
                conn.answer({"pid": p.pid})
            if p is self.init:
                self.check_done(p)

    def on_sync_line(self, p, line):
        word, _, rest = line.partition(" ")
        if word == "pid":
            p.pid = int(rest)
            if p.pid in self.unclaimed:
                self.exited(p, self.unclaimed.pop(p.pid))
            if p is self.init:
                write_atomic(os.path.join(self.state, "init.pid"), str(p.pid))
        elif word == "created" and p is self.init:
            self.created()
        elif word == "error":
            kind, _, message = rest.partition(" ")
            p.error = (kind, message)
            if p is self.init and self.phase == "creating":
                self.creation_failed(p.error)

    # ------------------------------------------------------------------ lifecycle
    def create(self, verdict_fd):
        self.verdict_fd = verdict_fd
        path, dfd = sock_path(self.sock_file)
        try:
            os.unlink(self.sock_file)
        except FileNotFoundError:
            pass
        self.listener = _socket.socket(_socket.AF_UNIX, _socket.SOCK_STREAM)
        self.listener.bind(path)
        if dfd >= 0:
            os.close(dfd)
        os.chmod(self.sock_file, 0o600)
        self.listener.listen(64)
        self.listener.setblocking(False)
        self.watch(self.listener.fileno(), self.on_accept)
        pid = self.init.spawn(["init", self.state, self.bundle, self.id,
                               str(self.init.size[0]), str(self.init.size[1])], self.start_r)
        os.close(self.start_r)
        self.helpers[pid] = self.init
        self.watch(self.init.sync_fd, lambda: self.on_sync(self.init))

    def verdict(self, text):
        if self.verdict_fd >= 0:
            try:
                os.write(self.verdict_fd, text.encode("utf-8", "replace"))
            except OSError:
                pass
            os.close(self.verdict_fd)
            self.verdict_fd = -1

    def created(self):
        self.phase = "created"
        self.verdict("ok\n")

    def creation_failed(self, error):
        self.phase = "stopped"
        if self.init.running():
            try:
                os.kill(self.init.pid, 9)
            except OSError:
                pass
        self.verdict("error %s %s\n" % error)
        self.done = True

    def write_started(self):
        write_atomic(os.path.join(self.state, "started"), repr(self.init.started_at))

    def check_done(self, p):
        if p.status is None or not p.ended:
            return
        if p is not self.init:
            if p.done:
                return
            p.done = True
            write_atomic(os.path.join(self.state, "exec-%s.exit" % p.name),
                         jdump({"exit_code": p.status, "finished_at": p.finished_at}))
            for conn in p.waiters:
                conn.answer({"exit_code": p.status})
            p.waiters = []
            # forget it (execs are many: health checks): at once when its output was taken,
            # else after a while for a late attacher to collect it
            p.drop_at = time.monotonic() + (0 if p.replay is None else EXEC_KEEP)
            self.deadline = min(self.deadline or p.drop_at, p.drop_at)
            return
        if self.phase == "stopped":
            return
        if p.requester is not None and p.sync_fd >= 0:
            # a start is being answered: its answer (an error, when the program could not be
            # run) comes with the end of the sync socket, which the process's exit may close
            # after its output: stop once it is given (on_sync)
            return
        self.phase = "stopped"
        for q in self.execs.values():       # the PID namespace is gone: so are they
            if q.status is None and q.pid:
                try:
                    os.kill(q.pid, 9)
                except OSError:
                    pass
        status = self.exit_status()
        write_atomic(os.path.join(self.state, "exit.json"), jdump(status))
        for conn in p.waiters:
            conn.answer(status)
        p.waiters = []
        self.shutdown()

    def exit_status(self):
        p = self.init
        return {"exit_code": p.status, "oom_killed": self.oom_killed(),
                "started_at": p.started_at, "finished_at": p.finished_at, "pid": p.pid}

    def oom_killed(self):
        try:
            with open(os.path.join(self.state, "cgroup")) as f:
                lines = f.read().splitlines()
            version = lines[0].split()[1]
            paths = dict(line.split(" ", 1) for line in lines[1:])
            if version == "2":
                name, base = "memory.events", paths["-"]
            else:
                base = next(v for k, v in paths.items() if "memory" in k.split(","))
                name = "memory.oom_control"
            with open(os.path.join(base, name)) as f:
                for line in f:
                    k, _, v = line.partition(" ")
                    if k == "oom_kill":
                        return int(v) > 0
        except (OSError, StopIteration, IndexError, ValueError, KeyError):
            pass
        return False

    def shutdown(self):
        """Everything has exited and is drained: flush the clients, then go."""
        try:
            os.unlink(self.sock_file)
        except OSError:
            pass
        self.forget(self.listener.fileno())
        self.listener.close()
        if self.delete_conn is not None:
            self.delete_conn.answer({})
        end = time.monotonic() + 5
        for c in list(self.conns):
            c.closing = True
            c.flush()
        while self.conns and time.monotonic() < end:
            for c in list(self.conns):
                if c.outbuf:
                    try:
                        select.select([], [c.fd], [], max(0.0, end - time.monotonic()))
                    except OSError:
                        pass
                c.flush()
                if not c.outbuf:
                    c.close()
        self.done = True

    # ------------------------------------------------------------------ clients
    def on_accept(self):
        while True:
            try:
                fd, _ = self.listener._accept()
            except (BlockingIOError, InterruptedError):
                return
            except OSError:
                return
            os.set_inheritable(fd, False)
            set_nonblock(fd)
            c = Conn(self, fd)
            self.conns.add(c)

    def on_frame(self, conn, kind, payload):
        if kind == b"0":
            if conn.proc is not None:
                conn.wrote_stdin = True
                conn.proc.write_stdin(payload)
            return
        if kind == b"c":
            if conn.proc is not None:
                conn.wrote_stdin = True
                conn.proc.request_close_stdin()
            return
        if kind != b"?":
            conn.fail("InvalidArgument", "unknown frame")
            return
        words = payload.decode("ascii", "replace").split()
        if not words:
            conn.fail("InvalidArgument", "empty request")
            return
        handler = getattr(self, "do_" + words[0].replace("-", "_"), None)
        if handler is None:
            conn.fail("InvalidArgument", "unknown request %r" % words[0])
            return
        try:
            handler(conn, *words[1:])
        except TypeError:
            conn.fail("InvalidArgument", "bad arguments for %s" % words[0])
        except OSError as exc:
            conn.fail("CoreError", "%s: %s" % (words[0], exc))

    def forget_replay(self, p):
        if p.replay is not None:
            self.replay_total -= p.replay_size
            p.replay, p.replay_size = None, 0

    def proc_of(self, conn, exec_id):
        if exec_id is None:
            return self.init
        p = self.execs.get(exec_id)
        if p is None:
            if os.path.exists(os.path.join(self.state, "exec-%s.exit" % exec_id)):
                conn.fail("Conflict", "exec %s is not running" % exec_id)
            else:
                conn.fail("NotFound", "no such exec: %s" % exec_id)
        return p

    def do_debug(self, conn):
        import gc
        counts = {}
        for o in gc.get_objects():
            counts[type(o).__name__] = counts.get(type(o).__name__, 0) + 1
        top = sorted(counts.items(), key=lambda kv: -kv[1])[:15]
        conn.answer({"execs": len(self.execs), "helpers": len(self.helpers),
                     "unclaimed": len(self.unclaimed), "handlers": len(self.handlers),
                     "registered": len(self.registered), "conns": len(self.conns),
                     "objects": len(gc.get_objects()), "top": [list(t) for t in top]})

    def do_state(self, conn):
        p = self.init
        conn.answer({"status": self.phase, "pid": p.pid, "started_at": p.started_at,
                     "exit_code": p.status, "finished_at": p.finished_at})

    def do_start(self, conn):
        if self.phase != "created" or self.init.requester is not None:
            conn.fail("Conflict", "container %s is %s" % (self.id, "already started"
                      if self.phase in ("created", "running") else self.phase))
            return
        if not self.init.running():
            conn.fail("Conflict", "container %s is not running" % self.id)
            return
        self.init.requester = conn
        os.write(self.start_w, b"1")
        os.close(self.start_w)
        self.start_w = -1

    def do_kill(self, conn, sig):
        p = self.init
        if not p.running():
            conn.fail("Conflict", "container %s is not running" % self.id)
            return
        os.kill(p.pid, int(sig))
        conn.answer({})

    def do_wait(self, conn, exec_id=None):
        p = self.proc_of(conn, exec_id)
        if p is None:
            return
        if p.status is not None and p.ended and (p is not self.init or self.phase == "stopped"):
            conn.answer(self.exit_status() if p is self.init else {"exit_code": p.status})
            return
        p.waiters.append(conn)

    def do_attach(self, conn, exec_id=None):
        p = self.proc_of(conn, exec_id)
        if p is None:
            return
        if p.ended and not p.replay:
            conn.fail("Conflict", "%s %s is not running" % ("exec" if exec_id else "container",
                                                           exec_id or self.id))
            return
        conn.proc = p
        conn.answer({})
        if p.replay:
            conn.send(p.replay)
        self.forget_replay(p)
        if p.ended:
            conn.closing = True
            conn.flush()
            if p.done:          # its output is taken: nothing left to remember
                p.drop_at = time.monotonic()
                self.deadline = p.drop_at
            return
        p.attachers.append(conn)

    def do_resize(self, conn, width, height, exec_id=None):
        p = self.proc_of(conn, exec_id)
        if p is None:
            return
        if p.master >= 0:
            winsize(p.master, int(width), int(height))
        conn.answer({})

    def do_exec(self, conn, exec_id, terminal, stdin, stdin_once, width, height):
        if self.phase != "running" or not self.init.running():
            conn.fail("Conflict", "container %s is not running" % self.id)
            return
        if exec_id in self.execs:
            conn.fail("AlreadyExists", "exec %s already exists" % exec_id)
            return
        p = Proc(self, exec_id, terminal == "1", stdin == "1", stdin_once == "1",
                 int(width), int(height))
        self.execs[exec_id] = p
        p.requester = conn
        pid = p.spawn(["exec", self.state, exec_id, str(self.init.pid), width, height])
        self.helpers[pid] = p
        self.watch(p.sync_fd, lambda: self.on_sync(p))

    def do_delete(self, conn):
        if self.phase == "running" and self.init.running():
            conn.fail("Conflict", "container %s is running" % self.id)
            return
        self.delete_conn = conn
        if self.init.running():
            os.kill(self.init.pid, 9)
        if self.phase == "stopped" and not self.done:
            self.shutdown()


SERVE_CODE = ("import sys; sys.path.insert(0, sys.argv[1]); import server; "
              "server.serve(int(sys.argv[4]), sys.argv[5:], sys.argv[2], sys.argv[3])")


def launch(argv, helper_path, helper_module):
    """The launcher: detach the shim for ``argv`` (``STATE ID BUNDLE ...``) with the runtime
    helper ``helper_module`` (importable from ``helper_path``), print its verdict on the
    container's creation (``ok`` or ``error <Kind> <message>``), exit 0 on ``ok``."""
    state = argv[0]
    try:
        os.setsid()
    except OSError:
        pass
    r, w = os.pipe()
    pid = os.fork()
    if pid:
        os.close(w)
        chunks = []
        while True:
            data = os.read(r, 4096)
            if not data:
                break
            chunks.append(data)
        out = b"".join(chunks).decode("utf-8", "replace") or "error CoreError the shim died\n"
        sys.stdout.write(out)
        sys.stdout.flush()
        os._exit(0 if out.startswith("ok") else 1)
    try:
        os.close(r)
        null = os.open("/dev/null", os.O_RDWR)
        os.dup2(null, 0)
        os.dup2(null, 1)
        err = os.open(os.path.join(state, "shim.log"), os.O_WRONLY | os.O_APPEND | os.O_CREAT,
                      0o600)
        os.dup2(err, 2)
        os.close(null)
        os.close(err)
        # The subreaper flag needs prctl(2), so ctypes; it survives execve, so set it and
        # start afresh: the long-lived shim never holds ctypes in memory.
        import ctypes
        if ctypes.CDLL(None, use_errno=True).prctl(PR_SET_CHILD_SUBREAPER, 1, 0, 0, 0) != 0:
            raise OSError(ctypes.get_errno(), "prctl(PR_SET_CHILD_SUBREAPER)")
        os.set_inheritable(w, True)
        # imported, not run as a script: the compiled module comes from __pycache__ and the
        # shim never pays for compiling itself (~2 MB of heap that would stay)
        here = os.path.dirname(os.path.abspath(__file__))
        # glibc: buffers of 32 KiB and more are mmap'ed, so that they go back to the system
        # when freed (a burst of output must not leave the shim bigger for the rest of its life)
        env = dict(os.environ)
        env["GLIBC_TUNABLES"] = MALLOC_TUNABLES
        os.execve(PY, [PY, "-I", "-S", "-c", SERVE_CODE, here, helper_path, helper_module,
                       str(w)] + argv, env)
    except BaseException as exc:
        os.write(w, ("error CoreError starting the shim: %s\n" % exc).encode())
    os._exit(1)


def serve(verdict_fd, argv, helper_path=None, helper_module=None):
    """Be the shim of ``argv``; the verdict goes to ``verdict_fd``.  Never returns."""
    global HELPER_PATH, HELPER_MODULE
    if helper_module:
        HELPER_PATH, HELPER_MODULE = helper_path, helper_module
    os.set_inheritable(verdict_fd, False)
    try:
        write_atomic(os.path.join(argv[0], "shim.pid"), str(os.getpid()))
        shim = Shim(argv)
        shim.create(verdict_fd)
    except BaseException as exc:
        os.write(verdict_fd, ("error CoreError starting the shim: %s\n" % exc).encode())
        os._exit(1)
    try:
        shim.loop()
    except BaseException as exc:
        sys.stderr.write("shim: %s: %s\n" % (type(exc).__name__, exc))
        shim.verdict("error CoreError the shim failed: %s\n" % exc)
        os._exit(1)
    os._exit(0)


USAGE = ("usage: server.py --helper-path PATH --helper-module MODULE "
         "STATE ID BUNDLE TERMINAL STDIN STDIN_ONCE WIDTH HEIGHT LOG SOCKET\n")


if __name__ == "__main__":
    args = sys.argv[1:]
    if len(args) != 14 or args[0] != "--helper-path" or args[2] != "--helper-module":
        sys.stderr.write(USAGE)
        sys.exit(2)
    launch(args[4:], args[1], args[3])
