"""Entry point of the ``runc`` executor driver (``core.executor: runc``): its three hooks."""
from __future__ import annotations

import os

from core.hookspecs import hookimpl


@hookimpl
def core_driver_describe() -> str:
    return "runc (the OCI runtime command line) under core's shim, one shim per container"


@hookimpl
def core_driver_probe(context) -> str | None:
    from core_runc_executor.runc import find_runc

    if os.geteuid() != 0:
        return "the runc executor needs root"
    if find_runc() is None:
        return "runc is not installed (apt-get install runc)"
    return None


@hookimpl
def core_executor_driver(context):
    from core_runc_executor.executor import RuncExecutor

    return RuncExecutor(context)
