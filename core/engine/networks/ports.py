"""Published ports: docker's ``HostConfig.PortBindings`` parsed into the network contract's
:class:`PortBinding` values, and a container's PortMap as ``docker ps`` shows it."""
from __future__ import annotations

import json
import logging
import re
from typing import Any, Iterable

from core.contracts.network import PortBinding
from core.errors import InvalidArgument

log = logging.getLogger("core.engine.networks.ports")

_PORT_KEY = re.compile(r"^(\d+)(?:-(\d+))?(?:/([A-Za-z]+))?$")
_HOST_PORT = re.compile(r"^(\d+)(?:-(\d+))?$")


def port_key(key: Any) -> tuple[list[int], str]:
    """``80/tcp``, ``8000-8002/udp`` → (ports, protocol); ``InvalidArgument`` if malformed."""
    match = _PORT_KEY.match(key) if isinstance(key, str) else None
    if not match:
        raise InvalidArgument(f"invalid port specification: {json.dumps(key)}")
    low = int(match.group(1))
    high = int(match.group(2)) if match.group(2) else low
    proto = (match.group(3) or "tcp").lower()
    if proto not in ("tcp", "udp"):
        raise InvalidArgument(f"invalid port specification {key!r}: protocol {proto} is not "
                              "supported (tcp or udp)")
    if not 0 < low <= high <= 65535:
        raise InvalidArgument(f"invalid port specification: {json.dumps(key)}")
    return list(range(low, high + 1)), proto


def parse_port_bindings(port_bindings: Any, publish_all: bool = False,
                        exposed: Iterable[str] = ()) -> list[PortBinding]:
    """``HostConfig.PortBindings`` (``{"80/tcp": [{"HostIp": "", "HostPort": "8080"}]}``) and,
    with ``PublishAllPorts``, an ephemeral binding for each exposed port not bound otherwise.

    An empty ``HostIp`` asks for ``0.0.0.0`` and ``::`` (docker's two bindings where the host
    has IPv6: :attr:`PortBinding.ipv6`); ``0.0.0.0`` for IPv4 alone; an IPv6 address (``::``,
    ``::1``, bracketed or not) for IPv6 alone.  ``InvalidArgument`` for malformed keys, host
    ports or addresses.
    """
    if port_bindings is None:
        port_bindings = {}
    if not isinstance(port_bindings, dict):
        raise InvalidArgument("invalid PortBindings: expected an object")
    out: list[PortBinding] = []
    bound: set[tuple[int, str]] = set()
    for key, values in port_bindings.items():
        ports, proto = port_key(key)
        if values is None:
            values = []
        if not isinstance(values, list):
            raise InvalidArgument(f"invalid PortBindings for {key}: expected a list")
        for value in values:
            if not isinstance(value, dict):
                raise InvalidArgument(f"invalid PortBindings for {key}: expected objects")
            given = value.get("HostIp") or ""
            if not isinstance(given, str):
                raise InvalidArgument(f"invalid HostIp for {key}: {given!r}")
            host_ip = given.strip("[]") or "0.0.0.0"
            both = not given  # docker: an empty HostIp is 0.0.0.0 and :: (where there is IPv6)
            host_port = value.get("HostPort") or ""
            if not isinstance(host_port, str):
                host_port = str(host_port)
            low = high = 0
            if host_port:
                m = _HOST_PORT.match(host_port.strip())
                if not m:
                    raise InvalidArgument(f"invalid hostPort: {host_port}")
                low = int(m.group(1))
                high = int(m.group(2)) if m.group(2) else low
                if not 0 < low <= high <= 65535:
                    raise InvalidArgument(f"invalid hostPort: {host_port}")
            if len(ports) > 1 and low:
                if high - low != len(ports) - 1:
                    raise InvalidArgument(f"invalid ranges specified for container and host "
                                          f"ports: {key} and {host_port}")
                for offset, port in enumerate(ports):
                    out.append(PortBinding(port, proto, host_ip, low + offset, ipv6=both))
            else:
                for port in ports:
                    out.append(PortBinding(port, proto, host_ip, low,
                                           high if high > low else 0, ipv6=both))
        bound.update((p, proto) for p in ports)
    if publish_all:
        for key in exposed:
            ports, proto = port_key(key)
            for port in ports:
                if (port, proto) not in bound:
                    out.append(PortBinding(port, proto, ipv6=True))
    return out


def exposed_keys(host_config: dict[str, Any], exposed: Iterable[str]) -> list[str]:
    """The container's ports as ``<port>/<proto>`` keys, sorted: the exposed ones and those
    of ``PortBindings``."""
    keys: dict[tuple[int, str], None] = {}
    for key in list(exposed) + list((host_config.get("PortBindings") or {}).keys()):
        ports, proto = port_key(key)
        for p in ports:
            keys[(p, proto)] = None
    return [f"{p}/{proto}" for p, proto in sorted(keys)]


def ps_ports(mapping: dict[str, Any]) -> list[dict[str, Any]]:
    """``docker ps``'s ``Ports`` of a PortMap (``[{"IP", "PrivatePort", "PublicPort",
    "Type"}]``; exposed ports that are not published have no IP and PublicPort)."""
    out: list[dict[str, Any]] = []
    for key, bindings in mapping.items():
        port, _, proto = key.partition("/")
        if not bindings:
            out.append({"PrivatePort": int(port), "Type": proto})
        for b in bindings or []:
            out.append({"IP": b["HostIp"], "PrivatePort": int(port),
                        "PublicPort": int(b["HostPort"]), "Type": proto})
    return out


def portmap(exposed: Iterable[str], published: Iterable[PortBinding]) -> dict[str, Any]:
    """Docker's PortMap: every exposed port (``None`` while unpublished), with the host
    addresses and ports it is published on."""
    out: dict[str, Any] = {key: None for key in exposed}
    for b in published:
        key = f"{b.container_port}/{b.protocol.value}"
        out.setdefault(key, None)
        out[key] = (out[key] or []) + [{"HostIp": str(b.host_ip), "HostPort": str(b.host_port)}]
    return out
