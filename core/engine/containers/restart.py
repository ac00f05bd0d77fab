"""docker's restart policies: whether a container that exited starts again, and when.

``no``, ``always``, ``unless-stopped`` (unless stopped by hand) and ``on-failure[:N]``; the
delay is docker's back-off, 100 ms doubling up to a minute, reset after 10 s up.  The restart
itself (a delayed start, ``restarting`` meanwhile) is :mod:`core.engine.containers.lifecycle`'s.
"""
from __future__ import annotations

from core.engine.containers.store import Container, ContainerStore

BACKOFF_START = 0.1
BACKOFF_MAX = 60.0
BACKOFF_RESET_AFTER = 10.0


def should_restart(c: Container, code: int, ran_for: float) -> tuple[bool, float]:
    """docker's restart manager: whether to restart ``c`` after it exited with ``code`` having
    run ``ran_for`` seconds, and after how long (its back-off grows)."""
    policy = c.host_config.get("RestartPolicy") or {}
    name = policy.get("Name") or "no"
    if name == "no" or c.cancel_restart or c.removing:
        return False, 0.0
    if ran_for >= BACKOFF_RESET_AFTER:
        c.backoff = 0.0
    c.backoff = BACKOFF_START if c.backoff == 0 else min(c.backoff * 2, BACKOFF_MAX)
    if name == "always":
        return True, c.backoff
    if name == "unless-stopped":
        return (not c.state.manually_stopped), c.backoff
    if name == "on-failure":
        limit = policy.get("MaximumRetryCount") or 0
        if code != 0 and (limit == 0 or c.state.restart_count < limit):
            return True, c.backoff
    return False, 0.0


def cancel_restart(store: ContainerStore, c: Container) -> None:
    """A pending restart does not happen: a ``restarting`` container is ``exited``."""
    if c.restart_cancel is not None:
        c.restart_cancel.cancel()
        c.restart_cancel = None
    if c.status == "restarting":
        c.state.status = "exited"
        store.save(c)
        c.notify()
