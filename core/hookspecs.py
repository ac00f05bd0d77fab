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

Each kind has three hooks, in the order the kernel calls them:

``core_driver_describe()``
    A one-line description shown by ``core info``.  Optional.
``core_driver_probe(context)``
    Whether this kernel and host can run the driver.  Return ``None`` when it can, or a string
    saying why not (``"kernel has no overlay support"``): the driver is then reported as
    *skipped*, not as an error, and selecting it fails with that reason.  Optional.
``core_<kind>_driver(context)``
    Build the driver object: it must implement the kind's Protocol (``core.contracts``), which
    the loading suite (``core.testing.loading``) checks with ``isinstance``.  Required.  Called
    once per daemon, after the probe said yes; the kernel closes the object with ``aclose()``.

``context`` is a :class:`core.contracts.DriverContext`: the driver's own directories, its
options, and what the kernel offers its kind (the content store and registry settings, for
registry drivers).  A hook may take fewer arguments than its spec (pluggy's rule), so a driver
that needs no context declares none::

    from core.hookspecs import hookimpl

    @hookimpl
    def core_driver_describe() -> str:
        return "plain-copy snapshots"

    @hookimpl
    def core_storage_driver(context: DriverContext) -> Snapshotter:
        from mydriver.snapshotter import MySnapshotter   # imported on use: listing stays light
        return MySnapshotter(context.root)

Every hook here is ``firstresult``: one driver answers, and a ``None`` from a factory is an
error of the driver (``DriverError: ... returned no driver object``).  A hook that raises
``core.errors.DriverError`` fails with that message; any other exception is reported as the
driver failing to start, with the exception's type and message.

A driver that is not implemented yet must say so truthfully: its ``core_driver_describe`` says
what it does not do, and its methods raise ``core.errors.NotImplemented_``.
"""
from __future__ import annotations

from typing import TYPE_CHECKING

import pluggy

if TYPE_CHECKING:
    from core.contracts import DriverContext, Executor, NetworkDriver, RegistryClient, Snapshotter

PROJECT = "core"
hookspec = pluggy.HookspecMarker(PROJECT)
hookimpl = pluggy.HookimplMarker(PROJECT)

KINDS = ("storage", "network", "executor", "registry")


class CommonSpecs:
    """Hooks every driver may implement, whatever its kind."""

    @hookspec(firstresult=True)
    def core_driver_describe(self) -> str | None:
        """Return a one-line description of the driver for ``core info``.

        Called without a context, often (``core info`` lists every driver found): return a
        constant; import nothing heavy.
        """

    @hookspec(firstresult=True)
    def core_driver_probe(self, context: DriverContext) -> str | None:
        """Return ``None`` if the driver can run here, else the reason it cannot.

        :param context: the driver's context; its directories may not exist yet.

        Must be cheap and side-effect free: ``core info`` probes every driver found.  A probe
        that raises is reported as an *error* of that driver, with the exception's message.
        """


class StorageSpecs(CommonSpecs):
    @hookspec(firstresult=True)
    def core_storage_driver(self, context: DriverContext) -> Snapshotter:
        """Return a :class:`core.contracts.Snapshotter` keeping its snapshots under
        ``context.root``.

        :param context: ``root`` and ``exec_root`` exist; ``options`` are the daemon's
            ``storage-opts`` (or ``driver-opts``' ``storage`` entry).

        Snapshots made by an earlier object on the same root must be found again (a daemon
        restart).  Most drivers subclass :class:`core.storage.snapshotter.DirectorySnapshotter`.
        """


class NetworkSpecs(CommonSpecs):
    @hookspec(firstresult=True)
    def core_network_driver(self, context: DriverContext) -> NetworkDriver:
        """Return a :class:`core.contracts.NetworkDriver` keeping its state under ``context.root``.

        :param context: ``root`` and ``exec_root`` exist; ``options`` are the daemon's
            ``driver-opts``' ``network`` entry.

        Networks and endpoints made by an earlier object on the same root must be found again
        (a daemon restart), and traffic must keep flowing while no object exists.
        """


class ExecutorSpecs(CommonSpecs):
    @hookspec(firstresult=True)
    def core_executor_driver(self, context: DriverContext) -> Executor:
        """Return a :class:`core.contracts.Executor` keeping its state under ``context.root``.

        :param context: ``root`` and ``exec_root`` exist; ``options`` are the daemon's
            ``driver-opts``' ``executor`` entry.

        Containers started by an earlier object on the same root must be found again and keep
        running while no object exists (the daemon restarts without stopping containers).
        """


class RegistrySpecs(CommonSpecs):
    @hookspec(firstresult=True)
    def core_registry_driver(self, context: DriverContext) -> RegistryClient:
        """Return a :class:`core.contracts.RegistryClient`.

        :param context: ``content`` is the kernel's content store, where fetched blobs are
            written (verified); ``registry`` the mirrors and insecure registries to honour
            (``None``: none).  Raise ``core.errors.DriverError`` when ``content`` is ``None``:
            a registry driver never keeps blobs of its own.
        """


#: the hook specifications of each kind, as the kernel registers them
SPECS: dict[str, type[CommonSpecs]] = {
    "storage": StorageSpecs,
    "network": NetworkSpecs,
    "executor": ExecutorSpecs,
    "registry": RegistrySpecs,
}
