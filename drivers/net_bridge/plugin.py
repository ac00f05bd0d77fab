"""Entry point of the built-in network driver "bridge": registers it with the kernel.

The library is :mod:`drivers.net_bridge.driver`, imported on use so that listing drivers stays
light (no pyroute2 import for ``core info``).
"""
from __future__ import annotations

import os

from core.hookspecs import hookimpl

NAME = "bridge"


@hookimpl
def core_driver_describe() -> str:
    return "Linux bridge per network, veth endpoints, nftables NAT and published ports (IPv4)"


@hookimpl
def core_driver_probe(context):
    from drivers.net_bridge.nft import nft_binary

    if os.geteuid() != 0:
        return "needs root (CAP_NET_ADMIN) to create bridges and nftables rules"
    if nft_binary() is None:
        return "nft not found (install Debian's nftables package)"
    if not os.path.exists("/proc/sys/net/ipv4/ip_forward"):
        return "kernel has no IPv4 networking sysctls (/proc/sys/net/ipv4)"
    return None


@hookimpl
def core_network_driver(context):
    from drivers.net_bridge.driver import BridgeDriver

    return BridgeDriver(context.root, context.options)
