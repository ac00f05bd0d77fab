"""The ``container`` executor: core's shim (:mod:`core.shim`) with ``runtime.py`` as its
runtime helper, which does runc's work itself (namespaces, mounts, pivot_root, capabilities,
seccomp, cgroups).

Everything but the runtime is :class:`core.shim.executor.ShimExecutor`; this driver adds the
:class:`core.contracts.executor.Preparer` hint.  State: one directory per container under the
driver's ``exec_root`` (see :mod:`core.shim`), and ``<exec_root>/.seccomp/`` for the compiled
seccomp filters (``seccomp.compile_cached``).
"""
from __future__ import annotations

import _thread
from pathlib import Path

from core.contracts import DriverContext
from core.shim import cgroups
from core.shim.client import RuntimeHelper
from core.shim.executor import ShimExecutor

HELPER = RuntimeHelper.of("drivers.executor_container.runtime",
                          str(Path(__file__).with_name("runtime.py")))


class ContainerExecutor(ShimExecutor):
    """Runs OCI bundles in Linux namespaces, one shim each; shims forked by a warm zygote."""

    def __init__(self, context: DriverContext) -> None:
        super().__init__(Path(context.exec_root), HELPER)
        self.root = Path(context.root)
        self._procs_file: str | None = cgroups.own_procs_file()   # for prepare()
        self._priming = False

    async def prepare(self, container_id: str) -> None:
        """A create is coming: start the kernel's cgroup-move wait now (:func:`cgroups.prime`),
        in a thread of its own, at most one at a time; returns at once."""
        if self._procs_file is None or self._priming:
            return
        self._priming = True

        def prime(procs_file: str = self._procs_file) -> None:
            try:
                cgroups.prime(procs_file)
            finally:
                self._priming = False

        _thread.start_new_thread(prime, ())   # not threading: its start() waits for the thread
