"""Entry point of the built-in storage driver "vfs": registers it with the kernel.

The library is :mod:`drivers.storage_vfs.snapshotter`, imported on use.  It needs nothing of the
kernel beyond bind mounts, so it has no probe.
"""
from __future__ import annotations

from core.hookspecs import hookimpl

NAME = "vfs"


@hookimpl
def core_driver_describe() -> str:
    return "plain-copy snapshots: every snapshot a full copy of its parent, any filesystem"


@hookimpl
def core_storage_driver(context):
    from drivers.storage_vfs.snapshotter import VfsSnapshotter

    return VfsSnapshotter(context.root)
