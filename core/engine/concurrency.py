"""Running async work side by side under trio, and getting a plain error back out of it.

A trio nursery reports failures as an exception group; the daemon's callers want the one error
that explains what went wrong (a :class:`~core.errors.CoreError` becomes docker's JSON error with
its status).  :func:`first_error` picks it; :func:`gather` runs functions side by side and raises
it.
"""
from __future__ import annotations

from typing import Any, Awaitable, Callable

import trio

from core.errors import CoreError


def first_error(group: BaseExceptionGroup) -> BaseException:
    """The error to report from a nursery's group: the first CoreError, else the first error.

    Cancellations caused by that first failure are noise; KeyboardInterrupt and the like win.
    """
    leaves: list[BaseException] = []

    def walk(exc: BaseException) -> None:
        if isinstance(exc, BaseExceptionGroup):
            for sub in exc.exceptions:
                walk(sub)
        else:
            leaves.append(exc)

    walk(group)
    for exc in leaves:
        if not isinstance(exc, (Exception, trio.Cancelled)):
            return exc
    for exc in leaves:
        if isinstance(exc, CoreError):
            return exc
    return next((e for e in leaves if not isinstance(e, trio.Cancelled)), leaves[0])


async def gather(*fns: Callable[[], Awaitable[Any]]) -> None:
    """Run ``fns`` side by side until all are done; when one fails the others are cancelled
    and :func:`first_error` of what happened is raised."""
    try:
        async with trio.open_nursery() as nursery:
            for fn in fns:
                nursery.start_soon(fn)
    except BaseExceptionGroup as group:
        raise first_error(group) from None
