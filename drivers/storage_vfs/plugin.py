"""Entry point of the built-in storage driver "vfs": registers it with the kernel."""
from __future__ import annotations

from core.hookspecs import hookimpl

NAME = "vfs"


@hookimpl
def core_driver_describe() -> str:
    return "plain-copy snapshots, any filesystem (not implemented yet)"


@hookimpl
def core_storage_driver(context):
    from core.unimplemented import Unimplemented

    return Unimplemented("storage", NAME)
