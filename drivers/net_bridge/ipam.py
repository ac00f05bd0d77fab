"""Address management of the bridge driver: pure functions, no kernel, no disk.

- :func:`choose_subnet` picks a network for ``docker network create`` without ``--subnet``:
  the first of the pools' subnets that overlaps nothing the host routes or addresses and no
  network of the driver (docker's default pools: ``172.17.0.0/16`` … ``172.31.0.0/16``, then
  ``192.168.0.0/16`` cut in ``/20``\\ s).
- :func:`check_layout` validates a subnet, gateway, ip range and aux addresses together.
- :func:`next_address` hands out the next free address after a cursor (wrapping), so a freed
  address is reused only once the range has gone round — docker's sequential allocator.
"""
from __future__ import annotations

import ipaddress
from collections.abc import Iterable, Iterator, Mapping

from core.errors import Conflict, InvalidArgument

IPv4Network = ipaddress.IPv4Network
IPv4Address = ipaddress.IPv4Address

DEFAULT_POOLS: tuple[tuple[IPv4Network, int], ...] = tuple(
    [(IPv4Network(f"172.{n}.0.0/16"), 16) for n in range(17, 32)]
    + [(IPv4Network("192.168.0.0/16"), 20)]
)
"""``(base, prefix length)``: each base cut into subnets of that length, in order."""

MAX_PREFIXLEN = 30  # a /30 holds a gateway and one endpoint; smaller ones hold none


def parse_pools(text: str) -> tuple[tuple[IPv4Network, int], ...]:
    """``"172.17.0.0/16:16,192.168.0.0/16:20"`` (docker's ``default-address-pools``) → pools."""
    pools = []
    for item in (part.strip() for part in text.split(",")):
        if not item:
            continue
        base, _, size = item.partition(":")
        try:
            network = IPv4Network(base)
            prefixlen = int(size) if size else network.prefixlen
        except ValueError as exc:
            raise InvalidArgument(f"invalid address pool {item!r}: {exc}") from None
        if not network.prefixlen <= prefixlen <= MAX_PREFIXLEN:
            raise InvalidArgument(f"invalid address pool {item!r}: size must be between "
                                  f"/{network.prefixlen} and /{MAX_PREFIXLEN}")
        pools.append((network, prefixlen))
    if not pools:
        raise InvalidArgument(f"no address pools in {text!r}")
    return tuple(pools)


def candidates(pools: Iterable[tuple[IPv4Network, int]]) -> Iterator[IPv4Network]:
    for base, prefixlen in pools:
        yield from base.subnets(new_prefix=prefixlen)


def overlapping(subnet: IPv4Network, taken: Iterable[IPv4Network]) -> IPv4Network | None:
    """The first of ``taken`` that overlaps ``subnet``, if any."""
    for other in taken:
        if subnet.overlaps(other):
            return other
    return None


def choose_subnet(pools: Iterable[tuple[IPv4Network, int]],
                  taken: Iterable[IPv4Network]) -> IPv4Network | None:
    """The first subnet of ``pools`` overlapping none of ``taken`` (``None``: all are used)."""
    taken = sorted(set(taken), key=lambda n: (n.network_address, n.prefixlen))
    for subnet in candidates(pools):
        if overlapping(subnet, taken) is None:
            return subnet
    return None


def first_host(subnet: IPv4Network) -> IPv4Address:
    return subnet.network_address + 1


def check_layout(subnet: IPv4Network, gateway: IPv4Address, ip_range: IPv4Network | None,
                 aux: Mapping[str, str]) -> None:
    """``InvalidArgument`` unless the pieces fit together as docker requires."""
    if subnet.prefixlen > MAX_PREFIXLEN:
        raise InvalidArgument(f"subnet {subnet} is too small: it must be /{MAX_PREFIXLEN} or larger")
    if not is_host(subnet, gateway):
        raise InvalidArgument(f"no matching subnet for gateway {gateway} "
                              f"(it must be a host address of {subnet})")
    if ip_range is not None and not ip_range.subnet_of(subnet):
        raise InvalidArgument(f"no matching subnet for range {ip_range} (subnet {subnet})")
    for name, text in aux.items():
        if IPv4Address(text) not in subnet:
            raise InvalidArgument(f"no matching subnet for aux-address {name}={text}")


def is_host(subnet: IPv4Network, address: IPv4Address) -> bool:
    """Whether ``address`` is a usable host address of ``subnet`` (not network/broadcast)."""
    return address in subnet and address not in (subnet.network_address, subnet.broadcast_address)


def check_requested(subnet: IPv4Network, gateway: IPv4Address, aux: Mapping[str, str],
                    address: IPv4Address, used: set[int]) -> None:
    """Validate a requested (``--ip``) address: in the subnet, not special, not in use."""
    if not is_host(subnet, address):
        raise InvalidArgument(f"requested address {address} is not a host address of {subnet}")
    if address == gateway or str(address) in set(aux.values()):
        raise Conflict(f"Address already in use: {address} is reserved on this network")
    if int(address) in used:
        raise Conflict(f"Address already in use: {address}")


def next_address(subnet: IPv4Network, ip_range: IPv4Network | None, reserved: set[int],
                 used: set[int], cursor: int) -> IPv4Address | None:
    """The first free host address after ``cursor`` (an int address; 0: from the start),
    wrapping round once; ``None`` when the range is full."""
    space = ip_range or subnet
    low = max(int(space.network_address), int(subnet.network_address) + 1)
    high = min(int(space.broadcast_address), int(subnet.broadcast_address) - 1)
    if low > high:
        return None
    start = cursor + 1 if low <= cursor + 1 <= high else low
    for candidate in range(start, high + 1):
        if candidate not in used and candidate not in reserved:
            return IPv4Address(candidate)
    for candidate in range(low, start):
        if candidate not in used and candidate not in reserved:
            return IPv4Address(candidate)
    return None


# --------------------------------------------------------------------------- IPv6
def random_ula(taken: Iterable[ipaddress.IPv6Network] = ()) -> ipaddress.IPv6Network:
    """A random unique-local ``/64`` (``fdXX:XXXX:XXXX:XXXX::/64``, RFC 4193) overlapping
    none of ``taken``: the IPv6 subnet of a network created with ``--ipv6`` and no subnet."""
    import secrets

    taken = list(taken)
    while True:
        prefix = (0xFD << 120) | (secrets.randbits(56) << 64)
        subnet = ipaddress.IPv6Network((prefix, 64))
        if not any(subnet.overlaps(t) for t in taken):
            return subnet


def check_layout6(subnet: ipaddress.IPv6Network, gateway: ipaddress.IPv6Address) -> None:
    if subnet.prefixlen > 126:
        raise InvalidArgument(f"subnet {subnet} is too small: it must be /126 or larger")
    if gateway not in subnet or gateway == subnet.network_address:
        raise InvalidArgument(f"no matching subnet for gateway {gateway} "
                              f"(it must be a host address of {subnet})")


def next_address6(subnet: ipaddress.IPv6Network, reserved: set[int], used: set[int],
                  limit: int = 1 << 16, ip_range: ipaddress.IPv6Network | None = None
                  ) -> ipaddress.IPv6Address | None:
    """The lowest free address of ``ip_range`` (else ``subnet``) after the subnet's first
    (``::1``, the gateway's by default), among the first ``limit``; ``None`` when none is
    free."""
    space = ip_range or subnet
    low = max(int(space.network_address), int(subnet.network_address) + 1)
    high = min(int(space.broadcast_address), low + limit)
    for candidate in range(low, high + 1):
        if candidate not in used and candidate not in reserved:
            return ipaddress.IPv6Address(candidate)
    return None
