"""Containers' sandboxes: the network side of a container's life (the
:class:`core.engine.interfaces.ContainerNetworks` calls) and ``docker network
connect/disconnect``.

A container's *sandbox* is a network namespace file ``<exec-root>/netns/<cid[:12]>``
(:mod:`core.netns`) made by ``prepare``; the executor puts the container in it, ``attach`` puts
one endpoint per network in it (``eth0``, ``eth1``... in request order), publishes the ports on
the first non-internal network (which also gives the default route), and starts the
container's DNS server on ``127.0.0.11:53`` inside it when it is on a user-defined network.
``restore`` must run before any container is started by the daemon (restart policies), since
every attached container it is not told about is detached.

What a container asked for (its networks with their endpoint settings, ports, DNS options) is
recorded by the first ``check``/``prepare`` (rows of ``network_sandboxes`` and
``network_endpoints``); ``network connect``/``disconnect`` change those rows, and later starts
use them — not the container's original ``NetworkingConfig``.

A container on swarm (overlay) networks that no local network gives a way out (a non-internal
network with a gateway: bridge and the like) also gets an endpoint on ``docker_gwbridge``, as
in docker: the node's bridge network (``Scope: local``, made when the node joins a swarm -- or
on first need -- with docker's options: no inter-container traffic, masquerade; its device is
the bridge driver's ``br-<id>``, so each engine of a host has its own), the last interface in
the container, the default route and the published ports (``mode=host``) through it.  ``network
disconnect`` of its last swarm network takes it off; of its way out (a bridge), puts it on;
``network connect`` of a way out takes it off.  Internal swarm networks give no such need.
The endpoint is recorded as a row of its own, hidden from the container's ``NetworkSettings``,
DNS names and ``/etc/hosts``; ``network inspect docker_gwbridge`` shows it as
``gateway_<container ID[:12]>``.
"""
from __future__ import annotations

import logging
import os
import secrets
from pathlib import Path
from typing import Any, Iterable

import trio

from core import netns
from core.engine.interfaces import ContainerDirectory
from core.engine.networks.catalog import NetworkCatalog
from core.engine.networks.dnsview import DNSServers, DNSView
from core.engine.networks.endpoints import Endpoints
from core.engine.networks.files import ContainerFiles
from core.engine.networks.render import Renderer, dns_names
from core.engine.networks.store import GWBRIDGE, EndpointRow, NetRecord, NetworkStore, Sandbox
from core.engine.networks import links, validate
from core.errors import Conflict, CoreError, Forbidden, InvalidArgument, NotFound

log = logging.getLogger("core.engine.networks.sandbox")

HOST_NET_ERROR = "container cannot be disconnected from host network or connected to host network"
NONE_NET_ERROR = ("container cannot be connected to multiple networks with one of the networks in "
                  "private (none) mode")
SHARED_NET_ERROR = ("container sharing network namespace with another container or host cannot be "
                    "connected to any other network")


class Sandboxes:
    """The networking of the containers; every change holds ``lock`` (the service's one)."""

    def __init__(self, *, store: NetworkStore, catalog: NetworkCatalog, endpoints: Endpoints,
                 view: DNSView, servers: DNSServers, files: ContainerFiles, renderer: Renderer,
                 containers: ContainerDirectory, exec_root: Path, lock: trio.Lock) -> None:
        self.store = store
        self.catalog = catalog
        self.endpoints = endpoints
        self.view = view
        self.servers = servers
        self.files = files
        self.renderer = renderer
        self.containers = containers
        self.exec_root = Path(exec_root)
        self.lock = lock
        #: the node's swarm networks (:class:`core.engine.networks.swarmlocal.SwarmLocal`), set
        #: by the service when the daemon is in a swarm's reach
        self.swarm: Any = None

    def sandbox_path(self, container_id: str) -> str:
        """The container's namespace file: ``<exec-root>/netns/<cid[:12]>``."""
        return str(self.exec_root / "netns" / container_id[:12])

    async def _container(self, ref: str) -> tuple[str, int, bool]:
        found = await self.containers.lookup(ref)
        return found.id, int(found.pid or 0), bool(found.running)

    # ------------------------------------------------------------------ prepare
    async def check(self, container_id: str, host_config: dict[str, Any] | None,
                    networking_config: dict[str, Any] | None, *,
                    exposed_ports: Iterable[str] | dict[str, Any] | None = None,
                    mac_address: str | None = None) -> None:
        """``create``: check a new container's networking request and record it (nothing is
        made on the host).  Same arguments and errors as :meth:`prepare`, except that a
        ``container:<name>`` target only has to exist (it must run at start)."""
        await self._prepare(container_id, host_config, networking_config, exposed_ports,
                            make=False, mac_address=mac_address)

    async def prepare(self, container_id: str, host_config: dict[str, Any] | None,
                      networking_config: dict[str, Any] | None, *,
                      exposed_ports: Iterable[str] | dict[str, Any] | None = None,
                      mac_address: str | None = None) -> str | None:
        """``start``, before ``executor.create``: make the container's sandbox (a fresh network
        namespace) and return its path, which the executor must put the container in (the OCI
        spec's ``network`` namespace ``path``); ``None`` means the host's namespace
        (``--network host``).  ``container:<name>`` returns that container's namespace.

        ``host_config`` is docker's HostConfig (``NetworkMode``, ``PortBindings``,
        ``PublishAllPorts``, ``Dns``, ``DnsSearch``, ``DnsOptions``, ``ExtraHosts``);
        ``networking_config`` docker's NetworkingConfig (``EndpointsConfig``: per network
        ``Aliases``, ``IPAMConfig.IPv4Address``, ``MacAddress``); ``exposed_ports`` the
        container's ``Config.ExposedPorts`` (for ``PublishAllPorts`` and inspect's ``Ports``);
        ``mac_address`` the container-wide ``Config.MacAddress`` (API < 1.44, the docker CLI's
        ``--mac-address``), which goes to the endpoint of ``NetworkMode``'s network unless its
        EndpointSettings name one.

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
                                   make=True, mac_address=mac_address)

    async def _prepare(self, container_id: str, host_config: dict[str, Any] | None,
                       networking_config: dict[str, Any] | None,
                       exposed_ports: Iterable[str] | dict[str, Any] | None,
                       make: bool, mac_address: str | None = None) -> str | None:
        hc = dict(host_config or {})
        mode = hc.get("NetworkMode") or "default"
        if not isinstance(mode, str):
            raise InvalidArgument("invalid NetworkMode: expected a string")
        if mode == "default":
            mode = "bridge"
        if isinstance(exposed_ports, dict):
            exposed_ports = list(exposed_ports)
        request = validate.host_request(hc, exposed_ports or ())
        endpoints_config = (networking_config or {}).get("EndpointsConfig") or {}
        if not isinstance(endpoints_config, dict):
            raise InvalidArgument("invalid NetworkingConfig.EndpointsConfig: expected an object")
        made: list[str] = []
        try:
            endpoints_config = await self._swarm_networks(container_id, mode, endpoints_config,
                                                          made)
            if self._names_swarm_network(container_id, mode, endpoints_config):
                await self.catalog.ensure_gwbridge()
            return await self._prepare_locked(container_id, mode, hc, request, endpoints_config,
                                              make, mac_address)
        except BaseException:
            with trio.CancelScope(shield=True):
                await self._release_unrecorded(container_id, made)
            raise

    async def _release_unrecorded(self, container_id: str, network_ids: list[str]) -> None:
        """After a failure: the swarm addresses just asked for on networks the container has
        no recorded endpoint on are given back (and those networks dropped if unused)."""
        recorded = {ep.network_id for ep in self.store.endpoints_of(container_id)}
        loose = [nid for nid in dict.fromkeys(network_ids) if nid not in recorded]
        if loose and self.swarm is not None:
            await self.swarm.release(container_id, loose)

    async def _prepare_locked(self, container_id: str, mode: str, hc: dict[str, Any],
                              request: dict[str, Any], endpoints_config: dict[str, Any],
                              make: bool, mac_address: str | None) -> str | None:
        async with self.lock:
            existing = self.store.sandbox(container_id)
            if existing is not None and existing.attached:
                if not make:
                    return None
                if existing.mode.startswith("container:"):
                    return await self._joined_path(existing.mode.split(":", 1)[1])
                return existing.netns or None
            if mode.startswith("container:"):
                return await self._prepare_joined(container_id, mode.split(":", 1)[1], hc,
                                                  request, existing, make)
            if existing is not None and self.store.endpoints_of(container_id):
                wanted = self.store.endpoints_of(container_id)  # recorded: connect/disconnect count
                for ep in wanted:
                    self.store.row_network(ep)  # network x not found
            else:
                wanted = self._plan(container_id, mode, endpoints_config, mac_address)
            wanted, dropped = self._gateway_rows(container_id, wanted)
            first = self.store.row_network(wanted[0]) if wanted else None
            kind = "host" if first is not None and first.driver == "host" else \
                "none" if first is not None and first.driver == "null" else "networks"
            if kind == "networks" and make:
                for ep in wanted:
                    await self.catalog.kernel(self.store.row_network(ep))
            if existing is not None and existing.mode == kind:
                request = existing.request  # recorded by the first call
            elif request.get("Links"):  # legacy links name their children by ID from now on
                if kind == "host":
                    raise InvalidArgument("conflicting options: host type networking can't be "
                                          "used with links. This would result in undefined "
                                          "behavior")
                request["Links"] = [[await self._link_child(name), alias]
                                    for name, alias in request["Links"]]
            sb = Sandbox(container_id=container_id, mode=kind, request=request,
                         sandbox_id=existing.sandbox_id if existing else secrets.token_hex(32),
                         netns="" if kind == "host" else self.sandbox_path(container_id),
                         name=existing.name if existing else "",
                         hostname=existing.hostname if existing else "", pid=0, attached=False,
                         ports={})
            with self.store.transaction():
                self.store.save_sandbox(sb)
                for ep in dropped:
                    self.store.delete_endpoint(ep.container_id, ep.network_id)
                for ep in wanted:
                    self.store.save_endpoint(ep)
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

    async def _swarm_networks(self, container_id: str, mode: str,
                              endpoints_config: dict[str, Any],
                              made: list[str] | None = None) -> dict[str, Any]:
        """Swarm networks the container names that are not local yet are made local (see
        :mod:`core.engine.networks.swarmlocal`), and the managers' address of the container on
        each goes into its endpoint settings; the recorded endpoints of a container started
        again find their swarm networks the same way.  Returns the endpoint settings; the IDs
        of the networks whose address was asked for are appended to ``made``."""
        if self.swarm is None or not self.swarm.active():
            return endpoints_config
        out = dict(endpoints_config)
        refs = [] if mode in ("bridge", "host", "none") or mode.startswith("container:") \
            else [mode]
        refs += [k for k in endpoints_config if k not in refs and k != "default"]
        for ep in self.store.endpoints_of(container_id):
            if self.store.net(ep.network_id) is None and self.store.net_named(ep.network_name) is None:
                await self.swarm.materialize(ep.network_id, container_id)
        for ref in refs:
            try:
                net = self.store.lookup(ref)
                if net.scope != "swarm" or self.swarm.allocated(net.id, endpoints_config.get(ref)):
                    continue  # a local network, or a swarm task's (its address is the leader's)
            except NotFound:
                pass
            cfg = out.get(ref)
            cfg = dict(cfg) if isinstance(cfg, dict) else {}
            wanted = (cfg.get("IPAMConfig") or {}).get("IPv4Address") \
                if isinstance(cfg.get("IPAMConfig"), dict) else None
            net, address = await self.swarm.materialize(ref, container_id, wanted or None)
            if made is not None:
                made.append(net.id)
            cfg["IPAMConfig"] = {**(cfg.get("IPAMConfig") or {}), "IPv4Address": address}
            out[ref] = cfg
        return out

    # ------------------------------------------------------------------ docker_gwbridge
    def _names_swarm_network(self, container_id: str, mode: str,
                             endpoints_config: dict[str, Any]) -> bool:
        """Whether the container's networks (asked for, or recorded) include a non-internal
        swarm network (then ``docker_gwbridge`` may be needed); never outside a swarm."""
        if self.swarm is None or not self.swarm.active():
            return False
        refs = [mode, *endpoints_config] + [ep.network_id
                                             for ep in self.store.endpoints_of(container_id)]
        for ref in refs:
            try:
                net = self.store.lookup(ref)
            except (NotFound, InvalidArgument):
                continue
            if net.scope == "swarm" and not net.internal:
                return True
        return False

    def _needs_gateway(self, nets: list[NetRecord]) -> bool:
        """docker's rule: a container on a non-internal swarm network and on no local network
        that gives it a way out gets an endpoint on docker_gwbridge."""
        if not any(n.scope == "swarm" and not n.internal for n in nets):
            return False
        return not any(n.scope != "swarm" and n.has_driver and not n.internal
                       and not n.gateway_bridge for n in nets)

    def _gateway_rows(self, container_id: str, rows: list[EndpointRow]
                      ) -> tuple[list[EndpointRow], list[EndpointRow]]:
        """``rows`` with the docker_gwbridge row added (last) or taken out as needed; and the
        rows taken out."""
        nets = [(ep, self.store.net(ep.network_id)) for ep in rows]
        gw = [ep for ep, n in nets if n is not None and n.gateway_bridge]
        others = [ep for ep, n in nets if not (n is not None and n.gateway_bridge)]
        wanted = self._needs_gateway([n for ep, n in nets if n is not None and not n.gateway_bridge])
        if not wanted:
            return others, gw
        if gw:
            return others + gw, []
        net = self.store.net_named(GWBRIDGE)
        if net is None:
            log.warning("container %s: no %s: it has no way out of its swarm networks",
                        container_id, GWBRIDGE)
            return others, []
        row = EndpointRow(container_id=container_id, network_id=net.id, network_name=net.name,
                          position=max((e.position for e in rows), default=-1) + 1,
                          config=validate.endpoint_config(net, None), endpoint_id="", state=None)
        return others + [row], []

    def _plan(self, container_id: str, mode: str, endpoints_config: dict[str, Any],
              mac_address: str | None = None) -> list[EndpointRow]:
        """The endpoints a new container asks for: its NetworkMode network first (with the
        container-wide ``mac_address`` unless its settings name one), then the other networks
        of EndpointsConfig, in order."""
        primary = self.store.lookup(mode)
        first = (endpoints_config.get(mode) or endpoints_config.get(primary.name)
                 or endpoints_config.get(primary.id) or endpoints_config.get("default"))
        if mac_address:
            if not isinstance(mac_address, str):
                raise InvalidArgument(f"invalid MacAddress: {mac_address!r}")
            if primary.driver in ("host", "null"):
                raise InvalidArgument("conflicting options: mac-address and the network mode")
            if not isinstance(first, dict) or not first.get("MacAddress"):
                first = {**(first if isinstance(first, dict) else {}), "MacAddress": mac_address}
        nets = [(primary, first, mode)]
        for key, cfg in endpoints_config.items():
            # the docker CLI names the default network "default" (the bridge, on Linux)
            net = self.store.lookup("bridge" if key == "default" else key)
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
            checked = validate.endpoint_config(net, cfg)
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
        with self.store.transaction():
            self.store.delete_endpoints_of(container_id)
            self.store.save_sandbox(sb)
        return path

    async def _link_child(self, name: str) -> str:
        try:
            return (await self._container(name))[0]
        except NotFound as exc:
            raise InvalidArgument(f"could not get container for {name}: {exc.message}") from None

    async def link_env(self, container_id: str) -> list[str]:
        """The environment the container's legacy links give it (see
        :mod:`core.engine.networks.links`), checked as docker does when it starts: every
        child must run, on the default bridge (``Conflict`` otherwise)."""
        sb = self.store.sandbox(container_id)
        found = links.legacy_links(self.store, sb)
        env: list[str] = []
        for child_id, alias, child, _address in found:
            ref = await self.containers.lookup(child_id)
            name = getattr(ref, "name", "") or (child.name if child else "") or child_id[:12]
            parent = (sb.name if sb and sb.name else "") or container_id[:12]
            if not ref.running:
                raise Conflict(f"Cannot link to a non running container: /{name} AS "
                               f"/{parent}/{alias}")
            address = next((ep.state["address"] for ep in self.store.endpoints_of(child_id)
                            if ep.endpoint_id and ep.state and (n := self.store.net(ep.network_id))
                            is not None and n.default_bridge), None)
            if address is None:
                raise InvalidArgument(f"Cannot link to /{name}, as it does not belong to the "
                                      "default network")
            exposed = (child.request.get("ExposedPorts") if child else None) or []
            env += links.link_env(parent, alias, address, exposed, getattr(ref, "env", ()) or ())
        return env

    async def remove_link(self, name: str) -> str:
        """``DELETE /containers/<parent>/<alias>?link=1``: forget the parent's link ``alias``;
        returns the parent's ID (its ``/etc/hosts`` is to be rewritten).  ``NotFound`` for an
        unknown parent or link."""
        parent_ref, _, alias = name.strip("/").rpartition("/")
        if not parent_ref:
            raise InvalidArgument("Conflict, cannot remove the default link name of the container")
        try:
            parent_id = (await self._container(parent_ref))[0]
        except NotFound:
            raise NotFound(f"Cannot get parent /{parent_ref} for link name {name}") from None
        async with self.lock:
            sb = self.store.sandbox(parent_id)
            kept = [link for link in (sb.request.get("Links") or []) if link[1] != alias] \
                if sb is not None else []
            if sb is None or len(kept) == len(sb.request.get("Links") or []):
                raise NotFound(f"No such link: {name}")
            sb.request = {**sb.request, "Links": kept}
            self.store.save_sandbox(sb)
        await self._changed(parent_id)
        return parent_id

    async def _joined_path(self, other_id: str) -> str | None:
        cid, pid, running = await self._container(other_id)
        if not running:
            raise Conflict(f"cannot join network of a non running container: {cid}")
        other = self.store.sandbox(cid)
        if other is not None:
            if other.mode == "host":
                return None
            if other.mode.startswith("container:"):
                return await self._joined_path(other.mode.split(":", 1)[1])
            if other.netns and netns.exists(other.netns):
                return other.netns
        return f"/proc/{pid}/ns/net"

    # ------------------------------------------------------------------ attach, detach
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
        name = (name or "").lstrip("/")
        async with self.lock:
            sb = self.store.sandbox(container_id)
            if sb is None:
                raise CoreError(f"container {container_id} has no network sandbox: "
                                "prepare() was not called")
            if sb.attached:
                return self._attach_result(container_id)
            sb.name, sb.hostname, sb.pid = name, hostname or container_id[:12], int(pid or 0)
            if sb.mode == "networks":
                await self.endpoints.join_all(sb)
                if self.swarm is not None:
                    for ep in self.store.endpoints_of(container_id):
                        net = self.store.net(ep.network_id)
                        if net is not None and net.scope == "swarm" and \
                                not self.swarm.allocated(net.id, ep.config):
                            await self.swarm.publish_names(net, container_id, dns_names(sb, ep))
            elif sb.mode in ("host", "none"):
                for ep in self.store.endpoints_of(container_id):
                    ep.endpoint_id = secrets.token_hex(32)
                    self.store.save_endpoint(ep)
            sb.attached = True
            self.store.save_sandbox(sb)
            self.view.reindex()
            for ep in self.store.endpoints_of(container_id):
                net = self.store.net(ep.network_id)
                if net is not None:
                    self.catalog.emit("connect", net, {"container": container_id})
            return self._attach_result(container_id)

    def _attach_result(self, container_id: str) -> dict[str, Any]:
        return {"NetworkSettings": self.renderer.settings(container_id),
                "HostsFile": self.files.hosts(container_id),
                "ResolvConf": self.files.resolv_conf(container_id)}

    async def detach(self, container_id: str) -> None:
        """Take a container off every network: endpoints, publications, its DNS server and its
        sandbox go.  The recorded request stays (for the next start).  Idempotent; safe for a
        container that died while the daemon was down, or that was never attached."""
        with trio.CancelScope(shield=True):
            async with self.lock:
                await self._detach_locked(container_id)

    async def _detach_locked(self, container_id: str) -> None:
        sb = self.store.sandbox(container_id)
        await self.servers.stop(container_id)
        for ep in self.store.endpoints_of(container_id):
            if not ep.endpoint_id:
                continue
            net = self.store.net(ep.network_id)
            await self.endpoints.leave_one(net, ep)
            if net is not None:
                self.catalog.emit("disconnect", net, {"container": container_id})
        if sb is None:
            self.view.reindex()
            return
        if sb.netns:
            try:
                await trio.to_thread.run_sync(netns.delete, sb.netns)
            except OSError as exc:
                log.warning("container %s: removing its network namespace %s: %s",
                            container_id, sb.netns, exc)
        if sb.attached or sb.pid or sb.ports:
            sb.attached, sb.pid, sb.ports = False, 0, {}
            self.store.save_sandbox(sb)
        self.view.reindex()

    async def forget(self, container_id: str) -> None:
        """``docker rm``: :meth:`detach`, then drop everything recorded about the container."""
        await self.detach(container_id)
        swarm_nets = [ep.network_id for ep in self.store.endpoints_of(container_id)
                      if (n := self.store.net(ep.network_id)) is not None and n.scope == "swarm"]
        self.store.forget_container(container_id)
        if swarm_nets and self.swarm is not None:
            await self.swarm.release(container_id, swarm_nets)

    async def restore(self, running: Iterable[tuple[str, int]]) -> None:
        """At daemon start, with the containers still running (``(id, pid)``): their sandboxes,
        endpoints and ports survived in the kernel; their DNS servers are opened again.  Every
        other container that was attached (it died while the daemon was down) is detached."""
        alive = {cid: int(pid or 0) for cid, pid in running}
        async with self.lock:
            for sb in self.store.sandboxes():
                if sb.container_id in alive and sb.attached:
                    if alive[sb.container_id] and alive[sb.container_id] != sb.pid:
                        sb.pid = alive[sb.container_id]
                        self.store.save_sandbox(sb)
                    continue
                if sb.container_id not in alive and (
                        sb.attached or (sb.netns and os.path.lexists(sb.netns))):
                    with trio.CancelScope(shield=True):
                        await self._detach_locked(sb.container_id)
            self.view.reindex()
            for sb in self.store.sandboxes():
                if sb.attached and sb.container_id in alive and sb.mode == "networks" and \
                        self.view.on_user_network(sb.container_id):
                    try:
                        await self.servers.start(sb.container_id, self.endpoints.join_path(sb))
                    except (CoreError, OSError) as exc:
                        log.error("container %s: cannot reopen its DNS server: %s",
                                  sb.container_id, exc)

    # ------------------------------------------------------------------ network connect
    async def connect(self, network_ref: str, container_ref: str,
                      endpoint_config: dict[str, Any] | None = None) -> None:
        """``docker network connect``: a running container gets the endpoint at once (the
        next free ``eth<n>``, its DNS server if it had none); a stopped one at its next start.
        ``Forbidden``: ``endpoint with name x already exists in network y``, host/none/shared
        namespaces.  ``NotFound``: the network or the container.  An attachable swarm network
        is made on the node first, the address the managers'."""
        swarm = self.swarm is not None and self.swarm.active()
        try:
            net: NetRecord | None = self.store.lookup(network_ref)
        except NotFound:
            if not swarm:
                raise
            net = None  # perhaps the swarm's
        cid, _pid, running = await self._container(container_ref)
        made: list[str] = []
        try:
            if swarm and (net is None or net.scope == "swarm"):
                swarm_cfg = await self._swarm_networks(cid, "none", {network_ref: endpoint_config},
                                                       made)
                endpoint_config = swarm_cfg.get(network_ref)
                net = self.store.lookup(network_ref)
            assert net is not None
            if net.scope == "swarm" and not net.internal:
                await self.catalog.ensure_gwbridge()
            await self._connect(net, cid, running, endpoint_config)
        except BaseException:
            with trio.CancelScope(shield=True):
                await self._release_unrecorded(cid, made)
            raise

    async def _connect(self, net: NetRecord, cid: str, running: bool,
                       endpoint_config: dict[str, Any] | None) -> None:
        async with self.lock:
            sb = self.store.sandbox(cid)
            if sb is None:
                raise Conflict(f"container {cid} has no network configuration: it was created "
                               "before networking was available; recreate it")
            if sb.mode == "host" or net.driver == "host":
                raise Forbidden(HOST_NET_ERROR)
            if sb.mode.startswith("container:"):
                raise Forbidden(SHARED_NET_ERROR)
            if sb.mode == "none" or net.driver == "null":
                raise Forbidden(NONE_NET_ERROR)
            rows = self.store.endpoints_of(cid)
            if any(e.network_id == net.id for e in rows):
                raise Forbidden(f"endpoint with name {sb.name or cid[:12]} already exists in "
                                f"network {net.name}")
            checked = validate.endpoint_config(net, endpoint_config)
            ep = EndpointRow(container_id=cid, network_id=net.id, network_name=net.name,
                             position=max((e.position for e in rows), default=-1) + 1,
                             config=checked, endpoint_id="", state=None)
            if not (running and sb.attached):
                self.store.save_endpoint(ep)
                return
            path = self.endpoints.join_path(sb)
            gateway: tuple[NetRecord, EndpointRow] | None = None
            try:
                await self.endpoints.join_one(sb, net, ep, path, len(rows))
                wanted, dropped = self._gateway_rows(cid, self.store.endpoints_of(cid))
                for gw in dropped:  # it has a way out of its own now (a bridge)
                    await self.endpoints.leave_one(self.store.net(gw.network_id), gw)
                    self.store.delete_endpoint(cid, gw.network_id)
                    await self.endpoints.route_via(sb, ep)
                new_gw = next((e for e in wanted if not e.endpoint_id
                               and (n := self.store.net(e.network_id)) and n.gateway_bridge), None)
                if new_gw is not None:  # on swarm networks only now: the way out
                    gw_net = self.store.row_network(new_gw)
                    self.store.save_endpoint(new_gw)
                    gateway = (gw_net, new_gw)
                    await self.endpoints.join_one(sb, gw_net, new_gw, path, len(rows) + 1)
                if net.scope == "swarm" and self.swarm is not None and \
                        not self.swarm.allocated(net.id, ep.config):
                    await self.swarm.publish_names(net, cid, dns_names(sb, ep))
                if net.user_defined:
                    self.view.reindex()
                    await self.servers.start(cid, path)
            except BaseException:
                with trio.CancelScope(shield=True):
                    if gateway is not None:
                        await self.endpoints.leave_one(*gateway)
                        self.store.delete_endpoint(cid, gateway[0].id)
                    await self.endpoints.leave_one(net, ep)
                    self.store.delete_endpoint(cid, net.id)
                    self.view.reindex()
                raise
            self.view.reindex()
        self.catalog.emit("connect", net, {"container": cid})
        await self._changed(cid)

    async def disconnect(self, network_ref: str, container_ref: str, force: bool = False) -> None:
        """``docker network disconnect``.  ``Forbidden``: ``container x is not connected to
        network y``; the host network.  With ``force``, a container that no longer exists is
        taken off the network by name."""
        net = self.store.lookup(network_ref)
        try:
            cid, _pid, _running = await self._container(container_ref)
        except NotFound:
            if not force:
                raise
            await self._force_disconnect(net, container_ref)
            return
        if self._names_swarm_network(cid, "none", {}):  # (it may need docker_gwbridge now)
            try:
                await self.catalog.ensure_gwbridge()
            except CoreError as exc:
                log.warning("container %s: %s", cid, exc)
        async with self.lock:
            sb = self.store.sandbox(cid)
            if net.driver == "host" or (sb is not None and sb.mode == "host"):
                raise Forbidden(HOST_NET_ERROR)
            ep = next((e for e in self.store.endpoints_of(cid) if e.network_id == net.id), None)
            if ep is None:
                raise Forbidden(f"container {cid} is not connected to network {net.name}")
            with trio.CancelScope(shield=True):
                was_attached = bool(ep.endpoint_id)
                gave_route = bool(was_attached and ep.state and ep.state.get("gateway"))
                await self.endpoints.leave_one(net, ep)
                self.store.delete_endpoint(cid, net.id)
                rows = self.store.endpoints_of(cid)
                kept, unneeded = self._gateway_rows(cid, rows)
                for gw in unneeded:  # no swarm network left that needs docker_gwbridge
                    gave_route = gave_route or bool(gw.endpoint_id and gw.state
                                                    and gw.state.get("gateway"))
                    await self.endpoints.leave_one(self.store.net(gw.network_id), gw)
                    self.store.delete_endpoint(cid, gw.network_id)
                recorded = {r.network_id for r in rows}
                new_gw = None if net.gateway_bridge else \
                    next((e for e in kept if e.network_id not in recorded), None)
                if new_gw is not None and sb is not None and sb.attached:
                    # its way out went (a bridge): now docker_gwbridge gives it one
                    try:
                        self.store.save_endpoint(new_gw)
                        await self.endpoints.join_one(sb, self.store.row_network(new_gw), new_gw,
                                                      self.endpoints.join_path(sb), len(rows))
                        gave_route = False  # the new endpoint routes
                    except CoreError as exc:
                        log.warning("container %s: joining docker_gwbridge: %s", cid, exc)
                        self.store.delete_endpoint(cid, new_gw.network_id)
                elif new_gw is not None:
                    self.store.save_endpoint(new_gw)  # joined at its next start
                if gave_route and sb is not None and sb.attached:
                    await self.endpoints.reroute(sb)
                self.view.reindex()
                if not self.view.on_user_network(cid):
                    await self.servers.stop(cid)
        if was_attached:
            self.catalog.emit("disconnect", net, {"container": cid})
            await self._changed(cid)
        if net.scope == "swarm" and self.swarm is not None:
            await self.swarm.release(cid, [net.id])

    async def _force_disconnect(self, net: NetRecord, name: str) -> None:
        async with self.lock:
            for ep in self.store.endpoints_on(net.id):
                sb = self.store.sandbox(ep.container_id)
                if sb is not None and (sb.name == name.lstrip("/") or ep.container_id == name):
                    with trio.CancelScope(shield=True):
                        await self.endpoints.leave_one(net, ep)
                        self.store.delete_endpoint(ep.container_id, net.id)
                    self.view.reindex()
                    return
        raise NotFound(f"No such container: {name}")

    async def _changed(self, container_id: str) -> None:
        """Tell the containers a running container's networks changed, with its new files (a
        container of the default bridge connected to a user network gets ``nameserver
        127.0.0.11``, as docker's sandbox rebuilds its DNS when its resolver starts)."""
        try:
            await self.containers.network_changed(container_id, self.files.hosts(container_id),
                                                  self.files.resolv_conf(container_id))
        except Exception:
            log.exception("container %s: rewriting its files after a network change",
                          container_id)
