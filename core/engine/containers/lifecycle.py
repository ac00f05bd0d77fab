"""A container's runs: ``start``, the task that watches its program, what happens at its exit,
and its restarts.

::

    start    mount the snapshot on rootfs/, write bundle/config.json (:mod:`.oci`), the network
             sandbox (:class:`core.engine.interfaces.ContainerNetworks`), executor create + start;
             a task watches the process  -> "running"
    running  its healthcheck runs (:mod:`.health`) until it exits
    exit     the task records the exit code, unmounts, leaves the networks, emits ``die``,
             applies the restart policy (:mod:`.restart`: ``restarting``, then a start after the
             back-off) and ``--rm``  -> "exited"

A program that cannot be found or run (:class:`core.errors.ProgramNotFound`,
:class:`core.errors.ProgramNotRunnable`) is reported as docker does, and recorded as exit code
127 or 126.
"""
from __future__ import annotations

import json
import logging
import os
import signal as _signal
import time
from pathlib import Path
from typing import Any

import trio

from core.contracts.executor import ExitStatus, IOConfig, Preparer
from core.engine.concurrency import gather
from core.engine.containers import oci, rootfs
from core.engine.containers.attach import connect_pending
from core.engine.containers.context import Parts
from core.engine.containers.files import write_atomic
from core.engine.containers.health import HealthChecks
from core.engine.containers.remove import Remover
from core.engine.containers.restart import cancel_restart, should_restart
from core.engine.containers.stop import Stopper
from core.engine.containers.store import EXIT_LOST, EXIT_UNKNOWN, Container, NotModified
from core.engine.volumes import oci_mount
from core.errors import (AlreadyExists, Conflict, CoreError, Forbidden, InvalidArgument, NotFound, ProgramNotFound,
                         ProgramNotRunnable)

log = logging.getLogger("core.engine.containers.lifecycle")


async def prepare_executor(ex: Any, container_id: str) -> None:
    """The executor's optional ``prepare`` hint (:class:`core.contracts.executor.Preparer`)."""
    if isinstance(ex, Preparer):
        try:
            await ex.prepare(container_id)
        except CoreError as exc:
            log.debug("container %s: executor prepare: %s", container_id[:12], exc)


def start_error(exc: ProgramNotFound | Forbidden | InvalidArgument) -> tuple[CoreError, int]:
    """An executor's start failure as docker reports it, and the exit code to record: 127 for a
    program not found, 126 for one that cannot be run (any other refusal is a permission
    denied: docker's CLI then exits 126 too)."""
    message = exc.message or type(exc).__name__
    if isinstance(exc, Forbidden) and not isinstance(exc, ProgramNotRunnable):
        message += ": permission denied"
    code = 127 if isinstance(exc, ProgramNotFound) else 126 if isinstance(exc, Forbidden) else EXIT_UNKNOWN
    return InvalidArgument(f"failed to create task for container: failed to create shim task: OCI runtime create "
                           f"failed: unable to start container process: {message}: unknown"), code


def _io_config(parts: Parts, c: Container) -> IOConfig:
    size = c.host_config.get("ConsoleSize") or [0, 0]
    return IOConfig(terminal=bool(c.config.get("Tty")), stdin=bool(c.config.get("OpenStdin")),
                    # with a tty docker never closes stdin behind a detached client
                    stdin_once=bool(c.config.get("StdinOnce")) and not c.config.get("Tty"),
                    log_path=None if c.host_config["LogConfig"]["Type"] == "none" else parts.files.log_path(c),
                    width=int(size[1]) if size and size[1] else 80, height=int(size[0]) if size and size[0] else 24)


class Lifecycle:
    """Starts the containers of ``parts`` and watches them run; ``stopper`` and ``remover`` for
    ``docker restart`` and ``--rm``; ``health`` runs their healthchecks while they run."""

    def __init__(self, parts: Parts, stopper: Stopper, remover: Remover, health: HealthChecks) -> None:
        self.parts = parts
        self.stopper = stopper
        self.remover = remover
        self.health = health

    # -- start -------------------------------------------------------------------------------------
    async def start(self, c: Container) -> None:
        """``docker start``: ``NotModified`` when it runs already.  A ``--rm`` container whose
        start fails is removed (docker's CLI waits for that removal)."""
        error: CoreError | None = None
        async with c.lock:
            if c.removing or c.status in ("removing", "dead"):
                raise Conflict(f"container {c.id} is marked for removal and cannot be started")
            if c.status in ("running", "paused"):
                raise NotModified(f"container {c.id} is already running")
            if c.status == "restarting":
                cancel_restart(self.parts.store, c)
            c.state.restart_count = 0
            c.backoff = 0.0
            c.state.manually_stopped = False
            try:
                await self.start_locked(c)
            except CoreError as exc:
                error = exc
        if error is not None:
            if c.host_config.get("AutoRemove"):
                with trio.CancelScope(shield=True):
                    try:
                        await self.remover.remove(c, force=True, volumes=True)
                    except CoreError as exc:
                        log.warning("container %s: --rm after a failed start: %s", c.short_id, exc)
            raise error

    async def restart(self, c: Container, timeout: int | None = None, sig: int | None = None) -> None:
        """``docker restart``: stop (a ``--rm`` container is kept meanwhile, as docker does), start."""
        if c.running or c.status == "restarting":
            c.keep = True
            try:
                await self.stopper.stop(c, timeout, sig)
            except NotModified:
                pass
            finally:
                c.keep = False
        async with c.lock:
            if c.status in ("running", "paused"):
                raise Conflict(f"cannot restart container {c.id}: it is still running")
            c.state.restart_count = 0
            c.backoff = 0.0
            c.state.manually_stopped = False
            await self.start_locked(c)
        self.parts.emit(c, "restart")

    def _joined_namespaces(self, c: Container) -> dict[str, str]:
        """The pid and ipc namespaces of another container (``container:<name>``) it joins."""
        joined: dict[str, str] = {}
        for key, kind in (("PidMode", "pid"), ("IpcMode", "ipc")):
            value = c.host_config.get(key) or ""
            if value.startswith("container:"):
                other = self.parts.store.lookup(value.split(":", 1)[1])
                if not other.running or not other.state.pid:
                    raise Conflict(f"cannot join the {kind} namespace of container {other.id}: it is not running")
                joined[kind] = f"/proc/{other.state.pid}/ns/{kind}"
        return joined

    async def _spec(self, c: Container, root: Path, netns: str | None) -> dict[str, Any]:
        """The OCI runtime spec of this run; ``netns`` the network namespace the network
        service made (``None``: the host's)."""
        passwd, group = await trio.to_thread.run_sync(oci.read_user_db, root)
        user = oci.resolve_user(c.config.get("User") or "", passwd, group, c.host_config.get("GroupAdd") or [])
        cdir = self.parts.files.dir(c)
        etc = {"/etc/hostname": str(cdir / "hostname"), "/etc/hosts": str(cdir / "hosts"),
               "/etc/resolv.conf": str(cdir / "resolv.conf")}
        size = c.host_config.get("ConsoleSize") or [0, 0]
        term = (int(size[0]), int(size[1])) if isinstance(size, list) and len(size) == 2 and size[0] and size[1] else None
        joined = self._joined_namespaces(c)
        joined["network"] = netns or ""
        hc = {**c.host_config, "NetworkMode": "host" if netns is None else "container:sandbox"}
        links = await self.parts.networks.link_env(c.id)  # legacy --link: before Config.Env
        return oci.build_spec(
            config={**c.config, "Env": links + list(c.config.get("Env") or [])} if links else c.config,
            host_config=c.host_config, rootfs=root, user=user, hostname=c.hostname,
            mounts=[oci_mount(m) for m in c.mounts], namespaces=oci.namespaces_for(hc, joined),
            cgroups_path=f"/{c.host_config.get('CgroupParent') or 'core'}/{c.id}".replace("//", "/"),
            etc_files=etc, terminal_size=term)

    async def network_setup(self, c: Container, ex: Any) -> None:
        """Networking joins a container here, before its program runs: after the executor made
        its namespaces (``ex``: the container's pid is asked for), or — a container with a
        sandbox namespace of its own, ``ex`` None — while the executor makes them.  The network
        service's hosts and resolv.conf replace ours."""
        pid = (await ex.state(c.id)).pid if ex is not None else 0
        info = await self.parts.networks.attach(c.id, c.name, c.hostname, pid)
        self.parts.files.network_files(c, info.get("HostsFile"), info.get("ResolvConf"))

    async def _bundle(self, c: Container) -> tuple[Path, str | None]:
        """Everything the executor needs: rootfs mounted, volumes filled, /etc files, the
        network sandbox, ``bundle/config.json``.  Returns the bundle and the sandbox's path."""
        root = await rootfs.mount(self.parts, c)
        await rootfs.copy_up_volumes(self.parts, c, root)
        self.parts.files.check_etc(c)
        netns = await self.parts.networks.prepare(c.id, c.host_config, c.networking,
                                                  exposed_ports=c.config.get("ExposedPorts"),
                                                  mac_address=c.config.get("MacAddress"))
        spec = await self._spec(c, root, netns)
        bundle = self.parts.files.dir(c) / "bundle"
        bundle.mkdir(exist_ok=True)
        # written for every start: not fsync'ed, and compact (json's C encoder)
        write_atomic(bundle / "config.json", json.dumps(spec), 0o600, durable=False)
        return bundle, netns

    async def _create(self, c: Container, ex: Any, bundle: Path) -> None:
        """The executor's create (a stopped leftover of the same ID replaced)."""
        io = _io_config(self.parts, c)
        try:
            await ex.create(c.id, bundle, io)
        except AlreadyExists:
            try:
                await ex.delete(c.id)
            except NotFound:
                pass
            await ex.create(c.id, bundle, io)

    async def start_locked(self, c: Container) -> None:
        """Run the container (its lock held); on failure everything made is undone and the
        error recorded in its state."""
        if c.id not in self.parts.store.by_id:   # removed while the caller waited for the lock
            raise NotFound(f"No such container: {c.id}")
        ex = self.parts.executor(c)
        await prepare_executor(ex, c.id)
        for mp in c.mounts:
            if mp.type == "bind" and not os.path.exists(mp.source):
                raise InvalidArgument(f'invalid mount config for type "bind": bind source path does not exist: '
                                      f"{mp.source}")
        c.state.error = ""
        created = recorded = False
        try:
            for mp in c.mounts:
                if mp.type == "volume":
                    self.parts.volumes.acquire(mp.name)
            bundle, netns = await self._bundle(c)

            async def create() -> None:
                nonlocal created
                await self._create(c, ex, bundle)
                created = True

            if netns:   # a sandbox of its own: its endpoints are made while the executor creates
                await gather(create, lambda: self.network_setup(c, None))
            else:
                await create()
                await self.network_setup(c, ex)
            await connect_pending(c, ex, before_start=True)
            try:
                pid = await ex.start(c.id)
            except (ProgramNotFound, Forbidden, InvalidArgument) as exc:
                err, c.state.exit_code = start_error(exc)
                c.state.error = err.message
                self.parts.store.save(c)
                recorded = True
                raise err from exc
        except BaseException as exc:
            with trio.CancelScope(shield=True):
                await self._undo_start(c, ex, created, exc, recorded)
            raise
        await self._running(c, ex, pid)

    async def _undo_start(self, c: Container, ex: Any, created: bool, exc: BaseException, recorded: bool) -> None:
        """A start failed with ``exc``: undo what it made, record ``exc`` in its state (unless
        ``recorded``), fail the attaches waiting for the start."""
        if created:
            try:
                await ex.delete(c.id)
            except CoreError:
                try:
                    await ex.kill(c.id, _signal.SIGKILL, True)
                    await ex.delete(c.id)
                except CoreError:
                    pass
        await rootfs.unmount(self.parts, c)
        await self.parts.release_networks(c)
        for mp in c.mounts:
            if mp.type == "volume":
                await self.parts.volumes.release(mp.name)
        if isinstance(exc, CoreError) and not recorded:
            c.state.error = exc.message
            if c.state.exit_code == 0:
                c.state.exit_code = EXIT_UNKNOWN
            self.parts.store.save(c)
        c.fail_pending(exc if isinstance(exc, CoreError) else CoreError(str(exc)))

    async def _running(self, c: Container, ex: Any, pid: int) -> None:
        """The program runs: record it, hand late attaches their streams, watch it."""
        now = time.time_ns()
        c.state.status = "running"
        c.state.pid = pid
        c.state.started_at = now
        c.state.exit_code = 0
        c.state.error = ""
        c.state.oom_killed = False
        c.state.has_been_started = True
        c.cancel_restart = False
        c.starts += 1
        self.health.started(c)
        self.parts.store.save(c)
        await connect_pending(c, ex, before_start=False)
        for mp in c.mounts:
            if mp.type == "volume":
                self.parts.events.emit("volume", "mount", mp.name, {
                    "container": c.id, "destination": mp.destination, "driver": mp.driver or "local",
                    "propagation": mp.propagation, "read/write": str(mp.rw).lower()})
        self.parts.emit(c, "start")
        c.notify()
        self.parts.tasks.start_soon(self.monitor, c)

    # -- exit --------------------------------------------------------------------------------------
    async def monitor(self, c: Container) -> None:
        """Wait for the container's program to end, then record it (one task per run)."""
        if c.monitoring:
            return
        c.monitoring = True
        ex = self.parts.executor(c)
        try:
            while True:
                try:
                    status = await ex.wait(c.id)
                    break
                except NotFound:
                    status = ExitStatus(code=EXIT_LOST, finished_at=time.time())
                    break
                except CoreError as exc:
                    log.warning("container %s: waiting for it failed: %s; retrying", c.short_id, exc)
                    await trio.sleep(1)
        finally:
            c.monitoring = False
        await self.on_exit(c, status)

    async def on_exit(self, c: Container, status: ExitStatus) -> None:
        """Record an exit; restart (after the back-off) or ``--rm`` as the container says."""
        async with c.lock:
            if c.id not in self.parts.store.by_id:
                return
            self.health.stopped(c)
            ran_for = (time.time_ns() - c.state.started_at) / 1e9 if c.state.started_at else 0.0
            c.state.exit_code = status.code
            c.state.oom_killed = bool(status.oom_killed)
            c.state.finished_at = int(status.finished_at * 1e9) if status.finished_at else time.time_ns()
            c.state.pid = 0
            c.state.status = "exited"  # from here on it no longer counts as a user of its volumes' mounts
            await rootfs.unmount(self.parts, c)
            await self.parts.release_networks(c)
            for mp in c.mounts:
                if mp.type == "volume":
                    await self.parts.volumes.release(mp.name)
                    self.parts.events.emit("volume", "unmount", mp.name,
                                           {"container": c.id, "driver": mp.driver or "local"})
            restart, delay = should_restart(c, status.code, ran_for)
            c.state.status = "restarting" if restart else "exited"
            if restart:
                c.state.restart_count += 1
            self.parts.store.save(c)
            c.exits += 1
            if status.oom_killed:
                self.parts.emit(c, "oom")
            self.parts.emit(c, "die", exitCode=str(status.code), execDuration=str(int(ran_for)))
            self._end_execs(c)
            c.notify()
            if restart:
                self.parts.tasks.start_soon(self.delayed_restart, c, delay)
                return
            auto_remove = bool(c.host_config.get("AutoRemove")) and not c.keep
        if auto_remove:
            try:
                await self.remover.remove(c, force=False, volumes=True)
            except CoreError as exc:
                log.warning("container %s: --rm failed: %s", c.short_id, exc)

    def _end_execs(self, c: Container) -> None:
        """The container's execs ended with it (137 unless their exit was recorded)."""
        for e in list(self.parts.execs.values()):
            if e.container_id == c.id and e.running:
                e.running = False
                if e.exit_code is None:
                    e.exit_code = 137
                e.done.set()

    async def delayed_restart(self, c: Container, delay: float) -> None:
        """The restart policy's start, after ``delay`` (cancelled by stop, kill, rm, start)."""
        with trio.CancelScope() as scope:
            c.restart_cancel = scope
            await trio.sleep(delay)
        if c.restart_cancel is scope:
            c.restart_cancel = None
        if scope.cancelled_caught:
            return
        async with c.lock:
            if c.status != "restarting" or c.cancel_restart or c.id not in self.parts.store.by_id:
                return
            try:
                await self.start_locked(c)
            except CoreError as exc:
                log.warning("container %s: restart failed: %s", c.short_id, exc)
                c.state.status = "exited"
                c.state.error = exc.message
                self.parts.store.save(c)
                c.notify()

    async def restart_at_boot(self, c: Container) -> None:
        """The daemon started again and the restart policy says this container runs."""
        async with c.lock:
            if c.running or c.id not in self.parts.store.by_id:
                return
            try:
                await self.start_locked(c)
            except CoreError as exc:
                log.warning("container %s: restart at daemon start failed: %s", c.short_id, exc)

    async def remove_quietly(self, c: Container) -> None:
        """``--rm`` of a container that exited while the daemon was away."""
        try:
            await self.remover.remove(c, volumes=True)
        except CoreError as exc:
            log.warning("container %s: --rm after restart failed: %s", c.short_id, exc)
