"""The overlay snapshotter: one directory per layer, mounted as one overlayfs.

Each committed snapshot — an image layer — is unpacked once, in its own directory
``snapshots/<id>/fs``, holding only what that layer changed (whiteouts in overlayfs's form), and
shared by every image and container above it.  An active snapshot has an empty ``fs`` (overlay's
upper directory) and a ``work`` directory::

    active, no parent      bind mount of fs (read-write)
    active, parents        overlay: lowerdir=<parents' fs, nearest first>, upperdir=fs, workdir=work
    view,   no parent      bind mount of fs, read-only
    view,   one parent     bind mount of the parent's fs, read-only
    view,   parents        overlay with lowerdirs only (read-only by nature), ``ro``

Lower directories are absolute paths; with many layers the options outgrow mount(2)'s page,
and :func:`core.storage.mount.mount_all` shortens them when it performs the mount.

New snapshot directories are made in a directory marked as the top of unrelated hierarchies
(:func:`core.storage.fs.spread_below`, for every directory snapshotter).
"""
from __future__ import annotations

import os
import tempfile
from pathlib import Path

from core.contracts.storage import SnapshotKind
from core.errors import CoreError
from core.storage import fs
from core.storage.layer import WhiteoutMode
from core.storage.metastore import Snapshot
from core.storage.snapshotter import DirectorySnapshotter, bind_mount
from core.types import Mount

__all__ = ["OverlaySnapshotter", "check_support"]

def _fixed_options() -> tuple[str, ...]:
    """Overlay features pinned off, where the kernel knows them, so that every snapshot's
    directory is a plain, self-contained diff (as docker and containerd keep theirs):

    ``index=off``         a layer mounts under any upper without overlayfs checking where it
                          was first used;
    ``redirect_dir=off``  renaming a lower directory copies it up instead of recording a
                          redirect to the lower path;
    ``metacopy=off``      a chown or chmod copies data up too, rather than pointing to the lower.
    """
    return tuple(f"{feature}=off" for feature in ("index", "redirect_dir", "metacopy")
                 if os.path.exists(f"/sys/module/overlay/parameters/{feature}"))


class OverlaySnapshotter(DirectorySnapshotter):
    """Overlayfs snapshots under ``root``.  See the module docstring."""

    whiteouts = WhiteoutMode.OVERLAY

    def __init__(self, root: Path) -> None:
        super().__init__(root)
        self._options = _fixed_options()

    def populate(self, new: Path, kind: SnapshotKind, parents: list[Path]) -> None:
        upper = new / "fs"
        os.mkdir(upper, 0o755)
        if parents:  # the merged root shows the upper's attributes: keep the image's
            fs.copy_attributes(str(parents[0]), os.lstat(parents[0]), str(upper), times=False)
        else:
            os.chmod(upper, 0o755)
        if kind is SnapshotKind.ACTIVE:
            os.mkdir(new / "work", 0o700)

    def mounts_of(self, snap: Snapshot) -> list[Mount]:
        upper = self.snapshot_fs(snap.id)
        lowers = [str(self.snapshot_fs(i)) for i in snap.parent_ids]
        if snap.kind is SnapshotKind.VIEW:
            if len(lowers) < 2:
                return [bind_mount(Path(lowers[0]) if lowers else upper, readonly=True)]
            return [Mount(type="overlay", source="overlay",
                          options=(*self._options, f"lowerdir={':'.join(lowers)}", "ro"))]
        if not lowers:
            return [bind_mount(upper, readonly=False)]
        return [Mount(type="overlay", source="overlay",
                      options=(*self._options, f"workdir={self.snapshot_dir(snap.id) / 'work'}",
                               f"upperdir={upper}", f"lowerdir={':'.join(lowers)}"))]

    def lowers_of(self, snap: Snapshot) -> list[Path]:
        return [self.snapshot_fs(i) for i in snap.parent_ids]


_support: dict[int, str | None] = {}  # st_dev of the backing filesystem -> probe answer


def check_support(root: Path) -> str | None:
    """``None`` if overlayfs works for snapshots under ``root``, else why not.

    Checks the kernel (``/proc/filesystems``), then mounts a two-layer overlay with an upper
    directory in a temporary directory on ``root``'s filesystem (``root`` or its nearest
    existing ancestor), writes through it and removes it all.  The answer is cached per
    filesystem, so probing again is cheap.
    """
    try:
        with open("/proc/filesystems") as f:
            if not any(line.split()[-1:] == ["overlay"] for line in f):
                return "kernel has no overlay support"
    except OSError as exc:
        return f"cannot read /proc/filesystems: {exc.strerror}"
    base = Path(root)
    while not base.exists() and base != base.parent:
        base = base.parent
    try:
        device = os.stat(base).st_dev
    except OSError as exc:
        return f"cannot probe overlay support on {base}: {exc.strerror}"
    if device not in _support:
        _support[device] = _try_overlay(base)
    return _support[device]


def _try_overlay(base: Path) -> str | None:
    from core.storage.mount import mount, unmount

    try:
        probe = Path(tempfile.mkdtemp(prefix=".core-overlay-probe-", dir=base))
    except OSError as exc:
        return f"cannot probe overlay support on {base}: {exc.strerror}"
    try:
        for name in ("l1", "l2", "upper", "work", "merged"):
            os.mkdir(probe / name)
        (probe / "l1" / "file").write_bytes(b"probe")
        options = (*_fixed_options(), f"workdir={probe / 'work'}", f"upperdir={probe / 'upper'}",
                   f"lowerdir={probe / 'l2'}:{probe / 'l1'}")
        mount(Mount(type="overlay", source="overlay", options=options), probe / "merged")
        try:
            (probe / "merged" / "file").write_bytes(b"copied up")
        finally:
            unmount(probe / "merged")
        if (probe / "upper" / "file").read_bytes() != b"copied up":
            return f"overlay on the filesystem of {base} does not copy up"
        return None
    except (OSError, CoreError) as exc:
        return f"overlay does not work on the filesystem of {base}: {exc}"
    finally:
        fs.remove_tree(probe)
