"""Entry point of the built-in executor driver "container": registers it with the kernel."""
from __future__ import annotations

from core.hookspecs import hookimpl

NAME = "container"


@hookimpl
def core_driver_describe() -> str:
    return "Linux namespaces executor with a shim per container (not implemented yet)"


@hookimpl
def core_executor_driver(context):
    from core.unimplemented import Unimplemented

    return Unimplemented("executor", NAME)
