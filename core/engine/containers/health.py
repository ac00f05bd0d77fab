"""Container healthchecks: docker's ``HEALTHCHECK``, run while a container runs.

A container's ``Config.Healthcheck`` (docker's ``HealthConfig``: the image's, or ``--health-*``
/ ``--no-healthcheck``, merged by :func:`merge`) names a probe:

    ``[]`` / absent      inherit the image's
    ``["NONE"]``         no healthcheck (``--no-healthcheck``)
    ``["CMD", ...]``     run the command in the container
    ``["CMD-SHELL", s]`` run ``s`` with the container's ``Shell`` (default ``/bin/sh -c``)

While the container runs (not while it is paused) :class:`HealthChecks` runs one trio task per
container (:meth:`HealthChecks.started`) in the container service's nursery (``Parts.tasks``;
the tasks end with :meth:`core.engine.containers.service.Containers.serve`).  After each
interval it runs the probe as an exec of the container (its ``exec_create``/``exec_start``/
``exec_die`` events are emitted, as docker's are), collects its output (stdout and stderr, at
most :data:`MAX_OUTPUT` bytes, ``...`` appended when cut), and records the result in
``State.Health`` (docker's ``Health`` object, kept in :attr:`ContainerStateRecord.health`):

- ``Status``: ``starting`` from each start until a probe succeeds; ``healthy`` after a probe
  that exits 0; ``unhealthy`` after ``Retries`` (default 3) failures in a row.  Failures within
  ``StartPeriod`` of the start, while still ``starting``, are logged but not counted.
- ``FailingStreak``: consecutive failures; ``Log``: the last :data:`MAX_LOG` results
  (``Start``, ``End``, ``ExitCode``, ``Output``).  A probe that runs longer than ``Timeout``
  is killed and recorded with exit code -1 and ``Health check exceeded timeout (30s)``; one that
  cannot run (a missing program) with -1 and the exec's error.
- each change of ``Status`` emits a container event ``health_status: <status>``, is saved, and
  wakes the container's waiters (``await c.changed()``).

The interval (default 30 s) runs from the end of one probe to the start of the next, the first
probe coming one interval after the start; during the start period while ``starting`` the
``StartInterval`` (default 5 s) is used, and a probe runs as soon as the start period ends.
When the container stops its ``Health`` is kept as it was (inspect shows the last results).

The status shows in ``ps`` (``Up 3 minutes (healthy)``, :func:`status_suffix`) and is matched by
the ``health`` filter of ``GET /containers/json`` (:func:`filter_matches`).
"""
from __future__ import annotations

import logging
import os
import signal as _signal
import time
from typing import TYPE_CHECKING, Any

import trio

from core.errors import CoreError, InvalidArgument
from core.units import go_duration

if TYPE_CHECKING:
    from core.engine.containers.context import Parts
    from core.engine.containers.exec import Execs
    from core.engine.containers.store import Container

log = logging.getLogger("core.engine.containers.health")

MAX_OUTPUT = 4096                    # bytes of a probe's output kept
MAX_LOG = 5                          # results kept in State.Health.Log
DEFAULT_INTERVAL = 30_000_000_000    # ns
DEFAULT_TIMEOUT = 30_000_000_000
DEFAULT_START_PERIOD = 0
DEFAULT_START_INTERVAL = 5_000_000_000
DEFAULT_RETRIES = 3
MINIMUM_DURATION = 1_000_000         # 1ms: docker's containertypes.MinimumDuration
EXEC_START_LIMIT = 30.0              # seconds a probe's exec may take to start

STARTING, HEALTHY, UNHEALTHY, NONE = "starting", "healthy", "unhealthy", "none"
FILTER_VALUES = (STARTING, HEALTHY, UNHEALTHY, NONE)
_DURATIONS = ("Interval", "Timeout", "StartPeriod", "StartInterval")


# --------------------------------------------------------------------------- configuration
def merge(user: dict[str, Any] | None, image: dict[str, Any] | None) -> dict[str, Any] | None:
    """docker's merge of a create request's ``Healthcheck`` with the image's: each field the
    request leaves empty (``Test``, the durations, ``Retries``) comes from the image."""
    if user is None:
        return dict(image) if isinstance(image, dict) else image
    if not isinstance(user, dict):
        raise InvalidArgument("invalid Healthcheck: expected a JSON object")
    if not isinstance(image, dict):
        return dict(user)
    out = dict(user)
    if not out.get("Test"):
        out["Test"] = image.get("Test")
    for key in (*_DURATIONS, "Retries"):
        if not out.get(key) and image.get(key):
            out[key] = image[key]
    return out


def validate(hc: Any) -> None:
    """``InvalidArgument`` with docker's message for a ``HealthConfig`` docker refuses."""
    if hc is None:
        return
    if not isinstance(hc, dict):
        raise InvalidArgument("invalid Healthcheck: expected a JSON object")
    test = hc.get("Test")
    if test is not None and (not isinstance(test, list) or not all(isinstance(x, str) for x in test)):
        raise InvalidArgument("invalid Healthcheck.Test: expected a list of strings")
    if test and test[0] not in ("NONE", "CMD", "CMD-SHELL"):
        raise InvalidArgument(f"unknown healthcheck type '{test[0]}' (expected NONE, CMD or CMD-SHELL)")
    if test and test[0] == "CMD-SHELL" and len(test) != 2:
        raise InvalidArgument("invalid Healthcheck.Test: CMD-SHELL takes exactly one command string")
    if test and test[0] == "CMD" and len(test) < 2:
        raise InvalidArgument("invalid Healthcheck.Test: CMD needs a command")
    for key in _DURATIONS:
        value = hc.get(key)
        if value is None:
            continue
        if not isinstance(value, int) or isinstance(value, bool):
            raise InvalidArgument(f"invalid Healthcheck.{key}: expected nanoseconds as an integer")
        if value != 0 and value < MINIMUM_DURATION:
            raise InvalidArgument(f"{key} in Healthcheck cannot be less than 1ms")
    retries = hc.get("Retries")
    if retries is not None:
        if not isinstance(retries, int) or isinstance(retries, bool):
            raise InvalidArgument("invalid Healthcheck.Retries: expected an integer")
        if retries < 0:
            raise InvalidArgument("Retries in Healthcheck cannot be negative")


def probe_command(config: dict[str, Any]) -> list[str] | None:
    """The command a container's healthcheck runs, or ``None`` when it has none."""
    hc = config.get("Healthcheck")
    if not isinstance(hc, dict):
        return None
    test = hc.get("Test") or []
    if len(test) < 2 or test[0] not in ("CMD", "CMD-SHELL"):
        return None
    if test[0] == "CMD":
        return list(test[1:])
    shell = config.get("Shell") or ["/bin/sh", "-c"]
    return [*shell, *test[1:]]


def _duration(hc: dict[str, Any], key: str, default: int) -> int:
    value = hc.get(key)
    return value if isinstance(value, int) and value > 0 else default


# --------------------------------------------------------------------------- the API's views
def state_json(health: dict[str, Any] | None) -> dict[str, Any] | None:
    """``State.Health`` of inspect (``None``: the field is left out)."""
    if health is None:
        return None
    return {"Status": health.get("Status") or UNHEALTHY, "FailingStreak": int(health.get("FailingStreak") or 0),
            "Log": list(health.get("Log") or [])}


def status_suffix(c: Container) -> str:
    """What ``ps`` adds to ``Up 5 seconds`` of a running container: ``" (healthy)"``,
    ``" (health: starting)"``, ``" (unhealthy)"``, or nothing."""
    health = c.state.health
    if health is None or c.status != "running":
        return ""
    status = health.get("Status") or UNHEALTHY
    return f" (health: {status})" if status == STARTING else f" ({status})"


def filter_matches(c: Container, wanted: list[str]) -> bool:
    """The ``health`` filter of ``GET /containers/json`` (``none``: no healthcheck)."""
    health = c.state.health
    status = NONE if health is None else (health.get("Status") or UNHEALTHY)
    return status in wanted


def check_filter(values: list[str]) -> None:
    for value in values:
        if value not in FILTER_VALUES:
            raise InvalidArgument(f"Unrecognised filter value for health: {value}")


# --------------------------------------------------------------------------- the monitors
class HealthChecks:
    """One monitor task per running container that has a healthcheck.

    The container service's parts call :meth:`started` when a container starts
    (:class:`~core.engine.containers.lifecycle.Lifecycle`) or is re-adopted at daemon start
    (:mod:`~core.engine.containers.restore`), :meth:`stopped` when it exits or is paused
    (``Lifecycle.on_exit``, :class:`~core.engine.containers.stop.Stopper`), and :meth:`resumed`
    when it is unpaused.  Monitors run in the container service's nursery (``parts.tasks``) and
    end with it; probes are execs of ``execs``.
    """

    def __init__(self, parts: Parts, execs: Execs) -> None:
        self.parts = parts
        self.execs = execs
        self.monitors: dict[str, trio.CancelScope] = {}

    def started(self, c: Container) -> None:
        """A (re)start: ``Health`` back to ``starting`` (streak 0, log kept) and a monitor."""
        self.stopped(c)
        if probe_command(c.config) is None:
            return
        health = dict(c.state.health or {})
        health["Status"] = STARTING
        health["FailingStreak"] = 0
        health.setdefault("Log", [])
        c.state.health = health
        self._run(c)

    def resumed(self, c: Container) -> None:
        """After an unpause: the monitor again, ``Health`` as it was."""
        if c.state.health is not None and probe_command(c.config) is not None and c.id not in self.monitors:
            self._run(c)

    def stopped(self, c: Container) -> None:
        scope = self.monitors.pop(c.id, None)
        if scope is not None:
            scope.cancel()

    def _run(self, c: Container) -> None:
        scope = trio.CancelScope()
        self.monitors[c.id] = scope
        try:
            self.parts.tasks.start_soon(self._monitor, c, scope)
        except CoreError:
            self.monitors.pop(c.id, None)

    # -- the loop ---------------------------------------------------------------------------------
    def _interval(self, c: Container, hc: dict[str, Any]) -> float:
        """Seconds until the next probe (docker's monitor: getInterval)."""
        interval = _duration(hc, "Interval", DEFAULT_INTERVAL)
        start_period = _duration(hc, "StartPeriod", DEFAULT_START_PERIOD)
        elapsed = time.time_ns() - c.state.started_at
        if elapsed >= start_period:
            return interval / 1e9
        remaining = start_period - elapsed
        if remaining < interval:
            return remaining / 1e9
        if (c.state.health or {}).get("Status") == STARTING:
            return _duration(hc, "StartInterval", DEFAULT_START_INTERVAL) / 1e9
        return interval / 1e9

    async def _monitor(self, c: Container, scope: trio.CancelScope) -> None:
        with scope:
            while True:
                hc = c.config.get("Healthcheck") or {}
                await trio.sleep(self._interval(c, hc))
                if c.status != "running":
                    return
                start = time.time_ns()
                try:
                    result = await self._probe(c, hc)
                except CoreError as exc:
                    log.warning("health check for container %s: %s", c.short_id, exc)
                    result = {"ExitCode": -1, "Output": exc.message}
                except Exception as exc:  # noqa: BLE001 - a probe's bug must not end the daemon
                    log.exception("health check for container %s", c.short_id)
                    result = {"ExitCode": -1, "Output": f"{type(exc).__name__}: {exc}"}
                result = {"Start": _rfc3339(start), "End": _rfc3339(time.time_ns()), **result}
                if scope.cancel_called or self.monitors.get(c.id) is not scope:
                    return
                self._record(c, hc, start, result)

    def _record(self, c: Container, hc: dict[str, Any], start_ns: int, result: dict[str, Any]) -> None:
        """docker's handleProbeResult."""
        health = c.state.health
        if health is None:
            return
        old = health.get("Status")
        log_ = (list(health.get("Log") or []) + [result])[-MAX_LOG:]
        health["Log"] = log_
        if result["ExitCode"] == 0:
            health["FailingStreak"] = 0
            health["Status"] = HEALTHY
        else:
            count = True
            if health.get("Status") == STARTING:
                start_period = _duration(hc, "StartPeriod", DEFAULT_START_PERIOD)
                if start_ns - c.state.started_at < start_period:
                    count = False
            if count:
                health["FailingStreak"] = int(health.get("FailingStreak") or 0) + 1
                retries = hc.get("Retries") if isinstance(hc.get("Retries"), int) and hc["Retries"] > 0 \
                    else DEFAULT_RETRIES
                if health["FailingStreak"] >= retries:
                    health["Status"] = UNHEALTHY
        if health["Status"] != old:
            # kept on disk at each change of status (and with any other save of the container)
            try:
                self.parts.store.save(c)
            except Exception as exc:  # noqa: BLE001 - a failed save must not end the monitor
                log.warning("container %s: saving its health: %s", c.short_id, exc)
            self.parts.emit(c, f"health_status: {health['Status']}")
            c.notify()

    async def _probe(self, c: Container, hc: dict[str, Any]) -> dict[str, Any]:
        """Run the probe once as an exec of ``c``: ``{"ExitCode", "Output"}``."""
        cmd = probe_command(c.config)
        assert cmd is not None
        e = self.execs.create(c, {"Cmd": cmd, "AttachStdout": True, "AttachStderr": True, "Tty": False,
                                "User": c.config.get("User") or "", "WorkingDir": c.config.get("WorkingDir") or ""})
        try:
            with trio.move_on_after(EXEC_START_LIMIT) as starting:
                try:
                    await self.execs.start(e)
                except CoreError as exc:
                    return {"ExitCode": -1, "Output": e.error or exc.message}
            if starting.cancelled_caught:
                return {"ExitCode": -1, "Output": f"timed out starting health check for container {c.id}"}
            output = bytearray()
            cut = False
            timeout = _duration(hc, "Timeout", DEFAULT_TIMEOUT)
            with trio.move_on_after(timeout / 1e9) as deadline:
                try:
                    stream = await self.parts.executor(c).attach(c.id, e.id)
                except CoreError:       # it ended before we attached, its output gone with it
                    stream = None
                if stream is not None:
                    try:
                        while (item := await stream.receive()) is not None:
                            room = MAX_OUTPUT - len(output)
                            output += item[1][:max(room, 0)]
                            cut = cut or len(item[1]) > room
                    except CoreError:
                        pass
                    finally:
                        with trio.CancelScope(shield=True):
                            await stream.aclose()
                await e.done.wait()
            text = output.decode("utf-8", "replace") + ("..." if cut else "")
            if deadline.cancelled_caught:
                self._kill(e)
                with trio.move_on_after(10):
                    await e.done.wait()
                limit = go_duration(timeout)
                msg = f"Health check exceeded timeout ({limit})"
                return {"ExitCode": -1, "Output": f"{msg}: {text}" if text else msg}
            return {"ExitCode": e.exit_code if e.exit_code is not None else -1, "Output": text}
        finally:
            self.parts.execs.pop(e.id, None)   # probes are many: not kept for inspection

    @staticmethod
    def _kill(e: Any) -> None:
        if e.done.is_set() or not e.pid:
            return
        try:
            os.kill(e.pid, _signal.SIGKILL)
        except OSError:
            pass


def _rfc3339(ns: int) -> str:
    from core.engine.containers.archive import rfc3339

    return rfc3339(ns)


__all__ = ["HealthChecks", "check_filter", "filter_matches", "merge", "probe_command", "state_json",
           "status_suffix", "validate"]
