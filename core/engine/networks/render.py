"""Docker's JSON for networks (``docker network inspect``/``ls``) and for a container's
networking (``docker inspect``'s ``NetworkSettings``, ``docker ps``'s ``Ports``), rendered from
the network service's rows.  Reads only; everything here is synchronous."""
from __future__ import annotations

import time
from typing import Any

from core.engine.networks.ports import ps_ports
from core.engine.networks.store import EndpointRow, NetRecord, NetworkStore, Sandbox


def rfc3339_nano(ns: int) -> str:
    """Go's RFC3339Nano in UTC (trailing zeros of the fraction dropped)."""
    seconds, frac = divmod(ns, 1_000_000_000)
    text = time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(seconds))
    fraction = f"{frac:09d}".rstrip("0")
    return f"{text}.{fraction}Z" if fraction else f"{text}Z"


def dns_names(sb: Sandbox, ep: EndpointRow) -> list[str]:
    """Docker's DNSNames: the container name, its aliases, short ID and hostname."""
    names = [sb.name] + list(ep.config.get("Aliases") or []) + [sb.container_id[:12]]
    if sb.hostname:
        names.append(sb.hostname)
    return [n for n in dict.fromkeys(names) if n]


class Renderer:
    """Docker's JSON from the rows of ``store``."""

    def __init__(self, store: NetworkStore) -> None:
        self.store = store

    def settings(self, container_id: str) -> dict[str, Any]:
        """docker inspect's ``NetworkSettings`` of the container (live: connect/disconnect show)."""
        sb = self.store.sandbox(container_id)
        attached = sb is not None and sb.attached
        out: dict[str, Any] = {
            "Bridge": "", "SandboxID": sb.sandbox_id if attached and sb else "",
            "SandboxKey": sb.netns if attached and sb else "", "HairpinMode": False,
            "LinkLocalIPv6Address": "", "LinkLocalIPv6PrefixLen": 0,
            "Ports": dict(sb.ports) if attached and sb else {},
            "SecondaryIPAddresses": None, "SecondaryIPv6Addresses": None, "EndpointID": "",
            "Gateway": "", "GlobalIPv6Address": "", "GlobalIPv6PrefixLen": 0, "IPAddress": "",
            "IPPrefixLen": 0, "IPv6Gateway": "", "MacAddress": "", "Networks": {},
        }
        if sb is None:
            return out
        for ep in self.store.endpoints_of(container_id):
            net = self.store.net(ep.network_id) or self.store.net_named(ep.network_name)
            if net is not None and net.gateway_bridge:
                continue  # docker shows no docker_gwbridge endpoint in a container's settings
            settings = self.endpoint_settings(sb, ep, net)
            out["Networks"][net.name if net else ep.network_name] = settings
            if net is not None and net.default_bridge and ep.endpoint_id:
                for key in ("EndpointID", "Gateway", "IPAddress", "IPPrefixLen", "MacAddress",
                            "IPv6Gateway", "GlobalIPv6Address", "GlobalIPv6PrefixLen"):
                    out[key] = settings[key]
        return out

    def endpoint_settings(self, sb: Sandbox, ep: EndpointRow, net: NetRecord | None
                           ) -> dict[str, Any]:
        state = ep.state or {}
        user = net is not None and net.user_defined
        return {
            "IPAMConfig": ep.config.get("IPAMConfig") or None,
            "Links": ep.config.get("Links") or None,
            "Aliases": ep.config.get("Aliases") or None,
            "MacAddress": state.get("mac") or ep.config.get("MacAddress") or "",
            "DriverOpts": ep.config.get("DriverOpts") or None,
            "GwPriority": 0,
            "NetworkID": net.id if net else "",
            "EndpointID": ep.endpoint_id,
            "Gateway": state.get("gateway", ""),
            "IPAddress": state.get("address", ""),
            "IPPrefixLen": state.get("prefixlen", 0),
            "IPv6Gateway": state.get("gateway6", ""),
            "GlobalIPv6Address": state.get("address6", ""),
            "GlobalIPv6PrefixLen": state.get("prefixlen6", 0),
            "DNSNames": dns_names(sb, ep) if user and ep.endpoint_id else None,
        }

    def ps_ports(self, container_id: str) -> list[dict[str, Any]]:
        """``docker ps``'s ``Ports`` of the container (none unless it is attached)."""
        sb = self.store.sandbox(container_id)
        if sb is None or not sb.attached:
            return []
        return ps_ports(sb.ports)

    def net_stats(self, container_id: str, pid: int) -> dict[str, Any]:
        """docker stats' ``networks`` of the container (``{}``: host mode, or no process)."""
        sb = self.store.sandbox(container_id)
        if sb is None or sb.mode == "host" or not pid:
            return {}
        if sb.mode.startswith("container:"):
            other = self.store.sandbox(sb.mode.split(":", 1)[1])
            if other is not None and other.mode == "host":
                return {}
        try:
            with open(f"/proc/{pid}/net/dev") as f:
                lines = f.readlines()[2:]
        except OSError:
            return {}
        keys = ("rx_bytes", "rx_packets", "rx_errors", "rx_dropped")
        tx = ("tx_bytes", "tx_packets", "tx_errors", "tx_dropped")
        out: dict[str, Any] = {}
        for line in lines:
            name, _, rest = line.partition(":")
            name = name.strip()
            fields = rest.split()
            if name == "lo" or len(fields) < 16:
                continue
            counters = [int(x) for x in fields]
            entry = dict(zip(keys, counters[0:4]))
            entry.update(zip(tx, counters[8:12]))
            out[name] = dict(sorted(entry.items()))
        return {"networks": out}

    def network_json(self, net: NetRecord, containers: bool = True) -> dict[str, Any]:
        """docker network inspect's object; ``Containers``: the attached ones (else empty)."""
        kernel = net.kernel
        options = dict(net.options)
        if net.has_driver:
            config = []
            if kernel is not None:
                entry: dict[str, Any] = {"Subnet": kernel["subnet"], "Gateway": kernel["gateway"]}
                if kernel.get("ip_range"):
                    entry["IPRange"] = kernel["ip_range"]
                if kernel.get("aux"):
                    entry["AuxiliaryAddresses"] = dict(kernel["aux"])
                config.append(entry)
                if kernel.get("subnet6"):
                    six: dict[str, Any] = {"Subnet": kernel["subnet6"],
                                           "Gateway": kernel["gateway6"]}
                    if kernel.get("ip_range6"):
                        six["IPRange"] = kernel["ip_range6"]
                    config.append(six)
            else:
                config = list(net.ipam.get("Config") or [])
            ipam = {"Driver": net.ipam.get("Driver") or "default",
                    "Options": None if net.predefined else net.ipam.get("Options"),
                    "Config": config}
        else:
            ipam = {"Driver": "default", "Options": None, "Config": None}
        members: dict[str, Any] = {}
        if containers:
            for ep in self.store.active_on(net.id):
                sb = self.store.sandbox(ep.container_id)
                state = ep.state or {}
                members[ep.container_id] = {
                    # docker's docker_gwbridge endpoints are gateway_<container ID[:12]>
                    "Name": f"gateway_{ep.container_id[:12]}" if net.gateway_bridge
                    else sb.name if sb else "",
                    "EndpointID": ep.endpoint_id,
                    "MacAddress": state.get("mac", ""),
                    "IPv4Address": f"{state['address']}/{state['prefixlen']}" if state else "",
                    "IPv6Address": (f"{state['address6']}/{state['prefixlen6']}"
                                    if state.get("address6") else ""),
                }
        return {
            "Name": net.name, "Id": net.id, "Created": rfc3339_nano(net.created),
            "Scope": net.scope, "Driver": net.driver, "EnableIPv4": net.has_driver,
            "EnableIPv6": bool((kernel or {}).get("subnet6") or net.ipam.get("EnableIPv6")),
            "IPAM": ipam, "Internal": net.internal,
            "Attachable": net.attachable, "Ingress": False, "ConfigFrom": {"Network": ""},
            "ConfigOnly": False, "Containers": members, "Options": options,
            "Labels": dict(net.labels),
        }
