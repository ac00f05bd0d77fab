"""The node's side of swarm (overlay) networks: a container of this engine on an attachable
swarm network, the network made locally through its multi-host driver, and its peers kept in
step with the cluster.

The swarm's managers own the network (VNI, subnet) and every endpoint's address; this engine
asks them through :class:`core.engine.interfaces.ClusterNetworks` and builds the node's part:

- ``run --network uber-net`` (``prepare`` / ``network connect``): a network that is not a
  local one but a swarm network is *materialized*: ``cluster.attach_container`` gives the
  network (docker's swarm Network object) and the container's address (the same on every ask);
  the engine records a local network row with the swarm network's ID, name and ``Scope:
  swarm`` and creates it in the ``overlay`` driver (``NetworkSpec.multi_host``: the VNI and the
  node's data-path address); the endpoint's ``IPAMConfig.IPv4Address`` is the managers' address;
- ``attach``: after the join, the container's DNS names are handed to the managers, so that
  the other nodes' embedded DNS answer them;
- :meth:`SwarmLocal.keep_peers` (in the network service's nursery): each local swarm
  network's state as the managers know it becomes the driver's peers (``set_peers``: the
  endpoints of *other* nodes, at their node's address), the DNS view's remote names, the VIP
  rules and the mesh's table.  The managers **push** a network's state on the node's session
  when it changes (:mod:`core.engine.swarm.netpush`; ``cluster.on_push``): applied at once,
  unless older (its ``revision``) than the state applied last.  A network made on the node
  asks for its state at once (``cluster.network_state``); a full pass (the networks listed,
  each one's state asked for) runs when a session starts, when a network was created or
  removed in the swarm, and every ``period`` seconds (:data:`PEERS_PERIOD`) as the backstop;
  an ask that failed is made again after :data:`RETRY` seconds;
- ``rm`` of a container: its address is given back; the local network row and the driver's
  network go with the last container that names it (the driver's devices already went when
  the last endpoint left);
- a swarm task (:meth:`SwarmLocal.task_networking`, called by the node's task runner): its
  networks made locally from its ``NetworksAttachments``, its container created with the
  leader's addresses (no other is asked for);
- service discovery: the managers' state of each network also carries its services' DNS
  records (``<service>``, ``tasks.<service>``), merged into the DNS view's remote names, and
  their VIP backends, written as nftables DNAT rules (table ``ip core-vip``) into the namespace
  of every local container on the network;
- ``docker_gwbridge`` (the way out of containers on swarm networks only, see
  :mod:`core.engine.networks.sandbox`) is made when the node is in a swarm, as docker does at
  ``swarm init``/``join``, and stays after ``swarm leave``;
- the routing mesh (:mod:`core.engine.networks.mesh`): the node's ingress sandbox on the
  ingress network, made when the node is in a swarm, programmed from the ingress network's
  ``published`` table, removed when the ingress network goes; a port held on the node by
  something else is not published here, and a task of its service placed here fails
  (:meth:`SwarmLocal.check_published`);
- a swarm network the swarm removed goes from the node once no container uses it;
- ``swarm leave`` (:meth:`SwarmLocal.leave`, a hook the cluster runs): every container is taken
  off the swarm networks, their addresses given back, the mesh and the networks removed from
  the driver and the rows.

Measured (``bench/swarm_net.py --peers``, 12 starts): from an attachable container's start on
one node until a container on another node reaches it, median 0.32 s and at most 0.94 s with
the 1 s poll alone; median 14 ms and at most 41 ms with the pushes.
"""
from __future__ import annotations

import ipaddress
import logging
import math
import subprocess
import time
from pathlib import Path
from typing import Any

import trio

from core.contracts.network import EndpointRequest, MultiHost, Peer, mac_for_address
from core.engine.interfaces import ClusterNetworks
from core.engine.networks.catalog import NetworkCatalog
from core.engine.networks.dnsview import DNSView
from core.engine.networks.endpoints import Endpoints
from core.engine.networks.mesh import Mesh, port_free
from core.engine.networks.store import NetRecord, NetworkStore, kernel_of
from core.errors import Conflict, CoreError, InvalidArgument, NotFound

log = logging.getLogger("core.engine.networks.swarmlocal")

VXLAN_OPTION = "com.docker.network.driver.overlay.vxlanid_list"
PEERS_PERIOD = 10.0   # the backstop poll: changes are pushed by the managers
RETRY = 1.0           # a failed ask of the managers is tried again after this many seconds
VIP_TABLE = "core-vip"
INGRESS_SANDBOX = "ingress-sbox"   # the managers' owner <node>/ingress-sbox of its address


class SwarmLocal:
    """The node's swarm networks (see the module docstring); changes hold ``lock``."""

    def __init__(self, store: NetworkStore, catalog: NetworkCatalog, endpoints: Endpoints,
                 view: DNSView, cluster: ClusterNetworks | None, lock: trio.Lock,
                 period: float = PEERS_PERIOD, exec_root: Path | None = None) -> None:
        self.store = store
        self.catalog = catalog
        self.endpoints = endpoints
        self.view = view
        self.cluster = cluster
        self.lock = lock
        self.period = period
        self._peers: dict[str, list[Peer]] = {}
        self._vip_rules: dict[str, str] = {}   # container -> its VIP rules as last written
        self._task_addresses: set[tuple[str, str]] = set()  # (network, ip) of tasks' endpoints
        self.mesh = Mesh(exec_root) if exec_root is not None else None
        self._ingress: str | None = None   # the ingress network's ID while the mesh is up
        self._leaving = False
        self._gwbridge = False  # docker_gwbridge made (or found) since the node joined
        self._pushed: dict[str, dict[str, Any]] = {}   # network -> state pushed, not applied yet
        self._revision: dict[str, int] = {}            # network -> revision of the state applied
        self._backends: dict[str, dict[str, list[str]]] = {}  # network -> its VIP backends
        self._published: dict[str, list[dict[str, Any]]] = {}  # network -> its published ports
        self._fetch: set[str] = set()    # networks made here: their state asked for at once
        self._want_full = True           # a full pass at once (a new session, a network listed)
        self._retry: set[str] = set()    # networks whose state could not be asked for
        self._retry_full = False         # the networks could not be listed
        self._retry_at = 0.0
        self._wake = trio.Event()
        catalog.multi_host = self.multi_host

    # ------------------------------------------------------------------ helpers
    def active(self) -> bool:
        return self.cluster is not None and self.cluster.active()

    def multi_host(self, net: NetRecord) -> MultiHost | None:
        """The ``NetworkSpec.multi_host`` of a local row of a swarm network (None for others)."""
        if net.scope != "swarm" or self.cluster is None:
            return None
        local = self.cluster.data_address()
        vni = net.options.get(VXLAN_OPTION, "")
        if not local or not vni.isdigit():
            raise InvalidArgument(f"network {net.name}: this node is not in a swarm")
        return MultiHost(vni=int(vni), local=local, port=self.cluster.data_port())

    # ------------------------------------------------------------------ containers
    async def materialize(self, ref: str, container_id: str, address: str | None = None
                          ) -> tuple[NetRecord, str]:
        """The local row of swarm network ``ref`` (made, with its driver network, if missing)
        and the container's address on it (``ip``; ``address`` if given: ``--ip``, reserved
        by the managers).  ``NotFound``, ``Forbidden`` (not attachable: docker's words),
        ``Conflict`` (the address is taken), ``Unavailable`` (no manager answers)."""
        assert self.cluster is not None
        answer = await self.cluster.attach_container(ref, container_id, address=address)
        obj = answer.get("Network") or {}
        addresses = answer.get("Addresses") or []
        if not obj.get("ID") or not addresses:
            raise CoreError(f"network {ref}: the managers gave no address")
        net = await self.ensure_network(obj)
        address = addresses[0].split("/", 1)[0]
        await self._unpeer(net, address)
        return net, address

    async def _unpeer(self, net: NetRecord, address: str) -> None:
        """An address the managers gave an endpoint of this node is no remote peer any more
        (it was one a moment ago: freed elsewhere and given again before the next pass)."""
        driver = self.catalog.driver(net.driver)
        async with self.lock:
            try:
                peers = await driver.peers(net.id)
            except NotFound:
                return
            kept = [p for p in peers if str(p.address) != address]
            if len(kept) != len(peers):
                await driver.set_peers(net.id, kept)
                self._peers[net.id] = kept

    async def ensure_network(self, obj: dict[str, Any]) -> NetRecord:
        """The local row (and driver network) of a swarm network given as docker's swarm
        Network object (a task's ``NetworksAttachments[].Network``), made if missing."""
        spec = obj.get("Spec") or {}
        async with self.lock:
            net = self.store.net(obj["ID"])
            if net is None:
                configs = (obj.get("IPAMOptions") or {}).get("Configs") or []
                options = dict((spec.get("DriverConfiguration") or {}).get("Options") or {})
                options.update((obj.get("DriverState") or {}).get("Options") or {})
                net = NetRecord(
                    id=obj["ID"], name=spec.get("Name") or obj["ID"], driver="overlay",
                    scope="swarm", created=_now(), options=options,
                    labels=dict(spec.get("Labels") or {}), internal=bool(spec.get("Internal")),
                    attachable=bool(spec.get("Attachable")),
                    ipam={"Driver": "default", "Options": None,
                          "Config": [{k: v for k, v in c.items() if k in ("Subnet", "Gateway")}
                                     for c in configs]},
                    kernel=None)
                self.store.insert_net(net)
            if net.kernel is None:
                driver = self.catalog.driver(net.driver)
                try:
                    made = await driver.network(net.id)
                except NotFound:
                    try:
                        made = await driver.create_network(net.id, self.catalog.spec(net))
                    except BaseException:
                        with trio.CancelScope(shield=True):
                            if not self.store.endpoints_on(net.id):
                                self.store.delete_net(net.id)
                        raise
                net.kernel = kernel_of(made)
                self.store.set_kernel(net.id, net.kernel)
                self._fetch.add(net.id)  # its peers now, not at the next pass
                self._wake.set()
        return net

    async def task_networking(self, attachments: list[dict[str, Any]], *,
                              aliases: list[str] = ()) -> dict[str, Any]:
        """A swarm task's container create settings from its ``NetworksAttachments``: the
        networks made locally, and ``{"NetworkMode": <first network's ID>, "EndpointsConfig":
        {<ID>: {"IPAMConfig": {"IPv4Address": <the task's address>}, "Aliases": aliases}}}``
        ({} without attachments).  The addresses are the leader's: no other is asked for."""
        out: dict[str, Any] = {}
        endpoints: dict[str, Any] = {}
        for att in attachments or []:
            obj = att.get("Network") or {}
            if not obj.get("ID") or not att.get("Addresses"):
                continue
            net = await self.ensure_network(obj)
            address = att["Addresses"][0].split("/", 1)[0]
            await self._unpeer(net, address)
            self._task_addresses.add((net.id, address))
            endpoints[net.id] = {"IPAMConfig": {"IPv4Address": address},
                                 "Aliases": list(aliases)}
            out.setdefault("NetworkMode", net.id)
        if endpoints:
            out["EndpointsConfig"] = endpoints
        return out

    async def check_published(self, attachments: list[dict[str, Any]], service_id: str) -> None:
        """Before a swarm task's container starts: ``Conflict`` when the task is on the ingress
        network and a port its service publishes in ingress mode is held on this node by
        something else (a process, a container's ``-p``): the routing mesh leaves that port to
        its holder here (:meth:`.mesh.Mesh.program`), so the task is failed, as docker fails a
        task whose port is taken.  The managers' table of the ingress network says which ports
        the service publishes."""
        ingress_id = next((a["Network"]["ID"] for a in attachments or []
                           if ((a.get("Network") or {}).get("Spec") or {}).get("Ingress")
                           and a["Network"].get("ID")), None)
        if ingress_id is None or not service_id or not self.active():
            return
        assert self.cluster is not None
        ports = [p for p in self._published.get(ingress_id) or [] if p.get("ServiceID") == service_id]
        if not ports:  # a service the node has not heard of yet: the managers are asked
            try:
                state = await self.cluster.network_state(ingress_id)
            except CoreError as exc:  # no answer now: the task is not refused for it
                log.info("routing mesh: no published ports from the managers: %s", exc)
                return
            ports = [p for p in state.get("published") or [] if p.get("ServiceID") == service_id]
        for p in ports:
            proto, port = str(p.get("Protocol") or "tcp"), int(p.get("PublishedPort") or 0)
            if port and not port_free(proto, port):
                raise Conflict(f"host port {port}/{proto} is already in use on this node: "
                               "the routing mesh cannot publish it here")

    def allocated(self, network_id: str, config: Any) -> bool:
        """Whether an endpoint's settings carry a task's address the leader allocated."""
        address = ((config or {}).get("IPAMConfig") or {}).get("IPv4Address") \
            if isinstance(config, dict) else None
        return bool(address) and (network_id, address) in self._task_addresses

    async def publish_names(self, net: NetRecord, container_id: str, names: list[str]) -> None:
        """After the join: the container's DNS names go to the managers (failures logged)."""
        if not self.active():
            return
        try:
            await self.cluster.attach_container(net.id, container_id, names=names)
        except CoreError as exc:
            log.warning("container %s: its names on %s are not known to the swarm: %s",
                        container_id, net.name, exc)

    async def release(self, container_id: str, network_ids: list[str]) -> None:
        """``rm`` (the rows are gone): the container's addresses go back to the managers; a
        network no container names any more goes from the driver and the rows."""
        for nid in network_ids:
            if self.active():
                try:
                    await self.cluster.detach_container(nid, container_id)
                except CoreError as exc:
                    log.warning("container %s: its address on %s stays allocated: %s",
                                container_id, nid, exc)
        async with self.lock:
            for nid in network_ids:
                await self._drop_if_unused(nid)

    async def _drop_if_unused(self, network_id: str) -> None:
        net = self.store.net(network_id)
        if net is None or net.scope != "swarm" or self.store.endpoints_on(network_id) \
                or network_id == self._ingress:
            return
        with trio.CancelScope(shield=True):
            try:
                await self.catalog.driver(net.driver).delete_network(net.id)
            except NotFound:
                pass
            except CoreError as exc:
                log.error("swarm network %s: cannot remove it from the driver: %s", net.name, exc)
                return
            self.store.delete_net(net.id)
            self._peers.pop(net.id, None)
            self._backends.pop(net.id, None)
            self._published.pop(net.id, None)
            self._revision.pop(net.id, None)
            self.view.remote.pop(net.id, None)

    async def leave(self) -> None:
        """``swarm leave``: every container off the swarm networks, their addresses given back,
        the networks gone from the driver and the rows."""
        self._leaving = True   # the peers loop makes no mesh again while the node leaves
        nets = [n for n in self.store.networks() if n.scope == "swarm"]
        released: list[tuple[str, str]] = []
        async with self.lock:
            for net in nets:
                for ep in self.store.endpoints_on(net.id):
                    if ep.endpoint_id:
                        try:
                            await self.endpoints.leave_one(net, ep)
                        except CoreError as exc:
                            log.error("container %s: leaving %s: %s", ep.container_id,
                                      net.name, exc)
                        self.catalog.emit("disconnect", net, {"container": ep.container_id})
                    self.store.delete_endpoint(ep.container_id, net.id)
                    released.append((net.id, ep.container_id))
        await self._close_mesh()
        for nid, cid in released:
            try:
                await self.cluster.detach_container(nid, cid)
            except CoreError as exc:
                log.warning("container %s: its address on %s stays allocated: %s", cid, nid, exc)
        async with self.lock:
            for net in nets:
                await self._drop_if_unused(net.id)
            self.view.remote.clear()
            self._backends.clear()
            self._published.clear()
            self._revision.clear()
            self._pushed.clear()
            self.view.reindex()

    # ------------------------------------------------------------------ peers
    def pushed(self, item: dict[str, Any]) -> None:
        """A session item from the managers (``cluster.on_push``, see
        :mod:`core.engine.swarm.netpush`): ``{"networks": {id: state}}`` is applied by
        :meth:`keep_peers` at once; ``{id: None}`` (a network created or removed) and a new
        session's first item (``session_id``) ask for a full pass."""
        nets = item.get("networks")
        if "session_id" in item:
            self._want_full = True
        if isinstance(nets, dict):
            for nid, state in nets.items():
                if state is None:
                    self._want_full = True
                elif isinstance(state, dict):
                    self._pushed[str(nid)] = state
        self._wake.set()

    async def keep_peers(self) -> None:
        """Run until cancelled: the driver's peers, the DNS view's remote names, the VIP rules
        and the mesh of every local swarm network follow the managers' state of it — pushed
        states as they come, a full pass when asked for and every ``period`` seconds."""
        last_full = -math.inf
        while True:
            now = trio.current_time()
            idle = self.period - (now - last_full)
            if self._retry or self._retry_full:
                idle = min(idle, self._retry_at - now)
            if not (self._want_full or self._pushed or self._fetch) and idle > 0:
                with trio.move_on_after(idle):
                    await self._wake.wait()
            self._wake = trio.Event()
            now = trio.current_time()
            due = (self._retry or self._retry_full) and now >= self._retry_at
            if self._want_full or now - last_full >= self.period or (due and self._retry_full):
                self._want_full = self._retry_full = False
                self._fetch.clear()
                self._retry.clear()
                last_full = now
                await self.sync_once()
            elif self._fetch or due:
                fetch = self._fetch | (self._retry if due else set())
                self._fetch = set()
                if due:
                    self._retry = set()
                await self._sync_networks(fetch)
            if self._pushed:
                await self.apply_pushed()

    async def apply_pushed(self) -> None:
        """The states pushed since the last call, for the networks this node has."""
        pushed, self._pushed = self._pushed, {}
        if not self.active() or self._leaving:
            return
        local = self.cluster.data_address()
        for nid, state in pushed.items():
            net = self.store.net(nid)
            if net is not None and net.scope == "swarm":
                await self._apply(net, state, local)
        await self._balance(self._backends)

    async def sync_once(self) -> None:
        """One pass of :meth:`keep_peers` (failures logged: the next pass tries again)."""
        if not self.active():
            self._leaving = False
            self._gwbridge = False
            return
        if self._leaving:
            return
        if not self._gwbridge:  # docker makes docker_gwbridge when the node joins a swarm
            try:
                await self.catalog.ensure_gwbridge()
                self._gwbridge = True
            except CoreError as exc:
                log.warning("%s", exc)
        try:
            listed = await self.cluster.list_networks()
        except CoreError as exc:
            log.debug("swarm networks: no list from the managers: %s", exc)
            listed = None
            self._retry_full = True
            self._retry_at = trio.current_time() + RETRY
        if listed is not None:
            await self._forget_removed(listed)
        ingress = next((n for n in listed or [] if n.get("Ingress")), None)
        if self.mesh is not None and self._ingress is None and ingress is not None:
            try:
                await self._make_mesh(ingress["Id"])
            except (CoreError, OSError, subprocess.CalledProcessError) as exc:
                err = getattr(exc, "stderr", b"") or b""
                log.warning("routing mesh: not ready: %s %s", exc,
                            err.decode(errors="replace") if isinstance(err, bytes) else err)
        await self._sync_networks({n.id for n in self.store.networks() if n.scope == "swarm"})

    async def _sync_networks(self, ids: set[str]) -> None:
        """Ask the managers for the state of the local swarm networks ``ids`` and apply it."""
        if not self.active() or self._leaving:
            return
        local = self.cluster.data_address()
        for nid in sorted(ids):
            net = self.store.net(nid)
            if net is None or net.scope != "swarm":
                continue
            try:
                state = await self.cluster.network_state(net.id)
            except CoreError as exc:
                log.debug("swarm network %s: no peers from the managers: %s", net.name, exc)
                self._retry.add(nid)
                self._retry_at = trio.current_time() + RETRY
                continue
            await self._apply(net, state, local)
        await self._balance(self._backends)

    async def _apply(self, net: NetRecord, state: dict[str, Any], local: str | None) -> None:
        """One network's state (a ``networks.peers`` answer or a push) onto the node, unless
        it is older than the one applied last."""
        revision = state.get("revision")
        if isinstance(revision, int):
            if revision < self._revision.get(net.id, 0):
                return
            self._revision[net.id] = revision
        remote = [e for e in state.get("peers") or [] if e.get("VTEP") != local]
        try:
            peers = [Peer(e["Address"], mac_for_address(_ip(e["Address"])), e["VTEP"])
                     for e in remote]
        except (CoreError, KeyError, ValueError) as exc:
            log.warning("swarm network %s: bad peers from the managers: %s", net.name, exc)
            return
        names: dict[str, list[str]] = {k.lower(): list(v) for k, v in
                                       (state.get("names") or {}).items()}
        for e in remote:
            for name in e.get("Names") or []:
                names.setdefault(str(name).lower(), []).append(e["Address"])
        self.view.remote[net.id] = names
        self._backends[net.id] = {k: list(v) for k, v in (state.get("backends") or {}).items()}
        if peers != self._peers.get(net.id):
            async with self.lock:
                if self.store.net(net.id) is None:
                    return
                try:
                    await self.catalog.driver(net.driver).set_peers(net.id, peers)
                except CoreError as exc:
                    log.warning("swarm network %s: setting peers: %s", net.name, exc)
                    return
            self._peers[net.id] = peers
        # the mesh after the peers: a new task it sends to is reachable already (its
        # forwarding and neighbour entries are there: no SYN waits on an unanswered ARP)
        self._published[net.id] = list(state.get("published") or [])
        if net.id == self._ingress and self.mesh is not None:
            try:
                await self.mesh.program(self._published[net.id])
            except (OSError, subprocess.CalledProcessError) as exc:
                err = getattr(exc, "stderr", b"") or b""
                log.warning("routing mesh: %s %s", exc,
                            err.decode(errors="replace") if isinstance(err, bytes) else err)

    async def _forget_removed(self, listed: list[dict[str, Any]]) -> None:
        """Swarm networks removed from the swarm go from the node: the mesh of an ingress
        network that is no more (or was replaced), rows without endpoints."""
        ids = {n["Id"] for n in listed}
        ingress = next((n["Id"] for n in listed if n.get("Ingress")), None)
        if self._ingress is not None and self._ingress != ingress:
            await self._close_mesh()
        for net in [n for n in self.store.networks() if n.scope == "swarm" and n.id not in ids]:
            async with self.lock:
                await self._drop_if_unused(net.id)

    async def _close_mesh(self) -> None:
        """The node's ingress sandbox, its link and tables, and its ingress address, gone."""
        if self._ingress is None or self.mesh is None:
            return
        ingress, self._ingress = self._ingress, None
        net = self.store.net(ingress)
        if net is not None:
            try:
                await self.catalog.driver(net.driver).leave(net.id, INGRESS_SANDBOX)
            except CoreError as exc:
                log.warning("routing mesh: leaving ingress: %s", exc)
        await self.mesh.close()
        if self.active():
            try:
                await self.cluster.detach_container(ingress, INGRESS_SANDBOX)
            except CoreError as exc:
                log.warning("routing mesh: its ingress address stays allocated: %s", exc)
        async with self.lock:
            await self._drop_if_unused(ingress)

    async def _make_mesh(self, ingress_id: str) -> None:
        """The node's ingress sandbox on the ingress network (see :mod:`.mesh`)."""
        assert self.mesh is not None and self.cluster is not None
        net, address = await self.materialize(ingress_id, INGRESS_SANDBOX)
        path = await self.mesh.make_sandbox()
        driver = self.catalog.driver(net.driver)
        async with self.lock:
            try:
                await driver.endpoint(net.id, INGRESS_SANDBOX)
            except NotFound:
                await driver.join(net.id, INGRESS_SANDBOX, path,
                                  EndpointRequest(address=address, interface_name="eth0"))
        self._ingress = net.id

    # ------------------------------------------------------------------ VIP load balancing
    async def _balance(self, backends: dict[str, dict[str, list[str]]]) -> None:
        """Each attached container on swarm networks gets, in its own namespace, the nftables
        table ``ip core-vip``: new connections to a service's VIP are DNATed to one of its
        serving tasks in turn (``numgen inc``; replies are un-NATed by conntrack in the same
        namespace).  Written only when it changes."""
        wanted: dict[str, str] = {}
        paths: dict[str, str] = {}
        for ep in self.store.attached_endpoints():
            if ep.network_id not in backends or not ep.endpoint_id:
                continue
            sb = self.store.sandbox(ep.container_id)
            if sb is None or not sb.netns:
                continue
            paths[ep.container_id] = sb.netns
            wanted.setdefault(ep.container_id, "")
            wanted[ep.container_id] += vip_rules(backends[ep.network_id])
        for cid, rules in wanted.items():
            if self._vip_rules.get(cid) == rules:
                continue
            script = (f"table ip {VIP_TABLE}\ndelete table ip {VIP_TABLE}\n"
                      f"table ip {VIP_TABLE} {{\n chain out {{\n"
                      f"  type nat hook output priority -100; policy accept;\n{rules} }}\n}}\n")
            try:
                await trio.run_process(["nsenter", f"--net={paths[cid]}", "nft", "-f", "-"],
                                       stdin=script.encode(), capture_stdout=True,
                                       capture_stderr=True)
            except (OSError, subprocess.CalledProcessError) as exc:
                err = getattr(exc, "stderr", b"") or b""
                log.warning("container %s: VIP rules: %s %s", cid, exc, err.decode(errors="replace"))
                continue
            self._vip_rules[cid] = rules
        for cid in set(self._vip_rules) - set(wanted):
            del self._vip_rules[cid]


def vip_rules(backends: dict[str, list[str]]) -> str:
    """nft rules of one network's VIPs (see :meth:`SwarmLocal._balance`)."""
    out = ""
    for vip, addresses in sorted(backends.items()):
        if not addresses:  # no task serves: connections to the VIP go nowhere
            continue
        table = ", ".join(f"{i} : {a}" for i, a in enumerate(addresses))
        out += (f"  ip daddr {vip} meta l4proto {{ tcp, udp }} "
                f"dnat to numgen inc mod {len(addresses)} map {{ {table} }}\n")
    return out


def _ip(text: str) -> ipaddress.IPv4Address:
    return ipaddress.IPv4Address(text)


def _now() -> int:
    return time.time_ns()
