"""The shim's processes and clients: one process's stdio and life (:class:`Proc`), one
connection on the shim's socket (:class:`Conn`), and the small formats they share (frames, the
json-file log line, atomic state files).

Part of the shim program (:mod:`core.shim.server`): C modules only, imported as the top-level
module ``stdio`` in a shim (the daemon's side imports it as ``core.shim.stdio`` for constants).
"""
import os
import sys
import time
import fcntl
import termios
import _signal
import _socket
from _json import encode_basestring as _jstr

PY = sys.executable
LOG_SPLIT = 16 * 1024
HIGH_WATER = 1 << 20
REPLAY_MAX = 256 << 10       # per exec, output kept for its first attacher ...
REPLAY_TOTAL = 2 << 20       # ... and for all execs together
EXEC_KEEP = 30.0             # seconds an exec nobody attached to is remembered after it ended
MALLOC_TUNABLES = "glibc.malloc.mmap_threshold=32768:glibc.malloc.trim_threshold=65536"
PR_SET_CHILD_SUBREAPER = 36


CORE_ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))


def helper_code(path, module):
    """The ``python -c`` source that runs the runtime helper ``module`` (from ``path``); core's
    own directory comes after it, so a helper may import the kit's standard-library modules
    (:mod:`core.shim.cgroups`, :mod:`core.shim.lookup`)."""
    return ("import sys; sys.path.insert(0, %r); sys.path.append(%r); "
            "sys.exit(__import__(%r, fromlist=['main']).main(sys.argv))" % (path, CORE_ROOT, module))


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
                helper_path, helper_module = self.shim.helper
                rt = sys.modules.get(helper_module)
                if rt is not None:
                    # forked by the zygote: the runtime is imported already, run it here
                    _signal.set_wakeup_fd(-1)
                    _signal.signal(_signal.SIGCHLD, _signal.SIG_DFL)
                    os.closerange(len(fds), 1 << 16)
                    os._exit(rt.main(["runtime.py"] + argv))
                os.closerange(len(fds), 1 << 16)
                os.execv(PY, [PY, "-I", "-S", "-c", helper_code(helper_path, helper_module)] + argv)
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
