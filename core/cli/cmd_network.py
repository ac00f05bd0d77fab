"""Network commands: ``network ls``, ``create``, ``inspect``, ``rm``, ``connect``,
``disconnect``, ``prune`` — and ``port`` — with docker 28's flags, output and exit codes."""
from __future__ import annotations

import ipaddress
import json
import sys

from core.cli.client import APIError, CLIError
from core.cli.flags import INSPECT_FORMAT_HELP, Flags, command, parse_filters
from core.cli.flagvalues import kv_map
from core.cli.format import confirm, fail_joined, natural_key, print_inspect, render_format

TYPE_CHECKING = False
if TYPE_CHECKING:
    from typing import Any

# Entries for core.cli.main's tables (the lead merges them): name -> (module, function, summary)

NETWORK_HEADERS = {"ID": "NETWORK ID", "Name": "NAME", "Driver": "DRIVER", "Scope": "SCOPE",
                   "IPv4": "IPV4", "IPv6": "IPV6", "Internal": "INTERNAL", "Labels": "LABELS",
                   "CreatedAt": "CREATED AT"}
DEFAULT_FORMAT = "table {{.ID}}\t{{.Name}}\t{{.Driver}}\t{{.Scope}}"
# docker/cli's network rm, word for word
INGRESS_WARNING = ("WARNING! Before removing the routing-mesh network, make sure all the nodes in your "
                   "swarm run the same docker engine version. Otherwise, removal may not be effective "
                   "and functionality of newly create ingress networks will be impaired.\n"
                   "Are you sure you want to continue?")


def _bool(value: Any) -> str:
    return "true" if value else "false"


def go_time(rfc3339: str) -> str:
    """``2024-05-01T10:00:00.5Z`` → Go's ``time.String()``: ``2024-05-01 10:00:00.5 +0000 UTC``."""
    if not rfc3339 or "T" not in rfc3339:
        return rfc3339 or ""
    date, _, clock = rfc3339.partition("T")
    if clock.endswith("Z"):
        return f"{date} {clock[:-1]} +0000 UTC"
    for sign in ("+", "-"):
        if sign in clock:
            hms, _, zone = clock.partition(sign)
            return f"{date} {hms} {sign}{zone.replace(':', '')} {sign}{zone.replace(':', '')}"
    return f"{date} {clock}"


def network_row(n: dict[str, Any], trunc: bool = True) -> dict[str, Any]:
    """A network as docker's network formatter shows it (keys in its JSON order)."""
    labels = n.get("Labels") or {}
    return {
        "CreatedAt": go_time(n.get("Created", "")),
        "Driver": n.get("Driver", ""),
        "ID": n.get("Id", "")[:12] if trunc else n.get("Id", ""),
        "IPv4": _bool(n.get("EnableIPv4", True)),
        "IPv6": _bool(n.get("EnableIPv6")),
        "Internal": _bool(n.get("Internal")),
        "Labels": ",".join(f"{k}={labels[k]}" for k in sorted(labels)),
        "Name": n.get("Name", ""),
        "Scope": n.get("Scope", ""),
    }


def _split(values: list[str] | None) -> list[str]:
    """pflag's string slices: repeated, each comma-separated."""
    return [v.strip() for item in values or [] for v in item.split(",") if v.strip()]


@command
def ls(ctx: Any, argv: list[str], prog: str) -> int:
    f = Flags(prog, "[OPTIONS]", "List networks", aliases="core network ls, core network list")
    f.add("filter", "f", "list", typename="filter", help='Provide filter values (e.g. "driver=bridge")')
    f.format_flag()
    f.add("no-trunc", None, help="Do not truncate the output")
    f.add("quiet", "q", help="Only display network IDs")
    opts, args = f.parse(argv)
    f.require(args, exact=0)
    filters = parse_filters(opts.filter)
    data = ctx.client.get_json("/networks", {"filters": json.dumps(filters) if filters else None})
    nets = sorted(data or [], key=lambda n: natural_key(n.get("Name", "")))
    rows = [network_row(n, trunc=not opts.no_trunc) for n in nets]
    fmt = opts.format
    if opts.quiet and (not fmt or fmt == "table"):
        sys.stdout.write("".join(r["ID"] + "\n" for r in rows))
        return 0
    if not fmt or fmt == "table":
        fmt = DEFAULT_FORMAT
    render_format(fmt, rows, NETWORK_HEADERS)
    return 0


@command
def inspect(ctx: Any, argv: list[str], prog: str) -> int:
    f = Flags(prog, "[OPTIONS] NETWORK [NETWORK...]",
              "Display detailed information on one or more networks")
    f.add("format", "f", "string", help=INSPECT_FORMAT_HELP)
    f.add("verbose", "v", help="Verbose output for diagnostics")
    opts, args = f.parse(argv)
    f.require(args, least=1)
    found, errors = ctx.client.get_each([f"/networks/{name}" for name in args],
                                        {"verbose": "true" if opts.verbose else None})
    return print_inspect(opts.format, found, errors)


def ipam_config(subnets: list[str], ranges: list[str], gateways: list[str],
                aux: dict[str, str]) -> list[dict[str, Any]]:
    """docker's createIPAMConfig: each range, gateway and aux address goes to its subnet."""
    if len(subnets) < len(ranges) or len(subnets) < len(gateways):
        raise CLIError("every ip-range or gateway must have a corresponding subnet", 1)

    def net(text: str) -> Any:
        try:
            return ipaddress.ip_network(text, strict=False)
        except ValueError:
            raise CLIError(f"invalid CIDR address: {text}", 1) from None

    def contains(subnet: str, data: str) -> bool:
        try:
            return ipaddress.ip_address(data.split("/")[0]) in net(subnet)
        except ValueError:
            raise CLIError(f"invalid CIDR address: {data}", 1) from None

    configs: dict[str, dict[str, Any]] = {}
    for s in subnets:
        for other in configs:
            if net(s).overlaps(net(other)):
                raise CLIError("multiple overlapping subnet configuration is not supported", 1)
        configs[s] = {"Subnet": s}
    taken = {"IPRange": "cannot configure multiple ranges ({}, {}) on the same subnet ({})",
             "Gateway": "cannot configure multiple gateways ({}, {}) for the same subnet ({})"}
    for field, values, what in (("IPRange", ranges, "range"), ("Gateway", gateways, "gateway")):
        for value in values:
            match = False
            for s in subnets:
                if not contains(s, value):
                    continue
                if configs[s].get(field):
                    raise CLIError(taken[field].format(value, configs[s][field], s), 1)
                configs[s][field] = value
                match = True
            if not match:
                raise CLIError(f"no matching subnet for {what} {value}", 1)
    for key, address in aux.items():
        match = False
        for s in subnets:
            if contains(s, address):
                configs[s].setdefault("AuxiliaryAddresses", {})[key] = address
                match = True
        if not match:
            raise CLIError(f"no matching subnet for aux-address {address}", 1)
    return list(configs.values())


@command
def create(ctx: Any, argv: list[str], prog: str) -> int:
    f = Flags(prog, "[OPTIONS] NETWORK", "Create a network")
    f.add("attachable", None, help="Enable manual container attachment")
    f.add("aux-address", None, "list", typename="map",
          help="Auxiliary IPv4 or IPv6 addresses used by Network driver")
    f.add("config-from", None, "string", help="The network from which to copy the configuration")
    f.add("config-only", None, help="Create a configuration only network")
    f.add("driver", "d", "string", default="bridge", help="Driver to manage the Network")
    f.add("gateway", None, "list", typename="strings",
          help="IPv4 or IPv6 Gateway for the master subnet")
    f.add("ingress", None, help="Create swarm routing-mesh network")
    f.add("internal", None, help="Restrict external access to the network")
    f.add("ip-range", None, "list", typename="strings", help="Allocate container ip from a sub-range")
    f.add("ipam-driver", None, "string", default="default", help="IP Address Management Driver")
    f.add("ipam-opt", None, "list", typename="map", help="Set IPAM driver specific options")
    f.add("ipv4", None, default=True, help="Enable or disable IPv4 address assignment")
    f.add("ipv6", None, help="Enable or disable IPv6 address assignment")
    f.add("label", None, "list", help="Set metadata on a network")
    f.add("opt", "o", "list", typename="map", help="Set driver specific options")
    f.add("scope", None, "string", help="Control the network's scope")
    f.add("subnet", None, "list", typename="strings",
          help="Subnet in CIDR format that represents a network segment")
    opts, args = f.parse(argv)
    f.require(args, exact=1)
    config = ipam_config(_split(opts.subnet), _split(opts.ip_range), _split(opts.gateway),
                         kv_map(opts.aux_address))
    body: dict[str, Any] = {
        "Name": args[0],
        "Driver": opts.driver,
        "Scope": opts.scope,
        "EnableIPv6": opts.ipv6 if "ipv6" in opts.changed else None,
        "IPAM": {"Driver": opts.ipam_driver, "Config": config, "Options": kv_map(opts.ipam_opt)},
        "Internal": opts.internal,
        "Attachable": opts.attachable,
        "Ingress": opts.ingress,
        "ConfigOnly": opts.config_only,
        "Options": kv_map(opts.opt),
        "Labels": kv_map(opts.label),
    }
    if "ipv4" in opts.changed:
        body["EnableIPv4"] = opts.ipv4
    if opts.config_from:
        body["ConfigFrom"] = {"Network": opts.config_from}
    result = ctx.client.post("/networks/create", body=body) or {}
    if result.get("Warning"):
        sys.stderr.write(result["Warning"] + "\n")
    sys.stdout.write(result.get("Id", "") + "\n")
    return 0


@command
def rm(ctx: Any, argv: list[str], prog: str) -> int:
    f = Flags(prog, "NETWORK [NETWORK...]", "Remove one or more networks",
              aliases="core network rm, core network remove")
    f.add("force", "f", help="Do not error if the network does not exist")
    opts, args = f.parse(argv)
    f.require(args, least=1)
    errors = []
    for name in args:
        try:  # docker asks before the routing mesh's network goes
            ingress = bool((ctx.client.get_json(f"/networks/{name}") or {}).get("Ingress"))
        except APIError:
            ingress = False
        if ingress and not confirm(INGRESS_WARNING):
            continue
        try:
            resp = ctx.client.request("DELETE", f"/networks/{name}")
            resp.sock.close()
        except APIError as exc:
            if opts.force and exc.status == 404:
                continue
            errors.append(exc.message)
            continue
        sys.stdout.write(name + "\n")
    return fail_joined(errors)


@command
def connect(ctx: Any, argv: list[str], prog: str) -> int:
    f = Flags(prog, "[OPTIONS] NETWORK CONTAINER", "Connect a container to a network")
    f.add("alias", None, "list", typename="strings", help="Add network-scoped alias for the container")
    f.add("driver-opt", None, "list", typename="strings", help="driver options for the network")
    f.add("gw-priority", None, "int", help="Highest gw-priority provides the default gateway. "
          "Accepts positive and negative values.")
    f.add("ip", None, "string", help="IPv4 address (e.g., \"172.30.100.104\")")
    f.add("ip6", None, "string", help="IPv6 address (e.g., \"2001:db8::33\")")
    f.add("link", None, "list", help="Add link to another container")
    f.add("link-local-ip", None, "list", typename="strings", help="Add a link-local address for the container")
    opts, args = f.parse(argv)
    f.require(args, exact=2)
    endpoint: dict[str, Any] = {}
    ipam: dict[str, Any] = {}
    if opts.ip:
        ipam["IPv4Address"] = opts.ip
    if opts.ip6:
        ipam["IPv6Address"] = opts.ip6
    if opts.link_local_ip:
        ipam["LinkLocalIPs"] = _split(opts.link_local_ip)
    if ipam:
        endpoint["IPAMConfig"] = ipam
    if opts.alias:
        endpoint["Aliases"] = _split(opts.alias)
    if opts.link:
        endpoint["Links"] = list(opts.link)
    if opts.driver_opt:
        endpoint["DriverOpts"] = kv_map(_split(opts.driver_opt))
    if opts.gw_priority:
        endpoint["GwPriority"] = opts.gw_priority
    ctx.client.post(f"/networks/{args[0]}/connect", body={"Container": args[1], "EndpointConfig": endpoint})
    return 0


@command
def disconnect(ctx: Any, argv: list[str], prog: str) -> int:
    f = Flags(prog, "[OPTIONS] NETWORK CONTAINER", "Disconnect a container from a network")
    f.add("force", "f", help="Force the container to disconnect from a network")
    opts, args = f.parse(argv)
    f.require(args, exact=2)
    ctx.client.post(f"/networks/{args[0]}/disconnect", body={"Container": args[1], "Force": opts.force})
    return 0


@command
def prune(ctx: Any, argv: list[str], prog: str) -> int:
    from core.cli.prune import simple_prune

    return simple_prune(ctx, argv, prog, summary="Remove all unused networks",
                        warning="WARNING! This will remove all custom networks not used by at least one "
                                "container.",
                        path="/networks/prune", key="NetworksDeleted", title="Networks", space=False)
