"""Entry point of the built-in network driver "overlay": registers it with the kernel."""
from __future__ import annotations

from core.hookspecs import hookimpl

NAME = "overlay"


@hookimpl
def core_driver_describe() -> str:
    return "VXLAN overlay networks across swarm nodes (not implemented yet)"


@hookimpl
def core_driver_probe(context):
    import os

    if not os.path.isdir("/sys/module/vxlan"):
        return "kernel has no vxlan support (module vxlan not loaded)"
    return None


@hookimpl
def core_network_driver(context):
    from core.unimplemented import Unimplemented

    return Unimplemented("network", NAME)
