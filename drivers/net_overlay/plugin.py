"""Entry point of the built-in network driver "overlay": registers it with the kernel.

The library is :mod:`drivers.net_overlay.driver`, imported on use (no pyroute2 import for
``core info``).
"""
from __future__ import annotations

import os

from core.hookspecs import hookimpl

NAME = "overlay"


@hookimpl
def core_driver_describe() -> str:
    return ("VXLAN overlay networks across swarm nodes (a VXLAN device per network, a macvlan of "
            "it per endpoint, static peers, IPsec)")


@hookimpl
def core_driver_probe(context):
    if os.geteuid() != 0:
        return "needs root (CAP_NET_ADMIN) to create VXLAN devices and bridges"
    if not os.path.isdir("/sys/module/vxlan"):
        return "kernel has no vxlan support (module vxlan not loaded)"
    return None


@hookimpl
def core_network_driver(context):
    from drivers.net_overlay.driver import OverlayDriver

    return OverlayDriver(context.root, context.options)
