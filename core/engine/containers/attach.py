"""Attaching to a container's stdio: at once when it runs, or at its next start (``docker run``
attaches, then starts) — the attaches waiting for a start get their streams before the program
runs, so they see all of its output."""
from __future__ import annotations

from typing import Any

from core.engine.containers.context import Parts
from core.engine.containers.store import Container, PendingAttach
from core.errors import Conflict, CoreError


async def connect_pending(c: Container, ex: Any, before_start: bool) -> None:
    """Give the attaches waiting for this start their streams: before the program runs, so
    they see all of its output; after it, for an executor that cannot attach earlier."""
    waiting, c.pending_attach = c.pending_attach, []
    keep: list[PendingAttach] = []
    for p in waiting:
        if p.ready.is_set():
            continue
        if before_start and p.late:
            keep.append(p)
            continue
        try:
            p.stream = await ex.attach(c.id)
        except Conflict as exc:
            if before_start:
                p.late = True
                keep.append(p)
                continue
            p.error = exc
        except CoreError as exc:
            p.error = exc
        p.ready.set()
    c.pending_attach = keep + c.pending_attach


async def attach(parts: Parts, c: Container) -> Any | None:
    """A stream of the container's stdio: at once when it runs, else at its next start.

    Returns ``None`` when the container went away before starting.
    """
    if c.status in ("running", "paused"):
        try:
            return await parts.executor(c).attach(c.id)
        except Conflict:
            if c.status in ("running", "paused"):
                raise
    pending = PendingAttach()
    c.pending_attach.append(pending)
    try:
        await pending.ready.wait()
    finally:
        if pending in c.pending_attach:
            c.pending_attach.remove(pending)
    if pending.error is not None:
        raise pending.error
    return pending.stream
