"""The daemon's side of the shim: its socket protocol under trio, the launcher, the zygote.

What an executor uses to talk to shims (see :mod:`core.shim` for the protocol):

- :func:`connect` opens a :class:`ShimConnection` (frames over a unix socket; paths longer than
  ``sockaddr_un`` allows are reached through ``/proc/self/fd/<dir fd>/<name>``);
- :func:`request` sends one request on a connection of its own and decodes the answer (an
  ``!`` frame becomes the :mod:`core.errors` exception it names);
- :class:`ShimAttachStream` is :class:`core.contracts.executor.AttachStream` over a connection;
- :class:`ShimGone` says that a shim does not answer (it has exited, or was killed);
- :func:`run_launcher` starts a shim with a fresh interpreter (``server.py``);
  :class:`Zygote` forks shims from a warm process instead (what keeps ``docker run`` fast).
"""
from __future__ import annotations

import contextlib
import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import attrs
import trio

from core import errors

HERE = Path(__file__).resolve().parent
SERVER = str(HERE / "server.py")     # the shim program (and its launcher)
ZYGOTE = str(HERE / "zygote.py")
REQUEST_TIMEOUT = 30.0
FRAME_HEADER = 5                      # 1 byte kind, 4 bytes big-endian length
_ERRORS: dict[str, type[errors.CoreError]] = {
    "NotFound": errors.NotFound, "Conflict": errors.Conflict, "Forbidden": errors.Forbidden,
    "InvalidArgument": errors.InvalidArgument, "AlreadyExists": errors.AlreadyExists,
    "Unavailable": errors.Unavailable,
    "ProgramNotFound": errors.ProgramNotFound, "ProgramNotRunnable": errors.ProgramNotRunnable,
}

__all__ = ["RuntimeHelper", "ShimAttachStream", "ShimConnection", "ShimGone", "Zygote", "connect",
           "decode_error", "frame", "launcher_argv", "request", "run_launcher"]


class ShimGone(Exception):
    """The shim does not answer: it has exited (or was killed)."""


@attrs.frozen
class RuntimeHelper:
    """The program a shim spawns to create a container (``init``) or an exec (``exec``).

    ``module`` is a module with ``main(argv) -> int`` (``argv[1:]`` is ``init STATE BUNDLE ID
    WIDTH HEIGHT`` or ``exec STATE EXEC_ID PID WIDTH HEIGHT``), importable from ``path`` in an
    isolated interpreter (``python -I -S``: no site-packages).  Its contract (fds, the lines it
    writes on the sync socket) is in :mod:`core.shim`.
    """

    module: str
    path: str

    @classmethod
    def of(cls, module: str, file: str) -> RuntimeHelper:
        """The helper ``module`` whose source is ``file`` (``__file__`` of the module itself):
        its import path is found by climbing one directory per dot of the module's name."""
        root = Path(file).resolve().parent
        for _ in range(module.count(".")):
            root = root.parent
        return cls(module=module, path=str(root))


def frame(kind: bytes, payload: bytes) -> bytes:
    """One message: ``kind`` (1 byte), the payload's length (4 bytes, big-endian), ``payload``."""
    return kind + len(payload).to_bytes(4, "big") + payload


def decode_error(payload: bytes) -> errors.CoreError:
    """An ``!`` frame's payload, ``<Kind> <message>``, as the :mod:`core.errors` exception."""
    kind, _, message = payload.decode("utf-8", "replace").partition(" ")
    return _ERRORS.get(kind, errors.CoreError)(message)


class ShimConnection:
    """Frames over a trio stream to a shim's socket."""

    def __init__(self, stream: trio.SocketStream) -> None:
        self.stream = stream
        self._buf = bytearray()
        self._send_lock = trio.Lock()

    async def send(self, kind: bytes, payload: bytes = b"") -> None:
        async with self._send_lock:
            await self.stream.send_all(frame(kind, payload))

    async def receive(self) -> tuple[bytes, bytes] | None:
        """The next frame as ``(kind, payload)``; None at the end of the connection."""
        while True:
            if len(self._buf) >= FRAME_HEADER:
                size = int.from_bytes(self._buf[1:FRAME_HEADER], "big")
                if len(self._buf) >= FRAME_HEADER + size:
                    kind = bytes(self._buf[:1])
                    payload = bytes(self._buf[FRAME_HEADER:FRAME_HEADER + size])
                    del self._buf[:FRAME_HEADER + size]
                    return kind, payload
            try:
                data = await self.stream.receive_some(262144)
            except trio.BrokenResourceError:
                data = b""
            if not data:
                return None
            self._buf += data

    async def aclose(self) -> None:
        await self.stream.aclose()


async def connect(sock: Path) -> ShimConnection:
    """Connect to the unix socket ``sock``; :class:`ShimGone` when nobody listens there."""
    path, dfd = str(sock), -1
    if len(path.encode()) >= 100:
        try:
            dfd = os.open(sock.parent, os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)
        except OSError as exc:
            raise ShimGone() from exc
        path = f"/proc/self/fd/{dfd}/{sock.name}"
    try:
        stream = await trio.open_unix_socket(path)
    except OSError as exc:
        raise ShimGone() from exc
    finally:
        if dfd >= 0:
            os.close(dfd)
    return ShimConnection(stream)


def decode_answer(got: tuple[bytes, bytes] | None) -> dict[str, Any]:
    """An answer frame's JSON object; raises the error of an ``!`` frame, :class:`ShimGone`
    when the connection ended without an answer."""
    if got is None:
        raise ShimGone()
    kind, payload = got
    if kind == b"!":
        raise decode_error(payload)
    return json.loads(payload) if payload else {}


async def request(sock: Path, *words: str, timeout: float | None = REQUEST_TIMEOUT
                  ) -> dict[str, Any]:
    """Send the request ``words`` on a connection of its own and return the answer.

    ``timeout`` (None for ``wait``) bounds a shim that accepts but does not answer (stopped,
    overloaded): :class:`core.errors.Unavailable`.  :class:`ShimGone` when it is not there.
    """
    conn = await connect(sock)
    try:
        with trio.fail_after(timeout) if timeout else contextlib.nullcontext():
            await conn.send(b"?", " ".join(words).encode())
            got = await conn.receive()
    except trio.TooSlowError:
        raise errors.Unavailable(f"the shim of {sock.parent.name} does not answer {words[0]!r}") from None
    except (trio.BrokenResourceError, OSError) as exc:
        raise ShimGone() from exc
    finally:
        with trio.CancelScope(shield=True):
            await conn.aclose()
    return decode_answer(got)


class ShimAttachStream:
    """:class:`core.contracts.executor.AttachStream` over a shim connection that was answered
    ``attach``."""

    def __init__(self, conn: ShimConnection) -> None:
        self._conn = conn
        self._ended = False

    async def receive(self) -> tuple[int, bytes] | None:
        while not self._ended:
            got = await self._conn.receive()
            if got is None:
                self._ended = True
                break
            kind, payload = got
            if kind == b"1":
                return 1, payload
            if kind == b"2":
                return 2, payload
            if kind == b".":
                self._ended = True
        return None

    async def send_stdin(self, data: bytes) -> None:
        view = memoryview(bytes(data))
        try:
            for i in range(0, len(view), 1 << 20):
                await self._conn.send(b"0", bytes(view[i:i + (1 << 20)]))
        except trio.BrokenResourceError:
            pass   # the process's output has ended: its input goes nowhere

    async def close_stdin(self) -> None:
        try:
            await self._conn.send(b"c")
        except trio.BrokenResourceError:
            pass

    async def aclose(self) -> None:
        await self._conn.aclose()


# ----------------------------------------------------------------------------- starting shims
def compile_server() -> None:
    """Make sure the shim's modules (``server.py``, ``stdio.py``) have their ``__pycache__``
    entries: a shim that must compile itself keeps ~2 MiB more of heap for its whole life."""
    import importlib.util
    import py_compile

    for source in (SERVER, str(HERE / "stdio.py")):
        with contextlib.suppress(OSError, py_compile.PyCompileError):
            cached = importlib.util.cache_from_source(source)
            if not os.path.exists(cached) or os.path.getmtime(cached) < os.path.getmtime(source):
                py_compile.compile(source, cfile=cached, doraise=True)


def launcher_argv(helper: RuntimeHelper, argv: list[str]) -> list[str]:
    """The command that launches a shim for ``argv`` (``STATE ID BUNDLE ...``) with ``helper``."""
    return [sys.executable, "-I", "-S", SERVER, "--helper-path", helper.path,
            "--helper-module", helper.module, *argv]


async def run_launcher(argv: list[str]) -> tuple[str, str]:
    """Run a launcher command (:func:`launcher_argv`): its verdict line, its stderr."""
    result = await trio.run_process(argv, capture_stdout=True, capture_stderr=True, check=False,
                                    stdin=b"")
    return result.stdout.decode("utf-8", "replace").strip(), result.stderr.decode("utf-8", "replace")


class Zygote:
    """The warm spawner of one executor (:mod:`core.shim.zygote`): forks shims for ``helper``
    from a process that has the shim and the helper imported already, listening on ``sock``.

    Started on first use; :meth:`create` returns None when it cannot start (the caller then
    uses the launcher).  :meth:`aclose` stops it — the shims it forked live on.
    """

    def __init__(self, sock: Path, helper: RuntimeHelper) -> None:
        self.sock = sock
        self.helper = helper
        self._process: Any = None          # a trio Process
        self._lock = trio.Lock()
        self._broken = False                # it could not start: the launcher it is

    async def _start(self) -> bool:
        """Start the zygote (or find it running); False when it cannot start."""
        async with self._lock:
            z = self._process
            if z is not None and z.returncode is None and z.poll() is None:
                return True
            if z is not None:
                await self._close(z, grace=1)
                self._process = None
            if self._broken:
                return False
            from core.shim import stdio
            env = dict(os.environ)
            env["GLIBC_TUNABLES"] = stdio.MALLOC_TUNABLES
            try:
                z = await trio.lowlevel.open_process(
                    [sys.executable, "-I", "-S", ZYGOTE, str(self.sock), self.helper.path,
                     self.helper.module],
                    stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL,
                    start_new_session=True, env=env, cwd="/")
            except OSError:
                self._broken = True
                return False
            got = b""
            with trio.move_on_after(10):
                while b"\n" not in got:
                    chunk = await z.stdout.receive_some(64)
                    if not chunk:
                        break
                    got += chunk
            if not got.startswith(b"ready"):
                with contextlib.suppress(OSError):
                    z.kill()
                with trio.move_on_after(1):
                    await z.wait()
                self._broken = True
                return False
            self._process = z
            return True

    async def _kill(self) -> None:
        z = self._process
        if z is not None:
            with contextlib.suppress(OSError):
                z.kill()
            with trio.move_on_after(1):
                await z.wait()

    async def create(self, argv: list[str]) -> str | None:
        """Have the zygote fork the shim of ``argv``: its verdict, or None when it cannot."""
        for _attempt in range(2):
            if not await self._start():
                return None
            try:
                conn = await connect(self.sock)
            except ShimGone:
                await self._kill()
                continue
            try:
                await conn.stream.send_all((json.dumps(argv) + "\n").encode())
                out = b""
                while True:
                    data = await conn.stream.receive_some(65536)
                    if not data:
                        break
                    out += data
            except (trio.BrokenResourceError, OSError):
                out = b""
            finally:
                with trio.CancelScope(shield=True):
                    await conn.aclose()
            if out:
                return out.decode("utf-8", "replace")
            if Path(argv[0], "shim.pid").exists():
                return "error CoreError the shim died"
            # the zygote went before forking: start it again
            await self._kill()
        return None

    @staticmethod
    async def _close(z: Any, grace: float) -> None:
        with contextlib.suppress(Exception):
            await z.stdin.aclose()
        with contextlib.suppress(Exception):
            await z.stdout.aclose()
        with trio.move_on_after(grace):
            await z.wait()
        if z.returncode is None:
            with contextlib.suppress(OSError):
                z.kill()

    async def aclose(self) -> None:
        """Stop the zygote (end of file on its stdin; SIGKILL after 2 s)."""
        z, self._process = self._process, None
        if z is not None:
            await self._close(z, grace=2)
