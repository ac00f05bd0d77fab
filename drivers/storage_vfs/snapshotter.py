"""The vfs snapshotter: every snapshot a full copy of its parent; works on any filesystem.

Preparing a snapshot copies its parent's tree faithfully (:func:`core.storage.fs.copy_tree`),
so it costs the image's size in time and space, and layers are applied with whiteouts as
deletions.  Views cost nothing: the parent is committed, hence immutable, so a view is a
read-only bind mount of the parent's own directory.  Mounts are bind mounts::

    active                 bind mount of fs (read-write)
    view,   no parent      bind mount of fs, read-only
    view,   parent         bind mount of the parent's fs, read-only
"""
from __future__ import annotations

import os
from pathlib import Path

from core.contracts.storage import SnapshotKind
from core.storage import fs
from core.storage.layer import WhiteoutMode
from core.storage.metastore import Snapshot
from core.storage.snapshotter import DirectorySnapshotter, bind_mount
from core.types import Mount

__all__ = ["VfsSnapshotter"]


class VfsSnapshotter(DirectorySnapshotter):
    """Full-copy snapshots under ``root``.  See the module docstring."""

    whiteouts = WhiteoutMode.DELETE

    def populate(self, new: Path, kind: SnapshotKind, parents: list[Path]) -> None:
        if kind is SnapshotKind.ACTIVE and parents:
            fs.copy_tree(parents[0], new / "fs")
        else:
            os.mkdir(new / "fs", 0o755)
            os.chmod(new / "fs", 0o755)

    def mounts_of(self, snap: Snapshot) -> list[Mount]:
        if snap.kind is SnapshotKind.VIEW:
            own = self.snapshot_fs(snap.parent_ids[0]) if snap.parent_ids else self.snapshot_fs(snap.id)
            return [bind_mount(own, readonly=True)]
        return [bind_mount(self.snapshot_fs(snap.id), readonly=False)]

    def lowers_of(self, snap: Snapshot) -> list[Path]:
        return []
