"""The network service's rows: ``networks``, ``network_sandboxes`` and ``network_endpoints`` of
the state database (:data:`MIGRATION`), as attrs records, and :class:`NetworkStore`, the one
place that reads and writes them.

A *network* row is docker's network (id, name, driver, options, labels, IPAM request) and, once
the driver made it, the driver's values (``kernel``: device, subnet, gateway, MTU).  A
*sandbox* row is what one container asked for (its mode, ports, DNS settings) and where it is
(namespace, pid, attached, published ports).  An *endpoint* row is one network of a container:
the endpoint settings it asked for and, while attached, the driver's endpoint.
"""
from __future__ import annotations

import contextlib
import json
import re
from typing import Any, Iterator

import attrs

from core.contracts.network import Network
from core.engine.state import Migration, State
from core.errors import InvalidArgument, NotFound

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
#: docker's name of the node's bridge network that gives containers on swarm (overlay) networks
#: their way out (see :mod:`core.engine.networks.sandbox`)
GWBRIDGE = "docker_gwbridge"


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

    @property
    def gateway_bridge(self) -> bool:
        """``docker_gwbridge``: its endpoints are no container's network as docker shows them
        (no inspect entry, no DNS names, no /etc/hosts line)."""
        return self.name == GWBRIDGE and self.scope == "local"


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


def kernel_of(net: Network) -> dict[str, Any]:
    """The driver's values of a network, as the ``kernel`` column keeps them."""
    return {"interface": net.interface, "subnet": str(net.subnet), "gateway": str(net.gateway),
            "ip_range": str(net.ip_range) if net.ip_range else None,
            "aux": dict(net.aux_addresses), "internal": net.internal, "mtu": net.mtu,
            "subnet_given": net.subnet_given,
            "subnet6": str(net.subnet6) if getattr(net, "subnet6", None) else None,
            "gateway6": str(net.gateway6) if getattr(net, "gateway6", None) else None,
            "ip_range6": str(net.ip_range6) if getattr(net, "ip_range6", None) else None}


class NetworkStore:
    """The three tables of the network service, over the daemon's :class:`State`.

    Writes go through :meth:`transaction`; a write made inside another one joins it (so that
    a row and its endpoints change together)."""

    def __init__(self, state: State) -> None:
        self.state = state
        self._in_transaction = False

    @property
    def db(self) -> Any:
        return self.state.db

    @contextlib.contextmanager
    def transaction(self) -> Iterator[Any]:
        """The state's transaction; nested uses join the outer one."""
        if self._in_transaction:
            yield self.db
            return
        self._in_transaction = True
        try:
            with self.state.transaction() as db:
                yield db
        finally:
            self._in_transaction = False

    # ------------------------------------------------------------------ networks
    def networks(self) -> list[NetRecord]:
        return [_net_row(r) for r in self.db.execute("SELECT * FROM networks ORDER BY created")]

    def net(self, network_id: str) -> NetRecord | None:
        row = self.db.execute("SELECT * FROM networks WHERE id=?", (network_id,)).fetchone()
        return _net_row(row) if row else None

    def net_named(self, name: str) -> NetRecord | None:
        row = self.db.execute("SELECT * FROM networks WHERE name=?", (name,)).fetchone()
        return _net_row(row) if row else None

    def lookup(self, ref: str) -> NetRecord:
        """A network by full ID, name, or unique ID prefix.  ``NotFound``: ``network x not
        found``; ``InvalidArgument`` for an ambiguous prefix."""
        if not isinstance(ref, str) or not ref:
            raise NotFound(f"network {ref} not found")
        net = self.net(ref) or self.net_named(ref)
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

    def row_network(self, ep: EndpointRow) -> NetRecord:
        """The network of a recorded endpoint: by ID, else by the name it was asked by."""
        net = self.net(ep.network_id)
        if net is None:
            net = self.net_named(ep.network_name)
        if net is None:
            raise NotFound(f"network {ep.network_name} not found")
        return net

    def insert_net(self, net: NetRecord) -> None:
        with self.transaction() as db:
            db.execute("INSERT INTO networks(id, name, driver, scope, created, options, labels, "
                       "internal, attachable, ipam, kernel) VALUES(?,?,?,?,?,?,?,?,?,?,?)",
                       (net.id, net.name, net.driver, net.scope, net.created,
                        json.dumps(net.options), json.dumps(net.labels), int(net.internal),
                        int(net.attachable), json.dumps(net.ipam),
                        json.dumps(net.kernel) if net.kernel is not None else None))

    def set_kernel(self, network_id: str, kernel: dict[str, Any] | None) -> None:
        with self.transaction() as db:
            db.execute("UPDATE networks SET kernel=? WHERE id=?",
                       (json.dumps(kernel) if kernel is not None else None, network_id))

    def set_options(self, network_id: str, options: dict[str, str]) -> None:
        with self.transaction() as db:
            db.execute("UPDATE networks SET options=? WHERE id=?",
                       (json.dumps(options), network_id))

    def delete_net(self, network_id: str) -> None:
        with self.transaction() as db:
            db.execute("DELETE FROM networks WHERE id=?", (network_id,))

    # ------------------------------------------------------------------ sandboxes
    def sandbox(self, container_id: str) -> Sandbox | None:
        row = self.db.execute("SELECT * FROM network_sandboxes WHERE container_id=?",
                              (container_id,)).fetchone()
        return _sandbox_row(row) if row else None

    def sandboxes(self) -> list[Sandbox]:
        return [_sandbox_row(r) for r in self.db.execute("SELECT * FROM network_sandboxes")]

    def save_sandbox(self, sb: Sandbox) -> None:
        with self.transaction() as db:
            db.execute("INSERT OR REPLACE INTO network_sandboxes(container_id, mode, request, "
                       "sandbox_id, netns, name, hostname, pid, attached, ports) "
                       "VALUES(?,?,?,?,?,?,?,?,?,?)",
                       (sb.container_id, sb.mode, json.dumps(sb.request), sb.sandbox_id,
                        sb.netns, sb.name, sb.hostname, sb.pid, int(sb.attached),
                        json.dumps(sb.ports)))

    def forget_container(self, container_id: str) -> None:
        """Drop the sandbox and endpoint rows of a container."""
        with self.transaction() as db:
            db.execute("DELETE FROM network_endpoints WHERE container_id=?", (container_id,))
            db.execute("DELETE FROM network_sandboxes WHERE container_id=?", (container_id,))

    # ------------------------------------------------------------------ endpoints
    def endpoints_of(self, container_id: str) -> list[EndpointRow]:
        return [_endpoint_row(r) for r in self.db.execute(
            "SELECT * FROM network_endpoints WHERE container_id=? ORDER BY position",
            (container_id,))]

    def endpoints_on(self, network_id: str) -> list[EndpointRow]:
        return [_endpoint_row(r) for r in self.db.execute(
            "SELECT * FROM network_endpoints WHERE network_id=? ORDER BY container_id",
            (network_id,))]

    def attached_endpoints(self) -> list[EndpointRow]:
        """Every endpoint that is attached, by container and interface order."""
        return [_endpoint_row(r) for r in self.db.execute(
            "SELECT * FROM network_endpoints WHERE endpoint_id != '' ORDER BY container_id, "
            "position")]

    def active_on(self, network_id: str) -> list[EndpointRow]:
        return [e for e in self.endpoints_on(network_id) if e.endpoint_id]

    def save_endpoint(self, ep: EndpointRow) -> None:
        with self.transaction() as db:
            db.execute("INSERT OR REPLACE INTO network_endpoints(container_id, network_id, "
                       "network_name, position, config, endpoint_id, state) "
                       "VALUES(?,?,?,?,?,?,?)",
                       (ep.container_id, ep.network_id, ep.network_name, ep.position,
                        json.dumps(ep.config), ep.endpoint_id,
                        json.dumps(ep.state) if ep.state is not None else None))

    def delete_endpoint(self, container_id: str, network_id: str) -> None:
        with self.transaction() as db:
            db.execute("DELETE FROM network_endpoints WHERE container_id=? AND network_id=?",
                       (container_id, network_id))

    def delete_endpoints_of(self, container_id: str) -> None:
        with self.transaction() as db:
            db.execute("DELETE FROM network_endpoints WHERE container_id=?", (container_id,))
