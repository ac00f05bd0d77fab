"""The executor contract: running OCI runtime bundles, one shim per container.

An executor runs a *bundle* — a directory holding ``config.json`` (the OCI runtime spec, written
by the kernel) and whose ``root.path`` names the container's root filesystem (already mounted by
the kernel) — as a container supervised by a *shim*: a small process of the executor's own,
independent of the daemon, that

- holds the container's stdio (pipes) or its pty (``process.terminal``),
- writes the container's output to ``IOConfig.log_path`` in docker's json-file format
  (``{"log": "...\\n", "stream": "stdout", "time": "2026-...Z"}`` one object per line),
- serves *attach* on a unix socket (several attachers at once, see :class:`AttachStream`),
- reaps the container's process and records its exit code and time, and OOM kills,
- outlives the daemon: killing the daemon (even with SIGKILL) never stops a container.

A daemon that starts again finds its containers with :meth:`Executor.list` and carries on: every
method works on a container whose shim was started by an earlier daemon.

Lifecycle
---------
::

    await ex.create("<id>", bundle, IOConfig(terminal=False, stdin=True, log_path=...))
    #   namespaces made, mounts done, the process is created but has not run the user's program
    pid = await ex.start("<id>")              # it runs: the user's program is exec'd
    st = await ex.state("<id>")               # ContainerState(status="running", pid=..., ...)
    stream = await ex.attach("<id>")          # stdin/stdout/stderr, while it runs
    await ex.exec("<id>", "<exec-id>", process, IOConfig(...))   # another process in it
    code = await ex.wait_exec("<id>", "<exec-id>")
    await ex.kill("<id>", signal.SIGTERM)
    status = await ex.wait("<id>")            # ExitStatus(code=0, oom_killed=False, finished_at=...)
    await ex.delete("<id>")                   # the shim is gone, its state removed

Optional: ``async def prepare(container_id) -> None``, a hint that ``create`` for this container
is coming (the kernel calls it when a container is created and when a start begins, before the
bundle exists).  An executor may get ready there — warm caches, prime the kernel — and must
return at once and never fail; executors without it are simply not told.

After ``wait`` returns, ``create`` + ``start`` with the same id and bundle runs the container
again (``docker start`` of a stopped container): the kernel keeps the root filesystem, so the
files it wrote are still there.

Exit codes: the program's own (0-255), or 128+N when killed by signal N.  Errors:

- unknown ids raise ``NotFound``; ``create`` of an existing one ``AlreadyExists``;
- ``start`` of a running container and ``exec``/``attach``/``kill`` of a stopped one raise
  ``Conflict``;
- a program that does not exist raises ``NotFound`` with docker's message
  (``exec: "foo": executable file not found in $PATH``; the CLI exits 127), one that cannot be
  run (permission, not executable, a directory) ``Forbidden`` (exit 126) — raised by ``start``
  (or ``exec``) before it returns, never reported only as an exit code;
- a malformed bundle raises ``InvalidArgument``.
"""
from __future__ import annotations

from pathlib import Path
from typing import Any, Protocol, runtime_checkable

import attrs


@attrs.frozen
class IOConfig:
    """How a process's stdio is wired.

    ``terminal``    allocate a pty: stdout and stderr are one stream, ``stdin`` its input side;
    ``stdin``       keep a stdin open that attachers write to (``docker run -i``); else /dev/null;
    ``stdin_once``  close the process's stdin when the first attacher that wrote to it detaches;
    ``log_path``    where the shim appends json-file log lines (``None`` for an exec: not logged);
    ``width``/``height``  initial pty size.
    """

    terminal: bool = False
    stdin: bool = False
    stdin_once: bool = False
    log_path: Path | None = None
    width: int = 80
    height: int = 24


@attrs.frozen
class ContainerState:
    """``status`` is one of ``created``, ``running``, ``paused``, ``stopped``."""

    id: str
    status: str
    pid: int = 0
    exit_code: int | None = None
    oom_killed: bool = False
    started_at: float = 0.0
    finished_at: float = 0.0


@attrs.frozen
class ExitStatus:
    code: int
    oom_killed: bool = False
    finished_at: float = 0.0


@runtime_checkable
class AttachStream(Protocol):
    """A live connection to a process's stdio, as the shim serves it.

    Output comes from :meth:`receive` as ``(stream, data)`` pairs, ``stream`` being 1 (stdout)
    or 2 (stderr; never with a terminal), until the process's output ends (``None``).  Input
    goes in with :meth:`send_stdin`; :meth:`close_stdin` closes the process's stdin (EOF).
    Closing the stream detaches; the process runs on.
    """

    async def receive(self) -> tuple[int, bytes] | None: ...

    async def send_stdin(self, data: bytes) -> None: ...

    async def close_stdin(self) -> None: ...

    async def aclose(self) -> None: ...


@runtime_checkable
class Preparer(Protocol):
    """An optional hint an executor may implement besides :class:`Executor`.

    The kernel calls :meth:`prepare` when a container is created and when a start begins, before
    the container's bundle exists, only on executors that are instances of this Protocol
    (``isinstance(executor, Preparer)``).  A driver uses it to get slow, container-independent
    work out of the way (the built-in executor moves itself into its cgroup, so that the kernel's
    cgroup-move grace period is paid before the container's own move).  Errors are logged and
    ignored: the hint must never be needed for correctness.
    """

    async def prepare(self, container_id: str) -> None:
        """Get ready for ``create``/``start`` of ``container_id``."""


@runtime_checkable
class Executor(Protocol):
    async def create(self, container_id: str, bundle: Path, io: IOConfig) -> None:
        """Start the shim and create the container from ``bundle``; its program does not run yet."""

    async def start(self, container_id: str) -> int:
        """Run the program; return its pid on the host.  See the module docstring for errors."""

    async def state(self, container_id: str) -> ContainerState: ...

    async def kill(self, container_id: str, signal: int, all_processes: bool = False) -> None:
        """Send ``signal`` to the container's PID 1 (every process in it with ``all_processes``)."""

    async def wait(self, container_id: str) -> ExitStatus:
        """Block until the program has exited; return at once if it already has."""

    async def pause(self, container_id: str) -> None:
        """Freeze every process of the container (the freezer cgroup)."""

    async def resume(self, container_id: str) -> None: ...

    async def attach(self, container_id: str, exec_id: str | None = None) -> AttachStream:
        """Connect to the stdio of the container's program (or of exec ``exec_id``)."""

    async def resize(self, container_id: str, width: int, height: int, exec_id: str | None = None) -> None:
        """Set the pty size (a no-op without a terminal)."""

    async def exec(self, container_id: str, exec_id: str, process: dict[str, Any], io: IOConfig) -> int:
        """Run another process in the running container (the OCI ``process`` object); its pid."""

    async def wait_exec(self, container_id: str, exec_id: str) -> int:
        """Block until exec ``exec_id`` has exited; its exit code."""

    async def top(self, container_id: str) -> list[int]:
        """The host pids of every process in the container."""

    async def stats(self, container_id: str) -> dict[str, Any]:
        """Resource use from the container's cgroups, in the shape of docker's stats
        (``memory_stats``, ``cpu_stats``, ``pids_stats``, ``blkio_stats``)."""

    async def delete(self, container_id: str) -> None:
        """Remove a stopped container's shim and state.  ``Conflict`` while it runs."""

    async def list(self) -> list[ContainerState]:
        """Every container this executor has, running or not (a new daemon re-adopts them)."""

    async def close(self) -> None:
        """Release what the driver holds in the daemon.  Containers and shims keep running."""
