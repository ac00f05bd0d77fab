"""The network service: the daemon's networks and the networking of its containers — docker's
"networking on one host".  :class:`NetworkManager` is its facade; the work is done by

- :mod:`~core.engine.networks.store`     the rows (``networks``, ``network_sandboxes``,
  ``network_endpoints``) and their :data:`MIGRATION`;
- :mod:`~core.engine.networks.catalog`   the networks: predefined, default bridge, create/rm/ls/prune;
- :mod:`~core.engine.networks.sandbox`   containers' sandboxes: prepare/attach/detach/restore,
  ``network connect``/``disconnect``;
- :mod:`~core.engine.networks.endpoints` endpoints through the drivers, published ports, routes;
- :mod:`~core.engine.networks.dnsview`   the names index and the embedded DNS servers
  (:mod:`~core.engine.networks.dns` is the protocol);
- :mod:`~core.engine.networks.files`     ``/etc/hosts`` and ``/etc/resolv.conf`` texts;
- :mod:`~core.engine.networks.render`    docker's JSON; :mod:`~core.engine.networks.ports` and
  :mod:`~core.engine.networks.validate` what clients send.

Wiring
------
The daemon's start-up builds the service with its collaborators and runs it::

    networks = NetworkManager(state, drivers, exec_root=config.exec_root,
                              containers=directory, events=events, cluster=swarm.networks)
    await nursery.start(networks.serve)     # predefined networks, default bridge; then serves

``containers`` is a :class:`core.engine.interfaces.ContainerDirectory` (``network connect`` looks
containers up by name; a running container's files are handed back when its networks change).
``cluster`` (optional) is a :class:`core.engine.interfaces.ClusterNetworks`: the swarm's networks
(``Scope`` ``swarm``: overlay, ingress), to which the API's operations on them go — ``ls`` shows
them beside the local ones, ``inspect``/``rm`` find them when no local network matches,
``create -d overlay`` (or ``Scope: swarm``, ``Ingress``) stores one, ``prune`` prunes both.
Without it (or outside a swarm) swarm networks are refused with docker's message.  A container
of this engine on an attachable swarm network gets the network made locally through the overlay
driver (:mod:`~core.engine.networks.swarmlocal`: address from the managers, peers kept in step,
removed with its last container and at ``swarm leave``).
The service is a :class:`core.engine.interfaces.ContainerNetworks`.

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
    inspect / ps            await networks.settings(cid) / await networks.ps_ports(cid)
    stats                   await networks.net_stats(cid, pid)
    spec (start)            env = await networks.link_env(cid) + Config.Env   # legacy --link

Errors are docker's messages in :mod:`core.errors` classes (``NotFound``: ``network x not
found``; ``Forbidden``: pre-defined networks, active endpoints, duplicate endpoints...).
"""
from __future__ import annotations

import logging
from pathlib import Path
from typing import Any, Iterable

import trio

from core.engine.interfaces import ClusterNetworks, ContainerDirectory, EventSink
from core.engine.networks import dns
from core.engine.networks.catalog import NetworkCatalog, NetworkDrivers
from core.engine.networks.dnsview import DNSServers, DNSView
from core.engine.networks.endpoints import Endpoints
from core.engine.networks.files import ContainerFiles
from core.engine.networks.render import Renderer
from core.engine.networks.sandbox import Sandboxes
from core.engine.networks.store import MIGRATION, PREDEFINED, NetRecord, NetworkStore
from core.engine.networks.swarmlocal import SwarmLocal
from core.engine.state import State
from core.errors import AlreadyExists, CoreError, NotFound

log = logging.getLogger("core.engine.networks")


class NetworkManager:
    """The daemon's networks and the networking of its containers.  See the module docstring.

    ``resolv_conf_path`` and ``hosts_path`` are the host's files; ``dns_upstreams``
    (``[(ip, port)]``, replacing the host's resolvers for forwarding) and ``dns_timeout`` are
    knobs for tests.  ``default_ipv6`` gives the default bridge IPv6 when it is made: an IPv6
    subnet (the daemon's ``fixed-cidr-v6``) or ``"auto"`` (a ULA /64); ``None``: IPv4 only.
    """

    def __init__(self, state: State, drivers: NetworkDrivers, *, exec_root: Path,
                 containers: ContainerDirectory, events: EventSink,
                 resolv_conf_path: str = "/etc/resolv.conf", hosts_path: str = "/etc/hosts",
                 dns_upstreams: list[tuple[str, int]] | None = None,
                 dns_timeout: float = dns.FORWARD_TIMEOUT,
                 default_ipv6: str | None = None,
                 cluster: ClusterNetworks | None = None) -> None:
        lock = trio.Lock()
        self.cluster = cluster
        self.store = store = NetworkStore(state)
        self.renderer = Renderer(store)
        self.files = ContainerFiles(store, resolv_conf_path=resolv_conf_path,
                                    hosts_path=hosts_path)
        self.view = DNSView(store, resolv_conf_path=resolv_conf_path,
                            dns_upstreams=dns_upstreams)
        self.servers = DNSServers(self.view, timeout=dns_timeout)
        self.catalog = NetworkCatalog(store, drivers, events, self.renderer, lock,
                                      default_ipv6=default_ipv6)
        self.endpoints = Endpoints(store, self.catalog, self.servers)
        self.sandboxes = Sandboxes(store=store, catalog=self.catalog, endpoints=self.endpoints,
                                   view=self.view, servers=self.servers, files=self.files,
                                   renderer=self.renderer, containers=containers,
                                   exec_root=exec_root, lock=lock)
        self.swarm = SwarmLocal(store, self.catalog, self.endpoints, self.view, cluster, lock,
                                exec_root=exec_root)
        if cluster is not None:
            self.sandboxes.swarm = self.swarm
            cluster.on_leave(self.swarm.leave)
            cluster.on_push(self.swarm.pushed)

    @property
    def dns_upstreams(self) -> list[tuple[str, int]] | None:
        """Where containers' DNS servers forward (``None``: ``--dns`` or the host's)."""
        return self.view.dns_upstreams

    @dns_upstreams.setter
    def dns_upstreams(self, value: list[tuple[str, int]] | None) -> None:
        self.view.dns_upstreams = value

    # ------------------------------------------------------------------ the service
    async def serve(self, *, task_status: Any = trio.TASK_STATUS_IGNORED) -> None:
        """Run the service until cancelled.

        Records the predefined networks, brings the records in step with the driver (networks
        it lost are made again), makes the default bridge if missing — a driver that fails is
        logged, and using its networks reports it — then reports readiness through
        ``task_status`` and runs the containers' DNS servers in its nursery.  Cancelled, it
        stops them; containers, endpoints and ports stay for the next daemon."""
        async with trio.open_nursery() as nursery:
            self.servers.nursery = nursery
            try:
                await self.catalog.start()
                self.view.reindex()
                if self.cluster is not None:
                    nursery.start_soon(self.swarm.keep_peers)
                task_status.started()
                await trio.sleep_forever()
            finally:
                with trio.CancelScope(shield=True):
                    await self.servers.aclose()
                self.servers.nursery = None

    def sandbox_path(self, container_id: str) -> str:
        """The container's namespace file: ``<exec-root>/netns/<cid[:12]>``."""
        return self.sandboxes.sandbox_path(container_id)

    def lookup(self, ref: str) -> NetRecord:
        """A network by full ID, name, or unique ID prefix (``NotFound``, ``InvalidArgument``)."""
        return self.store.lookup(ref)

    # ------------------------------------------------------------------ ContainerNetworks
    async def check(self, container_id: str, host_config: dict[str, Any] | None,
                    networking_config: dict[str, Any] | None, *,
                    exposed_ports: Iterable[str] | dict[str, Any] | None = None,
                    mac_address: str | None = None) -> None:
        """``create``: check and record a container's request; see :meth:`Sandboxes.check`."""
        await self.sandboxes.check(container_id, host_config, networking_config,
                                   exposed_ports=exposed_ports, mac_address=mac_address)

    async def prepare(self, container_id: str, host_config: dict[str, Any] | None,
                      networking_config: dict[str, Any] | None, *,
                      exposed_ports: Iterable[str] | dict[str, Any] | None = None,
                      mac_address: str | None = None) -> str | None:
        """Before ``executor.create``: the sandbox's path; see :meth:`Sandboxes.prepare`."""
        return await self.sandboxes.prepare(container_id, host_config, networking_config,
                                            exposed_ports=exposed_ports, mac_address=mac_address)

    async def attach(self, container_id: str, name: str, hostname: str, pid: int) -> dict[str, Any]:
        """Join the container's networks; see :meth:`Sandboxes.attach`."""
        return await self.sandboxes.attach(container_id, name, hostname, pid)

    async def detach(self, container_id: str) -> None:
        """Take the container off its networks; see :meth:`Sandboxes.detach`."""
        await self.sandboxes.detach(container_id)

    async def forget(self, container_id: str) -> None:
        """``rm``: :meth:`detach`, then drop everything recorded about the container."""
        await self.sandboxes.forget(container_id)

    async def restore(self, running: Iterable[tuple[str, int]]) -> None:
        """Daemon start: re-adopt the running containers; see :meth:`Sandboxes.restore`."""
        await self.sandboxes.restore(running)

    async def settings(self, container_id: str) -> dict[str, Any]:
        """docker inspect's ``NetworkSettings`` of the container (live: connect/disconnect show)."""
        return self.renderer.settings(container_id)

    async def ps_ports(self, container_id: str) -> list[dict[str, Any]]:
        """``docker ps``'s ``Ports`` of the container."""
        return self.renderer.ps_ports(container_id)

    async def link_env(self, container_id: str) -> list[str]:
        """Before the container's spec is written: the environment its legacy links give it
        (``[]`` without links); see :meth:`Sandboxes.link_env`."""
        return await self.sandboxes.link_env(container_id)

    async def remove_link(self, name: str) -> None:
        """``docker rm --link /<parent>/<alias>``; see :meth:`Sandboxes.remove_link`."""
        await self.sandboxes.remove_link(name)

    async def net_stats(self, container_id: str, pid: int) -> dict[str, Any]:
        """docker stats' ``networks``: ``{"networks": {"eth0": {"rx_bytes": ..., ...}}}`` for a
        container with a namespace of its own and process ``pid`` (``{}`` otherwise: host
        mode, no process): one read of ``/proc/<pid>/net/dev``."""
        return self.renderer.net_stats(container_id, pid)

    async def hosts_file(self, container_id: str, *, domainname: str = "") -> str:
        """The contents of the container's ``/etc/hosts``; see :meth:`ContainerFiles.hosts`."""
        return self.files.hosts(container_id, domainname=domainname)

    async def resolv_conf(self, container_id: str) -> str:
        """The contents of the container's ``/etc/resolv.conf``; see
        :meth:`ContainerFiles.resolv_conf`."""
        return self.files.resolv_conf(container_id)

    # ------------------------------------------------------------------ the API
    async def connect(self, network_ref: str, container_ref: str,
                      endpoint_config: dict[str, Any] | None = None) -> None:
        """``docker network connect``; see :meth:`Sandboxes.connect`."""
        await self.sandboxes.connect(network_ref, container_ref, endpoint_config)

    async def disconnect(self, network_ref: str, container_ref: str, force: bool = False) -> None:
        """``docker network disconnect``; see :meth:`Sandboxes.disconnect`."""
        await self.sandboxes.disconnect(network_ref, container_ref, force)

    async def list_networks(self, filters: dict[str, list[str]] | None = None
                            ) -> list[dict[str, Any]]:
        """``GET /networks``: the local networks (:meth:`NetworkCatalog.list_networks`), then the
        swarm's this node shows (left out, as docker does, when the swarm cannot answer)."""
        out = self.catalog.list_networks(filters)
        if self.cluster is not None and self.cluster.active():
            try:
                swarm = await self.cluster.list_networks(filters)
            except CoreError as exc:
                log.warning("swarm networks left out of the list: %s", exc)
            else:
                # a swarm network made on this node shows as the swarm shows it (and not at all
                # once the swarm has removed it)
                out = [n for n in out if n.get("Scope") != "swarm"] + swarm
        return out

    async def inspect_network(self, ref: str, scope: str = "") -> dict[str, Any]:
        """docker network inspect's object (``Containers``: its attached containers); a swarm
        network when no local one matches (``scope``: ``local``/``swarm`` looks only there)."""
        if scope not in ("", "local", "swarm", "global"):
            raise NotFound(f"network {ref} not found")
        if scope in ("", "local"):
            try:
                found = self.catalog.inspect_network(ref)
                if found.get("Scope") == "swarm" and self.cluster is not None and \
                        self.cluster.active() and scope != "local":
                    try:  # made on this node: the swarm's object, with the node's containers
                        return {**await self.cluster.inspect_network(found["Id"]),
                                "Containers": found.get("Containers") or {}}
                    except CoreError:
                        pass
                return found
            except NotFound:
                if scope == "local" or self.cluster is None or not self.cluster.active():
                    raise
        if scope == "global" or self.cluster is None or not self.cluster.active():
            raise NotFound(f"network {ref} not found")
        return await self.cluster.inspect_network(ref)

    async def create_network(self, body: dict[str, Any], default_driver: str = "bridge"
                             ) -> dict[str, str]:
        """``POST /networks/create``; see :meth:`NetworkCatalog.create_network`.  A swarm network
        (driver ``overlay``, ``Scope: swarm`` or ``Ingress``) goes to the cluster; a local one may
        not take a swarm network's name."""
        if isinstance(body, dict) and self.cluster is not None and (
                (body.get("Driver") or default_driver) == "overlay" or body.get("Ingress")
                or body.get("Scope") == "swarm"):
            taken = {n.name for n in self.store.networks()}
            return await self.cluster.create_network(body, taken=taken)
        if isinstance(body, dict) and self.cluster is not None and self.cluster.active():
            try:
                taken = await self.cluster.names()
            except CoreError:  # docker's check too is skipped when the swarm cannot answer
                taken = set()
            if body.get("Name") in taken:
                raise AlreadyExists(f"network with name {body['Name']} already exists")
        return await self.catalog.create_network(body, default_driver)

    async def remove_network(self, ref: str) -> None:
        """``DELETE /networks/{id}``; see :meth:`NetworkCatalog.remove_network`; a swarm network
        when no local one matches."""
        try:
            local = self.store.lookup(ref)
            if local.scope == "swarm" and self.cluster is not None and self.cluster.active():
                await self.cluster.remove_network(local.id)  # the swarm's: the managers decide
                return
            await self.catalog.remove_network(ref)
        except NotFound:
            if self.cluster is None or not self.cluster.active():
                raise
            await self.cluster.remove_network(ref)

    async def prune(self, filters: dict[str, list[str]] | None = None) -> list[str]:
        """``POST /networks/prune``; see :meth:`NetworkCatalog.prune`; on a manager also the
        swarm networks nothing uses (not ingress), as docker's ``clusterNetworksPrune``."""
        removed = await self.catalog.prune(filters)
        if self.cluster is not None and self.cluster.active():
            removed = (await self.cluster.prune(filters)) + removed
        return removed


__all__ = ["MIGRATION", "NetworkManager", "NetRecord", "PREDEFINED"]
