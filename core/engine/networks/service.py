"""The daemon's networks: their records, the predefined ones, containers' sandboxes, endpoints,
published ports and the embedded DNS — docker's "networking on one host".

Networks
--------
A network is a row of ``networks`` (docker's id, name, driver, options, labels, IPAM request...)
and, for driver networks, the driver's object of the same id (:mod:`core.contracts.network`),
whose values (device, subnet, gateway, MTU) are copied into the row (``kernel``).  Three are
predefined, as in docker: ``bridge`` (driver ``bridge``, device ``core0`` — see
:meth:`NetworkManager.default_bridge_name` — made at start if missing; docker's default-bridge
semantics: no DNS by name, no aliases, no ``--ip``), ``host`` and ``none`` (driver ``null``):
no driver objects.  They cannot be removed.

Containers
----------
The container code calls, in this order (all ``async``; see each docstring)::

    create  await networks.check(cid, host_config, networking_config,
                                 exposed_ports=config.get("ExposedPorts"))   # errors to the client
    start   path = await networks.prepare(...same...)      # fresh sandbox; path for the OCI spec
            executor.create(... network namespace path=path (None: the host's) ...)
            info = await networks.attach(cid, name, hostname, pid)
            write info["HostsFile"] / info["ResolvConf"] to the container's hosts / resolv.conf
            executor.start(...)
    stop / exit             await networks.detach(cid)
    rm                      await networks.forget(cid)
    daemon start            await networks.restore([(cid, pid) for running containers])
    inspect / ps            networks.settings(cid) / networks.ps_ports(cid)

A container's *sandbox* is a network namespace file ``<exec-root>/netns/<cid[:12]>``
(:mod:`core.netns`) made by ``prepare``; the executor puts the container in it, ``attach`` puts
one endpoint per network in it (``eth0``, ``eth1``... in request order), publishes the ports on
the first non-internal network (which also gives the default route), and starts the
container's DNS server (:mod:`core.engine.networks.dns`) on ``127.0.0.11:53`` inside it when it is on a
user-defined network.  ``restore`` must run before any container is started by the daemon
(restart policies), since every attached container it is not told about is detached.

What a container asked for (its networks with their endpoint settings, ports, DNS options) is
recorded by the first ``check``/``prepare`` (rows of ``network_sandboxes`` and
``network_endpoints``); ``network connect``/``disconnect`` change those rows, and later starts
use them — not the container's original ``NetworkingConfig``.

Errors are docker's messages in :mod:`core.errors` classes (``NotFound``: ``network x not
found``; ``Forbidden``: pre-defined networks, active endpoints, duplicate endpoints...).
"""
from __future__ import annotations

import contextlib
import hashlib
import inspect
import ipaddress
import json
import logging
import os
import re
import secrets
import time
from pathlib import Path
from typing import Any, Awaitable, Callable, Iterable, Iterator

import attrs
import trio

from core import netns
from core.engine.networks import dns
from core.contracts.network import EndpointRequest, Network, NetworkSpec, PortBinding
from core.errors import (AlreadyExists, Conflict, CoreError, Forbidden, InvalidArgument, NotFound,
                         Unavailable)
from core.engine.state import Migration

log = logging.getLogger("core.engine.networks.service")

SCHEMA = """
    CREATE TABLE IF NOT EXISTS networks (
        id TEXT PRIMARY KEY,              -- 64 hex
        name TEXT NOT NULL UNIQUE,
        driver TEXT NOT NULL,             -- bridge, host, null
        scope TEXT NOT NULL,              -- local
        created INTEGER NOT NULL,         -- nanoseconds since the epoch
        options TEXT NOT NULL,            -- JSON: the -o options given to the driver
        labels TEXT NOT NULL,             -- JSON
        internal INTEGER NOT NULL,
        attachable INTEGER NOT NULL,
        ipam TEXT NOT NULL,               -- JSON: the IPAM object as requested
        kernel TEXT                       -- JSON: the driver's Network values, NULL if not made
    );
    CREATE TABLE IF NOT EXISTS network_sandboxes (
        container_id TEXT PRIMARY KEY,
        mode TEXT NOT NULL,               -- networks, host, none or container:<id>
        request TEXT NOT NULL,            -- JSON: ports and DNS settings of the HostConfig
        sandbox_id TEXT NOT NULL,         -- 64 hex
        netns TEXT NOT NULL,              -- the namespace file, empty for host and container modes
        name TEXT NOT NULL,               -- the container name, set by attach
        hostname TEXT NOT NULL,
        pid INTEGER NOT NULL,             -- 0 while not attached
        attached INTEGER NOT NULL,
        ports TEXT NOT NULL               -- JSON: the publications, a PortMap
    );
    CREATE TABLE IF NOT EXISTS network_endpoints (
        container_id TEXT NOT NULL,
        network_id TEXT NOT NULL,
        network_name TEXT NOT NULL,       -- as requested, for messages
        position INTEGER NOT NULL,        -- the order of the interfaces
        config TEXT NOT NULL,             -- JSON: the EndpointSettings requested
        endpoint_id TEXT NOT NULL,        -- empty while not attached
        state TEXT,                       -- JSON: address, prefix, gateway, mac, interface
        PRIMARY KEY (container_id, network_id)
    )
"""
MIGRATION = Migration(5, "networks", SCHEMA)

PREDEFINED = ("bridge", "host", "none")
OPT_BRIDGE_NAME = "com.docker.network.bridge.name"
OPT_MTU = "com.docker.network.driver.mtu"
DEFAULT_BRIDGE_OPTIONS = {
    "com.docker.network.bridge.default_bridge": "true",
    "com.docker.network.bridge.enable_icc": "true",
    "com.docker.network.bridge.enable_ip_masquerade": "true",
    "com.docker.network.bridge.host_binding_ipv4": "0.0.0.0",
}
FALLBACK_NAMESERVERS = ("8.8.8.8", "8.8.4.4")  # docker's, when the host has none left
HOSTS_DEFAULT = ("127.0.0.1\tlocalhost\n::1\tlocalhost ip6-localhost ip6-loopback\n"
                 "fe00::0\tip6-localnet\nff00::0\tip6-mcastprefix\nff02::1\tip6-allnodes\n"
                 "ff02::2\tip6-allrouters\n")
SWARM_ERROR = ('This node is not a swarm manager. Use "docker swarm init" or "docker swarm join" '
               "to connect this node to swarm and try again.")
HOST_NET_ERROR = "container cannot be disconnected from host network or connected to host network"
NONE_NET_ERROR = ("container cannot be connected to multiple networks with one of the networks in "
                  "private (none) mode")
SHARED_NET_ERROR = ("container sharing network namespace with another container or host cannot be "
                    "connected to any other network")
_PORT_KEY = re.compile(r"^(\d+)(?:-(\d+))?(?:/([A-Za-z]+))?$")
_HOST_PORT = re.compile(r"^(\d+)(?:-(\d+))?$")

ContainerLookup = Callable[[str], "tuple[str, int, bool] | Awaitable[tuple[str, int, bool]]"]


# =========================================================================== records
@attrs.define
class NetRecord:
    id: str
    name: str
    driver: str
    scope: str
    created: int
    options: dict[str, str]
    labels: dict[str, str]
    internal: bool
    attachable: bool
    ipam: dict[str, Any]
    kernel: dict[str, Any] | None

    @property
    def predefined(self) -> bool:
        return self.name in PREDEFINED

    @property
    def default_bridge(self) -> bool:
        return self.name == "bridge"

    @property
    def has_driver(self) -> bool:
        """A network of a network driver (not ``host`` or ``none``)."""
        return self.driver not in ("host", "null")

    @property
    def user_defined(self) -> bool:
        """Docker's user-defined networks: DNS by name, aliases, ``--ip``."""
        return not self.predefined


@attrs.define
class Sandbox:
    container_id: str
    mode: str
    request: dict[str, Any]
    sandbox_id: str
    netns: str
    name: str
    hostname: str
    pid: int
    attached: bool
    ports: dict[str, Any]


@attrs.define
class EndpointRow:
    container_id: str
    network_id: str
    network_name: str
    position: int
    config: dict[str, Any]
    endpoint_id: str
    state: dict[str, Any] | None


def _net_row(row: Any) -> NetRecord:
    return NetRecord(id=row["id"], name=row["name"], driver=row["driver"], scope=row["scope"],
                     created=row["created"], options=json.loads(row["options"]),
                     labels=json.loads(row["labels"]), internal=bool(row["internal"]),
                     attachable=bool(row["attachable"]), ipam=json.loads(row["ipam"]),
                     kernel=json.loads(row["kernel"]) if row["kernel"] else None)


def _sandbox_row(row: Any) -> Sandbox:
    return Sandbox(container_id=row["container_id"], mode=row["mode"],
                   request=json.loads(row["request"]), sandbox_id=row["sandbox_id"],
                   netns=row["netns"], name=row["name"], hostname=row["hostname"], pid=row["pid"],
                   attached=bool(row["attached"]), ports=json.loads(row["ports"]))


def _endpoint_row(row: Any) -> EndpointRow:
    return EndpointRow(container_id=row["container_id"], network_id=row["network_id"],
                       network_name=row["network_name"], position=row["position"],
                       config=json.loads(row["config"]), endpoint_id=row["endpoint_id"],
                       state=json.loads(row["state"]) if row["state"] else None)


def _kernel_of(net: Network) -> dict[str, Any]:
    return {"interface": net.interface, "subnet": str(net.subnet), "gateway": str(net.gateway),
            "ip_range": str(net.ip_range) if net.ip_range else None,
            "aux": dict(net.aux_addresses), "internal": net.internal, "mtu": net.mtu,
            "subnet_given": net.subnet_given}


def rfc3339_nano(ns: int) -> str:
    """Go's RFC3339Nano in UTC (trailing zeros of the fraction dropped)."""
    seconds, frac = divmod(ns, 1_000_000_000)
    text = time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(seconds))
    fraction = f"{frac:09d}".rstrip("0")
    return f"{text}.{fraction}Z" if fraction else f"{text}Z"


# =========================================================================== pure helpers
def parse_extra_host(entry: Any) -> tuple[str, str]:
    """``name:ip`` or ``name=ip`` (``--add-host``) → (name, ip); ip may be ``host-gateway``."""
    if not isinstance(entry, str):
        raise InvalidArgument(f"invalid extra host {entry!r}")
    sep = "=" if "=" in entry else ":"
    host, found, ip = entry.partition(sep)
    ip = ip.strip()
    if ip.startswith("[") and ip.endswith("]"):
        ip = ip[1:-1]
    if not found or not host or not ip:
        raise InvalidArgument(f'invalid argument "{entry}" for "--add-host" flag: '
                              f"bad format for add-host: {entry!r}")
    if ip != "host-gateway":
        try:
            ipaddress.ip_address(ip)
        except ValueError:
            raise InvalidArgument(f'invalid argument "{entry}" for "--add-host" flag: '
                                  f'invalid IP address in add-host: "{ip}"') from None
    return host, ip


def build_hosts(*, hostname: str = "", addresses: Iterable[str] = (), domainname: str = "",
                extra_hosts: Iterable[tuple[str, str]] = (), base: str = HOSTS_DEFAULT) -> str:
    """Docker's ``/etc/hosts``: the localhost lines (``base``), ``--add-host`` entries, then one
    line per address of the container with its hostname."""
    out = base if base.endswith("\n") or not base else base + "\n"
    for name, ip in extra_hosts:
        out += f"{ip}\t{name}\n"
    if hostname:
        names = f"{hostname}.{domainname} {hostname}" if domainname else hostname
        for address in addresses:
            out += f"{address}\t{names}\n"
    return out


def resolv_parts(text: str) -> tuple[list[str], list[str], list[str], list[str]]:
    """(nameservers, search domains, options, other lines) of a resolv.conf."""
    servers: list[str] = []
    search: list[str] = []
    options: list[str] = []
    other: list[str] = []
    for line in text.splitlines():
        words = line.split()
        if not words or words[0].startswith(("#", ";")):
            continue
        if words[0] == "nameserver" and len(words) > 1:
            servers.append(words[1])
        elif words[0] in ("search", "domain"):
            search = words[1:]
        elif words[0] == "options":
            options += words[1:]
        else:
            other.append(line)
    return servers, search, options, other


def _loopback(address: str) -> bool:
    try:
        return ipaddress.ip_address(address.split("%")[0]).is_loopback
    except ValueError:
        return False


def build_resolv_conf(host_text: str, *, internal_resolver: bool, dns_servers: Iterable[str] = (),
                      dns_search: Iterable[str] = (), dns_options: Iterable[str] = (),
                      host_network: bool = False, source: str = "/etc/resolv.conf") -> str:
    """The container's ``/etc/resolv.conf``, as docker writes it.

    ``internal_resolver`` (user-defined networks): ``nameserver 127.0.0.11``, the host's search
    domains and options plus ``ndots:0``.  Otherwise: ``--dns`` servers if given, else the
    host's without loopback ones (unreachable from another namespace; kept for ``host_network``)
    — docker's 8.8.8.8 and 8.8.4.4 when none is left.  ``--dns-search`` and ``--dns-option``
    replace the host's search domains and options.
    """
    servers, search, options, _other = resolv_parts(host_text)
    dns_servers, dns_search, dns_options = list(dns_servers), list(dns_search), list(dns_options)
    if dns_search:
        search = [] if dns_search == ["."] else dns_search
    if dns_options:
        options = dns_options
    lines = ["# Generated by core.", ""]
    if internal_resolver:
        lines.append(f"nameserver {dns.DNS_ADDRESS}")
        if not any(o.startswith("ndots:") for o in options):
            options = options + ["ndots:0"]
    else:
        if dns_servers:
            servers = dns_servers
        elif not host_network:
            servers = [s for s in servers if not _loopback(s)]
        if not servers:
            servers = list(FALLBACK_NAMESERVERS)
        lines += [f"nameserver {s}" for s in servers]
    if search:
        lines.append("search " + " ".join(search))
    if options:
        lines.append("options " + " ".join(options))
    mode = "internal resolver" if internal_resolver else ("host" if host_network else "legacy")
    lines += ["", f"# Based on host file: '{source}' ({mode})"]
    return "\n".join(lines) + "\n"


def _port_key(key: Any) -> tuple[list[int], str]:
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

    IPv6 host addresses are skipped (the bridge driver is IPv4 only).  ``InvalidArgument`` for
    malformed keys, host ports or addresses.
    """
    if port_bindings is None:
        port_bindings = {}
    if not isinstance(port_bindings, dict):
        raise InvalidArgument("invalid PortBindings: expected an object")
    out: list[PortBinding] = []
    bound: set[tuple[int, str]] = set()
    for key, values in port_bindings.items():
        ports, proto = _port_key(key)
        if values is None:
            values = []
        if not isinstance(values, list):
            raise InvalidArgument(f"invalid PortBindings for {key}: expected a list")
        for value in values:
            if not isinstance(value, dict):
                raise InvalidArgument(f"invalid PortBindings for {key}: expected objects")
            host_ip = value.get("HostIp") or "0.0.0.0"
            if not isinstance(host_ip, str):
                raise InvalidArgument(f"invalid HostIp for {key}: {host_ip!r}")
            if ":" in host_ip:
                log.info("publication of %s on IPv6 address %s skipped: IPv4 only", key, host_ip)
                continue
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
                    out.append(PortBinding(port, proto, host_ip, low + offset))
            else:
                for port in ports:
                    out.append(PortBinding(port, proto, host_ip, low,
                                           high if high > low else 0))
        bound.update((p, proto) for p in ports)
    if publish_all:
        for key in exposed:
            ports, proto = _port_key(key)
            for port in ports:
                if (port, proto) not in bound:
                    out.append(PortBinding(port, proto))
    return out


def _exposed_keys(host_config: dict[str, Any], exposed: Iterable[str]) -> list[str]:
    keys: dict[tuple[int, str], None] = {}
    for key in list(exposed) + list((host_config.get("PortBindings") or {}).keys()):
        ports, proto = _port_key(key)
        for p in ports:
            keys[(p, proto)] = None
    return [f"{p}/{proto}" for p, proto in sorted(keys)]


def _ipv4(value: Any, what: str) -> str:
    try:
        address = ipaddress.ip_address(value)
    except (ValueError, TypeError):
        raise InvalidArgument(f"invalid {what}: {value!r}") from None
    if not isinstance(address, ipaddress.IPv4Address):
        raise InvalidArgument(f"invalid {what} {value}: IPv6 is not supported")
    return str(address)


def _str_list(value: Any, what: str) -> list[str]:
    if value is None:
        return []
    if not isinstance(value, list) or not all(isinstance(v, str) for v in value):
        raise InvalidArgument(f"invalid {what}: expected a list of strings")
    return list(value)


def _str_map(value: Any, what: str) -> dict[str, str]:
    if value is None:
        return {}
    if not isinstance(value, dict) or not all(isinstance(k, str) and isinstance(v, str)
                                              for k, v in value.items()):
        raise InvalidArgument(f"invalid {what}: expected an object of strings")
    return dict(value)


# =========================================================================== DNS glue
class _ContainerAnswerer:
    """The :class:`core.engine.networks.dns.Answerer` of one container: names on its user-defined networks."""

    def __init__(self, manager: NetworkManager, container_id: str) -> None:
        self.manager = manager
        self.container_id = container_id

    def local(self, query: dns.Query) -> tuple[int, list[tuple[int, bytes]]] | None:
        if query.qclass != dns.CLASS_IN:
            return None
        if query.qtype in (dns.TYPE_A, dns.TYPE_AAAA):
            found = self.manager.resolve(self.container_id, query.name)
            if found is None:
                return None
            if query.qtype == dns.TYPE_AAAA:
                return dns.NOERROR, []  # the name exists, with IPv4 addresses only
            return dns.NOERROR, [dns.a_record(a) for a in dns.shuffled(found)]
        if query.qtype == dns.TYPE_PTR:
            address = dns.reverse_address(query.name)
            if address is not None:
                name = self.manager.reverse(self.container_id, address)
                if name is not None:
                    return dns.NOERROR, [dns.ptr_record(name)]
        return None

    def upstreams(self) -> list[tuple[str, int]]:
        return self.manager.upstreams(self.container_id)


@attrs.define
class _Member:
    container_id: str
    container_name: str
    names: set[str]
    address: str


# =========================================================================== the manager
class NetworkManager:
    """The daemon's networks and the networking of its containers.  See the module docstring.

    Attributes the daemon (the lead) sets:

    ``container_lookup``  ``(name_or_id) -> (container_id, pid, running)`` (may be async);
                          raises ``NotFound`` for an unknown container.  Used by ``network
                          connect``/``disconnect`` and ``--network container:<name>``.
    ``on_change``         optional ``(container_id) -> None`` (may be async), called after
                          ``network connect``/``disconnect`` changed a *running* container:
                          rewrite its hosts file from :meth:`hosts_file` and its resolv.conf
                          from :meth:`resolv_conf` (a container of the default bridge
                          connected to a user network gets ``nameserver 127.0.0.11``, as
                          docker's sandbox rebuilds its DNS when its resolver starts).
    ``nursery``           where DNS servers run (default: ``daemon.nursery``).

    Knobs for tests: ``dns_upstreams`` (``[(ip, port)]`` replacing the host's resolvers for
    forwarding), ``dns_timeout``, ``resolv_conf_path``, ``hosts_path``.
    """

    def __init__(self, daemon: Any, *, default_bridge_name: str | None = None) -> None:
        self.daemon = daemon
        self.container_lookup: ContainerLookup | None = None
        self.on_change: Callable[[str], Any] | None = None
        self.nursery: trio.Nursery | None = None
        self.dns_upstreams: list[tuple[str, int]] | None = None
        self.dns_timeout = dns.FORWARD_TIMEOUT
        self.resolv_conf_path = "/etc/resolv.conf"
        self.hosts_path = "/etc/hosts"
        self._default_bridge_name = default_bridge_name
        self._lock = trio.Lock()
        self._started = False
        self._bridge_error = ""
        self._servers: dict[str, dns.EmbeddedDNS] = {}
        # the DNS index, rebuilt from the tables after every change (_reindex)
        self._dns_networks: dict[str, list[str]] = {}      # container -> user networks, in order
        self._members: dict[str, list[_Member]] = {}       # network -> attached containers
        self._network_names: dict[str, str] = {}
        self._forwards: dict[str, list[str] | None] = {}   # container -> --dns (None: host's)
        self._resolv_cache: tuple[float, int, list[str]] | None = None
        self._in_transaction = False

    # ------------------------------------------------------------------ plumbing
    @property
    def db(self) -> Any:
        return self.daemon.state.db

    @contextlib.contextmanager
    def _transaction(self) -> Iterator[Any]:
        """The state's transaction; nested uses join the outer one."""
        if self._in_transaction:
            yield self.db
            return
        self._in_transaction = True
        try:
            with self.daemon.state.transaction() as db:
                yield db
        finally:
            self._in_transaction = False

    def _driver(self, name: str) -> Any:
        return self.daemon.drivers.get("network", name)

    def _emit(self, action: str, net: NetRecord, extra: dict[str, str] | None = None) -> None:
        events = getattr(self.daemon, "events", None)
        if events is not None:
            events.emit("network", action, net.id,
                        {"name": net.name, "type": net.driver, **(extra or {})})

    def default_bridge_name(self) -> str:
        """The device of the default ``bridge`` network: ``core0`` — unless the network driver
        has its own nft tables (``driver-opts: {"network": {"nft-table": T}}``, as every test
        daemon and any second engine on a host has): then ``core<8 hex of sha256(T)>``, so
        that engines sharing a host never share a default bridge.  Fixed once the network
        exists (it is in its options)."""
        if self._default_bridge_name:
            return self._default_bridge_name
        opts = (getattr(self.daemon.config, "driver_opts", {}) or {}).get("network") or {}
        table = opts.get("nft-table", "core")
        if table == "core":
            return "core0"
        return "core" + hashlib.sha256(table.encode()).hexdigest()[:8]

    def sandbox_path(self, container_id: str) -> str:
        return str(Path(self.daemon.config.exec_root) / "netns" / container_id[:12])

    # ------------------------------------------------------------------ rows
    def _networks(self) -> list[NetRecord]:
        return [_net_row(r) for r in self.db.execute("SELECT * FROM networks ORDER BY created")]

    def _net(self, network_id: str) -> NetRecord | None:
        row = self.db.execute("SELECT * FROM networks WHERE id=?", (network_id,)).fetchone()
        return _net_row(row) if row else None

    def _net_named(self, name: str) -> NetRecord | None:
        row = self.db.execute("SELECT * FROM networks WHERE name=?", (name,)).fetchone()
        return _net_row(row) if row else None

    def _insert_net(self, net: NetRecord) -> None:
        with self._transaction() as db:
            db.execute("INSERT INTO networks(id, name, driver, scope, created, options, labels, "
                       "internal, attachable, ipam, kernel) VALUES(?,?,?,?,?,?,?,?,?,?,?)",
                       (net.id, net.name, net.driver, net.scope, net.created,
                        json.dumps(net.options), json.dumps(net.labels), int(net.internal),
                        int(net.attachable), json.dumps(net.ipam),
                        json.dumps(net.kernel) if net.kernel is not None else None))

    def _set_kernel(self, network_id: str, kernel: dict[str, Any] | None) -> None:
        with self._transaction() as db:
            db.execute("UPDATE networks SET kernel=? WHERE id=?",
                       (json.dumps(kernel) if kernel is not None else None, network_id))

    def _delete_net(self, network_id: str) -> None:
        with self._transaction() as db:
            db.execute("DELETE FROM networks WHERE id=?", (network_id,))

    def _sandbox(self, container_id: str) -> Sandbox | None:
        row = self.db.execute("SELECT * FROM network_sandboxes WHERE container_id=?",
                              (container_id,)).fetchone()
        return _sandbox_row(row) if row else None

    def _sandboxes(self) -> list[Sandbox]:
        return [_sandbox_row(r) for r in self.db.execute("SELECT * FROM network_sandboxes")]

    def _save_sandbox(self, sb: Sandbox) -> None:
        with self._transaction() as db:
            db.execute("INSERT OR REPLACE INTO network_sandboxes(container_id, mode, request, "
                       "sandbox_id, netns, name, hostname, pid, attached, ports) "
                       "VALUES(?,?,?,?,?,?,?,?,?,?)",
                       (sb.container_id, sb.mode, json.dumps(sb.request), sb.sandbox_id,
                        sb.netns, sb.name, sb.hostname, sb.pid, int(sb.attached),
                        json.dumps(sb.ports)))

    def _endpoints_of(self, container_id: str) -> list[EndpointRow]:
        return [_endpoint_row(r) for r in self.db.execute(
            "SELECT * FROM network_endpoints WHERE container_id=? ORDER BY position",
            (container_id,))]

    def _endpoints_on(self, network_id: str) -> list[EndpointRow]:
        return [_endpoint_row(r) for r in self.db.execute(
            "SELECT * FROM network_endpoints WHERE network_id=? ORDER BY container_id",
            (network_id,))]

    def _save_endpoint(self, ep: EndpointRow) -> None:
        with self._transaction() as db:
            db.execute("INSERT OR REPLACE INTO network_endpoints(container_id, network_id, "
                       "network_name, position, config, endpoint_id, state) "
                       "VALUES(?,?,?,?,?,?,?)",
                       (ep.container_id, ep.network_id, ep.network_name, ep.position,
                        json.dumps(ep.config), ep.endpoint_id,
                        json.dumps(ep.state) if ep.state is not None else None))

    def _delete_endpoint(self, container_id: str, network_id: str) -> None:
        with self._transaction() as db:
            db.execute("DELETE FROM network_endpoints WHERE container_id=? AND network_id=?",
                       (container_id, network_id))

    def _active_on(self, network_id: str) -> list[EndpointRow]:
        return [e for e in self._endpoints_on(network_id) if e.endpoint_id]

    # ------------------------------------------------------------------ start
    async def start(self) -> None:
        """Create the tables and predefined networks, make the default bridge if missing and
        check that the driver has every network (idempotent; every public method calls it)."""
        if self._started:
            return
        async with self._lock:
            if self._started:
                return
            with self._transaction() as db:
                for statement in SCHEMA.split(";"):
                    if statement.strip():
                        db.execute(statement)
            self._ensure_predefined()
            await self._reconcile()
            await self._ensure_default_bridge()
            self._reindex()
            self._started = True

    def _ensure_predefined(self) -> None:
        now = time.time_ns()
        for name, driver in (("bridge", "bridge"), ("host", "host"), ("none", "null")):
            if self._net_named(name) is not None:
                continue
            options = ({**DEFAULT_BRIDGE_OPTIONS, OPT_BRIDGE_NAME: self.default_bridge_name()}
                       if name == "bridge" else {})
            self._insert_net(NetRecord(
                id=secrets.token_hex(32), name=name, driver=driver, scope="local", created=now,
                options=options, labels={}, internal=False, attachable=False,
                ipam={"Driver": "default", "Options": None, "Config": []}, kernel=None))

    def _spec(self, net: NetRecord) -> NetworkSpec:
        configs = net.ipam.get("Config") or []
        first = configs[0] if configs else {}
        return NetworkSpec(name=net.name, subnet=first.get("Subnet") or None,
                           gateway=first.get("Gateway") or None,
                           ip_range=first.get("IPRange") or None,
                           aux_addresses=first.get("AuxiliaryAddresses") or None,
                           internal=net.internal, options=net.options)

    async def _reconcile(self) -> None:
        """The records get the driver's current values; networks the driver lost are made
        again; driver networks without a record are reported (and left alone)."""
        by_driver: dict[str, list[NetRecord]] = {}
        for net in self._networks():
            if net.has_driver:
                by_driver.setdefault(net.driver, []).append(net)
        for driver_name, nets in by_driver.items():
            try:
                driver = self._driver(driver_name)
                have = {n.id: n for n in await driver.networks()}
            except CoreError as exc:
                log.error("network driver %s: %s", driver_name, exc)
                continue
            known = {n.id for n in nets}
            for stray in sorted(set(have) - known):
                log.warning("network driver %s has a network %s (%s) the daemon has no record "
                            "of: left alone", driver_name, stray, have[stray].name)
            for net in nets:
                if net.id in have:
                    kernel = _kernel_of(have[net.id])
                    if kernel != net.kernel:
                        self._set_kernel(net.id, kernel)
                elif not net.default_bridge and net.kernel is not None:
                    try:
                        made = await driver.create_network(net.id, self._spec(net))
                        self._set_kernel(net.id, _kernel_of(made))
                        log.warning("network %s was missing from driver %s: made again",
                                    net.name, driver_name)
                    except CoreError as exc:
                        log.error("network %s is missing from driver %s and cannot be made "
                                  "again: %s", net.name, driver_name, exc)

    async def _ensure_default_bridge(self) -> NetRecord:
        """Make the default bridge in the driver if it is not there.  Failures are logged and
        remembered (the daemon serves on; using the network reports them)."""
        net = self._net_named("bridge")
        assert net is not None
        if net.kernel is not None:
            return net
        try:
            driver = self._driver(net.driver)
            try:
                made = await driver.network(net.id)
            except NotFound:
                made = await driver.create_network(net.id, NetworkSpec(name="bridge",
                                                                       options=net.options))
        except CoreError as exc:
            self._bridge_error = str(exc)
            log.error("cannot make the default bridge network (device %s): %s",
                      net.options.get(OPT_BRIDGE_NAME), exc)
            return net
        self._bridge_error = ""
        net.kernel = _kernel_of(made)
        self._set_kernel(net.id, net.kernel)
        return net

    async def _kernel(self, net: NetRecord) -> dict[str, Any]:
        if net.kernel is None and net.default_bridge:
            net = await self._ensure_default_bridge()
            if net.kernel is None:
                raise Unavailable(f"the default bridge network is not available: "
                                  f"{self._bridge_error}")
        if net.kernel is None:
            raise Unavailable(f"network {net.name} has no driver network")
        return net.kernel

    # ------------------------------------------------------------------ lookups
    def lookup(self, ref: str) -> NetRecord:
        """A network by full ID, name, or unique ID prefix.  ``NotFound``: ``network x not
        found``; ``InvalidArgument`` for an ambiguous prefix."""
        if not isinstance(ref, str) or not ref:
            raise NotFound(f"network {ref} not found")
        net = self._net(ref) or self._net_named(ref)
        if net is not None:
            return net
        if re.fullmatch(r"[0-9a-f]{1,63}", ref):
            rows = self.db.execute("SELECT * FROM networks WHERE id LIKE ?",
                                   (ref + "%",)).fetchall()
            if len(rows) == 1:
                return _net_row(rows[0])
            if len(rows) > 1:
                raise InvalidArgument(f"network {ref} is ambiguous ({len(rows)} matches found "
                                      "based on ID prefix)")
        raise NotFound(f"network {ref} not found")

    def _row_network(self, ep: EndpointRow) -> NetRecord:
        """The network of a recorded endpoint: by ID, else by the name it was asked by."""
        net = self._net(ep.network_id)
        if net is None:
            net = self._net_named(ep.network_name)
        if net is None:
            raise NotFound(f"network {ep.network_name} not found")
        return net

    async def _container(self, ref: str) -> tuple[str, int, bool]:
        if self.container_lookup is None:
            raise Unavailable("containers cannot be looked up by the network manager "
                              "(container_lookup is not set)")
        result = self.container_lookup(ref)
        if inspect.isawaitable(result):
            result = await result
        cid, pid, running = result
        return cid, int(pid or 0), bool(running)

    # ------------------------------------------------------------------ validation
    def _check_endpoint_config(self, net: NetRecord, cfg: Any) -> dict[str, Any]:
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
        if ipam.get("IPv6Address"):
            raise InvalidArgument(f"invalid IPv6 address {ipam['IPv6Address']}: network "
                                  f"{net.name} does not have IPv6 enabled")
        if address:
            out["IPAMConfig"] = {"IPv4Address": address}
        aliases = _str_list(cfg.get("Aliases"), "Aliases")
        if aliases:
            if not net.user_defined:
                raise InvalidArgument("network-scoped alias is supported only for containers in "
                                      "user defined networks")
            out["Aliases"] = list(dict.fromkeys(aliases))
        links = _str_list(cfg.get("Links"), "Links")
        if links:
            out["Links"] = links
        mac = cfg.get("MacAddress") or ""
        if mac:
            out["MacAddress"] = EndpointRequest(mac=mac).mac  # InvalidArgument if malformed
        driver_opts = _str_map(cfg.get("DriverOpts"), "DriverOpts")
        if driver_opts:
            out["DriverOpts"] = driver_opts
        return out

    def _request(self, hc: dict[str, Any], exposed: Iterable[str]) -> dict[str, Any]:
        """The parts of a HostConfig networking needs, validated."""
        exposed = list(exposed)
        bindings = parse_port_bindings(hc.get("PortBindings"), bool(hc.get("PublishAllPorts")),
                                       exposed)
        del bindings  # validation only: they are parsed again at attach
        extra = [parse_extra_host(e) for e in _str_list(hc.get("ExtraHosts"), "ExtraHosts")]
        dns_servers = [_dns_server(d) for d in _str_list(hc.get("Dns"), "Dns")]
        return {
            "PortBindings": hc.get("PortBindings") or {},
            "PublishAllPorts": bool(hc.get("PublishAllPorts")),
            "ExposedPorts": _exposed_keys(hc, exposed),
            "ExtraHosts": [f"{h}:{ip}" for h, ip in extra],
            "Dns": dns_servers,
            "DnsSearch": _str_list(hc.get("DnsSearch"), "DnsSearch"),
            "DnsOptions": _str_list(hc.get("DnsOptions"), "DnsOptions"),
        }

    # ------------------------------------------------------------------ containers: prepare
    async def check(self, container_id: str, host_config: dict[str, Any] | None,
                    networking_config: dict[str, Any] | None, *,
                    exposed_ports: Iterable[str] | dict[str, Any] | None = None) -> None:
        """``create``: check a new container's networking request and record it (nothing is
        made on the host).  Same arguments and errors as :meth:`prepare`, except that a
        ``container:<name>`` target only has to exist (it must run at start)."""
        await self._prepare(container_id, host_config, networking_config, exposed_ports,
                            make=False)

    async def prepare(self, container_id: str, host_config: dict[str, Any] | None,
                      networking_config: dict[str, Any] | None, *,
                      exposed_ports: Iterable[str] | dict[str, Any] | None = None) -> str | None:
        """``start``, before ``executor.create``: make the container's sandbox (a fresh network
        namespace) and return its path, which the executor must put the container in (the OCI
        spec's ``network`` namespace ``path``); ``None`` means the host's namespace
        (``--network host``).  ``container:<name>`` returns that container's namespace.

        ``host_config`` is docker's HostConfig (``NetworkMode``, ``PortBindings``,
        ``PublishAllPorts``, ``Dns``, ``DnsSearch``, ``DnsOptions``, ``ExtraHosts``);
        ``networking_config`` docker's NetworkingConfig (``EndpointsConfig``: per network
        ``Aliases``, ``IPAMConfig.IPv4Address``, ``MacAddress``); ``exposed_ports`` the
        container's ``Config.ExposedPorts`` (for ``PublishAllPorts`` and inspect's ``Ports``).

        The first call of :meth:`check` or :meth:`prepare` for a container records the request;
        later calls use the record (as ``network connect``/``disconnect`` changed it).  The
        sandbox of a container that is not attached is replaced by a fresh one; an attached
        container keeps its own (its path is returned).

        Errors: ``NotFound`` (``network x not found``, an unknown ``container:`` target),
        ``InvalidArgument`` (``--ip`` without a user subnet, ports, ``--add-host``, ``--dns``,
        aliases on the default bridge), ``Conflict`` (``container:`` target not running),
        ``Unavailable`` (the default bridge could not be made), ``CoreError`` (the namespace
        could not be made).
        """
        return await self._prepare(container_id, host_config, networking_config, exposed_ports,
                                   make=True)

    async def _prepare(self, container_id: str, host_config: dict[str, Any] | None,
                       networking_config: dict[str, Any] | None,
                       exposed_ports: Iterable[str] | dict[str, Any] | None,
                       make: bool) -> str | None:
        await self.start()
        hc = dict(host_config or {})
        mode = hc.get("NetworkMode") or "default"
        if not isinstance(mode, str):
            raise InvalidArgument("invalid NetworkMode: expected a string")
        if mode == "default":
            mode = "bridge"
        if isinstance(exposed_ports, dict):
            exposed_ports = list(exposed_ports)
        request = self._request(hc, exposed_ports or ())
        endpoints_config = (networking_config or {}).get("EndpointsConfig") or {}
        if not isinstance(endpoints_config, dict):
            raise InvalidArgument("invalid NetworkingConfig.EndpointsConfig: expected an object")

        async with self._lock:
            existing = self._sandbox(container_id)
            if existing is not None and existing.attached:
                if not make:
                    return None
                if existing.mode.startswith("container:"):
                    return await self._joined_path(existing.mode.split(":", 1)[1])
                return existing.netns or None
            if mode.startswith("container:"):
                return await self._prepare_joined(container_id, mode.split(":", 1)[1], hc,
                                                  request, existing, make)
            if existing is not None and self._endpoints_of(container_id):
                wanted = self._endpoints_of(container_id)  # recorded: connect/disconnect count
                for ep in wanted:
                    self._row_network(ep)  # network x not found
            else:
                wanted = self._plan(container_id, mode, endpoints_config)
            first = self._row_network(wanted[0]) if wanted else None
            kind = "host" if first is not None and first.driver == "host" else \
                "none" if first is not None and first.driver == "null" else "networks"
            if kind == "networks" and make:
                for ep in wanted:
                    await self._kernel(self._row_network(ep))
            if existing is not None and existing.mode == kind:
                request = existing.request  # recorded by the first call
            sb = Sandbox(container_id=container_id, mode=kind, request=request,
                         sandbox_id=existing.sandbox_id if existing else secrets.token_hex(32),
                         netns="" if kind == "host" else self.sandbox_path(container_id),
                         name=existing.name if existing else "",
                         hostname=existing.hostname if existing else "", pid=0, attached=False,
                         ports={})
            with self._transaction():
                self._save_sandbox(sb)
                for ep in wanted:
                    self._save_endpoint(ep)
            if kind == "host" or not make:
                return None
            path = sb.netns

            def fresh() -> None:
                netns.delete(path)
                netns.create(path)

            try:
                await trio.to_thread.run_sync(fresh)
            except OSError as exc:
                raise CoreError(f"cannot create the network namespace {path}: {exc}") from exc
            return path

    def _plan(self, container_id: str, mode: str,
              endpoints_config: dict[str, Any]) -> list[EndpointRow]:
        """The endpoints a new container asks for: its NetworkMode network first, then the
        other networks of EndpointsConfig, in order."""
        primary = self.lookup(mode)
        nets = [(primary, endpoints_config.get(mode) or endpoints_config.get(primary.name)
                 or endpoints_config.get(primary.id) or endpoints_config.get("default"), mode)]
        for key, cfg in endpoints_config.items():
            # the docker CLI names the default network "default" (the bridge, on Linux)
            net = self.lookup("bridge" if key == "default" else key)
            if net.id == primary.id:
                continue
            if any(n.id == net.id for n, _c, _k in nets):
                continue
            nets.append((net, cfg, key))
        drivers = {n.driver for n, _c, _k in nets}
        if len(nets) > 1 and "host" in drivers:
            raise InvalidArgument(HOST_NET_ERROR)
        if len(nets) > 1 and "null" in drivers:
            raise InvalidArgument(NONE_NET_ERROR)
        rows = []
        for position, (net, cfg, _key) in enumerate(nets):
            checked = self._check_endpoint_config(net, cfg)
            rows.append(EndpointRow(container_id=container_id, network_id=net.id,
                                    network_name=net.name, position=position, config=checked,
                                    endpoint_id="", state=None))
        return rows

    async def _prepare_joined(self, container_id: str, ref: str, hc: dict[str, Any],
                              request: dict[str, Any], existing: Sandbox | None,
                              make: bool) -> str | None:
        if hc.get("PortBindings") or hc.get("PublishAllPorts"):
            raise InvalidArgument("conflicting options: port publishing and the container type "
                                  "network mode")
        if hc.get("Dns"):
            raise InvalidArgument("conflicting options: dns and the network mode")
        if hc.get("ExtraHosts"):
            raise InvalidArgument("conflicting options: custom host-to-IP mapping and the "
                                  "network mode")
        other, _pid, _running = await self._container(ref)
        if other == container_id:
            raise InvalidArgument("cannot join own network")
        path = await self._joined_path(other) if make else None
        sb = Sandbox(container_id=container_id, mode=f"container:{other}", request=request,
                     sandbox_id="", netns="", name=existing.name if existing else "",
                     hostname=existing.hostname if existing else "", pid=0, attached=False,
                     ports={})
        with self._transaction() as db:
            db.execute("DELETE FROM network_endpoints WHERE container_id=?", (container_id,))
            self._save_sandbox(sb)
        return path

    async def _joined_path(self, other_id: str) -> str | None:
        cid, pid, running = await self._container(other_id)
        if not running:
            raise Conflict(f"cannot join network of a non running container: {cid}")
        other = self._sandbox(cid)
        if other is not None:
            if other.mode == "host":
                return None
            if other.mode.startswith("container:"):
                return await self._joined_path(other.mode.split(":", 1)[1])
            if other.netns and netns.exists(other.netns):
                return other.netns
        return f"/proc/{pid}/ns/net"

    # ------------------------------------------------------------------ containers: attach
    async def attach(self, container_id: str, name: str, hostname: str, pid: int) -> dict[str, Any]:
        """Connect a prepared container whose process exists (after ``executor.create``,
        before ``executor.start``) to its networks; return what the container code needs.

        Creates one endpoint per recorded network in the sandbox (``eth0``, ``eth1``...),
        publishes the ports (``PortBindings``, ``PublishAllPorts``) on the first non-internal
        network, and starts the container's DNS server when it is on a user-defined network.
        Nothing is written into the container.  Returns::

            {"NetworkSettings": settings(container_id),   # docker inspect's NetworkSettings
             "HostsFile": hosts_file(container_id),       # contents of its /etc/hosts
             "ResolvConf": resolv_conf(container_id)}     # contents of its /etc/resolv.conf

        On failure nothing of it is left (endpoints, ports, DNS): ``Conflict`` (an address or
        host port in use: docker's ``driver failed programming external connectivity ...``),
        ``NotFound`` (a network removed meanwhile), ``Unavailable``.  Calling it again for an
        attached container returns the same without changing anything.
        """
        await self.start()
        name = (name or "").lstrip("/")
        async with self._lock:
            sb = self._sandbox(container_id)
            if sb is None:
                raise CoreError(f"container {container_id} has no network sandbox: "
                                "prepare() was not called")
            if sb.attached:
                return self._attach_result(container_id)
            sb.name, sb.hostname, sb.pid = name, hostname or container_id[:12], int(pid or 0)
            if sb.mode == "networks":
                await self._join_all(sb)
            elif sb.mode in ("host", "none"):
                for ep in self._endpoints_of(container_id):
                    ep.endpoint_id = secrets.token_hex(32)
                    self._save_endpoint(ep)
            sb.attached = True
            self._save_sandbox(sb)
            self._reindex()
            for ep in self._endpoints_of(container_id):
                net = self._net(ep.network_id)
                if net is not None:
                    self._emit("connect", net, {"container": container_id})
            return self._attach_result(container_id)

    def _attach_result(self, container_id: str) -> dict[str, Any]:
        return {"NetworkSettings": self.settings(container_id),
                "HostsFile": self.hosts_file(container_id),
                "ResolvConf": self.resolv_conf(container_id)}

    def _join_path(self, sb: Sandbox) -> str:
        """Where endpoints go: the sandbox — or the process's own namespace if the executor did
        not put it in the sandbox (a wiring mistake, logged)."""
        proc = f"/proc/{sb.pid}/ns/net" if sb.pid else ""
        if proc and os.path.exists(proc) and netns.same_namespace(proc, "/proc/self/ns/net"):
            # never put a container's interfaces in the host's namespace
            raise CoreError(f"container {sb.container_id} is in the host's network namespace, "
                            f"not in its sandbox {sb.netns or '(none)'}")
        if sb.netns and netns.exists(sb.netns):
            if proc and os.path.exists(proc) and not netns.same_namespace(sb.netns, proc):
                log.warning("container %s is not in its sandbox %s: using %s", sb.container_id,
                            sb.netns, proc)
                return proc
            return sb.netns
        if proc and os.path.exists(proc):
            return proc
        raise CoreError(f"container {sb.container_id} has no network namespace")

    async def _join_all(self, sb: Sandbox) -> None:
        path = self._join_path(sb)
        joined: list[tuple[NetRecord, EndpointRow]] = []
        try:
            for index, ep in enumerate(self._endpoints_of(sb.container_id)):
                net = self._row_network(ep)
                await self._join_one(sb, net, ep, path, index)
                joined.append((net, ep))
            ports = await self._publish(sb, joined)
            sb.ports = ports
            if any(net.user_defined for net, _ep in joined):
                await self._start_dns(sb.container_id, path)
        except BaseException:
            with trio.CancelScope(shield=True):
                await self._stop_dns(sb.container_id)
                for net, ep in joined:
                    await self._leave_one(net, ep)
            raise

    async def _join_one(self, sb: Sandbox, net: NetRecord, ep: EndpointRow, path: str,
                        index: int) -> None:
        """One endpoint.  The first non-internal network gives the default route (docker's
        gateway endpoint): the driver routes every non-internal join by default, so around
        later joins the existing route is set aside and put back."""
        gateway_ep = None
        if not net.internal:
            gateway_ep = next((e for e in self._endpoints_of(sb.container_id)
                               if e.endpoint_id and e.state and e.state.get("gateway")), None)
        if gateway_ep is None:
            await self._join_driver(sb, net, ep, path, index)
            return
        keep = (gateway_ep.state["gateway"], gateway_ep.state["interface"])  # type: ignore[index]
        await trio.to_thread.run_sync(_default_route, path, None, None)
        try:
            await self._join_driver(sb, net, ep, path, index)
        finally:
            with trio.CancelScope(shield=True):
                await trio.to_thread.run_sync(_default_route, path, *keep)

    async def _join_driver(self, sb: Sandbox, net: NetRecord, ep: EndpointRow, path: str,
                           index: int) -> None:
        await self._kernel(net)
        address = (ep.config.get("IPAMConfig") or {}).get("IPv4Address") or None
        taken = {(e.state or {}).get("interface") for e in self._endpoints_of(sb.container_id)
                 if e.endpoint_id}
        ifname = f"eth{index}"
        while ifname in taken:
            index += 1
            ifname = f"eth{index}"
        request = EndpointRequest(address=address, mac=ep.config.get("MacAddress") or None,
                                  interface_name=ifname)
        endpoint_id = secrets.token_hex(32)
        driver = self._driver(net.driver)
        made = await driver.join(net.id, endpoint_id, path, request)
        try:
            with self._transaction():
                if ep.network_id != net.id:  # the network was made again under the same name
                    self._delete_endpoint(ep.container_id, ep.network_id)
                ep.network_id = net.id
                ep.endpoint_id = endpoint_id
                ep.state = {"address": str(made.address.ip),
                            "prefixlen": made.address.network.prefixlen,
                            "gateway": str(made.gateway) if made.gateway else "",
                            "mac": made.mac, "interface": made.interface_name}
                self._save_endpoint(ep)
        except BaseException:
            with trio.CancelScope(shield=True):
                ep.endpoint_id, ep.state = "", None
                try:
                    await driver.leave(net.id, endpoint_id)
                except CoreError:
                    pass
            raise

    async def _leave_one(self, net: NetRecord | None, ep: EndpointRow) -> None:
        """Undo one endpoint (errors logged: this runs on cleanup paths)."""
        if ep.endpoint_id and net is not None and net.has_driver:
            try:
                await self._driver(net.driver).leave(net.id, ep.endpoint_id)
            except NotFound:
                pass
            except CoreError as exc:
                log.warning("container %s: leaving network %s: %s", ep.container_id, net.name, exc)
        ep.endpoint_id = ""
        ep.state = None
        self._save_endpoint(ep)

    async def _publish(self, sb: Sandbox, joined: list[tuple[NetRecord, EndpointRow]]
                       ) -> dict[str, Any]:
        """Publish the container's ports on its first non-internal network; the PortMap."""
        request = sb.request
        bindings = parse_port_bindings(request.get("PortBindings"),
                                       bool(request.get("PublishAllPorts")),
                                       request.get("ExposedPorts") or ())
        portmap: dict[str, Any] = {key: None for key in request.get("ExposedPorts") or ()}
        if not bindings:
            return portmap
        gateway = next(((n, e) for n, e in joined if not n.internal), None)
        if gateway is None:
            log.info("container %s: ports not published: no external network", sb.container_id)
            return portmap
        net, ep = gateway
        try:
            published = await self._driver(net.driver).publish(net.id, ep.endpoint_id, bindings)
        except Conflict as exc:
            raise Conflict(f"driver failed programming external connectivity on endpoint "
                           f"{sb.name} ({ep.endpoint_id}): {exc}") from None
        for b in published:
            key = f"{b.container_port}/{b.protocol.value}"
            portmap.setdefault(key, None)
            portmap[key] = (portmap[key] or []) + [{"HostIp": str(b.host_ip),
                                                     "HostPort": str(b.host_port)}]
        return portmap

    # ------------------------------------------------------------------ containers: detach
    async def detach(self, container_id: str) -> None:
        """Take a container off every network: endpoints, publications, its DNS server and its
        sandbox go.  The recorded request stays (for the next start).  Idempotent; safe for a
        container that died while the daemon was down, or that was never attached."""
        await self.start()
        with trio.CancelScope(shield=True):
            async with self._lock:
                await self._detach_locked(container_id)

    async def _detach_locked(self, container_id: str) -> None:
        sb = self._sandbox(container_id)
        await self._stop_dns(container_id)
        for ep in self._endpoints_of(container_id):
            if not ep.endpoint_id:
                continue
            net = self._net(ep.network_id)
            await self._leave_one(net, ep)
            if net is not None:
                self._emit("disconnect", net, {"container": container_id})
        if sb is None:
            self._reindex()
            return
        if sb.netns:
            try:
                await trio.to_thread.run_sync(netns.delete, sb.netns)
            except OSError as exc:
                log.warning("container %s: removing its network namespace %s: %s",
                            container_id, sb.netns, exc)
        if sb.attached or sb.pid or sb.ports:
            sb.attached, sb.pid, sb.ports = False, 0, {}
            self._save_sandbox(sb)
        self._reindex()

    async def forget(self, container_id: str) -> None:
        """``docker rm``: :meth:`detach`, then drop everything recorded about the container."""
        await self.detach(container_id)
        with self._transaction() as db:
            db.execute("DELETE FROM network_endpoints WHERE container_id=?", (container_id,))
            db.execute("DELETE FROM network_sandboxes WHERE container_id=?", (container_id,))

    # ------------------------------------------------------------------ daemon start
    async def restore(self, running: Iterable[tuple[str, int]]) -> None:
        """At daemon start, with the containers still running (``(id, pid)``): their sandboxes,
        endpoints and ports survived in the kernel; their DNS servers are opened again.  Every
        other container that was attached (it died while the daemon was down) is detached."""
        await self.start()
        alive = {cid: int(pid or 0) for cid, pid in running}
        async with self._lock:
            for sb in self._sandboxes():
                if sb.container_id in alive and sb.attached:
                    if alive[sb.container_id] and alive[sb.container_id] != sb.pid:
                        sb.pid = alive[sb.container_id]
                        self._save_sandbox(sb)
                    continue
                if sb.container_id not in alive and (
                        sb.attached or (sb.netns and os.path.lexists(sb.netns))):
                    with trio.CancelScope(shield=True):
                        await self._detach_locked(sb.container_id)
            self._reindex()
            for sb in self._sandboxes():
                if sb.attached and sb.container_id in alive and sb.mode == "networks" and \
                        self._dns_networks.get(sb.container_id):
                    try:
                        await self._start_dns(sb.container_id, self._join_path(sb))
                    except (CoreError, OSError) as exc:
                        log.error("container %s: cannot reopen its DNS server: %s",
                                  sb.container_id, exc)

    async def close(self) -> None:
        """Stop the DNS servers (containers, endpoints and ports stay for the next daemon)."""
        for cid in list(self._servers):
            await self._stop_dns(cid)

    # ------------------------------------------------------------------ DNS servers
    async def _start_dns(self, container_id: str, path: str) -> None:
        if container_id in self._servers:
            return
        nursery = self.nursery or getattr(self.daemon, "nursery", None)
        if nursery is None:
            raise CoreError("the network manager has no nursery to run DNS servers in")
        server = dns.EmbeddedDNS(path, _ContainerAnswerer(self, container_id),
                                 timeout=self.dns_timeout)
        try:
            await nursery.start(server.run)
        except OSError as exc:
            raise CoreError(f"cannot start the DNS server of container {container_id} on "
                            f"{dns.DNS_ADDRESS}:{dns.DNS_PORT}: {exc}") from exc
        self._servers[container_id] = server

    async def _stop_dns(self, container_id: str) -> None:
        server = self._servers.pop(container_id, None)
        if server is not None:
            server.stop()
            with trio.move_on_after(5):
                await server.done.wait()

    def _reindex(self) -> None:
        """Rebuild the DNS index: who is attached where, under which names."""
        nets = {n.id: n for n in self._networks()}
        sandboxes = {s.container_id: s for s in self._sandboxes()}
        dns_networks: dict[str, list[str]] = {}
        members: dict[str, list[_Member]] = {}
        forwards: dict[str, list[str] | None] = {}
        external: set[str] = set()
        rows = [_endpoint_row(r) for r in self.db.execute(
            "SELECT * FROM network_endpoints WHERE endpoint_id != '' ORDER BY container_id, "
            "position")]
        for ep in rows:
            net = nets.get(ep.network_id)
            sb = sandboxes.get(ep.container_id)
            if net is None or sb is None or not net.user_defined or not ep.state:
                continue
            dns_networks.setdefault(ep.container_id, []).append(net.id)
            members.setdefault(net.id, []).append(_Member(
                container_id=ep.container_id, container_name=sb.name,
                names={n.lower() for n in self._dns_names(sb, ep)},
                address=ep.state["address"]))
            if not net.internal:
                external.add(ep.container_id)
            forwards[ep.container_id] = sb.request.get("Dns") or None
        self._dns_networks = dns_networks
        self._members = members
        self._network_names = {n.id: n.name for n in nets.values()}
        self._forwards = {cid: f for cid, f in forwards.items() if cid in external}

    @staticmethod
    def _dns_names(sb: Sandbox, ep: EndpointRow) -> list[str]:
        """Docker's DNSNames: the container name, its aliases, short ID and hostname."""
        names = [sb.name] + list(ep.config.get("Aliases") or []) + [sb.container_id[:12]]
        if sb.hostname:
            names.append(sb.hostname)
        return [n for n in dict.fromkeys(names) if n]

    def resolve(self, container_id: str, name: str) -> list[str] | None:
        """Addresses of ``name`` for the container asking: the first of its user-defined
        networks (in interface order) with a container of that name, short ID or alias
        (``name`` or ``name.<network>``).  None if none has it."""
        name = name.lower().rstrip(".")
        for network_id in self._dns_networks.get(container_id, []):
            suffix = "." + self._network_names.get(network_id, "").lower()
            short = name[:-len(suffix)] if name.endswith(suffix) else None
            found = [m.address for m in self._members.get(network_id, [])
                     if name in m.names or (short is not None and short in m.names)]
            if found:
                return found
        return None

    def reverse(self, container_id: str, address: str) -> str | None:
        """The name of an address on one of the asker's user-defined networks
        (``<container>.<network>``)."""
        for network_id in self._dns_networks.get(container_id, []):
            for m in self._members.get(network_id, []):
                if m.address == address:
                    return f"{m.container_name}.{self._network_names.get(network_id, '')}"
        return None

    def upstreams(self, container_id: str) -> list[tuple[str, int]]:
        """Where the container's DNS server forwards: ``--dns`` servers, else the host's
        resolvers (loopback ones too: forwarding happens in the host's namespace, as docker
        26 does it), else docker's fallbacks; none when all its networks are internal."""
        if container_id not in self._forwards:
            return []
        if self.dns_upstreams is not None:
            return list(self.dns_upstreams)
        servers = self._forwards[container_id] or self._host_nameservers()
        return [(s, dns.DNS_PORT) for s in (servers or FALLBACK_NAMESERVERS)]

    def _host_nameservers(self) -> list[str]:
        try:
            st = os.stat(self.resolv_conf_path)
            key = (st.st_mtime, st.st_size)
            if self._resolv_cache is None or self._resolv_cache[:2] != key:
                with open(self.resolv_conf_path) as f:
                    self._resolv_cache = (*key, resolv_parts(f.read())[0])
            return [s.split("%")[0] for s in self._resolv_cache[2]]
        except OSError:
            return []

    # ------------------------------------------------------------------ what containers see
    def settings(self, container_id: str) -> dict[str, Any]:
        """docker inspect's ``NetworkSettings`` of the container (live: connect/disconnect show)."""
        sb = self._sandbox(container_id)
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
        for ep in self._endpoints_of(container_id):
            net = self._net(ep.network_id) or self._net_named(ep.network_name)
            settings = self._endpoint_settings(sb, ep, net)
            out["Networks"][net.name if net else ep.network_name] = settings
            if net is not None and net.default_bridge and ep.endpoint_id:
                for key in ("EndpointID", "Gateway", "IPAddress", "IPPrefixLen", "MacAddress"):
                    out[key] = settings[key]
        return out

    def _endpoint_settings(self, sb: Sandbox, ep: EndpointRow, net: NetRecord | None
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
            "IPv6Gateway": "", "GlobalIPv6Address": "", "GlobalIPv6PrefixLen": 0,
            "DNSNames": self._dns_names(sb, ep) if user and ep.endpoint_id else None,
        }

    def ps_ports(self, container_id: str) -> list[dict[str, Any]]:
        """``docker ps``'s ``Ports`` of the container (``[{"IP", "PrivatePort", "PublicPort",
        "Type"}]``; exposed ports that are not published have no IP and PublicPort)."""
        sb = self._sandbox(container_id)
        if sb is None or not sb.attached:
            return []
        out: list[dict[str, Any]] = []
        for key, bindings in sb.ports.items():
            port, _, proto = key.partition("/")
            if not bindings:
                out.append({"PrivatePort": int(port), "Type": proto})
            for b in bindings or []:
                out.append({"IP": b["HostIp"], "PrivatePort": int(port),
                            "PublicPort": int(b["HostPort"]), "Type": proto})
        return out

    def _host_gateway(self) -> str:
        net = self._net_named("bridge")
        if net is None or net.kernel is None:
            raise InvalidArgument("unable to derive the IP value for host-gateway: the default "
                                  "bridge network is not available")
        return net.kernel["gateway"]

    def hosts_file(self, container_id: str, *, domainname: str = "") -> str:
        """The contents of the container's ``/etc/hosts``: localhost lines (the host's file for
        ``--network host``), ``--add-host`` entries, its addresses with its hostname.  A
        ``container:<x>`` container gets x's."""
        sb = self._sandbox(container_id)
        if sb is None:
            return HOSTS_DEFAULT
        if sb.mode.startswith("container:"):
            return self.hosts_file(sb.mode.split(":", 1)[1], domainname=domainname)
        extra = []
        for entry in sb.request.get("ExtraHosts") or []:
            host, ip = parse_extra_host(entry)
            extra.append((host, self._host_gateway() if ip == "host-gateway" else ip))
        if sb.mode == "host":
            try:
                base = Path(self.hosts_path).read_text()
            except OSError:
                base = HOSTS_DEFAULT
            return build_hosts(base=base, extra_hosts=extra)
        addresses = [ep.state["address"] for ep in self._endpoints_of(container_id)
                     if ep.endpoint_id and ep.state]
        return build_hosts(hostname=sb.hostname or container_id[:12], addresses=addresses,
                           domainname=domainname, extra_hosts=extra)

    def resolv_conf(self, container_id: str) -> str:
        """The contents of the container's ``/etc/resolv.conf``: ``nameserver 127.0.0.11`` and
        ``options ndots:0`` on user-defined networks (its DNS server forwards to ``--dns`` or
        the host's resolvers); on the default bridge and ``none`` the host's resolvers without
        loopback ones (``--dns`` wins); the host's for ``--network host``."""
        sb = self._sandbox(container_id)
        try:
            host_text = Path(self.resolv_conf_path).read_text()
        except OSError:
            host_text = ""
        if sb is None:
            return build_resolv_conf(host_text, internal_resolver=False,
                                     source=self.resolv_conf_path)
        if sb.mode.startswith("container:"):
            return self.resolv_conf(sb.mode.split(":", 1)[1])
        internal = False
        if sb.mode == "networks":
            for ep in self._endpoints_of(container_id):
                net = self._net(ep.network_id)
                if net is not None and net.user_defined:
                    internal = True
                    break
        request = sb.request
        return build_resolv_conf(host_text, internal_resolver=internal,
                                 dns_servers=request.get("Dns") or (),
                                 dns_search=request.get("DnsSearch") or (),
                                 dns_options=request.get("DnsOptions") or (),
                                 host_network=sb.mode == "host", source=self.resolv_conf_path)

    # ------------------------------------------------------------------ network connect
    async def connect(self, network_ref: str, container_ref: str,
                      endpoint_config: dict[str, Any] | None = None) -> None:
        """``docker network connect``: a running container gets the endpoint at once (the
        next free ``eth<n>``, its DNS server if it had none); a stopped one at its next start.
        ``Forbidden``: ``endpoint with name x already exists in network y``, host/none/shared
        namespaces.  ``NotFound``: the network or the container."""
        await self.start()
        net = self.lookup(network_ref)
        cid, _pid, running = await self._container(container_ref)
        async with self._lock:
            sb = self._sandbox(cid)
            if sb is None:
                raise Conflict(f"container {cid} has no network configuration: it was created "
                               "before networking was available; recreate it")
            if sb.mode == "host" or net.driver == "host":
                raise Forbidden(HOST_NET_ERROR)
            if sb.mode.startswith("container:"):
                raise Forbidden(SHARED_NET_ERROR)
            if sb.mode == "none" or net.driver == "null":
                raise Forbidden(NONE_NET_ERROR)
            rows = self._endpoints_of(cid)
            if any(e.network_id == net.id for e in rows):
                raise Forbidden(f"endpoint with name {sb.name or cid[:12]} already exists in "
                                f"network {net.name}")
            checked = self._check_endpoint_config(net, endpoint_config)
            ep = EndpointRow(container_id=cid, network_id=net.id, network_name=net.name,
                             position=max((e.position for e in rows), default=-1) + 1,
                             config=checked, endpoint_id="", state=None)
            if not (running and sb.attached):
                self._save_endpoint(ep)
                return
            path = self._join_path(sb)
            try:
                await self._join_one(sb, net, ep, path, len(rows))
                if net.user_defined:
                    self._reindex()
                    await self._start_dns(cid, path)
            except BaseException:
                with trio.CancelScope(shield=True):
                    await self._leave_one(net, ep)
                    self._delete_endpoint(cid, net.id)
                    self._reindex()
                raise
            self._reindex()
        self._emit("connect", net, {"container": cid})
        await self._changed(cid)

    async def disconnect(self, network_ref: str, container_ref: str, force: bool = False) -> None:
        """``docker network disconnect``.  ``Forbidden``: ``container x is not connected to
        network y``; the host network.  With ``force``, a container that no longer exists is
        taken off the network by name."""
        await self.start()
        net = self.lookup(network_ref)
        try:
            cid, _pid, _running = await self._container(container_ref)
        except NotFound:
            if not force:
                raise
            await self._force_disconnect(net, container_ref)
            return
        async with self._lock:
            sb = self._sandbox(cid)
            if net.driver == "host" or (sb is not None and sb.mode == "host"):
                raise Forbidden(HOST_NET_ERROR)
            ep = next((e for e in self._endpoints_of(cid) if e.network_id == net.id), None)
            if ep is None:
                raise Forbidden(f"container {cid} is not connected to network {net.name}")
            with trio.CancelScope(shield=True):
                was_attached = bool(ep.endpoint_id)
                gave_route = bool(was_attached and ep.state and ep.state.get("gateway"))
                await self._leave_one(net, ep)
                self._delete_endpoint(cid, net.id)
                if gave_route and sb is not None and sb.attached:
                    await self._reroute(sb)
                self._reindex()
                if not self._dns_networks.get(cid):
                    await self._stop_dns(cid)
        if was_attached:
            self._emit("disconnect", net, {"container": cid})
            await self._changed(cid)

    async def _reroute(self, sb: Sandbox) -> None:
        """After the gateway endpoint left: the default route goes via the next network that
        has one (if the first gave it)."""
        attached = [e for e in self._endpoints_of(sb.container_id) if e.endpoint_id and e.state]
        if not attached or not attached[0].state or not attached[0].state.get("gateway"):
            return
        try:
            path = self._join_path(sb)
            await trio.to_thread.run_sync(_default_route, path, attached[0].state["gateway"],
                                          attached[0].state["interface"])
        except (CoreError, OSError) as exc:
            log.warning("container %s: cannot move its default route: %s", sb.container_id, exc)

    async def _force_disconnect(self, net: NetRecord, name: str) -> None:
        async with self._lock:
            for ep in self._endpoints_on(net.id):
                sb = self._sandbox(ep.container_id)
                if sb is not None and (sb.name == name.lstrip("/") or ep.container_id == name):
                    with trio.CancelScope(shield=True):
                        await self._leave_one(net, ep)
                        self._delete_endpoint(ep.container_id, net.id)
                    self._reindex()
                    return
        raise NotFound(f"No such container: {name}")

    async def _changed(self, container_id: str) -> None:
        if self.on_change is None:
            return
        try:
            result = self.on_change(container_id)
            if inspect.isawaitable(result):
                await result
        except Exception:
            log.exception("container %s: on_change after a network change", container_id)

    # ------------------------------------------------------------------ networks (the API)
    def inspect_network(self, ref: str) -> dict[str, Any]:
        """docker network inspect's object (``Containers``: its attached containers)."""
        return self.network_json(self.lookup(ref), containers=True)

    def network_json(self, net: NetRecord, containers: bool = True) -> dict[str, Any]:
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
                if net.default_bridge:
                    options.setdefault(OPT_MTU, str(kernel["mtu"]))
            else:
                config = list(net.ipam.get("Config") or [])
            ipam = {"Driver": net.ipam.get("Driver") or "default",
                    "Options": None if net.predefined else (net.ipam.get("Options") or {}),
                    "Config": config}
        else:
            ipam = {"Driver": "default", "Options": None, "Config": None}
        members: dict[str, Any] = {}
        if containers:
            for ep in self._active_on(net.id):
                sb = self._sandbox(ep.container_id)
                state = ep.state or {}
                members[ep.container_id] = {
                    "Name": sb.name if sb else "",
                    "EndpointID": ep.endpoint_id,
                    "MacAddress": state.get("mac", ""),
                    "IPv4Address": f"{state['address']}/{state['prefixlen']}" if state else "",
                    "IPv6Address": "",
                }
        return {
            "Name": net.name, "Id": net.id, "Created": rfc3339_nano(net.created),
            "Scope": net.scope, "Driver": net.driver, "EnableIPv4": net.has_driver,
            "EnableIPv6": False, "IPAM": ipam, "Internal": net.internal,
            "Attachable": net.attachable, "Ingress": False, "ConfigFrom": {"Network": ""},
            "ConfigOnly": False, "Containers": members, "Options": options,
            "Labels": dict(net.labels),
        }

    def list_networks(self, filters: dict[str, list[str]] | None = None) -> list[dict[str, Any]]:
        """``GET /networks``: filters ``dangling``, ``driver``, ``id``, ``label``, ``name``,
        ``scope``, ``type`` (``custom``/``builtin``), as docker applies them."""
        filters = filters or {}
        known = {"dangling", "driver", "id", "label", "name", "scope", "type"}
        for key in filters:
            if key not in known:
                raise InvalidArgument(f"invalid filter '{key}'")
        for value in filters.get("type", []):
            if value not in ("custom", "builtin"):
                raise InvalidArgument(f"invalid filter: 'type'='{value}'")
        dangling = None
        if "dangling" in filters:
            value = filters["dangling"][-1].lower()
            if value not in ("true", "1", "false", "0"):
                raise InvalidArgument(f"invalid filter 'dangling={filters['dangling'][-1]}'")
            dangling = value in ("true", "1")
        out = []
        for net in self._networks():
            if "driver" in filters and net.driver not in filters["driver"]:
                continue
            if "scope" in filters and net.scope not in filters["scope"]:
                continue
            if "name" in filters and not any(_matches(v, net.name) for v in filters["name"]):
                continue
            if "id" in filters and not any(_matches(v, net.id) for v in filters["id"]):
                continue
            if "label" in filters and not all(_label_match(net.labels, v)
                                              for v in filters["label"]):
                continue
            if "type" in filters:
                kind = "builtin" if net.predefined else "custom"
                if kind not in filters["type"]:
                    continue
            if dangling is not None:
                unused = not net.predefined and not self._active_on(net.id)
                if unused != dangling:
                    continue
            out.append(self.network_json(net, containers=False))
        return out

    async def create_network(self, body: dict[str, Any], default_driver: str = "bridge"
                             ) -> dict[str, str]:
        """``POST /networks/create``; returns ``{"Id", "Warning"}``.  Docker's errors: a taken
        name (``AlreadyExists``), overlapping pools (``Forbidden``), a bad CIDR
        (``InvalidArgument``), an unknown driver (``NotFound``: ``plugin "x" not found``)."""
        await self.start()
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
        if body.get("EnableIPv6"):
            raise InvalidArgument("IPv6 is not supported by the bridge network driver")
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
        configs = [_check_pool(c) for c in configs]
        if len(configs) > 1:
            raise InvalidArgument("the bridge network driver supports one IPv4 subnet per network")
        options = _str_map(body.get("Options"), "Options")
        labels = _str_map(body.get("Labels"), "Labels")
        internal = bool(body.get("Internal"))
        net = NetRecord(id=secrets.token_hex(32), name=name, driver=driver_name, scope="local",
                        created=time.time_ns(), options=options, labels=labels,
                        internal=internal, attachable=bool(body.get("Attachable")),
                        ipam={"Driver": "default", "Options": _str_map(ipam.get("Options"),
                                                                        "IPAM.Options"),
                              "Config": configs}, kernel=None)
        spec = self._spec(net)
        async with self._lock:
            if self._net_named(name) is not None:
                raise AlreadyExists(f"network with name {name} already exists")
            self._insert_net(net)
            try:
                made = await self._driver(driver_name).create_network(net.id, spec)
            except BaseException as exc:
                with trio.CancelScope(shield=True):
                    self._delete_net(net.id)
                if isinstance(exc, Conflict):
                    if "Pool overlaps" in str(exc):
                        raise Forbidden("invalid pool request: Pool overlaps with other one on "
                                        "this address space") from None
                    raise Forbidden(str(exc)) from None
                raise
            net.kernel = _kernel_of(made)
            self._set_kernel(net.id, net.kernel)
        self._emit("create", net)
        return {"Id": net.id, "Warning": ""}

    async def remove_network(self, ref: str) -> NetRecord:
        """``DELETE /networks/{id}``.  ``Forbidden``: pre-defined, or active endpoints."""
        await self.start()
        net = self.lookup(ref)
        if net.predefined:
            raise Forbidden(f"{net.name} is a pre-defined network and cannot be removed")
        async with self._lock:
            active = self._active_on(net.id)
            if active:
                raise Forbidden(f"error while removing network: network {net.name} id {net.id} "
                                "has active endpoints")
            with trio.CancelScope(shield=True):
                try:
                    await self._driver(net.driver).delete_network(net.id)
                except NotFound:
                    pass
                except Conflict:
                    raise Forbidden(f"error while removing network: network {net.name} id "
                                    f"{net.id} has active endpoints") from None
                self._delete_net(net.id)
        self._emit("destroy", net)
        return net

    async def prune(self, filters: dict[str, list[str]] | None = None) -> list[str]:
        """``POST /networks/prune``: user-defined networks without active endpoints (filters
        ``until``, ``label``, ``label!``); returns the names removed."""
        await self.start()
        filters = filters or {}
        for key in filters:
            if key not in ("until", "label", "label!"):
                raise InvalidArgument(f"invalid filter '{key}'")
        until = _until(filters["until"][-1]) if filters.get("until") else None
        removed = []
        for net in self._networks():
            if net.predefined or self._active_on(net.id):
                continue
            if until is not None and net.created >= until:
                continue
            if "label" in filters and not all(_label_match(net.labels, v)
                                              for v in filters["label"]):
                continue
            if "label!" in filters and any(_label_match(net.labels, v)
                                           for v in filters["label!"]):
                continue
            try:
                await self.remove_network(net.id)
            except (Forbidden, NotFound):
                continue
            removed.append(net.name)
        if getattr(self.daemon, "events", None) is not None:
            self.daemon.events.emit("network", "prune", "", {})
        return removed


# =========================================================================== routes
def _default_route(path: str, gateway: str | None, ifname: str | None) -> None:
    """Make the IPv4 default route of the namespace at ``path`` go via ``gateway`` on
    ``ifname`` (``None``: no default route).  Blocking."""

    def work() -> None:
        from pyroute2 import IPRoute
        from pyroute2.netlink.exceptions import NetlinkError

        with IPRoute() as ipr:
            for _ in range(16):
                try:
                    ipr.route("del", dst="0.0.0.0/0")
                except NetlinkError:
                    break
            if gateway is not None and ifname is not None:
                index = ipr.link_lookup(ifname=ifname)
                if index:
                    ipr.route("replace", dst="0.0.0.0/0", gateway=gateway, oif=index[0], proto=3)

    netns.run_in(path, work)


# =========================================================================== API helpers
def _dns_server(value: str) -> str:
    try:
        return str(ipaddress.ip_address(value))
    except ValueError:
        raise InvalidArgument(f"{value} is not an ip address") from None


def _check_pool(config: dict[str, Any]) -> dict[str, Any]:
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
        if isinstance(subnet, ipaddress.IPv6Network):
            raise InvalidArgument("IPv6 is not supported by the bridge network driver "
                                  f"(subnet {subnet_text})")
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
        if subnet is None or not ip_range.subnet_of(subnet):  # type: ignore[arg-type]
            raise InvalidArgument(f"invalid network config:\nno matching subnet for range "
                                  f"{range_text}")
        out["IPRange"] = str(ip_range)
    gateway = config.get("Gateway") or ""
    if gateway:
        try:
            address = ipaddress.ip_address(gateway)
        except ValueError:
            raise InvalidArgument(f"invalid network config:\ninvalid gateway address "
                                  f"{gateway}") from None
        if subnet is None or address not in subnet:
            raise InvalidArgument(f"invalid network config:\nno matching subnet for gateway "
                                  f"{gateway}")
        out["Gateway"] = str(address)
    aux = config.get("AuxiliaryAddresses") or {}
    if aux:
        aux = _str_map(aux, "AuxiliaryAddresses")
        for host, ip in aux.items():
            try:
                address = ipaddress.ip_address(ip)
            except ValueError:
                raise InvalidArgument(f"invalid network config:\ninvalid auxiliary address "
                                      f"{host}={ip}") from None
            if subnet is None or address not in subnet:
                raise InvalidArgument(f"invalid network config:\nno matching subnet for aux-address "
                                      f"{ip}")
        out["AuxiliaryAddresses"] = aux
    return out


def _matches(pattern: str, value: str) -> bool:
    """docker's filters.Match: the value as an unanchored regular expression (or a substring)."""
    try:
        return re.search(pattern, value) is not None
    except re.error:
        return pattern in value


def _label_match(labels: dict[str, str], want: str) -> bool:
    key, sep, value = want.partition("=")
    return key in labels and (not sep or labels[key] == value)


_DURATION = re.compile(r"(\d+(?:\.\d+)?)(ns|us|µs|ms|s|m|h)")
_DURATIONS = re.compile(r"(?:\d+(?:\.\d+)?(?:ns|us|µs|ms|s|m|h))+")
_UNITS = {"ns": 1e-9, "us": 1e-6, "µs": 1e-6, "ms": 1e-3, "s": 1, "m": 60, "h": 3600}


def _until(value: str) -> int:
    """A prune ``until``: Unix time, RFC 3339 date/time, or a Go duration before now → ns."""
    text = value.strip()
    if re.fullmatch(r"\d+(\.\d+)?", text):
        return int(float(text) * 1e9)
    if _DURATIONS.fullmatch(text):
        seconds = sum(float(m.group(1)) * _UNITS[m.group(2)] for m in _DURATION.finditer(text))
        return int((time.time() - seconds) * 1e9)
    from datetime import datetime, timezone

    for fmt in ("%Y-%m-%dT%H:%M:%S.%f%z", "%Y-%m-%dT%H:%M:%S%z", "%Y-%m-%dT%H:%M:%S",
                "%Y-%m-%dT%H:%M", "%Y-%m-%d"):
        try:
            parsed = datetime.strptime(text.replace("Z", "+0000"), fmt)
        except ValueError:
            continue
        if parsed.tzinfo is None:
            parsed = parsed.replace(tzinfo=timezone.utc)
        return int(parsed.timestamp() * 1e9)
    raise InvalidArgument(f"invalid filter 'until={value}'")


__all__ = ["NetworkManager", "NetRecord", "build_hosts", "build_resolv_conf", "parse_extra_host",
           "parse_port_bindings", "rfc3339_nano", "HOSTS_DEFAULT", "PREDEFINED"]
