"""The contracts between the kernel and its drivers.

The hook specifications (``core.hookspecs``) are factories: each returns a driver object that
implements one of the Protocols defined in this package.  Their I/O methods are ``async`` and run
under trio; the errors they raise are those of ``core.errors``.

=========  ======================================  =============================
kind       protocol                                module
=========  ======================================  =============================
storage    :class:`Snapshotter`                    ``core.contracts.storage``
network    :class:`NetworkDriver`                  ``core.contracts.network``
executor   :class:`Executor`                       ``core.contracts.executor``
registry   :class:`RegistryClient`                 ``core.contracts.registry``
=========  ======================================  =============================
"""
from __future__ import annotations

from pathlib import Path
from typing import Any

import attrs

from core.contracts.executor import Executor
from core.contracts.network import NetworkDriver
from core.contracts.registry import RegistryClient
from core.contracts.storage import Snapshotter, SnapshotInfo, SnapshotKind, Usage


@attrs.frozen
class DriverContext:
    """What the kernel hands a driver's hooks.

    ``root``      a directory of the driver's own, ``<data-root>/<kind>/<name>``, created by the
                  kernel; the driver keeps its persistent state there and nowhere else.
    ``exec_root`` a directory for runtime state (sockets, pid files) that does not survive a
                  reboot, ``<exec-root>/<kind>/<name>``.
    ``options``   driver options from the daemon config (``"storage-opts"`` etc.), strings only.
    ``services``  kernel services a driver may use, by name: ``"content"`` is the content store
                  (see ``core.engine.images.content``) for registry drivers.  Absent entries are not offered.
    """

    kind: str
    name: str
    root: Path
    exec_root: Path
    data_root: Path
    options: dict[str, str] = attrs.field(factory=dict)
    services: dict[str, Any] = attrs.field(factory=dict)


__all__ = [
    "DriverContext",
    "Executor",
    "NetworkDriver",
    "RegistryClient",
    "SnapshotInfo",
    "SnapshotKind",
    "Snapshotter",
    "Usage",
]
