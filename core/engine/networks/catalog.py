"""The networks themselves: the predefined ones, the records kept in step with the driver,
the default bridge, and docker's ``network create/rm/ls/inspect/prune``.

Three networks are predefined, as in docker: ``bridge`` (driver ``bridge``; docker's
default-bridge semantics: no DNS by name, no aliases, no ``--ip``), ``host`` and ``none``
(driver ``null``: no driver objects).  They cannot be removed.  The default bridge is made by
asking the driver for its *default network* (:attr:`NetworkSpec.default`): the driver chooses
its device and options, which the record keeps from then on.
"""
from __future__ import annotations

import logging
import secrets
import time
from typing import Any, Callable, Protocol

import trio

from core.contracts.network import MultiHost, NetworkDriver, NetworkSpec, PoolOverlaps
from core.engine.filters import label_match, matches, until
from core.engine.interfaces import EventSink
from core.engine.networks.render import Renderer
from core.engine.networks.store import GWBRIDGE, NetRecord, NetworkStore, kernel_of
from core.engine.networks.validate import create_request
from core.errors import AlreadyExists, Conflict, CoreError, Forbidden, InvalidArgument, NotFound, Unavailable

log = logging.getLogger("core.engine.networks.catalog")

#: docker's options of ``docker_gwbridge`` (its device name left to the bridge driver: per engine)
GWBRIDGE_OPTIONS = {"com.docker.network.bridge.enable_icc": "false",
                    "com.docker.network.bridge.enable_ip_masquerade": "true"}


class NetworkDrivers(Protocol):
    """Where the network service finds its drivers (the daemon's driver set)."""

    def get(self, kind: str, name: str) -> Any:
        """The driver object of ``kind`` (``"network"``) named ``name``; ``CoreError`` (a
        ``DriverError``) if it cannot be had."""


class NetworkCatalog:
    """The network records and their driver networks.  Callers hold ``lock`` around changes
    (the service's one lock: a network cannot go while a container joins it)."""

    def __init__(self, store: NetworkStore, drivers: NetworkDrivers, events: EventSink,
                 renderer: Renderer, lock: trio.Lock, default_ipv6: str | None = None) -> None:
        self.store = store
        self.default_ipv6 = default_ipv6  # the default bridge's IPv6: a subnet, "auto" or None
        self.drivers = drivers
        self.events = events
        self.renderer = renderer
        self.lock = lock
        self._bridge_error = ""
        #: a swarm network's ``NetworkSpec.multi_host`` (set by
        #: :class:`core.engine.networks.swarmlocal.SwarmLocal`); None: no swarm networks here
        self.multi_host: Callable[[NetRecord], MultiHost | None] | None = None

    def driver(self, name: str) -> NetworkDriver:
        return self.drivers.get("network", name)

    def emit(self, action: str, net: NetRecord, extra: dict[str, str] | None = None) -> None:
        self.events.emit("network", action, net.id,
                         {"name": net.name, "type": net.driver, **(extra or {})})

    # ------------------------------------------------------------------ start
    async def start(self) -> None:
        """The predefined networks recorded, the records in step with the driver, the default
        bridge made if missing (failures logged: using the network reports them)."""
        async with self.lock:
            self._ensure_predefined()
            await self._reconcile()
            await self.ensure_default_bridge()

    def _ensure_predefined(self) -> None:
        now = time.time_ns()
        for name, driver in (("bridge", "bridge"), ("host", "host"), ("none", "null")):
            if self.store.net_named(name) is not None:
                continue
            self.store.insert_net(NetRecord(
                id=secrets.token_hex(32), name=name, driver=driver, scope="local", created=now,
                options={}, labels={}, internal=False, attachable=False,
                ipam={"Driver": "default", "Options": None, "Config": []}, kernel=None))

    def spec(self, net: NetRecord) -> NetworkSpec:
        configs = net.ipam.get("Config") or []
        first = next((c for c in configs if ":" not in c.get("Subnet", "")), {})
        six = next((c for c in configs if ":" in c.get("Subnet", "")), {})
        kernel = net.kernel or {}
        return NetworkSpec(name=net.name, subnet=first.get("Subnet") or None,
                           gateway=first.get("Gateway") or None,
                           ip_range=first.get("IPRange") or None,
                           aux_addresses=first.get("AuxiliaryAddresses") or None,
                           internal=net.internal, options=net.options,
                           enable_ipv6=bool(net.ipam.get("EnableIPv6")),
                           # made again (a lost network): the IPv6 subnet it had
                           subnet6=six.get("Subnet") or kernel.get("subnet6") or None,
                           gateway6=six.get("Gateway") or (kernel.get("gateway6") if not six
                                                           else None) or None,
                           ip_range6=six.get("IPRange") or None,
                           multi_host=(self.multi_host(net) if net.scope == "swarm"
                                       and self.multi_host is not None else None))

    async def _reconcile(self) -> None:
        """The records get the driver's current values; networks the driver lost are made
        again; driver networks without a record are reported (and left alone)."""
        by_driver: dict[str, list[NetRecord]] = {}
        for net in self.store.networks():
            if net.has_driver:
                by_driver.setdefault(net.driver, []).append(net)
        for driver_name, nets in by_driver.items():
            try:
                driver = self.driver(driver_name)
                have = {n.id: n for n in await driver.networks()}
            except CoreError as exc:
                log.error("network driver %s: %s", driver_name, exc)
                continue
            known = {n.id for n in nets}
            for stray in sorted(set(have) - known):
                log.warning("network driver %s has a network %s (%s) the daemon has no record "
                            "of: left alone", driver_name, stray, have[stray].name)
            for net in nets:
                if net.id in have:
                    kernel = kernel_of(have[net.id])
                    if kernel != net.kernel:
                        self.store.set_kernel(net.id, kernel)
                    if net.default_bridge and dict(have[net.id].options) != net.options:
                        self.store.set_options(net.id, dict(have[net.id].options))
                elif not net.default_bridge and net.kernel is not None:
                    try:
                        made = await driver.create_network(net.id, self.spec(net))
                        self.store.set_kernel(net.id, kernel_of(made))
                        log.warning("network %s was missing from driver %s: made again",
                                    net.name, driver_name)
                    except CoreError as exc:
                        log.error("network %s is missing from driver %s and cannot be made "
                                  "again: %s", net.name, driver_name, exc)

    async def ensure_default_bridge(self) -> NetRecord:
        """Make the default bridge in the driver if it is not there.  Failures are logged and
        remembered (the daemon serves on; using the network reports them)."""
        net = self.store.net_named("bridge")
        assert net is not None
        if net.kernel is not None:
            return net
        try:
            driver = self.driver(net.driver)
            try:
                made = await driver.network(net.id)
            except NotFound:
                made = await driver.create_network(net.id, NetworkSpec(
                    name="bridge", default=True, options=net.options,
                    enable_ipv6=self.default_ipv6 is not None,
                    subnet6=None if self.default_ipv6 in (None, "auto") else self.default_ipv6))
        except CoreError as exc:
            self._bridge_error = str(exc)
            log.error("cannot make the default bridge network: %s", exc)
            return net
        self._bridge_error = ""
        net.kernel = kernel_of(made)
        with self.store.transaction():
            if dict(made.options) != net.options:  # the driver chose the device (and options)
                net.options = dict(made.options)
                self.store.set_options(net.id, net.options)
            self.store.set_kernel(net.id, net.kernel)
        return net

    async def kernel(self, net: NetRecord) -> dict[str, Any]:
        """The driver's values of the network (the default bridge is made if it is missing);
        ``Unavailable`` if the driver has no network for it."""
        if net.kernel is None and net.default_bridge:
            net = await self.ensure_default_bridge()
            if net.kernel is None:
                raise Unavailable(f"the default bridge network is not available: "
                                  f"{self._bridge_error}")
        if net.kernel is None:
            raise Unavailable(f"network {net.name} has no driver network")
        return net.kernel

    # ------------------------------------------------------------------ the API
    def lookup(self, ref: str) -> NetRecord:
        """A network by full ID, name, or unique ID prefix.  ``NotFound``: ``network x not
        found``; ``InvalidArgument`` for an ambiguous prefix."""
        return self.store.lookup(ref)

    def inspect_network(self, ref: str) -> dict[str, Any]:
        """docker network inspect's object (``Containers``: its attached containers)."""
        return self.renderer.network_json(self.store.lookup(ref), containers=True)

    def list_networks(self, filters: dict[str, list[str]] | None = None) -> list[dict[str, Any]]:
        """``GET /networks``: filters ``dangling``, ``driver``, ``id``, ``label``, ``name``,
        ``scope``, ``type`` (``custom``/``builtin``), as docker applies them."""
        filters = filters or {}
        known = {"dangling", "driver", "id", "label", "name", "scope", "type"}
        for key in filters:
            if key not in known:
                raise InvalidArgument(f"invalid filter '{key}'")
        for value in filters.get("type", []):
            if value not in ("custom", "builtin"):
                raise InvalidArgument(f"invalid filter: 'type'='{value}'")
        dangling = None
        if "dangling" in filters:
            value = filters["dangling"][-1].lower()
            if value not in ("true", "1", "false", "0"):
                raise InvalidArgument(f"invalid filter 'dangling={filters['dangling'][-1]}'")
            dangling = value in ("true", "1")
        out = []
        for net in self.store.networks():
            if "driver" in filters and net.driver not in filters["driver"]:
                continue
            if "scope" in filters and net.scope not in filters["scope"]:
                continue
            if "name" in filters and not any(matches(v, net.name) for v in filters["name"]):
                continue
            if "id" in filters and not any(matches(v, net.id) for v in filters["id"]):
                continue
            if "label" in filters and not all(label_match(net.labels, v)
                                              for v in filters["label"]):
                continue
            if "type" in filters:
                kind = "builtin" if net.predefined else "custom"
                if kind not in filters["type"]:
                    continue
            if dangling is not None:
                unused = not net.predefined and not self.store.active_on(net.id)
                if unused != dangling:
                    continue
            out.append(self.renderer.network_json(net, containers=False))
        return out

    async def create_network(self, body: dict[str, Any], default_driver: str = "bridge"
                             ) -> dict[str, str]:
        """``POST /networks/create``; returns ``{"Id", "Warning"}``.  Docker's errors: a taken
        name (``AlreadyExists``), overlapping pools (``Forbidden``), a bad CIDR
        (``InvalidArgument``), an unknown driver (``NotFound``: ``plugin "x" not found``)."""
        req = create_request(body, default_driver)
        net = NetRecord(id=secrets.token_hex(32), name=req.name, driver=req.driver, scope="local",
                        created=time.time_ns(), options=req.options, labels=req.labels,
                        internal=req.internal, attachable=req.attachable, ipam=req.ipam,
                        kernel=None)
        spec = self.spec(net)
        async with self.lock:
            if self.store.net_named(req.name) is not None:
                raise AlreadyExists(f"network with name {req.name} already exists")
            self.store.insert_net(net)
            try:
                made = await self.driver(req.driver).create_network(net.id, spec)
            except BaseException as exc:
                with trio.CancelScope(shield=True):
                    self.store.delete_net(net.id)
                if isinstance(exc, PoolOverlaps):
                    raise Forbidden("invalid pool request: Pool overlaps with other one on "
                                    "this address space") from None
                if isinstance(exc, Conflict):
                    raise Forbidden(str(exc)) from None
                raise
            net.kernel = kernel_of(made)
            self.store.set_kernel(net.id, net.kernel)
        self.emit("create", net)
        return {"Id": net.id, "Warning": ""}

    async def ensure_gwbridge(self) -> NetRecord:
        """The node's ``docker_gwbridge`` (see :mod:`core.engine.networks.sandbox`): made with
        docker's options if missing (one made by the user beforehand, with a subnet of their
        choice, is used as it is)."""
        net = self.store.net_named(GWBRIDGE)
        if net is not None:
            return net
        try:
            await self.create_network({"Name": GWBRIDGE, "Driver": "bridge",
                                       "Options": dict(GWBRIDGE_OPTIONS)})
        except CoreError as exc:
            net = self.store.net_named(GWBRIDGE)   # (a concurrent maker's)
            if net is None:
                raise CoreError(f"cannot make {GWBRIDGE}: {exc}") from exc
            return net
        net = self.store.net_named(GWBRIDGE)
        assert net is not None
        return net

    async def remove_network(self, ref: str) -> NetRecord:
        """``DELETE /networks/{id}``.  ``Forbidden``: pre-defined, or active endpoints."""
        net = self.store.lookup(ref)
        if net.predefined:
            raise Forbidden(f"{net.name} is a pre-defined network and cannot be removed")
        async with self.lock:
            active = self.store.active_on(net.id)
            if active:
                raise Forbidden(f"error while removing network: network {net.name} id {net.id} "
                                "has active endpoints")
            with trio.CancelScope(shield=True):
                try:
                    await self.driver(net.driver).delete_network(net.id)
                except NotFound:
                    pass
                except Conflict:
                    raise Forbidden(f"error while removing network: network {net.name} id "
                                    f"{net.id} has active endpoints") from None
                self.store.delete_net(net.id)
        self.emit("destroy", net)
        return net

    async def prune(self, filters: dict[str, list[str]] | None = None) -> list[str]:
        """``POST /networks/prune``: user-defined networks without active endpoints (filters
        ``until``, ``label``, ``label!``); returns the names removed."""
        filters = filters or {}
        for key in filters:
            if key not in ("until", "label", "label!"):
                raise InvalidArgument(f"invalid filter '{key}'")
        before = until(filters["until"][-1]) if filters.get("until") else None
        removed = []
        for net in self.store.networks():
            if net.predefined or net.scope == "swarm" or self.store.active_on(net.id):
                continue
            if before is not None and net.created >= before:
                continue
            if "label" in filters and not all(label_match(net.labels, v)
                                              for v in filters["label"]):
                continue
            if "label!" in filters and any(label_match(net.labels, v)
                                           for v in filters["label!"]):
                continue
            try:
                await self.remove_network(net.id)
            except (Forbidden, NotFound):
                continue
            removed.append(net.name)
        self.events.emit("network", "prune", "", {})
        return removed
