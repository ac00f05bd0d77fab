"""``docker stats``: samples of a container's resource usage in docker's shape, each with the
previous one's CPU figures (``precpu_stats``) so clients can compute a rate; one a second."""
from __future__ import annotations

import json
import time
from typing import Any, AsyncIterator

import trio

from core.contracts.executor import docker_stats
from core.engine.containers import archive
from core.engine.containers.context import Parts
from core.engine.containers.store import Container
from core.errors import CoreError

STATS_INTERVAL = 1.0


def host_memory_total() -> int:
    """``MemTotal`` of ``/proc/meminfo`` in bytes (0 when unreadable)."""
    try:
        with open("/proc/meminfo") as f:
            for line in f:
                if line.startswith("MemTotal:"):
                    return int(line.split()[1]) * 1024
    except (OSError, ValueError, IndexError):
        pass
    return 0


def _cpu() -> dict[str, Any]:
    return {"cpu_usage": {"total_usage": 0, "usage_in_kernelmode": 0, "usage_in_usermode": 0},
            "throttling_data": {"periods": 0, "throttled_periods": 0, "throttled_time": 0}}


def empty_stats(c: Container) -> dict[str, Any]:
    """The stats of a container that does not run."""
    return {"read": "0001-01-01T00:00:00Z", "preread": "0001-01-01T00:00:00Z", "pids_stats": {},
            "blkio_stats": {"io_service_bytes_recursive": None, "io_serviced_recursive": None,
                            "io_queue_recursive": None, "io_service_time_recursive": None,
                            "io_wait_time_recursive": None, "io_merged_recursive": None,
                            "io_time_recursive": None, "sectors_recursive": None},
            "num_procs": 0, "storage_stats": {}, "cpu_stats": _cpu(), "precpu_stats": _cpu(),
            "memory_stats": {}, "name": "/" + c.name, "id": c.id}


async def sample(parts: Parts, c: Container, previous: dict[str, Any] | None) -> dict[str, Any]:
    """One sample from the executor; ``previous`` gives ``preread`` and ``precpu_stats``."""
    raw = docker_stats(await parts.executor(c).stats(c.id))
    out = empty_stats(c)
    out.update(raw)
    memory = out.get("memory_stats")
    if isinstance(memory, dict) and memory:
        total = host_memory_total()
        limit = memory.get("limit")
        if total and (not isinstance(limit, int) or limit <= 0 or limit >= total):
            out["memory_stats"] = {**memory, "limit": total}  # no limit: docker shows the host's memory
    out["read"] = archive.rfc3339(time.time_ns())
    out["name"], out["id"] = "/" + c.name, c.id
    out.update(await parts.networks.net_stats(c.id, c.state.pid))  # docker's per-interface "networks"
    if previous is not None:
        out["preread"] = previous["read"]
        out["precpu_stats"] = previous.get("cpu_stats", out["precpu_stats"])
    return out


async def once(parts: Parts, c: Container, one_shot: bool) -> dict[str, Any]:
    """``stream=false``: one sample (``one_shot``), or a second one a second later with the
    first as its previous (docker's default, so that the CPU rate is known)."""
    if not c.running:
        return empty_stats(c)
    first = await sample(parts, c, None)
    if one_shot:
        return first
    await trio.sleep(STATS_INTERVAL)
    if not c.running:
        return first
    return await sample(parts, c, first)


async def stream(parts: Parts, c: Container) -> AsyncIterator[bytes]:
    """A JSON line a second while the container runs."""
    previous = None
    while c.running:
        try:
            current = await sample(parts, c, previous)
        except CoreError:
            if not c.running:
                return
            raise
        yield json.dumps(current).encode() + b"\n"
        previous = current
        await trio.sleep(STATS_INTERVAL)
