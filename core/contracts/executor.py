"""The executor contract: running OCI runtime bundles.

An executor runs a *bundle* — a directory with ``config.json`` (the OCI runtime spec) and a root
filesystem — as a container, supervised by a *shim* of its own: a small process, independent of
the daemon, that holds the container's stdio or pty, writes its logs, serves attach, reaps it and
records its exit status.  Containers and shims outlive the daemon; a daemon that starts again
re-adopts them through :meth:`Executor.list`.

Lifecycle
---------
::

    await ex.create("id", bundle_dir, io=IOSpec(...))   # namespaces made, process not yet run
    await ex.start("id")                                 # the process runs
    st = await ex.state("id")                            # "created" | "running" | "paused" | "stopped"
    await ex.exec("id", "exec-id", process_spec)         # another process in the container
    await ex.kill("id", signal.SIGTERM)
    status = await ex.wait("id")                         # exit code (128+n for a signal)
    await ex.delete("id")                                # the shim goes, state is removed

Errors: unknown ids raise ``NotFound``; ``start`` of a running container and ``exec`` into a
stopped one raise ``Conflict``; an executable that cannot be found raises ``NotFound`` (the CLI's
exit 127), one that cannot be run ``InvalidArgument`` (126).
"""
from __future__ import annotations

from pathlib import Path
from typing import Any, Protocol, runtime_checkable


@runtime_checkable
class Executor(Protocol):
    async def create(self, container_id: str, bundle: Path, io: Any) -> None: ...

    async def start(self, container_id: str) -> int:
        """Start the container's process; return its pid on the host."""

    async def state(self, container_id: str) -> dict[str, Any]: ...

    async def kill(self, container_id: str, signal: int, all_processes: bool = False) -> None: ...

    async def wait(self, container_id: str) -> int: ...

    async def exec(self, container_id: str, exec_id: str, process: dict[str, Any], io: Any) -> int: ...

    async def delete(self, container_id: str) -> None: ...

    async def list(self) -> list[dict[str, Any]]:
        """Every container this executor supervises, running or not (used to re-adopt)."""

    async def close(self) -> None: ...
