"""Hijacked attach and exec streams, as the docker CLI drives them.

``POST /containers/{id}/attach`` and ``POST /exec/{id}/start`` are sent with
``Connection: Upgrade`` / ``Upgrade: tcp``; the daemon answers ``101 UPGRADED`` (or ``200``) and
the connection becomes a raw duplex socket:

- without a TTY the output is multiplexed in docker's frames, an 8-byte header
  ``[stream, 0, 0, 0, size (4 bytes, big-endian)]`` then ``size`` bytes of that stream
  (1 stdout, 2 stderr, 3 an error from the daemon); with a TTY it is the pty's raw bytes;
- stdin is copied to the socket from a thread; at its end the write side is shut down
  (``CloseWrite``), which the daemon turns into EOF on the process's stdin.

With a TTY on a terminal, the local terminal is put in raw mode (and always restored); the
detach sequence (``--detach-keys``, default ctrl-p,ctrl-q; spelled as :mod:`core.detachkeys` reads
it) is sent to the daemon as the ``detachKeys`` query parameter and detected here as well, so the
CLI knows the user detached (docker's ``read escape sequence``) rather than the process ending.
SIGWINCH resizes the remote pty (``POST /containers/{id}/resize`` or ``/exec/{id}/resize``).
Without a TTY, ``--sig-proxy`` forwards the signals the CLI receives to the container
(``POST /containers/{id}/kill?signal=...``).

Standard library only, and C modules only (see :mod:`core.cli.lean`): this runs in the CLI.
"""
from __future__ import annotations

import _signal
import _socket
import _thread
import os
import sys

from core import detachkeys
from core.cli import lean
from core.cli.client import CLIError

TYPE_CHECKING = False
if TYPE_CHECKING:
    from typing import Any

ESCAPE_MESSAGE = "read escape sequence"  # moby/term's EscapeError


class EscapeDetector:
    """Watches bytes typed on stdin for the detach sequence (across reads)."""

    def __init__(self, keys: bytes) -> None:
        self.keys = keys
        self.pos = 0

    def feed(self, data: bytes) -> int | None:
        """The offset just past the end of the sequence if ``data`` completes it, else None."""
        if not self.keys:
            return None
        for i, b in enumerate(data):
            if b == self.keys[self.pos]:
                self.pos += 1
                if self.pos == len(self.keys):
                    self.pos = 0
                    return i + 1
            else:
                self.pos = 1 if b == self.keys[0] else 0
        return None


# -- terminal --------------------------------------------------------------------------------------


class RawTerminal:
    """Put a terminal in raw mode (moby/term MakeRaw, i.e. cfmakeraw); ``restore`` is idempotent
    and also runs at exit, so the user's terminal is never left raw."""

    def __init__(self, fd: int) -> None:
        import termios

        self.fd = fd
        self._saved = termios.tcgetattr(fd)
        self._lock = _thread.allocate_lock()
        self._restored = False
        attrs = termios.tcgetattr(fd)
        attrs[0] &= ~(termios.IGNBRK | termios.BRKINT | termios.PARMRK | termios.ISTRIP | termios.INLCR |
                      termios.IGNCR | termios.ICRNL | termios.IXON)
        attrs[1] &= ~termios.OPOST
        attrs[3] &= ~(termios.ECHO | termios.ECHONL | termios.ICANON | termios.ISIG | termios.IEXTEN)
        attrs[2] &= ~(termios.CSIZE | termios.PARENB)
        attrs[2] |= termios.CS8
        attrs[6][termios.VMIN] = 1
        attrs[6][termios.VTIME] = 0
        import atexit

        atexit.register(self.restore)
        # a signal that would end the CLI outright restores the terminal first
        self._handlers: dict[int, Any] = {}
        for signum in (_signal.SIGTERM, _signal.SIGHUP, _signal.SIGQUIT):
            try:
                if _signal.getsignal(signum) == _signal.SIG_DFL:
                    self._handlers[signum] = _signal.signal(signum, self._die)
            except (OSError, ValueError):
                pass
        termios.tcsetattr(fd, termios.TCSADRAIN, attrs)

    def _die(self, signum: int, _frame: Any) -> None:
        self.restore()
        os._exit(128 + signum)

    def restore(self) -> None:
        with self._lock:
            if self._restored:
                return
            self._restored = True
        import termios

        try:
            termios.tcsetattr(self.fd, termios.TCSADRAIN, self._saved)
        except (OSError, termios.error):
            pass
        if lean.main_thread():
            for signum, old in self._handlers.items():
                try:
                    if _signal.getsignal(signum) == self._die:
                        _signal.signal(signum, old)
                except (OSError, ValueError, TypeError):
                    pass


def terminal_size(fd: int = 1) -> tuple[int, int]:
    """(height, width) of the terminal on ``fd``; (0, 0) when it is not one."""
    try:
        size = os.get_terminal_size(fd)
    except OSError:
        return 0, 0
    return size.lines, size.columns


def isatty(fd: int) -> bool:
    try:
        return os.isatty(fd)
    except OSError:
        return False


# -- opening a hijacked connection -------------------------------------------------------------------


class Hijacked:
    """The raw duplex connection after ``101 UPGRADED``, with bytes already read past the head."""

    def __init__(self, sock: _socket.socket, leftover: bytes) -> None:
        self.sock = sock
        self.leftover = leftover
        self._closed = False

    def close_write(self) -> None:
        try:
            self.sock.shutdown(_socket.SHUT_WR)
        except OSError:
            pass

    def shutdown(self) -> None:
        """Unblock a reader: the connection ends for both directions."""
        try:
            self.sock.shutdown(_socket.SHUT_RDWR)
        except OSError:
            pass

    def close(self) -> None:
        if not self._closed:
            self._closed = True
            try:
                self.sock.close()
            except OSError:
                pass


def hijack(client: Any, path: str, params: dict[str, Any] | None = None, body: Any = None) -> Hijacked:
    """POST ``path`` asking for the connection to be upgraded; error statuses raise APIError."""
    resp = client.request("POST", path, params, body=body, raw_body=None if body is not None else b"",
                          headers={"Connection": "Upgrade", "Upgrade": "tcp"})
    if resp.status not in (101, 200):
        resp.sock.close()
        raise CLIError(f"unexpected response from the daemon: HTTP {resp.status}")
    leftover = getattr(resp, "_buf", b"")
    if resp.status == 200 and resp.headers.get("transfer-encoding", "").lower() == "chunked":
        # a daemon that did not hijack: read the body through the response's decoder
        return _ChunkedHijack(resp)
    return Hijacked(resp.sock, leftover)


class _ChunkedHijack(Hijacked):
    """A ``200`` answer with a chunked body: read-only, decoded through the Response."""

    def __init__(self, resp: Any) -> None:
        super().__init__(resp.sock, b"")
        self._chunks = resp.iter_chunks()

    def recv(self) -> bytes:
        try:
            return next(self._chunks)
        except (StopIteration, CLIError, OSError):
            return b""


# -- the streamer -------------------------------------------------------------------------------------


class StreamError(CLIError):
    pass


def _write_all(fd: int, data: bytes) -> None:
    view = memoryview(data)
    while view:
        n = os.write(fd, view)
        view = view[n:]


class Demux:
    """Docker's stdcopy: split multiplexed frames to stdout / stderr."""

    def __init__(self, out_fd: int | None, err_fd: int | None) -> None:
        self.out_fd, self.err_fd = out_fd, err_fd
        self.buf = bytearray()

    def feed(self, data: bytes) -> None:
        self.buf += data
        while len(self.buf) >= 8:
            kind = self.buf[0]
            size = int.from_bytes(self.buf[4:8], "big")
            if len(self.buf) < 8 + size:
                break
            frame = bytes(self.buf[8:8 + size])
            del self.buf[:8 + size]
            if kind in (0, 1):
                fd = self.out_fd
            elif kind == 2:
                fd = self.err_fd
            elif kind == 3:
                raise StreamError(f"error from daemon in stream: {frame.decode(errors='replace')}")
            else:
                raise StreamError(f"Unrecognized input header: {kind}")
            if fd is not None and frame:
                _write_all(fd, frame)


class Streamer:
    """Copies stdin to a hijacked connection and its output to stdout/stderr until the output
    ends, the user types the detach sequence, or :meth:`cancel` is called.

    ``run()`` returns ``"eof"`` or ``"detached"``.
    """

    DETACH_GRACE = 1.0  # seconds the daemon gets to close the stream after the detach keys

    def __init__(self, conn: Hijacked, *, tty: bool, stdin: bool, stdout: bool, stderr: bool,
                 detach_keys: str = "", stderr_to_stdout: bool = False) -> None:
        self.conn = conn
        self.tty = tty
        self.stdin = stdin
        self.stdout = stdout
        self.stderr = stderr
        self.stderr_to_stdout = stderr_to_stdout
        keys = detachkeys.DEFAULT_BYTES
        if detach_keys:
            try:
                keys = detachkeys.to_bytes(detach_keys)
            except ValueError as exc:
                sys.stderr.write(f"invalid detach escape keys, using default: {exc}\n")
        self.escape_keys = keys
        self.detached = lean.Event()
        self.output_done = lean.Event()
        self.input_done = lean.Event()
        self._cancelled = False
        self._raw: RawTerminal | None = None
        self._wake_r, self._wake_w = os.pipe()

    # -- terminal --

    def _setup_input(self) -> None:
        if self.stdin and self.tty and isatty(0):
            try:
                self._raw = RawTerminal(0)
            except Exception as exc:  # noqa: BLE001 - termios errors
                raise CLIError(f"unable to setup input stream: unable to set IO streams as raw terminal: {exc}")

    def restore_terminal(self) -> None:
        if self._raw is not None:
            self._raw.restore()

    # -- input --

    def _pump_input(self) -> None:
        import select

        detector = EscapeDetector(self.escape_keys) if (self.tty and self.stdin) else None
        detached = False
        try:
            while True:
                try:
                    ready, _, _ = select.select([0, self._wake_r], [], [])
                except (OSError, ValueError):
                    break
                if self._wake_r in ready:
                    return
                try:
                    data = os.read(0, 32 * 1024)
                except OSError:
                    break
                if not data:
                    break
                end = detector.feed(data) if detector is not None else None
                if end is not None:
                    # the daemon has the same keys (detachKeys) and detaches on them too; mark it
                    # first: the daemon may close the stream before this thread runs again
                    data = data[:end]
                    detached = True
                    self.detached.set()
                try:
                    self.conn.sock.sendall(data)
                except OSError:
                    break
                if detached:
                    break
        finally:
            if detached:
                self.detached.set()
                self.restore_terminal()
                if not self.output_done.wait(self.DETACH_GRACE):
                    self.conn.shutdown()
            elif not self._cancelled:
                self.conn.close_write()
            self.input_done.set()

    # -- output --

    def _pump_output(self) -> None:
        out_fd = 1 if self.stdout else None
        err_fd = (1 if self.stderr_to_stdout else 2) if self.stderr else None
        demux = None if self.tty else Demux(out_fd, err_fd)
        try:
            data = self.conn.leftover
            self.conn.leftover = b""
            while True:
                if data:
                    if demux is not None:
                        demux.feed(data)
                    elif out_fd is not None:
                        _write_all(out_fd, data)
                try:
                    data = self.conn.recv() if isinstance(self.conn, _ChunkedHijack) else self.conn.sock.recv(65536)
                except OSError:
                    break
                if not data:
                    break
        except BrokenPipeError:
            pass
        finally:
            if self.tty:
                self.restore_terminal()
            self.output_done.set()

    def cancel(self) -> None:
        """Stop streaming (the process ended, or start failed)."""
        self._cancelled = True
        try:
            os.write(self._wake_w, b"x")
        except OSError:
            pass
        self.conn.shutdown()

    def run(self) -> str:
        sys.stdout.flush()
        sys.stderr.flush()
        self._setup_input()
        try:
            if self.stdin:
                lean.spawn(self._pump_input)
            self._pump_output()
            if self.detached.is_set():
                return "detached"
            return "eof"
        finally:
            self.restore_terminal()
            try:
                os.write(self._wake_w, b"x")  # the stdin thread stops reading
            except OSError:
                pass
            self.conn.close()
            for fd in (self._wake_r, self._wake_w):
                try:
                    os.close(fd)
                except OSError:
                    pass


# -- signals: the proxy and the resize monitor ------------------------------------------------------------

PROXIED_SIGNALS = ("SIGHUP", "SIGINT", "SIGQUIT", "SIGTERM", "SIGUSR1", "SIGUSR2")


class SignalWorker:
    """Handles signals off the main thread: forwards them to the container (sig-proxy) and
    turns SIGWINCH into a resize of the remote TTY.  After three SIGINT/SIGTERM the CLI exits,
    as docker's does."""

    def __init__(self, client: Any) -> None:
        self.client = client
        self._items: list[Any] = []
        self._ready = _thread.allocate_lock()   # held while there is nothing to do
        self._ready.acquire()
        self._mutex = _thread.RLock()   # put() runs in signal handlers too (reentrant)
        self._old: dict[int, Any] = {}
        self._terms = 0
        self._on_force_exit: list[Any] = []
        self._running = False

    def put(self, item: Any) -> None:
        """Queue ``item`` (a callable; None stops the worker), starting the worker on first use."""
        with self._mutex:
            was_empty = not self._items
            self._items.append(item)
            if was_empty:
                self._ready.release()
            if not self._running and item is not None:
                self._running = True
                lean.spawn(self._loop)

    def _loop(self) -> None:
        while True:
            self._ready.acquire()
            with self._mutex:
                item = self._items.pop(0)
                if self._items:
                    self._ready.release()
            if item is None:
                return
            try:
                item()
            except Exception:  # noqa: BLE001 - a failed resize or kill is not fatal (docker logs it at debug)
                pass

    def _install(self, signum: int, action: Any) -> None:
        if signum not in self._old:
            self._old[signum] = _signal.getsignal(signum)
        _signal.signal(signum, action)

    def proxy(self, container_id: str, on_force_exit: Any = None) -> None:
        if on_force_exit is not None:
            self._on_force_exit.append(on_force_exit)

        def handler(signum: int, _frame: Any) -> None:
            name = names[signum]
            self.put(lambda: self._kill(container_id, name))
            if signum in (_signal.SIGINT, _signal.SIGTERM):
                self._terms += 1
                if self._terms >= 3:
                    for fn in self._on_force_exit:
                        try:
                            fn()
                        except Exception:  # noqa: BLE001
                            pass
                    os.write(2, b"\ngot 3 SIGTERM/SIGINTs, forcefully exiting\n")
                    os._exit(1)

        names = {getattr(_signal, name): name for name in PROXIED_SIGNALS}
        for signum in names:
            self._install(signum, handler)

    def _kill(self, container_id: str, name: str) -> None:
        resp = self.client.request("POST", f"/containers/{container_id}/kill", {"signal": name})
        resp.sock.close()

    def monitor_size(self, ident: str, is_exec: bool, bump: bool = False) -> None:
        """Resize now (retrying briefly, as the container may still be starting) and on SIGWINCH.
        ``bump`` first sets a size one larger, so a re-attached shell redraws its prompt."""
        path = f"/exec/{ident}/resize" if is_exec else f"/containers/{ident}/resize"

        def resize(height: int | None = None, width: int | None = None) -> None:
            if height is None:
                height, width = terminal_size(1)
            if not height and not width:
                return
            resp = self.client.request("POST", path, {"h": height, "w": width})
            resp.sock.close()

        def initial() -> None:
            import time

            if bump:
                h, w = terminal_size(1)
                if h or w:
                    try:
                        resize(h + 1, w + 1)
                    except Exception:  # noqa: BLE001
                        pass
            for attempt in range(11):
                try:
                    resize()
                    return
                except Exception:  # noqa: BLE001
                    time.sleep((attempt + 1) * 0.01)
            sys.stderr.write("failed to resize tty, using default size\n")

        self.put(initial)
        self._install(_signal.SIGWINCH, lambda _s, _f: self.put(resize))

    def close(self) -> None:
        for signum, old in self._old.items():
            try:
                _signal.signal(signum, old)
            except (OSError, ValueError, TypeError):
                pass
        self._old.clear()
        if self._running:
            self.put(None)
