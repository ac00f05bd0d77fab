"""Storage: the built-in drivers through the conformance suite (via their entry points), what
only one driver does (on-disk forms, sharing, filesystems), and ``core.storage`` itself.

Every test unmounts what it mounts and removes its directories, even when it fails.
"""
from __future__ import annotations

import contextlib
import hashlib
import io
import os
import shutil
import sqlite3
import stat
import subprocess
import tarfile
import tempfile
import threading
import time
from pathlib import Path

import pytest
import trio

from core import plugins
from core.contracts.storage import SnapshotKind, Usage
from core.errors import AlreadyExists, Conflict, CoreError, InvalidArgument, NotFound
from core.storage import fs
from core.storage.layer import WhiteoutMode, apply_layer, apply_tar
from core.storage.metastore import MetaStore
from core.storage.tarstream import TarEntry, TarReader
from core.storage.mount import mount, mount_all, parse_options, unmount
from core.testing import unmount_below
from core.testing.storage import Harness, Layer, Node, SnapshotterSuite, chunks, read_tree
from core.types import Mount

pytestmark = pytest.mark.skipif(os.geteuid() != 0, reason="storage tests mount: run as root")


class TestOverlayConformance(SnapshotterSuite):
    name = "overlay"


class TestVfsConformance(SnapshotterSuite):
    name = "vfs"


# --------------------------------------------------------------------------- fixtures
@pytest.fixture
def tmp() -> Path:
    root = Path(tempfile.mkdtemp(prefix="core-st-", dir="/tmp"))
    try:
        yield root
    finally:
        unmount_below(root)
        shutil.rmtree(root, ignore_errors=True)


def _harness(name: str):
    """A fixture body: a :class:`Harness` of storage driver ``name``, closed after the test."""
    h = Harness("storage", name)
    try:
        yield h
    finally:
        h.close()


@pytest.fixture
def overlay() -> Harness:
    yield from _harness("overlay")


@pytest.fixture
def vfs() -> Harness:
    yield from _harness("vfs")


@contextlib.contextmanager
def mounted(m: Mount | list[Mount], target: Path):
    target.mkdir(exist_ok=True)
    mount_all(m if isinstance(m, list) else [m], target)
    try:
        yield target
    finally:
        unmount(target)


def _is_whiteout(path: Path) -> bool:
    st = os.lstat(path)
    return stat.S_ISCHR(st.st_mode) and st.st_rdev == 0


# --------------------------------------------------------------------------- overlay
def test_overlay_writes_whiteouts_in_overlayfs_form(overlay: Harness) -> None:
    overlay.chain(Layer().file("f").dir("d").file("d/x").dir("o").file("o/old").file("r"),
                  Layer().whiteout("f").whiteout("d").opaque("o").file("o/new").whiteout("nothing"))
    layer = overlay.driver.fs_path("L1")
    assert _is_whiteout(layer / "f") and _is_whiteout(layer / "d")
    assert os.getxattr(layer / "o", "trusted.overlay.opaque") == b"y"
    assert sorted(os.listdir(layer / "o")) == ["new"]
    assert not (layer / "r").exists()  # untouched lower files are not in the layer


def test_overlay_bottom_layer_records_no_whiteouts(overlay: Harness) -> None:
    """A layer with nothing below is bind-mounted: whiteouts there would show as devices."""
    overlay.layer("L0", "", Layer().dir("d").whiteout("gone").opaque("d").file("d/f"))
    assert read_tree(overlay.driver.fs_path("L0")) == {"d": Node("dir", None, 0o755),
                                                       "d/f": Node("file", b"")}
    assert not os.listxattr(overlay.driver.fs_path("L0") / "d")


def test_overlay_opaque_root_whites_out_each_lower_entry(overlay: Harness) -> None:
    overlay.chain(Layer().file("a").dir("b").file("b/x"), Layer().dir("b").opaque("").file("c"))
    layer = overlay.driver.fs_path("L1")
    assert _is_whiteout(layer / "a")
    assert os.getxattr(layer / "b", "trusted.overlay.opaque") == b"y"  # kept, but not merged
    assert (layer / "c").is_file()


def test_overlay_hardlink_to_a_lower_file_copies_it_up(overlay: Harness) -> None:
    overlay.chain(Layer().dir("d", 0o750, 7, 7).file("d/f", b"data", 0o640, 7, 7),
                  Layer().hardlink("l", "d/f"))
    layer = overlay.driver.fs_path("L1")
    assert os.stat(layer / "l").st_ino == os.stat(layer / "d/f").st_ino
    assert read_tree(layer)["d"] == Node("dir", None, 0o750, 7, 7)  # the parent, copied up


def test_overlay_layers_are_unpacked_once_and_shared(overlay: Harness) -> None:
    image = overlay.chain(Layer().file("base", b"b"), Layer().file("top", b"t"))
    one, two = overlay.prepare("one", image), overlay.prepare("two", image)
    lowers = {o for m in one + two for o in m.options if o.startswith("lowerdir=")}
    assert lowers == {f"lowerdir={overlay.driver.fs_path(image)}:{overlay.driver.fs_path('L0')}"}
    snapshots = overlay.driver.fs_path("L0").parent.parent
    assert len(os.listdir(snapshots)) == 4  # two layers, two containers: nothing copied
    with overlay.mounted(one) as a, overlay.mounted(two) as b:
        (a / "mine").write_bytes(b"one")
        assert not (b / "mine").exists() and (b / "base").read_bytes() == b"b"


def test_overlay_mount_shapes(overlay: Harness) -> None:
    overlay.chain(Layer().file("a"), Layer().file("b"))
    fs0, fs1 = overlay.driver.fs_path("L0"), overlay.driver.fs_path("L1")
    assert overlay.prepare("bare") == [Mount("bind", str(overlay.driver.fs_path("bare")),
                                             options=("rbind", "rw"))]
    assert overlay.view("v1", "L0") == [Mount("bind", str(fs0), options=("rbind", "ro"))]
    (view,) = overlay.view("v2", "L1")
    assert view.type == "overlay" and view.readonly
    assert f"lowerdir={fs1}:{fs0}" in view.options
    assert not any(o.startswith(("upperdir=", "workdir=")) for o in view.options)
    (active,) = overlay.prepare("ctr", "L1")
    upper = overlay.driver.fs_path("ctr")
    assert {f"upperdir={upper}", f"workdir={upper.parent / 'work'}", f"lowerdir={fs1}:{fs0}"} \
        <= set(active.options) and not active.readonly


def test_overlay_container_root_keeps_the_image_root_attributes(overlay: Harness) -> None:
    overlay.layer("L0", "", Layer().dir(".", 0o700, 5, 6).file("f"))
    with overlay.mounted(overlay.prepare("ctr", "L0")) as root:
        st = os.stat(root)
        assert (stat.S_IMODE(st.st_mode), st.st_uid, st.st_gid) == (0o700, 5, 6)


def test_snapshotters_spread_new_snapshots_over_block_groups(tmp: Path) -> None:
    import fcntl
    import struct

    from core.storage.fs import spread_below
    from drivers.storage_overlay.snapshotter import OverlaySnapshotter

    def flags(path: Path) -> int | None:
        fd = os.open(path, os.O_RDONLY | os.O_DIRECTORY)
        try:
            return struct.unpack("i", fcntl.ioctl(fd, 0x80086601, struct.pack("i", 0)))[0]
        except OSError:
            return None  # a filesystem without inode flags
        finally:
            os.close(fd)

    spread_below(tmp / "missing")  # a hint: never fails
    snapshotter = OverlaySnapshotter(tmp / "root")
    try:
        found = flags(tmp / "root" / "tmp")
        assert found is None or found & 0x00020000  # chattr +T where snapshots are made
        assert not (flags(tmp / "root") or 0) & 0x00020000  # nowhere else
    finally:
        trio.run(snapshotter.aclose)


def test_overlay_probe_reports_an_unusable_filesystem(tmp: Path) -> None:
    from drivers.storage_overlay.snapshotter import check_support

    assert check_support(tmp / "not" / "yet" / "created") is None
    for name in ("l", "u", "w", "m"):
        (tmp / name).mkdir()
    options = (f"lowerdir={tmp / 'l'}", f"upperdir={tmp / 'u'}", f"workdir={tmp / 'w'}")
    with mounted(Mount("overlay", "overlay", options=options), tmp / "m") as merged:
        reason = check_support(merged / "storage")  # an overlay cannot be an upper layer
        assert reason and "overlay" in reason
    assert not list(tmp.glob("*/.core-overlay-probe-*")) and not list(tmp.glob(".core-overlay-probe-*"))


def test_overlay_probe_through_the_entry_point(tmp: Path) -> None:
    loaded = plugins.load("storage", "overlay")
    assert loaded.probe(plugins.context_for("storage", "overlay", tmp / "data", tmp / "run")) is None
    assert os.listdir(tmp) == []  # the probe cleaned up after itself


# --------------------------------------------------------------------------- the kit
def test_built_in_drivers_extend_the_snapshotter_through_its_public_points() -> None:
    from core.storage.snapshotter import DirectorySnapshotter
    from drivers.storage_overlay.snapshotter import OverlaySnapshotter
    from drivers.storage_vfs.snapshotter import VfsSnapshotter

    points = {"whiteouts", "populate", "mounts_of", "lowers_of"}
    assert DirectorySnapshotter.__abstractmethods__ == points - {"whiteouts"}
    for cls in (OverlaySnapshotter, VfsSnapshotter):
        overridden = {n for n in vars(cls) if (hasattr(DirectorySnapshotter, n)
                                              or n in DirectorySnapshotter.__annotations__)
                      and n not in ("__init__", "__module__", "__doc__", "__abstractmethods__",
                                    "_abc_impl")}
        assert overridden == points, cls


def test_a_snapshotter_missing_an_extension_point_cannot_be_built(tmp: Path) -> None:
    from core.storage.snapshotter import DirectorySnapshotter

    class Half(DirectorySnapshotter):
        whiteouts = WhiteoutMode.DELETE

        def populate(self, new, kind, parents):
            os.mkdir(new / "fs")

    with pytest.raises(TypeError, match="lowers_of"):
        Half(tmp / "half")


# --------------------------------------------------------------------------- vfs
def test_vfs_copies_the_parent_faithfully(vfs: Harness) -> None:
    capability = b"\x01\x00\x00\x02\x00\x20\x00\x00" + b"\x00" * 12
    vfs.layer("L0", "", Layer()
              .dir("d", 0o2775, 1, 2, mtime=1_500_000_000)
              .file("d/f", b"content", 0o4755, 3, 4, mtime=1_500_000_001,
                    xattrs={"user.k": b"v", "security.capability": capability})
              .hardlink("d/h", "d/f").symlink("d/s", "f", 5, 6).device("c", "c", 1, 3)
              .device("p", "p"))
    vfs.prepare("child", "L0")
    parent, child = vfs.driver.fs_path("L0"), vfs.driver.fs_path("child")
    assert read_tree(child) == read_tree(parent)
    assert os.stat(child / "d/h").st_ino == os.stat(child / "d/f").st_ino
    assert os.stat(child / "d/f").st_ino != os.stat(parent / "d/f").st_ino
    assert os.getxattr(child / "d/f", "security.capability") == capability
    for path in ("d", "d/f", "d/s"):
        assert os.lstat(child / path).st_mtime_ns == os.lstat(parent / path).st_mtime_ns


def test_vfs_views_share_the_parents_copy(vfs: Harness) -> None:
    vfs.layer("L0", "", Layer().file("f", b"x"))
    assert vfs.view("v", "L0") == [Mount("bind", str(vfs.driver.fs_path("L0")), options=("rbind", "ro"))]


def test_vfs_works_on_tmpfs(tmp: Path) -> None:
    (tmp / "tmpfs").mkdir()
    subprocess.run(["mount", "-t", "tmpfs", "tmpfs", str(tmp / "tmpfs")], check=True)
    try:
        from drivers.storage_vfs.snapshotter import VfsSnapshotter

        async def main() -> None:
            sn = VfsSnapshotter(tmp / "tmpfs" / "vfs")
            await sn.prepare("a")
            layer = (Layer().dir("d", 0o1777).file("d/f", b"x", xattrs={"user.k": b"v"})
                     .hardlink("h", "d/f").device("null"))
            await sn.apply_layer("a", chunks(layer.data()))
            await sn.commit("L0", "a")
            await sn.prepare("b", "L0")
            await sn.apply_layer("b", chunks(Layer().whiteout("h").file("g", b"y").data()))
            tree = read_tree(sn.fs_path("b"))
            assert tree["d/f"] == Node("file", b"x", xattrs=(("user.k", b"v"),))
            assert tree["null"] == Node("char", (1, 3), 0o666) and "h" not in tree
            await sn.aclose()

        trio.run(main)
    finally:
        unmount(tmp / "tmpfs")


# --------------------------------------------------------------------------- recovery
@pytest.mark.parametrize("name", ["overlay", "vfs"])
def test_reopening_collects_what_a_crash_left(name: str) -> None:
    h = Harness("storage", name)
    try:
        h.layer("L0", "", Layer().file("f"))
        root = h.context.root
        (root / "tmp" / "new-crashed" / "fs").mkdir(parents=True)
        (root / "tmp" / "rm-crashed").mkdir()
        (root / "snapshots" / "999" / "fs").mkdir(parents=True)
        h.reopen()
        assert os.listdir(root / "tmp") == []
        assert os.listdir(root / "snapshots") == [h.driver.fs_path("L0").parent.name]
        with h.viewed("L0") as view:
            assert read_tree(view) == {"f": Node("file", b"")}
    finally:
        h.close()


# --------------------------------------------------------------------------- metastore
def test_metastore_rules_and_ids(tmp: Path) -> None:
    ms = MetaStore(tmp / "m.db")
    a = ms.create(SnapshotKind.ACTIVE, "a", labels={"x": "1"})
    ms.commit("a", "A", Usage(10, 2), {"y": "2"})
    b = ms.create(SnapshotKind.ACTIVE, "b", "A")
    assert b.parent_ids == (a.id,) and ms.get("A") == type(a)(a.id, SnapshotKind.COMMITTED, ())
    assert ms.info("A").labels == {"x": "1", "y": "2"} and ms.usage("A") == Usage(10, 2)
    assert ms.usage("b") is None
    with pytest.raises(Conflict):
        ms.remove("A")
    with pytest.raises(AlreadyExists):
        ms.create(SnapshotKind.VIEW, "A")
    with pytest.raises(InvalidArgument):
        ms.create(SnapshotKind.COMMITTED, "c")
    ms.remove("b")
    c = ms.create(SnapshotKind.ACTIVE, "c", "A")
    assert c.id > b.id  # ids are never reused: a leftover directory can never be mistaken
    ms.close()
    reopened = MetaStore(tmp / "m.db")
    assert [i.name for i in reopened.walk()] == ["A", "c"]
    reopened.close()


def test_metastore_transactions_roll_back(tmp: Path) -> None:
    ms = MetaStore(tmp / "m.db")
    with pytest.raises(OSError):
        with ms.transaction():
            ms.create(SnapshotKind.ACTIVE, "a")
            os.rename(tmp / "missing", tmp / "elsewhere")  # the filesystem step fails
    with pytest.raises(NotFound):
        ms.get("a")
    with ms.transaction():
        ms.create(SnapshotKind.ACTIVE, "kept")
        with pytest.raises(AlreadyExists):
            with ms.transaction():  # a savepoint: only the inner part is undone
                ms.create(SnapshotKind.ACTIVE, "undone")
                ms.create(SnapshotKind.ACTIVE, "kept")
    assert [i.name for i in ms.walk()] == ["kept"]
    ms.close()


def test_metastore_refuses_a_newer_schema(tmp: Path) -> None:
    MetaStore(tmp / "m.db").close()
    with sqlite3.connect(tmp / "m.db") as db:
        db.execute("PRAGMA user_version = 99")
    with pytest.raises(CoreError, match="newer"):
        MetaStore(tmp / "m.db")


# --------------------------------------------------------------------------- layers
def _apply(data: bytes, target: Path, mode: WhiteoutMode = WhiteoutMode.DELETE,
           lowers: tuple[Path, ...] = (), chunk: int = 65536) -> int:
    return trio.run(lambda: apply_layer(chunks(data, chunk), target, whiteouts=mode, lowers=lowers))


def test_apply_tar_reads_a_plain_file_object(tmp: Path) -> None:
    apply_tar(io.BytesIO(Layer().file("a/b", b"x").data()), tmp, whiteouts=WhiteoutMode.DELETE)
    assert read_tree(tmp) == {"a": Node("dir", None, 0o755), "a/b": Node("file", b"x")}


def test_large_files_stream_through(tmp: Path) -> None:
    big = os.urandom(9 << 20) + b"tail"
    data = Layer().file("big", big).file("after", b"a").data()
    assert _apply(data, tmp, chunk=100_003) == len(data)
    assert hashlib.sha256((tmp / "big").read_bytes()).digest() == hashlib.sha256(big).digest()
    assert (tmp / "after").read_bytes() == b"a"


def test_sparse_files_from_gnu_tar(tmp: Path) -> None:
    src = tmp / "src"
    src.mkdir()
    with open(src / "sparse", "wb") as f:
        f.truncate(64 << 20)
        f.seek(32 << 20)
        f.write(b"middle")
    for fmt in ("gnu", "posix"):
        archive = subprocess.run(["tar", "-C", str(src), f"--format={fmt}", "--sparse", "-cf", "-",
                                  "sparse"], check=True, capture_output=True).stdout
        out = tmp / fmt
        out.mkdir()
        _apply(archive, out)
        with open(out / "sparse", "rb") as f:
            assert os.fstat(f.fileno()).st_size == 64 << 20
            f.seek(32 << 20)
            assert f.read(6) == b"middle"
        assert os.stat(out / "sparse").st_blocks * 512 < 1 << 20  # the holes stay holes


def test_names_that_are_not_utf8_round_trip(tmp: Path) -> None:
    name = os.fsdecode(b"caf\xe9")
    _apply(Layer().file(name, b"x").symlink("l", name).data(), tmp)
    assert sorted(os.listdir(os.fsencode(tmp))) == [b"caf\xe9", b"l"]
    assert os.readlink(os.fsencode(tmp / "l")) == b"caf\xe9"


def test_subsecond_times_are_kept(tmp: Path) -> None:
    info = Layer.info("f")
    info.pax_headers = {"mtime": "1700000000.123456789"}
    _apply(Layer().entry(info, b"").data(), tmp)
    assert os.lstat(tmp / "f").st_mtime_ns == 1_700_000_000_123_456_789


@pytest.mark.parametrize("mode", list(WhiteoutMode))
def test_overlay_style_whiteout_devices_are_whiteouts(tmp: Path, mode: WhiteoutMode) -> None:
    lower, upper = tmp / "lower", tmp / "upper"
    lower.mkdir()
    upper.mkdir()
    (lower / "gone").write_bytes(b"x")
    target = upper if mode is WhiteoutMode.OVERLAY else lower
    _apply(Layer().device("gone", "c", 0, 0).data(), target, mode,
           (lower,) if mode is WhiteoutMode.OVERLAY else ())
    if mode is WhiteoutMode.OVERLAY:
        assert _is_whiteout(upper / "gone")
    else:
        assert not (lower / "gone").exists()


def test_aufs_bookkeeping_is_skipped(tmp: Path) -> None:
    _apply(Layer().dir(".wh..wh.plnk").file(".wh..wh.plnk/123.456", b"x").file(".wh..wh.aufs")
           .file("real").data(), tmp)
    assert os.listdir(tmp) == ["real"]


def test_implicit_parents_copy_the_lower_directory(tmp: Path) -> None:
    lower, upper = tmp / "lower", tmp / "upper"
    (lower / "d").mkdir(parents=True)
    upper.mkdir()
    os.chmod(lower / "d", 0o710)
    os.chown(lower / "d", 3, 4)
    os.setxattr(lower / "d", "user.k", b"v")
    _apply(Layer().file("d/f").data(), upper, WhiteoutMode.OVERLAY, (lower,))
    assert read_tree(upper)["d"] == Node("dir", None, 0o710, 3, 4, (("user.k", b"v"),))


def test_cancelling_apply_layer_stops_reading_and_the_worker(tmp: Path) -> None:
    released = threading.Event()

    async def stalled():
        yield Layer().file("f", b"x" * 100_000).data()[:50_000]
        try:
            await trio.sleep_forever()
        finally:
            released.set()

    async def main() -> None:
        with trio.move_on_after(0.5) as scope:
            await apply_layer(stalled(), tmp, whiteouts=WhiteoutMode.DELETE)
        assert scope.cancelled_caught

    threads = threading.active_count()
    started = time.monotonic()
    trio.run(main)
    assert time.monotonic() - started < 5 and released.is_set()
    assert threading.active_count() <= threads + 1  # trio's idle cached worker at most


def test_fs_copy_tree_keeps_hardlinks_across_directories(tmp: Path) -> None:
    (tmp / "src" / "a").mkdir(parents=True)
    (tmp / "src" / "b").mkdir()
    (tmp / "src" / "a" / "f").write_bytes(b"x")
    os.link(tmp / "src" / "a" / "f", tmp / "src" / "b" / "g")
    fs.copy_tree(tmp / "src", tmp / "dst")
    assert os.stat(tmp / "dst/a/f").st_ino == os.stat(tmp / "dst/b/g").st_ino
    assert fs.disk_usage(tmp / "dst").inodes == 4  # dst, a, b and one file


# --------------------------------------------------------------------------- the tar reader
def _read_all(data: bytes, piece: int = 1 << 20) -> list[TarEntry]:
    """Every entry of ``data``, handed to the reader in ``piece``-byte pieces."""
    return [entry for entry, _content in _read_with_data(data, piece)]


def _read_with_data(data: bytes, piece: int = 1 << 20) -> list[tuple[TarEntry, bytes]]:
    """Every entry of ``data`` with its content (but for sparse files), as the reader writes
    it to a file descriptor."""
    pieces = iter([data[i:i + piece] for i in range(0, len(data), piece)])
    reader = TarReader(lambda: next(pieces, b""))
    out = []
    while (entry := reader.next()) is not None:
        with tempfile.TemporaryFile() as f:
            if entry.size and entry.sparse is None:
                reader.write_data(f.fileno(), entry.size)
            f.seek(0)
            out.append((entry, f.read()))
    reader.drain()
    return out


def _header(name: bytes = b"f", *, size: bytes = b"00000000000\0", type_: bytes = b"0",
            mode: bytes = b"0000644\0", uid: bytes = b"0000000\0", mtime: bytes = b"14000000000\0",
            linkname: bytes = b"", magic: bytes = b"ustar\x0000", prefix: bytes = b"",
            checksum: bytes | None = None) -> bytes:
    """One raw 512-byte header, its checksum right unless ``checksum`` is given."""
    block = bytearray(512)
    for offset, value in ((0, name), (100, mode), (108, uid), (116, b"0000000\0"), (124, size),
                          (136, mtime), (156, type_), (157, linkname), (257, magic),
                          (345, prefix)):
        block[offset:offset + len(value)] = value
    block[148:156] = b" " * 8
    block[148:156] = checksum if checksum is not None else b"%06o\0 " % sum(block)
    assert len(block) == 512
    return bytes(block)


def _pax(records: bytes, type_: bytes = b"x") -> bytes:
    return (_header(b"././@PaxHeader", size=b"%011o\0" % len(records), type_=type_)
            + records + bytes(-len(records) % 512))


def _record(key: str, value: bytes) -> bytes:
    body = f" {key}=".encode() + value + b"\n"
    length = len(body) + 1
    while len(str(length)) + len(body) != length:
        length += 1
    return str(length).encode() + body


def _archive(*entries: tarfile.TarInfo | tuple[tarfile.TarInfo, bytes],
             fmt: int = tarfile.PAX_FORMAT) -> bytes:
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w", format=fmt, encoding="utf-8",
                      errors="surrogateescape") as tar:
        for item in entries:
            info, data = item if isinstance(item, tuple) else (item, None)
            if data is not None:
                info.size = len(data)
            tar.addfile(info, io.BytesIO(data) if data is not None else None)
    return buf.getvalue()


def _info(name: str, type_: bytes = tarfile.REGTYPE, **attrs) -> tarfile.TarInfo:
    info = tarfile.TarInfo(name)
    info.type, info.mtime, info.mode = type_, 1_700_000_000, 0o644
    for key, value in attrs.items():
        setattr(info, key, value)
    return info


@pytest.mark.parametrize("fmt", [tarfile.USTAR_FORMAT, tarfile.GNU_FORMAT, tarfile.PAX_FORMAT],
                         ids=["ustar", "gnu", "pax"])
def test_tar_reader_reads_what_tarfile_writes(fmt: int) -> None:
    long = "d/" * 60 + "long-name-" * 12
    infos = [(_info("a/file", mode=0o4755, uid=1000, gid=100), b"content"),
             _info("a", tarfile.DIRTYPE, mode=0o1777),
             _info("sym", tarfile.SYMTYPE, linkname="a/file"),
             _info("hard", tarfile.LNKTYPE, linkname="a/file"),
             _info("dev", tarfile.CHRTYPE, devmajor=1, devminor=3),
             _info("blk", tarfile.BLKTYPE, devmajor=8, devminor=1),
             _info("fifo", tarfile.FIFOTYPE)]
    if fmt != tarfile.USTAR_FORMAT:  # long names: GNU L/K records or PAX path/linkpath
        infos += [(_info(long), b"long"), _info("longlink", tarfile.SYMTYPE, linkname=long)]
    data = _archive(*infos, fmt=fmt)
    expected = list(tarfile.open(fileobj=io.BytesIO(data)))
    for piece in (1 << 20, 7919, 511, 1):
        entries = _read_with_data(data, piece)
        assert [(e.name.rstrip("/"), e.type, e.linkname, e.mode, e.uid, e.gid, e.size,
                 e.mtime_ns, e.atime_ns, e.devmajor, e.devminor, e.xattrs, e.sparse)
                for e, _ in entries] == \
            [(m.name, m.type, m.linkname, m.mode, m.uid, m.gid, m.size, m.mtime * 10**9, None,
              m.devmajor, m.devminor, [], None) for m in expected]
        assert entries[0][1] == b"content"
        if fmt != tarfile.USTAR_FORMAT:
            assert entries[-2][1] == b"long"


def test_tar_reader_reads_gnu_tar_formats(tmp: Path) -> None:
    src = tmp / "src"
    (src / ("deep/" * 40)).mkdir(parents=True)
    (src / "deep" / ("x" * 200)).write_bytes(b"long")
    os.symlink("t" * 150, src / "link")
    (src / "f").write_bytes(b"data")
    os.chmod(src / "f", 0o644)
    os.utime(src / "f", ns=(1_600_000_000_111_222_333, 1_700_000_000_123_456_789))
    for fmt in ("gnu", "posix", "ustar", "v7"):
        if fmt in ("ustar", "v7"):
            names = ["f"]
        else:
            names = ["f", "deep", "link"]
        archive = subprocess.run(["tar", "-C", str(src), f"--format={fmt}", "--numeric-owner",
                                  "-cf", "-", *names], check=True, capture_output=True).stdout
        entries = {e.name.rstrip("/"): (e, content) for e, content in _read_with_data(archive, 1000)}
        f, content = entries["f"]
        assert content == b"data" and f.isreg() and f.mode == 0o644
        if fmt == "posix":
            assert f.mtime_ns == 1_700_000_000_123_456_789
        else:
            assert f.mtime_ns == 1_700_000_000 * 10**9
        if fmt in ("gnu", "posix"):
            assert entries["deep/" + "x" * 200][1] == b"long"
            assert entries["link"][0].linkname == "t" * 150
            assert entries["deep/" * 39 + "deep"][0].isdir()


def test_tar_reader_pax_records() -> None:
    records = (_record("path", "é/".encode() + b"n\xff") + _record("linkpath", b"target")
               + _record("uid", b"4294967294") + _record("gid", b"7")
               + _record("mtime", b"-1.5") + _record("atime", b"1700000000.0000000019")
               + _record("SCHILY.xattr.user.bin", b"\0\xff=\n") + _record("SCHILY.xattr.user.e", b"")
               + _record("comment", b"ignored") + _record("uname", b""))
    data = _pax(records) + _header(b"short", type_=b"2") + bytes(1024)
    [entry] = _read_all(data)
    assert entry.name == os.fsdecode("é/".encode() + b"n\xff") and entry.linkname == "target"
    assert (entry.uid, entry.gid) == (4294967294, 7)
    assert entry.mtime_ns == -1_500_000_000 and entry.atime_ns == 1_700_000_000_000_000_001
    assert entry.xattrs == [("user.bin", b"\0\xff=\n"), ("user.e", b"")]


def test_tar_reader_pax_size_and_empty_values() -> None:
    body = b"x" * 1000
    data = (_pax(_record("size", b"1000") + _record("path", b""))
            + _header(b"named", size=b"77777777777\0") + body + bytes(24) + bytes(1024))
    [(entry, content)] = _read_with_data(data)
    assert entry.name == "named" and entry.size == 1000 and content == body


def test_tar_reader_global_headers_apply_to_what_follows() -> None:
    data = (_header(b"before") + _pax(_record("uid", b"5") + _record("SCHILY.xattr.user.g", b"1"), b"g")
            + _pax(_record("uid", b"6")) + _header(b"local") + _header(b"after") + bytes(1024))
    entries = _read_all(data)
    assert [(e.name, e.uid, e.xattrs) for e in entries] == [
        ("before", 0, []), ("local", 6, [("user.g", b"1")]), ("after", 5, [("user.g", b"1")])]


def test_tar_reader_base256_numbers() -> None:
    data = _archive((_info("big", uid=2**40, gid=3, mtime=-(2**40)), b"x"), fmt=tarfile.GNU_FORMAT)
    [entry] = _read_all(data)
    assert (entry.uid, entry.gid, entry.mtime_ns) == (2**40, 3, -(2**40) * 10**9)
    raw = _header(b"f", uid=b"\xff" * 8, mtime=b"\x80" + bytes(10) + b"\x01")
    [entry] = _read_all(raw + bytes(1024))
    assert (entry.uid, entry.mtime_ns) == (-1, 10**9)


def test_tar_reader_old_forms() -> None:
    signed = bytearray(_header("é".encode()))
    unsigned = int(signed[148:154], 8)
    signed[148:156] = b"%06o\0 " % (unsigned - 2 * 256)  # as if "é"'s two bytes were negative
    entries = _read_all(bytes(signed) + _header(b"dir/", type_=b"\0", magic=b"")
                        + _header(b"c", type_=b"7") + _header(b"name", prefix=b"pre/fix")
                        + _header(b"gnu", prefix=b"ignored", magic=b"ustar  \0"))
    assert [(e.name, e.type) for e in entries] == [
        ("é", b"0"), ("dir/", b"5"), ("c", b"0"), ("pre/fix/name", b"0"), ("gnu", b"0")]


def test_tar_reader_ends_at_a_zero_block_or_between_entries() -> None:
    assert [e.name for e in _read_all(_header(b"a") + bytes(512) + b"garbage" * 100)] == ["a"]
    assert [e.name for e in _read_all(_header(b"a") + _header(b"b"))] == ["a", "b"]
    assert _read_all(b"") == [] and _read_all(bytes(10240)) == []


@pytest.mark.parametrize("data, message", [
    (_header(b"f", checksum=b"0000001\0"), "checksum"),
    (_header(b"f")[:300], "inside a header"),
    (_header(b"f", size=b"00000001750\0") + b"x" * 100, "data"),
    (_header(b"f", size=b"00000000001\0") + b"x", "padding"),
    (_header(b"f", mode=b"0000x44\0"), "not a number"),
    (_header(b"f", size=b"-0000000001\0"), "not a number"),
    (_header(b"f", size=b"\xff" * 12), "negative size"),
    (_pax(_record("path", b"x")), "after an extended header"),
    (_pax(_record("path", b"x")) + bytes(1024), "after an extended header"),
    (_pax(b"30 path=x\n") + _header(b"f"), "malformed PAX record"),
    (_pax(b"9 path=x") + _header(b"f"), "malformed PAX record"),
    (_pax(b"5 p=x\n") + _header(b"f"), "malformed PAX record"),
    (_pax(b"x path=x\n") + _header(b"f"), "malformed PAX record"),
    (_pax(b"7 =abc\n") + _header(b"f"), "malformed PAX record"),
    (_pax(_record("uid", b"-1")) + _header(b"f"), "not a number"),
    (_pax(_record("size", b"1e3")) + _header(b"f"), "not a number"),
    (_pax(_record("mtime", b"1e9")) + _header(b"f"), "not a time"),
    (_pax(b"".join(_record(f"SCHILY.xattr.user.{i}", b"") for i in range(10_001))) + _header(b"f"),
     "PAX records"),
    (_header(b"././@PaxHeader", size=b"%011o\0" % ((1 << 20) + 1), type_=b"x"), "extended header of"),
    (_header(b"././@LongLink", size=b"%011o\0" % (1 << 30), type_=b"L"), "extended header of"),
    (_header(b"././@PaxHeader", size=b"00000001000\0", type_=b"x") + b"12 path=abc\n", "inside an extended"),
], ids=["bad-checksum", "truncated-header", "truncated-data", "truncated-padding", "bad-octal",
        "signed-octal", "negative-size", "ends-after-pax", "zero-block-after-pax",
        "record-too-long", "record-without-newline", "record-length-short", "record-length-not-a-number",
        "record-without-key", "pax-negative-uid", "pax-size-not-decimal", "pax-time-exponent",
        "too-many-records", "oversized-pax", "oversized-longname", "truncated-pax"])
def test_tar_reader_rejects_corrupt_and_hostile_headers(data: bytes, message: str) -> None:
    with pytest.raises(InvalidArgument, match=message):
        _read_all(data, 100)


def test_tar_reader_does_not_read_an_oversized_header() -> None:
    """The size of an extended header is checked before anything is read into memory."""
    asked = []
    blocks = iter([_header(b"././@PaxHeader", size=b"77777777777\0", type_=b"x")] + [b"x" * 512] * 10)

    def fill() -> bytes:
        asked.append(1)
        return next(blocks, b"")

    with pytest.raises(InvalidArgument, match="extended header of"):
        TarReader(fill).next()
    assert len(asked) == 1


def _sparse_archive(extents: list[tuple[int, int]], size: int, data: bytes) -> bytes:
    """A PAX 1.0 sparse file, its map in the data as GNU tar writes it."""
    lines = b"".join(b"%d\n" % n for n in [len(extents), *[x for e in extents for x in e]])
    body = lines + bytes(-len(lines) % 512) + data
    pax = (_record("GNU.sparse.major", b"1") + _record("GNU.sparse.minor", b"0")
           + _record("GNU.sparse.name", b"sparse") + _record("GNU.sparse.realsize", b"%d" % size))
    return (_pax(pax) + _header(b"GNUSparseFile.0/sparse", size=b"%011o\0" % len(body)) + body
            + bytes(-len(body) % 512) + bytes(1024))


def test_tar_reader_sparse_maps() -> None:
    [entry] = _read_all(_sparse_archive([(0, 3), (1000, 2)], 4096, b"abcde"))
    assert (entry.name, entry.size, entry.sparse) == ("sparse", 4096, [(0, 3), (1000, 2)])
    old = _pax(_record("GNU.sparse.size", b"100") + _record("GNU.sparse.offset", b"10")
               + _record("GNU.sparse.numbytes", b"2") + _record("GNU.sparse.offset", b"50")
               + _record("GNU.sparse.numbytes", b"1")) + _header(b"s", size=b"00000000003\0") + b"abc"
    [entry] = _read_all(old + bytes(509 + 1024))
    assert (entry.size, entry.sparse) == (100, [(10, 2), (50, 1)])
    for bad in ([(10, 2), (5, 1)], [(0, 5000)], [(0, 3), (3, 3)]):
        with pytest.raises(InvalidArgument, match="sparse map"):
            _read_all(_sparse_archive(bad, 4096, b"abcde"))


def test_tar_reader_mutated_archives_fail_cleanly() -> None:
    """Whatever a damaged archive holds, the reader returns entries or raises InvalidArgument."""
    import random

    rng = random.Random(7)
    archives = [_archive((_info("a/file", uid=5), b"x" * 700), _info("d", tarfile.DIRTYPE),
                         _info("l", tarfile.SYMTYPE, linkname="t" * 150), fmt=fmt)
                for fmt in (tarfile.GNU_FORMAT, tarfile.PAX_FORMAT)]
    archives.append(_sparse_archive([(0, 3), (1000, 2)], 4096, b"abcde"))
    for _ in range(2000):
        data = bytearray(rng.choice(archives))
        for _ in range(rng.randint(1, 4)):
            at = rng.randrange(len(data))
            if rng.random() < 0.7:
                data[at] = rng.randrange(256)
            else:
                del data[at:at + rng.randint(1, 600)]
        try:
            _read_with_data(bytes(data), rng.choice([1, 100, 512, 1 << 20]))
        except InvalidArgument:
            pass


# --------------------------------------------------------------------------- mounting
def test_parse_options() -> None:
    flags, propagation, data = parse_options(["ro", "nosuid", "rw", "rbind", "rprivate", "lowerdir=/x"])
    assert data == ["lowerdir=/x"] and propagation and flags & 0x4000 and not flags & 0x1


def test_read_only_bind_and_stacked_unmount(tmp: Path) -> None:
    (tmp / "src").mkdir()
    (tmp / "src" / "f").write_bytes(b"x")
    target = tmp / "target"
    target.mkdir()
    mount(Mount("bind", str(tmp / "src"), options=("rbind", "ro")), target)
    mount(Mount("bind", str(tmp / "src"), options=("rbind", "rw")), target)  # stacked on top
    try:
        (target / "g").write_bytes(b"rw on top")
    finally:
        unmount(target)  # both
    assert not os.path.ismount(target) and (tmp / "src" / "g").exists()
    unmount(target)  # not mounted: fine


def test_overlay_of_many_long_lowerdirs_mounts_without_moving_the_cwd(tmp: Path) -> None:
    base = tmp / ("a-long-data-root-" * 6) / "storage" / "overlay" / "snapshots"  # as a driver lays out
    lowers = []
    for i in range(1000, 1400):
        lower = base / str(i) / "fs"
        lower.mkdir(parents=True)
        (lower / f"f{i}").write_bytes(b"")
        lowers.append(str(lower))
    options = (f"lowerdir={':'.join(reversed(lowers))}", "ro")
    assert len(",".join(options)) > 10 * os.sysconf("SC_PAGESIZE")
    cwd = os.getcwd()
    with mounted(Mount("overlay", "overlay", options=options), tmp / "merged") as merged:
        assert len(os.listdir(merged)) == 400
    assert os.getcwd() == cwd


def test_mount_all_is_all_or_nothing(tmp: Path) -> None:
    (tmp / "src").mkdir()
    (tmp / "target" / "sub").mkdir(parents=True)
    good = Mount("bind", str(tmp / "src"), options=("rbind",))
    bad = Mount("bind", str(tmp / "missing"), target="sub", options=("rbind",))
    with pytest.raises(NotFound):
        mount_all([good, bad], tmp / "target")
    assert not os.path.ismount(tmp / "target")
    with pytest.raises(InvalidArgument):
        mount_all([Mount("bind", str(tmp / "src"), target="../escape")], tmp / "target")


def test_the_model_knows_setgid_directories(tmp: Path) -> None:
    """The conformance model makes what the kernel makes in a setgid directory (found by the
    layer-stack machine: a layer's setgid directory, a container's mkdir inside it)."""
    import stat as statmod

    from core.testing.storage import Node, _made

    d = tmp / "sg"
    d.mkdir()
    os.chown(d, 1000, 1000)
    os.chmod(d, 0o2775)
    (d / "x").mkdir()
    os.chmod(d / "x", 0o750)
    (d / "f").write_bytes(b"")
    os.chmod(d / "f", 0o640)
    model = {"sg": Node("dir", None, 0o2775, 1000, 1000)}
    for name, kind, data, mode in (("x", "dir", None, 0o750), ("f", "file", b"", 0o640)):
        st = os.stat(d / name)
        assert _made(model, f"sg/{name}", kind, data, mode) == \
            Node(kind, data, statmod.S_IMODE(st.st_mode), st.st_uid, st.st_gid)
    assert _made({"plain": Node("dir", None, 0o755, 1000, 1000)}, "plain/y", "dir", None, 0o750).gid == 0
