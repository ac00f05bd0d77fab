"""Host ports for publications: is one free, which ephemeral one to take, and holding it.

A port is *taken* when another publication of the driver holds it (same protocol, same port,
and the same host address or either of them the family's any-address) or when a socket of the
host is bound to it: the driver binds the address and port, which answers exactly as the
kernel would for a program (listening TCP sockets, bound UDP sockets, ``0.0.0.0`` against a
specific address).  TCP sockets use ``SO_REUSEADDR`` so that connections in ``TIME_WAIT`` do
not count; IPv6 ones are ``IPV6_V6ONLY``, so ``0.0.0.0:P`` and ``[::]:P`` are two bindings, as
docker makes them.  The sockets :func:`reserve` binds are *kept*: handed to the endpoint's
proxy process (:mod:`drivers.net_bridge.proxy`), which holds them as long as the endpoint
lives, so no other program can take the port meanwhile.
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


def _socket(protocol: str, host_ip: ipaddress.IPv4Address | ipaddress.IPv6Address) -> socket.socket:
    family = socket.AF_INET6 if host_ip.version == 6 else socket.AF_INET
    s = socket.socket(family, socket.SOCK_STREAM if protocol == "tcp" else socket.SOCK_DGRAM)
    if protocol == "tcp":
        s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    if family == socket.AF_INET6:
        s.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_V6ONLY, 1)
    return s


def reserve(protocol: str, addresses: list[ipaddress.IPv4Address | ipaddress.IPv6Address],
            port: int) -> list[socket.socket] | None:
    """Bind ``port`` on every one of ``addresses`` (TCP sockets listen) and return the sockets;
    ``None`` (nothing kept) if any of them is taken.  ``InvalidArgument`` when an address is
    not one of the host's."""
    held: list[socket.socket] = []
    try:
        for ip in addresses:
            s = _socket(protocol, ip)
            held.append(s)
            try:
                s.bind((str(ip), port))
            except OSError as exc:
                if exc.errno in (errno.EADDRINUSE, errno.EACCES):
                    for h in held:
                        h.close()
                    return None
                if exc.errno == errno.EADDRNOTAVAIL:
                    raise InvalidArgument(f"cannot publish on {ip}:{port}/{protocol}: "
                                          f"{ip} is not an address of this host") from None
                raise
            if protocol == "tcp":
                s.listen(128)
    except BaseException:
        for h in held:
            h.close()
        raise
    return held


def ipv6_available() -> bool:
    """Whether the host can bind IPv6 sockets (IPv6 not disabled, ``::`` usable)."""
    if not socket.has_ipv6:
        return False
    try:
        with socket.socket(socket.AF_INET6, socket.SOCK_DGRAM) as s:
            s.bind(("::", 0))
        return True
    except OSError:
        return False


def socket_free(protocol: str, host_ip: ipaddress.IPv4Address | ipaddress.IPv6Address,
                port: int) -> bool:
    """Whether a program could bind ``host_ip:port`` now (nothing is kept).
    ``InvalidArgument`` when ``host_ip`` is not an address of the host."""
    held = reserve(protocol, [host_ip], port)
    if held is None:
        return False
    for s in held:
        s.close()
    return True


def clashes(a_ip: ipaddress.IPv4Address | ipaddress.IPv6Address,
            b_ip: ipaddress.IPv4Address | ipaddress.IPv6Address) -> bool:
    if a_ip.version != b_ip.version:
        return False
    return a_ip == b_ip or a_ip.is_unspecified or b_ip.is_unspecified
