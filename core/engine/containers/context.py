"""What every part of the container service shares: :class:`Parts`, built once by the facade
(:class:`core.engine.containers.service.Containers`) from the collaborators it was given."""
from __future__ import annotations

import logging
from typing import Any, Awaitable, Callable, Protocol

import attrs
import trio

from core.engine.containers.files import ContainerFiles
from core.engine.containers.store import Container, ContainerStore, Exec
from core.engine.images.store import ImageStore
from core.engine.interfaces import ContainerNetworks, EventSink
from core.engine.volumes import VolumeStore
from core.errors import CoreError

log = logging.getLogger("core.engine.containers")


class Drivers(Protocol):
    """The daemon's drivers (:class:`core.daemon.drivers.DriverSet`): a loaded driver by kind
    and name; ``DriverError`` when it cannot load."""

    def get(self, kind: str, name: str) -> Any:
        ...


class Tasks:
    """Work of the container service that outlives a request (a container's monitor, its
    delayed restart, an exec's monitor, an archive's worker): it runs in the service's nursery,
    which exists while :meth:`core.engine.containers.service.Containers.serve` runs."""

    def __init__(self) -> None:
        self._nursery: trio.Nursery | None = None

    def start_soon(self, fn: Callable[..., Awaitable[Any]], *args: Any) -> None:
        if self._nursery is None:
            raise CoreError("the daemon is not serving yet")
        self._nursery.start_soon(fn, *args)

    async def run(self, ready: Callable[[trio.Nursery], Awaitable[None]],
                  task_status: Any = trio.TASK_STATUS_IGNORED) -> None:
        """Open the nursery, await ``ready(nursery)``, report started, run until cancelled."""
        async with trio.open_nursery() as nursery:
            self._nursery = nursery
            try:
                await ready(nursery)
                task_status.started()
                await trio.sleep_forever()
            finally:
                self._nursery = None


@attrs.frozen
class Parts:
    """The container service's state and collaborators, shared by its parts."""

    store: ContainerStore
    files: ContainerFiles
    drivers: Drivers
    images: ImageStore
    content: Any                       # core.engine.images.content.ContentStore
    volumes: VolumeStore
    networks: ContainerNetworks
    events: EventSink
    tasks: Tasks = attrs.field(factory=Tasks)
    execs: dict[str, Exec] = attrs.field(factory=dict)

    def executor(self, c: Container) -> Any:
        return self.drivers.get("executor", c.executor)

    def snapshotter(self, c: Container) -> Any:
        return self.drivers.get("storage", c.storage)

    def emit(self, c: Container, action: str, **extra: str) -> None:
        """A ``container`` event about ``c``."""
        self.events.emit("container", action, c.id, c.event_attributes(**extra))

    async def release_networks(self, c: Container, forget: bool = False) -> None:
        """The container left its networks (``forget``: and is removed); errors are logged."""
        with trio.CancelScope(shield=True):
            try:
                if forget:
                    await self.networks.forget(c.id)
                else:
                    await self.networks.detach(c.id)
            except CoreError as exc:
                log.warning("container %s: leaving its networks: %s", c.short_id, exc)
