"""The ``runc`` executor: :class:`core.contracts.Executor` with runc doing the runtime's work.

The split:

- **core's shim kit** (:mod:`core.shim`, public) supervises each container: the shim holds the
  stdio (or the pty master), writes the json-file log, serves attach, reaps (a child subreaper)
  and records exit codes; :class:`core.shim.executor.ShimExecutor` is the client side and the
  whole executor contract.  :class:`RuncExecutor` extends it.
- **runc** creates and runs the containers: the shim's runtime helper is ``helper.py``
  (``runc create`` / ``runc start`` / ``runc exec``), and the driver calls runc for ``kill``,
  ``pause``/``resume``, ``top`` (``runc ps``), ``stats`` (``runc events --stats``) and, through
  the ``release`` override point, ``delete``.

State: runc's under ``<exec_root>/runc`` (its ``--root``: a system runc's containers are never
seen), the shims' under ``<exec_root>/containers/<id>`` (the files :mod:`core.shim` lists, and
``id`` and ``runc-root`` for the helper).
"""
from __future__ import annotations

import contextlib
import json
import os
import signal as signals
from pathlib import Path
from typing import Any

import trio

from core import errors
from core.contracts.executor import (BlkioEntry, BlkioStats, ContainerStats, ContainerStatus, CpuStats,
                                     CpuUsage, MemoryStats, PidsStats, Throttling)
from core.shim.client import RuntimeHelper
from core.shim.executor import ShimExecutor

from core_runc_executor import runc as _runc

HELPER = RuntimeHelper.of("core_runc_executor.helper", str(Path(__file__).with_name("helper.py")))


class RuncExecutor(ShimExecutor):
    def __init__(self, context: Any) -> None:
        exec_root = Path(context.exec_root)
        super().__init__(exec_root / "containers", HELPER)
        self.runc_root = exec_root / "runc"
        self.runc_root.mkdir(parents=True, exist_ok=True, mode=0o700)

    async def _runc(self, *args: str) -> str:
        return await trio.to_thread.run_sync(
            lambda: _runc.runc(str(self.runc_root), *args))

    def _runc_has(self, container_id: str) -> bool:
        return (self.runc_root / container_id).is_dir()

    # ------------------------------------------------------------------ create
    async def launch(self, d: Path, args: list[str]) -> tuple[str, str]:
        """The files ``helper.py`` reads (the container's id, runc's root), then core's shim."""
        (d / "id").write_text(args[1])
        (d / "runc-root").write_text(str(self.runc_root))
        return await super().launch(d, args)

    # ------------------------------------------------------------------ runc's verbs
    async def kill(self, container_id: str, signal: int, all_processes: bool = False) -> None:
        d, st = await self.live(container_id)
        if st.status == ContainerStatus.STOPPED:
            raise errors.Conflict(f"container {container_id} is not running")
        if self._runc_has(container_id):
            args = ["kill"] + (["--all"] if all_processes else []) + [container_id, str(int(signal))]
            try:
                await self._runc(*args)
            except _runc.RuncError:
                pass        # it has just stopped (runc: "container not running"): as below
            else:
                if st.status == ContainerStatus.PAUSED and int(signal) == signals.SIGKILL:
                    with contextlib.suppress(_runc.RuncError):
                        await self._runc("resume", container_id)
                return
        await super().kill(container_id, signal, all_processes)   # (a placeholder init)

    async def pause(self, container_id: str) -> None:
        await self._freezer(container_id, "pause", ContainerStatus.RUNNING)

    async def resume(self, container_id: str) -> None:
        await self._freezer(container_id, "resume", ContainerStatus.PAUSED)

    async def _freezer(self, container_id: str, verb: str, needs: ContainerStatus) -> None:
        """``runc pause`` / ``runc resume`` of a container that is ``needs``, else Conflict."""
        d, st = await self.live(container_id)
        if st.status != needs:
            raise errors.Conflict(f"container {container_id} is {st.status}: cannot {verb} it")
        try:
            await self._runc(verb, container_id)
        except _runc.RuncError as exc:
            raise errors.CoreError(f"{verb} of {container_id}: {exc}") from None

    async def top(self, container_id: str) -> list[int]:
        d, st = await self.live(container_id)
        if st.status == ContainerStatus.STOPPED:
            raise errors.Conflict(f"container {container_id} is not running")
        if self._runc_has(container_id):
            with contextlib.suppress(_runc.RuncError, ValueError):
                return sorted(int(p) for p in json.loads(
                    await self._runc("ps", "--format", "json", container_id)) or [])
        return await super().top(container_id)

    async def stats(self, container_id: str) -> ContainerStats:
        d = self.state_dir(container_id)
        if self._runc_has(container_id):
            with contextlib.suppress(_runc.RuncError, ValueError, KeyError, TypeError):
                data = json.loads(await self._runc("events", "--stats", container_id))["data"]
                return _stats(data)
        return await super().stats(container_id)

    async def release(self, container_id: str) -> None:
        """runc's own record of the container goes with it."""
        if self._runc_has(container_id):
            with contextlib.suppress(_runc.RuncError):
                await self._runc("delete", "-f", container_id)


def _stats(data: dict[str, Any]) -> ContainerStats:
    """runc's ``events --stats`` data as :class:`core.contracts.executor.ContainerStats`."""
    mem = data.get("memory") or {}
    usage = mem.get("usage") or {}
    cpu = (data.get("cpu") or {}).get("usage") or {}
    thr = (data.get("cpu") or {}).get("throttling") or {}
    pids = data.get("pids") or {}
    blkio = data.get("blkio") or {}

    def entries(key: str) -> list[BlkioEntry] | None:
        got = blkio.get(key)
        return [BlkioEntry(major=e.get("major", 0), minor=e.get("minor", 0),
                           op=(e.get("op") or "").capitalize(), value=e.get("value", 0))
                for e in got] if got else None

    return ContainerStats(
        memory=MemoryStats(usage=usage.get("usage", 0), max_usage=usage.get("max", 0),
                           limit=usage.get("limit", 0), failcnt=usage.get("failcnt", 0),
                           stats=mem.get("raw") or {}),
        cpu=CpuStats(usage=CpuUsage(total=cpu.get("total", 0), percpu=cpu.get("percpu") or [],
                                    user=cpu.get("user", 0), kernel=cpu.get("kernel", 0)),
                     online_cpus=len(cpu.get("percpu") or []) or (os.cpu_count() or 1),
                     throttling=Throttling(periods=thr.get("periods", 0),
                                           throttled_periods=thr.get("throttledPeriods", 0),
                                           throttled_time=thr.get("throttledTime", 0))),
        pids=PidsStats(current=pids.get("current", 0), limit=pids.get("limit") or None),
        blkio=BlkioStats(service_bytes=entries("ioServiceBytesRecursive"),
                         serviced=entries("ioServicedRecursive")),
    )
