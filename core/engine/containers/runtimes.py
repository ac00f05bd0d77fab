"""``HostConfig.Runtime`` (``docker run --runtime NAME``): which executor driver runs a container.

A runtime name is an executor driver's name (an entry point of ``core.executor``): ``container``
(the built-in one), ``runc`` (the ``core-runc-executor`` example, when it and Debian's ``runc``
are installed), or a third party's.  ``core`` — the default, what ``HostConfig.Runtime`` holds
when none is asked for — and an empty name mean the executor the request chose (the daemon's
default, or ``--driver executor=NAME``).  The name is kept and reported as given.

An unknown name is docker's ``unknown or invalid runtime name: NAME`` (400); a known driver that
cannot run here (``runc`` without the runc binary) is refused with the driver's own reason (400),
never replaced by another executor.
"""
from __future__ import annotations

from typing import Any

from core import plugins
from core.errors import CoreError, InvalidArgument

DEFAULT_RUNTIME = "core"


def names() -> list[str]:
    """The runtime names this engine knows: ``core`` and every executor driver's."""
    return [DEFAULT_RUNTIME, *sorted(n for n in plugins.available("executor") if n != DEFAULT_RUNTIME)]


def executor_for(runtime: Any, default_executor: str, drivers: Any) -> str:
    """The executor driver's name for ``HostConfig.Runtime`` ``runtime``; the driver is loaded
    (``drivers.get``) so that one that cannot run here is refused now, at create."""
    if runtime in (None, "", DEFAULT_RUNTIME):
        return default_executor
    if not isinstance(runtime, str) or runtime not in plugins.available("executor"):
        raise InvalidArgument(f"unknown or invalid runtime name: {runtime}")
    try:
        drivers.get("executor", runtime)
    except CoreError as exc:
        raise InvalidArgument(f"runtime {runtime} cannot be used: {exc.message}") from exc
    return runtime


__all__ = ["DEFAULT_RUNTIME", "executor_for", "names"]
