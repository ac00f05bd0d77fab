"""The hook specifications every driver implements.

A *driver* is a Python object — usually a module — published under an entry point in one of four
groups, one per kind::

    core.storage    snapshots of filesystems: layers, container roots    (overlay, vfs)
    core.network    networks, endpoints, published ports                 (bridge, overlay)
    core.executor   running OCI runtime bundles, one shim per container  (container)
    core.registry   pulling and pushing images from/to registries       (hub)

The kernel loads the one named driver of a kind with stevedore, registers it with a pluggy
``PluginManager`` that knows only the specs of that kind, and validates it: every hook it
implements must match a spec here (``check_pending``), and its arguments must be a subset of the
spec's (pluggy's rule, so specs can grow without breaking drivers).

Hooks are **synchronous**: pluggy cannot await, an ``async def`` hook would hand back a coroutine.
They are factories and probes: they return the *driver object* (see ``core.contracts``) whose I/O
methods are ``async`` and run under trio.

Each kind has three hooks:

``core_driver_describe()``
    A one-line description shown by ``core info``.  Optional.
``core_driver_probe(context)``
    Whether this kernel and host can run the driver.  Return ``None`` when it can, or a string
    saying why not (``"kernel has no overlay support"``): the driver is then reported as
    *skipped*, not as an error, and selecting it fails with that reason.  Optional.
``core_<kind>_driver(context)``
    Build the driver object.  Required.  Called once per daemon.

A driver that is not implemented yet must say so truthfully: its ``core_driver_describe`` says
what it does not do, and its methods raise ``core.errors.NotImplemented_``.
"""
from __future__ import annotations

from typing import TYPE_CHECKING, Any

import pluggy

if TYPE_CHECKING:
    from core.contracts import DriverContext

PROJECT = "core"
hookspec = pluggy.HookspecMarker(PROJECT)
hookimpl = pluggy.HookimplMarker(PROJECT)

KINDS = ("storage", "network", "executor", "registry")


class CommonSpecs:
    """Hooks every driver may implement, whatever its kind."""

    @hookspec(firstresult=True)
    def core_driver_describe(self) -> str | None:
        """Return a one-line description of the driver for ``core info``."""

    @hookspec(firstresult=True)
    def core_driver_probe(self, context: DriverContext) -> str | None:
        """Return ``None`` if the driver can run here, else the reason it cannot.

        Must be cheap and side-effect free: ``core info`` probes every driver found.  A probe
        that raises is reported as an *error* of that driver, with the exception's message.
        """


class StorageSpecs(CommonSpecs):
    @hookspec(firstresult=True)
    def core_storage_driver(self, context: DriverContext) -> Any:
        """Return a :class:`core.contracts.Snapshotter` rooted at ``context.root``."""


class NetworkSpecs(CommonSpecs):
    @hookspec(firstresult=True)
    def core_network_driver(self, context: DriverContext) -> Any:
        """Return a :class:`core.contracts.NetworkDriver` keeping its state under ``context.root``."""


class ExecutorSpecs(CommonSpecs):
    @hookspec(firstresult=True)
    def core_executor_driver(self, context: DriverContext) -> Any:
        """Return a :class:`core.contracts.Executor` keeping its state under ``context.root``."""


class RegistrySpecs(CommonSpecs):
    @hookspec(firstresult=True)
    def core_registry_driver(self, context: DriverContext) -> Any:
        """Return a :class:`core.contracts.RegistryClient`."""


SPECS: dict[str, type] = {
    "storage": StorageSpecs,
    "network": NetworkSpecs,
    "executor": ExecutorSpecs,
    "registry": RegistrySpecs,
}
