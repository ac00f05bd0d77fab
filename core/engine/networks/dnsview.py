"""The embedded DNS of user-defined networks: the names index its servers answer from
(:class:`DNSView`, rebuilt from the rows after every change) and the servers themselves, one per
container on ``127.0.0.11:53`` inside its sandbox (:class:`DNSServers`, run in the network
service's nursery).  The protocol is :mod:`core.engine.networks.dns`."""
from __future__ import annotations

import logging
import os

import attrs
import trio

from core.engine.networks import dns
from core.engine.networks.files import FALLBACK_NAMESERVERS, resolv_parts
from core.engine.networks.links import parse_link
from core.engine.networks.render import dns_names
from core.engine.networks.store import NetworkStore
from core.errors import CoreError

log = logging.getLogger("core.engine.networks.dnsview")


@attrs.define
class _Member:
    container_id: str
    container_name: str
    names: set[str]
    address: str
    address6: str = ""


class DNSView:
    """Who is attached to which user-defined network under which names, and where each
    container's server forwards.  ``dns_upstreams`` (``[(ip, port)]``) replaces the host's
    resolvers for forwarding (tests); ``resolv_conf_path`` is the host's resolv.conf."""

    def __init__(self, store: NetworkStore, *, resolv_conf_path: str = "/etc/resolv.conf",
                 dns_upstreams: list[tuple[str, int]] | None = None) -> None:
        self.store = store
        self.resolv_conf_path = resolv_conf_path
        self.dns_upstreams = dns_upstreams
        self._dns_networks: dict[str, list[str]] = {}      # container -> user networks, in order
        self._members: dict[str, list[_Member]] = {}       # network -> attached containers
        self._network_names: dict[str, str] = {}
        self._forwards: dict[str, list[str] | None] = {}   # container -> --dns (None: host's)
        self._links: dict[str, dict[str, str]] = {}        # container -> link alias -> child
        self._resolv_cache: tuple[float, int, list[str]] | None = None
        #: swarm networks: the names of the endpoints on other nodes (network -> name ->
        #: addresses), kept by :class:`core.engine.networks.swarmlocal.SwarmLocal`
        self.remote: dict[str, dict[str, list[str]]] = {}

    def on_user_network(self, container_id: str) -> bool:
        """Whether the container is attached to a user-defined network (it has a server)."""
        return bool(self._dns_networks.get(container_id))

    def reindex(self) -> None:
        """Rebuild the index: who is attached where, under which names."""
        nets = {n.id: n for n in self.store.networks()}
        sandboxes = {s.container_id: s for s in self.store.sandboxes()}
        dns_networks: dict[str, list[str]] = {}
        members: dict[str, list[_Member]] = {}
        forwards: dict[str, list[str] | None] = {}
        external: set[str] = set()
        link_aliases: dict[str, dict[str, str]] = {}
        for ep in self.store.attached_endpoints():
            net = nets.get(ep.network_id)
            sb = sandboxes.get(ep.container_id)
            if net is None or sb is None or not net.user_defined or not ep.state \
                    or net.gateway_bridge:
                continue
            dns_networks.setdefault(ep.container_id, []).append(net.id)
            members.setdefault(net.id, []).append(_Member(
                container_id=ep.container_id, container_name=sb.name,
                names={n.lower() for n in dns_names(sb, ep)},
                address=ep.state["address"], address6=ep.state.get("address6") or ""))
            for text in list(ep.config.get("Links") or []) + (
                    [f"{c}:{a}" for c, a in sb.request.get("Links") or []]
                    if ep.position == 0 else []):
                try:
                    child, alias = parse_link(text)
                except CoreError:
                    continue
                link_aliases.setdefault(ep.container_id, {})[alias.lower()] = child
            if not net.internal:
                external.add(ep.container_id)
            forwards[ep.container_id] = sb.request.get("Dns") or None
        self._dns_networks = dns_networks
        self._members = members
        self._links = link_aliases
        self._network_names = {n.id: n.name for n in nets.values()}
        self._forwards = {cid: f for cid, f in forwards.items() if cid in external}

    def resolve(self, container_id: str, name: str, six: bool = False) -> list[str] | None:
        """Addresses of ``name`` for the container asking: the first of its user-defined
        networks (in interface order) with a container of that name, short ID or alias
        (``name`` or ``name.<network>``).  None if none has it.  ``six``: the IPv6 addresses
        (an empty list when the name has none)."""
        name = name.lower().rstrip(".")
        links = self._links.get(container_id, {})
        for network_id in self._dns_networks.get(container_id, []):
            suffix = "." + self._network_names.get(network_id, "").lower()
            short = name[:-len(suffix)] if name.endswith(suffix) else None
            members = self._members.get(network_id, [])
            hits = [m for m in members
                    if name in m.names or (short is not None and short in m.names)]
            child = links.get(name) or (links.get(short) if short is not None else None)
            if not hits and child:  # a link alias (--link child:alias), this container's only
                hits = [m for m in members
                        if m.container_name == child or m.container_id == child
                        or (len(child) >= 12 and m.container_id.startswith(child))]
            if hits:
                return [m.address6 for m in hits if m.address6] if six else \
                    [m.address for m in hits]
            remote = self.remote.get(network_id) or {}
            found = remote.get(name) or (remote.get(short) if short is not None else None)
            if found:
                return [] if six else list(found)
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


class _ContainerAnswerer:
    """The :class:`core.engine.networks.dns.Answerer` of one container: names on its
    user-defined networks."""

    def __init__(self, view: DNSView, container_id: str) -> None:
        self.view = view
        self.container_id = container_id

    def local(self, query: dns.Query) -> tuple[int, list[tuple[int, bytes]]] | None:
        if query.qclass != dns.CLASS_IN:
            return None
        if query.qtype in (dns.TYPE_A, dns.TYPE_AAAA):
            six = query.qtype == dns.TYPE_AAAA
            found = self.view.resolve(self.container_id, query.name, six)
            if found is None:
                return None
            record = dns.aaaa_record if six else dns.a_record
            return dns.NOERROR, [record(a) for a in dns.shuffled(found)]
        if query.qtype == dns.TYPE_PTR:
            address = dns.reverse_address(query.name)
            if address is not None:
                name = self.view.reverse(self.container_id, address)
                if name is not None:
                    return dns.NOERROR, [dns.ptr_record(name)]
        return None

    def upstreams(self) -> list[tuple[str, int]]:
        return self.view.upstreams(self.container_id)



class DNSServers:
    """The running DNS servers, one per container on a user-defined network.

    They run in :attr:`nursery` (the network service's, set while it serves)."""

    def __init__(self, view: DNSView, *, timeout: float = dns.FORWARD_TIMEOUT) -> None:
        self.view = view
        self.timeout = timeout
        self.nursery: trio.Nursery | None = None
        self._servers: dict[str, dns.EmbeddedDNS] = {}

    async def start(self, container_id: str, path: str) -> None:
        """Start the container's server in the namespace at ``path`` (if it has none)."""
        if container_id in self._servers:
            return
        if self.nursery is None:
            raise CoreError("the network service is not serving: no nursery for DNS servers")
        server = dns.EmbeddedDNS(path, _ContainerAnswerer(self.view, container_id),
                                 timeout=self.timeout)
        try:
            await self.nursery.start(server.run)
        except OSError as exc:
            raise CoreError(f"cannot start the DNS server of container {container_id} on "
                            f"{dns.DNS_ADDRESS}:{dns.DNS_PORT}: {exc}") from exc
        self._servers[container_id] = server

    async def stop(self, container_id: str) -> None:
        """Stop the container's server, if it has one."""
        server = self._servers.pop(container_id, None)
        if server is not None:
            server.stop()
            with trio.move_on_after(5):
                await server.done.wait()

    async def aclose(self) -> None:
        """Stop every server."""
        for cid in list(self._servers):
            await self.stop(cid)
