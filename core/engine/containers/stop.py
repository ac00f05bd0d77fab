"""Signals to a running container: ``kill``, ``stop`` (the stop signal, a grace period, then
SIGKILL), ``pause``/``unpause`` (the healthcheck pauses with the container), and waiting for
an exit."""
from __future__ import annotations

import signal as _signal

import trio

from core.engine.containers import oci
from core.engine.containers.context import Parts
from core.engine.containers.health import HealthChecks
from core.engine.containers.restart import cancel_restart
from core.engine.containers.store import Container, NotModified
from core.errors import Conflict, CoreError, NotFound

DEFAULT_STOP_TIMEOUT = 10
KILL_WAIT = 30.0         # seconds a SIGKILL's answer waits for the exit to be recorded


class Stopper:
    """``kill``, ``stop``, ``pause``, ``unpause`` of the containers of ``parts``; ``health``
    told of pauses."""

    def __init__(self, parts: Parts, health: HealthChecks) -> None:
        self.parts = parts
        self.health = health

    async def wait_exit(self, c: Container, since: int, timeout: float | None = None) -> bool:
        """Wait until more than ``since`` exits have been recorded (or the container is gone)."""
        with trio.move_on_after(timeout if timeout is not None else float("inf")):
            while c.exits <= since and not c.removed.is_set():
                await c.changed()
            return True
        return False

    async def kill(self, c: Container, sig: int = _signal.SIGKILL, *, manual: bool = True) -> None:
        """``docker kill``: ``Conflict`` unless it runs.  With SIGKILL it returns once the exit
        is recorded (``docker kill`` then ``inspect`` shows it exited), as docker does."""
        if c.status == "restarting":
            c.cancel_restart = True
            cancel_restart(self.parts.store, c)
            c.state.manually_stopped = True
            self.parts.store.save(c)
            return
        if not c.running:
            raise Conflict(f"Container {c.id} is not running")
        if manual:
            c.state.manually_stopped = True
            stop_sig = oci.parse_signal(c.config.get("StopSignal"), _signal.SIGTERM)
            if sig in (_signal.SIGKILL, stop_sig):
                c.cancel_restart = True
            self.parts.store.save(c)
        ex = self.parts.executor(c)
        since = c.exits
        try:
            await ex.kill(c.id, sig)
        except Conflict:
            return  # it has just exited
        except NotFound:
            return
        self.parts.emit(c, "kill", signal=str(sig))
        if c.status == "paused" and sig in (_signal.SIGKILL, _signal.SIGTERM, _signal.SIGINT, _signal.SIGQUIT):
            try:
                await ex.resume(c.id)
            except CoreError:
                pass
        if sig == _signal.SIGKILL:
            await self.wait_exit(c, since, KILL_WAIT)

    async def stop(self, c: Container, timeout: int | None = None, sig: int | None = None) -> None:
        """``docker stop``: the stop signal, ``timeout`` seconds (``-1``: forever), SIGKILL.
        ``NotModified`` when it is not running."""
        if c.status == "restarting":
            c.state.manually_stopped = True
            c.cancel_restart = True
            cancel_restart(self.parts.store, c)
            self.parts.emit(c, "stop")
            return
        if not c.running:
            raise NotModified(f"container {c.id} is already stopped")
        if sig is None:
            sig = oci.parse_signal(c.config.get("StopSignal"), _signal.SIGTERM)
        if timeout is None:
            st = c.config.get("StopTimeout")
            timeout = st if isinstance(st, int) else DEFAULT_STOP_TIMEOUT
        c.cancel_restart = True
        since = c.exits
        try:
            await self.kill(c, sig)
        except Conflict:
            pass
        if not await self.wait_exit(c, since, None if timeout < 0 else timeout):
            try:
                await self.kill(c, _signal.SIGKILL)
            except Conflict:
                pass
            if not await self.wait_exit(c, since, 30):
                raise CoreError(f"cannot stop container: {c.id}: the process did not exit after SIGKILL")
        self.parts.emit(c, "stop")

    async def pause(self, c: Container) -> None:
        if c.status == "paused":
            raise Conflict(f"Container {c.id} is already paused")
        if c.status != "running":
            raise Conflict(f"Container {c.id} is not running")
        await self.parts.executor(c).pause(c.id)
        self.health.stopped(c)
        c.state.status = "paused"
        self.parts.store.save(c)
        c.notify()
        self.parts.emit(c, "pause")

    async def unpause(self, c: Container) -> None:
        if c.status != "paused":
            raise Conflict(f"Container {c.id} is not paused")
        await self.parts.executor(c).resume(c.id)
        c.state.status = "running"
        self.health.resumed(c)
        self.parts.store.save(c)
        c.notify()
        self.parts.emit(c, "unpause")

