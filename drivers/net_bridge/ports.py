"""Host ports for publications: is one free, and which ephemeral one to take.

A port is *taken* when another publication of the driver holds it (same protocol, same port,
and the same host address or either of them ``0.0.0.0``) or when a socket of the host is bound
to it: the driver tries ``bind(2)`` on the address and port, which answers exactly as the
kernel would for a program (listening TCP sockets, bound UDP sockets, IPv6 dual-stack ones,
``0.0.0.0`` against a specific address).  TCP tries use ``SO_REUSEADDR`` so that connections in
``TIME_WAIT`` do not count.  The port is not held afterwards: publications are NAT rules, which
outlive the daemon, and holding sockets would not.  A program binding the port later is
shadowed for traffic from outside by the DNAT rule.
"""
from __future__ import annotations

import errno
import ipaddress
import socket

from core.errors import InvalidArgument

EPHEMERAL_DEFAULT = (32768, 60999)


def ephemeral_range(path: str = "/proc/sys/net/ipv4/ip_local_port_range") -> tuple[int, int]:
    try:
        with open(path) as f:
            low, high = (int(x) for x in f.read().split())
        if 0 < low <= high <= 65535:
            return low, high
    except (OSError, ValueError):
        pass
    return EPHEMERAL_DEFAULT


def socket_free(protocol: str, host_ip: ipaddress.IPv4Address, port: int) -> bool:
    """Whether a program could bind ``host_ip:port`` now.  ``InvalidArgument`` when
    ``host_ip`` is not an address of the host."""
    kind = socket.SOCK_STREAM if protocol == "tcp" else socket.SOCK_DGRAM
    with socket.socket(socket.AF_INET, kind) as s:
        if protocol == "tcp":
            s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            s.bind((str(host_ip), port))
        except OSError as exc:
            if exc.errno == errno.EADDRINUSE:
                return False
            if exc.errno == errno.EADDRNOTAVAIL:
                raise InvalidArgument(f"cannot publish on {host_ip}:{port}/{protocol}: "
                                      f"{host_ip} is not an address of this host") from None
            if exc.errno == errno.EACCES:
                return False
            raise
    return True


def clashes(a_ip: ipaddress.IPv4Address, b_ip: ipaddress.IPv4Address) -> bool:
    return a_ip == b_ip or a_ip.packed == b"\0\0\0\0" or b_ip.packed == b"\0\0\0\0"
