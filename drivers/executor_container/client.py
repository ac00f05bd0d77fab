"""The executor driver object: the :class:`core.contracts.Executor` protocol over the shims.

State of a container, under ``<exec_root>/<id>/`` (a runtime directory: after a reboot no
container runs, and none is listed — as containerd's ``/run/containerd``)::

    bundle          the bundle's path (the exec helper reads the container's seccomp there)
    sock            the shim's unix socket (see ``shim.py`` for the protocol)
    shim.pid        the shim's pid               init.pid   the container's init, host pid
    shim.log        the shim's own stderr        cgroup     the cgroup's paths (cgroups.py)
    started         start time                   exit.json  exit status, written by the shim
    exec-<id>.json  an exec's OCI process        exec-<id>.exit  its exit status

and ``<exec_root>/.seccomp/`` holds the compiled seccomp filters (``seccomp.compile_cached``).

Every method works from those files and the socket alone, so a new daemon re-adopts what an
earlier one started (:meth:`ContainerExecutor.list`).  One connection per request; ``wait``
holds its connection until the shim answers; ``attach`` turns its connection into an
:class:`ShimAttachStream`.  Socket paths longer than ``sockaddr_un`` allows are reached
through ``/proc/self/fd/<dir fd>/sock``.
"""
from __future__ import annotations

import _thread
import contextlib
import json
import os
import re
import shutil
import signal as signals
import sys
import time
from pathlib import Path
from typing import Any

import trio

from core.contracts.executor import ContainerState, ExitStatus, IOConfig
from core import errors
from drivers.executor_container import cgroups

SHIM = str(Path(__file__).with_name("shim.py"))
ZYGOTE = str(Path(__file__).with_name("zygote.py"))
REQUEST_TIMEOUT = 30.0
_ID = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.-]{0,127}")
_ERRORS = {
    "NotFound": errors.NotFound, "Conflict": errors.Conflict, "Forbidden": errors.Forbidden,
    "InvalidArgument": errors.InvalidArgument, "AlreadyExists": errors.AlreadyExists,
    "Unavailable": errors.Unavailable,
}


class _ShimGone(Exception):
    """The shim does not answer: it has exited (or was killed)."""


def _frame(kind: bytes, payload: bytes) -> bytes:
    return kind + len(payload).to_bytes(4, "big") + payload


def _error(payload: bytes) -> errors.CoreError:
    kind, _, message = payload.decode("utf-8", "replace").partition(" ")
    return _ERRORS.get(kind, errors.CoreError)(message)


class _Framed:
    """Frames over a trio stream."""

    def __init__(self, stream: trio.SocketStream) -> None:
        self.stream = stream
        self.buf = bytearray()
        self.send_lock = trio.Lock()

    async def send(self, kind: bytes, payload: bytes = b"") -> None:
        async with self.send_lock:
            await self.stream.send_all(_frame(kind, payload))

    async def receive(self) -> tuple[bytes, bytes] | None:
        while True:
            if len(self.buf) >= 5:
                size = int.from_bytes(self.buf[1:5], "big")
                if len(self.buf) >= 5 + size:
                    kind, payload = bytes(self.buf[:1]), bytes(self.buf[5:5 + size])
                    del self.buf[:5 + size]
                    return kind, payload
            try:
                data = await self.stream.receive_some(262144)
            except trio.BrokenResourceError:
                data = b""
            if not data:
                return None
            self.buf += data


async def _connect(sock: Path) -> _Framed:
    path, dfd = str(sock), -1
    if len(path.encode()) >= 100:
        try:
            dfd = os.open(sock.parent, os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)
        except OSError as exc:
            raise _ShimGone() from exc
        path = f"/proc/self/fd/{dfd}/{sock.name}"
    try:
        stream = await trio.open_unix_socket(path)
    except OSError as exc:
        raise _ShimGone() from exc
    finally:
        if dfd >= 0:
            os.close(dfd)
    return _Framed(stream)


class ShimAttachStream:
    """:class:`core.contracts.executor.AttachStream` over a shim connection."""

    def __init__(self, framed: _Framed) -> None:
        self._framed = framed
        self._ended = False

    async def receive(self) -> tuple[int, bytes] | None:
        while not self._ended:
            got = await self._framed.receive()
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
                await self._framed.send(b"0", bytes(view[i:i + (1 << 20)]))
        except trio.BrokenResourceError:
            pass   # the process's output has ended: its input goes nowhere

    async def close_stdin(self) -> None:
        try:
            await self._framed.send(b"c")
        except trio.BrokenResourceError:
            pass

    async def aclose(self) -> None:
        await self._framed.stream.aclose()


def _compile_shim() -> None:
    """Make sure ``shim.py`` has its ``__pycache__`` entry: a shim that must compile itself
    keeps ~2 MiB more of heap for its whole life (see ``shim.py``)."""
    import importlib.util
    import py_compile

    with contextlib.suppress(OSError, py_compile.PyCompileError):
        cached = importlib.util.cache_from_source(SHIM)
        if not os.path.exists(cached) or os.path.getmtime(cached) < os.path.getmtime(SHIM):
            py_compile.compile(SHIM, cfile=cached, doraise=True)


async def run_launcher(argv: list[str]) -> tuple[str, str]:
    """Run the shim's launcher (``shim.py [--helper CODE] STATE ...``): its verdict line, its stderr."""
    result = await trio.run_process(argv, capture_stdout=True, capture_stderr=True, check=False, stdin=b"")
    return result.stdout.decode("utf-8", "replace").strip(), result.stderr.decode("utf-8", "replace")


def _pid_alive(pid: int) -> bool:
    try:
        with open(f"/proc/{pid}/stat") as f:
            return f.read().rsplit(") ", 1)[1][0] != "Z"
    except (OSError, IndexError):
        return False


def _read(path: Path) -> str | None:
    try:
        return path.read_text()
    except OSError:
        return None


class ContainerExecutor:
    """The ``container`` executor: runs OCI bundles in Linux namespaces, one shim each."""

    def __init__(self, context: Any) -> None:
        self.root = Path(context.root)
        self.run = Path(context.exec_root)
        self.run.mkdir(parents=True, exist_ok=True)
        _compile_shim()
        self._zygote: Any = None          # the warm spawner's trio Process (zygote.py)
        self._zygote_lock = trio.Lock()
        self._zygote_broken = False       # it could not start: the launcher it is
        self._procs_file: str | None = cgroups.own_procs_file()   # for prepare()
        self._priming = False

    # ------------------------------------------------------------------ the zygote
    async def _start_zygote(self) -> bool:
        """Start the warm spawner (or find it running); False when it cannot start."""
        async with self._zygote_lock:
            z = self._zygote
            if z is not None and z.returncode is None and z.poll() is None:
                return True
            if z is not None:
                with contextlib.suppress(Exception):
                    await z.stdin.aclose()
                with contextlib.suppress(Exception):
                    await z.stdout.aclose()
                with trio.move_on_after(1):
                    await z.wait()
                self._zygote = None
            if self._zygote_broken:
                return False
            import subprocess
            from drivers.executor_container import shim as shim_module
            env = dict(os.environ)
            env["GLIBC_TUNABLES"] = shim_module.MALLOC_TUNABLES
            try:
                z = await trio.lowlevel.open_process(
                    [sys.executable, "-I", "-S", ZYGOTE, str(self.run / "zygote.sock")],
                    stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL,
                    start_new_session=True, env=env, cwd="/")
            except OSError:
                self._zygote_broken = True
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
                self._zygote_broken = True
                return False
            self._zygote = z
            return True

    async def _kill_zygote(self) -> None:
        z = self._zygote
        if z is not None:
            with contextlib.suppress(OSError):
                z.kill()
            with trio.move_on_after(1):
                await z.wait()

    async def _zygote_create(self, argv: list[str]) -> str | None:
        """Have the zygote fork the shim: its verdict, or None when the zygote cannot."""
        for _attempt in range(2):
            if not await self._start_zygote():
                return None
            try:
                conn = await _connect(self.run / "zygote.sock")
            except _ShimGone:
                await self._kill_zygote()
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
                    await conn.stream.aclose()
            if out:
                return out.decode("utf-8", "replace")
            if Path(argv[0], "shim.pid").exists():
                return "error CoreError the shim died"
            # the zygote went before forking: start it again
            await self._kill_zygote()
        return None

    # ------------------------------------------------------------------ helpers
    def _dir(self, container_id: str, creating: bool = False) -> Path:
        if not isinstance(container_id, str) or not _ID.fullmatch(container_id):
            if creating:
                raise errors.InvalidArgument(f"invalid container id {container_id!r}")
            raise errors.NotFound(f"no such container: {container_id}")
        d = self.run / container_id
        if not creating and not d.is_dir():
            raise errors.NotFound(f"no such container: {container_id}")
        return d

    @staticmethod
    def _exit(d: Path) -> dict[str, Any] | None:
        text = _read(d / "exit.json")
        if text is None:
            return None
        try:
            return json.loads(text)
        except ValueError:
            return None

    async def _request(self, d: Path, *words: str, timeout: float | None = REQUEST_TIMEOUT
                       ) -> dict[str, Any]:
        """One request on a connection of its own.  ``timeout`` (None for ``wait``) bounds a
        shim that accepts but does not answer (stopped, overloaded): ``Unavailable``."""
        conn = await _connect(d / "sock")
        try:
            with trio.fail_after(timeout) if timeout else contextlib.nullcontext():
                await conn.send(b"?", " ".join(words).encode())
                got = await conn.receive()
        except trio.TooSlowError:
            raise errors.Unavailable(f"the shim of {d.name} does not answer {words[0]!r}") from None
        except (trio.BrokenResourceError, OSError) as exc:
            raise _ShimGone() from exc
        finally:
            with trio.CancelScope(shield=True):
                await conn.stream.aclose()
        return self._answer(got)

    @staticmethod
    def _answer(got: tuple[bytes, bytes] | None) -> dict[str, Any]:
        if got is None:
            raise _ShimGone()
        kind, payload = got
        if kind == b"!":
            raise _error(payload)
        return json.loads(payload) if payload else {}

    def _cgroup(self, d: Path) -> cgroups.Cgroup | None:
        return cgroups.Cgroup.load(str(d / "cgroup"))

    @staticmethod
    def _pid(d: Path, name: str) -> int:
        try:
            return int(_read(d / name) or 0)
        except ValueError:
            return 0

    def _stopped_state(self, container_id: str, d: Path, status: dict[str, Any]) -> ContainerState:
        return ContainerState(id=container_id, status="stopped", pid=0,
                              exit_code=status.get("exit_code"),
                              oom_killed=bool(status.get("oom_killed")),
                              started_at=float(status.get("started_at") or 0.0),
                              finished_at=float(status.get("finished_at") or 0.0))

    async def _state(self, container_id: str, d: Path) -> ContainerState:
        status = self._exit(d)
        if status is not None:
            return self._stopped_state(container_id, d, status)
        try:
            live = await self._request(d, "state")
        except _ShimGone:
            status = self._exit(d)
            if status is not None:
                return self._stopped_state(container_id, d, status)
            return self._orphan_state(container_id, d)
        phase = live["status"]
        if phase == "stopped":
            status = self._exit(d) or {"exit_code": live.get("exit_code"),
                                      "finished_at": live.get("finished_at")}
            return self._stopped_state(container_id, d, status)
        if phase == "creating":
            phase = "created"
        if phase == "running":
            cg = self._cgroup(d)
            if cg is not None and cg.frozen():
                phase = "paused"
        return ContainerState(id=container_id, status=phase, pid=int(live.get("pid") or 0),
                              started_at=float(live.get("started_at") or 0.0))

    def _orphan_state(self, container_id: str, d: Path) -> ContainerState:
        """The shim is gone without an exit file (killed): the init may still run."""
        pid = self._pid(d, "init.pid")
        if pid and _pid_alive(pid) and self._in_cgroup(d, pid):
            started = float(_read(d / "started") or 0.0)
            status = "running" if started else "created"
            cg = self._cgroup(d)
            if started and cg is not None and cg.frozen():
                status = "paused"
            return ContainerState(id=container_id, status=status, pid=pid, started_at=started)
        return ContainerState(id=container_id, status="stopped", exit_code=255)

    async def _live(self, container_id: str) -> tuple[Path, ContainerState]:
        d = self._dir(container_id)
        return d, await self._state(container_id, d)

    # ------------------------------------------------------------------ lifecycle
    async def prepare(self, container_id: str) -> None:
        """A create is coming: start the kernel's cgroup-move wait now (:func:`cgroups.prime`),
        in a thread of its own, at most one at a time; returns at once."""
        if self._procs_file is None or self._priming:
            return
        self._priming = True

        def prime(procs_file: str = self._procs_file) -> None:
            try:
                cgroups.prime(procs_file)
            finally:
                self._priming = False

        _thread.start_new_thread(prime, ())   # not threading: its start() waits for the thread

    async def create(self, container_id: str, bundle: Path, io: IOConfig) -> None:
        d = self._dir(container_id, creating=True)
        if d.exists():
            st = await self._state(container_id, d)
            if st.status != "stopped":
                raise errors.AlreadyExists(f"container {container_id} already exists")
            await self._remove(container_id, d)
        bundle = Path(bundle).resolve()
        self._check_bundle(bundle)
        try:
            d.mkdir(mode=0o700)
        except FileExistsError:   # a concurrent create of the same id won
            raise errors.AlreadyExists(f"container {container_id} already exists") from None
        try:
            (d / "bundle").write_text(str(bundle))
            args = [str(d), container_id, str(bundle),
                    "1" if io.terminal else "0", "1" if io.stdin else "0",
                    "1" if io.stdin_once else "0", str(int(io.width)), str(int(io.height)),
                    str(io.log_path) if io.log_path else "-", str(d / "sock")]
            out, err = await self._launch(d, args)
            if not out.startswith("ok"):
                word, _, rest = out.partition(" ")
                if word == "error":
                    raise _error(rest.encode())
                raise errors.CoreError(f"the shim failed: {out or err}")
        except BaseException:
            with trio.CancelScope(shield=True):
                await self._remove(container_id, d, force=True)
            raise

    async def _launch(self, d: Path, args: list[str]) -> tuple[str, str]:
        """Start the shim for ``args`` (``STATE ID BUNDLE ...``, the launcher's argv): its
        verdict (``ok`` or ``error <Kind> <message>``) and its stderr.  An executor that reuses
        the shim with a runtime helper of its own overrides this (examples/core-runc-executor)."""
        verdict = await self._zygote_create(args)
        if verdict is not None:
            return verdict.strip(), ""
        return await run_launcher([sys.executable, "-I", "-S", SHIM, *args])   # no zygote

    @staticmethod
    def _check_bundle(bundle: Path) -> None:
        try:
            spec = json.loads((bundle / "config.json").read_bytes())
        except FileNotFoundError:
            raise errors.InvalidArgument(f"bundle {bundle}: no config.json") from None
        except (OSError, ValueError) as exc:
            raise errors.InvalidArgument(f"bundle {bundle}: config.json: {exc}") from None
        if not isinstance(spec, dict) or not isinstance(spec.get("process"), dict) \
                or not spec["process"].get("args"):
            raise errors.InvalidArgument(f"bundle {bundle}: config.json has no process.args")
        root = (spec.get("root") or {}).get("path") if isinstance(spec.get("root"), dict) else None
        if not root or not (bundle / root).is_dir():
            raise errors.InvalidArgument(f"bundle {bundle}: root.path {root!r} is not a directory")

    async def start(self, container_id: str) -> int:
        d = self._dir(container_id)
        if self._exit(d) is not None:
            raise errors.Conflict(f"container {container_id} is stopped: cannot start it")
        try:   # the shim answers Conflict unless the container is created
            return int((await self._request(d, "start"))["pid"])
        except _ShimGone:
            raise errors.Conflict(f"container {container_id} is not running") from None

    async def state(self, container_id: str) -> ContainerState:
        return (await self._live(container_id))[1]

    async def kill(self, container_id: str, signal: int, all_processes: bool = False) -> None:
        d, st = await self._live(container_id)
        if st.status == "stopped":
            raise errors.Conflict(f"container {container_id} is not running")
        sig = int(signal)
        delivered = False
        try:
            await self._request(d, "kill", str(sig))     # the init, through its reaper
            delivered = True
        except _ShimGone:
            pid = self._pid(d, "init.pid")
            if pid and _pid_alive(pid) and self._in_cgroup(d, pid):
                os.kill(pid, sig)
                delivered = True
        except errors.Conflict:
            pass
        if all_processes:
            cg = self._cgroup(d)
            if cg is not None and cg.pids():
                cg.signal_all(sig)
                delivered = True
        if not delivered:
            raise errors.Conflict(f"container {container_id} is not running")
        if st.status == "paused" and sig == signals.SIGKILL:
            cg = self._cgroup(d)
            if cg is not None:
                await trio.to_thread.run_sync(cg.thaw)

    async def wait(self, container_id: str) -> ExitStatus:
        d = self._dir(container_id)
        while True:
            status = self._exit(d)
            if status is not None:
                return ExitStatus(code=int(status["exit_code"]),
                                  oom_killed=bool(status.get("oom_killed")),
                                  finished_at=float(status.get("finished_at") or 0.0))
            try:
                got = await self._request(d, "wait", timeout=None)
                return ExitStatus(code=int(got["exit_code"]), oom_killed=bool(got.get("oom_killed")),
                                  finished_at=float(got.get("finished_at") or 0.0))
            except _ShimGone:
                if self._exit(d) is not None:
                    continue
                pid = self._pid(d, "init.pid")
                if pid and _pid_alive(pid) and self._in_cgroup(d, pid):
                    # the shim was killed; its container runs on: wait for the init itself
                    try:
                        fd = os.pidfd_open(pid)
                    except OSError:
                        await trio.sleep(0.1)
                        continue
                    try:
                        await trio.lowlevel.wait_readable(fd)
                    finally:
                        os.close(fd)
                    continue
                return ExitStatus(code=255, finished_at=time.time())

    async def pause(self, container_id: str) -> None:
        d, st = await self._live(container_id)
        if st.status != "running":
            raise errors.Conflict(f"container {container_id} is {st.status}: cannot pause it")
        cg = self._cgroup(d)
        if cg is None:
            raise errors.Conflict(f"container {container_id} has no cgroup")
        try:
            await trio.to_thread.run_sync(cg.freeze)
        except OSError as exc:
            raise errors.CoreError(f"pausing {container_id}: {exc}") from exc

    async def resume(self, container_id: str) -> None:
        d, st = await self._live(container_id)
        if st.status != "paused":
            raise errors.Conflict(f"container {container_id} is not paused")
        cg = self._cgroup(d)
        assert cg is not None
        try:
            await trio.to_thread.run_sync(cg.thaw)
        except OSError as exc:
            raise errors.CoreError(f"resuming {container_id}: {exc}") from exc

    async def attach(self, container_id: str, exec_id: str | None = None) -> ShimAttachStream:
        d = self._dir(container_id)
        if exec_id is not None:
            self._check_exec_id(exec_id)
        try:
            conn = await _connect(d / "sock")
        except _ShimGone:
            raise errors.Conflict(f"container {container_id} is not running") from None
        try:
            await conn.send(b"?", (f"attach {exec_id}" if exec_id else "attach").encode())
            self._answer(await conn.receive())
        except (_ShimGone, trio.BrokenResourceError, OSError):
            with trio.CancelScope(shield=True):
                await conn.stream.aclose()
            raise errors.Conflict(f"container {container_id} is not running") from None
        except BaseException:
            with trio.CancelScope(shield=True):
                await conn.stream.aclose()
            raise
        return ShimAttachStream(conn)

    async def resize(self, container_id: str, width: int, height: int,
                     exec_id: str | None = None) -> None:
        d, st = await self._live(container_id)
        if st.status == "stopped":
            raise errors.Conflict(f"container {container_id} is not running")
        words = ["resize", str(int(width)), str(int(height))]
        if exec_id is not None:
            self._check_exec_id(exec_id)
            words.append(exec_id)
        try:
            await self._request(d, *words)
        except _ShimGone:
            raise errors.Conflict(f"container {container_id} is not running") from None

    @staticmethod
    def _check_exec_id(exec_id: str) -> None:
        if not isinstance(exec_id, str) or not _ID.fullmatch(exec_id):
            raise errors.NotFound(f"no such exec: {exec_id!r}")

    async def exec(self, container_id: str, exec_id: str, process: dict[str, Any],
                   io: IOConfig) -> int:
        d, st = await self._live(container_id)
        if not isinstance(exec_id, str) or not _ID.fullmatch(exec_id):
            raise errors.InvalidArgument(f"invalid exec id {exec_id!r}")
        if st.status != "running":
            raise errors.Conflict(f"container {container_id} is {st.status}: cannot exec in it")
        if not isinstance(process, dict) or not process.get("args"):
            raise errors.InvalidArgument("exec: the process needs args")
        path = d / f"exec-{exec_id}.json"
        if path.exists():
            raise errors.AlreadyExists(f"exec {exec_id} already exists")
        tmp = path.with_suffix(".tmp")
        tmp.write_text(json.dumps({"process": {**process, "terminal": bool(io.terminal)}}))
        tmp.rename(path)
        try:
            got = await self._request(d, "exec", exec_id, "1" if io.terminal else "0",
                                      "1" if io.stdin else "0", "1" if io.stdin_once else "0",
                                      str(int(io.width)), str(int(io.height)))
        except _ShimGone:
            raise errors.Conflict(f"container {container_id} is not running") from None
        return int(got["pid"])

    async def wait_exec(self, container_id: str, exec_id: str) -> int:
        d = self._dir(container_id)
        self._check_exec_id(exec_id)
        while True:
            text = _read(d / f"exec-{exec_id}.exit")
            if text is not None:
                return int(json.loads(text)["exit_code"])
            if not (d / f"exec-{exec_id}.json").exists():
                raise errors.NotFound(f"no such exec: {exec_id}")
            try:
                return int((await self._request(d, "wait", exec_id, timeout=None))["exit_code"])
            except errors.Conflict:   # it ended (and the shim forgot it) since we looked
                if _read(d / f"exec-{exec_id}.exit") is not None:
                    continue
                raise
            except _ShimGone:
                if _read(d / f"exec-{exec_id}.exit") is not None:
                    continue
                return 255

    async def top(self, container_id: str) -> list[int]:
        d, st = await self._live(container_id)
        if st.status == "stopped":
            raise errors.Conflict(f"container {container_id} is not running")
        cg = self._cgroup(d)
        return cg.pids() if cg is not None else ([st.pid] if st.pid else [])

    async def stats(self, container_id: str) -> dict[str, Any]:
        d = self._dir(container_id)
        cg = self._cgroup(d)
        if cg is None or not cg.exists():
            return {"memory_stats": {}, "cpu_stats": {}, "pids_stats": {}, "blkio_stats": {}}
        return await trio.to_thread.run_sync(cg.stats)

    async def delete(self, container_id: str) -> None:
        d, st = await self._live(container_id)
        if st.status in ("running", "paused"):
            raise errors.Conflict(f"container {container_id} is {st.status}: stop it first")
        await self._remove(container_id, d)

    async def _remove(self, container_id: str, d: Path, force: bool = False) -> None:
        """Stop the shim (and a created init), remove the cgroup and the state directory."""
        with contextlib.suppress(_ShimGone, errors.CoreError):
            await self._request(d, "delete", timeout=10)
        shim = self._pid(d, "shim.pid")
        if shim:
            await self._reap(d, shim)
        init = self._pid(d, "init.pid")
        if init and _pid_alive(init) and self._in_cgroup(d, init):
            with contextlib.suppress(OSError):
                os.kill(init, signals.SIGKILL)
        cg = self._cgroup(d)
        if cg is not None:
            try:
                await trio.to_thread.run_sync(cg.remove)
            except OSError as exc:
                if not force:
                    raise errors.CoreError(f"removing the cgroup of {container_id}: {exc}") from exc
        shutil.rmtree(d, ignore_errors=True)

    def _in_cgroup(self, d: Path, pid: int) -> bool:
        cg = self._cgroup(d)
        return cg is not None and pid in cg.pids()

    @staticmethod
    async def _reap(d: Path, pid: int) -> None:
        """Wait for the shim ``pid`` to go (SIGKILL after 5 s), if it is ours."""
        def ours() -> bool:
            try:
                if str(d).encode() in Path(f"/proc/{pid}/cmdline").read_bytes():
                    return True
                return os.readlink(f"/proc/{pid}/cwd") == str(d)   # forked by the zygote
            except OSError:
                return False
        if not (_pid_alive(pid) and ours()):
            return
        with trio.move_on_after(5):
            try:
                fd = os.pidfd_open(pid)
            except OSError:
                fd = -1
            if fd >= 0:   # readable when it has exited
                try:
                    await trio.lowlevel.wait_readable(fd)
                finally:
                    os.close(fd)
            while _pid_alive(pid) and ours():
                await trio.sleep(0.01)
        if _pid_alive(pid) and ours():
            with contextlib.suppress(OSError):
                os.kill(pid, signals.SIGKILL)

    async def list(self) -> list[ContainerState]:
        out = []
        for d in sorted(self.run.iterdir()) if self.run.is_dir() else []:
            if d.is_dir() and _ID.fullmatch(d.name) and (d / "bundle").exists():
                try:
                    out.append(await self._state(d.name, d))
                except errors.CoreError:
                    continue
        return out

    async def close(self) -> None:
        """Stop the zygote (its shims live on); every request has its own connection."""
        z, self._zygote = self._zygote, None
        if z is not None:
            with contextlib.suppress(Exception):
                await z.stdin.aclose()
            with contextlib.suppress(Exception):
                await z.stdout.aclose()
            with trio.move_on_after(2):
                await z.wait()
            if z.returncode is None:
                with contextlib.suppress(OSError):
                    z.kill()
