"""The ``runc`` executor: :class:`core.contracts.Executor` with runc doing the runtime's work.

The split:

- **core's shim** (``drivers/executor_container/shim.py``, reused unmodified) is the per-container
  supervisor: it holds the stdio (or the pty master), writes the json-file log, serves attach,
  reaps (a child subreaper) and records exit codes.  Its socket protocol, and so this driver's
  client side, are the built-in driver's: :class:`RuncExecutor` extends ``ContainerExecutor``.
- **runc** creates and runs the containers: the shim's runtime helper is replaced by
  ``helper.py`` (``runc create`` / ``runc start`` / ``runc exec``), and the driver calls runc
  for ``kill``, ``pause``/``resume``, ``top`` (``runc ps``), ``stats`` (``runc events --stats``)
  and ``delete``.

State: runc's under ``<exec_root>/runc`` (its ``--root``: a system runc's containers are never
seen), the shims' under ``<exec_root>/containers/<id>`` (see the built-in ``client.py``).
"""
from __future__ import annotations

import contextlib
import os
import signal as signals
import sys
from pathlib import Path
from typing import Any

import trio

from core import errors
from drivers.executor_container import client
from drivers.executor_container.client import ContainerExecutor

from core_runc_executor import runc as _runc

SHIM = client.SHIM   # core's shim, launched with our runtime helper (shim.py --helper CODE ...)
HELPER_CODE = ("import sys; sys.path.insert(0, %r); from core_runc_executor import helper; "
               "sys.exit(helper.main(sys.argv))" % str(Path(__file__).resolve().parent.parent))


class RuncExecutor(ContainerExecutor):
    def __init__(self, context: Any) -> None:
        super().__init__(context)
        exec_root = Path(context.exec_root)
        self.run = exec_root / "containers"
        self.run.mkdir(parents=True, exist_ok=True)
        self.runc_root = exec_root / "runc"
        self.runc_root.mkdir(parents=True, exist_ok=True, mode=0o700)

    async def _runc(self, *args: str) -> str:
        return await trio.to_thread.run_sync(
            lambda: _runc.runc(str(self.runc_root), *args))

    def _runc_has(self, container_id: str) -> bool:
        return (self.runc_root / container_id).is_dir()

    # ------------------------------------------------------------------ create
    async def _launch(self, d: Path, args: list[str]) -> tuple[str, str]:
        """core's shim, with ``helper.py`` as its runtime helper (``shim.py --helper``); the
        rest of ``create`` (state directory, bundle checks, errors) is the built-in driver's."""
        (d / "id").write_text(args[1])
        (d / "runc-root").write_text(str(self.runc_root))
        return await client.run_launcher([sys.executable, "-I", "-S", SHIM, "--helper", HELPER_CODE, *args])

    # ------------------------------------------------------------------ runc's verbs
    async def kill(self, container_id: str, signal: int, all_processes: bool = False) -> None:
        d, st = await self._live(container_id)
        if st.status == "stopped":
            raise errors.Conflict(f"container {container_id} is not running")
        if self._runc_has(container_id):
            args = ["kill"] + (["--all"] if all_processes else []) + [container_id, str(int(signal))]
            try:
                await self._runc(*args)
            except _runc.RuncError:
                pass        # it has just stopped (runc: "container not running"): as below
            else:
                if st.status == "paused" and int(signal) == signals.SIGKILL:
                    with contextlib.suppress(_runc.RuncError):
                        await self._runc("resume", container_id)
                return
        await super().kill(container_id, signal, all_processes)   # (a placeholder init)

    async def pause(self, container_id: str) -> None:
        d, st = await self._live(container_id)
        if st.status != "running":
            raise errors.Conflict(f"container {container_id} is {st.status}: cannot pause it")
        try:
            await self._runc("pause", container_id)
        except _runc.RuncError as exc:
            raise errors.CoreError(f"pausing {container_id}: {exc}") from None

    async def resume(self, container_id: str) -> None:
        d, st = await self._live(container_id)
        if st.status != "paused":
            raise errors.Conflict(f"container {container_id} is not paused")
        try:
            await self._runc("resume", container_id)
        except _runc.RuncError as exc:
            raise errors.CoreError(f"resuming {container_id}: {exc}") from None

    async def top(self, container_id: str) -> list[int]:
        d, st = await self._live(container_id)
        if st.status == "stopped":
            raise errors.Conflict(f"container {container_id} is not running")
        if self._runc_has(container_id):
            with contextlib.suppress(_runc.RuncError, ValueError):
                import json
                return sorted(int(p) for p in json.loads(
                    await self._runc("ps", "--format", "json", container_id)) or [])
        return await super().top(container_id)

    async def stats(self, container_id: str) -> dict[str, Any]:
        d = self._dir(container_id)
        if self._runc_has(container_id):
            with contextlib.suppress(_runc.RuncError, ValueError, KeyError, TypeError):
                import json
                data = json.loads(await self._runc("events", "--stats", container_id))["data"]
                return _docker_stats(data)
        return await super().stats(container_id)

    async def _remove(self, container_id: str, d: Path, force: bool = False) -> None:
        await super()._remove(container_id, d, force)
        if self._runc_has(container_id):
            with contextlib.suppress(_runc.RuncError):
                await self._runc("delete", "-f", container_id)


def _docker_stats(data: dict[str, Any]) -> dict[str, Any]:
    """runc's ``events --stats`` data in the shape of docker's stats."""
    mem = data.get("memory") or {}
    usage = mem.get("usage") or {}
    cpu = (data.get("cpu") or {}).get("usage") or {}
    thr = (data.get("cpu") or {}).get("throttling") or {}
    pids = data.get("pids") or {}
    blkio = data.get("blkio") or {}

    def entries(key: str) -> list[dict[str, Any]] | None:
        got = blkio.get(key)
        return [{"major": e.get("major", 0), "minor": e.get("minor", 0),
                 "op": (e.get("op") or "").capitalize(), "value": e.get("value", 0)}
                for e in got] if got else None

    return {
        "memory_stats": {"usage": usage.get("usage", 0), "max_usage": usage.get("max", 0),
                         "limit": usage.get("limit", 0), "failcnt": usage.get("failcnt", 0),
                         "stats": mem.get("raw") or {}},
        "cpu_stats": {"cpu_usage": {"total_usage": cpu.get("total", 0),
                                    "percpu_usage": cpu.get("percpu") or [],
                                    "usage_in_usermode": cpu.get("user", 0),
                                    "usage_in_kernelmode": cpu.get("kernel", 0)},
                      "online_cpus": len(cpu.get("percpu") or []) or (os.cpu_count() or 1),
                      "throttling_data": {"periods": thr.get("periods", 0),
                                          "throttled_periods": thr.get("throttledPeriods", 0),
                                          "throttled_time": thr.get("throttledTime", 0)}},
        "pids_stats": {"current": pids.get("current", 0),
                       **({"limit": pids["limit"]} if pids.get("limit") else {})},
        "blkio_stats": {"io_service_bytes_recursive": entries("ioServiceBytesRecursive"),
                        "io_serviced_recursive": entries("ioServicedRecursive")},
    }
