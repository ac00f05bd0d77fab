"""The network contract: networks, endpoints and published ports.

A network driver keeps *networks*, attaches containers to them as *endpoints*, and *publishes*
endpoint ports on the host.  It owns its address management (IPAM) and keeps it under
``DriverContext.root``; the kernel keeps names, aliases and which container is where.

Vocabulary
----------
``network_id``   the kernel's id of a network (docker's 64 hex digits).  A network is a
                 broadcast domain with one IPv4 subnet (and, with ``enable_ipv6``, one IPv6
                 subnet), a gateway on the host and an address pool; the driver's host-side device (a bridge, a VXLAN...) is its
                 ``Network.interface``.
``endpoint_id``  the kernel's id of one attachment, unique within its network (the container's
                 id serves).  An endpoint is an interface inside a network namespace, an
                 address of the network's pool, a MAC, a default route (unless the network is
                 internal) — and the ports published to it.
``netns_path``   the network namespace an endpoint lives in, as a path the driver can open:
                 ``/proc/<pid>/ns/net`` or a bind mount such as ``/var/run/netns/<name>``.  The
                 kernel creates and removes namespaces; the driver only puts interfaces in them.
``binding``      a :class:`PortBinding`: traffic reaching ``host_ip:host_port`` on the host is
                 forwarded to ``container_port`` of the endpoint (docker's ``-p``).

Lifecycle
---------
``docker network create --subnet 172.30.0.0/24 n1`` followed by ``docker run --network n1 -p
8080:80 ...`` and the container's removal::

    net = await n.create_network(nid, NetworkSpec(name="n1", subnet="172.30.0.0/24"))
    #   net.subnet, net.gateway, net.interface, net.mtu: what ``docker network inspect`` shows
    ep = await n.join(nid, cid, "/proc/<pid>/ns/net", EndpointRequest(interface_name="eth0"))
    #   ep.address (172.30.0.2/24), ep.gateway, ep.mac: what ``docker inspect`` shows
    ports = await n.publish(nid, cid, PortBinding.parse("8080:80"))
    #   ports[0].host_port == 8080; ``PortBinding.parse("80")`` picks an ephemeral host port
    await n.leave(nid, cid)       # ports unpublished, interface gone, address free again
    await n.delete_network(nid)   # nothing of n1 is left on the host

The host's *default network* (docker's ``bridge``) is the driver's own: the kernel asks for it
with ``NetworkSpec(name="bridge", default=True)`` and records the device and options the
driver chose (``Network.options``); it passes those options back if it ever asks again, so
the network keeps its device.  The kernel never reads a driver's options.

A daemon that starts again builds the driver on the same root and carries on: networks,
endpoints, addresses and publications are all still there (:meth:`NetworkDriver.networks`,
:meth:`NetworkDriver.endpoints`), and traffic to published ports never stopped flowing — the
kernel state outlives the daemon.  Containers that died meanwhile are the kernel's to
``leave``; ``leave`` works whether or not their namespace still exists.

Rules every driver keeps (the conformance suite ``core.testing.network`` checks them):

- An address is never handed out to two live endpoints of a network; ``leave`` frees it.  The
  assignment survives daemon restarts.  Dynamic addresses come from ``ip_range`` if given
  (else the subnet), never the network or broadcast address, the gateway or an
  ``aux_addresses`` entry.  A requested address (``--ip``) must lie in the subnet (it may lie
  outside ``ip_range``, as docker allows) and be free.
- Endpoints of one network reach each other; endpoints of different networks do not; an
  ``internal`` network has no route out of the host and no traffic in from outside it.
- ``delete_network`` leaves nothing of the network on the host: devices, routes, firewall
  rules, sysctls of its own devices.  ``leave`` leaves nothing of the endpoint: its
  publications and its address go at once; its interface is cut off at once (no traffic) and
  may be deleted in the background shortly after — the kernel takes tens of milliseconds to
  unregister a veth, more than a whole join may cost — but ``delete_network`` and ``aclose``
  wait until it is gone.
- The host's own networking, and the ``host`` and ``none`` modes (which need no driver), are
  not disturbed: a driver changes only what it created, plus what it documents (the bridge
  driver, for instance, turns on ``net.ipv4.ip_forward``).

Errors (``core.errors``):

- ``NotFound``: an unknown network or endpoint; a ``netns_path`` that does not exist.
- ``AlreadyExists``: ``create_network`` of an id the driver has; ``join`` of an endpoint id
  the network has; a device name that is taken.
- ``Conflict``: ``delete_network`` while endpoints remain; a requested address in use
  (``Address already in use``); a host port in use (``Bind for 0.0.0.0:8080 failed: port is
  already allocated``).  A subnet overlapping another network of the driver is
  :class:`PoolOverlaps`, a ``Conflict``.  A subnet the user gives (``--subnet``) may overlap
  the host's routes, as docker allows; only subnets the driver chooses avoid them.
- ``InvalidArgument``: malformed input — a gateway or address outside the subnet, an
  ``ip_range`` outside it, an option the driver does not know or an unusable value, a
  publication on an internal network.
- ``Unavailable``: a pool with no free address or subnet left; no free host port; the host
  lacks something the driver needs (a kernel feature, the ``nft`` program).

A failed call changes nothing: a ``join`` that fails half-way removes what it made and frees
the address; a ``publish`` publishes all of its bindings or none.

Multi-host networks (swarm overlays)
------------------------------------
A driver whose networks span hosts (the built-in ``overlay``) is also a
:class:`MultiHostNetworkDriver`.  The swarm's managers allocate what must be the same on every
node — the network id, a VNI, the subnet and gateway, each endpoint's address — and every node's
engine hands it to its own driver: ``NetworkSpec.multi_host`` (a :class:`MultiHost`: VNI, the
node's underlay address, ``encrypted``), ``EndpointRequest.address`` on ``join`` (the managers'
address; the driver checks it only against this node's endpoints).  The engine then tells the
driver where the *remote* endpoints are, as tasks come and go elsewhere::

    await n.create_network(nid, NetworkSpec(name="uber-net", subnet="10.0.1.0/24",
                                            multi_host=MultiHost(vni=4097, local="10.1.0.11")))
    ep = await n.join(nid, task_id, netns, EndpointRequest(address="10.0.1.5"))
    await n.set_peers(nid, [Peer("10.0.1.6", mac_for_address(...), vtep="10.1.0.12"), ...])
    await n.set_keys([DataPathKey(key=..., tag=3), ...])     # encrypted networks only

``set_peers`` replaces the network's whole peer list (the engine computes it from the
cluster's state; an entry whose VTEP is the node's own address is ignored); the driver programs
them whenever the network has a data path on the node, and keeps them across restarts.  A
driver may create the network's devices only when the first endpoint joins on the node and
remove them when the last leaves (the overlay does); ``create_network`` and ``delete_network``
then only record and forget.  Endpoints of a multi-host network may have no gateway (docker's
overlay endpoints have none: their way out is another network, docker's ``docker_gwbridge``).
The conformance suite for these drivers is :class:`core.testing.network.MultiHostSuite` (two
hosts on one underlay).
"""
from __future__ import annotations

import enum
import ipaddress
import re
from collections.abc import Mapping, Sequence
from typing import Any, Protocol, TypeVar, runtime_checkable

import attrs

from core.errors import Conflict, InvalidArgument
from core.types import FrozenMap

__all__ = [
    "DataPathKey",
    "Endpoint",
    "EndpointRequest",
    "MultiHost",
    "MultiHostNetworkDriver",
    "Peer",
    "IPProtocol",
    "Network",
    "NetworkDriver",
    "NetworkSpec",
    "PoolOverlaps",
    "PortBinding",
    "ANY_IPV4",
    "mac_for_address",
]

ANY_IPV4 = ipaddress.IPv4Address("0.0.0.0")
_IFNAME = re.compile(r"^[A-Za-z0-9_.-]{1,15}$")
_MAC = re.compile(r"^[0-9a-f]{2}(:[0-9a-f]{2}){5}$")
_A = TypeVar("_A", ipaddress.IPv4Address, ipaddress.IPv6Address)
_N = TypeVar("_N", ipaddress.IPv4Network, ipaddress.IPv6Network)


# --------------------------------------------------------------------------- converters
def _parse_address(value: Any, family: type[_A], invalid: str, other_family: str) -> _A:
    """``value`` as an address of ``family`` (``IPv4Address``/``IPv6Address``): ``InvalidArgument``
    ``"<invalid>: <value!r>"`` when it is no address, ``"<other_family>: <value>"`` when it is
    one of the other family."""
    try:
        address = ipaddress.ip_address(value)
    except (ValueError, TypeError):
        raise InvalidArgument(f"{invalid}: {value!r}") from None
    if not isinstance(address, family):
        raise InvalidArgument(f"{other_family}: {value}")
    return address


def _parse_network(value: Any, family: type[_N], other_family: str) -> _N:
    """``value`` as a subnet of ``family``, host bits refused as docker does."""
    try:
        network = ipaddress.ip_network(value, strict=False)
    except (ValueError, TypeError):
        raise InvalidArgument(f"invalid subnet: {value!r}") from None
    if not isinstance(network, family):
        raise InvalidArgument(f"{other_family}: {value}")
    if str(network) != str(value) and isinstance(value, str) and "/" in value:
        # docker: "invalid subnet 172.30.0.1/24: it should be 172.30.0.0/24"
        raise InvalidArgument(f"invalid subnet {value}: it should be {network}")
    return network


def _ipv4_address(value: Any) -> ipaddress.IPv4Address:
    if isinstance(value, ipaddress.IPv4Address):
        return value
    return _parse_address(value, ipaddress.IPv4Address, "invalid IPv4 address", "IPv6 is not supported")


def _host_address(value: Any) -> ipaddress.IPv4Address | ipaddress.IPv6Address:
    if isinstance(value, (ipaddress.IPv4Address, ipaddress.IPv6Address)):
        return value
    try:
        return ipaddress.ip_address(str(value).strip("[]") if value is not None else value)
    except (ValueError, TypeError):
        raise InvalidArgument(f"invalid IP address: {value!r}") from None


def _optional_address(value: Any) -> ipaddress.IPv4Address | None:
    return None if value is None or value == "" else _ipv4_address(value)


def _ipv4_network(value: Any) -> ipaddress.IPv4Network:
    if isinstance(value, ipaddress.IPv4Network):
        return value
    return _parse_network(value, ipaddress.IPv4Network, "IPv6 is not supported")


def _optional_network(value: Any) -> ipaddress.IPv4Network | None:
    return None if value is None or value == "" else _ipv4_network(value)


def _optional_network6(value: Any) -> ipaddress.IPv6Network | None:
    if value is None or value == "" or isinstance(value, ipaddress.IPv6Network):
        return value or None
    return _parse_network(value, ipaddress.IPv6Network, "invalid IPv6 subnet")


def _optional_address6(value: Any) -> ipaddress.IPv6Address | None:
    if value is None or value == "" or isinstance(value, ipaddress.IPv6Address):
        return value or None
    return _parse_address(value, ipaddress.IPv6Address, "invalid IPv6 address", "invalid IPv6 address")


def _aux(value: Any) -> FrozenMap:
    if value is None:
        return FrozenMap()
    if not isinstance(value, Mapping):
        raise InvalidArgument("aux_addresses must map names to IPv4 addresses")
    return FrozenMap({str(k): str(_ipv4_address(v)) for k, v in value.items()})


def _options(value: Any) -> FrozenMap:
    if value is None:
        return FrozenMap()
    if not isinstance(value, Mapping) or not all(
            isinstance(k, str) and isinstance(v, str) for k, v in value.items()):
        raise InvalidArgument("network options must map strings to strings")
    return FrozenMap(value)


def _check_mtu(_inst: Any, _attr: Any, value: int | None) -> None:
    if value is not None and (isinstance(value, bool) or not isinstance(value, int)
                              or not 68 <= value <= 65535):
        raise InvalidArgument(f"invalid MTU {value!r}: it must be between 68 and 65535")


def _check_ifname(_inst: Any, attr: Any, value: str) -> None:
    if not isinstance(value, str) or not _IFNAME.match(value) or value in (".", ".."):
        raise InvalidArgument(f"invalid interface name {value!r} for {attr.name}: "
                              "1 to 15 characters of letters, digits, '_', '.' and '-'")


def _mac(value: Any) -> str | None:
    if value is None or value == "":
        return None
    text = str(value).lower()
    if not _MAC.match(text):
        raise InvalidArgument(f"invalid MAC address: {value!r}")
    if int(text[:2], 16) & 1:
        raise InvalidArgument(f"invalid MAC address {value}: it is a multicast address")
    return text


def mac_for_address(address: ipaddress.IPv4Address) -> str:
    """Docker's MAC for an IPv4 address: ``02:42`` and the address's four bytes.

    ``172.17.0.2`` → ``02:42:ac:11:00:02``; locally administered, unicast, and the same for the
    same address, so ARP caches of peers stay right when an address is reused.
    """
    return "02:42:" + ":".join(f"{b:02x}" for b in address.packed)


class PoolOverlaps(Conflict):
    """``create_network``: the subnet overlaps one of another network of the driver."""


# --------------------------------------------------------------------------- multi-host
def _check_vni(_inst: Any, _attr: Any, value: int) -> None:
    if isinstance(value, bool) or not isinstance(value, int) or not 1 <= value <= 0xFFFFFF:
        raise InvalidArgument(f"invalid VNI {value!r}: it must be between 1 and 16777215")


@attrs.frozen
class MultiHost:
    """A multi-host network's allocation by the swarm (:attr:`NetworkSpec.multi_host`).

    ``vni``        the VXLAN network identifier the managers allocated (the same on every node).
    ``local``      this node's underlay address (``--data-path-addr``, else ``--advertise-addr``):
                   the tunnel's local end (VTEP); its interface's MTU less the encapsulation
                   is the network's default MTU.
    ``encrypted``  ``--opt encrypted``: the data path between nodes is IPsec ESP, with the keys
                   of :meth:`MultiHostNetworkDriver.set_keys`.
    """

    vni: int = attrs.field(validator=_check_vni)
    local: ipaddress.IPv4Address = attrs.field(converter=_ipv4_address)
    encrypted: bool = attrs.field(default=False, converter=bool)


@attrs.frozen
class Peer:
    """A remote endpoint of a multi-host network: its ``address`` and ``mac`` on the network,
    and ``vtep``, the underlay address of the node it lives on."""

    address: ipaddress.IPv4Address = attrs.field(converter=_ipv4_address)
    mac: str = attrs.field(converter=_mac)
    vtep: ipaddress.IPv4Address = attrs.field(converter=_ipv4_address)

    def __attrs_post_init__(self) -> None:
        if self.mac is None:
            raise InvalidArgument("a peer needs a MAC address")


def _key(value: Any) -> bytes:
    if not isinstance(value, (bytes, bytearray)) or len(value) < 16:
        raise InvalidArgument("a data path key is at least 16 bytes")
    return bytes(value)


@attrs.frozen
class DataPathKey:
    """A swarm data-path key (docker's ``networking:gcm`` keys, generated and rotated by the
    managers): ``key`` (16 bytes or more: the driver derives its cipher and integrity keys
    from it) and ``tag`` (the managers' Lamport time of the key, a non-negative integer that
    tells keys apart: the driver derives SPIs from it)."""

    key: bytes = attrs.field(converter=_key, repr=False)
    tag: int = attrs.field(validator=attrs.validators.instance_of(int))


# --------------------------------------------------------------------------- networks
@attrs.frozen
class NetworkSpec:
    """What ``docker network create`` asks for.

    ``name``           the user's name of the network (for messages; the driver keys by id).
    ``subnet``         ``--subnet``; ``None``: the driver chooses one that overlaps no route
                       or address of the host and no network of its own.
    ``gateway``        ``--gateway``; ``None``: the subnet's first host address (``.1``).
    ``ip_range``       ``--ip-range``: dynamic addresses come only from here (within subnet).
    ``aux_addresses``  ``--aux-address name=ip``: addresses in the subnet never handed out.
    ``internal``       ``--internal``: no default route in endpoints, no NAT, no forwarding
                       between the network and anything outside it.
    ``mtu``            the endpoints' MTU; ``None``: the driver's default (the bridge driver
                       takes the MTU of the host's default-route interface).
    ``enable_ipv6``    ``--ipv6``: the network has an IPv6 subnet too (drivers without IPv6
                       raise ``InvalidArgument``).
    ``subnet6``        the IPv6 ``--subnet`` (needs ``enable_ipv6``); ``None``: the driver
                       chooses one (the bridge driver: a random ULA ``/64``).
    ``gateway6``       the IPv6 ``--gateway``; ``None``: the subnet's first address (``::1``).
    ``ip_range6``      the IPv6 ``--ip-range`` (within ``subnet6``).
    ``default``        the host's default network (docker's ``bridge``, made by the kernel at
                       start): the driver picks what is not given — its device (a name that
                       another engine sharing the host would not pick) and docker's options
                       of a default network — and returns them in ``Network.options``.
    ``options``        ``-o key=value``, driver-specific (``com.docker.network.bridge.name``,
                       ``com.docker.network.driver.mtu``, ...); each driver documents the keys
                       it knows, and rejects others with ``InvalidArgument``.
    ``multi_host``     a :class:`MultiHost`: the network spans the swarm's nodes (see the module
                       docstring); the engine passes it only to drivers that are
                       :class:`MultiHostNetworkDriver` (the overlay requires it).

    Addresses and subnets are ``ipaddress`` objects (strings are converted); malformed values
    raise ``InvalidArgument``.
    """

    name: str = ""
    subnet: ipaddress.IPv4Network | None = attrs.field(default=None, converter=_optional_network)
    gateway: ipaddress.IPv4Address | None = attrs.field(default=None, converter=_optional_address)
    ip_range: ipaddress.IPv4Network | None = attrs.field(default=None, converter=_optional_network)
    aux_addresses: FrozenMap = attrs.field(factory=FrozenMap, converter=_aux)
    internal: bool = False
    mtu: int | None = attrs.field(default=None, validator=_check_mtu)
    enable_ipv6: bool = False
    options: FrozenMap = attrs.field(factory=FrozenMap, converter=_options)
    default: bool = False
    subnet6: ipaddress.IPv6Network | None = attrs.field(default=None,
                                                        converter=_optional_network6)
    gateway6: ipaddress.IPv6Address | None = attrs.field(default=None,
                                                         converter=_optional_address6)
    ip_range6: ipaddress.IPv6Network | None = attrs.field(default=None,
                                                          converter=_optional_network6)
    multi_host: MultiHost | None = attrs.field(
        default=None, validator=attrs.validators.optional(attrs.validators.instance_of(MultiHost)))

    def __attrs_post_init__(self) -> None:
        if self.subnet is None and (self.gateway is not None or self.ip_range is not None
                                    or self.aux_addresses):
            raise InvalidArgument("a gateway, ip range or aux address needs a subnet (--subnet)")
        if (self.subnet6 is not None or self.gateway6 is not None) and not self.enable_ipv6:
            raise InvalidArgument("an IPv6 subnet or gateway needs IPv6 enabled (--ipv6)")
        if (self.gateway6 is not None or self.ip_range6 is not None) and self.subnet6 is None:
            raise InvalidArgument("an IPv6 gateway or ip range needs an IPv6 subnet (--subnet)")
        if self.ip_range6 is not None and not self.ip_range6.subnet_of(self.subnet6):
            raise InvalidArgument(f"no matching subnet for range {self.ip_range6}")


@attrs.frozen
class Network:
    """A network as the driver has it (``docker network inspect``'s IPAM and options).

    ``interface`` is the host-side device (the bridge driver's ``br-<12 hex>``); ``gateway``
    is the host's address on it; ``subnet_given`` says whether the user chose the subnet (a
    requested endpoint address needs one, as in docker); ``options`` are the ``-o`` options as
    given (what ``docker network inspect`` shows as ``Options``) — for the default network,
    with what the driver chose (see :attr:`NetworkSpec.default`).
    """

    id: str
    name: str
    interface: str
    subnet: ipaddress.IPv4Network
    gateway: ipaddress.IPv4Address
    ip_range: ipaddress.IPv4Network | None = None
    aux_addresses: FrozenMap = attrs.field(factory=FrozenMap, converter=_aux)
    internal: bool = False
    mtu: int = 1500
    subnet_given: bool = False
    options: FrozenMap = attrs.field(factory=FrozenMap, converter=_options)
    subnet6: ipaddress.IPv6Network | None = None   # IPv6 enabled: its subnet and gateway
    gateway6: ipaddress.IPv6Address | None = None
    ip_range6: ipaddress.IPv6Network | None = None
    multi_host: MultiHost | None = None   # a multi-host network: its allocation


# --------------------------------------------------------------------------- endpoints
@attrs.frozen
class EndpointRequest:
    """What the kernel asks of one attachment.

    ``address``         ``--ip``: this address, or ``Conflict`` if taken (``None``: the next free).
    ``mac``             ``--mac-address`` (``None``: :func:`mac_for_address` of the address).
    ``interface_name``  the interface's name inside the namespace (``eth0``, ``eth1`` for a
                        second network): ``AlreadyExists`` if the namespace has one of that name.
    ``address6``        ``--ip6`` on a network with IPv6 (``None``: the next free one there).
    """

    address: ipaddress.IPv4Address | None = attrs.field(default=None, converter=_optional_address)
    mac: str | None = attrs.field(default=None, converter=_mac)
    interface_name: str = attrs.field(default="eth0", validator=_check_ifname)
    address6: ipaddress.IPv6Address | None = attrs.field(default=None,
                                                         converter=_optional_address6)


class IPProtocol(enum.Enum):
    TCP = "tcp"
    UDP = "udp"


def _protocol(value: Any) -> IPProtocol:
    if isinstance(value, IPProtocol):
        return value
    try:
        return IPProtocol(str(value).lower())
    except ValueError:
        raise InvalidArgument(f"invalid protocol {value!r}: tcp or udp") from None


def _check_port(_inst: Any, attr: Any, value: int) -> None:
    low = 1 if attr.name == "container_port" else 0
    if isinstance(value, bool) or not isinstance(value, int) or not low <= value <= 65535:
        raise InvalidArgument(f"invalid {attr.name.replace('_', ' ')} {value!r}")


@attrs.frozen
class PortBinding:
    """One published port: ``host_ip:host_port`` on the host → ``container_port`` of an endpoint.

    ``host_port`` 0 asks for an ephemeral port (from the host's ``ip_local_port_range``);
    ``host_port_end`` above ``host_port`` asks for any free port of ``host_port..host_port_end``
    (docker's ``-p 8000-8010:80``).  ``host_ip`` ``0.0.0.0`` is every IPv4 address of the host,
    loopback included; an IPv6 ``host_ip`` (``::``, ``::1``) publishes on IPv6 (the container
    is reached over IPv4 all the same).  ``ipv6`` with ``host_ip`` ``0.0.0.0`` asks for the
    port on ``::`` too, the same port number — docker's binding for a ``HostIp`` left empty
    (``-p 8080:80``), where the host has IPv6; the driver then returns two bindings, ``0.0.0.0``
    and ``::``.  Bindings returned by :meth:`NetworkDriver.publish` have a concrete
    ``host_port``, ``host_port_end`` 0 and ``ipv6`` false.  ``str()`` gives docker's
    ``0.0.0.0:8080->80/tcp`` (``[::]:8080->80/tcp``).
    """

    container_port: int = attrs.field(validator=_check_port)
    protocol: IPProtocol = attrs.field(default=IPProtocol.TCP, converter=_protocol)
    host_ip: ipaddress.IPv4Address | ipaddress.IPv6Address = attrs.field(
        default=ANY_IPV4, converter=_host_address)
    host_port: int = attrs.field(default=0, validator=_check_port)
    host_port_end: int = attrs.field(default=0, validator=_check_port)
    ipv6: bool = attrs.field(default=False, converter=bool)

    def __attrs_post_init__(self) -> None:
        if self.host_port_end and (not self.host_port or self.host_port_end < self.host_port):
            raise InvalidArgument(f"invalid host port range {self.host_port}-{self.host_port_end}")

    def __str__(self) -> str:
        host = f"{self.host_port}-{self.host_port_end}" if self.host_port_end else str(self.host_port)
        ip = f"[{self.host_ip}]" if self.host_ip.version == 6 else str(self.host_ip)
        return f"{ip}:{host}->{self.container_port}/{self.protocol.value}"

    @classmethod
    def parse(cls, spec: str) -> list[PortBinding]:
        """Docker's ``-p`` syntax: ``[ip:][hostPort:]containerPort[/tcp|udp]``, with ranges.

        ``80`` and ``80-82`` get ephemeral host ports; ``8080:80``; ``127.0.0.1:8080:80``;
        ``127.0.0.1::80`` (ephemeral on loopback); ``[::1]:8080:80`` (IPv6); ``8000-8002:80-82``
        (one to one); ``8000-8010:80`` (one port of the range).  ``InvalidArgument`` otherwise
        (``sctp`` included).  The bindings are IPv4 only (``ipv6`` false) unless an IPv6 address
        is given.
        """
        if not isinstance(spec, str) or not spec:
            raise InvalidArgument(f"invalid port specification: {spec!r}")
        rest, _, proto = spec.partition("/")
        protocol = _protocol(proto or "tcp")
        v6 = None
        if rest.startswith("["):
            v6, sep, rest = rest[1:].partition("]:")
            if not sep:
                raise InvalidArgument(f"invalid port specification: {spec!r}")
            rest = f"x:{rest}"
        parts = rest.split(":")
        if len(parts) == 1:
            host_ip, host, container = "0.0.0.0", "", parts[0]
        elif len(parts) == 2:
            host_ip, (host, container) = "0.0.0.0", parts
        elif len(parts) == 3:
            host_ip, host, container = parts
        else:
            raise InvalidArgument(f"invalid port specification: {spec!r}")
        ip = _host_address(v6) if v6 is not None else _ipv4_address(host_ip or "0.0.0.0")

        def span(text: str, what: str) -> tuple[int, int]:
            low, sep, high = text.partition("-")
            try:
                a, b = int(low), int(high) if sep else int(low)
            except ValueError:
                raise InvalidArgument(f"invalid {what} port {text!r} in {spec!r}") from None
            if not (0 < a <= b <= 65535):
                raise InvalidArgument(f"invalid {what} port {text!r} in {spec!r}")
            return a, b

        c_low, c_high = span(container, "container")
        if not host:
            return [cls(p, protocol, ip) for p in range(c_low, c_high + 1)]
        h_low, h_high = span(host, "host")
        if c_low == c_high and h_high > h_low:
            return [cls(c_low, protocol, ip, h_low, h_high)]
        if h_high - h_low != c_high - c_low:
            raise InvalidArgument(f"invalid ranges specified for container and host ports: {spec!r}")
        return [cls(c, protocol, ip, h) for c, h in zip(range(c_low, c_high + 1),
                                                         range(h_low, h_high + 1))]


@attrs.frozen
class Endpoint:
    """One attachment as the driver made it (``docker inspect``'s ``NetworkSettings.Networks``).

    ``address`` is the endpoint's address with the subnet's prefix (``172.30.0.2/24``);
    ``gateway`` is ``None`` on an internal network (no default route) and on a multi-host
    network whose endpoints have no way out through it (the overlay's, as docker's); ``host_interface`` is
    the host-side device of the endpoint (the bridge driver's ``veth<7 hex>``; the overlay
    driver's VXLAN device, of which the endpoint is a macvlan); ``ports`` are
    its publications, with concrete host ports.
    """

    network_id: str
    endpoint_id: str
    netns_path: str
    interface_name: str
    host_interface: str
    address: ipaddress.IPv4Interface
    gateway: ipaddress.IPv4Address | None
    mac: str
    mtu: int
    ports: tuple[PortBinding, ...] = ()
    address6: ipaddress.IPv6Interface | None = None   # on a network with IPv6
    gateway6: ipaddress.IPv6Address | None = None


# --------------------------------------------------------------------------- the driver
@runtime_checkable
class NetworkDriver(Protocol):
    """A network driver.  See the module docstring for the model, the rules and the errors."""

    async def create_network(self, network_id: str, spec: NetworkSpec) -> Network:
        """Create the network: its device, address, firewall and NAT rules; return it.

        ``AlreadyExists`` (the id, or a device name in ``options``, is taken), ``Conflict``
        (the subnet overlaps another network of the driver), ``InvalidArgument``
        (see :class:`NetworkSpec`), ``Unavailable`` (no free subnet in the driver's pools).
        """

    async def delete_network(self, network_id: str) -> None:
        """Delete the network and everything it put on the host.

        ``NotFound`` if unknown; ``Conflict`` while it has endpoints (leave them first).
        """

    async def network(self, network_id: str) -> Network:
        """Return the network.  ``NotFound`` if unknown."""

    async def networks(self) -> list[Network]:
        """Every network the driver has, in no particular order."""

    async def join(self, network_id: str, endpoint_id: str, netns_path: str,
                   request: EndpointRequest | None = None) -> Endpoint:
        """Attach the namespace at ``netns_path`` to the network; return the endpoint.

        The namespace gets ``request.interface_name`` (up, with the endpoint's address, MAC and
        the network's MTU), its loopback up, and a default route via the gateway unless the
        network is internal.  ``NotFound`` (network, or ``netns_path``), ``AlreadyExists``
        (the endpoint id, or the interface name in the namespace), ``Conflict`` (the requested
        address is taken), ``InvalidArgument`` (it lies outside the subnet, or is the gateway,
        the network or broadcast address; or the network's subnet was not user-chosen),
        ``Unavailable`` (no free address).
        """

    async def leave(self, network_id: str, endpoint_id: str) -> None:
        """Detach the endpoint: unpublish its ports, remove its interface (cut off at once,
        deleted at once or shortly after: see the rules), free its address.

        Works whether the namespace still exists or not.  ``NotFound`` if the network or the
        endpoint is unknown.
        """

    async def endpoint(self, network_id: str, endpoint_id: str) -> Endpoint:
        """Return one endpoint.  ``NotFound`` if the network or the endpoint is unknown."""

    async def endpoints(self, network_id: str) -> list[Endpoint]:
        """Every endpoint of the network.  ``NotFound`` if the network is unknown."""

    async def publish(self, network_id: str, endpoint_id: str,
                      bindings: Sequence[PortBinding]) -> list[PortBinding]:
        """Forward host ports to the endpoint; return the bindings with their host ports.

        Published ports answer on the host's addresses (loopback too, for ``0.0.0.0`` and
        ``127.0.0.1``) from the host itself, from other hosts and from containers (hairpin);
        a port published on a loopback address is not reachable from other hosts.  Calls add
        to the endpoint's publications; ``leave`` removes them all.  ``Conflict`` (a host port
        is published already or bound by a socket of the host: ``Bind for 0.0.0.0:8080 failed:
        port is already allocated``), ``InvalidArgument`` (an internal network, a host address
        that is not the host's), ``Unavailable`` (no free port in the range), ``NotFound``.
        All bindings are published, or none.
        """

    async def aclose(self) -> None:
        """Release what the driver holds in the daemon.  Networks, endpoints and publications
        stay on the host and in the driver's state, for the next daemon to carry on."""


@runtime_checkable
class MultiHostNetworkDriver(NetworkDriver, Protocol):
    """A network driver whose networks span hosts (see "Multi-host networks" in the module
    docstring).  Its ``create_network`` takes :attr:`NetworkSpec.multi_host`; its ``join``
    takes the address the managers allocated (``EndpointRequest.address``, checked against
    this node's endpoints only, whether or not the subnet was user-chosen).

    A driver whose networks *all* need ``multi_host`` (the overlay's do) says so with a class
    attribute ``multi_host_only = True``: the single-host conformance suite then skips it.
    """

    async def set_peers(self, network_id: str, peers: Sequence[Peer]) -> None:
        """Replace the network's remote endpoints with ``peers``: from now on traffic to a
        peer's address goes to its MAC at its VTEP, and nothing goes to endpoints no longer
        listed.  Peers whose VTEP is the node's own underlay address are ignored.  Kept across
        daemon restarts; programmed whenever the network has a data path on the node.
        ``NotFound`` (the network), ``InvalidArgument`` (a peer's address outside the subnet, or
        two peers with one address).
        """

    async def peers(self, network_id: str) -> list[Peer]:
        """The network's peers as last set.  ``NotFound`` if the network is unknown."""

    async def set_keys(self, keys: Sequence[DataPathKey]) -> None:
        """The swarm's data-path keys, the first one the primary (used to send; every key is
        accepted on receipt, so that nodes can rotate one after another).  Applies to every
        encrypted network of the driver, now and later; kept across daemon restarts.
        ``InvalidArgument`` (no key, or two with one tag).
        """
