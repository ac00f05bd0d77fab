"""A pytest plugin the compat harnesses load into the suite they run (``-p compat_resultlog``).

It appends one JSON line per test phase to the file named by ``$COMPAT_RESULT_LOG`` as soon as
the phase ends, so that a run stopped halfway (a hang past the overall deadline, ^C) still leaves
every result it reached: ``{"nodeid", "when", "outcome", "duration", "xfail", "message",
"longrepr"}`` (``xfail``: the test is marked ``xfail`` upstream, so "skipped" means it failed as
expected and "passed" that it passed unexpectedly).
"""
from __future__ import annotations

import json
import os

_MAX_LONGREPR = 6000


def _message(report) -> str:
    longrepr = report.longrepr
    if longrepr is None:
        return ""
    if isinstance(longrepr, tuple):  # a skip: (path, line, reason)
        return str(longrepr[2])
    crash = getattr(longrepr, "reprcrash", None)
    if crash is not None and getattr(crash, "message", None):
        return crash.message
    lines = [line for line in str(longrepr).splitlines() if line.strip()]
    return lines[-1] if lines else ""


def pytest_runtest_logreport(report) -> None:
    path = os.environ.get("COMPAT_RESULT_LOG")
    if not path:
        return
    if report.when != "call" and report.outcome == "passed":
        return  # setup and teardown that passed say nothing
    longrepr = "" if report.longrepr is None or report.outcome == "passed" else str(report.longrepr)
    entry = {
        "nodeid": report.nodeid,
        "when": report.when,
        "outcome": report.outcome,
        "duration": round(report.duration, 3),
        "xfail": hasattr(report, "wasxfail"),
        "message": _message(report),
        "longrepr": longrepr[-_MAX_LONGREPR:],
    }
    with open(path, "a", encoding="utf-8") as f:
        f.write(json.dumps(entry) + "\n")


def pytest_collection_finish(session) -> None:
    """Record the tests that will run (after ``--deselect``) in ``$COMPAT_RESULT_LOG.collected``."""
    path = os.environ.get("COMPAT_RESULT_LOG")
    if path:
        with open(path + ".collected", "w", encoding="utf-8") as f:
            f.write("".join(item.nodeid + "\n" for item in session.items))
