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
    st = await ex.state("<id>")               # ContainerState(status=RUNNING, pid=..., ...)
    stream = await ex.attach("<id>")          # stdin/stdout/stderr, while it runs
    await ex.exec("<id>", "<exec-id>", process, IOConfig(...))   # another process in it
    code = await ex.wait_exec("<id>", "<exec-id>")
    await ex.kill("<id>", signal.SIGTERM)
    status = await ex.wait("<id>")            # ExitStatus(code=0, oom_killed=False, finished_at=...)
    await ex.delete("<id>")                   # the shim is gone, its state removed

Optional: the :class:`Preparer` Protocol (``async def prepare(container_id) -> None``), a hint
that ``create`` for this container is coming (the kernel calls it when a container is created
and when a start begins, before the bundle exists, on executors that are instances of
``Preparer``).  An executor may get ready there — warm caches, prime the kernel — and must
return at once and never fail; executors without it are simply not told.

Optional: the :class:`ResourceUpdater` Protocol (``async def update_resources(container_id,
resources: Resources) -> None``): change the resource limits of a created, running or paused
container in place (``docker update``); the kernel uses it on executors that are instances of
``ResourceUpdater`` and answers 501 for the others.

Resource use comes back typed (:class:`ContainerStats`); :func:`docker_stats` renders it in
the shape of docker's stats.  Writing an executor: the public kit :mod:`core.shim` (a shim,
its documented protocol, a launcher, a client and :class:`core.shim.executor.ShimExecutor`)
does the supervision; an executor brings a runtime helper (see ``examples/core-runc-executor``).

After ``wait`` returns, ``create`` + ``start`` with the same id and bundle runs the container
again (``docker start`` of a stopped container): the kernel keeps the root filesystem, so the
files it wrote are still there.

Exit codes: the program's own (0-255), or 128+N when killed by signal N.  Errors:

- unknown ids raise ``NotFound``; ``create`` of an existing one ``AlreadyExists``;
- ``start`` of a running container and ``exec``/``attach``/``kill`` of a stopped one raise
  ``Conflict``;
- a program that does not exist raises ``core.errors.ProgramNotFound`` (a ``NotFound``) with
  docker's message (``exec: "foo": executable file not found in $PATH``; the CLI exits 127),
  one that cannot be run (permission, not executable, a directory)
  ``core.errors.ProgramNotRunnable`` (a ``Forbidden``; exit 126) — raised by ``start``
  (or ``exec``) before it returns, never reported only as an exit code;
- a malformed bundle raises ``InvalidArgument``.
"""
from __future__ import annotations

import enum
from collections.abc import Mapping
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


class ContainerStatus(enum.StrEnum):
    """Where a container is in its life, as :meth:`Executor.state` reports it.

    A ``StrEnum``: each member *is* its string (``ContainerStatus.RUNNING == "running"``).
    """

    CREATED = "created"     #: ``create`` done, the program has not run yet
    RUNNING = "running"     #: ``start`` done, the program runs
    PAUSED = "paused"       #: ``pause`` done: every process is frozen
    STOPPED = "stopped"     #: the program has exited (or never will: its shim is gone)


@attrs.frozen
class ContainerState:
    """A container as the executor sees it.

    ``pid``          the host pid of its init while it is created, running or paused (else 0);
    ``exit_code``    once stopped: the program's exit code (128+N when killed by signal N);
    ``oom_killed``   once stopped: the kernel's OOM killer killed a process of the container;
    ``started_at``   / ``finished_at``: Unix times (0.0 when not yet).
    """

    id: str
    status: ContainerStatus = attrs.field(converter=ContainerStatus)
    pid: int = 0
    exit_code: int | None = None
    oom_killed: bool = False
    started_at: float = 0.0
    finished_at: float = 0.0


@attrs.frozen
class ExitStatus:
    """How a program ended: its exit ``code`` (128+N when killed by signal N), whether the OOM
    killer struck, and when (a Unix time)."""

    code: int
    oom_killed: bool = False
    finished_at: float = 0.0


# ------------------------------------------------------------------ stats
@attrs.frozen
class MemoryStats:
    """Memory use, in bytes.  ``max_usage`` and ``failcnt`` exist on cgroup v1 only (None
    elsewhere); ``stats`` is the cgroup's ``memory.stat`` as numbers."""

    usage: int = 0
    limit: int = 0
    max_usage: int | None = None
    failcnt: int | None = None
    stats: Mapping[str, int] = attrs.field(factory=dict)


@attrs.frozen
class CpuUsage:
    """CPU time used, in nanoseconds; ``percpu`` per CPU when the cgroup tells (None else)."""

    total: int = 0
    user: int = 0
    kernel: int = 0
    percpu: tuple[int, ...] | None = attrs.field(
        default=None, converter=lambda v: None if v is None else tuple(v))


@attrs.frozen
class Throttling:
    """CFS throttling: periods elapsed, periods throttled, time throttled (nanoseconds)."""

    periods: int = 0
    throttled_periods: int = 0
    throttled_time: int = 0


@attrs.frozen
class CpuStats:
    """CPU use.  ``usage``/``throttling`` are None when the cgroup has no such controller;
    ``system_usage`` is the host's total CPU time (nanoseconds) when known; ``online_cpus``
    the number of CPUs (None: unknown)."""

    usage: CpuUsage | None = None
    throttling: Throttling | None = None
    system_usage: int | None = None
    online_cpus: int | None = None


@attrs.frozen
class PidsStats:
    """The number of processes, and the limit when there is one."""

    current: int = 0
    limit: int | None = None


@attrs.frozen
class BlkioEntry:
    """One block-I/O counter: device ``major``:``minor``, operation (``read``, ``Write``, ...:
    as the source spells it), value."""

    major: int
    minor: int
    op: str
    value: int


@attrs.frozen
class BlkioStats:
    """Block I/O: bytes and operations per device and operation (None: not known)."""

    service_bytes: tuple[BlkioEntry, ...] | None = attrs.field(
        default=None, converter=lambda v: None if v is None else tuple(v))
    serviced: tuple[BlkioEntry, ...] | None = attrs.field(
        default=None, converter=lambda v: None if v is None else tuple(v))


@attrs.frozen
class ContainerStats:
    """A sample of a container's resource use (:meth:`Executor.stats`); a part is None when
    the executor cannot tell it (no such cgroup controller, no cgroup at all)."""

    memory: MemoryStats | None = None
    cpu: CpuStats | None = None
    pids: PidsStats | None = None
    blkio: BlkioStats | None = None


def docker_stats(stats: ContainerStats) -> dict[str, Any]:
    """``stats`` in the shape of docker's ``GET /containers/{id}/stats`` body: its
    ``memory_stats``, ``cpu_stats``, ``pids_stats`` and ``blkio_stats`` (an absent part is
    ``{}``; the caller adds ``read``, ``precpu_stats``, ``name``, ``id``)."""
    memory: dict[str, Any] = {}
    if stats.memory is not None:
        m = stats.memory
        memory = {"usage": m.usage}
        if m.max_usage is not None:
            memory["max_usage"] = m.max_usage
        memory["limit"] = m.limit
        if m.failcnt is not None:
            memory["failcnt"] = m.failcnt
        memory["stats"] = dict(m.stats)
    cpu: dict[str, Any] = {}
    if stats.cpu is not None:
        c = stats.cpu
        usage: dict[str, Any] = {}
        if c.usage is not None:
            usage = {"total_usage": c.usage.total}
            if c.usage.percpu is not None:
                usage["percpu_usage"] = list(c.usage.percpu)
            usage["usage_in_usermode"] = c.usage.user
            usage["usage_in_kernelmode"] = c.usage.kernel
        throttling: dict[str, Any] = {}
        if c.throttling is not None:
            throttling = {"periods": c.throttling.periods,
                          "throttled_periods": c.throttling.throttled_periods,
                          "throttled_time": c.throttling.throttled_time}
        cpu = {"cpu_usage": usage, "throttling_data": throttling}
        if c.system_usage is not None:
            cpu["system_cpu_usage"] = c.system_usage
        if c.online_cpus is not None:
            cpu["online_cpus"] = c.online_cpus
    pids: dict[str, Any] = {}
    if stats.pids is not None:
        pids = {"current": stats.pids.current}
        if stats.pids.limit is not None:
            pids["limit"] = stats.pids.limit
    blkio: dict[str, Any] = {}
    if stats.blkio is not None:
        def entries(got: tuple[BlkioEntry, ...] | None) -> list[dict[str, Any]] | None:
            return None if got is None else [attrs.asdict(e) for e in got]
        blkio = {"io_service_bytes_recursive": entries(stats.blkio.service_bytes),
                 "io_serviced_recursive": entries(stats.blkio.serviced)}
    return {"memory_stats": memory, "cpu_stats": cpu, "pids_stats": pids, "blkio_stats": blkio}


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


@attrs.frozen
class Resources:
    """The resource limits ``docker update`` changes, in docker's units; ``None``: unchanged.

    ``memory``              limit in bytes (``-1``: unlimited);
    ``memory_reservation``  soft limit in bytes;
    ``memory_swap``         memory + swap limit in bytes (``-1``: unlimited swap), as docker's
                            ``MemorySwap`` (not the swap alone);
    ``cpu_period``/``cpu_quota``  CFS period and quota in microseconds (quota ``-1``: none);
    ``cpu_shares``          relative weight (2..262144, v2 converts it to ``cpu.weight``);
    ``cpuset_cpus``/``cpuset_mems``  the CPUs and memory nodes allowed (``"0-1,3"``);
    ``pids_limit``          the most processes (``0`` or ``-1``: unlimited);
    ``blkio_weight``        block-I/O weight (10..1000).

    The kernel turns docker's ``NanoCpus`` into ``cpu_period``/``cpu_quota``.
    """

    memory: int | None = None
    memory_reservation: int | None = None
    memory_swap: int | None = None
    cpu_shares: int | None = None
    cpu_period: int | None = None
    cpu_quota: int | None = None
    cpuset_cpus: str | None = None
    cpuset_mems: str | None = None
    pids_limit: int | None = None
    blkio_weight: int | None = None


@runtime_checkable
class ResourceUpdater(Protocol):
    """An optional capability an executor may implement besides :class:`Executor`:
    ``docker update`` of a container's resources in place.

    The kernel calls :meth:`update_resources` only on executors that are instances of this
    Protocol (``isinstance(executor, ResourceUpdater)``), for a container that is created,
    running or paused; others make ``docker update`` of resources answer 501.  Only the fields
    that are not ``None`` change.  Errors: an unknown id raises ``NotFound``; a container with
    no cgroup (stopped) ``Conflict``; a limit the kernel refuses (a memory limit below the
    current usage, CPUs that do not exist) ``Conflict`` or ``InvalidArgument`` with the
    kernel's reason.  The new values need not survive the container's next ``create``: the
    kernel writes them into the bundle it makes then.
    """

    async def update_resources(self, container_id: str, resources: Resources) -> None:
        """Apply ``resources`` to the container's cgroup."""


@runtime_checkable
class Executor(Protocol):
    """Runs OCI bundles as containers, each supervised by a shim of the executor's own.

    Vocabulary
        *container id*: the kernel's 64-hex id (an executor accepts ``[A-Za-z0-9][A-Za-z0-9_.-]*``
        up to 128 characters); *bundle*: a directory with ``config.json`` whose ``root.path`` is
        the mounted root filesystem; *init*: the container's first process (PID 1 in its PID
        namespace), running ``process.args``; *exec*: another process run in a running
        container, named by an *exec id* of the kernel's; *shim*: the per-container supervisor
        (stdio, log, attach, reaping, exit records) that outlives the daemon.  The public kit
        :mod:`core.shim` provides a shim, its client and a base class implementing this
        Protocol: most executors need only a runtime helper of their own.

    Walk-through (the states are :class:`ContainerStatus`)::

        (none) --create--> created --start--> running <--pause/resume--> paused
        created, running, paused --(the program exits, or kill)--> stopped
        created, stopped --delete--> (none)          stopped --create (same id)--> created

    1. :meth:`create` starts the shim and creates the container: namespaces, mounts, cgroup,
       the init forked but not yet running the user's program.  State ``created``.
    2. :meth:`start` runs the program; its pid on the host comes back.  State ``running``.
    3. While it runs: :meth:`attach` (its stdio), :meth:`resize`, :meth:`exec` +
       :meth:`wait_exec`, :meth:`top`, :meth:`stats`, :meth:`pause` / :meth:`resume`,
       :meth:`kill`.
    4. The program exits (or is killed): :meth:`wait` returns its :class:`ExitStatus`; state
       ``stopped``.  ``create`` + ``start`` with the same id and bundle runs it again.
    5. :meth:`delete` removes the shim and every trace of the container.

    The daemon may die and start again at any point: :meth:`list` then finds every container
    (with its shim, or orphaned by a killed shim) and every method works on it.  :meth:`aclose`
    releases what the driver holds in the daemon; containers and shims run on.

    Errors (:mod:`core.errors`), common to every method: an unknown id raises ``NotFound``; an
    operation the container's state does not allow raises ``Conflict``; a shim that accepts
    requests but does not answer raises ``Unavailable``; anything else the driver could not do
    is a ``CoreError`` with a message.  A container's program failing is not an error of the
    executor: it is an exit code.
    """

    async def create(self, container_id: str, bundle: Path, io: IOConfig) -> None:
        """Start the shim and create the container from ``bundle``; its program does not run
        yet (state ``created``).

        Precondition: no container ``container_id``, or a ``stopped`` one (which is replaced).
        Errors: ``AlreadyExists`` when it exists and is not stopped; ``InvalidArgument`` for an
        invalid id or a malformed bundle (no ``config.json``, no ``process.args``, no root
        directory); ``CoreError`` when the runtime could not create it (nothing is left behind).
        """

    async def start(self, container_id: str) -> int:
        """Run the program of a ``created`` container; return its pid on the host.

        Errors: ``Conflict`` unless the container is ``created`` (running, or stopped);
        ``ProgramNotFound`` with docker's message when the program does not exist
        (``exec: "foo": executable file not found in $PATH``), ``ProgramNotRunnable`` when it cannot be
        run (permission, a directory) — raised here, before ``start`` returns (the container
        then stops with exit code 127 or 126).
        """

    async def state(self, container_id: str) -> ContainerState:
        """The container's :class:`ContainerState`: status, init pid, exit code once stopped.

        Works in every state, also for a container whose shim was killed (its init may still
        run: ``running``; else ``stopped`` with exit code 255).  Errors: ``NotFound``.
        """

    async def kill(self, container_id: str, signal: int, all_processes: bool = False) -> None:
        """Send ``signal`` to the container's init (to every process in it with
        ``all_processes``).  SIGKILL also ends a ``paused`` container.

        Precondition: ``created``, ``running`` or ``paused``.  Errors: ``Conflict`` when it is
        stopped (or the signal reached no process).
        """

    async def wait(self, container_id: str) -> ExitStatus:
        """Block until the program has exited; return at once when it already has.

        Cancelling the wait leaves the container alone.  A container whose shim and init are
        both gone without an exit record reports code 255.  Errors: ``NotFound``.
        """

    async def pause(self, container_id: str) -> None:
        """Freeze every process of a ``running`` container (state ``paused``).

        Errors: ``Conflict`` unless it is running (or it has no cgroup); ``CoreError`` when
        the freezer fails.
        """

    async def resume(self, container_id: str) -> None:
        """Thaw a ``paused`` container: its processes run on (state ``running``).

        Errors: ``Conflict`` unless it is paused; ``CoreError`` when the freezer fails.
        """

    async def attach(self, container_id: str, exec_id: str | None = None) -> AttachStream:
        """Connect to the stdio of the container's init (or of exec ``exec_id``).

        Several attachers may be connected at once; each sees the output from the moment it
        attached (an exec's output from before its first attacher is replayed to it).
        Errors: ``Conflict`` when the process has ended; ``NotFound`` for an unknown exec.
        """

    async def resize(self, container_id: str, width: int, height: int, exec_id: str | None = None) -> None:
        """Set the pty size of the init (or of exec ``exec_id``); a no-op without a terminal.

        Errors: ``Conflict`` when the container is stopped; ``NotFound`` for an unknown exec.
        """

    async def exec(self, container_id: str, exec_id: str, process: dict[str, Any], io: IOConfig) -> int:
        """Run another process (the OCI ``process`` object: ``args``, ``env``, ``cwd``,
        ``user``, ``capabilities`` ...) in a ``running`` container, in its namespaces and
        cgroup, with the container's seccomp filter; return its host pid.

        Errors: ``Conflict`` unless the container is running; ``AlreadyExists`` for an exec id
        in use; ``InvalidArgument`` for an invalid exec id or a process without ``args``;
        ``NotFound`` / ``Forbidden`` for a program that is missing / cannot run (as ``start``).
        """

    async def wait_exec(self, container_id: str, exec_id: str) -> int:
        """Block until exec ``exec_id`` has exited; its exit code (at once when it has).

        Errors: ``NotFound`` for an unknown exec.
        """

    async def top(self, container_id: str) -> list[int]:
        """The host pids of every process in the container, sorted.

        Errors: ``Conflict`` when it is stopped.
        """

    async def stats(self, container_id: str) -> ContainerStats:
        """A sample of the container's resource use (its cgroup's counters); parts the
        executor cannot tell are None.  :func:`docker_stats` renders it as docker's JSON.

        Works in every state (a stopped container's stats are empty).  Errors: ``NotFound``.
        """

    async def delete(self, container_id: str) -> None:
        """Remove a ``created`` or ``stopped`` container: its shim, init (when created),
        cgroup and state.  The bundle and root filesystem are the kernel's and stay.

        Errors: ``Conflict`` when it is running or paused.
        """

    async def list(self) -> list[ContainerState]:
        """Every container this executor has, in any state (a new daemon re-adopts them)."""

    async def aclose(self) -> None:
        """Release what the driver holds in the daemon (connections, helper processes).
        Containers and shims keep running; the driver object is not used afterwards."""
