"""What the engine services need of one another: small typed Protocols, all async.

Each engine service takes its collaborators in its constructor as one of these Protocols and
nothing else: no attribute is assigned after construction, no callback may be "sync or async".
The daemon's start-up (:mod:`core.daemon.app`) builds every service in dependency order and hands
each the objects that satisfy what it asks for::

    state      = State(...)                      # migrations registered explicitly
    events     = Events()                        # EventSink
    store      = ContainerStore(state)           # ImageUsers, VolumeUsers (the rows only)
    files      = ContainerFiles(root / "containers")
    images     = ImageStore(state, users=store)
    volumes    = VolumeStore(state, root, users=store)
    swarm      = SwarmService(data_root, ..., local_engine=lambda: LocalEngine(containers, ...))
                                                 # swarm.networks: ClusterNetworks; the local
                                                 # engine is asked for when the node starts
    networks   = NetworkManager(..., containers=Directory(store, files), events=events,
                                cluster=swarm.networks)
    containers = Containers(store=store, files=files, images=images, volumes=volumes,
                            networks=networks, events=events, ...)   # ContainerNetworks: networks

Image commit reads a container through :class:`CommitSources` (the lifecycle provides it; the
API hands it to ``Images.commit``), so the images package never imports the containers' one.

A dependency runs one way only: networks know containers through :class:`ContainerDirectory`
(a view of the container rows, :class:`core.engine.containers.files.Directory`), never the
lifecycle that uses the networks.
"""
from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Any, Iterable, Protocol, runtime_checkable

import attrs


@attrs.frozen
class ContainerRef:
    """A container as the network service sees it."""

    id: str
    pid: int          # its init's pid while it runs, else 0
    running: bool
    name: str = ""                 # without the leading "/"
    env: tuple[str, ...] = ()      # its Config.Env (legacy links pass it on)


@attrs.frozen
class ContainerUse:
    """A container that uses an image or a volume."""

    id: str
    running: bool


@runtime_checkable
class EventSink(Protocol):
    """The engine's event stream (``GET /events``)."""

    def emit(self, type_: str, action: str, actor_id: str, attributes: dict[str, str], *,
             scope: str = "local", time_ns: int | None = None) -> None:
        """Record one event (``scope`` ``swarm`` for the cluster's, at ``time_ns``: default
        now); never blocks, never fails."""


@runtime_checkable
class ImageUsers(Protocol):
    """What image removal needs of the containers: which use an image."""

    async def image_users(self, image_id: str) -> list[ContainerUse]:
        """The containers created from ``image_id`` (a full image ID)."""


@runtime_checkable
class VolumeUsers(Protocol):
    """What volume removal and prune need of the containers: which use a volume."""

    async def volume_users(self, name: str) -> list[ContainerUse]:
        """The containers that mount the volume ``name``."""


@runtime_checkable
class ContainerDirectory(Protocol):
    """What the network service needs of the containers."""

    async def lookup(self, ref: str) -> ContainerRef:
        """The container named ``ref`` (name, ID or ID prefix); ``NotFound`` if none."""

    async def network_changed(self, container_id: str, hosts: str, resolv_conf: str) -> None:
        """The container's networks changed (connect, disconnect): its ``/etc/hosts`` and
        ``/etc/resolv.conf`` are now ``hosts`` and ``resolv_conf``.  A container that is gone
        is ignored."""


@runtime_checkable
class ContainerNetworks(Protocol):
    """What the container lifecycle needs of the network service."""

    async def check(self, container_id: str, host_config: dict[str, Any] | None,
                    networking_config: dict[str, Any] | None, *,
                    exposed_ports: Iterable[str] | dict[str, Any] | None = None,
                    mac_address: str | None = None) -> None:
        """``create``: check and record the request (nothing is made on the host); the errors
        of :meth:`prepare`, except that a ``container:<name>`` target only has to exist."""

    async def prepare(self, container_id: str, host_config: dict[str, Any] | None,
                      networking_config: dict[str, Any] | None, *,
                      exposed_ports: Iterable[str] | dict[str, Any] | None = None,
                      mac_address: str | None = None) -> str | None:
        """Before ``executor.create``: record the request and make the sandbox; returns the path
        of the network namespace the container joins (``None``: the host's).  ``mac_address``:
        the container-wide ``Config.MacAddress``."""

    async def attach(self, container_id: str, name: str, hostname: str, pid: int) -> dict[str, Any]:
        """Between ``executor.create`` and ``executor.start``: join the container's networks."""

    async def detach(self, container_id: str) -> None:
        """The container exited: endpoints, publications, DNS and sandbox go (idempotent)."""

    async def forget(self, container_id: str) -> None:
        """``rm``: :meth:`detach`, then drop everything recorded about the container."""

    async def restore(self, running: Iterable[tuple[str, int]]) -> None:
        """Daemon start: re-adopt the sandboxes of the containers still running ``(id, pid)``."""

    async def settings(self, container_id: str) -> dict[str, Any]:
        """docker inspect's ``NetworkSettings`` of the container."""

    async def ps_ports(self, container_id: str) -> list[dict[str, Any]]:
        """docker ps's ``Ports`` of the container."""

    async def hosts_file(self, container_id: str, *, domainname: str = "") -> str:
        """The contents of the container's ``/etc/hosts``."""

    async def resolv_conf(self, container_id: str) -> str:
        """The contents of the container's ``/etc/resolv.conf``."""

    async def link_env(self, container_id: str) -> list[str]:
        """The environment the container's legacy links (``--link``) give it, for its spec and
        its execs (``[]`` without links); ``Conflict`` when a linked container does not run."""

    async def net_stats(self, container_id: str, pid: int) -> dict[str, Any]:
        """docker stats' ``{"networks": {...}}`` of the container (``{}``: none)."""


@runtime_checkable
class ClusterNetworks(Protocol):
    """The swarm's networks (overlay, ingress: ``Scope`` ``swarm``) as the network service sees
    them: it hands every swarm-scoped operation of the networks API here
    (:class:`core.engine.swarm.networks.SwarmNetworks`).  Outside a swarm the reads answer
    nothing and the changes are refused with docker's messages."""

    def active(self) -> bool:
        """Whether this node is in a swarm."""

    async def names(self) -> set[str]:
        """The names the swarm's networks take (a local network may not reuse one)."""

    async def list_networks(self, filters: dict[str, list[str]] | None = None
                            ) -> list[dict[str, Any]]:
        """The swarm networks this node shows, as docker's Network objects, filtered."""

    async def inspect_network(self, ref: str) -> dict[str, Any]:
        """One swarm network by ID, name or ID prefix; ``NotFound``."""

    async def create_network(self, body: dict[str, Any], *, taken: set[str] = frozenset()
                             ) -> dict[str, str]:
        """``POST /networks/create`` of a swarm network (``taken``: the local networks' names);
        ``{"Id", "Warning"}``."""

    async def remove_network(self, ref: str) -> dict[str, Any]:
        """``DELETE /networks/{id}`` of a swarm network; returns the removed object."""

    async def prune(self, filters: dict[str, list[str]] | None = None) -> list[str]:
        """The swarm part of ``POST /networks/prune``: the names removed."""

    async def attach_container(self, ref: str, container_id: str, *,
                               names: list[str] | None = None) -> dict[str, Any]:
        """A local container joins an attachable swarm network: ``{"Network": <docker's swarm
        Network object>, "Addresses": ["ip/prefix"]}`` (the address unique in the swarm, the
        same on every ask; ``names``: its DNS names, recorded for the other nodes);
        ``Forbidden`` when the network is not attachable, ``NotFound``."""

    async def detach_container(self, network_id: str, container_id: str) -> None:
        """The container left the network: its address is given back."""

    def data_address(self) -> str | None:
        """The node's underlay address for overlay traffic (None outside a swarm)."""

    async def network_state(self, network_id: str) -> dict[str, Any]:
        """A swarm network across the swarm: ``{"peers": [{"Address", "NodeID", "VTEP",
        "Names"}], "names": {service DNS name: [ip]}, "backends": {vip: [task ip]}}``;
        ``Unavailable`` when no manager answers."""

    def on_leave(self, hook: Callable[[], Awaitable[None]]) -> None:
        """Run ``hook`` at ``swarm leave``, while the node can still reach the managers."""

    def on_push(self, hook: Callable[[dict[str, Any]], None]) -> None:
        """Call ``hook`` (synchronous, quick) with each item of the node's session that carries
        networks' state (``{"networks": {id: state | None}}``, see
        :mod:`core.engine.swarm.netpush`) and with the first item of every new session."""


@attrs.frozen
class CommitSource:
    """A container as ``docker commit`` reads it (see :class:`CommitSources`)."""

    id: str
    name: str
    image_id: str                  # the image it was created from (the new image's parent)
    config: dict[str, Any]         # its Config, as inspect shows it
    storage: str                   # its storage driver
    key: str                       # its active snapshot (its parent is the image's top layer)
    root: Any                      # core.engine.containers.archive.Root of its / (no volumes)
    scratch: Any                   # a directory of the container's own, for mount points
    ignore: frozenset[str]         # paths the engine puts there (mount points): not its changes


@runtime_checkable
class CommitSources(Protocol):
    """What image commit needs of the containers."""

    def commit_source(self, ref: str, *, pause: bool) -> Any:
        """An async context manager giving the :class:`CommitSource` of container ``ref``
        (``NotFound`` if none), paused while it is held when ``pause`` and it runs."""


@runtime_checkable
class TaskContainers(Protocol):
    """What the swarm's task runner (:mod:`core.engine.swarm.worker`) needs of the local
    containers: the container service's own calls (:class:`core.engine.containers.service.Containers`)."""

    async def create(self, body: Any, *, name: str | None, drivers: dict[str, str],
                     platform: str | None = None) -> tuple[Any, list[str]]:
        """``docker create``: the container (with ``.id``) and docker's warnings."""

    async def start(self, ref: str) -> None:
        """``docker start``."""

    async def stop(self, ref: str, timeout: int | None = None, sig: int | None = None) -> None:
        """``docker stop`` (its ``StopSignal``, then SIGKILL after ``timeout`` seconds)."""

    async def remove(self, ref: str, *, force: bool = False, volumes: bool = False) -> None:
        """``docker rm``."""

    async def inspect(self, ref: str, *, size: bool = False) -> dict[str, Any]:
        """``docker inspect``."""

    async def list(self, filters: dict[str, list[str]], *, all_: bool = False, limit: int = 0,
                   size: bool = False) -> list[dict[str, Any]]:
        """``docker ps``."""

    def logs(self, ref: str, *, tail: int | None, since: int, until: int,
             follow: bool) -> tuple[Any, Any]:
        """``docker logs``: the container and its ``(stream, bytes, time_ns)`` entries (an
        async iterator)."""


@runtime_checkable
class ImagePuller(Protocol):
    """What the swarm's task runner needs of the image service."""

    async def pull_image(self, image: str, *, auth: dict[str, str] | None = None) -> None:
        """Pull ``image`` (a reference as ``docker pull`` takes it) to the end with the default
        storage and registry drivers; errors are raised with docker's message."""


@runtime_checkable
class EventSource(Protocol):
    """The engine's event stream, read (:class:`core.engine.events.Events`)."""

    def subscribe(self, *, since: float | None = None, until: float | None = None,
                  filters: dict[str, list[str]] | None = None) -> Any:
        """An async iterator of events (docker's shape), closed with ``aclose()``."""
