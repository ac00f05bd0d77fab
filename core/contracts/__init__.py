"""The contracts between the kernel and its drivers.

The hook specifications (``core.hookspecs``) are factories: each returns a driver object that
implements one of the Protocols defined in this package.  Their I/O methods are ``async`` and run
under trio; the errors they raise are those of ``core.errors``.  Every driver object is an async
resource: the kernel calls its ``aclose()`` once when it is done with it.

=========  ======================================  =============================
kind       protocol                                module
=========  ======================================  =============================
storage    :class:`Snapshotter`                    ``core.contracts.storage``
network    :class:`NetworkDriver`                  ``core.contracts.network``
           (multi-host: :class:`MultiHostNetworkDriver`)
executor   :class:`Executor`                       ``core.contracts.executor``
registry   :class:`RegistryClient`                 ``core.contracts.registry``
=========  ======================================  =============================

What the kernel offers drivers besides directories and options is typed, in
:class:`DriverContext`: the content store (:mod:`core.contracts.content`) and the registry
settings (:class:`~core.contracts.registry.RegistryConfig`).
"""
from __future__ import annotations

from pathlib import Path

import attrs

from core.contracts.content import ContentIngester, ContentProvider, ContentStore, Ingest
from core.contracts.executor import Executor
from core.contracts.network import MultiHostNetworkDriver, NetworkDriver
from core.contracts.registry import RegistryClient, RegistryConfig
from core.contracts.storage import Snapshotter, SnapshotInfo, SnapshotKind, Usage


@attrs.frozen
class DriverContext:
    """What the kernel hands a driver's hooks (``core_driver_probe``, ``core_<kind>_driver``).

    ``kind``, ``name``  the driver's kind and entry-point name.
    ``root``      a directory of the driver's own, ``<data-root>/<kind>/<name>``, created by the
                  kernel before the factory hook runs; the driver keeps its persistent state
                  there and nowhere else.
    ``exec_root`` a directory for runtime state (sockets, pid files) that does not survive a
                  reboot, ``<exec-root>/<kind>/<name>``.
    ``data_root`` the daemon's data root (``root``'s grandparent): read-only context.
    ``options``   driver options from the daemon config (``"storage-opts"`` etc.), strings only.
    ``content``   the kernel's content store (:class:`core.contracts.content.ContentStore`):
                  registry drivers write the blobs they fetch there, verified.  ``None`` for
                  the other kinds; a registry driver given none must refuse to be built
                  (``core.errors.DriverError``) rather than make a store of its own.
    ``registry``  the daemon's registry settings (mirrors, insecure registries), for registry
                  drivers: a :class:`core.contracts.registry.RegistryConfig`; ``None`` means
                  the defaults (no mirrors; loopback alone is insecure).
    """

    kind: str
    name: str
    root: Path
    exec_root: Path
    data_root: Path
    options: dict[str, str] = attrs.field(factory=dict)
    content: ContentStore | None = None
    registry: RegistryConfig | None = None


__all__ = [
    "ContentIngester",
    "ContentProvider",
    "ContentStore",
    "DriverContext",
    "Ingest",
    "Executor",
    "MultiHostNetworkDriver",
    "NetworkDriver",
    "RegistryClient",
    "RegistryConfig",
    "SnapshotInfo",
    "SnapshotKind",
    "Snapshotter",
    "Usage",
]
