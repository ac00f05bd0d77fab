"""The daemon starts again: containers are re-adopted from their executors.

Each executor says which containers it still has: those still running are watched again
(logs, attach, exec, stop carry on — the shim holds them; their healthchecks start again);
those that exited meanwhile get their exit recorded; those the executor lost (a reboot) are
marked exited (255); then restart policies apply, ``always`` and ``unless-stopped`` (unless
stopped by hand) coming back, and ``--rm`` containers that exited go.
"""
from __future__ import annotations

import logging
import time
from typing import Any

import trio

from core.contracts.executor import ExitStatus
from core.engine.containers import rootfs
from core.engine.containers.context import Parts
from core.engine.containers.health import HealthChecks
from core.engine.containers.lifecycle import Lifecycle
from core.engine.containers.restart import should_restart
from core.engine.containers.store import EXIT_LOST, Container
from core.errors import CoreError

log = logging.getLogger("core.engine.containers.restore")


async def _executor_states(parts: Parts) -> tuple[dict[str, dict[str, Any]], set[str]]:
    """What each executor has, by container ID; the executors that cannot tell."""
    states: dict[str, dict[str, Any]] = {}
    broken: set[str] = set()
    for executor_name in sorted({c.executor for c in parts.store.all()}):
        try:
            ex = parts.drivers.get("executor", executor_name)
            states[executor_name] = {s.id: s for s in await ex.list()}
        except CoreError as exc:
            log.warning("executor %s cannot list its containers: %s", executor_name, exc)
            broken.add(executor_name)
    return states, broken


async def _lost(parts: Parts, c: Container) -> None:
    """The executor lost it: the machine rebooted, or its shim died."""
    c.state.status = "exited"
    c.state.exit_code = EXIT_LOST
    c.state.pid = 0
    if c.state.finished_at < c.state.started_at:
        c.state.finished_at = time.time_ns()  # when is unknown: now is when we learnt it
    parts.store.save(c)
    await rootfs.unmount(parts, c)


async def restore(parts: Parts, lifecycle: Lifecycle, health: HealthChecks, nursery: trio.Nursery) -> None:
    """Re-adopt running containers (their healthchecks run again, ``health``), record exits
    that happened while the daemon was away, then restart what the restart policies say (in the
    background, in ``nursery``)."""
    states, broken = await _executor_states(parts)
    restarts: list[Container] = []
    for c in parts.store.all():
        if c.status == "removing":
            c.state.status = "dead"
            parts.store.save(c)
            continue
        if c.executor in broken:
            continue
        st = states.get(c.executor, {}).get(c.id)
        if st is not None and st.status in ("running", "paused"):
            c.state.status = st.status
            c.state.pid = st.pid or c.state.pid
            if st.status == "running":
                health.started(c)
            parts.store.save(c)
            nursery.start_soon(lifecycle.monitor, c)
            continue
        if c.status == "restarting":
            # its exit is recorded and its policy said restart: do it now (a fresh back-off)
            c.state.status = "exited"
            parts.store.save(c)
            c.backoff = 0.0
            restarts.append(c)
            continue
        if c.status in ("running", "paused"):
            if st is not None and st.status == "stopped":
                nursery.start_soon(lifecycle.on_exit, c,
                                   ExitStatus(code=st.exit_code if st.exit_code is not None else EXIT_LOST,
                                              oom_killed=st.oom_killed, finished_at=st.finished_at))
                continue
            await _lost(parts, c)
        if c.status in ("exited", "created") and c.state.has_been_started:
            if c.host_config.get("AutoRemove"):
                nursery.start_soon(lifecycle.remove_quietly, c)
                continue
            ran = (c.state.finished_at - c.state.started_at) / 1e9 if c.state.finished_at else 0.0
            restart, _ = should_restart(c, c.state.exit_code, ran)
            if restart:
                c.backoff = 0.0
                restarts.append(c)
    try:
        await parts.networks.restore([(c.id, c.state.pid) for c in parts.store.all()
                                      if c.status in ("running", "paused")])
    except CoreError as exc:
        log.error("networks cannot restore the running containers' networking: %s", exc)
    for c in restarts:
        nursery.start_soon(lifecycle.restart_at_boot, c)
