"""A container's endpoints: joining its sandbox to networks through their drivers, leaving
them, its published ports, and its default route (the first non-internal network with a
gateway gives it; a container on swarm networks only has ``docker_gwbridge`` for that)."""
from __future__ import annotations

import logging
import os
import secrets
from typing import Any

import trio

from core import netns
from core.contracts.network import EndpointRequest
from core.engine.networks.catalog import NetworkCatalog
from core.engine.networks.dnsview import DNSServers
from core.engine.networks.ports import parse_port_bindings, portmap
from core.engine.networks.store import EndpointRow, NetRecord, NetworkStore, Sandbox
from core.errors import Conflict, CoreError, NotFound

log = logging.getLogger("core.engine.networks.endpoints")


class Endpoints:
    """Endpoints of sandboxes on the networks of ``catalog``; callers hold the service's lock."""

    def __init__(self, store: NetworkStore, catalog: NetworkCatalog, servers: DNSServers) -> None:
        self.store = store
        self.catalog = catalog
        self.servers = servers

    def driver(self, name: str) -> Any:
        return self.catalog.driver(name)

    def join_path(self, sb: Sandbox) -> str:
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

    async def join_all(self, sb: Sandbox) -> None:
        path = self.join_path(sb)
        joined: list[tuple[NetRecord, EndpointRow]] = []
        try:
            for index, ep in enumerate(self.store.endpoints_of(sb.container_id)):
                net = self.store.row_network(ep)
                await self.join_one(sb, net, ep, path, index)
                joined.append((net, ep))
            ports = await self._publish(sb, joined)
            sb.ports = ports
            if any(net.user_defined for net, _ep in joined):
                await self.servers.start(sb.container_id, path)
        except BaseException:
            with trio.CancelScope(shield=True):
                await self.servers.stop(sb.container_id)
                for net, ep in joined:
                    await self.leave_one(net, ep)
            raise

    async def join_one(self, sb: Sandbox, net: NetRecord, ep: EndpointRow, path: str,
                        index: int) -> None:
        """One endpoint.  The first non-internal network gives the default route (docker's
        gateway endpoint): the driver routes every non-internal join by default, so around
        later joins the existing route is set aside and put back."""
        gateway_ep = None
        if not net.internal:
            gateway_ep = next((e for e in self.store.endpoints_of(sb.container_id)
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
        await self.catalog.kernel(net)
        address = (ep.config.get("IPAMConfig") or {}).get("IPv4Address") or None
        taken = {(e.state or {}).get("interface") for e in self.store.endpoints_of(sb.container_id)
                 if e.endpoint_id}
        ifname = f"eth{index}"
        while ifname in taken:
            index += 1
            ifname = f"eth{index}"
        request = EndpointRequest(address=address, mac=ep.config.get("MacAddress") or None,
                                  interface_name=ifname,
                                  address6=(ep.config.get("IPAMConfig") or {}).get("IPv6Address")
                                  or None)
        endpoint_id = secrets.token_hex(32)
        driver = self.driver(net.driver)
        made = await driver.join(net.id, endpoint_id, path, request)
        try:
            link_local = (ep.config.get("IPAMConfig") or {}).get("LinkLocalIPs") or []
            if link_local:  # docker's --link-local-ip: extra addresses on the interface
                await trio.to_thread.run_sync(_add_addresses, path, made.interface_name,
                                              link_local)
            with self.store.transaction():
                if ep.network_id != net.id:  # the network was made again under the same name
                    self.store.delete_endpoint(ep.container_id, ep.network_id)
                ep.network_id = net.id
                ep.endpoint_id = endpoint_id
                ep.state = {"address": str(made.address.ip),
                            "prefixlen": made.address.network.prefixlen,
                            "gateway": str(made.gateway) if made.gateway else "",
                            "mac": made.mac, "interface": made.interface_name}
                six = getattr(made, "address6", None)
                if six is not None:
                    ep.state.update(address6=str(six.ip), prefixlen6=six.network.prefixlen,
                                    gateway6=str(made.gateway6) if made.gateway6 else "")
                self.store.save_endpoint(ep)
        except BaseException:
            with trio.CancelScope(shield=True):
                ep.endpoint_id, ep.state = "", None
                try:
                    await driver.leave(net.id, endpoint_id)
                except CoreError:
                    pass
            raise

    async def leave_one(self, net: NetRecord | None, ep: EndpointRow) -> None:
        """Undo one endpoint (errors logged: this runs on cleanup paths)."""
        if ep.endpoint_id and net is not None and net.has_driver:
            try:
                await self.driver(net.driver).leave(net.id, ep.endpoint_id)
            except NotFound:
                pass
            except CoreError as exc:
                log.warning("container %s: leaving network %s: %s", ep.container_id, net.name, exc)
        ep.endpoint_id = ""
        ep.state = None
        self.store.save_endpoint(ep)

    async def _publish(self, sb: Sandbox, joined: list[tuple[NetRecord, EndpointRow]]
                       ) -> dict[str, Any]:
        """Publish the container's ports on its first non-internal network; the PortMap."""
        request = sb.request
        exposed = request.get("ExposedPorts") or ()
        bindings = parse_port_bindings(request.get("PortBindings"),
                                       bool(request.get("PublishAllPorts")), exposed)
        if not bindings:
            return portmap(exposed, ())
        # the first network that gives a way out (docker_gwbridge for a container on swarm
        # networks only: the overlay gives no gateway), else the first non-internal one
        gateway = next(((n, e) for n, e in joined if not n.internal and e.state
                        and e.state.get("gateway")), None) \
            or next(((n, e) for n, e in joined if not n.internal), None)
        if gateway is None:
            log.info("container %s: ports not published: no external network", sb.container_id)
            return portmap(exposed, ())
        net, ep = gateway
        try:
            published = await self.driver(net.driver).publish(net.id, ep.endpoint_id, bindings)
        except Conflict as exc:
            raise Conflict(f"driver failed programming external connectivity on endpoint "
                           f"{sb.name} ({ep.endpoint_id}): {exc}") from None
        return portmap(exposed, published)

    async def route_via(self, sb: Sandbox, ep: EndpointRow) -> None:
        """The container's default route goes via ``ep``'s gateway (errors logged)."""
        if not ep.state or not ep.state.get("gateway"):
            return
        try:
            await trio.to_thread.run_sync(_default_route, self.join_path(sb), ep.state["gateway"],
                                          ep.state["interface"])
        except (CoreError, OSError) as exc:
            log.warning("container %s: cannot move its default route: %s", sb.container_id, exc)

    async def reroute(self, sb: Sandbox) -> None:
        """After the gateway endpoint left: the default route goes via the next network that
        has one (if the first gave it)."""
        attached = [e for e in self.store.endpoints_of(sb.container_id) if e.endpoint_id and e.state]
        if not attached or not attached[0].state or not attached[0].state.get("gateway"):
            return
        try:
            path = self.join_path(sb)
            await trio.to_thread.run_sync(_default_route, path, attached[0].state["gateway"],
                                          attached[0].state["interface"])
        except (CoreError, OSError) as exc:
            log.warning("container %s: cannot move its default route: %s", sb.container_id, exc)


def _add_addresses(path: str, ifname: str, addresses: list[str]) -> None:
    """Add ``addresses`` to ``ifname`` in the namespace at ``path`` (IPv4 link-local ones as
    /16, IPv6 ones as /64; others as host addresses).  Blocking."""

    def work() -> None:
        import ipaddress

        from pyroute2 import IPRoute
        from pyroute2.netlink.exceptions import NetlinkError

        with IPRoute() as ipr:
            index = ipr.link_lookup(ifname=ifname)
            if not index:
                raise CoreError(f"no interface {ifname} in {path}")
            for text in addresses:
                ip = ipaddress.ip_address(text)
                if ip.version == 4:
                    prefix = 16 if ip.is_link_local else 32
                else:
                    prefix = 64 if ip.is_link_local else 128
                try:
                    ipr.addr("add", index=index[0], address=str(ip), prefixlen=prefix)
                except NetlinkError as exc:
                    raise CoreError(f"cannot add link-local address {ip} to {ifname}: "
                                    f"{os.strerror(exc.code)}") from None

    netns.run_in(path, work)


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
