"""The overlay network driver: one VXLAN segment per swarm network, spanning the nodes.

A :class:`core.contracts.network.MultiHostNetworkDriver`.  The swarm's managers allocate the
network (VNI, subnet, gateway: ``NetworkSpec.multi_host``) and every endpoint's address; the
engine of each node passes them in and tells the driver where the remote endpoints are
(``set_peers``).  What the driver puts on the node (see :mod:`drivers.net_overlay.netlink`):

- nothing at ``create_network`` (the network is recorded);
- when the first endpoint joins on the node: a VXLAN device ``ovx<tag><8 hex>`` (the VNI,
  ``local`` = the node's underlay address, UDP port 4789, no learning, no multicast group,
  proxy ARP, no outer UDP checksum; no address: the node has no presence on the overlay), then
  one FDB entry (MAC → VTEP) and one neighbour entry (IP → MAC) per peer;
- per endpoint a macvlan of that device (mode bridge: the node's endpoints reach each other
  through it) made directly in the container's namespace (the given address, ``02:42:<address>``
  MAC unless one is asked for, the MTU) — no bridge, no veth: see
  :mod:`drivers.net_overlay.netlink` for why (throughput, ``br_netfilter``);
  no default route: docker's overlay endpoints have no gateway (their way out is another
  network, docker's ``docker_gwbridge``, which this driver does not make — an endpoint reaches
  its overlay's subnet only, as with ``--internal``); the endpoint's ``host_interface`` is the
  VXLAN device;
- when the last endpoint leaves: the VXLAN device goes.

``<tag>`` is four hex digits of the driver root's path (:func:`netlink.engine_tag`): engines
sharing a host never share a device name.  At start the driver removes devices with its tag
that its state does not explain (a crash between the kernel change and the state's; and the
bridges and veths of this driver's earlier layout), and sets peers again.

The MTU is the underlay interface's (the one holding ``multi_host.local``) less 50 (VXLAN
over IPv4), less ESP's overhead on an encrypted network, unless the network's ``mtu`` or the
option ``com.docker.network.driver.mtu`` says otherwise.

Encrypted networks (``multi_host.encrypted``, docker's ``--opt encrypted``): IPsec ESP in
transport mode between the VTEPs (cbc(aes) + hmac(sha256), keys derived from the swarm's
:class:`~core.contracts.network.DataPathKey` s; ``ip xfrm``, states and policies carrying the
engine's reqid) for the VXLAN packets of those networks only: an nftables table of the engine,
``ip core-ov-<tag>``, marks their packets (by VNI) for the ``out`` policies, drops them while
there is no key, and drops those that arrive without IPsec.  A kernel
without ESP (``CONFIG_INET_ESP``) makes ``create_network`` of an encrypted network
``Unavailable`` — these test machines' kernel is one.

Driver options: none of its own; the bridge driver's (``nft-table``, ``default-address-pools``),
which the daemon hands every network driver, are accepted and ignored.

State: ``<root>/overlay.json`` (written atomically): networks, their peers and endpoints, the keys.

Network options (``-o``): ``com.docker.network.driver.mtu`` (or ``mtu``), ``encrypted``
(docker's ``--opt encrypted``, any value: the network is encrypted if this option or
``multi_host.encrypted`` says so — never sent in clear by mistake),
``com.docker.network.driver.overlay.vxlanid_list``
(docker's record of the VNI: must agree with ``multi_host.vni``).
"""
from __future__ import annotations

import ipaddress
import json
import logging
import os
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import trio

from core.contracts.network import (DataPathKey, Endpoint, EndpointRequest, MultiHost, Network,
                                    NetworkSpec, Peer, PoolOverlaps, PortBinding, mac_for_address)
from core.errors import AlreadyExists, Conflict, CoreError, InvalidArgument, NotFound, Unavailable
from drivers.net_bridge.netlink import NetlinkThread
from drivers.net_overlay import netlink as nl

log = logging.getLogger(__name__)
# the daemon gives every network driver the same options (daemon.json's driver-opts.network):
# the bridge driver's, which the overlay accepts and has no use for
DRIVER_OPTIONS = ("nft-table", "default-address-pools")
OPT_MTU = "com.docker.network.driver.mtu"
OPT_VNI = "com.docker.network.driver.overlay.vxlanid_list"
OPT_ENCRYPTED = "encrypted"
NETWORK_OPTIONS = (OPT_MTU, "mtu", OPT_VNI, OPT_ENCRYPTED)


def _check_id(value: Any, what: str) -> str:
    if not isinstance(value, str) or not value or "\0" in value or len(value) > 255:
        raise InvalidArgument(f"invalid {what} {value!r}")
    return value


def _encrypted(spec: NetworkSpec) -> bool:
    return bool(spec.multi_host.encrypted) or OPT_ENCRYPTED in spec.options


class OverlayDriver:
    """A :class:`core.contracts.network.MultiHostNetworkDriver`; see the module docstring."""

    multi_host_only = True  # every network needs NetworkSpec.multi_host

    def __init__(self, root: Path, options: dict[str, str] | None = None) -> None:
        unknown = sorted(set(options or {}) - set(DRIVER_OPTIONS))
        if unknown:
            raise InvalidArgument(f"unknown option(s) {', '.join(unknown)} for the overlay network "
                                  f"driver (known: {', '.join(DRIVER_OPTIONS)})")
        self.root = Path(root)
        self.tag = nl.engine_tag(str(self.root.resolve()))
        self.reqid = int(self.tag, 16) + 0x10000  # the engine's XFRM states and policies
        self._state: dict[str, Any] | None = None
        self._thread: NetlinkThread | None = None
        self._host: nl.OverlayNet | None = None
        self._lock = trio.Lock()
        self._starting = trio.Lock()
        self._closed = False

    # ======================================================================= plumbing
    async def _net(self, fn: Any, *args: Any) -> Any:
        if self._thread is None:
            self._thread = NetlinkThread("core-overlay-netlink")
        return await self._thread.run(fn, *args)

    def _path(self) -> Path:
        return self.root / "overlay.json"

    def _save(self) -> None:
        assert self._state is not None
        tmp = self.root / "overlay.json.tmp"
        with open(tmp, "w") as f:
            json.dump(self._state, f)
            f.flush()
            os.fsync(f.fileno())
        tmp.replace(self._path())

    async def _start(self) -> dict[str, Any]:
        if self._closed:
            raise Unavailable("the overlay network driver is closed")
        async with self._starting:  # one start, whichever call comes first
            if self._state is None:
                self.root.mkdir(parents=True, exist_ok=True)
                try:
                    state = json.loads(self._path().read_text())
                except FileNotFoundError:
                    state = {"networks": {}, "keys": []}
                if self._host is None:
                    self._host = await self._net(nl.OverlayNet)
                self._state = state
                try:
                    await self._net(self._repair)
                except BaseException:
                    self._state = None  # the next call tries again
                    raise
        return self._state

    def _repair(self) -> None:
        """Remove devices with the engine's tag that the state does not explain; make the data
        path of every network with endpoints again (peers included)."""
        assert self._state is not None and self._host is not None
        wanted = set()
        for nid, net in self._state["networks"].items():
            if net["endpoints"]:
                wanted.add(nl.device_names(self.tag, nid))
        for name in self._host.owned_links(self.tag):
            if name not in wanted:
                log.info("removing %s, left by an earlier run", name)
                self._host.delete_link(name)
        for nid, net in self._state["networks"].items():
            if net["endpoints"]:
                self._ensure(nid, net)
        if self._had_xfrm():
            self._sync_xfrm()
        elif nl.has_ip():  # a crash may have left the engine's IPsec state: its reqid says so
            nl.xfrm_clear(self.reqid)
            try:
                nl.firewall_clear(self.tag)
            except CoreError as exc:  # no nft: no table either
                log.debug("no overlay firewall table to clear: %s", exc)

    # ======================================================================= helpers
    def _record(self, network_id: str) -> dict[str, Any]:
        assert self._state is not None
        _check_id(network_id, "network id")
        try:
            return self._state["networks"][network_id]
        except KeyError:
            raise NotFound(f"network {network_id} not found") from None

    def _ensure(self, nid: str, net: dict[str, Any]) -> None:
        """(Netlink thread.)  The network's VXLAN device and peers."""
        assert self._host is not None
        vxlan = nl.device_names(self.tag, nid)
        self._host.ensure_overlay(vxlan, net["vni"], net["local"], net["mtu"])
        self._host.program_peers(vxlan, [], self._remote(net))

    def _remote(self, net: dict[str, Any]) -> list[tuple[str, str, str]]:
        return [tuple(p) for p in net["peers"] if p[2] != net["local"]]

    def _sync_xfrm(self) -> None:
        """(Netlink thread.)  IPsec and the marking/dropping nftables table for every encrypted
        network with endpoints here, towards the VTEPs of its peers; nothing if there is none."""
        assert self._state is not None
        remotes: dict[str, set[str]] = {}
        vnis: set[int] = set()
        for net in self._state["networks"].values():
            if net["encrypted"] and net["endpoints"]:
                vnis.add(net["vni"])
                remotes.setdefault(net["local"], set()).update(p[2] for p in self._remote(net))
        keys = [(bytes.fromhex(k["key"]), k["tag"]) for k in self._state["keys"]]
        if not vnis:
            nl.firewall_clear(self.tag)
            nl.xfrm_clear(self.reqid)
            return
        nl.firewall_program(self.tag, vnis, keys=bool(keys))  # no keys: dropped, never in clear
        for local, vteps in remotes.items():  # one underlay address per node in practice
            nl.xfrm_program(self.reqid, nl.mark_for(self.tag), local, vteps, keys)

    def _had_xfrm(self) -> bool:
        return any(n["encrypted"] for n in self._state["networks"].values())

    def _network(self, nid: str, net: dict[str, Any]) -> Network:
        return Network(
            id=nid, name=net["name"], interface=nl.device_names(self.tag, nid),
            subnet=ipaddress.IPv4Network(net["subnet"]),
            gateway=ipaddress.IPv4Address(net["gateway"]),
            ip_range=ipaddress.IPv4Network(net["ip_range"]) if net["ip_range"] else None,
            aux_addresses=net["aux"], internal=net["internal"], mtu=net["mtu"],
            subnet_given=True, options=net["options"],
            multi_host=MultiHost(vni=net["vni"], local=net["local"], encrypted=net["encrypted"]))

    def _endpoint(self, nid: str, net: dict[str, Any], eid: str) -> Endpoint:
        ep = net["endpoints"][eid]
        subnet = ipaddress.IPv4Network(net["subnet"])
        return Endpoint(network_id=nid, endpoint_id=eid, netns_path=ep["netns"],
                        interface_name=ep["ifname"], host_interface=nl.device_names(self.tag, nid),
                        address=ipaddress.IPv4Interface(f"{ep['address']}/{subnet.prefixlen}"),
                        gateway=None, mac=ep["mac"], mtu=net["mtu"])

    @staticmethod
    def _mtu(spec: NetworkSpec, underlay: int) -> int:
        options = dict(spec.options)
        text = options.get(OPT_MTU, options.get("mtu"))
        if text is not None:
            try:
                value = int(text)
            except ValueError:
                raise InvalidArgument(f"invalid MTU {text!r} in option {OPT_MTU}") from None
            if not 68 <= value <= 65535:
                raise InvalidArgument(f"invalid MTU {value}: it must be between 68 and 65535")
            return value
        if spec.mtu is not None:
            return spec.mtu
        overhead = nl.VXLAN_OVERHEAD + (nl.ESP_OVERHEAD if _encrypted(spec) else 0)
        return underlay - overhead

    # ======================================================================= networks
    async def create_network(self, network_id: str, spec: NetworkSpec) -> Network:
        _check_id(network_id, "network id")
        if spec.multi_host is None:
            raise InvalidArgument("the overlay driver's networks span a swarm: they need the "
                                  "swarm's allocation (NetworkSpec.multi_host: VNI, underlay address)")
        if spec.subnet is None:
            raise InvalidArgument("an overlay network needs its subnet (the managers allocate it)")
        if spec.enable_ipv6:
            raise InvalidArgument("the overlay driver does not support IPv6 yet")
        if spec.default:
            raise InvalidArgument("the overlay driver has no default network")
        unknown = sorted(set(spec.options) - set(NETWORK_OPTIONS))
        if unknown:
            raise InvalidArgument(f"unknown option(s) {', '.join(unknown)} for an overlay network "
                                  f"(known: {', '.join(NETWORK_OPTIONS)})")
        vni_opt = spec.options.get(OPT_VNI)
        if vni_opt is not None and vni_opt.split(",")[0].strip() != str(spec.multi_host.vni):
            raise InvalidArgument(f"option {OPT_VNI}={vni_opt} disagrees with VNI {spec.multi_host.vni}")
        subnet = spec.subnet
        gateway = spec.gateway or subnet.network_address + 1
        if gateway not in subnet or gateway in (subnet.network_address, subnet.broadcast_address):
            raise InvalidArgument(f"invalid gateway {gateway}: not a host address of {subnet}")
        if spec.ip_range is not None and not spec.ip_range.subnet_of(subnet):
            raise InvalidArgument(f"ip range {spec.ip_range} is outside subnet {subnet}")
        for name, address in spec.aux_addresses.items():
            if ipaddress.IPv4Address(address) not in subnet:
                raise InvalidArgument(f"aux address {name}={address} is outside subnet {subnet}")
        async with self._lock:
            state = await self._start()
            if network_id in state["networks"]:
                raise AlreadyExists(f"network {network_id} already exists")
            for other_id, other in state["networks"].items():
                if ipaddress.IPv4Network(other["subnet"]).overlaps(subnet):
                    raise PoolOverlaps(f"invalid pool request: Pool overlaps with other one on "
                                       f"this address space ({other['subnet']}, network "
                                       f"{other['name'] or other_id[:12]})")
                if other["vni"] == spec.multi_host.vni:
                    raise Conflict(f"VNI {spec.multi_host.vni} is taken by network "
                                   f"{other['name'] or other_id[:12]}")
            underlay = await self._net(self._host.underlay_mtu, str(spec.multi_host.local))
            mtu = self._mtu(spec, underlay)
            if _encrypted(spec):
                why = await trio.to_thread.run_sync(nl.esp_support)
                if why is not None:
                    raise Unavailable(f"cannot create encrypted network {spec.name or network_id[:12]}: {why}")
            state["networks"][network_id] = {
                "name": spec.name, "subnet": str(subnet), "gateway": str(gateway),
                "ip_range": str(spec.ip_range) if spec.ip_range else None,
                "aux": dict(spec.aux_addresses), "internal": spec.internal, "mtu": mtu,
                "options": dict(spec.options), "vni": spec.multi_host.vni,
                "local": str(spec.multi_host.local), "encrypted": _encrypted(spec),
                "peers": [], "endpoints": {}}
            self._save()
            return self._network(network_id, state["networks"][network_id])

    async def delete_network(self, network_id: str) -> None:
        async with self._lock:
            state = await self._start()
            net = self._record(network_id)
            if net["endpoints"]:
                raise Conflict(f"network {net['name'] or network_id[:12]} has active endpoints")
            await self._net(self._host.remove_overlay, nl.device_names(self.tag, network_id))
            del state["networks"][network_id]
            self._save()
            if net["encrypted"]:
                await self._net(self._sync_xfrm)

    async def network(self, network_id: str) -> Network:
        await self._start()
        return self._network(network_id, self._record(network_id))

    async def networks(self) -> list[Network]:
        state = await self._start()
        return [self._network(nid, net) for nid, net in state["networks"].items()]

    # ======================================================================= peers and keys
    async def set_peers(self, network_id: str, peers: Sequence[Peer]) -> None:
        peers = list(peers)
        for p in peers:
            if not isinstance(p, Peer):
                raise InvalidArgument(f"not a Peer: {p!r}")
        async with self._lock:
            await self._start()
            net = self._record(network_id)
            subnet = ipaddress.IPv4Network(net["subnet"])
            seen: set[str] = set()
            for p in peers:
                if p.address not in subnet:
                    raise InvalidArgument(f"peer {p.address} is outside subnet {subnet}")
                if str(p.address) in seen:
                    raise InvalidArgument(f"two peers with address {p.address}")
                seen.add(str(p.address))
            old = self._remote(net)
            net["peers"] = [[str(p.address), p.mac, str(p.vtep)] for p in peers]
            self._save()
            if net["endpoints"]:
                vxlan = nl.device_names(self.tag, network_id)
                await self._net(self._host.program_peers, vxlan, old, self._remote(net))
                if net["encrypted"]:
                    await self._net(self._sync_xfrm)

    async def peers(self, network_id: str) -> list[Peer]:
        await self._start()
        return [Peer(*p) for p in self._record(network_id)["peers"]]

    async def set_keys(self, keys: Sequence[DataPathKey]) -> None:
        keys = list(keys)
        if not keys or not all(isinstance(k, DataPathKey) for k in keys):
            raise InvalidArgument("set_keys needs one DataPathKey or more (the first the primary)")
        if len({k.tag for k in keys}) != len(keys):
            raise InvalidArgument("two data path keys with one tag")
        async with self._lock:
            state = await self._start()
            state["keys"] = [{"key": k.key.hex(), "tag": k.tag} for k in keys]
            self._save()
            await self._net(self._sync_xfrm)

    # ======================================================================= endpoints
    def _pick(self, net: dict[str, Any], request: EndpointRequest) -> ipaddress.IPv4Address:
        subnet = ipaddress.IPv4Network(net["subnet"])
        gateway = ipaddress.IPv4Address(net["gateway"])
        taken = {ep["address"] for ep in net["endpoints"].values()}
        taken.update(p[0] for p in self._remote(net))  # the node's own may be listed first
        reserved = {str(gateway), *net["aux"].values()}
        if request.address is not None:
            a = request.address
            if a not in subnet or a in (subnet.network_address, subnet.broadcast_address, gateway):
                raise InvalidArgument(f"invalid address {a}: not a free host address of {subnet}")
            if str(a) in taken:
                raise Conflict(f"Address already in use: {a}")
            return a
        pool = ipaddress.IPv4Network(net["ip_range"]) if net["ip_range"] else subnet
        for a in pool.hosts():
            if a in subnet and str(a) not in taken and str(a) not in reserved:
                return a
        raise Unavailable(f"no free address in {pool}")

    async def join(self, network_id: str, endpoint_id: str, netns_path: str,
                   request: EndpointRequest | None = None) -> Endpoint:
        _check_id(endpoint_id, "endpoint id")
        request = request or EndpointRequest()
        if request.address6 is not None:
            raise InvalidArgument("the overlay driver does not support IPv6 yet")
        async with self._lock:
            await self._start()
            net = self._record(network_id)
            if endpoint_id in net["endpoints"]:
                raise AlreadyExists(f"endpoint {endpoint_id} already exists in network "
                                    f"{net['name'] or network_id[:12]}")
            if not os.path.exists(netns_path):
                raise NotFound(f"network namespace {netns_path} does not exist")
            address = self._pick(net, request)
            mac = request.mac or mac_for_address(address)
            first = not net["endpoints"]
            vxlan = nl.device_names(self.tag, network_id)
            subnet = ipaddress.IPv4Network(net["subnet"])
            try:
                if first:
                    await self._net(self._ensure, network_id, net)
                await self._net(lambda: self._host.attach_endpoint(
                    vxlan=vxlan, netns_path=netns_path, ifname=request.interface_name, mac=mac,
                    address=ipaddress.IPv4Interface(f"{address}/{subnet.prefixlen}"),
                    mtu=net["mtu"]))
            except BaseException:
                if first:
                    with trio.CancelScope(shield=True):
                        await self._net(self._host.remove_overlay, vxlan)
                raise
            net["endpoints"][endpoint_id] = {"netns": netns_path, "ifname": request.interface_name,
                                             "address": str(address), "mac": mac}
            self._save()
            if first and net["encrypted"]:
                await self._net(self._sync_xfrm)
            return self._endpoint(network_id, net, endpoint_id)

    async def leave(self, network_id: str, endpoint_id: str) -> None:
        async with self._lock:
            await self._start()
            net = self._record(network_id)
            ep = net["endpoints"].get(endpoint_id)
            if ep is None:
                raise NotFound(f"endpoint {endpoint_id} not found in network "
                               f"{net['name'] or network_id[:12]}")
            if len(net["endpoints"]) > 1:  # the last: its macvlan goes with the VXLAN device
                await self._net(self._host.detach_endpoint, ep["netns"], ep["ifname"])
            del net["endpoints"][endpoint_id]
            self._save()
            if not net["endpoints"]:
                await self._net(self._host.remove_overlay, nl.device_names(self.tag, network_id))
                if net["encrypted"]:
                    await self._net(self._sync_xfrm)

    async def endpoint(self, network_id: str, endpoint_id: str) -> Endpoint:
        await self._start()
        net = self._record(network_id)
        if endpoint_id not in net["endpoints"]:
            raise NotFound(f"endpoint {endpoint_id} not found")
        return self._endpoint(network_id, net, endpoint_id)

    async def endpoints(self, network_id: str) -> list[Endpoint]:
        await self._start()
        net = self._record(network_id)
        return [self._endpoint(network_id, net, eid) for eid in net["endpoints"]]

    async def publish(self, network_id: str, endpoint_id: str,
                      bindings: Sequence[PortBinding]) -> list[PortBinding]:
        await self.endpoint(network_id, endpoint_id)
        raise InvalidArgument("the overlay driver publishes no ports: swarm services publish "
                              "through the routing mesh (ingress) or in host mode")

    async def aclose(self) -> None:
        """Close the netlink socket and its thread; the data path stays on the host."""
        self._closed = True
        thread, self._thread = self._thread, None
        host, self._host = self._host, None
        if thread is not None:
            await trio.to_thread.run_sync(thread.close, host.close if host is not None else None)
