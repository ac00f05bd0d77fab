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

The suites, one per kind, and what they need:

===========================  =========================================================
``core.testing.loading``     every kind: the driver loads through its entry point,
                             validates against the hook specs, describes and probes
                             itself, and builds an object implementing its Protocol
``core.testing.storage``     storage drivers (root: mounts)
``core.testing.network``     network drivers (root: namespaces, devices, nftables)
``core.testing.executor``    executor drivers (root: namespaces, cgroups; busybox-static)
``core.testing.registry``    registry drivers, against a real registry the suite starts
                             (Debian's ``docker-registry``), plain and with token auth
===========================  =========================================================

They share one harness, defined here: :func:`make_driver` builds the driver under test exactly
as the daemon does (entry point, probe, context, factory hook), and :class:`TrioThread` keeps it
in a trio run of its own while tests — and hypothesis state machines — stay synchronous.  Every
suite class has a ``driver_options()`` hook giving the driver its options
(``DriverContext.options``); by default the JSON object in ``$CORE_TESTING_DRIVER_OPTIONS``::

    CORE_TESTING_DRIVER_OPTIONS='{"nft-table": "ct1"}' \
        pytest --pyargs core.testing.network --driver network=bridge
"""
from __future__ import annotations

import os
import re
import tempfile
import threading
from pathlib import Path
from typing import TYPE_CHECKING, Any, Callable

import trio

from core.shim.executor import pid_alive  # noqa: F401  (the suites' and tests' one)
from core import plugins

if TYPE_CHECKING:
    from core.contracts import DriverContext
    from core.contracts.content import ContentStore
    from core.contracts.registry import RegistryConfig

__all__ = ["OPTIONS_ENV", "TrioThread", "close_driver", "make_driver", "options_from_env",
           "pid_alive", "temp_root", "unmount_below"]

#: a JSON object of strings: the driver options (``DriverContext.options``) every suite hands the
#: driver under test by default, so a run with ``--pyargs`` can configure it (for instance keep
#: it off the names a live daemon uses)
OPTIONS_ENV = "CORE_TESTING_DRIVER_OPTIONS"


def make_driver(kind: str, name: str, root: Path, options: dict[str, str] | None = None, *,
                content: ContentStore | None = None, registry: RegistryConfig | None = None
                ) -> tuple[plugins.LoadedDriver, DriverContext, Any]:
    """Load ``name`` of ``kind`` through its entry point and build it under ``root``, as the
    daemon does: data in ``root/data``, runtime state in ``root/run``, ``options`` as the
    daemon's driver options.

    Registry drivers get ``content`` as their content store — by default the kernel's own
    implementation (:class:`core.engine.images.content.ContentStore`) under ``root/content``,
    the store the daemon would give them — and ``registry`` as their settings.

    Returns ``(loaded, context, driver)``.  Raises :class:`core.errors.DriverError` when the
    driver cannot be loaded, and ``pytest.skip`` is *not* used: a driver whose probe says it
    cannot run here makes this raise ``DriverError`` too, so a suite never passes vacuously.
    """
    from core.errors import DriverError

    loaded = plugins.load(kind, name)
    if kind == "registry" and content is None:
        from core.engine.images.content import ContentStore as KernelContentStore

        content = KernelContentStore(root / "content")
    context = plugins.context_for(kind, name, root / "data", root / "run", options,
                                  content=content, registry=registry)
    why_not = loaded.probe(context)
    if why_not:
        raise DriverError(f'{kind} driver "{name}" cannot run here: {why_not}')
    context.root.mkdir(parents=True, exist_ok=True)
    context.exec_root.mkdir(parents=True, exist_ok=True)
    return loaded, context, loaded.create(context)


def options_from_env() -> dict[str, str]:
    """The driver options in ``$CORE_TESTING_DRIVER_OPTIONS`` (``{}`` when unset): what every
    suite's ``driver_options()`` returns unless a subclass says otherwise.  A value that is not
    a JSON object of strings is a usage error."""
    import json

    import pytest

    text = os.environ.get(OPTIONS_ENV)
    if not text:
        return {}
    try:
        options = json.loads(text)
    except ValueError:
        options = None
    if not isinstance(options, dict) or not all(
            isinstance(k, str) and isinstance(v, str) for k, v in options.items()):
        raise pytest.UsageError(f"{OPTIONS_ENV} must be a JSON object of strings")
    return options


async def close_driver(driver: Any) -> None:
    """Close a driver object the way the daemon does: ``aclose()``, every contract's name."""
    await driver.aclose()


def unmount_below(root: Path) -> None:
    """Unmount (lazily) whatever is mounted at or below ``root``, deepest first: the cleanup of
    last resort before removing a test's directory, whatever a failed test left mounted."""
    from core.storage.mount import unmount

    with open("/proc/self/mountinfo") as f:  # field 5 is the mount point, octal-escaped
        points = [re.sub(r"\\([0-7]{3})", lambda m: chr(int(m.group(1), 8)), line.split()[4])
                  for line in f]
    inside = [p for p in points if p == str(root) or p.startswith(f"{root}/")]
    for point in sorted(inside, key=len, reverse=True):
        unmount(point, detach=True)


def temp_root() -> Path:
    """A short temporary directory (unix socket paths are limited to 107 bytes)."""
    return Path(tempfile.mkdtemp(prefix="core-ct-", dir="/tmp"))


class TrioThread:
    """A trio loop in a thread of its own: the driver lives in one trio run, as in the daemon,
    while tests and the hypothesis state machine stay synchronous.

    ``timeout`` bounds every :meth:`run` (``None``: unbounded); a call that overruns raises
    ``trio.TooSlowError`` instead of hanging the test run.
    """

    def __init__(self, timeout: float | None = None, name: str = "core-testing-trio") -> None:
        ready = threading.Event()
        self.timeout = timeout
        self._token: trio.lowlevel.TrioToken | None = None
        self._stop: trio.Event | None = None

        async def serve() -> None:
            self._token = trio.lowlevel.current_trio_token()
            self._stop = trio.Event()
            ready.set()
            await self._stop.wait()

        self._thread = threading.Thread(target=trio.run, args=(serve,), name=name, daemon=True)
        self._thread.start()
        ready.wait()

    def run(self, afn: Callable[..., Any], *args: Any, timeout: float | None = None) -> Any:
        """``await afn(*args)`` in the loop; its result or its exception.  ``timeout``
        overrides the loop's default bound for this call."""
        limit = self.timeout if timeout is None else timeout
        if limit is None:
            return trio.from_thread.run(afn, *args, trio_token=self._token)

        async def bounded() -> Any:
            with trio.fail_after(limit):
                return await afn(*args)

        return trio.from_thread.run(bounded, trio_token=self._token)

    def run_sync(self, fn: Callable[..., Any], *args: Any) -> Any:
        """``fn(*args)`` on the loop's thread (inside the trio run)."""
        return trio.from_thread.run_sync(fn, *args, trio_token=self._token)

    def close(self) -> None:
        """Stop the loop and join its thread.  Idempotent."""
        if self._thread.is_alive():
            trio.from_thread.run_sync(self._stop.set, trio_token=self._token)  # type: ignore[union-attr]
            self._thread.join()
