"""The executor kit: core's shim, its protocol, its launcher and client, for any executor.

An executor (:class:`core.contracts.executor.Executor`) supervises each container with a
*shim*: a small process, independent of the daemon, that holds the container's stdio, writes its
log, serves attach, reaps it and records its exit.  This package is that shim and everything an
executor needs to drive it; an executor brings only its *runtime helper*, the program that
actually creates a container (``runc create`` or namespaces and mounts by hand).

=============================  ==============================================================
:mod:`core.shim.executor`      :class:`~core.shim.executor.ShimExecutor`: the whole executor
                               contract over shims, with public override points
:mod:`core.shim.client`        :class:`~core.shim.client.RuntimeHelper`, the socket protocol
                               under trio (``connect``, ``request``, ``ShimAttachStream``), the
                               launcher command, the warm spawner :class:`~core.shim.client.Zygote`
:mod:`core.shim.cgroups`       a container's cgroups (v1 and v2) and the ``cgroup`` state file
:mod:`core.shim.server`        the shim program itself (C modules only: it stays in memory):
                               reactor, lifecycle, requests, launcher
:mod:`core.shim.sigreset`      ``reset_signals``: default dispositions and an empty mask, as a
                               new program expects (the zygote's shims, a runtime's processes)
:mod:`core.shim.stdio`         the shim's processes (stdio, log, replay) and client connections
:mod:`core.shim.zygote`        the warm spawner program: forks shims without starting Python
:mod:`core.shim.lookup`        finding a container's program as runc does (for runtime helpers)
=============================  ==============================================================

Writing an executor
-------------------
Subclass :class:`~core.shim.executor.ShimExecutor` and give it a runtime helper::

    from core.shim.client import RuntimeHelper
    from core.shim.executor import ShimExecutor

    HELPER = RuntimeHelper.of("mypkg.helper", mypkg_helper_file)   # module with main(argv)

    class MyExecutor(ShimExecutor):
        def __init__(self, context):
            super().__init__(Path(context.exec_root), HELPER, zygote=False)

Override :meth:`~core.shim.executor.ShimExecutor.launch` to put files of your own in the
state directory before the shim starts, :meth:`~core.shim.executor.ShimExecutor.release` to
free the runtime's own record of a deleted container, and any contract method (``kill``,
``pause``, ``resume``, ``top``, ``stats`` ...) your runtime does better; build on
``state_dir``, ``live`` and ``cgroup``.  ``examples/core-runc-executor`` does exactly this.
With ``zygote=True`` (the built-in executor's choice) the helper module is imported once by the
zygote and its ``main`` runs in a forked child for every container: its import must start no
thread and hold no state a fork would break.  Without, each shim is started by the launcher and
each helper is a fresh ``python -I -S`` process.  A helper may import the kit's standard-library modules
(:mod:`core.shim.cgroups`: ``Cgroup.of_pid(pid).save(STATE/cgroup)``; :mod:`core.shim.lookup`):
the shim puts core's directory on its path.

PROTOCOL
--------

**Starting a shim.**  The launcher::

    python -I -S server.py --helper-path PATH --helper-module MODULE \\
        STATE ID BUNDLE TERMINAL STDIN STDIN_ONCE WIDTH HEIGHT LOG SOCKET

``STATE`` is the container's state directory (made by the executor), ``TERMINAL``, ``STDIN``,
``STDIN_ONCE`` are ``0``/``1``, ``WIDTH``/``HEIGHT`` the pty's size, ``LOG`` the json-file log
(``-``: none), ``SOCKET`` the shim's socket (``STATE/sock``).  The launcher detaches the shim
(``setsid``, a child subreaper re-parented to init: killing the daemon does not reach it),
prints its verdict on the container's creation — ``ok`` or ``error <Kind> <message>`` — and
exits.  The zygote takes the same argv as one line of JSON on its socket and answers the
verdict on that connection.

**Messages on the shim's socket.**  One connection per request (``attach`` turns it into a
stream).  Every message is a frame: 1 byte kind, 4 bytes big-endian payload length, payload::

    client -> shim   "?" request     ASCII words:  state | start | kill SIG | wait [EXEC] |
                                     attach [EXEC] | resize W H [EXEC] | delete |
                                     exec EXEC TERMINAL STDIN STDIN_ONCE W H |
                                     debug (counts of what the shim holds)
                     "0" stdin data  (attached)
                     "c" close stdin (attached; with a pty: sends the EOF character)
    shim -> client   "=" answer      a JSON object: state {status, pid, started_at, exit_code,
                                     finished_at}; start, exec {pid}; wait {exit_code, ...};
                                     the others {}
                     "!" error       "<Kind> <message>", Kind a core.errors class name
                                     (NotFound, Conflict, Forbidden, InvalidArgument, ...)
                     "1" / "2"       stdout / stderr data (attached; with a pty all is "1")
                     "."             end of output (attached)

The shim's ``status`` is ``creating``, ``created``, ``running`` or ``stopped`` (``paused`` is
the cgroup's freezer, read by the executor).  ``wait`` is answered when the process has exited
and its output is drained.  ``exec EXEC ...`` reads the OCI ``process`` from
``STATE/exec-EXEC.json``, written by the executor first.  An exec's output produced before its
first attacher connects is kept (up to 256 KiB each, 2 MiB for all, until 30 s after it ended)
and replayed to that attacher; the container's own output before an attach is in the log only.

**State files**, in ``STATE`` (a runtime directory: gone after a reboot, as no container runs)::

    bundle            the bundle's path                            (executor)
    exec-EXEC.json    {"process": <OCI process>}                   (executor, before "exec")
    sock              the shim's unix socket                       (shim)
    shim.pid          the shim's pid; shim.log its stderr          (shim)
    init.pid          the init's host pid                          (shim, from the helper)
    started           the start time, a Unix time                  (shim)
    exit.json         the exit record, below                       (shim, atomically)
    exec-EXEC.exit    {"exit_code": N, "finished_at": T}           (shim, atomically)
    cgroup            "version 1|2", then one "NAME PATH" line per hierarchy, the first a real
                      controller (v2: the one line "- PATH")       (the runtime helper)

A shim that forked from the zygote has ``STATE`` as its cwd; one from the launcher has it in
its command line: that is how an executor tells its shim from a recycled pid.

**The json-file log** (docker's): one JSON object per line,
``{"log":"<text>","stream":"stdout"|"stderr","time":"2026-01-02T03:04:05.123456789Z"}`` (time
in UTC, always 9 fractional digits); output is split at each ``\\n`` and at 16 KiB, the rest
written when the output ends.  Execs are not logged.

**Exit records.**  ``exit.json`` is ``{"exit_code", "oom_killed", "started_at", "finished_at",
"pid"}``: the init's code (0-255, 128+N when killed by signal N), whether the cgroup saw an OOM
kill (``memory.events``'s ``oom_kill`` on v2, ``memory.oom_control`` on v1, from the ``cgroup``
file), Unix times.  It is written once the init has exited (everything left in its cgroup is
then killed) and its output is drained (at most 5 s after the exit); the shim then answers its
waiters and exits.  A container whose shim was killed has no record: the executor then waits on
the init itself, or reports 255.

**The runtime helper's contract.**  The shim spawns the helper (``MODULE.main(argv)``, in a
fresh ``python -I -S`` or forked from the zygote) with ``argv[1:]``::

    init STATE BUNDLE ID WIDTH HEIGHT         create the container of BUNDLE
    exec STATE EXEC_ID INIT_PID WIDTH HEIGHT  run STATE/exec-EXEC_ID.json in the container

with the process's stdio on fds 0-2 (pipes; ``/dev/null`` with a terminal), the *sync socket*
(a unix stream socket) on fd 3 and, for ``init``, the *start pipe*'s read end on fd 4.  It
writes on the sync socket, one line each::

    pid <host pid>            the init (or exec'd process) exists; it must be a child of the
                              shim (a child subreaper: a helper that forks it and exits is fine)
    console                   with SCM_RIGHTS: the pty's master (``process.terminal``)
    created                   init only: created, waiting for the start pipe
    error <Kind> <message>    a failure (ProgramNotFound, ProgramNotRunnable, InvalidArgument, CoreError)

``init`` reports ``pid`` and ``created`` (the launcher's verdict is then ``ok``; an ``error``
or end of file first fails the create), then waits for one byte on the start pipe and runs the
program.  The sync socket must reach end of file exactly when the program runs (keep it
close-on-exec, as runc's exec.fifo): the shim answers ``start`` (or ``exec``) then, with the
error if an ``error`` line came first.  A program that cannot be found or run is reported as
``error ProgramNotFound exec: "foo": executable file not found in $PATH`` (or
``ProgramNotRunnable``) before
the process exits 127 (126).  A helper that exits non-zero having reported nothing fails the
request with ``CoreError``.  The helper writes ``STATE/cgroup`` so that OOM kills, pause,
top, stats and delete find the container's cgroup.
"""
