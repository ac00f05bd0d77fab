"""A base class for executors built on core's shim: the whole executor contract but the runtime.

:class:`ShimExecutor` implements :class:`core.contracts.executor.Executor` over one shim per
container (:mod:`core.shim`), given a :class:`~core.shim.client.RuntimeHelper` — the program the
shim spawns to create a container or an exec.  The built-in ``container`` executor and the
``runc`` example are both subclasses.  Pause, resume, top, stats, ``kill --all`` and
``update_resources`` (:class:`core.contracts.executor.ResourceUpdater`, ``docker update``) work on the
container's cgroup as the ``cgroup`` state file names it (:mod:`core.shim.cgroups`).

State of a container, under ``<state root>/<id>/`` (a runtime directory: after a reboot no
container runs, and none is listed — as containerd's ``/run/containerd``); the files are listed
in :mod:`core.shim`.  Every method works from those files and the socket alone, so a new daemon
re-adopts what an earlier one started (:meth:`ShimExecutor.list`).  One connection per request;
``wait`` holds its connection until the shim answers; ``attach`` turns its connection into a
:class:`~core.shim.client.ShimAttachStream`.

Public override points, for subclasses:

- :meth:`ShimExecutor.launch` — how a shim is started (default: forked by the warm
  :class:`~core.shim.client.Zygote`, else the launcher);
- :meth:`ShimExecutor.check_bundle` — what ``create`` checks of a bundle before the shim;
- :meth:`ShimExecutor.release` — what is left to free once a container's shim, init, cgroup and
  state directory are gone (the runc example deletes runc's container there);
- every contract method (``kill``, ``pause``, ``stats`` ...), with :meth:`ShimExecutor.state_dir`,
  :meth:`ShimExecutor.live` and :meth:`ShimExecutor.cgroup` to build on.
"""
from __future__ import annotations

import contextlib
import errno
import json
import os
import re
import shutil
import signal as signals
import time
from pathlib import Path
from typing import Any

import attrs
import trio

from core import errors
from core.contracts.executor import (ContainerState, ContainerStats, ContainerStatus, ExitStatus, IOConfig,
                                     Resources)
from core.shim import cgroups
from core.shim.client import (REQUEST_TIMEOUT, RuntimeHelper, ShimAttachStream, ShimGone, Zygote, compile_server,
                              connect, decode_answer, decode_error, launcher_argv, request, run_launcher)

ID = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.-]{0,127}")
"""Container and exec ids an executor accepts."""

__all__ = ["ID", "ShimExecutor"]


def pid_alive(pid: int) -> bool:
    """Whether ``pid`` runs: a zombie counts as gone (PID 1 of a container host may reap late)."""
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


class ShimExecutor:
    """:class:`core.contracts.executor.Executor` over core's shim, with ``helper`` as the
    runtime: containers' state directories under ``state_root``; shims forked by a warm zygote
    unless ``zygote`` is False (then each is started by the launcher, a fresh interpreter)."""

    def __init__(self, state_root: Path, helper: RuntimeHelper, *, zygote: bool = True) -> None:
        self.run = Path(state_root)
        self.run.mkdir(parents=True, exist_ok=True)
        self.helper = helper
        compile_server()
        self._zygote = Zygote(self.run / "zygote.sock", helper) if zygote else None

    # ------------------------------------------------------------------ helpers
    def state_dir(self, container_id: str, creating: bool = False) -> Path:
        """The state directory of ``container_id``: ``NotFound`` when there is none (unless
        ``creating``; then ``InvalidArgument`` for an invalid id)."""
        if not isinstance(container_id, str) or not ID.fullmatch(container_id):
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

    @staticmethod
    async def _request(d: Path, *words: str, timeout: float | None = REQUEST_TIMEOUT) -> dict[str, Any]:
        return await request(d / "sock", *words, timeout=timeout)

    def cgroup(self, d: Path) -> cgroups.Cgroup | None:
        """The container's cgroup, as the ``cgroup`` file of its state directory ``d`` names it
        (None when there is none)."""
        return cgroups.Cgroup.load(str(d / "cgroup"))

    @staticmethod
    def _pid(d: Path, name: str) -> int:
        try:
            return int(_read(d / name) or 0)
        except ValueError:
            return 0

    def _stopped_state(self, container_id: str, d: Path, status: dict[str, Any]) -> ContainerState:
        return ContainerState(id=container_id, status=ContainerStatus.STOPPED, pid=0,
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
        except ShimGone:
            status = self._exit(d)
            if status is not None:
                return self._stopped_state(container_id, d, status)
            return self._orphan_state(container_id, d)
        phase = live["status"]
        if phase == ContainerStatus.STOPPED:
            status = self._exit(d) or {"exit_code": live.get("exit_code"),
                                      "finished_at": live.get("finished_at")}
            return self._stopped_state(container_id, d, status)
        if phase == "creating":
            phase = ContainerStatus.CREATED
        if phase == ContainerStatus.RUNNING:
            cg = self.cgroup(d)
            if cg is not None and cg.frozen():
                phase = ContainerStatus.PAUSED
        return ContainerState(id=container_id, status=phase, pid=int(live.get("pid") or 0),
                              started_at=float(live.get("started_at") or 0.0))

    def _orphan_state(self, container_id: str, d: Path) -> ContainerState:
        """The shim is gone without an exit file (killed): the init may still run."""
        pid = self._pid(d, "init.pid")
        if pid and pid_alive(pid) and self._in_cgroup(d, pid):
            started = float(_read(d / "started") or 0.0)
            status = ContainerStatus.RUNNING if started else ContainerStatus.CREATED
            cg = self.cgroup(d)
            if started and cg is not None and cg.frozen():
                status = ContainerStatus.PAUSED
            return ContainerState(id=container_id, status=status, pid=pid, started_at=started)
        return ContainerState(id=container_id, status=ContainerStatus.STOPPED, exit_code=255)

    async def live(self, container_id: str) -> tuple[Path, ContainerState]:
        """The state directory and the state of ``container_id`` (``NotFound``)."""
        d = self.state_dir(container_id)
        return d, await self._state(container_id, d)

    # ------------------------------------------------------------------ lifecycle
    async def create(self, container_id: str, bundle: Path, io: IOConfig) -> None:
        d = self.state_dir(container_id, creating=True)
        if d.exists():
            st = await self._state(container_id, d)
            if st.status != ContainerStatus.STOPPED:
                raise errors.AlreadyExists(f"container {container_id} already exists")
            await self._remove(container_id, d)
        bundle = Path(bundle).resolve()
        self.check_bundle(bundle)
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
            out, err = await self.launch(d, args)
            if not out.startswith("ok"):
                word, _, rest = out.partition(" ")
                if word == "error":
                    raise decode_error(rest.encode())
                raise errors.CoreError(f"the shim failed: {out or err}")
        except BaseException:
            with trio.CancelScope(shield=True):
                await self._remove(container_id, d, force=True)
            raise

    async def launch(self, d: Path, args: list[str]) -> tuple[str, str]:
        """Start the shim for ``args`` (``STATE ID BUNDLE ...``, the launcher's argv, ``STATE``
        being ``d``): its verdict (``ok`` or ``error <Kind> <message>``) and its stderr.

        An override point: a subclass may write files of its own to ``d`` first (its runtime
        helper reads them) and then call this."""
        if self._zygote is not None:
            verdict = await self._zygote.create(args)
            if verdict is not None:
                return verdict.strip(), ""
        return await run_launcher(launcher_argv(self.helper, args))

    @staticmethod
    def check_bundle(bundle: Path) -> None:
        """``InvalidArgument`` unless ``bundle`` has a ``config.json`` with ``process.args``
        and a ``root.path`` directory.  An override point (call it, then check more)."""
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
        d = self.state_dir(container_id)
        if self._exit(d) is not None:
            raise errors.Conflict(f"container {container_id} is stopped: cannot start it")
        try:   # the shim answers Conflict unless the container is created
            return int((await self._request(d, "start"))["pid"])
        except ShimGone:
            raise errors.Conflict(f"container {container_id} is not running") from None

    async def state(self, container_id: str) -> ContainerState:
        return (await self.live(container_id))[1]

    async def kill(self, container_id: str, signal: int, all_processes: bool = False) -> None:
        d, st = await self.live(container_id)
        if st.status == ContainerStatus.STOPPED:
            raise errors.Conflict(f"container {container_id} is not running")
        sig = int(signal)
        delivered = False
        try:
            await self._request(d, "kill", str(sig))     # the init, through its reaper
            delivered = True
        except ShimGone:
            pid = self._pid(d, "init.pid")
            if pid and pid_alive(pid) and self._in_cgroup(d, pid):
                os.kill(pid, sig)
                delivered = True
        except errors.Conflict:
            pass
        if all_processes:
            cg = self.cgroup(d)
            if cg is not None and cg.pids():
                cg.signal_all(sig)
                delivered = True
        if not delivered:
            raise errors.Conflict(f"container {container_id} is not running")
        if st.status == ContainerStatus.PAUSED and sig == signals.SIGKILL:
            cg = self.cgroup(d)
            if cg is not None:
                await trio.to_thread.run_sync(cg.thaw)

    async def wait(self, container_id: str) -> ExitStatus:
        d = self.state_dir(container_id)
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
            except ShimGone:
                if self._exit(d) is not None:
                    continue
                pid = self._pid(d, "init.pid")
                if pid and pid_alive(pid) and self._in_cgroup(d, pid):
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
        d, st = await self.live(container_id)
        if st.status != ContainerStatus.RUNNING:
            raise errors.Conflict(f"container {container_id} is {st.status}: cannot pause it")
        cg = self.cgroup(d)
        if cg is None:
            raise errors.Conflict(f"container {container_id} has no cgroup")
        try:
            await trio.to_thread.run_sync(cg.freeze)
        except OSError as exc:
            raise errors.CoreError(f"pausing {container_id}: {exc}") from exc

    async def resume(self, container_id: str) -> None:
        d, st = await self.live(container_id)
        if st.status != ContainerStatus.PAUSED:
            raise errors.Conflict(f"container {container_id} is not paused")
        cg = self.cgroup(d)
        assert cg is not None
        try:
            await trio.to_thread.run_sync(cg.thaw)
        except OSError as exc:
            raise errors.CoreError(f"resuming {container_id}: {exc}") from exc

    async def update_resources(self, container_id: str, resources: Resources) -> None:
        """:class:`core.contracts.executor.ResourceUpdater`: write the container's cgroup files
        (:meth:`core.shim.cgroups.Cgroup.update`)."""
        d, st = await self.live(container_id)
        if st.status == ContainerStatus.STOPPED:
            raise errors.Conflict(f"container {container_id} is not running")
        cg = self.cgroup(d)
        if cg is None:
            raise errors.Conflict(f"container {container_id} has no cgroup")
        values = {k: v for k, v in attrs.asdict(resources).items() if v is not None}
        try:
            await trio.to_thread.run_sync(cg.update, values)
        except OSError as exc:
            what = os.path.basename(exc.filename or "") or "cgroup"
            reason = exc.strerror or str(exc)
            if exc.errno == errno.EBUSY:
                raise errors.Conflict(f"cannot set {what}: {reason} (the container uses more "
                                      f"than the new limit)") from exc
            if exc.errno in (errno.EINVAL, errno.ERANGE):
                raise errors.InvalidArgument(f"cannot set {what}: {reason}") from exc
            raise errors.CoreError(f"updating the resources of {container_id}: {what}: "
                                   f"{reason}") from exc

    async def attach(self, container_id: str, exec_id: str | None = None) -> ShimAttachStream:
        d = self.state_dir(container_id)
        if exec_id is not None:
            self._check_exec_id(exec_id)
        try:
            conn = await connect(d / "sock")
        except ShimGone:
            raise errors.Conflict(f"container {container_id} is not running") from None
        try:
            await conn.send(b"?", (f"attach {exec_id}" if exec_id else "attach").encode())
            decode_answer(await conn.receive())
        except (ShimGone, trio.BrokenResourceError, OSError):
            with trio.CancelScope(shield=True):
                await conn.aclose()
            raise errors.Conflict(f"container {container_id} is not running") from None
        except BaseException:
            with trio.CancelScope(shield=True):
                await conn.aclose()
            raise
        return ShimAttachStream(conn)

    async def resize(self, container_id: str, width: int, height: int,
                     exec_id: str | None = None) -> None:
        d, st = await self.live(container_id)
        if st.status == ContainerStatus.STOPPED:
            raise errors.Conflict(f"container {container_id} is not running")
        words = ["resize", str(int(width)), str(int(height))]
        if exec_id is not None:
            self._check_exec_id(exec_id)
            words.append(exec_id)
        try:
            await self._request(d, *words)
        except ShimGone:
            raise errors.Conflict(f"container {container_id} is not running") from None

    @staticmethod
    def _check_exec_id(exec_id: str) -> None:
        if not isinstance(exec_id, str) or not ID.fullmatch(exec_id):
            raise errors.NotFound(f"no such exec: {exec_id!r}")

    async def exec(self, container_id: str, exec_id: str, process: dict[str, Any],
                   io: IOConfig) -> int:
        d, st = await self.live(container_id)
        if not isinstance(exec_id, str) or not ID.fullmatch(exec_id):
            raise errors.InvalidArgument(f"invalid exec id {exec_id!r}")
        if st.status != ContainerStatus.RUNNING:
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
        except ShimGone:
            raise errors.Conflict(f"container {container_id} is not running") from None
        return int(got["pid"])

    async def wait_exec(self, container_id: str, exec_id: str) -> int:
        d = self.state_dir(container_id)
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
            except ShimGone:
                if _read(d / f"exec-{exec_id}.exit") is not None:
                    continue
                return 255

    async def top(self, container_id: str) -> list[int]:
        d, st = await self.live(container_id)
        if st.status == ContainerStatus.STOPPED:
            raise errors.Conflict(f"container {container_id} is not running")
        cg = self.cgroup(d)
        return cg.pids() if cg is not None else ([st.pid] if st.pid else [])

    async def stats(self, container_id: str) -> ContainerStats:
        d = self.state_dir(container_id)
        cg = self.cgroup(d)
        if cg is None or not cg.exists():
            return ContainerStats()
        return await trio.to_thread.run_sync(cg.stats)

    async def delete(self, container_id: str) -> None:
        d, st = await self.live(container_id)
        if st.status in (ContainerStatus.RUNNING, ContainerStatus.PAUSED):
            raise errors.Conflict(f"container {container_id} is {st.status}: stop it first")
        await self._remove(container_id, d)

    async def _remove(self, container_id: str, d: Path, force: bool = False) -> None:
        """Stop the shim (and a created init), remove the cgroup and the state directory."""
        with contextlib.suppress(ShimGone, errors.CoreError):
            await self._request(d, "delete", timeout=10)
        shim = self._pid(d, "shim.pid")
        if shim:
            await self._reap(d, shim)
        init = self._pid(d, "init.pid")
        if init and pid_alive(init) and self._in_cgroup(d, init):
            with contextlib.suppress(OSError):
                os.kill(init, signals.SIGKILL)
        cg = self.cgroup(d)
        if cg is not None:
            try:
                await trio.to_thread.run_sync(cg.remove)
            except OSError as exc:
                if not force:
                    raise errors.CoreError(f"removing the cgroup of {container_id}: {exc}") from exc
        shutil.rmtree(d, ignore_errors=True)
        await self.release(container_id)

    async def release(self, container_id: str) -> None:
        """An override point: free what the runtime still holds of ``container_id`` once its
        shim, init, cgroup and state directory are gone (``delete``, or ``create`` replacing a
        stopped container).  Must not fail when there is nothing to free.  Nothing here."""

    def _in_cgroup(self, d: Path, pid: int) -> bool:
        cg = self.cgroup(d)
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
        if not (pid_alive(pid) and ours()):
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
            while pid_alive(pid) and ours():
                await trio.sleep(0.01)
        if pid_alive(pid) and ours():
            with contextlib.suppress(OSError):
                os.kill(pid, signals.SIGKILL)

    async def list(self) -> list[ContainerState]:
        out = []
        for d in sorted(self.run.iterdir()) if self.run.is_dir() else []:
            if d.is_dir() and ID.fullmatch(d.name) and (d / "bundle").exists():
                try:
                    out.append(await self._state(d.name, d))
                except errors.CoreError:
                    continue
        return out

    async def aclose(self) -> None:
        """Stop the zygote (its shims live on); every request has its own connection."""
        if self._zygote is not None:
            await self._zygote.aclose()
