"""The bridge network driver: a Linux bridge per network, veth pairs, nftables NAT.

What it puts on the host, per network ``x`` (see :mod:`drivers.net_bridge.nft` for the rules):

- a bridge ``br-<first 12 of the network id>`` (or the ``com.docker.network.bridge.name``
  option, e.g. ``core0`` for the default network) with the gateway address, the network's MTU,
  the MAC ``02:42:<gateway>``, and ``net.ipv4.conf.<bridge>.route_localnet=1``;
- per endpoint a veth pair: ``veth<7 hex>`` on the bridge (hairpin on), its peer in the
  container's namespace as ``eth0`` (address, ``02:42:<address>`` MAC, MTU, default route);
- chains and set/map elements in core's own tables ``inet core`` and ``ip core-nat``, and — only
  when another firewall has a drop-policy forward chain — two accept rules per bridge at the top
  of that chain (``nft`` or ``iptables-legacy``), commented ``core:<bridge>``;
- ``net.ipv4.ip_forward=1`` (host-wide, as docker does; never turned off again);
- per endpoint with published ports one proxy process (:mod:`drivers.net_bridge.proxy`, in a
  session of its own, outliving the daemon like the rules): it holds the host ports (bound by
  the driver, so a taken port is an error at once) and carries what reaches them — the IPv6
  bindings (``[::]:P`` beside ``0.0.0.0:P`` for a :attr:`PortBinding.ipv6` binding,
  ``[::1]:P``...), which have no NAT; ``leave`` ends it (its PID is in the state, checked by
  command line before it is signalled).

State (networks, endpoints, addresses, publications) is in ``<root>/bridge.db``
(:mod:`drivers.net_bridge.store`).  A new driver object on the same root repairs the kernel side
from it: bridges recreated if missing (after a reboot), both nft tables rebuilt atomically.

Driver options (``driver-opts`` of the daemon config):

``nft-table``               the name of core's tables (default ``core``: ``inet core`` and
                            ``ip core-nat``); one driver instance owns them.
``default-address-pools``   ``base/len:size,...`` (default: docker's ``172.17.0.0/16:16`` …
                            ``172.31.0.0/16:16``, ``192.168.0.0/16:20``).

Network options (``-o``): ``com.docker.network.bridge.name``, ``com.docker.network.driver.mtu``
(or ``mtu``), ``com.docker.network.bridge.enable_icc``,
``com.docker.network.bridge.enable_ip_masquerade``,
``com.docker.network.bridge.host_binding_ipv4`` (the host address of publications that name
none), ``com.docker.network.bridge.default_bridge`` (recorded only).

The default network (``NetworkSpec(default=True)``, docker's ``bridge``) gets docker's default
options (``default_bridge``, ``enable_icc``, ``enable_ip_masquerade``, ``host_binding_ipv4``,
the MTU) and, unless its options name one, the device ``core0`` — or, when the driver has
tables of its own (``nft-table`` T other than ``core``, as every test daemon and a second
engine on the host has), ``core<first 8 hex of sha256(T)>``, so that engines sharing a host
never share a default bridge (:meth:`BridgeDriver.default_device`).

With ``enable_ipv6`` a network also gets an IPv6 subnet (the given one, else a random ULA
``/64``), its gateway address on the bridge and one address per endpoint (``::2`` on, or
``--ip6``; from ``ip_range6`` if given) with a default route, all without duplicate address
detection (usable at once).  IPv6 stays on the network and the host: the driver turns on no
IPv6 forwarding and adds no IPv6 NAT (the ``inet`` table's forward chain isolates networks for
both families all the same).

A bridge device that already has a network's name (the default network's, left on the host by
a crash or a wiped data root; one made by hand and named with ``com.docker.network.bridge.name``)
is adopted, as dockerd adopts ``docker0``: its addresses become the network's.  A device of that
name of another kind is an error.  A ``--subnet`` given by the user is checked against the
driver's other networks only (docker accepts one that overlaps a route of the host); a subnet
the driver chooses overlaps nothing the host routes or addresses.
"""
from __future__ import annotations

import hashlib
import ipaddress
import json
import logging
import re
import os
import secrets
import shutil
import signal
import subprocess
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import trio

from core.contracts.network import (ANY_IPV4, Endpoint, EndpointRequest, IPProtocol, Network,
                                    NetworkSpec, PoolOverlaps, PortBinding, mac_for_address)
from core.errors import (AlreadyExists, Conflict, CoreError, InvalidArgument, NotFound,
                         Unavailable)

from drivers.net_bridge import ipam, ports
from drivers.net_bridge import proxy as proports
from drivers.net_bridge.netlink import (HostNet, NetlinkThread, Reaper, read_sysctl,
                                        write_sysctl)
from drivers.net_bridge.nft import (NftError, Ruleset, drop_chain_fingerprint,
                                    foreign_forward_state, run_nft)
from drivers.net_bridge.store import EpRecord, NetRecord, PortRecord, Store

log = logging.getLogger(__name__)
DRIVER_OPTIONS = ("nft-table", "default-address-pools")
OPT_NAME = "com.docker.network.bridge.name"
OPT_MTU = "com.docker.network.driver.mtu"
OPT_ICC = "com.docker.network.bridge.enable_icc"
OPT_MASQ = "com.docker.network.bridge.enable_ip_masquerade"
OPT_HOST_BINDING = "com.docker.network.bridge.host_binding_ipv4"
OPT_DEFAULT = "com.docker.network.bridge.default_bridge"
NETWORK_OPTIONS = (OPT_NAME, OPT_MTU, "mtu", OPT_ICC, OPT_MASQ, OPT_HOST_BINDING, OPT_DEFAULT)
DEFAULT_NETWORK_OPTIONS = {OPT_DEFAULT: "true", OPT_ICC: "true", OPT_MASQ: "true",
                           OPT_HOST_BINDING: "0.0.0.0"}  # docker's default bridge's
_IFNAME = re.compile(r"^[A-Za-z0-9_.-]{1,15}$")
_IP_FORWARD = "/proc/sys/net/ipv4/ip_forward"


def _check_id(value: Any, what: str) -> str:
    if not isinstance(value, str) or not value or "\0" in value or len(value) > 255:
        raise InvalidArgument(f"invalid {what} {value!r}")
    return value


def _is_proxy(pid: int, endpoint_id: str) -> bool:
    """Whether ``pid`` is a live (not zombie) proxy process of the endpoint."""
    try:
        with open(f"/proc/{pid}/stat") as f:
            if f.read().rsplit(")", 1)[1].split()[0] == "Z":
                return False
        with open(f"/proc/{pid}/cmdline", "rb") as f:
            argv = f.read().split(b"\0")
    except (OSError, IndexError):
        return False
    return endpoint_id.encode() in argv and any(a.endswith(b"proxy.py") for a in argv)


def _bool_option(options: dict[str, str], key: str, default: bool) -> bool:
    if key not in options:
        return default
    value = options[key].strip().lower()
    if value in ("true", "1", "yes", "on"):
        return True
    if value in ("false", "0", "no", "off"):
        return False
    raise InvalidArgument(f"invalid value {options[key]!r} for option {key}: true or false")


class BridgeDriver:
    """A :class:`core.contracts.NetworkDriver`.  Build one per daemon; see the module docstring."""

    def __init__(self, root: Path, options: dict[str, str] | None = None) -> None:
        options = dict(options or {})
        unknown = sorted(set(options) - set(DRIVER_OPTIONS))
        if unknown:
            raise InvalidArgument(f"unknown option(s) {', '.join(unknown)} for the bridge network "
                                  f"driver (known: {', '.join(DRIVER_OPTIONS)})")
        self.root = Path(root)
        self.rules = Ruleset(options.get("nft-table", "core"))
        self.pools = (ipam.parse_pools(options["default-address-pools"])
                      if "default-address-pools" in options else ipam.DEFAULT_POOLS)
        self._store: Store | None = None
        self._host: HostNet | None = None
        self._lock = trio.Lock()
        self._started = False
        self._closed = False
        self._fingerprint: frozenset | None = None
        self._reaper = Reaper(self._buried)
        self._thread: NetlinkThread | None = None
        self._proxies: dict[tuple[str, str], list[trio.Process]] = {}

    async def _net(self, fn: Any, *args: Any) -> Any:
        """``fn(*args)`` in the driver's netlink thread (where :class:`HostNet` lives)."""
        if self._thread is None:
            self._thread = NetlinkThread()
        return await self._thread.run(fn, *args)

    # ======================================================================= plumbing
    def _db(self) -> Store:
        if self._closed:
            raise Unavailable("the bridge network driver is closed")
        if self._store is None:
            self.root.mkdir(parents=True, exist_ok=True)
            self._store = Store(self.root / "bridge.db")
        return self._store

    async def _start(self) -> HostNet:
        """Open the netlink socket and, the first time, repair the kernel side from the state."""
        store = self._db()
        if self._host is None:
            self._host = await self._net(HostNet)
        if not self._started:
            for host_if in store.graveyard():
                self._reaper.put(host_if)
            nets = store.networks()
            if nets:
                for net in nets:
                    await self._net(self._ensure_bridge, net)
                if any(not n.internal for n in nets):
                    write_sysctl(_IP_FORWARD, "1")
                await self._sync_firewall()
                await self._reconcile_foreign()
            self._started = True
        return self._host

    def _buried(self, host_if: str) -> None:
        store = self._store
        if store is not None:
            store.buried(host_if)

    def _ensure_bridge(self, net: NetRecord) -> None:
        assert self._host is not None
        gateway = ipaddress.IPv4Interface(f"{net.gateway}/{net.subnet.prefixlen}")
        gateway6 = (ipaddress.IPv6Interface(f"{net.gateway6}/{net.subnet6.prefixlen}")
                    if net.subnet6 is not None and net.gateway6 is not None else None)
        self._host.ensure_bridge(net.bridge, mac_for_address(net.gateway), gateway, net.mtu,
                                 gateway6)

    def _port_targets(self, exclude_network: str | None = None,
                      exclude_endpoint: tuple[str, str] | None = None
                      ) -> list[tuple[PortRecord, str]]:
        store = self._db()
        addresses = {(e.network_id, e.endpoint_id): str(e.address) for e in store.endpoints()}
        return [(p, addresses[(p.network_id, p.endpoint_id)]) for p in store.ports()
                if p.network_id != exclude_network
                and (p.network_id, p.endpoint_id) != exclude_endpoint
                and (p.network_id, p.endpoint_id) in addresses]

    async def _sync_firewall(self, exclude_network: str | None = None,
                             exclude_endpoint: tuple[str, str] | None = None) -> None:
        """Rebuild both tables from the state (minus what is being removed), atomically."""
        nets = [n for n in self._db().networks() if n.id != exclude_network]
        if not nets:
            await run_nft(self.rules.teardown())
            return
        await run_nft(self.rules.rebuild(nets, self._port_targets(exclude_network,
                                                                  exclude_endpoint)))

    async def _apply(self, lines: list[str], exclude_network: str | None = None,
                     exclude_endpoint: tuple[str, str] | None = None) -> None:
        """One incremental nft transaction; if the kernel's tables have drifted from the state
        (the change fails), rebuild them instead."""
        if not lines:
            return
        try:
            await run_nft("\n".join(lines) + "\n")
        except NftError:
            await self._sync_firewall(exclude_network, exclude_endpoint)

    async def _reconcile_foreign(self, exclude_network: str | None = None) -> None:
        """Make other tools' drop-policy forward chains accept core's bridges (see nft.py)."""
        assert self._host is not None
        bridges = {n.bridge for n in self._db().networks() if n.id != exclude_network}
        try:
            self._fingerprint = drop_chain_fingerprint(
                await self._net(self._host.forward_chains), self.rules)
        except Exception:  # the cheap check is an optimisation only
            self._fingerprint = None
        chains, rules = await foreign_forward_state(self.rules)
        commands = self.rules.foreign_plan(chains, rules, bridges)
        if commands:
            await run_nft(json.dumps({"nftables": commands}), "-j")
        await self._reconcile_legacy(bridges)

    async def _reconcile_legacy(self, bridges: set[str]) -> None:
        binary = shutil.which("iptables-legacy")
        names = read_sysctl("/proc/net/ip_tables_names")  # absent: no legacy table in this netns
        if binary is None or not names or "filter" not in names.split():
            return
        listing = await trio.run_process([binary, "-w", "-S", "FORWARD"], capture_stdout=True,
                                         capture_stderr=True, check=False)
        if listing.returncode != 0:
            return
        for args in self.rules.legacy_plan(listing.stdout.decode(), bridges):
            proc = await trio.run_process([binary, "-w", *args], capture_stdout=True,
                                          capture_stderr=True, check=False)
            if proc.returncode != 0 and args[0] != "-D":
                raise Unavailable(f"iptables-legacy {' '.join(args)} failed: "
                                  f"{proc.stderr.decode(errors='replace').strip()}")

    async def _check_foreign(self) -> None:
        """On the hot path: one netlink dump; the full reconciliation only if it changed.
        Never fails the caller (the endpoint exists by now): problems are logged."""
        assert self._host is not None
        try:
            now = drop_chain_fingerprint(
                await self._net(self._host.forward_chains), self.rules)
            if now != self._fingerprint:
                await self._reconcile_foreign()
        except Exception:
            log.warning("cannot make other firewalls' forward chains accept core's bridges",
                        exc_info=True)

    def _network(self, network_id: str) -> NetRecord:
        net = self._db().network(_check_id(network_id, "network id"))
        if net is None:
            raise NotFound(f"network {network_id} not found")
        return net

    def _endpoint_record(self, net: NetRecord, endpoint_id: str) -> EpRecord:
        ep = self._db().endpoint(net.id, _check_id(endpoint_id, "endpoint id"))
        if ep is None:
            raise NotFound(f"endpoint {endpoint_id} not found on network {net.name or net.id}")
        return ep

    @staticmethod
    def _to_network(net: NetRecord) -> Network:
        return Network(id=net.id, name=net.name, interface=net.bridge, subnet=net.subnet,
                       gateway=net.gateway, ip_range=net.ip_range, aux_addresses=net.aux,
                       internal=net.internal, mtu=net.mtu, subnet_given=net.subnet_given,
                       options=net.options, subnet6=net.subnet6, gateway6=net.gateway6,
                       ip_range6=net.ip_range6)

    def _to_endpoint(self, net: NetRecord, ep: EpRecord) -> Endpoint:
        bindings = tuple(PortBinding(p.container_port, p.protocol, p.host_ip, p.host_port)
                         for p in self._db().ports(net.id, ep.endpoint_id))
        return Endpoint(network_id=net.id, endpoint_id=ep.endpoint_id, netns_path=ep.netns,
                        interface_name=ep.ifname, host_interface=ep.host_if,
                        address=ipaddress.IPv4Interface(f"{ep.address}/{net.subnet.prefixlen}"),
                        gateway=None if net.internal else net.gateway, mac=ep.mac, mtu=ep.mtu,
                        ports=bindings,
                        address6=(ipaddress.IPv6Interface(f"{ep.address6}/{net.subnet6.prefixlen}")
                                  if ep.address6 is not None and net.subnet6 is not None else None),
                        gateway6=(net.gateway6 if ep.address6 is not None and not net.internal
                                  else None))

    # ======================================================================= networks
    def default_device(self) -> str:
        """The bridge of the default network: ``core0``, or ``core<8 hex of sha256(T)>`` for
        tables ``T`` other than ``core``."""
        table = self.rules.table
        if table == "core":
            return "core0"
        return "core" + hashlib.sha256(table.encode()).hexdigest()[:8]

    async def create_network(self, network_id: str, spec: NetworkSpec) -> Network:
        _check_id(network_id, "network id")
        if not isinstance(spec, NetworkSpec):
            raise InvalidArgument("create_network needs a NetworkSpec")
        options = dict(spec.options)
        if spec.default:
            options = {**DEFAULT_NETWORK_OPTIONS, OPT_NAME: self.default_device(), **options}
        unknown = sorted(set(options) - set(NETWORK_OPTIONS))
        if unknown:
            raise InvalidArgument(f"unknown option(s) {', '.join(unknown)} for the bridge driver "
                                  f"(known: {', '.join(NETWORK_OPTIONS)})")
        bridge = options.get(OPT_NAME) or f"br-{network_id[:12]}"
        if not _IFNAME.match(bridge) or bridge in (".", ".."):
            raise InvalidArgument(f"invalid bridge name {bridge!r}: give {OPT_NAME} with 1 to 15 "
                                  "letters, digits, '_', '.' or '-'")
        mtu = spec.mtu
        for key in (OPT_MTU, "mtu"):
            if key in options:
                try:
                    value = int(options[key])
                except ValueError:
                    raise InvalidArgument(f"invalid MTU {options[key]!r} in option {key}") from None
                if not 68 <= value <= 65535:
                    raise InvalidArgument(f"invalid MTU {value}: it must be between 68 and 65535")
                if mtu is not None and mtu != value:
                    raise InvalidArgument(f"conflicting MTUs {mtu} and {value}")
                mtu = value
        icc = _bool_option(options, OPT_ICC, True)
        masquerade = _bool_option(options, OPT_MASQ, True)
        if OPT_HOST_BINDING in options:
            try:
                ipaddress.IPv4Address(options[OPT_HOST_BINDING])
            except ValueError:
                raise InvalidArgument(f"invalid {OPT_HOST_BINDING}: {options[OPT_HOST_BINDING]!r}") from None
        _bool_option(options, OPT_DEFAULT, False)

        async with self._lock:
            host = await self._start()
            store = self._db()
            if store.network(network_id) is not None:
                raise AlreadyExists(f"network with id {network_id} already exists")
            nets = store.networks()
            if any(n.bridge == bridge for n in nets):
                raise AlreadyExists(f"bridge {bridge} is in use by another network")
            kind = await self._net(host.link_kind, bridge)
            if kind is not None and kind != "bridge":
                raise AlreadyExists(f"cannot create bridge {bridge}: a device of that name exists")
            # a bridge of that name (a wiped state, a crash, one made by hand) is adopted, as
            # dockerd adopts docker0: its addresses are set to the network's
            if spec.subnet is not None:  # the user's choice: checked against our networks only
                subnet = spec.subnet
                other = ipam.overlapping(subnet, [n.subnet for n in nets])
                if other is not None:
                    raise PoolOverlaps(f"Pool overlaps with other one on this address space: "
                                       f"{subnet} overlaps network {other}")
            else:
                host_nets = await self._net(host.taken_networks, bridge if kind else None)
                subnet = ipam.choose_subnet(self.pools, [n.subnet for n in nets] + host_nets)
                if subnet is None:
                    raise Unavailable("could not find an available, non-overlapping IPv4 address "
                                      "pool among the defaults to assign to the network")
            gateway = spec.gateway or ipam.first_host(subnet)
            ipam.check_layout(subnet, gateway, spec.ip_range, spec.aux_addresses)
            subnet6 = gateway6 = None
            if spec.enable_ipv6:
                taken6 = [n.subnet6 for n in nets if n.subnet6 is not None]
                if spec.subnet6 is not None:
                    subnet6 = spec.subnet6
                    other6 = next((t for t in taken6 if t.overlaps(subnet6)), None)
                    if other6 is not None:
                        raise PoolOverlaps(f"Pool overlaps with other one on this address "
                                           f"space: {subnet6} overlaps network {other6}")
                else:
                    subnet6 = ipam.random_ula(taken6)
                gateway6 = spec.gateway6 or (subnet6.network_address + 1)
                ipam.check_layout6(subnet6, gateway6)
            if mtu is None:
                mtu = await self._net(host.uplink_mtu)
            if spec.default and OPT_MTU not in options and "mtu" not in options:
                options[OPT_MTU] = str(mtu)
            net = NetRecord(id=network_id, name=spec.name, bridge=bridge, subnet=subnet,
                            gateway=gateway, ip_range=spec.ip_range, aux=dict(spec.aux_addresses),
                            internal=spec.internal, mtu=mtu, subnet_given=spec.subnet is not None,
                            icc=icc, masquerade=masquerade, options=options,
                            subnet6=subnet6, gateway6=gateway6,
                            ip_range6=spec.ip_range6 if spec.subnet6 is not None else None)
            store.add_network(net)
            try:
                await self._net(self._ensure_bridge, net)
                if not net.internal:
                    write_sysctl(_IP_FORWARD, "1")
                if len(nets) == 0:
                    await self._sync_firewall()
                else:
                    await self._apply(self.rules.add_network(net))
                await self._reconcile_foreign()
            except BaseException:
                with trio.CancelScope(shield=True):
                    await self._undo_network(net)
                raise
            return self._to_network(net)

    async def _undo_network(self, net: NetRecord) -> None:
        """Remove everything of ``net`` from the kernel, then its row; errors are swallowed
        (this runs on a failure path or for a network being deleted)."""
        remaining = [n for n in self._db().networks() if n.id != net.id]
        try:
            if remaining:
                await self._apply(self.rules.remove_network(net), exclude_network=net.id)
            else:
                await run_nft(self.rules.teardown())
        except CoreError:
            pass
        try:
            await self._reconcile_foreign(exclude_network=net.id)
        except CoreError:
            pass
        try:
            assert self._host is not None
            await self._net(self._host.delete_link, net.bridge)
        except CoreError:
            pass
        self._db().remove_network(net.id)

    async def delete_network(self, network_id: str) -> None:
        async with self._lock:
            net = self._network(network_id)
            if self._db().endpoints(net.id):
                raise Conflict(f"error while removing network: network {net.name or net.id} "
                               f"id {net.id} has active endpoints")
            host = await self._start()
            remaining = [n for n in self._db().networks() if n.id != net.id]
            with trio.CancelScope(shield=True):
                await trio.to_thread.run_sync(self._reaper.drain)
                if remaining:
                    await self._apply(self.rules.remove_network(net), exclude_network=net.id)
                else:
                    await run_nft(self.rules.teardown())
                try:  # rules left behind here are removed by the next reconciliation
                    await self._reconcile_foreign(exclude_network=net.id)
                except CoreError:
                    log.warning("cannot remove the accept rules of %s from other firewalls",
                                net.bridge, exc_info=True)
                await self._net(host.delete_link, net.bridge)
                self._db().remove_network(net.id)

    async def network(self, network_id: str) -> Network:
        return self._to_network(self._network(network_id))

    async def networks(self) -> list[Network]:
        return [self._to_network(n) for n in self._db().networks()]

    # ======================================================================= endpoints
    async def join(self, network_id: str, endpoint_id: str, netns_path: str,
                   request: EndpointRequest | None = None) -> Endpoint:
        _check_id(endpoint_id, "endpoint id")
        if not isinstance(netns_path, str) or not netns_path.startswith("/"):
            raise InvalidArgument(f"invalid network namespace path {netns_path!r}")
        request = request if request is not None else EndpointRequest()
        if not isinstance(request, EndpointRequest):
            raise InvalidArgument("join needs an EndpointRequest")
        async with self._lock:
            net = self._network(network_id)
            store = self._db()
            if store.endpoint(net.id, endpoint_id) is not None:
                raise AlreadyExists(f"endpoint with name {endpoint_id} already exists in network "
                                    f"{net.name or net.id}")
            host = await self._start()
            used = store.used_addresses(net.id)
            if request.address is not None:
                if not net.subnet_given:
                    raise InvalidArgument("user specified IP address is supported only when "
                                          "connecting to networks with user configured subnets")
                ipam.check_requested(net.subnet, net.gateway, net.aux, request.address, used)
                address = request.address
            else:
                reserved = {int(net.gateway)} | {int(ipaddress.IPv4Address(a))
                                                 for a in net.aux.values()}
                found = ipam.next_address(net.subnet, net.ip_range, reserved, used, net.cursor)
                if found is None:
                    raise Unavailable(f"no available IPv4 addresses on network "
                                      f"{net.name or net.id} ({net.ip_range or net.subnet})")
                address = found
            address6 = None
            if request.address6 is not None and net.subnet6 is None:
                raise InvalidArgument(f"invalid IPv6 address {request.address6}: network "
                                      f"{net.name or net.id} does not have IPv6 enabled")
            if net.subnet6 is not None:
                used6 = store.used_addresses6(net.id)
                reserved6 = {int(net.gateway6)} if net.gateway6 is not None else set()
                if request.address6 is not None:
                    if request.address6 not in net.subnet6 or \
                            request.address6 == net.subnet6.network_address:
                        raise InvalidArgument(f"requested address {request.address6} is not a "
                                              f"host address of {net.subnet6}")
                    if int(request.address6) in used6 | reserved6:
                        raise Conflict(f"Address already in use: {request.address6}")
                    address6 = request.address6
                else:
                    address6 = ipam.next_address6(net.subnet6, reserved6, used6,
                                                  ip_range=net.ip_range6)
                    if address6 is None:
                        raise Unavailable(f"no available IPv6 addresses on network "
                                          f"{net.name or net.id} ({net.subnet6})")
            taken = store.host_interfaces()
            host_if = "veth" + secrets.token_hex(4)[:7]
            while host_if in taken:
                host_if = "veth" + secrets.token_hex(4)[:7]
            ep = EpRecord(net.id, endpoint_id, address, request.mac or mac_for_address(address),
                          host_if, request.interface_name, netns_path, net.mtu, address6)
            with store.transaction():
                store.add_endpoint(ep)
                if request.address is None:
                    store.set_cursor(net.id, int(address))
            try:
                await self._net(lambda: host.attach(
                    bridge=net.bridge, host_if=host_if, netns_path=netns_path,
                    ifname=request.interface_name, mac=ep.mac,
                    address=ipaddress.IPv4Interface(f"{address}/{net.subnet.prefixlen}"),
                    gateway=None if net.internal else net.gateway, mtu=net.mtu,
                    address6=(ipaddress.IPv6Interface(f"{address6}/{net.subnet6.prefixlen}")
                              if address6 is not None and net.subnet6 is not None else None),
                    gateway6=None if net.internal else net.gateway6))
            except BaseException:
                with store.transaction():
                    store.remove_endpoint(net.id, endpoint_id)
                    store.set_cursor(net.id, net.cursor)
                raise
            await self._check_foreign()
            return self._to_endpoint(net, ep)

    async def leave(self, network_id: str, endpoint_id: str) -> None:
        async with self._lock:
            net = self._network(network_id)
            ep = self._endpoint_record(net, endpoint_id)
            host = await self._start()
            published = self._db().ports(net.id, ep.endpoint_id)
            with trio.CancelScope(shield=True):
                if published:
                    await self._apply(self.rules.remove_ports(published),
                                      exclude_endpoint=(net.id, ep.endpoint_id))
                await self._stop_proxies(net.id, ep.endpoint_id)
                await self._net(host.detach, ep.host_if)
                self._db().remove_endpoint(net.id, ep.endpoint_id, bury=ep.host_if)
                self._reaper.put(ep.host_if)
                if any(p.protocol == "udp" for p in published):
                    try:
                        await trio.to_thread.run_sync(host.forget_udp_flows, str(ep.address))
                    except Exception:  # best effort: the flows time out anyway
                        log.warning("cannot delete the UDP flows of %s", ep.address, exc_info=True)

    async def endpoint(self, network_id: str, endpoint_id: str) -> Endpoint:
        net = self._network(network_id)
        return self._to_endpoint(net, self._endpoint_record(net, endpoint_id))

    async def endpoints(self, network_id: str) -> list[Endpoint]:
        net = self._network(network_id)
        return [self._to_endpoint(net, ep) for ep in self._db().endpoints(net.id)]

    # ======================================================================= ports
    async def publish(self, network_id: str, endpoint_id: str,
                      bindings: Sequence[PortBinding]) -> list[PortBinding]:
        bindings = list(bindings)
        if not all(isinstance(b, PortBinding) for b in bindings):
            raise InvalidArgument("publish needs PortBinding values")
        async with self._lock:
            net = self._network(network_id)
            ep = self._endpoint_record(net, endpoint_id)
            if net.internal:
                raise InvalidArgument(f"network {net.name or net.id} is internal: its endpoints "
                                      "cannot publish ports")
            await self._start()
            store = self._db()
            held = [(p.protocol, p.host_ip, p.host_port) for p in store.ports()]
            chosen: list[PortRecord] = []
            sockets: list[tuple[PortRecord, Any]] = []
            low, high = ports.ephemeral_range()
            cursor = int(store.get_meta("port-cursor") or low - 1)
            default_ip = ipaddress.IPv4Address(net.options.get(OPT_HOST_BINDING, "0.0.0.0"))
            v6 = None

            def allocated(proto: str, ips: list[Any], port: int) -> bool:
                return any(p == proto and n == port and ports.clashes(ip, i)
                           for p, i, n in held for ip in ips)

            def take(proto: str, ips: list[Any], port: int) -> list[Any] | None:
                if allocated(proto, ips, port):
                    return None
                return ports.reserve(proto, ips, port)

            try:
                for b in bindings:
                    proto = b.protocol.value
                    ips: list[Any] = [default_ip if b.host_ip == ANY_IPV4 else b.host_ip]
                    if b.ipv6 and b.host_ip == ANY_IPV4 and default_ip == ANY_IPV4:
                        if v6 is None:
                            v6 = ports.ipv6_available()
                        if v6:
                            ips.append(ipaddress.IPv6Address("::"))
                    shown = ips[0]
                    socks = None
                    if b.host_port and not b.host_port_end:
                        port = b.host_port
                        socks = take(proto, ips, port)
                        if socks is None:
                            raise Conflict(f"Bind for {shown}:{port} failed: port is already allocated")
                    elif b.host_port_end:
                        for port in range(b.host_port, b.host_port_end + 1):
                            socks = take(proto, ips, port)
                            if socks is not None:
                                break
                        if socks is None:
                            raise Conflict(f"Bind for {shown}:{b.host_port}-{b.host_port_end} "
                                           "failed: port is already allocated")
                    else:
                        span = high - low + 1
                        start = cursor + 1 if low <= cursor + 1 <= high else low
                        other = "udp" if proto == "tcp" else "tcp"
                        for i in range(span):
                            port = low + (start - low + i) % span
                            if allocated(other, ips, port) or not all(
                                    ports.socket_free(other, ip, port) for ip in ips):
                                continue  # docker's ephemeral ports are free for both
                            socks = take(proto, ips, port)
                            if socks is not None:
                                break
                        if socks is None:
                            raise Unavailable(f"no free host port in {low}-{high} for "
                                              f"{shown}/{proto}")
                        cursor = port
                    for ip, sock in zip(ips, socks):
                        held.append((proto, ip, port))
                        record = PortRecord(proto, ip, port, net.id, ep.endpoint_id,
                                            b.container_port)
                        chosen.append(record)
                        sockets.append((record, sock))
                if not chosen:
                    return []
                with store.transaction():
                    store.add_ports(chosen)
                    store.set_meta("port-cursor", str(cursor))
                try:
                    await self._apply(self.rules.add_ports((p, str(ep.address)) for p in chosen))
                    await self._spawn_proxy(net, ep, sockets)
                except BaseException:
                    store.remove_ports(chosen)
                    with trio.CancelScope(shield=True):
                        try:
                            await self._sync_firewall()
                        except CoreError:
                            pass
                    raise
            finally:
                for _record, sock in sockets:
                    sock.close()  # the proxy has its own copies
            return [PortBinding(p.container_port, IPProtocol(p.protocol), p.host_ip, p.host_port)
                    for p in chosen]

    # ======================================================================= proxies
    def _proxy_key(self, net_id: str, endpoint_id: str) -> str:
        return f"proxy:{net_id}:{endpoint_id}"

    async def _spawn_proxy(self, net: NetRecord, ep: EpRecord,
                           sockets: list[tuple[PortRecord, Any]]) -> None:
        """Start the endpoint's proxy holding ``sockets`` (see :mod:`drivers.net_bridge.proxy`)
        and record its PID."""
        spec = [{"fd": sock.fileno(), "proto": rec.protocol, "host": str(rec.host_ip),
                 "to": [str(ep.address), rec.container_port]} for rec, sock in sockets]
        log_path = self.root / "proxy.log"
        try:  # the proxy ends by itself once this namespace is gone
            st = os.stat(ep.netns)
            lifeline = f"{ep.netns}@{st.st_dev}:{st.st_ino}"
        except OSError:
            lifeline = ep.netns
        with open(log_path, "ab") as log_file:
            proc = await trio.lowlevel.open_process(
                [sys.executable, "-I", "-S", str(Path(proports.__file__)), ep.endpoint_id,
                 lifeline, json.dumps(spec)],
                pass_fds=[sock.fileno() for _rec, sock in sockets], start_new_session=True,
                stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=log_file)
        self._proxies.setdefault((net.id, ep.endpoint_id), []).append(proc)
        store = self._db()
        key = self._proxy_key(net.id, ep.endpoint_id)
        pids = json.loads(store.get_meta(key) or "[]")
        store.set_meta(key, json.dumps(pids + [proc.pid]))

    async def _stop_proxies(self, net_id: str, endpoint_id: str) -> None:
        """End the endpoint's proxies (ours, or a previous daemon's: checked by command line)
        and wait until they are gone; their ports are free again then."""
        store = self._db()
        key = self._proxy_key(net_id, endpoint_id)
        pids = json.loads(store.get_meta(key) or "[]")
        children = {p.pid: p for p in self._proxies.pop((net_id, endpoint_id), [])}
        for pid in pids:
            proc = children.pop(pid, None)
            if proc is not None:
                proc.terminate()
                with trio.move_on_after(5):
                    await proc.wait()
                if proc.returncode is None:
                    proc.kill()
                    await proc.wait()
                continue
            if not _is_proxy(pid, endpoint_id):
                continue
            try:
                os.kill(pid, signal.SIGTERM)
            except ProcessLookupError:
                continue
            with trio.move_on_after(5):
                while _is_proxy(pid, endpoint_id):
                    await trio.sleep(0.01)
            if _is_proxy(pid, endpoint_id):
                try:
                    os.kill(pid, signal.SIGKILL)
                except ProcessLookupError:
                    pass
        store.delete_meta(key)

    # ======================================================================= closing
    async def aclose(self) -> None:
        """Wait for detached links to be deleted, close the sockets and the database."""
        self._closed = True
        with trio.CancelScope(shield=True):
            await trio.to_thread.run_sync(self._reaper.close)
        host, self._host = self._host, None
        store, self._store = self._store, None
        thread, self._thread = self._thread, None
        if thread is not None:
            with trio.CancelScope(shield=True):
                await trio.to_thread.run_sync(thread.close, host.close if host else None)
        if store is not None:
            store.close()
