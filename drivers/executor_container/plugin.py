"""Entry point of the built-in executor driver "container": registers it with the kernel.

The driver runs OCI runtime-spec bundles in Linux namespaces, as runc does, with one shim per
container (core's public shim kit, :mod:`core.shim`); the runtime itself (namespaces, mounts,
pivot_root, capabilities, seccomp, cgroups) is ``runtime.py``, the shim's runtime helper.  See
``driver.py``.
"""
from __future__ import annotations

import os

from core.hookspecs import hookimpl

NAME = "container"
_NAMESPACES = ("pid", "mnt", "uts", "ipc", "net", "cgroup")


@hookimpl
def core_driver_describe() -> str:
    return ("Linux namespaces executor (pid, mount, uts, ipc, net, cgroup), cgroups v1/v2, "
            "seccomp, with a shim per container")


@hookimpl
def core_driver_probe(context) -> str | None:
    if os.geteuid() != 0:
        return "the container executor needs root"
    missing = [ns for ns in _NAMESPACES if not os.path.exists(f"/proc/self/ns/{ns}")]
    if missing:
        return f"the kernel has no {', '.join(missing)} namespace support"
    from core.shim import cgroups

    return cgroups.available()


@hookimpl
def core_executor_driver(context):
    from drivers.executor_container.driver import ContainerExecutor

    return ContainerExecutor(context)
