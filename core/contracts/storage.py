"""The storage contract: a snapshotter.

A snapshotter keeps filesystem *snapshots* arranged in parent chains.  Images are chains of
committed snapshots, one per layer; a container's root filesystem is an *active* snapshot on top
of the image's top layer.

Vocabulary
----------
``key``     names an **active** snapshot: one being written (a layer being unpacked, a container's
            root).  Active snapshots come only from :meth:`Snapshotter.prepare` (read-write) and
            :meth:`Snapshotter.view` (read-only).
``name``    names a **committed** snapshot: immutable, and the only kind that can be a parent.
            A committed snapshot comes only from :meth:`Snapshotter.commit` of an active one.
``parent``  the committed snapshot a new one starts from; ``""`` for an empty filesystem.

Keys and names share one namespace: a key in use cannot be used for a commit, and the reverse.

Lifecycle
---------
Importing an image with two layers ``L1`` (bottom) and ``L2``::

    mounts = await sn.prepare("extract-L1", parent="")
    await sn.apply_layer("extract-L1", tar_stream_of_L1)        # unpack, whiteouts and all
    await sn.commit("sha256:<chainid of L1>", "extract-L1")   # "extract-L1" is gone now

    await sn.prepare("extract-L2", parent="sha256:<chainid of L1>")
    await sn.apply_layer("extract-L2", tar_stream_of_L2)
    await sn.commit("sha256:<chainid of L1+L2>", "extract-L2")

Running a container from it::

    mounts = await sn.prepare("ctr-<id>", parent="sha256:<chainid of L1+L2>")
    # the *caller* performs ``mounts`` on the container's rootfs directory, runs the container,
    # unmounts; the files the container writes live in the active snapshot "ctr-<id>"
    await sn.remove("ctr-<id>")                               # with ``docker rm``

A snapshotter never mounts anything for its caller: it *returns* :class:`core.types.Mount`
values, and the caller mounts them (one overlay mount, or one bind mount).  That keeps drivers
testable without root and lets the caller choose where and when.  Layer application
(:meth:`Snapshotter.apply_layer`) is the exception: the driver writes into its own directories.

Perform mounts with :func:`core.storage.mount.mount_all` (and undo them with
:func:`core.storage.mount.unmount`): an overlay of many layers has more ``lowerdir`` text than
mount(2) accepts in one page, and ``mount_all`` shortens it as containerd does, so drivers
return plain absolute paths and images of hundreds of layers mount.

Rules every driver keeps (the conformance suite ``core.testing.storage`` checks them):

- ``prepare``/``view`` of a key that exists raises ``AlreadyExists``; of a parent that does not
  exist or is not committed raises ``NotFound`` / ``InvalidArgument``.
- ``commit`` of a view raises ``InvalidArgument``; of an unknown key ``NotFound``; to a name that
  exists ``AlreadyExists``.
- ``remove`` of a snapshot that has children raises ``Conflict``; of an unknown one ``NotFound``.
- Any method given an unknown key raises ``NotFound``; an empty key, one with NUL or longer
  than 4096 bytes, or labels that are not strings, ``InvalidArgument``.
- A view's mounts are read-only (the ``ro`` option on a bind, or an overlay with no upper).
  Committed snapshots have no mounts of their own: a view of them is mounted instead.
- ``apply_layer`` applies only to active snapshots, and never writes outside the snapshot,
  whatever the tar says: entries that escape (``..``, absolute paths, hardlinks pointing out,
  anything below a symlink — planted earlier in the tar or by a parent layer) are rejected
  with ``InvalidArgument`` and the snapshot is left for the caller to remove.  The precise
  semantics (whiteouts, replacements, what is kept) are those of :mod:`core.storage.layer`.

The parent-chain bookkeeping is written once, in ``core.storage.metastore``; drivers use it so
the rules cannot drift between them.
"""
from __future__ import annotations

import enum
from typing import TYPE_CHECKING, AsyncIterator, Protocol, runtime_checkable

import attrs

if TYPE_CHECKING:
    from core.types import Mount


class SnapshotKind(enum.Enum):
    ACTIVE = "active"
    VIEW = "view"
    COMMITTED = "committed"


@attrs.frozen
class SnapshotInfo:
    """What is known about one snapshot: its key or name, kind, parent and labels."""

    name: str
    kind: SnapshotKind
    parent: str = ""
    labels: dict[str, str] = attrs.field(factory=dict)
    created: float = 0.0


@attrs.frozen
class Usage:
    """Disk use of one snapshot alone (not its parents): bytes and inodes."""

    size: int = 0
    inodes: int = 0


@runtime_checkable
class Snapshotter(Protocol):
    """A storage driver.  See the module docstring for the model and the rules."""

    async def prepare(self, key: str, parent: str = "", labels: dict[str, str] | None = None) -> list[Mount]:
        """Create the active, writable snapshot ``key`` on ``parent``; return its mounts."""

    async def view(self, key: str, parent: str = "", labels: dict[str, str] | None = None) -> list[Mount]:
        """Create the active, read-only snapshot ``key`` on ``parent``; return its mounts."""

    async def mounts(self, key: str) -> list[Mount]:
        """Return the mounts of the active snapshot or view ``key`` again.

        Raises ``NotFound`` (no such key), ``InvalidArgument`` (``key`` is committed).
        """

    async def commit(self, name: str, key: str, labels: dict[str, str] | None = None) -> None:
        """Turn the active snapshot ``key`` into the committed snapshot ``name``.

        ``key`` ceases to exist; its files become ``name``'s, and so does its usage, measured
        now.  ``labels`` are merged over those ``key`` had.  Raises ``NotFound`` (no such key),
        ``InvalidArgument`` (``key`` is a view or is committed), ``AlreadyExists`` (``name`` is
        taken).  Nothing may write to ``key``'s mounts from then on.
        """

    async def remove(self, key: str) -> None:
        """Remove the snapshot ``key`` (active or committed) and its data.

        Raises ``NotFound`` and, when other snapshots have it as parent, ``Conflict``.
        """

    async def stat(self, key: str) -> SnapshotInfo:
        """Return what is known of ``key``.  ``NotFound`` if it does not exist."""

    def walk(self) -> AsyncIterator[SnapshotInfo]:
        """Yield every snapshot, in no particular order."""

    async def usage(self, key: str) -> Usage:
        """Return the disk use of ``key`` alone (its own layer, not its parents).

        What "alone" holds depends on the driver: an overlay snapshot holds its own changes, a
        vfs snapshot a full copy.  ``NotFound`` if ``key`` does not exist.
        """

    async def apply_layer(self, key: str, stream: AsyncIterator[bytes]) -> int:
        """Unpack an uncompressed layer tar, read from ``stream``, into the active snapshot ``key``.

        OCI whiteouts (``.wh.<name>`` deletes ``<name>`` of the parents; ``.wh..wh..opq`` hides
        every entry the parents have in that directory) are converted into the driver's own
        form.  Ownership, modes, setuid bits, xattrs, hardlinks, symlinks and mtimes are kept.
        Returns the number of bytes read — the whole stream, so a caller hashing it sees all of
        it.  Raises ``NotFound`` (no such key), ``InvalidArgument`` (``key`` is not active, or
        the tar is hostile or corrupt) and whatever ``stream`` raises.
        """

    async def aclose(self) -> None:
        """Release what the driver holds (its database).  Snapshots stay on disk; building the
        driver again on the same root finds them.  Closing twice is harmless."""
