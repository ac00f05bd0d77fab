"""What clients send to the network service, checked with docker's messages: a container's
networking request (HostConfig, EndpointSettings) and ``docker network create``'s body.

Each check returns the parts the service keeps, normalised; bad input is ``InvalidArgument``
(or docker's ``Forbidden``/``NotFound`` where docker answers so), never a traceback.
"""
from __future__ import annotations

import ipaddress
from typing import Any, Iterable

import attrs

from core.contracts.network import EndpointRequest
from core.engine.networks import links
from core.engine.networks.files import parse_extra_host
from core.engine.networks.ports import exposed_keys, parse_port_bindings
from core.engine.networks.store import NetRecord
from core.errors import Forbidden, InvalidArgument, NotFound

SWARM_ERROR = ('This node is not a swarm manager. Use "docker swarm init" or "docker swarm join" '
               "to connect this node to swarm and try again.")


def _ipv4(value: Any, what: str) -> str:
    try:
        address = ipaddress.ip_address(value)
    except (ValueError, TypeError):
        raise InvalidArgument(f"invalid {what}: {value!r}") from None
    if not isinstance(address, ipaddress.IPv4Address):
        raise InvalidArgument(f"invalid {what} {value}: IPv6 is not supported")
    return str(address)


def str_list(value: Any, what: str) -> list[str]:
    if value is None:
        return []
    if not isinstance(value, list) or not all(isinstance(v, str) for v in value):
        raise InvalidArgument(f"invalid {what}: expected a list of strings")
    return list(value)


def str_map(value: Any, what: str) -> dict[str, str]:
    if value is None:
        return {}
    if not isinstance(value, dict) or not all(isinstance(k, str) and isinstance(v, str)
                                              for k, v in value.items()):
        raise InvalidArgument(f"invalid {what}: expected an object of strings")
    return dict(value)


def endpoint_config(net: NetRecord, cfg: Any) -> dict[str, Any]:
    """Docker's checks of one EndpointSettings against its network; the parts kept."""
    if cfg is None:
        cfg = {}
    if not isinstance(cfg, dict):
        raise InvalidArgument(f"invalid endpoint settings for network {net.name}")
    out: dict[str, Any] = {}
    ipam = cfg.get("IPAMConfig") or {}
    if not isinstance(ipam, dict):
        raise InvalidArgument("invalid IPAMConfig: expected an object")
    address = ipam.get("IPv4Address") or ""
    if address:
        address = _ipv4(address, "IPv4 address")
        if net.default_bridge or not net.has_driver:
            raise InvalidArgument("user specified IP address is supported on user defined "
                                  "networks only")
        given = net.kernel["subnet_given"] if net.kernel else bool(net.ipam.get("Config"))
        if not given:
            raise InvalidArgument("user specified IP address is supported only when "
                                  "connecting to networks with user configured subnets")
        if net.kernel and ipaddress.IPv4Address(address) not in \
                ipaddress.IPv4Network(net.kernel["subnet"]):
            raise InvalidArgument(f"no configured subnet or ip-range contain the IP address "
                                  f"{address}")
    address6 = ipam.get("IPv6Address") or ""
    if address6:
        try:
            parsed6 = ipaddress.ip_address(address6)
        except (ValueError, TypeError):
            raise InvalidArgument(f"invalid IPv6 address: {address6!r}") from None
        if not isinstance(parsed6, ipaddress.IPv6Address):
            raise InvalidArgument(f"invalid IPv6 address: {address6}")
        address6 = str(parsed6)
        subnet6 = (net.kernel or {}).get("subnet6") or next(
            (c["Subnet"] for c in net.ipam.get("Config") or [] if ":" in c.get("Subnet", "")), None)
        if not (net.kernel or {}).get("subnet6") and not net.ipam.get("EnableIPv6"):
            raise InvalidArgument(f"invalid IPv6 address {address6}: network {net.name} does "
                                  "not have IPv6 enabled")
        if not any(":" in c.get("Subnet", "") for c in net.ipam.get("Config") or []):
            raise InvalidArgument("user specified IP address is supported only when "
                                  "connecting to networks with user configured subnets")
        if subnet6 and parsed6 not in ipaddress.ip_network(subnet6):
            raise InvalidArgument(f"no configured subnet or ip-range contain the IP address "
                                  f"{address6}")
    link_local = str_list(ipam.get("LinkLocalIPs"), "LinkLocalIPs")
    for ip in link_local:
        try:
            ipaddress.ip_address(ip)
        except ValueError:
            raise InvalidArgument(f"invalid link-local IP address: {ip}") from None
    if address or address6 or link_local:
        out["IPAMConfig"] = {k: v for k, v in (("IPv4Address", address),
                                               ("IPv6Address", address6),
                                               ("LinkLocalIPs", link_local)) if v}
    aliases = str_list(cfg.get("Aliases"), "Aliases")
    if aliases:
        if not net.user_defined:
            raise InvalidArgument("network-scoped alias is supported only for containers in "
                                  "user defined networks")
        out["Aliases"] = list(dict.fromkeys(aliases))
    links = str_list(cfg.get("Links"), "Links")
    if links:
        out["Links"] = links
    mac = cfg.get("MacAddress") or ""
    if mac and not net.has_driver:
        raise InvalidArgument("conflicting options: mac-address and the network mode")
    if mac:
        out["MacAddress"] = EndpointRequest(mac=mac).mac  # InvalidArgument if malformed
    driver_opts = str_map(cfg.get("DriverOpts"), "DriverOpts")
    if driver_opts:
        out["DriverOpts"] = driver_opts
    return out


def host_request(hc: dict[str, Any], exposed: Iterable[str]) -> dict[str, Any]:
    """The parts of a HostConfig networking needs, validated."""
    exposed = list(exposed)
    bindings = parse_port_bindings(hc.get("PortBindings"), bool(hc.get("PublishAllPorts")),
                                   exposed)
    del bindings  # validation only: they are parsed again at attach
    extra = [parse_extra_host(e) for e in str_list(hc.get("ExtraHosts"), "ExtraHosts")]
    dns_servers = [dns_server(d) for d in str_list(hc.get("Dns"), "Dns")]
    return {
        "PortBindings": hc.get("PortBindings") or {},
        "PublishAllPorts": bool(hc.get("PublishAllPorts")),
        "ExposedPorts": exposed_keys(hc, exposed),
        "ExtraHosts": [f"{h}:{ip}" for h, ip in extra],
        "Dns": dns_servers,
        "DnsSearch": str_list(hc.get("DnsSearch"), "DnsSearch"),
        "DnsOptions": str_list(hc.get("DnsOptions"), "DnsOptions"),
        "Links": links.parse_links(str_list(hc.get("Links"), "Links")),  # names: see _prepare
    }


def dns_server(value: str) -> str:
    """A ``--dns`` server: an IP address, normalised."""
    try:
        return str(ipaddress.ip_address(value))
    except ValueError:
        raise InvalidArgument(f"{value} is not an ip address") from None


@attrs.frozen
class CreateRequest:
    """A checked ``POST /networks/create`` body."""

    name: str
    driver: str
    options: dict[str, str]
    labels: dict[str, str]
    internal: bool
    attachable: bool
    ipam: dict[str, Any]   # {"Driver": "default", "Options": {...}, "Config": [pools]}


def create_request(body: Any, default_driver: str = "bridge") -> CreateRequest:
    """Docker's checks of a ``network create`` body: ``InvalidArgument`` (name, CIDRs, IPv6,
    config-only), ``Forbidden`` (swarm scope, a second host/null network), ``NotFound`` (an
    unknown driver or IPAM driver: ``plugin "x" not found``)."""
    if not isinstance(body, dict):
        raise InvalidArgument("network create: expected a JSON object")
    name = body.get("Name")
    if not isinstance(name, str) or not name.strip():
        raise InvalidArgument("network name must not be empty")
    if any(c in name for c in "/\\\0") or name != name.strip():
        raise InvalidArgument(f"invalid network name {name!r}")
    driver_name = body.get("Driver") or default_driver
    if driver_name == "overlay" or body.get("Ingress") or body.get("Scope") == "swarm":
        raise Forbidden(SWARM_ERROR)
    if driver_name in ("host", "null"):
        raise Forbidden(f'only one instance of "{driver_name}" network is allowed')
    if driver_name != "bridge":
        raise NotFound(f'plugin "{driver_name}" not found')
    if body.get("ConfigOnly") or (body.get("ConfigFrom") or {}).get("Network"):
        raise InvalidArgument("config-only networks are not supported")
    if body.get("EnableIPv4") is False:
        raise InvalidArgument("IPv4 cannot be disabled on a bridge network")
    ipam = body.get("IPAM") or {}
    if not isinstance(ipam, dict):
        raise InvalidArgument("invalid IPAM: expected an object")
    ipam_driver = ipam.get("Driver") or "default"
    if ipam_driver != "default":
        raise NotFound(f'plugin "{ipam_driver}" not found')
    configs = ipam.get("Config") or []
    if not isinstance(configs, list) or not all(isinstance(c, dict) for c in configs):
        raise InvalidArgument("invalid IPAM.Config: expected a list of objects")
    configs = [check_pool(c) for c in configs]
    v6 = [c for c in configs if ":" in c.get("Subnet", "")]
    if len(configs) - len(v6) > 1 or len(v6) > 1:
        raise InvalidArgument("the bridge network driver supports one IPv4 and one IPv6 subnet "
                              "per network")
    enable_ipv6 = bool(body.get("EnableIPv6"))
    if v6 and not enable_ipv6:
        raise InvalidArgument(f"invalid network config: IPv6 subnet {v6[0]['Subnet']} needs "
                              "IPv6 enabled (--ipv6)")
    options = str_map(body.get("Options"), "Options")
    labels = str_map(body.get("Labels"), "Labels")
    internal = bool(body.get("Internal"))
    return CreateRequest(name=name, driver=driver_name, options=options, labels=labels,
                         internal=internal, attachable=bool(body.get("Attachable")),
                         ipam={"Driver": "default",
                               # docker keeps what was sent: null when not given
                               "Options": (None if ipam.get("Options") is None
                                           else str_map(ipam.get("Options"), "IPAM.Options")),
                               "Config": configs,
                               "EnableIPv6": enable_ipv6})  # kept, not shown under IPAM


def _pool_address(text: str, subnet: Any, what: str, shown: str, match_what: str) -> Any:
    """An address of an IPAM pool (its gateway, an auxiliary address), which must be in the pool's
    ``subnet``: docker's "invalid <what> <shown>" and "no matching subnet for <match_what> <text>"."""
    try:
        address = ipaddress.ip_address(text)
    except ValueError:
        raise InvalidArgument(f"invalid network config:\ninvalid {what} {shown}") from None
    if subnet is None or address not in subnet:
        raise InvalidArgument(f"invalid network config:\nno matching subnet for {match_what} {text}")
    return address


def check_pool(config: dict[str, Any]) -> dict[str, Any]:
    """One IPAM.Config entry with docker's messages ("invalid network config: ...")."""
    out: dict[str, Any] = {}
    subnet_text = config.get("Subnet") or ""
    subnet = None
    if subnet_text:
        try:
            subnet = ipaddress.ip_network(subnet_text, strict=False)
        except ValueError:
            raise InvalidArgument(f"invalid network config:\ninvalid subnet {subnet_text}: "
                                  f"invalid CIDR address: {subnet_text}") from None
        if str(subnet) != subnet_text and "/" in subnet_text:
            raise InvalidArgument(f"invalid network config:\ninvalid subnet {subnet_text}: it "
                                  f"should be {subnet}")
        out["Subnet"] = str(subnet)
    range_text = config.get("IPRange") or ""
    if range_text:
        try:
            ip_range = ipaddress.ip_network(range_text, strict=False)
        except ValueError:
            raise InvalidArgument(f"invalid network config:\ninvalid ip-range {range_text}: "
                                  f"invalid CIDR address: {range_text}") from None
        if subnet is None or ip_range.version != subnet.version or \
                not ip_range.subnet_of(subnet):  # type: ignore[arg-type]
            raise InvalidArgument(f"invalid network config:\nno matching subnet for range "
                                  f"{range_text}")
        out["IPRange"] = str(ip_range)
    gateway = config.get("Gateway") or ""
    if gateway:
        out["Gateway"] = str(_pool_address(gateway, subnet, "gateway address", gateway, "gateway"))
    aux = config.get("AuxiliaryAddresses") or {}
    if aux:
        aux = str_map(aux, "AuxiliaryAddresses")
        for host, ip in aux.items():
            address = _pool_address(ip, subnet, "auxiliary address", f"{host}={ip}", "aux-address")
            if address.version == 6:
                raise InvalidArgument(f"invalid network config:\nIPv6 auxiliary addresses are "
                                      f"not supported ({host}={ip})")
        out["AuxiliaryAddresses"] = aux
    return out


