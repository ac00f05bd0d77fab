"""Swarm-scoped networks: docker's overlay networks (and the ``ingress`` network) as cluster
objects in etcd, with their allocation (VNI, subnet) and the addresses of their endpoints.

The managers own them (moby's ``daemon/cluster/networks.go`` + swarmkit's ``controlapi`` and
``allocator``); the data plane (``drivers/net_overlay``) builds a node's devices from them when a
task or an attachable container lands there.  The keys (beside :mod:`core.engine.swarm.store`'s)::

    /swarm/networks/<id>                docker's Network object (what ``GET /networks`` shows, in
                                        the store's shape: ``ID``, ``CreatedAt``...) with
                                        ``"Allocation": {"VNI": 4097, "Subnets": [{"Subnet",
                                        "Gateway"}]}``
    /swarm/ipam/networks                the allocations' sequence: every network create and remove
                                        is a transaction that compares and bumps it, so two managers
                                        creating networks at once can never pick the same VNI,
                                        subnet or name (the loser re-reads and picks again)
    /swarm/ipam/addresses/<net>/<ip>    an endpoint's address, its value the owner (a task ID, a
                                        container ID, ``vip:<service ID>``): created only if absent,
                                        so an address is unique across the swarm under any number of
                                        concurrent allocators

Allocation follows docker: VNIs from 4096 up (the lowest free one); subnets the first free
``SubnetSize`` block of the swarm's ``DefaultAddrPool`` (``swarm init --default-addr-pool``,
``--default-addr-pool-mask-length``; docker's default ``10.0.0.0/8`` in /24s), so the ingress
network made at ``swarm init`` gets ``10.0.0.0/24``; or ``--subnet``, refused when it overlaps
another swarm network's (docker's ``invalid pool request: Pool overlaps with other one on this
address space``).  The gateway is the subnet's first address unless ``--gateway`` says otherwise.

:class:`AddressAllocator` is what the leader's loops call when they create tasks (and what
service VIPs and attachable containers will use)::

    allocator = AddressAllocator(store)               # in a leader loop: ``loop(store)``'s store
    address = await allocator.allocate(network_id, task_id)     # "10.0.1.5/24"
    await allocator.release(network_id, address, task_id)
    # or a whole task at once: its NetworksAttachments in docker's shape
    task["NetworksAttachments"] = await allocator.attach(spec_networks, task_id, ingress=publishes)
    await allocator.detach(task["NetworksAttachments"], task_id)      # when the task is gone

:class:`SwarmNetworks` is the swarm side of the engine's networks API: the network service
(:class:`core.engine.networks.service.NetworkManager`) hands it every swarm-scoped operation
through :class:`core.engine.interfaces.ClusterNetworks`.  Managers answer from etcd; a worker asks
a manager (the swarm channel's ``networks.node`` call) for the networks it should show: the
ingress network and those its tasks use (docker's behaviour), and remembers them until it leaves.
"""
from __future__ import annotations

import contextlib
import ipaddress
import json
import logging
from collections.abc import Awaitable, Callable
from typing import TYPE_CHECKING, Any

import trio

from core import errors
from core.engine.filters import label_match, matches, until
from core.engine.swarm.etcd import Compare, Delete, Get, Put
from core.engine.swarm.store import (NETWORKS, NODES, PREFIX, SERVICES, TASKS, TXN_OPS, Decoded, Store,
                                     now_text, time_ns)
from core.engine.swarm.tasks import TERMINAL

if TYPE_CHECKING:
    from core.engine.swarm.service import SwarmService
    from core.engine.swarm.transport import Peer, Server

log = logging.getLogger("core.engine.swarm.networks")

IPAM = PREFIX + "ipam/"
SEQUENCE_KEY = IPAM + "networks"
ADDRESSES = IPAM + "addresses/"
NAMES = IPAM + "names/"   # <net>/<ip>: {"owner", "names"} of a node's attached container (its DNS)
VNI_FIRST = 4096          # docker's first overlay VNI
VNI_LAST = (1 << 24) - 1
VXLAN_OPTION = "com.docker.network.driver.overlay.vxlanid_list"
MTU_OPTION = "com.docker.network.driver.mtu"
INGRESS_NAME = "ingress"
INGRESS_SANDBOX = "ingress-sbox"   # the owner <node>/ingress-sbox: a node's routing-mesh endpoint
ATTEMPTS = 50             # lost races of one create / one allocation before giving up

# docker's words (moby's daemon/network.go, libnetwork's ipam, swarmkit's controlapi)
ERR_NOT_MANAGER = ('This node is not a swarm manager. Use "docker swarm init" or "docker swarm join" '
                   "to connect this node to swarm and try again.")
ERR_WORKER = ("This node is not a swarm manager. Worker nodes can't be used to view or modify "
              "cluster state. Please run this command on a manager node or promote the current "
              "node to a manager.")
ERR_OVERLAP = "invalid pool request: Pool overlaps with other one on this address space"


def _address_key(network_id: str, ip: str) -> str:
    return f"{ADDRESSES}{network_id}/{ip}"


def _freed(address_key: str) -> list[Delete]:
    """What freeing an address deletes: its key and the DNS names recorded with it (a holder's
    names must not come back with the address's next holder)."""
    return [Delete(address_key), Delete(NAMES + address_key[len(ADDRESSES):])]


def _subnets(net: dict[str, Any]) -> list[ipaddress.IPv4Network | ipaddress.IPv6Network]:
    return [ipaddress.ip_network(c["Subnet"]) for c in net.get("Allocation", {}).get("Subnets", [])]


def in_use_message(net: dict[str, Any], services: list[dict[str, Any]],
                   tasks: list[dict[str, Any]]) -> str | None:
    """Why the network cannot go (swarmkit's ``removeNetwork``), or None: a service that names it
    (for ingress: a service publishing a port in ingress mode), a task still using it."""
    nid = net["ID"]
    for svc in services:
        if net.get("Ingress"):
            ports = (svc.get("Spec", {}).get("EndpointSpec") or {}).get("Ports") or []
            if any((p.get("PublishMode") or "ingress") == "ingress" and p.get("PublishedPort")
                   for p in ports):
                return f"ingress network cannot be removed because service {svc['ID']} depends on it"
        elif nid in service_networks(svc):
            return f"network {nid} is in use by service {svc['ID']}"
    for task in tasks:
        if nid in task_networks(task) and task.get("Status", {}).get("State") not in TERMINAL:
            return f"network {nid} is in use by task {task['ID']}"
    return None


def service_networks(svc: dict[str, Any]) -> set[str]:
    """The network IDs a service's spec names (``TaskTemplate.Networks`` and the old
    ``Spec.Networks``)."""
    spec = svc.get("Spec", {})
    nets = list((spec.get("TaskTemplate") or {}).get("Networks") or []) + list(spec.get("Networks") or [])
    return {n.get("Target", "") for n in nets if isinstance(n, dict)}


def task_networks(task: dict[str, Any]) -> set[str]:
    """The network IDs a task is attached to (its ``NetworksAttachments``, else its spec's)."""
    out = {(a.get("Network") or {}).get("ID", "") for a in task.get("NetworksAttachments") or []}
    out |= {n.get("Target", "") for n in (task.get("Spec") or {}).get("Networks") or []
            if isinstance(n, dict)}
    out.discard("")
    return out


def _go_time(text: str) -> str:
    """Go's RFC3339Nano: the fraction without trailing zeros."""
    head, dot, frac = text.rstrip("Z").partition(".")
    frac = frac.rstrip("0")
    return f"{head}.{frac}Z" if frac else f"{head}Z"


def render(net: dict[str, Any], *, peers: list[dict[str, str]] | None = None) -> dict[str, Any]:
    """docker's Network object (``GET /networks``, ``network inspect``) of a stored network."""
    out = {
        "Name": net["Name"], "Id": net["ID"], "Created": _go_time(net["CreatedAt"]), "Scope": "swarm",
        "Driver": net.get("Driver", "overlay"), "EnableIPv4": True,
        "EnableIPv6": bool(net.get("EnableIPv6")),
        "IPAM": {"Driver": "default", "Options": net.get("IPAMOptions"),
                 "Config": [dict(c) for c in net.get("Allocation", {}).get("Subnets", [])]},
        "Internal": bool(net.get("Internal")), "Attachable": bool(net.get("Attachable")),
        "Ingress": bool(net.get("Ingress")), "ConfigFrom": {"Network": ""}, "ConfigOnly": False,
        "Containers": {}, "Options": dict(net.get("Options") or {}),
        "Labels": dict(net.get("Labels") or {}),
    }
    if peers:
        out["Peers"] = peers
    return out


def filtered(nets: list[dict[str, Any]], filters: dict[str, list[str]] | None) -> list[dict[str, Any]]:
    """Rendered networks that pass ``GET /networks``'s filters (already checked by the local
    catalog): swarm networks are custom ones and, having no local containers, dangling."""
    filters = filters or {}
    out = []
    for net in nets:
        if "driver" in filters and net["Driver"] not in filters["driver"]:
            continue
        if "scope" in filters and "swarm" not in filters["scope"]:
            continue
        if "name" in filters and not any(matches(v, net["Name"]) for v in filters["name"]):
            continue
        if "id" in filters and not any(matches(v, net["Id"]) for v in filters["id"]):
            continue
        if "label" in filters and not all(label_match(net["Labels"], v) for v in filters["label"]):
            continue
        if "type" in filters and "custom" not in filters["type"]:
            continue
        if "dangling" in filters and filters["dangling"][-1].lower() in ("false", "0"):
            continue
        out.append(net)
    return out


def swarm_object(net: dict[str, Any], version: int) -> dict[str, Any]:
    """docker's *swarm* Network object (what a task's ``NetworksAttachments[].Network`` holds):
    ``Spec`` as asked, ``DriverState`` and ``IPAMOptions`` as allocated."""
    configs = [dict(c) for c in net.get("Allocation", {}).get("Subnets", [])]
    user_options = {k: v for k, v in (net.get("Options") or {}).items() if k != VXLAN_OPTION}
    return {
        "ID": net["ID"], "Version": {"Index": version}, "CreatedAt": net.get("CreatedAt", ""),
        "UpdatedAt": net.get("UpdatedAt", net.get("CreatedAt", "")),
        "Spec": {"Name": net["Name"], "Labels": dict(net.get("Labels") or {}),
                 "DriverConfiguration": {"Name": "overlay", "Options": user_options},
                 "IPAMOptions": {"Driver": {"Name": "default"}, "Configs": configs},
                 "Scope": "swarm", "Internal": bool(net.get("Internal")),
                 "Attachable": bool(net.get("Attachable")), "Ingress": bool(net.get("Ingress"))},
        "DriverState": {"Name": "overlay",
                        "Options": {VXLAN_OPTION: str(net.get("Allocation", {}).get("VNI", ""))}},
        "IPAMOptions": {"Driver": {"Name": "default"}, "Configs": configs},
    }


def find(nets: list[dict[str, Any]], ref: str, key: str = "ID") -> dict[str, Any]:
    """A network by full ID, name, or unique ID prefix (docker's order); ``NotFound``."""
    for net in nets:
        if net[key] == ref:
            return net
    for net in nets:
        if net["Name"] == ref:
            return net
    found = [n for n in nets if n[key].startswith(ref)] if ref else []
    if len(found) == 1:
        return found[0]
    if len(found) > 1:
        raise errors.InvalidArgument(f"network {ref} is ambiguous ({len(found)} matches found "
                                     "based on ID prefix)")
    raise errors.NotFound(f"network {ref} not found")


# -- the request -----------------------------------------------------------------------------------

def parse_request(body: Any) -> dict[str, Any]:
    """A ``network create`` body for a swarm network, checked with docker's messages; the object
    without ``ID``, ``CreatedAt`` and ``Allocation``."""
    from core.engine.networks.validate import check_pool, str_map

    if not isinstance(body, dict):
        raise errors.InvalidArgument("network create: expected a JSON object")
    name = body.get("Name")
    if not isinstance(name, str) or not name.strip():
        raise errors.InvalidArgument("network name must not be empty")
    if any(c in name for c in "/\\\0") or name != name.strip():
        raise errors.InvalidArgument(f"invalid network name {name!r}")
    driver = body.get("Driver") or "overlay"
    if driver != "overlay":
        raise errors.InvalidArgument(f"invalid driver {driver!r} for a swarm-scoped network: "
                                     "core's swarm networks use the overlay driver")
    if body.get("EnableIPv6"):
        raise errors.InvalidArgument("IPv6 is not supported on overlay networks by core")
    if body.get("ConfigOnly") or (body.get("ConfigFrom") or {}).get("Network"):
        raise errors.InvalidArgument("config-only networks are not supported")
    ipam = body.get("IPAM") or {}
    if not isinstance(ipam, dict):
        raise errors.InvalidArgument("invalid IPAM: expected an object")
    if (ipam.get("Driver") or "default") != "default":
        raise errors.NotFound(f'plugin "{ipam["Driver"]}" not found')
    configs = ipam.get("Config") or []
    if not isinstance(configs, list) or not all(isinstance(c, dict) for c in configs):
        raise errors.InvalidArgument("invalid IPAM.Config: expected a list of objects")
    configs = [check_pool(c) for c in configs]
    if any(":" in c.get("Subnet", "") for c in configs):
        raise errors.InvalidArgument("IPv6 is not supported on overlay networks by core")
    if len(configs) > 1:
        raise errors.InvalidArgument("core's overlay networks have one IPv4 subnet")
    if configs and configs[0].get("Gateway") and not configs[0].get("Subnet"):
        raise errors.InvalidArgument("invalid network config:\na gateway needs a subnet (--subnet)")
    if configs and (configs[0].get("IPRange") or configs[0].get("AuxiliaryAddresses")):
        raise errors.InvalidArgument("--ip-range and --aux-address are not supported on overlay "
                                     "networks by core")
    options = str_map(body.get("Options"), "Options")
    if MTU_OPTION in options:
        try:
            mtu = int(options[MTU_OPTION])
        except ValueError:
            mtu = 0
        if not 68 <= mtu <= 65535:
            raise errors.InvalidArgument(f"invalid MTU {options[MTU_OPTION]!r}: expected a number "
                                         "from 68 to 65535")
    options.pop(VXLAN_OPTION, None)  # the managers choose the VNI
    return {"Name": name, "Driver": "overlay", "Scope": "swarm", "EnableIPv6": False,
            "IPAMOptions": (None if ipam.get("Options") is None
                            else str_map(ipam.get("Options"), "IPAM.Options")),
            "Requested": configs[0] if configs else {},
            "Internal": bool(body.get("Internal")), "Attachable": bool(body.get("Attachable")),
            "Ingress": bool(body.get("Ingress")), "Options": options,
            "Labels": str_map(body.get("Labels"), "Labels")}


# -- allocation ------------------------------------------------------------------------------------

def pick_vni(nets: list[dict[str, Any]]) -> int:
    used = {int(n.get("Allocation", {}).get("VNI", 0)) for n in nets}
    vni = VNI_FIRST
    while vni in used:
        vni += 1
    if vni > VNI_LAST:
        raise errors.Unavailable("no VXLAN ID left for another overlay network")
    return vni


def pick_subnet(nets: list[dict[str, Any]], pool: list[str], size: int,
                requested: dict[str, Any]) -> dict[str, str]:
    """The network's ``{"Subnet", "Gateway"}``: ``requested`` if it overlaps no other swarm
    network (``Forbidden`` otherwise, docker's message), else the first free block of the pool."""
    taken = [s for n in nets for s in _subnets(n)]
    if requested.get("Subnet"):
        subnet = ipaddress.ip_network(requested["Subnet"])
        if any(subnet.overlaps(t) for t in taken):
            raise errors.Forbidden(ERR_OVERLAP)
        if subnet.num_addresses < 4:
            raise errors.InvalidArgument(f"invalid network config:\nsubnet {subnet} is too small "
                                         "for an overlay network")
        gateway = requested.get("Gateway") or str(subnet.network_address + 1)
        return {"Subnet": str(subnet), "Gateway": gateway}
    for cidr in pool:
        block = ipaddress.ip_network(cidr)
        if block.version != 4 or size < block.prefixlen:
            continue
        for subnet in block.subnets(new_prefix=size):
            if not any(subnet.overlaps(t) for t in taken):
                return {"Subnet": str(subnet), "Gateway": str(subnet.network_address + 1)}
    raise errors.Unavailable("could not find an available, non-overlapping IPv4 address pool "
                             "among the swarm's default address pools")


async def create_network(store: Store, request: dict[str, Any]) -> dict[str, Any]:
    """Store a new swarm network (``request`` from :func:`parse_request`) with its allocation,
    in one transaction against :data:`SEQUENCE_KEY` (retried when another manager won the race).
    ``AlreadyExists`` for a taken name, ``Forbidden`` for an overlapping subnet."""
    request = dict(request)
    requested = request.pop("Requested", {}) or {}
    for _ in range(ATTEMPTS):
        seq = await store.etcd.get(SEQUENCE_KEY)
        seq_rev = seq.mod_revision if seq is not None else 0
        nets = [n for n, _v in await store.objects(NETWORKS)]
        if any(n["Name"] == request["Name"] for n in nets):
            raise errors.AlreadyExists(f"network with name {request['Name']} already exists")
        record = await store.cluster()
        pool = record.cluster.get("DefaultAddrPool") or ["10.0.0.0/8"]
        size = int(record.cluster.get("SubnetSize") or 24)
        subnet = pick_subnet(nets, pool, size, requested)
        vni = pick_vni(nets)
        net_id = new_id()
        t = now_text()
        obj = {"ID": net_id, **request, "CreatedAt": t, "UpdatedAt": t,
               "Options": {**request.get("Options", {}), VXLAN_OPTION: str(vni)},
               "Allocation": {"VNI": vni, "Subnets": [subnet]}}
        result = await store.etcd.txn(
            [Compare("mod", SEQUENCE_KEY, "==", seq_rev), Compare("create", NETWORKS + net_id, "==", 0)],
            [Put(SEQUENCE_KEY, net_id), Put(NETWORKS + net_id, json.dumps(obj))])
        if result.succeeded:
            return obj
    raise errors.Unavailable("could not allocate the network: too many concurrent changes, "
                             "try again")


async def delete_network(store: Store, net_id: str) -> None:
    """Remove a network's object, its addresses and their names (one transaction, bumping the
    sequence)."""
    await store.etcd.txn([], [Delete(NETWORKS + net_id), Delete(f"{ADDRESSES}{net_id}/", prefix=True),
                              Delete(f"{NAMES}{net_id}/", prefix=True), Put(SEQUENCE_KEY, net_id)])


def new_id() -> str:
    """Swarmkit's IDs: 25 characters of base 36 (``network ls`` shows the first 12)."""
    from core.engine.swarm.tasks import new_task_id

    return new_task_id()


class AddressAllocator:
    """Endpoint addresses of swarm networks, unique across the swarm (see the module docstring).

    Every call is safe to run on several managers at once: an address is taken by creating its
    key only if it is absent, and a network that is removed meanwhile makes the transaction fail.
    """

    def __init__(self, store: Store) -> None:
        self.store = store

    async def addresses(self, network_id: str) -> dict[str, str]:
        """The network's taken addresses: ``{ip: owner}``."""
        prefix = f"{ADDRESSES}{network_id}/"
        return {kv.key[len(prefix):]: kv.value.decode() for kv in await self.store.etcd.get_prefix(prefix)}

    async def allocate(self, network_id: str, owner: str, *, address: str | None = None) -> str:
        """An address of the network for ``owner`` (a task ID, a container ID, ``vip:<service>``),
        as ``"ip/prefixlen"``: the lowest free one (not the network's, the broadcast or the
        gateway), or ``address`` when given (``Conflict`` if another owner holds it).  An owner
        that already holds an address of the network gets it again (allocation is idempotent:
        a leader that failed half-way may ask again).  ``NotFound``: no such network;
        ``Unavailable``: the subnet is full."""
        for _ in range(ATTEMPTS):
            found = await self.store.get(NETWORKS, network_id)
            if found is None:
                raise errors.NotFound(f"network {network_id} not found")
            net, _version = found
            subnet = _subnets(net)[0]
            gateway = net["Allocation"]["Subnets"][0].get("Gateway", "")
            taken = await self.addresses(network_id)
            for ip, holder in taken.items():
                if holder == owner and (address is None or ip == address):
                    return f"{ip}/{subnet.prefixlen}"
            if address is not None:
                ip = ipaddress.ip_address(address)
                if ip not in subnet:
                    raise errors.InvalidArgument(f"address {address} is not in the network's "
                                                 f"subnet {subnet}")
                if address in taken or address == gateway:
                    raise errors.Conflict(f"address {address} is already in use on network "
                                          f"{net['Name']}")
                candidate: str | None = str(ip)
            else:
                candidate = None
                for host in subnet.hosts():
                    text = str(host)
                    if text not in taken and text != gateway:
                        candidate = text
                        break
                if candidate is None:
                    raise errors.Unavailable(f"no available IPv4 addresses on network "
                                             f"{net['Name']} ({subnet})")
            key = _address_key(network_id, candidate)
            result = await self.store.etcd.txn(
                [Compare("create", key, "==", 0), Compare("create", NETWORKS + network_id, "!=", 0)],
                [Put(key, owner)])
            if result.succeeded:
                return f"{candidate}/{subnet.prefixlen}"
        raise errors.Unavailable("could not allocate an address: too many concurrent allocations, "
                                 "try again")

    async def release(self, network_id: str, address: str, owner: str | None = None) -> bool:
        """Give an address back (``"ip"`` or ``"ip/prefixlen"``); with ``owner``, only if that
        owner holds it.  False if it was not taken (by ``owner``)."""
        key = _address_key(network_id, address.split("/", 1)[0])
        compare = [Compare("value", key, "==", owner)] if owner is not None else \
            [Compare("create", key, "!=", 0)]
        result = await self.store.etcd.txn(compare, _freed(key))
        return result.succeeded

    async def attach(self, targets: list[Any], owner: str, *, ingress: bool = False
                     ) -> list[dict[str, Any]]:
        """A task's ``NetworksAttachments``: for each target (a ``NetworkAttachmentConfig`` or
        its ``Target``: a network name, ID or ID prefix) docker's ``{"Network": <swarm Network
        object>, "Addresses": ["ip/prefix"]}``, with ``ingress`` the ingress network first (a task
        of a service publishing ports in ingress mode).  All or nothing: on an error the
        addresses taken are given back.  ``NotFound``: ``network X not found``."""
        stored = await self.store.objects(NETWORKS)
        chosen: list[tuple[dict[str, Any], int]] = []
        if ingress:
            chosen += [(n, v) for n, v in stored if n.get("Ingress")]
            if not chosen:
                raise errors.NotFound("the swarm has no ingress network")
        versions = {n["ID"]: v for n, v in stored}
        for target in targets:
            ref = target.get("Target", "") if isinstance(target, dict) else str(target)
            net = find([n for n, _v in stored], ref)
            if all(net["ID"] != c["ID"] for c, _v in chosen):
                chosen.append((net, versions[net["ID"]]))
        out: list[dict[str, Any]] = []
        try:
            for net, version in chosen:
                address = await self.allocate(net["ID"], owner)
                out.append({"Network": swarm_object(net, version), "Addresses": [address]})
        except BaseException:
            with trio.CancelScope(shield=True):
                await self.detach(out, owner)
            raise
        return out

    async def detach(self, attachments: list[dict[str, Any]], owner: str) -> None:
        """Give back the addresses of a task's ``NetworksAttachments`` (those ``owner`` holds)."""
        for att in attachments or []:
            net_id = (att.get("Network") or {}).get("ID", "")
            for address in att.get("Addresses") or []:
                if net_id:
                    await self.release(net_id, address, owner)

    async def release_owner(self, owner: str) -> int:
        """Give back every address ``owner`` holds on any network; returns how many."""
        n = 0
        for kv in await self.store.etcd.get_prefix(ADDRESSES):
            if kv.value.decode() == owner:
                result = await self.store.etcd.txn([Compare("value", kv.key, "==", owner)],
                                                   _freed(kv.key))
                n += result.succeeded
        return n


async def peers(store: Store, network_id: str) -> list[dict[str, Any]]:
    """The nodes a network spans: those with a task on it that has not finished, or with an
    attached container, each ``{"NodeID", "Name" (host name), "IP" (its underlay address),
    "Endpoints": [the network's addresses there]}``, sorted by name — what inspect's ``Peers``
    shows and what the overlay's forwarding entries follow."""
    tasks = {t["ID"]: t for t, _v in await store.objects(TASKS)}
    live = {tid for tid, t in tasks.items()
            if t.get("NodeID") and t.get("Status", {}).get("State") not in TERMINAL}
    by_node: dict[str, set[str]] = {}
    for tid in live:
        if network_id in task_networks(tasks[tid]):
            by_node.setdefault(tasks[tid]["NodeID"], set())
    for ip, owner in (await AddressAllocator(store).addresses(network_id)).items():
        if "/" in owner:  # a node's attachable container: "<node>/<container>"
            by_node.setdefault(owner.split("/", 1)[0], set()).add(ip)
        elif owner in live:
            by_node.setdefault(tasks[owner]["NodeID"], set()).add(ip)
    out = []
    for node, _v in await store.nodes():
        if node["ID"] in by_node:
            out.append({"NodeID": node["ID"],
                        "Name": node.get("Description", {}).get("Hostname", node["ID"]),
                        "IP": vtep(node),
                        "Endpoints": sorted(by_node[node["ID"]], key=ipaddress.ip_address)})
    return sorted(out, key=lambda p: (p["Name"], p["NodeID"]))


def vtep(node: dict[str, Any]) -> str:
    """A node's underlay address for overlay traffic: its ``--data-path-addr`` if it gave one,
    else the address its session comes from (``Status.Addr``)."""
    return node.get("DataPathAddr") or (node.get("Status") or {}).get("Addr", "")


async def endpoints_of(store: Store, network_id: str,
                       tasks: dict[str, dict[str, Any]] | None = None,
                       node_records: Decoded | None = None) -> list[dict[str, Any]]:
    """The network's endpoints across the swarm, for the nodes' data path and embedded DNS:
    ``[{"Address": ip, "NodeID", "VTEP": the node's address, "Names": [DNS names]}]`` — the
    attached containers of nodes (owner ``<node>/<container>``) and the live tasks; service
    VIPs and finished tasks are left out.  ``tasks``: the assigned tasks by ID when the caller
    has them (the dispatcher's index); else every task is read from the store.
    ``node_records``: the caller's :class:`~core.engine.swarm.store.Decoded` node records."""
    if tasks is None:
        tasks = {t["ID"]: t for t, _v in await store.objects(TASKS)}
    nodes = {n["ID"]: n for n, _v in (await node_records.objects(store) if node_records is not None
                                      else await store.nodes())}
    names: dict[str, list[str]] = {}
    prefix = f"{NAMES}{network_id}/"
    for kv in await store.etcd.get_prefix(prefix):
        with contextlib.suppress(ValueError, AttributeError):
            names[kv.key[len(prefix):]] = list(json.loads(kv.value).get("names") or [])
    out = []
    for ip, owner in (await AddressAllocator(store).addresses(network_id)).items():
        if owner.startswith("vip:"):
            continue
        if "/" in owner:
            node_id = owner.split("/", 1)[0]
        else:
            task = tasks.get(owner)
            if task is None or not task.get("NodeID") or \
                    task.get("Status", {}).get("State") in TERMINAL:
                continue
            node_id = task["NodeID"]
        node = nodes.get(node_id)
        if node is None or not vtep(node):
            continue
        out.append({"Address": ip, "NodeID": node_id, "VTEP": vtep(node),
                    "Names": names.get(ip, [])})
    return sorted(out, key=lambda e: ipaddress.ip_address(e["Address"]))


async def orphan_addresses(store: Store) -> dict[str, int]:
    """Address keys whose owner is gone, with their ``mod_revision``: a task that no longer
    exists or has finished (swarmkit frees a task's addresses when it ends), a ``<node>/<container>``
    of a node removed from the swarm, a ``vip:<service>`` of a removed service."""
    addresses = await store.etcd.get_prefix(ADDRESSES)
    # only the tasks holding addresses are read (not ten thousand tasks every pass)
    owners = sorted({kv.value.decode() for kv in addresses} - {""})
    task_ids = [o for o in owners if not o.startswith("vip:") and "/" not in o]
    tasks: dict[str, dict[str, Any]] = {}
    for i in range(0, len(task_ids), TXN_OPS):
        chunk = task_ids[i:i + TXN_OPS]
        result = await store.etcd.txn([], [Get(TASKS + t) for t in chunk])
        for task_id, found in zip(chunk, result.responses):
            if found:
                tasks[task_id] = found[0].json()
    nodes = {n["ID"] for n, _v in await store.nodes()}
    services = {s["ID"] for s, _v in await store.objects(SERVICES)}
    out = {}
    for kv in addresses:
        owner = kv.value.decode()
        if owner.startswith("vip:"):
            gone = owner[4:] not in services
        elif "/" in owner:
            gone = owner.split("/", 1)[0] not in nodes
        else:
            task = tasks.get(owner)
            gone = task is None or task.get("Status", {}).get("State") in TERMINAL
        if gone:
            out[kv.key] = kv.mod_revision
    return out


async def reap_addresses_once(store: Store, candidates: dict[str, int]) -> dict[str, int]:
    """One pass of :func:`reap_addresses`: frees the orphans that already were orphans, unchanged,
    at the previous pass (``candidates``; an address allocated just before its task is written
    is never taken for an orphan), and returns this pass's new candidates."""
    found = await orphan_addresses(store)
    for key, revision in found.items():
        if candidates.get(key) == revision:
            await store.etcd.txn([Compare("mod", key, "==", revision)], _freed(key))
    return {k: r for k, r in found.items() if candidates.get(k) != r}


async def reap_addresses(store: Store, *, period: float = 30.0) -> None:
    """A leader loop: every ``period`` seconds, free the addresses whose owner is gone
    (:func:`orphan_addresses`) that were already orphaned a pass earlier — the safety net behind
    :meth:`AddressAllocator.detach` (a leader that died between a task's end and its release)."""
    candidates: dict[str, int] = {}
    while True:
        candidates = await reap_addresses_once(store, candidates)
        await trio.sleep(period)


# -- the API's side --------------------------------------------------------------------------------

class SwarmNetworks:
    """The swarm's networks for the engine's networks API (a
    :class:`core.engine.interfaces.ClusterNetworks`), on the node's :class:`SwarmService`."""

    def __init__(self, swarm: SwarmService) -> None:
        self.swarm = swarm
        #: a worker's last answer from its manager: the networks it shows (``{id: object}``)
        self._known: dict[str, dict[str, Any]] = {}
        self._leave_hooks: list[Callable[[], Awaitable[None]]] = []
        self._push_hooks: list[Callable[[dict[str, Any]], None]] = []
        self._node_records = Decoded(NODES)  # (each node decoded once per version)

    def active(self) -> bool:
        """Whether this node is in a swarm (its swarm networks exist for it)."""
        return self.swarm.local is not None and self.swarm.state in ("active", "pending")

    def _manager(self) -> Store:
        if self.swarm.local is None or self.swarm.local.get("Role") != "manager":
            raise errors.Forbidden(ERR_NOT_MANAGER)
        return self.swarm._require_manager()

    def allocator(self) -> AddressAllocator:
        """The address allocator over this manager's store (for the leader's loops)."""
        return AddressAllocator(self._manager())

    # -- reads ----------------------------------------------------------------------------------

    async def _objects(self) -> list[dict[str, Any]]:
        """The swarm networks this node shows: every one on a manager; on a worker those its
        manager says it has (ingress, those of its tasks), the last answer when none answers."""
        if not self.active():
            return []
        if self.swarm.local.get("Role") == "manager":
            store = self.swarm._require_manager()
            return [n for n, _v in await store.objects(NETWORKS)]
        client = self.swarm.client
        if client is not None:
            with contextlib.suppress(errors.CoreError), trio.move_on_after(5):
                answer = await client.call("networks.node")
                self._known = {n["ID"]: n for n in answer.get("networks") or []}
        return list(self._known.values())

    async def _peers(self, net: dict[str, Any]) -> list[dict[str, str]]:
        """``Peers``: the nodes with a task or an attached container on the network (host name
        and address), as known (a manager's answer; ``[]`` on a worker)."""
        if self.swarm.local is None or self.swarm.local.get("Role") != "manager":
            return []
        found = await peers(self.swarm._require_manager(), net["ID"])
        return [{"Name": p["Name"], "IP": p["IP"]} for p in found]

    async def list_networks(self, filters: dict[str, list[str]] | None = None) -> list[dict[str, Any]]:
        """``GET /networks``' swarm part (``[]`` outside a swarm)."""
        return filtered([render(n) for n in await self._objects()], filters)

    async def inspect_network(self, ref: str) -> dict[str, Any]:
        """``network inspect`` of a swarm network; ``NotFound`` (docker's words)."""
        net = find(await self._objects(), ref)
        return render(net, peers=await self._peers(net))

    async def names(self) -> set[str]:
        """The names of the swarm's networks (a local network may not take one), on a manager."""
        if not self.active() or self.swarm.local.get("Role") != "manager":
            return set()
        return {n["Name"] for n in await self._objects()}

    # -- changes --------------------------------------------------------------------------------

    async def create_network(self, body: dict[str, Any], *, taken: set[str] = frozenset()) -> dict[str, str]:
        """``POST /networks/create`` of an overlay network, on a manager (``Forbidden`` with
        docker's message elsewhere); ``taken``: the names of the node's local networks."""
        store = self._manager()
        request = parse_request(body)
        if request["Name"] in taken:
            raise errors.AlreadyExists(f"network with name {request['Name']} already exists")
        if request["Ingress"]:
            nets = [n for n, _v in await store.objects(NETWORKS)]
            if any(n.get("Ingress") for n in nets):
                raise errors.Forbidden("ingress network already exists")
        obj = await create_network(store, request)
        return {"Id": obj["ID"], "Warning": ""}

    async def remove_network(self, ref: str) -> dict[str, Any]:
        """``DELETE /networks/{id}`` of a swarm network: refused while a service or a task uses
        it (swarmkit's messages); returns the removed object.  On a worker, a network it shows
        is refused with docker's words for workers, another is not found."""
        if self.active() and self.swarm.local.get("Role") != "manager":
            find(await self._objects(), ref)
            raise errors.Unavailable(ERR_WORKER)
        store = self._manager()
        net = find([n for n, _v in await store.objects(NETWORKS)], ref)
        services = [s for s, _v in await store.objects(SERVICES)]
        tasks = [t for t, _v in await store.objects(TASKS)]
        why = in_use_message(net, services, tasks)
        if why is not None:
            raise errors.InvalidArgument(f"rpc error: code = FailedPrecondition desc = {why}")
        await delete_network(store, net["ID"])
        return net

    async def prune(self, filters: dict[str, list[str]] | None = None) -> list[str]:
        """``POST /networks/prune``'s swarm part, on a manager (moby's ``clusterNetworksPrune``):
        every swarm network no service or task uses, except ingress (removed only when asked);
        returns the names removed."""
        if not self.active() or self.swarm.local.get("Role") != "manager":
            return []
        filters = filters or {}
        before = until(filters["until"][-1]) if filters.get("until") else None
        store = self.swarm._require_manager()
        services = [s for s, _v in await store.objects(SERVICES)]
        tasks = [t for t, _v in await store.objects(TASKS)]
        removed = []
        for net, _v in await store.objects(NETWORKS):
            if net.get("Ingress"):
                continue
            if before is not None and (time_ns(net.get("CreatedAt")) or 0) >= before:
                continue
            labels = net.get("Labels") or {}
            if "label" in filters and not all(label_match(labels, v) for v in filters["label"]):
                continue
            if "label!" in filters and any(label_match(labels, v) for v in filters["label!"]):
                continue
            if in_use_message(net, services, tasks) is None:
                await delete_network(store, net["ID"])
                removed.append(net["Name"])
        return removed

    # -- the node's side ------------------------------------------------------------------------

    async def create_ingress(self, store: Store) -> dict[str, Any]:
        """``swarm init``: the routing mesh's network, ``ingress`` (docker's: the first block of
        the default address pool, ``10.0.0.0/24`` by default; VNI 4096)."""
        return await create_network(store, {
            "Name": INGRESS_NAME, "Driver": "overlay", "Scope": "swarm", "EnableIPv6": False,
            "IPAMOptions": None, "Requested": {}, "Internal": False, "Attachable": False,
            "Ingress": True, "Options": {}, "Labels": {}})

    def install(self, server: Server) -> None:
        """A manager's swarm channel serves ``networks.node`` (the networks a node shows),
        ``networks.attach`` and ``networks.detach`` (a node's container on an attachable
        network: its address, given by a manager)."""
        from core.engine.swarm.transport import Access

        server.register("networks.node", self._node_networks, access=Access.NODE)
        server.register("networks.attach", self._attach, access=Access.NODE)
        server.register("networks.detach", self._detach, access=Access.NODE)
        server.register("networks.peers", self._peers_call, access=Access.NODE)

    async def _node_networks(self, peer: Peer, args: dict) -> dict:
        store = self.swarm._store()
        node_id = peer.node_id
        mine: set[str] = set()
        for task, _v in await store.objects(TASKS):
            if task.get("NodeID") == node_id and task.get("Status", {}).get("State") not in TERMINAL:
                mine |= task_networks(task)
        for kv in await store.etcd.get_prefix(ADDRESSES):  # its attachable containers
            if kv.value.decode().startswith(f"{node_id}/"):
                mine.add(kv.key[len(ADDRESSES):].split("/", 1)[0])
        nets = [n for n, _v in await store.objects(NETWORKS) if n.get("Ingress") or n["ID"] in mine]
        return {"networks": nets}

    async def _attach(self, peer: Peer, args: dict) -> dict:
        ref, container = str(args.get("network") or ""), str(args.get("container") or "")
        if not ref or not container:
            raise errors.InvalidArgument("networks.attach: network and container are required")
        store = self.swarm._store()
        stored = await store.objects(NETWORKS)
        net = find([n for n, _v in stored], ref)
        sandbox = bool(args.get("ingress")) and net.get("Ingress") and container == INGRESS_SANDBOX
        if not net.get("Attachable") and not sandbox:  # the node's ingress sandbox may join ingress
            raise errors.Forbidden(f"Could not attach to network {ref}: rpc error: code = "
                                   f"PermissionDenied desc = network {ref} not manually attachable")
        version = next(v for n, v in stored if n["ID"] == net["ID"])
        owner = f"{peer.node_id}/{container}"
        wanted = args.get("address") or None  # run --ip / network connect --ip
        if wanted is not None:
            try:
                wanted = str(ipaddress.IPv4Address(str(wanted)))
            except ValueError:
                raise errors.InvalidArgument(f"invalid IPv4 address: {args['address']!r}") from None
        try:
            address = await AddressAllocator(store).allocate(net["ID"], owner,  # idempotent
                                                             address=wanted)
        except errors.Conflict:  # libnetwork's IPAM words
            raise errors.Conflict(f"Address already in use: {wanted} on network "
                                  f"{net.get('Name') or ref}") from None
        names = args.get("names")
        if isinstance(names, list) and all(isinstance(n, str) for n in names):
            await store.etcd.put(f"{NAMES}{net['ID']}/{address.split('/', 1)[0]}",
                                 json.dumps({"owner": owner, "names": names}))
        return {"Network": swarm_object(net, version), "Addresses": [address]}

    async def _peers_call(self, peer: Peer, args: dict) -> dict:
        """``networks.peers``: every endpoint of a network with the node it lives on, and its
        services' DNS records and VIP backends — ``{"peers": [{"Address", "NodeID", "VTEP",
        "Names"}], "names": {name: [ip]}, "backends": {vip: [ip]}, "revision": <etcd revision the
        state is at least as new as>}`` (see :func:`endpoints_of`
        and :func:`core.engine.swarm.vip.service_records`)."""
        from core.engine.swarm.vip import service_records

        network = str(args.get("network") or "")
        if not network:
            raise errors.InvalidArgument("networks.peers: network is required")
        store = self.swarm._store()
        revision = await store.revision()  # the state below is at least as new as this
        # the tasks from the dispatcher's index when it has read them (a watch, not a read of
        # every task per call: each node asks once a second per network)
        dispatcher = getattr(self.swarm, "dispatcher", None)
        tasks = dispatcher.assignments.tasks() if dispatcher is not None else None
        if tasks is not None:  # the index is as new as its watch: the answer no newer than it
            revision = min(revision, dispatcher.assignments.revision)
        else:  # read once for both below
            tasks = {t["ID"]: t for t, _v in await store.objects(TASKS)}
        return {"peers": await endpoints_of(store, network, tasks, self._node_records),
                **await service_records(store, network, tasks), "revision": revision}

    async def _detach(self, peer: Peer, args: dict) -> dict:
        network, container = str(args.get("network") or ""), str(args.get("container") or "")
        alloc = AddressAllocator(self.swarm._store())
        owner = f"{peer.node_id}/{container}"
        for ip, holder in (await alloc.addresses(network)).items():
            if holder == owner:
                await alloc.release(network, ip, owner)  # its names with it
        return {}

    async def attach_container(self, ref: str, container_id: str, *,
                               names: list[str] | None = None,
                               address: str | None = None) -> dict[str, Any]:
        """A local container joins an attachable swarm network (``run --network``, ``network
        connect``): ``{"Network": <swarm Network object>, "Addresses": ["ip/prefix"]}``, the
        address given by a manager (the ``networks.attach`` call; owner ``<node>/<container>``),
        ``address`` if the container asks for one (``--ip``: reserved swarm-wide; ``Conflict``
        ``Address already in use`` when another holds it, ``InvalidArgument`` outside the subnet).
        Asking again gives the same address; ``names`` (the container's DNS names on the
        network) are recorded for the other nodes' embedded DNS.  ``NotFound`` outside a swarm
        or for an unknown network; ``Forbidden``: not attachable (docker's words)."""
        if not self.active() or self.swarm.client is None:
            raise errors.NotFound(f"network {ref} not found")
        args: dict[str, Any] = {"network": ref, "container": container_id}
        if container_id == INGRESS_SANDBOX:
            args["ingress"] = True
        if names is not None:
            args["names"] = list(names)
        if address:
            args["address"] = address
        return await self.swarm.client.call("networks.attach", **args)

    async def detach_container(self, network_id: str, container_id: str) -> None:
        """The container left the network (or went): its address is given back."""
        if self.active() and self.swarm.client is not None:
            await self.swarm.client.call("networks.detach", network=network_id, container=container_id)

    def data_address(self) -> str | None:
        """The node's underlay address for overlay traffic (its ``--data-path-addr``, else its
        advertise address' IP), or None outside a swarm."""
        if self.swarm.local is None:
            return None
        if self.swarm.local.get("DataPathAddr"):
            return self.swarm.local["DataPathAddr"]
        addr = self.swarm.local.get("AdvertiseAddr") or ""
        return addr.rsplit(":", 1)[0].strip("[]") or None

    def data_port(self) -> int:
        """The swarm's VXLAN UDP port (``swarm init --data-path-port``, default 4789)."""
        return int((self.swarm.local or {}).get("DataPathPort") or 4789)

    async def network_state(self, network_id: str) -> dict[str, Any]:
        """A swarm network across the swarm, as a manager knows it (the ``networks.peers``
        call): ``{"peers": [{"Address", "NodeID", "VTEP", "Names"}], "names": {service DNS
        name: [ip]}, "backends": {vip: [task ip]}, "revision": <etcd revision>}``.
        ``Unavailable`` when no manager answers."""
        if not self.active() or self.swarm.client is None:
            raise errors.Unavailable("this node is not in a swarm")
        return await self.swarm.client.call("networks.peers", network=network_id)

    def on_push(self, hook: Callable[[dict[str, Any]], None]) -> None:
        """``hook(item)`` for the session items that carry networks' state (and a new
        session's first item): :meth:`pushed`."""
        self._push_hooks.append(hook)

    def pushed(self, item: dict[str, Any]) -> None:
        """The agent's session gave ``item`` (see :mod:`core.engine.swarm.netpush`)."""
        for hook in self._push_hooks:
            try:
                hook(item)
            except Exception:  # noqa: BLE001 - the session goes on
                log.exception("swarm networks: a push hook failed")

    def on_leave(self, hook: Callable[[], Awaitable[None]]) -> None:
        """``hook`` runs at ``swarm leave``, before the node's channel closes (the network
        service removes the node's overlay networks, their devices and endpoints)."""
        self._leave_hooks.append(hook)

    async def run_leave_hooks(self) -> None:
        """``swarm leave``: every :meth:`on_leave` hook, failures logged."""
        for hook in self._leave_hooks:
            try:
                with trio.move_on_after(30):
                    await hook()
            except Exception:  # noqa: BLE001 - leaving goes on
                log.exception("swarm leave: a network hook failed")

    def forget_local(self) -> None:
        """``swarm leave``: the node's traces of the swarm's networks go (the networks a worker
        remembered; the overlay devices went with :meth:`run_leave_hooks`)."""
        self._known.clear()


