"""The bridge driver's persistent state: one SQLite database under the driver's root.

WAL mode, ``synchronous=NORMAL``: a committed change survives the daemon being killed (not a
power cut — after which no container's namespace survives either).  Every change is one
transaction, and the constraints are the IPAM's last line of defence: an address is unique
per network (``UNIQUE(network_id, address)``), a host port per protocol and address.

The kernel objects are made *after* their row is committed and removed *before* it is
deleted, so a daemon killed half-way leaves a row that describes everything that may exist,
and ``leave``/``delete_network`` (which tolerate missing devices and rules) clean it up.
"""
from __future__ import annotations

import ipaddress
import json
from pathlib import Path

import attrs

from core.sqlite import Database

_VERSION = 2  # 2: IPv6 (networks.subnet6/gateway6, endpoints.address6)
_SCHEMA = (
    """CREATE TABLE networks (
        id TEXT PRIMARY KEY, name TEXT NOT NULL, bridge TEXT NOT NULL UNIQUE,
        subnet TEXT NOT NULL, gateway TEXT NOT NULL, ip_range TEXT, aux TEXT NOT NULL,
        internal INTEGER NOT NULL, mtu INTEGER NOT NULL, subnet_given INTEGER NOT NULL,
        icc INTEGER NOT NULL, masquerade INTEGER NOT NULL, options TEXT NOT NULL,
        cursor INTEGER NOT NULL DEFAULT 0, subnet6 TEXT, gateway6 TEXT, ip_range6 TEXT)""",
    """CREATE TABLE endpoints (
        network_id TEXT NOT NULL REFERENCES networks(id), endpoint_id TEXT NOT NULL,
        address TEXT NOT NULL, mac TEXT NOT NULL, host_if TEXT NOT NULL UNIQUE,
        ifname TEXT NOT NULL, netns TEXT NOT NULL, mtu INTEGER NOT NULL, address6 TEXT,
        PRIMARY KEY (network_id, endpoint_id), UNIQUE (network_id, address))""",
    """CREATE TABLE ports (
        protocol TEXT NOT NULL, host_ip TEXT NOT NULL, host_port INTEGER NOT NULL,
        network_id TEXT NOT NULL, endpoint_id TEXT NOT NULL, container_port INTEGER NOT NULL,
        seq INTEGER NOT NULL,
        PRIMARY KEY (protocol, host_ip, host_port),
        FOREIGN KEY (network_id, endpoint_id) REFERENCES endpoints(network_id, endpoint_id))""",
    "CREATE TABLE meta (key TEXT PRIMARY KEY, value TEXT NOT NULL)",
    "CREATE TABLE graveyard (host_if TEXT PRIMARY KEY)",
)


@attrs.define
class NetRecord:
    id: str
    name: str
    bridge: str
    subnet: ipaddress.IPv4Network
    gateway: ipaddress.IPv4Address
    ip_range: ipaddress.IPv4Network | None
    aux: dict[str, str]
    internal: bool
    mtu: int
    subnet_given: bool
    icc: bool
    masquerade: bool
    options: dict[str, str]
    cursor: int = 0
    subnet6: ipaddress.IPv6Network | None = None
    gateway6: ipaddress.IPv6Address | None = None
    ip_range6: ipaddress.IPv6Network | None = None


@attrs.define
class EpRecord:
    network_id: str
    endpoint_id: str
    address: ipaddress.IPv4Address
    mac: str
    host_if: str
    ifname: str
    netns: str
    mtu: int
    address6: ipaddress.IPv6Address | None = None


@attrs.frozen
class PortRecord:
    protocol: str
    host_ip: ipaddress.IPv4Address | ipaddress.IPv6Address
    host_port: int
    network_id: str
    endpoint_id: str
    container_port: int
    seq: int = 0


class Store(Database):
    """Thread-safe; every method is one transaction unless called inside :meth:`transaction`."""

    def __init__(self, path: Path) -> None:
        super().__init__(path, "network database", _VERSION, _SCHEMA)

    def _upgrade(self, found: int, version: int, schema: tuple[str, ...]) -> None:  # type: ignore[override]
        if found == 1:
            for statement in ("ALTER TABLE networks ADD COLUMN subnet6 TEXT",
                              "ALTER TABLE networks ADD COLUMN gateway6 TEXT",
                              "ALTER TABLE networks ADD COLUMN ip_range6 TEXT",
                              "ALTER TABLE endpoints ADD COLUMN address6 TEXT"):
                self._db.execute(statement)
            self._db.execute(f"PRAGMA user_version = {version}")
            return
        super()._upgrade(found, version, schema)

    def _q(self, sql: str, args: tuple = ()) -> list[tuple]:
        with self.transaction():
            return self._db.execute(sql, args).fetchall()

    # ----------------------------------------------------------------------- networks
    @staticmethod
    def _net(row: tuple) -> NetRecord:
        (id_, name, bridge, subnet, gateway, ip_range, aux, internal, mtu, given, icc, masq,
         options, cursor, subnet6, gateway6, ip_range6) = row
        return NetRecord(id_, name, bridge, ipaddress.IPv4Network(subnet),
                         ipaddress.IPv4Address(gateway),
                         ipaddress.IPv4Network(ip_range) if ip_range else None, json.loads(aux),
                         bool(internal), mtu, bool(given), bool(icc), bool(masq),
                         json.loads(options), cursor,
                         ipaddress.IPv6Network(subnet6) if subnet6 else None,
                         ipaddress.IPv6Address(gateway6) if gateway6 else None,
                         ipaddress.IPv6Network(ip_range6) if ip_range6 else None)

    def networks(self) -> list[NetRecord]:
        return [self._net(r) for r in self._q("SELECT * FROM networks ORDER BY rowid")]

    def network(self, network_id: str) -> NetRecord | None:
        rows = self._q("SELECT * FROM networks WHERE id = ?", (network_id,))
        return self._net(rows[0]) if rows else None

    def add_network(self, n: NetRecord) -> None:
        with self.transaction():
            self._db.execute(
                "INSERT INTO networks VALUES (?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,?)",
                (n.id, n.name, n.bridge, str(n.subnet), str(n.gateway),
                 str(n.ip_range) if n.ip_range else None, json.dumps(n.aux), int(n.internal),
                 n.mtu, int(n.subnet_given), int(n.icc), int(n.masquerade),
                 json.dumps(n.options), n.cursor, str(n.subnet6) if n.subnet6 else None,
                 str(n.gateway6) if n.gateway6 else None,
                 str(n.ip_range6) if n.ip_range6 else None))

    def remove_network(self, network_id: str) -> None:
        with self.transaction():
            self._db.execute("DELETE FROM ports WHERE network_id = ?", (network_id,))
            self._db.execute("DELETE FROM endpoints WHERE network_id = ?", (network_id,))
            self._db.execute("DELETE FROM networks WHERE id = ?", (network_id,))

    def set_cursor(self, network_id: str, cursor: int) -> None:
        with self.transaction():
            self._db.execute("UPDATE networks SET cursor = ? WHERE id = ?", (cursor, network_id))

    # ----------------------------------------------------------------------- endpoints
    @staticmethod
    def _ep(row: tuple) -> EpRecord:
        net, ep, address, mac, host_if, ifname, netns, mtu, address6 = row
        return EpRecord(net, ep, ipaddress.IPv4Address(address), mac, host_if, ifname, netns, mtu,
                        ipaddress.IPv6Address(address6) if address6 else None)

    def endpoints(self, network_id: str | None = None) -> list[EpRecord]:
        if network_id is None:
            rows = self._q("SELECT * FROM endpoints ORDER BY rowid")
        else:
            rows = self._q("SELECT * FROM endpoints WHERE network_id = ? ORDER BY rowid",
                           (network_id,))
        return [self._ep(r) for r in rows]

    def endpoint(self, network_id: str, endpoint_id: str) -> EpRecord | None:
        rows = self._q("SELECT * FROM endpoints WHERE network_id = ? AND endpoint_id = ?",
                       (network_id, endpoint_id))
        return self._ep(rows[0]) if rows else None

    def used_addresses6(self, network_id: str) -> set[int]:
        return {int(ipaddress.IPv6Address(a)) for (a,) in
                self._q("SELECT address6 FROM endpoints WHERE network_id = ? AND address6 IS NOT NULL",
                        (network_id,))}

    def used_addresses(self, network_id: str) -> set[int]:
        return {int(ipaddress.IPv4Address(a)) for (a,) in
                self._q("SELECT address FROM endpoints WHERE network_id = ?", (network_id,))}

    def host_interfaces(self) -> set[str]:
        """Host-side names in use: of endpoints, and of links waiting to be deleted."""
        return {h for (h,) in self._q("SELECT host_if FROM endpoints UNION SELECT host_if FROM graveyard")}

    def graveyard(self) -> list[str]:
        return [h for (h,) in self._q("SELECT host_if FROM graveyard ORDER BY rowid")]

    def buried(self, host_if: str) -> None:
        with self.transaction():
            self._db.execute("DELETE FROM graveyard WHERE host_if = ?", (host_if,))

    def add_endpoint(self, e: EpRecord) -> None:
        with self.transaction():
            self._db.execute("INSERT INTO endpoints VALUES (?,?,?,?,?,?,?,?,?)",
                             (e.network_id, e.endpoint_id, str(e.address), e.mac, e.host_if,
                              e.ifname, e.netns, e.mtu,
                              str(e.address6) if e.address6 else None))

    def remove_endpoint(self, network_id: str, endpoint_id: str, bury: str | None = None) -> None:
        """Forget the endpoint; ``bury`` names its host link, to be deleted later (graveyard)."""
        with self.transaction():
            if bury is not None:
                self._db.execute("INSERT OR IGNORE INTO graveyard VALUES (?)", (bury,))
            self._db.execute("DELETE FROM ports WHERE network_id = ? AND endpoint_id = ?",
                             (network_id, endpoint_id))
            self._db.execute("DELETE FROM endpoints WHERE network_id = ? AND endpoint_id = ?",
                             (network_id, endpoint_id))

    # ----------------------------------------------------------------------- ports
    @staticmethod
    def _port(row: tuple) -> PortRecord:
        proto, host_ip, host_port, net, ep, cport, seq = row
        return PortRecord(proto, ipaddress.ip_address(host_ip), host_port, net, ep, cport, seq)

    def ports(self, network_id: str | None = None, endpoint_id: str | None = None) -> list[PortRecord]:
        if network_id is None:
            rows = self._q("SELECT * FROM ports ORDER BY seq")
        else:
            rows = self._q("SELECT * FROM ports WHERE network_id = ? AND endpoint_id = ? "
                           "ORDER BY seq", (network_id, endpoint_id))
        return [self._port(r) for r in rows]

    def add_ports(self, records: list[PortRecord]) -> None:
        with self.transaction():
            seq = self._db.execute("SELECT COALESCE(MAX(seq), 0) FROM ports").fetchone()[0]
            for i, p in enumerate(records, start=seq + 1):
                self._db.execute("INSERT INTO ports VALUES (?,?,?,?,?,?,?)",
                                 (p.protocol, str(p.host_ip), p.host_port, p.network_id,
                                  p.endpoint_id, p.container_port, i))

    def remove_ports(self, records: list[PortRecord]) -> None:
        with self.transaction():
            for p in records:
                self._db.execute("DELETE FROM ports WHERE protocol = ? AND host_ip = ? AND "
                                 "host_port = ?", (p.protocol, str(p.host_ip), p.host_port))

    # ----------------------------------------------------------------------- meta
    def get_meta(self, key: str) -> str | None:
        rows = self._q("SELECT value FROM meta WHERE key = ?", (key,))
        return rows[0][0] if rows else None

    def delete_meta(self, key: str) -> None:
        with self.transaction():
            self._db.execute("DELETE FROM meta WHERE key = ?", (key,))

    def set_meta(self, key: str, value: str) -> None:
        with self.transaction():
            self._db.execute("INSERT OR REPLACE INTO meta VALUES (?, ?)", (key, value))
