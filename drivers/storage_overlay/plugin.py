"""Entry point of the built-in storage driver "overlay": registers it with the kernel.

The library is :mod:`drivers.storage_overlay.snapshotter`, imported on use so that listing
drivers stays light.
"""
from __future__ import annotations

from core.hookspecs import hookimpl

NAME = "overlay"


@hookimpl
def core_driver_describe() -> str:
    return "overlayfs snapshots: each layer unpacked once, containers mounted as one overlay"


@hookimpl
def core_driver_probe(context):
    from drivers.storage_overlay.snapshotter import check_support

    return check_support(context.root)


@hookimpl
def core_storage_driver(context):
    from drivers.storage_overlay.snapshotter import OverlaySnapshotter

    return OverlaySnapshotter(context.root)
