"""The container service: containers from ``create`` to ``rm``, their execs, logs, files and
figures.  :class:`Containers` is its facade; the work is done by

- :mod:`~core.engine.containers.store`      the records, their :data:`MIGRATION`, names, lookups;
  the answers to :class:`~core.engine.interfaces.ImageUsers` / ``VolumeUsers``;
- :mod:`~core.engine.containers.files`      the container's directory, its /etc files; the
  network service's :class:`~core.engine.interfaces.ContainerDirectory`;
- :mod:`~core.engine.containers.hostconfig` ``HostConfig`` defaults and checks;
- :mod:`~core.engine.containers.create`     ``create``;
- :mod:`~core.engine.containers.lifecycle`  ``start``, the exit watch, restarts (policy in
  :mod:`~core.engine.containers.restart`), attach in :mod:`~core.engine.containers.attach`;
- :mod:`~core.engine.containers.stop`       ``kill``/``stop``/``pause``; :mod:`~.remove` ``rm``;
- :mod:`~core.engine.containers.exec`       ``exec``; :mod:`~.restore` the daemon's restart;
- :mod:`~core.engine.containers.health`     healthchecks (``State.Health``), probes run as execs;
  :mod:`~.runtimes` ``HostConfig.Runtime`` -> the executor driver;
- :mod:`~core.engine.containers.rootfs`     the snapshot, mounted; sizes; :mod:`~.copy` ``cp``,
  ``export``, ``diff`` (tars by :mod:`~.archive`); :mod:`~.oci` the runtime spec;
- :mod:`~core.engine.containers.render`     docker's JSON; :mod:`~.ps` list and prune filters;
  :mod:`~.logs`, :mod:`~.top`, :mod:`~.stats`.

Wiring
------
The daemon builds the rows first, since the image, volume and network services ask about
containers, then the service with its collaborators, and runs it::

    store      = ContainerStore(state)                    # ImageUsers, VolumeUsers
    files      = ContainerFiles(data_root / "containers")
    images     = ImageStore(state, users=store)
    volumes    = VolumeStore(state, root, users=store)
    networks   = NetworkManager(..., containers=Directory(store, files), events=events)
    containers = Containers(store=store, files=files, drivers=drivers, images=images,
                            content=content, volumes=volumes, networks=networks, events=events)
    await nursery.start(containers.serve)   # re-adopts running containers, then serves

The API (:mod:`core.api.containers`) calls the facade's methods with what clients send (a
container's name, ID or ID prefix); errors are :mod:`core.errors` classes with docker's messages.
Containers are not stopped when the service stops: they outlive the daemon.
"""
from __future__ import annotations

import logging
import signal as _signal
from typing import Any, AsyncIterator, BinaryIO, Callable

import trio

from core.contracts.executor import ResourceUpdater
from core.engine.containers import copy, ps, render, rootfs, stats, top, update
from core.engine.containers.attach import attach
from core.engine.containers.context import Drivers, Parts
from core.engine.containers.create import Creator
from core.engine.containers.exec import Execs
from core.engine.containers.files import ContainerFiles
from core.engine.containers.health import HealthChecks
from core.engine.containers.hostconfig import normalize_host_config
from core.engine.containers.lifecycle import Lifecycle
from core.engine.containers.logs import read_logs
from core.engine.containers.remove import Remover
from core.engine.containers.restore import restore
from core.engine.containers.stop import Stopper
from core.engine.containers.store import MIGRATION, RUNNING, Container, ContainerStore, Exec, NotModified, check_name
from core.engine.images.store import ImageStore
from core.engine.interfaces import ContainerNetworks, EventSink
from core.engine.volumes import VolumeStore
from core.errors import Conflict, CoreError, InvalidArgument, NotImplemented_

log = logging.getLogger("core.engine.containers.service")


class Containers:
    """The container service; see the module docstring."""

    def __init__(self, *, store: ContainerStore, files: ContainerFiles, drivers: Drivers, images: ImageStore,
                 content: Any, volumes: VolumeStore, networks: ContainerNetworks, events: EventSink) -> None:
        self.parts = parts = Parts(store=store, files=files, drivers=drivers, images=images, content=content,
                                   volumes=volumes, networks=networks, events=events)
        self.store = store
        self.creator = Creator(parts)
        self.execs = Execs(parts)
        self.health = HealthChecks(parts, self.execs)
        self.stopper = Stopper(parts, self.health)
        self.remover = Remover(parts, self.stopper)
        self.lifecycle = Lifecycle(parts, self.stopper, self.remover, self.health)

    async def serve(self, *, task_status: Any = trio.TASK_STATUS_IGNORED) -> None:
        """Run the service until cancelled: re-adopt the containers (:mod:`.restore`), report
        readiness through ``task_status``, then run the containers' monitors, restarts and
        archives in its nursery.  Cancelled, it stops watching; the containers run on."""
        async def ready(nursery: trio.Nursery) -> None:
            await restore(self.parts, self.lifecycle, self.health, nursery)

        await self.parts.tasks.run(ready, task_status)

    # -- queries --------------------------------------------------------------------------------
    def lookup(self, ref: str) -> Container:
        """A container by full ID, name or unique ID prefix (``NotFound``)."""
        return self.store.lookup(ref)

    def counters(self) -> dict[str, Callable[[], int]]:
        """What ``docker info`` counts: containers, running, paused, stopped."""
        def count(pred: Callable[[Container], bool]) -> Callable[[], int]:
            return lambda: sum(1 for c in self.store.by_id.values() if pred(c))

        return {
            "Containers": count(lambda c: True),
            "ContainersRunning": count(lambda c: c.status in ("running", "restarting")),
            "ContainersPaused": count(lambda c: c.status == "paused"),
            "ContainersStopped": count(lambda c: c.status not in ("running", "restarting", "paused")),
        }

    async def inspect(self, ref: str, *, size: bool = False) -> dict[str, Any]:
        """``docker inspect``."""
        c = self.lookup(ref)
        return await render.inspect_json(self.parts, c, await rootfs.sizes(self.parts, c) if size else None)

    async def list(self, filters: dict[str, list[str]], *, all_: bool = False, limit: int = 0,
                   size: bool = False) -> list[dict[str, Any]]:
        """``docker ps``: the summaries of the containers the filters select."""
        out = []
        for c in ps.select(self.store, self.parts.images, filters, all_=all_, limit=limit):
            out.append(await render.summary_json(self.parts, c, await rootfs.sizes(self.parts, c) if size else None))
        return out

    # -- lifecycle ------------------------------------------------------------------------------
    async def create(self, body: Any, *, name: str | None, drivers: dict[str, str],
                     platform: str | None = None) -> tuple[Container, list[str]]:
        """``docker create``: the container and docker's warnings."""
        return await self.creator.create(body, name=name, drivers=drivers, platform=platform)

    async def start(self, ref: str) -> None:
        """``docker start``: ``NotModified`` when it runs already."""
        await self.lifecycle.start(self.lookup(ref))

    async def stop(self, ref: str, timeout: int | None = None, sig: int | None = None) -> None:
        """``docker stop``: ``NotModified`` when it is not running."""
        await self.stopper.stop(self.lookup(ref), timeout, sig)

    async def restart(self, ref: str, timeout: int | None = None, sig: int | None = None) -> None:
        await self.lifecycle.restart(self.lookup(ref), timeout, sig)

    async def kill(self, ref: str, sig: int = _signal.SIGKILL) -> None:
        await self.stopper.kill(self.lookup(ref), sig)

    async def pause(self, ref: str) -> None:
        await self.stopper.pause(self.lookup(ref))

    async def unpause(self, ref: str) -> None:
        await self.stopper.unpause(self.lookup(ref))

    async def remove(self, ref: str, *, force: bool = False, volumes: bool = False) -> None:
        """``docker rm``: ``Conflict`` while it runs, unless ``force``."""
        await self.remover.remove(self.lookup(ref), force=force, volumes=volumes)

    def rename(self, ref: str, new: str) -> None:
        c = self.lookup(ref)
        if not new:
            raise InvalidArgument("Neither old nor new names may be empty")
        new = check_name(new)
        if new == c.name:
            raise InvalidArgument("Renaming a container with the same name as its current name")
        old = c.name
        self.store.rename(c, new)
        self.parts.emit(c, "rename", oldName=f"/{old}")

    async def update(self, ref: str, body: Any) -> list[str]:
        """``docker update``: resources (:mod:`~core.engine.containers.update`; applied to a
        running container by its executor, a :class:`core.contracts.executor.ResourceUpdater`)
        and the restart policy, stored in the HostConfig for inspect and the next start;
        returns docker's warnings."""
        c = self.lookup(ref)
        hc, req = update.merge(c.id, c.host_config, body)
        if req and c.status in RUNNING:
            ex = self.parts.executor(c)
            if not isinstance(ex, ResourceUpdater):
                raise NotImplemented_(f"the executor {c.executor!r} of container {c.short_id} "
                                      "cannot change the resources of a running container; "
                                      "stop it, update it, start it again")
            await ex.update_resources(c.id, update.executor_resources(hc, req))
        c.host_config.update(hc)
        self.store.save(c)
        self.parts.emit(c, "update")
        return []

    def waiter(self, ref: str, condition: str) -> Callable[[], Any]:
        """``docker wait``: checked now, an awaitable function of the answer (``StatusCode``,
        ``Error``) when ``condition`` is met, so a client can wait before starting."""
        c = self.lookup(ref)
        if condition not in ("not-running", "next-exit", "removed"):
            raise InvalidArgument(f"invalid condition: {condition!r}")
        exits = c.exits
        immediate = condition == "not-running" and c.status not in RUNNING

        async def result() -> dict[str, Any]:
            if not immediate:
                if condition == "removed":
                    await c.removed.wait()
                else:
                    while c.exits <= exits and not c.removed.is_set():
                        await c.changed()
            return {"StatusCode": c.state.exit_code, "Error": {"Message": c.state.error} if c.state.error else None}

        return result

    async def prune(self, filters: dict[str, list[str]]) -> tuple[list[str], int]:
        """``docker container prune``: the IDs removed and the bytes they had written."""
        deleted, reclaimed = [], 0
        for c in ps.prunable(self.store, filters):
            rw, _ = await rootfs.sizes(self.parts, c)
            try:
                await self.remover.remove(c)
            except CoreError as exc:
                log.info("prune: keeping %s: %s", c.short_id, exc)
                continue
            deleted.append(c.id)
            reclaimed += rw
        self.parts.events.emit("container", "prune", "", {"reclaimed": str(reclaimed)})
        return deleted, reclaimed

    # -- stdio, logs, figures ----------------------------------------------------------------------
    def logs(self, ref: str, *, tail: int | None, since: int, until: int,
             follow: bool) -> tuple[Container, AsyncIterator[tuple[int, bytes, int]]]:
        """``docker logs``: the container and its ``(stream, bytes, time_ns)`` entries."""
        c = self.lookup(ref)
        if c.host_config["LogConfig"]["Type"] == "none":
            raise NotImplemented_('configured logging driver does not support reading')

        def alive() -> bool:
            return c.status in RUNNING and not c.removed.is_set()

        return c, read_logs(self.parts.files.log_path(c), tail=tail, since=since, until=until, follow=follow,
                            alive=alive)

    def replay(self, c: Container, limit: int | None = None) -> AsyncIterator[tuple[int, bytes, int]]:
        """The log as written so far (up to byte ``limit``), for ``attach --logs``."""
        return read_logs(self.parts.files.log_path(c), tail=None, since=0, until=0, follow=False,
                         alive=lambda: False, limit=limit)

    def log_size(self, c: Container) -> int:
        try:
            return self.parts.files.log_path(c).stat().st_size
        except OSError:
            return 0

    def attachable(self, ref: str) -> Container:
        """``docker attach``: the container, if it can be attached to (an ``attach`` event)."""
        c = self.lookup(ref)
        if c.status == "paused":
            raise Conflict("You cannot attach to a paused container, unpause it first")
        if c.status == "restarting":
            raise Conflict("You cannot attach to a restarting container, wait until it is running")
        self.parts.emit(c, "attach")
        return c

    async def attach(self, c: Container) -> Any | None:
        """A stream of ``c``'s stdio, now or at its next start (``None``: it went away)."""
        return await attach(self.parts, c)

    def detached(self, c: Container) -> None:
        """A client detached from ``c`` with the detach keys."""
        self.parts.emit(c, "detach")

    async def resize(self, ref: str, height: int, width: int) -> None:
        c = self.lookup(ref)
        if not c.running:
            raise Conflict(f"Container {c.id} is not running")
        await self.parts.executor(c).resize(c.id, width, height)
        self.parts.emit(c, "resize", height=str(height), width=str(width))

    async def top(self, ref: str, ps_args: str | None) -> dict[str, Any]:
        """``docker top``."""
        c = self.lookup(ref)
        if not c.running:
            raise Conflict(f"Container {c.id} is not running")
        pids = await self.parts.executor(c).top(c.id)
        table = await top.top(pids, ps_args)
        self.parts.emit(c, "top")
        return table

    async def stats(self, ref: str, *, stream: bool, one_shot: bool) -> dict[str, Any] | AsyncIterator[bytes]:
        """``docker stats``: one sample, or (``stream``) JSON lines while it runs."""
        c = self.lookup(ref)
        if one_shot and stream:
            raise InvalidArgument("cannot have stream=true and one-shot=true")
        if stream and c.running:
            return stats.stream(self.parts, c)
        return await stats.once(self.parts, c, one_shot)

    # -- files ------------------------------------------------------------------------------------
    async def archive_stat(self, ref: str, path: str) -> dict[str, Any]:
        return await copy.stat(self.parts, self.lookup(ref), path)

    async def archive_get(self, ref: str, path: str) -> tuple[Any, AsyncIterator[bytes]]:
        return await copy.get(self.parts, self.lookup(ref), path)

    async def archive_put(self, ref: str, path: str, data: BinaryIO, *, no_overwrite_dir_nondir: bool,
                          copy_uid_gid: bool) -> None:
        await copy.put(self.parts, self.lookup(ref), path, data, no_overwrite_dir_nondir=no_overwrite_dir_nondir,
                       copy_uid_gid=copy_uid_gid)

    async def export(self, ref: str) -> AsyncIterator[bytes]:
        return await copy.export(self.parts, self.lookup(ref))

    async def changes(self, ref: str) -> Any:
        return await copy.changes(self.parts, self.lookup(ref))

    def commit_source(self, ref: str, *, pause: bool) -> Any:
        """``docker commit``'s view of the container (an async context manager giving a
        :class:`core.engine.interfaces.CommitSource`; paused while held when ``pause``)."""
        return copy.commit_source(self.parts, self.stopper, self.lookup(ref), pause=pause)

    # -- exec -------------------------------------------------------------------------------------
    def exec_create(self, ref: str, config: Any) -> Exec:
        return self.execs.create(self.lookup(ref), config)

    def exec_lookup(self, exec_id: str) -> Exec:
        return self.execs.lookup(exec_id)

    def exec_startable(self, e: Exec) -> None:
        """``Conflict`` unless the exec can start now (not started, its container running)."""
        self.execs.check_startable(e)

    async def exec_attach(self, e: Exec) -> Any:
        """A stream of a started exec's stdio."""
        return await self.execs.attach(e)

    async def exec_start(self, e: Exec, *, console: tuple[int, int] | None = None) -> None:
        """Run the exec's process (with a terminal when its create asked for one, ``Tty``)."""
        await self.execs.start(e, console=console)

    async def exec_resize(self, exec_id: str, height: int, width: int) -> None:
        await self.execs.resize(self.execs.lookup(exec_id), width, height)


__all__ = ["MIGRATION", "Containers", "NotModified"]
