"""Conformance suites for drivers, shipped with core.

A driver author proves a driver the way core proves its own: the suites select the driver under
test through its entry point, exactly as the daemon does, so what passes here is what core will
load.  Two ways in:

* from the command line, for an installed driver::

      pytest --pyargs core.testing.loading --driver storage=mydriver
      pytest --pyargs core.testing.storage --driver storage=mydriver     # (per-kind suites)

  ``--driver KIND=NAME`` is repeatable; every suite runs once per driver of its kind.

* from your own test suite, by subclassing a suite class and naming the driver::

      from core.testing.loading import LoadingSuite

      class TestMyDriver(LoadingSuite):
          kind = "storage"
          name = "mydriver"

Suites per kind are added as the kinds gain behaviour: ``loading`` (every kind: the driver loads
through its entry point, validates against the hook specs, describes and probes itself, and
builds an object implementing its kind's Protocol).
"""
from __future__ import annotations

import tempfile
import threading
from pathlib import Path
from typing import Any, Callable

import trio

from core import plugins


def make_driver(kind: str, name: str, root: Path) -> tuple[plugins.LoadedDriver, Any, Any]:
    """Load ``name`` of ``kind`` through its entry point and build it under ``root``.

    Returns ``(loaded, context, driver)``.  Raises :class:`core.errors.DriverError` when the
    driver cannot be loaded, and ``pytest.skip`` is *not* used: a driver whose probe says it
    cannot run here makes this raise ``DriverError`` too, so a suite never passes vacuously.
    """
    from core.errors import DriverError

    loaded = plugins.load(kind, name)
    context = plugins.context_for(kind, name, root / "data", root / "run")
    why_not = loaded.probe(context)
    if why_not:
        raise DriverError(f'{kind} driver "{name}" cannot run here: {why_not}')
    context.root.mkdir(parents=True, exist_ok=True)
    context.exec_root.mkdir(parents=True, exist_ok=True)
    return loaded, context, loaded.create(context)


def temp_root() -> Path:
    """A short temporary directory (unix socket paths are limited to 107 bytes)."""
    return Path(tempfile.mkdtemp(prefix="core-ct-", dir="/tmp"))


class TrioThread:
    """A trio loop in a thread of its own: the driver lives in one trio run, as in the daemon,
    while tests and the hypothesis state machine stay synchronous."""

    def __init__(self) -> None:
        ready = threading.Event()
        self._token: trio.lowlevel.TrioToken | None = None
        self._stop: trio.Event | None = None

        async def serve() -> None:
            self._token = trio.lowlevel.current_trio_token()
            self._stop = trio.Event()
            ready.set()
            await self._stop.wait()

        self._thread = threading.Thread(target=trio.run, args=(serve,), name="core-testing-trio",
                                        daemon=True)
        self._thread.start()
        ready.wait()

    def run(self, afn: Callable[..., Any], *args: Any) -> Any:
        return trio.from_thread.run(afn, *args, trio_token=self._token)

    def run_sync(self, fn: Callable[..., Any], *args: Any) -> Any:
        return trio.from_thread.run_sync(fn, *args, trio_token=self._token)

    def close(self) -> None:
        if self._thread.is_alive():
            trio.from_thread.run_sync(self._stop.set, trio_token=self._token)  # type: ignore[union-attr]
            self._thread.join()
