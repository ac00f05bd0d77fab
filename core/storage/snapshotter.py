"""The part of a snapshotter that does not depend on how snapshots are mounted.

:class:`DirectorySnapshotter` implements :class:`core.contracts.Snapshotter` for drivers that
keep each snapshot in a directory of their own and its bookkeeping in a
:class:`~core.storage.metastore.MetaStore`.  A driver subclasses it and says, through the public
extension points listed on the class, how a new snapshot's directory is populated, how a
snapshot is mounted, what a layer is applied through, and how whiteouts are written
(:class:`~core.storage.layer.WhiteoutMode`).  Everything else — the rules of the contract, atomic
creation and removal, crash recovery, usage, layer streaming — is written here once.

On disk, under the driver's ``root``::

    metadata.db            the MetaStore (SQLite, WAL)
    snapshots/<id>/fs      the snapshot's files (what the driver puts there is its business)
    snapshots/<id>/...     anything else the driver needs (overlay: ``work``)
    tmp/                   snapshots being created (``new-*``) or removed (``rm-*``)

A snapshot's directory is populated in ``tmp/`` (slowly, in a worker thread, without holding the
database), then renamed into ``snapshots/`` in the same transaction that records it; removal
renames it back into ``tmp/`` in the transaction that forgets it, and deletes it after.  So the
database and ``snapshots/`` always agree, and whatever a crash leaves in ``tmp/`` — or in
``snapshots/`` under an id the database does not know — is garbage, collected when the driver
opens.  One process owns a root at a time.
"""
from __future__ import annotations

import abc
import os
import tempfile
from collections.abc import AsyncIterable, AsyncIterator
from pathlib import Path

import trio

from core.contracts.storage import SnapshotInfo, SnapshotKind, Usage
from core.errors import CoreError, InvalidArgument
from core.storage import fs
from core.storage.layer import WhiteoutMode, apply_layer
from core.storage.metastore import MetaStore, Snapshot
from core.types import Mount

__all__ = ["DirectorySnapshotter", "bind_mount"]


def bind_mount(path: Path, *, readonly: bool) -> Mount:
    """The mount of a directory on its own: a recursive bind, read-only or not."""
    return Mount(type="bind", source=str(path), options=("rbind", "ro" if readonly else "rw"))


class DirectorySnapshotter(abc.ABC):
    """A :class:`core.contracts.Snapshotter` over snapshot directories.

    A driver subclasses it and defines its **extension points** — one attribute and three
    abstract methods, nothing else (the rest is the contract, written here once):

    :attr:`whiteouts`
        how :meth:`apply_layer` writes OCI whiteouts (:class:`~core.storage.layer.WhiteoutMode`:
        overlayfs's character devices and opaque xattrs, or plain deletions);
    :meth:`populate`
        how a new snapshot's directory is filled (empty for an overlay upper, a copy of the
        parent for vfs);
    :meth:`mounts_of`
        the :class:`core.types.Mount` values of an active snapshot or a view;
    :meth:`lowers_of`
        the directories a layer applied to a snapshot reads through (what lies below it).

    They are given a :class:`~core.storage.metastore.Snapshot` (its id, kind and parents' ids)
    and find directories with :meth:`snapshot_dir` and :meth:`snapshot_fs`.  A driver may
    extend ``__init__`` (call ``super().__init__(root)`` first) and add probes of its own.

    Building one opens (or creates) ``root`` and collects the garbage of a crash.  Raises
    ``CoreError`` if ``root`` cannot be used.
    """

    #: how :meth:`apply_layer` writes whiteouts (an extension point: every driver sets it)
    whiteouts: WhiteoutMode

    def __init__(self, root: Path) -> None:
        self.root = Path(root)
        self._snapshots = self.root / "snapshots"
        self._tmp = self.root / "tmp"
        try:
            for directory in (self.root, self._snapshots, self._tmp):
                directory.mkdir(mode=0o700, parents=True, exist_ok=True)
        except OSError as exc:
            raise CoreError(f"cannot use {self.root} for snapshots: {exc.strerror}") from exc
        fs.spread_below(self._tmp)   # where new snapshot directories are made
        self._ms = MetaStore(self.root / "metadata.db")
        self._collect_garbage()

    # ------------------------------------------------------------------- extension points
    @abc.abstractmethod
    def populate(self, new: Path, kind: SnapshotKind, parents: list[Path]) -> None:
        """Fill the new snapshot directory ``new`` (which exists, empty): at least ``new/fs``.

        ``kind`` is ``ACTIVE`` or ``VIEW``; ``parents`` are the ``fs`` directories of the
        parent chain, nearest first (empty for a snapshot without parent).  Runs in a worker
        thread, before the snapshot is recorded, so it may be slow; what it leaves behind on a
        failure is removed.  Raises ``OSError``.
        """

    @abc.abstractmethod
    def mounts_of(self, snap: Snapshot) -> list[Mount]:
        """The mounts of the active snapshot or view ``snap`` (never a committed one).

        A view's mounts must be read-only (``ro`` on a bind, or an overlay without upper).
        Called on the trio thread: compute, do not touch the disk.
        """

    @abc.abstractmethod
    def lowers_of(self, snap: Snapshot) -> list[Path]:
        """The directories below the active snapshot ``snap`` that
        :func:`~core.storage.layer.apply_layer` must look through (nearest first) to apply a
        layer the way its mounts will show it: the parents' ``fs`` directories for a driver
        whose snapshots hold only their own changes (overlay), ``[]`` for one whose snapshots
        are full copies (vfs)."""

    # ------------------------------------------------------------------- paths
    def snapshot_dir(self, snapshot_id: int) -> Path:
        """The directory of the snapshot ``snapshot_id`` (``snapshots/<id>``): ``fs`` and
        whatever else :meth:`populate` put there."""
        return self._snapshots / str(snapshot_id)

    def snapshot_fs(self, snapshot_id: int) -> Path:
        """The files of the snapshot ``snapshot_id`` (``snapshots/<id>/fs``)."""
        return self._snapshots / str(snapshot_id) / "fs"

    def fs_path(self, key: str) -> Path:
        """Where the files of ``key`` are kept on the host — for tests and diagnostics; callers
        mount :meth:`mounts` instead.  ``NotFound`` if ``key`` does not exist."""
        return self.snapshot_fs(self._ms.get(key).id)

    # ------------------------------------------------------------------- the contract
    async def prepare(self, key: str, parent: str = "", labels: dict[str, str] | None = None) -> list[Mount]:
        return await self._create(SnapshotKind.ACTIVE, key, parent, labels)

    async def view(self, key: str, parent: str = "", labels: dict[str, str] | None = None) -> list[Mount]:
        return await self._create(SnapshotKind.VIEW, key, parent, labels)

    async def _create(self, kind: SnapshotKind, key: str, parent: str,
                      labels: dict[str, str] | None) -> list[Mount]:
        parent_ids = self._ms.check_create(kind, key, parent, labels)  # fail before copying
        new = Path(tempfile.mkdtemp(prefix="new-", dir=self._tmp))
        try:
            try:
                await trio.to_thread.run_sync(
                    self.populate, new, kind, [self.snapshot_fs(i) for i in parent_ids])
            except OSError as exc:
                self._ms.check_create(kind, key, parent, labels)  # the parent went away?
                raise CoreError(f"cannot create snapshot {key!r}: {exc}") from exc
            with self._ms.transaction():  # recorded if and only if it is in place
                snap = self._ms.create(kind, key, parent, labels)
                if snap.parent_ids != parent_ids:
                    raise CoreError(f"parent {parent!r} was replaced while {key!r} was created")
                try:
                    os.rename(new, self.snapshot_dir(snap.id))
                except OSError as exc:
                    raise CoreError(f"cannot create snapshot {key!r}: {exc}") from exc
        except BaseException:
            with trio.CancelScope(shield=True):
                await trio.to_thread.run_sync(fs.remove_tree, new)
            raise
        return self.mounts_of(snap)

    async def mounts(self, key: str) -> list[Mount]:
        snap = self._ms.get(key)
        if snap.kind is SnapshotKind.COMMITTED:
            raise InvalidArgument(f"snapshot {key!r} is committed and has no mounts; "
                                  "create a view of it")
        return self.mounts_of(snap)

    async def commit(self, name: str, key: str, labels: dict[str, str] | None = None) -> None:
        snap = self._ms.get(key)
        usage = Usage()
        if snap.kind is SnapshotKind.ACTIVE:  # else the metastore refuses, below
            usage = await trio.to_thread.run_sync(fs.disk_usage, self.snapshot_fs(snap.id))
        self._ms.commit(key, name, usage, labels)

    async def remove(self, key: str) -> None:
        trash = Path(tempfile.mkdtemp(prefix="rm-", dir=self._tmp))
        try:
            with self._ms.transaction():  # forgotten if and only if moved out of the way
                snap = self._ms.remove(key)
                try:
                    os.rename(self.snapshot_dir(snap.id), trash / "snapshot")
                except FileNotFoundError:
                    pass  # its directory is already gone: forgetting it is enough
                except OSError as exc:
                    raise CoreError(f"cannot remove snapshot {key!r}: {exc}") from exc
        finally:
            with trio.CancelScope(shield=True):
                await trio.to_thread.run_sync(fs.remove_tree, trash)

    async def stat(self, key: str) -> SnapshotInfo:
        return self._ms.info(key)

    async def walk(self) -> AsyncIterator[SnapshotInfo]:
        for info in self._ms.walk():
            yield info

    async def usage(self, key: str) -> Usage:
        recorded = self._ms.usage(key)
        if recorded is not None:
            return recorded
        return await trio.to_thread.run_sync(fs.disk_usage, self.snapshot_fs(self._ms.get(key).id))

    async def apply_layer(self, key: str, stream: AsyncIterable[bytes]) -> int:
        snap = self._ms.get(key)
        if snap.kind is not SnapshotKind.ACTIVE:
            raise InvalidArgument(f"snapshot {key!r} is {snap.kind.value}: layers are applied "
                                  "to active snapshots only")
        return await apply_layer(stream, self.snapshot_fs(snap.id), whiteouts=self.whiteouts,
                                 lowers=self.lowers_of(snap))

    async def aclose(self) -> None:
        self._ms.close()

    # ------------------------------------------------------------------- recovery
    def _collect_garbage(self) -> None:
        """Delete what a crash left: staging and removal directories, unknown snapshots."""
        known = {str(i) for i in self._ms.ids()}
        for entry in os.scandir(self._tmp):
            fs.remove_tree(Path(entry.path))
        for entry in os.scandir(self._snapshots):
            if entry.name not in known:
                fs.remove_tree(Path(entry.path))
