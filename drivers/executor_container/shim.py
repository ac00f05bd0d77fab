"""The shim: one small supervisor per container, independent of the daemon.

Run by the driver as ``python -I -S shim.py STATE ID BUNDLE TERMINAL STDIN STDIN_ONCE WIDTH
HEIGHT LOG SOCKET`` (flags ``0``/``1``; ``LOG`` ``-`` for none).  It is what stays in memory for
every running container, so it imports only C modules (``os``, ``select``, ``fcntl``,
``termios``, ``_signal``, ``_socket``, ``_json``) and no ``core`` code; the runc part runs in
``runtime.py``, a separate program it spawns.

Start-up (the *launcher*): the process the driver runs calls ``setsid`` and forks; the child is
the shim, the launcher waits on a pipe for the shim's verdict on the container's creation,
prints ``ok`` or ``error <Kind> <message>`` and exits — the shim is left re-parented to init, in
a session of its own: killing the daemon or its process group does not reach it.

The shim then: is made a child subreaper (``PR_SET_CHILD_SUBREAPER``, set with ctypes by the
launcher's child, which then execs a fresh interpreter for the shim: the flag survives execve,
ctypes does not stay in memory), so the container's init and exec'd processes, forked by the
runtime helper, become its children; creates the stdio pipes (with a terminal, the runtime
opens the pty inside the container and sends the master back), the *sync* socket and the
*start* pipe; spawns ``runtime.py init`` and waits for ``created``; listens on its socket;
writes ``shim.pid`` and ``init.pid``.  It appends the container's output to the log in docker's json-file format (lines
split at ``\\n`` and at 16 KiB, the rest at end of output), serves attachers, forwards stdin,
reaps, and when the init has exited and its output is drained writes ``exit.json`` atomically
(``{"exit_code", "oom_killed", "started_at", "finished_at", "pid"}``), answers its waiters and
exits.  Exec'd processes are spawned the same way (``runtime.py exec``); their exit codes go to
``exec-<id>.exit``.

Protocol on the unix socket (one connection per request; attach turns it into a stream).
Every message is a frame: 1 byte kind, 4 bytes big-endian length, payload::

    client -> shim   "?" request   ASCII words:  state | start | kill SIG | wait [EXEC] |
                                   attach [EXEC] | resize W H [EXEC] | delete |
                                   exec EXEC TERMINAL STDIN STDIN_ONCE W H |
                                   debug (counts of what the shim holds)
                     "0" stdin data          (attached)
                     "c" close stdin         (attached)
    shim -> client   "=" answer  JSON object
                     "!" error   "<Kind> <message>"   (Kind: NotFound, Conflict, ...)
                     "1" / "2"   stdout / stderr data (attached; with a pty all is "1")
                     "."         end of output (attached)

``exec EXEC ...`` reads the OCI ``process`` from ``exec-EXEC.json``, written by the driver.
An exec's output produced before its first attacher connects is kept (up to 256 KiB each, 2 MiB
for all, until 30 s after it ended) and replayed to that attacher, so ``exec`` then ``attach``
loses nothing; the container's own output before an attach is in the log only: attach before
``start`` to see all of it.  Ended execs are forgotten (their exit code stays in its file).
"""
import os
import sys
import select
import time
import fcntl
import termios
import _signal
import _socket
from _json import encode_basestring as _jstr

HELPER = os.path.join(os.path.dirname(os.path.abspath(__file__)), "runtime.py")
# the helper is imported (its compiled form cached in __pycache__), not run as a script
HELPER_CODE = ("import sys; sys.path.insert(0, %r); "
               "from drivers.executor_container import runtime; sys.exit(runtime.main(sys.argv))"
               % os.path.dirname(os.path.dirname(os.path.dirname(HELPER))))
PY = sys.executable
LOG_SPLIT = 16 * 1024
HIGH_WATER = 1 << 20
REPLAY_MAX = 256 << 10       # per exec, output kept for its first attacher ...
REPLAY_TOTAL = 2 << 20       # ... and for all execs together
EXEC_KEEP = 30.0
MALLOC_TUNABLES = "glibc.malloc.mmap_threshold=32768:glibc.malloc.trim_threshold=65536"             # seconds an exec nobody attached to is remembered after it ended
PR_SET_CHILD_SUBREAPER = 36


def jdump(obj):
    """A small JSON encoder (the json package costs memory: it imports re)."""
    if obj is None:
        return "null"
    if obj is True:
        return "true"
    if obj is False:
        return "false"
    if isinstance(obj, (int, float)):
        return repr(obj)
    if isinstance(obj, str):
        return _jstr(obj)
    if isinstance(obj, dict):
        return "{" + ",".join(_jstr(k) + ":" + jdump(v) for k, v in obj.items()) + "}"
    return "[" + ",".join(jdump(v) for v in obj) + "]"


def timestamp(ns):
    """RFC 3339 with nanoseconds, always 9 digits (docker's jsonlog: RFC3339NanoFixed)."""
    sec, frac = divmod(ns, 1000000000)
    t = time.gmtime(sec)
    return "%04d-%02d-%02dT%02d:%02d:%02d.%09dZ" % (t[0], t[1], t[2], t[3], t[4], t[5], frac)


def frame(kind, payload):
    return kind + len(payload).to_bytes(4, "big") + payload


def write_atomic(path, text):
    """Replace ``path`` whole.  Not fsync'ed: this is runtime state (``/run``), which a host
    crash makes moot — every container ends with it — and a killed process cannot lose."""
    tmp = path + ".tmp"
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC | os.O_CLOEXEC, 0o600)
    try:
        os.write(fd, text.encode())
    finally:
        os.close(fd)
    os.rename(tmp, path)


def set_nonblock(fd):
    os.set_blocking(fd, False)


def winsize(fd, width, height):
    try:
        data = b"".join(v.to_bytes(2, sys.byteorder) for v in (height, width, 0, 0))
        fcntl.ioctl(fd, termios.TIOCSWINSZ, data)
    except OSError:
        pass


def sock_path(path):
    """A path connect/bind accept: long ones go through /proc/self/fd/<dir fd>/<name>."""
    if len(path.encode()) < 100:
        return path, -1
    dfd = os.open(os.path.dirname(path), os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)
    return "/proc/self/fd/%d/%s" % (dfd, os.path.basename(path)), dfd


class Proc:
    """The stdio and life of one process: the container's init or an exec."""

    def __init__(self, shim, name, terminal, stdin, stdin_once, width, height, log_fd=-1):
        self.shim, self.name = shim, name
        self.terminal, self.stdin_once = terminal, stdin_once
        self.pid = 0
        self.status = None          # exit code once reaped
        self.outs = {}              # fd -> stream number
        self.stdin_fd = -1
        self.stdin_buf = bytearray()
        self.stdin_close = False
        self.log_fd = log_fd
        self.partial = {1: bytearray(), 2: bytearray()}
        self.attachers = []
        # execs: output kept for the first attacher, as frames in one buffer (one block: it
        # goes back to the system whole when freed)
        self.replay = None if name is None else bytearray()
        self.replay_size = 0
        self.sync_fd = -1
        self.sync_buf = bytearray()
        self.requester = None       # the conn waiting for start/exec's answer
        self.error = None
        self.waiters = []
        self.started_at = 0.0
        self.finished_at = 0.0
        self.ended = False          # output drained
        self.master = -1
        self.readers = {}
        self.drain_by = None        # monotonic time after which output is no longer awaited
        self.size = (width, height)
        self.want_stdin = stdin
        self.done = False           # exit recorded
        self.drop_at = None         # execs: when the shim forgets it
        if terminal:
            # the pty is opened inside the container (its own devpts) by the runtime, which
            # sends us the master over the sync socket ("console" + SCM_RIGHTS)
            null = os.open("/dev/null", os.O_RDWR | os.O_CLOEXEC)
            self.child_fds = (null, null, null)
        else:
            if stdin:
                r, w = os.pipe()
                set_nonblock(w)
                self.stdin_fd = w
                cin = r
            else:
                cin = os.open("/dev/null", os.O_RDONLY | os.O_CLOEXEC)
            o_r, o_w = os.pipe()
            e_r, e_w = os.pipe()
            set_nonblock(o_r)
            set_nonblock(e_r)
            self.outs[o_r] = 1
            self.outs[e_r] = 2
            self.child_fds = (cin, o_w, e_w)

    def got_console(self, master):
        set_nonblock(master)
        self.master = master
        self.outs[master] = 1
        if self.want_stdin:
            self.stdin_fd = master

    def spawn(self, argv, start_r=-1):
        """Fork the runtime helper with our stdio on 0-2, the sync socket on 3, start on 4."""
        sync, sync_w = _socket.socketpair(_socket.AF_UNIX, _socket.SOCK_STREAM)
        sync_w = sync_w.detach()
        pid = os.fork()
        if pid == 0:
            try:
                _signal.signal(_signal.SIGHUP, _signal.SIG_DFL)
                _signal.signal(_signal.SIGTERM, _signal.SIG_DFL)
                fds = list(self.child_fds) + [sync_w] + ([start_r] if start_r >= 0 else [])
                high = [fcntl.fcntl(fd, fcntl.F_DUPFD, 16) for fd in fds]  # above 0-4
                for i, fd in enumerate(high):
                    os.dup2(fd, i)
                rt = sys.modules.get("drivers.executor_container.runtime")
                if rt is not None:
                    # forked by the zygote: the runtime is imported already, run it here
                    _signal.set_wakeup_fd(-1)
                    _signal.signal(_signal.SIGCHLD, _signal.SIG_DFL)
                    os.closerange(len(fds), 1 << 16)
                    os._exit(rt.main(["runtime.py"] + argv))
                os.closerange(len(fds), 1 << 16)
                os.execv(PY, [PY, "-I", "-S", "-c", HELPER_CODE] + argv)
            finally:
                os._exit(127)
        os.close(sync_w)
        for fd in set(self.child_fds):
            os.close(fd)
        self.child_fds = ()
        sync.setblocking(False)
        self.sync = sync
        self.sync_fd = sync.fileno()
        return pid

    def running(self):
        return self.pid > 0 and self.status is None

    def reader(self, fd):
        r = self.readers.get(fd)
        if r is None:
            r = self.readers[fd] = lambda: self.on_output(fd)
        return r

    # ------------------------------------------------------------------ output
    def on_output(self, fd):
        try:
            data = os.read(fd, 65536)
        except BlockingIOError:
            return
        except OSError:     # EIO: the pty's slave side is closed everywhere
            data = b""
        stream = self.outs[fd]
        if not data:
            self.shim.forget(fd)
            del self.outs[fd]
            self.readers.pop(fd, None)
            if fd == self.stdin_fd:
                self.stdin_fd = -1
                self.stdin_buf = bytearray()
            os.close(fd)
            self.flush_log(stream, True)
            if not self.outs:
                self.end_output()
            return
        kind = b"1" if stream == 1 else b"2"
        msg = frame(kind, data)
        if self.replay is not None:
            if self.replay_size < REPLAY_MAX and self.shim.replay_total < REPLAY_TOTAL:
                self.replay += msg
                self.replay_size += len(data)
                self.shim.replay_total += len(data)
        for conn in self.attachers:
            conn.send(msg)
        if self.log_fd >= 0:
            buf = self.partial[stream]
            buf += data
            self.flush_log(stream, False)

    def flush_log(self, stream, final):
        if self.log_fd < 0:
            return
        buf = self.partial[stream]
        name = "stdout" if stream == 1 else "stderr"
        lines = []
        now = timestamp(time.time_ns())
        while buf:
            nl = buf.find(b"\n", 0, LOG_SPLIT)
            if nl >= 0:
                chunk = bytes(buf[:nl + 1])
            elif len(buf) >= LOG_SPLIT or final:
                chunk = bytes(buf[:LOG_SPLIT])
            else:
                break
            del buf[:len(chunk)]
            lines.append('{"log":%s,"stream":"%s","time":"%s"}\n'
                         % (_jstr(chunk.decode("utf-8", "replace")), name, now))
        if lines:
            data = "".join(lines).encode()
            try:
                while data:
                    data = data[os.write(self.log_fd, data):]
            except OSError as exc:
                sys.stderr.write("shim: log: %s\n" % exc)

    def end_output(self):
        self.ended = True
        self.stdin_close = True
        self.close_stdin()
        if self.replay is not None:
            self.replay += frame(b".", b"")
        for conn in self.attachers:
            conn.closing = True
            conn.send(frame(b".", b""))
        self.attachers = []
        self.shim.check_done(self)

    # ------------------------------------------------------------------ input
    def write_stdin(self, data):
        if self.stdin_fd < 0 or self.stdin_close:
            return
        self.stdin_buf += data
        self.flush_stdin()

    def flush_stdin(self):
        while self.stdin_buf and self.stdin_fd >= 0:
            try:
                n = os.write(self.stdin_fd, self.stdin_buf[:65536])
            except BlockingIOError:
                break
            except OSError:     # EPIPE: the process closed its stdin
                self.stdin_buf = bytearray()
                break
            del self.stdin_buf[:n]
        if self.stdin_close and not self.stdin_buf:
            self.close_stdin()

    def request_close_stdin(self):
        if self.stdin_fd < 0:
            return
        if self.terminal:       # a pty has no end of file: send the EOF character
            if not self.stdin_close:
                self.stdin_buf += b"\x04"
                self.flush_stdin()
            return
        self.stdin_close = True
        self.flush_stdin()

    def close_stdin(self):
        fd = self.stdin_fd
        if fd < 0 or fd in self.outs or (self.stdin_buf and not self.ended):
            return          # (a pty's master is closed with the output)
        self.stdin_fd = -1
        self.stdin_buf = bytearray()
        self.shim.forget(fd)
        os.close(fd)


class Conn:
    def __init__(self, shim, fd):
        self.shim, self.fd = shim, fd
        self.inbuf = bytearray()
        self.outbuf = bytearray()
        self.proc = None            # attached to
        self.wrote_stdin = False
        self.closing = False
        self.closed = False

    def send(self, data):
        if self.closed:
            return
        self.outbuf += data
        self.flush()

    def flush(self):
        while self.outbuf:
            try:
                n = os.write(self.fd, self.outbuf[:262144])
            except BlockingIOError:
                return
            except OSError:
                self.close()
                return
            del self.outbuf[:n]
        if self.closing:
            self.close()

    def answer(self, obj):
        self.send(frame(b"=", jdump(obj).encode()))
        if self.proc is None:
            self.closing = True
            self.flush()

    def fail(self, kind, message):
        self.send(frame(b"!", ("%s %s" % (kind, message)).encode("utf-8", "replace")))
        self.closing = True
        self.flush()

    def on_read(self):
        try:
            data = os.read(self.fd, 262144)
        except BlockingIOError:
            return
        except OSError:
            data = b""
        if not data:
            self.close()
            return
        self.inbuf += data
        while len(self.inbuf) >= 5:
            size = int.from_bytes(self.inbuf[1:5], "big")
            if size > (4 << 20):
                self.close()
                return
            if len(self.inbuf) < 5 + size:
                break
            kind = bytes(self.inbuf[:1])
            payload = bytes(self.inbuf[5:5 + size])
            del self.inbuf[:5 + size]
            self.shim.on_frame(self, kind, payload)
            if self.closed:
                return

    def close(self):
        if self.closed:
            return
        self.closed = True
        self.shim.forget(self.fd)
        os.close(self.fd)
        self.shim.conns.discard(self)
        p = self.proc
        if p is not None and self in p.attachers:
            p.attachers.remove(self)
            if p.stdin_once and self.wrote_stdin:
                p.request_close_stdin()
        for q in self.shim.procs():
            if self in q.waiters:
                q.waiters.remove(self)


class Shim:
    def __init__(self, argv):
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
            p.status = 127 if p.error[0] == "NotFound" else 126
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


SERVE_CODE = ("import sys; sys.path.insert(0, sys.argv[1]); import shim; "
              "shim.HELPER_CODE = sys.argv[2] or shim.HELPER_CODE; shim.serve(int(sys.argv[3]), sys.argv[4:])")


def launch(argv, helper_code=""):
    """The launcher: detach the shim and print its verdict on the container's creation.

    ``helper_code`` (``shim.py --helper CODE STATE ...``): Python source the shim runs, instead
    of the built-in runtime helper, to create a container or an exec (same argv, same sync
    protocol) — how an out-of-tree executor (``examples/core-runc-executor``) reuses the shim."""
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
        os.execve(PY, [PY, "-I", "-S", "-c", SERVE_CODE, here, helper_code, str(w)] + argv, env)
    except BaseException as exc:
        os.write(w, ("error CoreError starting the shim: %s\n" % exc).encode())
    os._exit(1)


def serve(verdict_fd, argv):
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


if __name__ == "__main__":
    if sys.argv[1:2] == ["--serve"]:
        serve(int(sys.argv[2]), sys.argv[3:])
    elif sys.argv[1:2] == ["--helper"]:
        launch(sys.argv[3:], helper_code=sys.argv[2])
    else:
        launch(sys.argv[1:])
