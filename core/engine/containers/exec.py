"""``docker exec``: a process run in a running container by its executor; kept inspectable a
while after it ends (as docker does).  A program that cannot be found or run gets docker's exit
code (127, 126) and message."""
from __future__ import annotations

import json
import logging
import os
import time
from typing import Any

import trio

from core.contracts.executor import IOConfig
from core.engine.containers import oci
from core.engine.containers.context import Parts
from core.engine.containers.store import Container, Exec, new_id
from core.errors import Conflict, CoreError, Forbidden, InvalidArgument, NotFound, ProgramNotFound, ProgramNotRunnable

log = logging.getLogger("core.engine.containers.exec")

EXEC_KEEP = 300.0        # seconds a finished exec stays inspectable


def _check_running(c: Container) -> None:
    if c.status == "paused":
        raise Conflict(f"Container {c.id} is paused, unpause the container before exec")
    if c.status != "running":
        raise Conflict(f"Container {c.id} is not running")


def _command(config: dict[str, Any]) -> list[str]:
    cmd = config.get("Cmd")
    if isinstance(cmd, str):
        cmd = [cmd]
    if not cmd or not isinstance(cmd, list) or not all(isinstance(x, str) for x in cmd) or not cmd[0]:
        raise InvalidArgument("No exec command specified")
    env = config.get("Env") or []
    if not isinstance(env, list) or not all(isinstance(e, str) for e in env):
        raise InvalidArgument("invalid Env: expected a list of strings")
    return cmd


class Execs:
    """The execs of the containers of ``parts`` (``parts.execs``, by ID)."""

    def __init__(self, parts: Parts) -> None:
        self.parts = parts

    def create(self, c: Container, config: Any) -> Exec:
        """``POST /containers/{id}/exec``."""
        if not isinstance(config, dict):
            raise InvalidArgument("exec config must be a JSON object")
        _check_running(c)
        cmd = _command(config)
        now = time.time()
        execs = self.parts.execs
        for old in [x for x in execs.values() if x.done.is_set() and now - x.created > EXEC_KEEP]:
            execs.pop(old.id, None)  # docker forgets finished execs after a while too
        e = Exec(id=new_id(), container_id=c.id, config={**config, "Cmd": cmd})
        execs[e.id] = e
        self.parts.emit(c, f"exec_create: {' '.join(cmd)}", execID=e.id)
        return e

    def lookup(self, exec_id: str) -> Exec:
        e = self.parts.execs.get(exec_id)
        if e is None:
            raise NotFound(f"No such exec instance: {exec_id}")
        return e

    def check_startable(self, e: Exec) -> Container:
        """The exec's container, if the exec can start now (``Conflict`` else)."""
        if e.started:
            raise Conflict(f"Error: Exec command {e.id} is already running" if e.running else
                           f"exec {e.id} has already been started")
        c = self.parts.store.lookup(e.container_id)
        _check_running(c)
        return c

    async def start(self, e: Exec, *, console: tuple[int, int] | None = None) -> None:
        """Run an exec's process (the caller attaches to it unless detached).  It gets a
        terminal when the exec's create asked for one (``Tty``), as docker's does: the start's
        ``Tty`` only frames the stream.

        A process that cannot be started gets docker's exit code (127 not found, 126 cannot be
        run, 126 otherwise) and the error is raised."""
        c = self.check_startable(e)
        e.started = True
        try:
            e.pid = await self._run(c, e, bool(e.config.get("Tty")), console)
        except BaseException as exc:
            if e.exit_code is None:
                e.exit_code = 126
            if not e.error:
                e.error = exc.message if isinstance(exc, CoreError) else str(exc)
            e.done.set()
            e.ready.set()
            raise
        e.running = True
        e.ready.set()
        self.parts.emit(c, f"exec_start: {' '.join(e.config['Cmd'])}", execID=e.id)
        self.parts.tasks.start_soon(self._monitor, c, e)

    async def _user(self, c: Container, e: Exec) -> oci.ExecUser:
        def user_db() -> tuple[bytes | None, bytes | None]:
            fd = os.open(f"/proc/{c.state.pid}/root", os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)
            try:
                return oci.read_user_db(fd)
            finally:
                os.close(fd)

        try:
            passwd, group = await trio.to_thread.run_sync(user_db)
        except OSError:
            passwd, group = None, None
        user_spec = e.config.get("User") or c.config.get("User") or ""
        return oci.resolve_user(user_spec, passwd, group, c.host_config.get("GroupAdd") or [])

    async def _run(self, c: Container, e: Exec, tty_on: bool, console: tuple[int, int] | None) -> int:
        try:
            spec = json.loads((self.parts.files.dir(c) / "bundle" / "config.json").read_text())
        except (OSError, ValueError) as exc:
            raise CoreError(f"cannot read the container's spec: {exc}") from exc
        size = console or tuple(e.config.get("ConsoleSize") or ()) or None
        user = await self._user(c, e)
        links = await self.parts.networks.link_env(c.id)  # legacy --link: before Config.Env
        process = oci.exec_process(container_spec=spec, hostname=c.hostname,
                                   config={**c.config, "Env": links + list(c.config.get("Env") or [])}
                                   if links else c.config,
                                   cmd=e.config["Cmd"], env=e.config.get("Env") or [], user=user,
                                   working_dir=e.config.get("WorkingDir") or "", tty=tty_on,
                                   privileged=bool(e.config.get("Privileged")),
                                   terminal_size=(int(size[0]), int(size[1])) if size and all(size) else None)
        io = IOConfig(terminal=tty_on, stdin=bool(e.config.get("AttachStdin")), stdin_once=not tty_on, log_path=None,
                      width=int(size[1]) if size and size[1] else 80, height=int(size[0]) if size and size[0] else 24)
        try:
            return await self.parts.executor(c).exec(c.id, e.id, process, io)
        except (ProgramNotFound, Forbidden) as exc:
            e.exit_code = 127 if isinstance(exc, ProgramNotFound) else 126
            msg = exc.message
            if not isinstance(exc, (ProgramNotFound, ProgramNotRunnable)):
                msg += ": permission denied"
            e.error = f"OCI runtime exec failed: exec failed: unable to start container process: {msg}: unknown"
            raise CoreError(e.error) from exc

    async def _monitor(self, c: Container, e: Exec) -> None:
        try:
            code = await self.parts.executor(c).wait_exec(c.id, e.id)
        except CoreError as exc:
            log.info("exec %s of %s: %s", e.id[:12], c.short_id, exc)
            code = 126 if e.exit_code is None else e.exit_code
        e.exit_code = code
        e.running = False
        e.done.set()
        if c.id in self.parts.store.by_id:
            self.parts.emit(c, "exec_die", execID=e.id, exitCode=str(code))

    async def attach(self, e: Exec) -> Any:
        """A stream of the exec's stdio (its executor's ``attach``)."""
        c = self.parts.store.lookup(e.container_id)
        return await self.parts.executor(c).attach(c.id, e.id)

    async def resize(self, e: Exec, width: int, height: int) -> None:
        """The exec's terminal size, once its session started (docker waits up to 10 s)."""
        with trio.move_on_after(10):
            await e.ready.wait()
        if not e.ready.is_set():
            raise CoreError("timeout waiting for exec session ready")
        if not e.running:
            raise Conflict(f"Exec {e.id} is not running")
        c = self.parts.store.lookup(e.container_id)
        await self.parts.executor(c).resize(c.id, width, height, exec_id=e.id)
