"""Entry point of the built-in network driver "bridge": registers it with the kernel."""
from __future__ import annotations

from core.hookspecs import hookimpl

NAME = "bridge"


@hookimpl
def core_driver_describe() -> str:
    return "Linux bridge, veth, NAT and published ports (not implemented yet)"


@hookimpl
def core_network_driver(context):
    from core.unimplemented import Unimplemented

    return Unimplemented("network", NAME)
