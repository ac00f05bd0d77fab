"""Conformance: a storage driver keeps the snapshotter contract (``core.contracts.storage``).

Run against an installed driver (as root: the suite mounts what the driver returns)::

    pytest --pyargs core.testing.storage --driver storage=mydriver

or subclass :class:`SnapshotterSuite` in your own tests::

    from core.testing.storage import SnapshotterSuite

    class TestMyDriver(SnapshotterSuite):
        name = "mydriver"

The driver is loaded through its entry point (:func:`core.testing.make_driver`) in a fresh root
per test, its async methods run on a trio loop of their own (:class:`Harness`), and what it
returns is mounted with :func:`core.storage.mount.mount_all` — so the suite checks what a
container would see, not what the driver says.  Four parts:

1. **Layer stacks against a model** (:class:`LayerStackMachine`, hypothesis): random layers —
   files with random content, modes (setuid...), owners and xattrs, directories, symlinks,
   hardlinks (within a layer and to lower layers), whiteouts, opaque directories (the root's
   too), a directory replaced by a file and back, duplicate entries, containers writing and
   deleting through a read-write mount and being committed as layers, branching chains,
   removals — are applied through the driver, mounted, and compared with an in-memory model
   of the OCI semantics.
2. **Lifecycle rules** as plain tests: keys and names, parents, commit, remove, views being
   read-only, walk, usage, labels, reopening.
3. **Hostile tars**: every way out of the snapshot a tar can try (``..``, absolute names,
   symlinks planted earlier in the tar or in a parent layer, hardlinks out, whiteouts through
   symlinks, absurd names and headers, corrupt tars) raises ``InvalidArgument`` and writes
   nothing outside.
4. **A chain of 130 layers** mounts (docker fails near 122: moby#26380).

Everything a test mounts is unmounted and every directory removed, even when it fails.
"""
from __future__ import annotations

import contextlib
import errno
import functools
import io
import itertools
import os
import shutil
import stat
import struct
import tarfile
import tempfile
from collections.abc import AsyncIterator, Callable, Iterator
from pathlib import Path
from typing import Any, NamedTuple

import pytest
import trio
from hypothesis import HealthCheck, settings
from hypothesis import strategies as st
from hypothesis.stateful import RuleBasedStateMachine, invariant, rule, run_state_machine_as_test

from core.contracts.storage import SnapshotKind, Usage
from core.errors import AlreadyExists, Conflict, CoreError, InvalidArgument, NotFound
from core.storage.mount import mount_all, unmount
from core.testing import (TrioThread, close_driver, make_driver, temp_root,
                          unmount_below)
from core.testing.loading import DriverSuite

__all__ = ["SnapshotterSuite", "LayerStackMachine", "Harness", "Layer", "Node", "read_tree",
           "assert_tree", "chunks", "unmount_below"]

FIXED_MTIME = 1_700_000_000


# =========================================================================== layers
_KINDS = {tarfile.REGTYPE: "", tarfile.DIRTYPE: "/", tarfile.SYMTYPE: " -> ",
          tarfile.LNKTYPE: " => ", tarfile.CHRTYPE: " (char)", tarfile.BLKTYPE: " (block)",
          tarfile.FIFOTYPE: " (fifo)"}  # how a Layer's entries print in failure reports


class Layer:
    """A layer tar built in memory, entry by entry, in PAX format (as docker writes them).

    Paths are relative (``"etc/passwd"``); hostile tests pass anything.  Methods chain::

        Layer().dir("etc").file("etc/motd", b"hi\\n").whiteout("etc/issue").data()
    """

    def __init__(self) -> None:
        self._buf = io.BytesIO()
        self._tar = tarfile.open(fileobj=self._buf, mode="w", format=tarfile.PAX_FORMAT)
        self._data: bytes | None = None
        self._entries: list[str] = []  # for failure reports

    def entry(self, info: tarfile.TarInfo, content: bytes | None = None) -> Layer:
        """Add ``info`` as it is (with ``content`` for a regular file)."""
        if content is not None:
            info.size = len(content)
        self._tar.addfile(info, io.BytesIO(content) if content is not None else None)
        self._entries.append(f"{info.name}{_KINDS.get(info.type, '?')}{info.linkname}")
        return self

    def __repr__(self) -> str:
        return f"Layer({', '.join(self._entries)})"

    @staticmethod
    def info(path: str, type_: bytes = tarfile.REGTYPE, mode: int = 0o644, uid: int = 0,
             gid: int = 0, mtime: int = FIXED_MTIME, xattrs: dict[str, bytes] | None = None,
             linkname: str = "") -> tarfile.TarInfo:
        info = tarfile.TarInfo(path)
        info.type, info.mode, info.uid, info.gid, info.mtime = type_, mode, uid, gid, mtime
        info.linkname = linkname
        if xattrs:
            info.pax_headers = {f"SCHILY.xattr.{k}": v.decode("utf-8", "surrogateescape")
                                for k, v in xattrs.items()}
        return info

    def file(self, path: str, content: bytes = b"", mode: int = 0o644, uid: int = 0, gid: int = 0,
             mtime: int = FIXED_MTIME, xattrs: dict[str, bytes] | None = None) -> Layer:
        return self.entry(self.info(path, tarfile.REGTYPE, mode, uid, gid, mtime, xattrs), content)

    def dir(self, path: str, mode: int = 0o755, uid: int = 0, gid: int = 0,
            mtime: int = FIXED_MTIME, xattrs: dict[str, bytes] | None = None) -> Layer:
        return self.entry(self.info(path, tarfile.DIRTYPE, mode, uid, gid, mtime, xattrs))

    def symlink(self, path: str, target: str, uid: int = 0, gid: int = 0,
                mtime: int = FIXED_MTIME) -> Layer:
        return self.entry(self.info(path, tarfile.SYMTYPE, 0o777, uid, gid, mtime, linkname=target))

    def hardlink(self, path: str, target: str) -> Layer:
        return self.entry(self.info(path, tarfile.LNKTYPE, linkname=target))

    def device(self, path: str, kind: str = "c", major: int = 1, minor: int = 3,
               mode: int = 0o666) -> Layer:
        type_ = {"c": tarfile.CHRTYPE, "b": tarfile.BLKTYPE, "p": tarfile.FIFOTYPE}[kind]
        info = self.info(path, type_, mode)
        info.devmajor, info.devminor = major, minor
        return self.entry(info)

    def whiteout(self, path: str) -> Layer:
        parent, _, name = path.rpartition("/")
        return self.file(f"{parent}/.wh.{name}" if parent else f".wh.{name}", mode=0o600)

    def opaque(self, directory: str) -> Layer:
        return self.file(f"{directory}/.wh..wh..opq" if directory else ".wh..wh..opq", mode=0o600)

    def data(self) -> bytes:
        """The tar, end-of-archive blocks included (the layer is closed)."""
        if self._data is None:
            self._tar.close()
            self._data = self._buf.getvalue()
        return self._data


async def chunks(data: bytes, size: int = 7919) -> AsyncIterator[bytes]:
    """``data`` as a stream of ``size``-byte chunks (a prime: chunks straddle tar blocks)."""
    for i in range(0, len(data), size):
        yield data[i:i + size]
        await trio.lowlevel.checkpoint()


# =========================================================================== reading trees
class Node(NamedTuple):
    """One entry of a filesystem tree as the suite compares it."""

    kind: str                 # "file" | "dir" | "symlink" | "char" | "block" | "fifo"
    data: Any = None          # file content, symlink target, (major, minor) of a device
    mode: int = 0o644         # permission bits with setuid/setgid/sticky
    uid: int = 0
    gid: int = 0
    xattrs: tuple[tuple[str, bytes], ...] = ()   # user.* only


def _user_xattrs(path: str) -> tuple[tuple[str, bytes], ...]:
    try:
        names = os.listxattr(path, follow_symlinks=False)
    except OSError:
        return ()
    return tuple(sorted((n, os.getxattr(path, n, follow_symlinks=False))
                        for n in names if n.startswith("user.")))


def read_tree(root: Path) -> dict[str, Node]:
    """Every entry below ``root`` (not ``root`` itself) by relative path; never follows links."""
    nodes: dict[str, Node] = {}
    stack = [""]
    while stack:
        rel = stack.pop()
        with os.scandir(os.path.join(root, rel) if rel else root) as entries:
            for entry in entries:
                path = f"{rel}/{entry.name}" if rel else entry.name
                st = entry.stat(follow_symlinks=False)
                mode, owner = stat.S_IMODE(st.st_mode), (st.st_uid, st.st_gid)
                if stat.S_ISDIR(st.st_mode):
                    nodes[path] = Node("dir", None, mode, *owner, _user_xattrs(entry.path))
                    stack.append(path)
                elif stat.S_ISREG(st.st_mode):
                    with open(entry.path, "rb") as f:
                        nodes[path] = Node("file", f.read(), mode, *owner, _user_xattrs(entry.path))
                elif stat.S_ISLNK(st.st_mode):
                    nodes[path] = Node("symlink", os.readlink(entry.path), 0o777, *owner)
                else:
                    kind = ("char" if stat.S_ISCHR(st.st_mode) else
                            "block" if stat.S_ISBLK(st.st_mode) else "fifo")
                    device = (os.major(st.st_rdev), os.minor(st.st_rdev))
                    nodes[path] = Node(kind, device, mode, *owner)
    return nodes


def assert_tree(actual: dict[str, Node], expected: dict[str, Node], what: str) -> None:
    if actual == expected:
        return
    missing = sorted(set(expected) - set(actual))
    extra = sorted(set(actual) - set(expected))
    differ = [f"{p}: expected {expected[p]}, got {actual[p]}"
              for p in sorted(set(actual) & set(expected)) if actual[p] != expected[p]]
    raise AssertionError(f"{what} differs from the model:\n  missing: {missing}\n"
                         f"  unexpected: {extra}\n  different:\n    " + "\n    ".join(differ))


# =========================================================================== harness
class Harness:
    """The driver under test in a fresh root, with synchronous helpers.

    ``outside`` is a directory next to the driver's root, holding ``secret`` and
    ``dir/keep``: hostile tars aim at it.  :meth:`close` unmounts whatever is still mounted,
    closes the driver and removes the root.
    """

    def __init__(self, kind: str, name: str, options: dict[str, str] | None = None) -> None:
        if os.geteuid() != 0:
            pytest.skip("the storage conformance suite mounts snapshots: run it as root")
        self.kind, self.name = kind, name
        self.root = temp_root()
        self._mounted: list[Path] = []
        self._loop = TrioThread()
        self.driver: Any = None
        try:
            self.loaded, self.context, self.driver = self._loop.run_sync(
                make_driver, kind, name, self.root, options)
            self.outside = self.root / "outside"
            (self.outside / "dir").mkdir(parents=True)
            (self.outside / "secret").write_bytes(b"secret")
            (self.outside / "dir" / "keep").write_bytes(b"keep")
        except BaseException:
            self.close()
            raise

    # ------------------------------------------------------------------- driver calls
    def call(self, method: Callable[..., Any], *args: Any, **kwargs: Any) -> Any:
        return self._loop.run(functools.partial(method, *args, **kwargs))

    def prepare(self, key: str, parent: str = "", labels: dict[str, str] | None = None) -> list:
        return self.call(self.driver.prepare, key, parent, labels)

    def view(self, key: str, parent: str = "", labels: dict[str, str] | None = None) -> list:
        return self.call(self.driver.view, key, parent, labels)

    def commit(self, name: str, key: str, labels: dict[str, str] | None = None) -> None:
        self.call(self.driver.commit, name, key, labels)

    def remove(self, key: str) -> None:
        self.call(self.driver.remove, key)

    def stat(self, key: str) -> Any:
        return self.call(self.driver.stat, key)

    def mounts(self, key: str) -> list:
        return self.call(self.driver.mounts, key)

    def usage(self, key: str) -> Usage:
        return self.call(self.driver.usage, key)

    def walk(self) -> dict[str, Any]:
        async def collect() -> dict[str, Any]:
            return {info.name: info async for info in self.driver.walk()}
        return self._loop.run(collect)

    def apply(self, key: str, layer: Layer | bytes, chunk: int = 7919) -> int:
        data = layer.data() if isinstance(layer, Layer) else layer
        return self.call(self.driver.apply_layer, key, chunks(data, chunk))

    def layer(self, name: str, parent: str, layer: Layer | bytes) -> str:
        """Import one layer: prepare ``extract-<name>`` on ``parent``, apply, commit ``name``."""
        key = f"extract-{name}"
        self.prepare(key, parent)
        self.apply(key, layer)
        self.commit(name, key)
        return name

    def chain(self, *layers: Layer | bytes, prefix: str = "L") -> str:
        """Import ``layers`` bottom first; return the top's name."""
        parent = ""
        for i, layer in enumerate(layers):
            parent = self.layer(f"{prefix}{i}", parent, layer)
        return parent

    # ------------------------------------------------------------------- mounting
    @contextlib.contextmanager
    def mounted(self, mounts: list) -> Iterator[Path]:
        """Perform ``mounts`` on a fresh directory; unmount and remove it on the way out."""
        target = Path(tempfile.mkdtemp(prefix="mnt-", dir=self.root))
        try:
            mount_all(mounts, target)
            self._mounted.append(target)
            yield target
        finally:
            self._unmount(target)

    @contextlib.contextmanager
    def viewed(self, name: str) -> Iterator[Path]:
        """A view of the committed ``name``, mounted; the view is removed on the way out."""
        key = f"view-{name}-{next(_counter)}"
        mounts = self.view(key, name)
        try:
            with self.mounted(mounts) as path:
                yield path
        finally:
            self.remove(key)

    def _unmount(self, target: Path) -> None:
        try:
            unmount(target)
        except CoreError:
            unmount(target, detach=True)  # the last resort: never leave a mount behind
        if target in self._mounted:
            self._mounted.remove(target)
        with contextlib.suppress(OSError):
            target.rmdir()

    def close(self) -> None:
        try:
            for target in list(self._mounted):
                self._unmount(target)
            if self.driver is not None:
                self.call(close_driver, self.driver)
        finally:
            self._loop.close()
            unmount_below(self.root)
            shutil.rmtree(self.root, ignore_errors=True)

    def reopen(self) -> None:
        """Close the driver and build it again on the same root (as a daemon restart does)."""
        self.call(close_driver, self.driver)
        self.driver = self._loop.run_sync(self.loaded.create, self.context)


_counter = itertools.count()


# =========================================================================== the model
class _Change:
    """One layer being generated: its tar and the model after applying it (OCI semantics)."""

    def __init__(self, lower: dict[str, Node]) -> None:
        self.model = dict(lower)
        self.layer = Layer()
        self._written: set[str] = set()  # paths of this layer, and their parents

    def _mark(self, path: str) -> None:
        while path and path not in self._written:
            self._written.add(path)
            path = path.rpartition("/")[0]

    def _drop(self, path: str, keep_written: bool = False, strictly_below: bool = False) -> None:
        below = path + "/" if path else ""
        for p in list(self.model):
            if (p.startswith(below) or (p == path and not strictly_below)) and \
                    not (keep_written and p in self._written):
                del self.model[p]

    def _put(self, path: str, node: Node, add: Callable[[], object]) -> None:
        parts = path.split("/")
        for i in range(1, len(parts)):  # missing or non-directory parents get an entry
            parent = "/".join(parts[:i])
            if (n := self.model.get(parent)) is None or n.kind != "dir":
                self.dir(parent, 0o755, 0, 0)
        add()
        old = self.model.get(path)
        if old is not None and old.kind == "dir" and node.kind == "dir":
            self.model[path] = node._replace(xattrs=old.xattrs)
        else:
            self._drop(path)
            self.model[path] = node
        self._mark(path)

    def file(self, path: str, content: bytes, mode: int, uid: int, gid: int,
             xattrs: dict[str, bytes]) -> None:
        node = Node("file", content, mode, uid, gid, tuple(sorted(xattrs.items())))
        self._put(path, node, lambda: self.layer.file(path, content, mode, uid, gid, xattrs=xattrs))

    def dir(self, path: str, mode: int, uid: int, gid: int) -> None:
        self._put(path, Node("dir", None, mode, uid, gid), lambda: self.layer.dir(path, mode, uid, gid))

    def symlink(self, path: str, target: str, uid: int, gid: int) -> None:
        self._put(path, Node("symlink", target, 0o777, uid, gid),
                  lambda: self.layer.symlink(path, target, uid, gid))

    def hardlink(self, path: str, target: str) -> None:
        self._put(path, self.model[target], lambda: self.layer.hardlink(path, target))

    def whiteout(self, path: str) -> None:
        self.layer.whiteout(path)
        self._drop(path, keep_written=True)

    def opaque(self, directory: str) -> None:
        self.layer.opaque(directory)
        self._drop(directory, keep_written=True, strictly_below=True)


_NAMES = ("a", "b", "c")
_PATHS = tuple("/".join(p) for n in (1, 2, 3) for p in itertools.product(_NAMES, repeat=n))
_FILE_MODES = (0o644, 0o600, 0o755, 0o4755, 0o2755, 0o6711, 0o444)
_DIR_MODES = (0o755, 0o700, 0o1777, 0o2775)
_OWNERS = ((0, 0), (1000, 1000), (0, 50), (65534, 65534))
_LINK_TARGETS = ("a", "../b", "/etc/passwd", "c/a", ".", "..", "/")
_XATTRS = ({}, {}, {"user.k": b"v"}, {"user.k": b"\x00\xff", "user.other": b""})


@st.composite
def _layer_changes(draw: st.DrawFn, lower: dict[str, Node]) -> tuple[Layer, dict[str, Node]]:
    change = _Change(lower)
    for _ in range(draw(st.integers(1, 6))):
        op = draw(st.sampled_from(("file", "file", "dir", "symlink", "hardlink", "whiteout",
                                   "opaque")))
        existing = sorted(change.model)
        if op in ("file", "dir", "symlink"):
            if existing and draw(st.booleans()):
                path = draw(st.sampled_from(existing))  # replace what is there
            else:
                path = draw(st.sampled_from(_PATHS))
            uid, gid = draw(st.sampled_from(_OWNERS))
            if op == "file":
                change.file(path, draw(st.binary(max_size=64)), draw(st.sampled_from(_FILE_MODES)),
                            uid, gid, draw(st.sampled_from(_XATTRS)))
            elif op == "dir":
                change.dir(path, draw(st.sampled_from(_DIR_MODES)), uid, gid)
            else:
                change.symlink(path, draw(st.sampled_from(_LINK_TARGETS)), uid, gid)
        elif op == "hardlink":
            files = sorted(p for p, n in change.model.items() if n.kind == "file")
            if not files:
                continue
            target, path = draw(st.sampled_from(files)), draw(st.sampled_from(_PATHS))
            if path == target or path.startswith(target + "/") or target.startswith(path + "/"):
                continue
            change.hardlink(path, target)
        elif op == "whiteout":
            if existing:
                change.whiteout(draw(st.sampled_from(existing)))
        else:
            dirs = [""] + sorted(p for p, n in change.model.items() if n.kind == "dir")
            change.opaque(draw(st.sampled_from(dirs)))
    return change.layer, change.model


class LayerStackMachine(RuleBasedStateMachine):
    """Random layer stacks through the driver under test, compared with a model.

    Set ``driver = (kind, name)`` on a subclass (``SnapshotterSuite`` does).  Every committed
    snapshot is kept with the model of its filesystem; new layers start from any of them, so
    chains branch and share parents.
    """

    driver: tuple[str, str]
    options: dict[str, str] = {}

    def __init__(self) -> None:
        super().__init__()
        self.h = Harness(*self.driver, self.options)
        self.layers: dict[str, dict[str, Node]] = {"": {}}   # committed name -> model
        self.parents: dict[str, str] = {}
        self.count = 0

    def teardown(self) -> None:
        self.h.close()

    def _name(self) -> str:
        self.count += 1
        return f"layer-{self.count}"

    def _check(self, name: str) -> None:
        with self.h.viewed(name) as path:
            assert_tree(read_tree(path), self.layers[name], f"a view of {name}")

    @rule(data=st.data())
    def import_layer(self, data: st.DataObject) -> None:
        parent = data.draw(st.sampled_from(sorted(self.layers)), label="parent")
        layer, model = data.draw(_layer_changes(self.layers[parent]), label="layer")
        name = self._name()
        self.h.layer(name, parent, layer)
        self.layers[name], self.parents[name] = model, parent
        self._check(name)

    @rule(data=st.data())
    def run_a_container_and_commit_it(self, data: st.DataObject) -> None:
        """A container writes and deletes through a read-write mount; its snapshot becomes a
        layer (``docker commit``): the kernel's own whiteouts must read back right."""
        parent = data.draw(st.sampled_from(sorted(self.layers)), label="parent")
        model = dict(self.layers[parent])
        key = f"ctr-{self.count}"
        with self.h.mounted(self.h.prepare(key, parent)) as root:
            assert_tree(read_tree(root), model, f"a container on {parent or 'nothing'}")
            for _ in range(data.draw(st.integers(1, 4), label="changes")):
                _container_change(data, root, model)
            assert_tree(read_tree(root), model, "a container after its changes")
        name = self._name()
        self.h.commit(name, key)
        self.layers[name], self.parents[name] = model, parent
        self._check(name)

    @rule(data=st.data())
    def remove_a_layer(self, data: st.DataObject) -> None:
        names = sorted(n for n in self.layers if n)
        if not names:
            return
        name = data.draw(st.sampled_from(names), label="remove")
        if name in self.parents.values():
            try:
                self.h.remove(name)
            except Conflict:
                return
            raise AssertionError(f"removing {name}, a parent, did not raise Conflict")
        self.h.remove(name)
        del self.layers[name], self.parents[name]

    @invariant()
    def walk_lists_the_committed_layers(self) -> None:
        infos = self.h.walk()
        assert set(infos) == set(self.layers) - {""}
        for name, info in infos.items():
            assert info.kind is SnapshotKind.COMMITTED and info.parent == self.parents[name]


def _container_change(data: st.DataObject, root: Path, model: dict[str, Node]) -> None:
    """One change a container makes through its mount, applied to ``model`` too.  Files are
    replaced by rename, never rewritten in place: a rewrite would show through every hardlink
    on vfs and only through one on overlay (copy-up breaks links), which is no contract."""
    op = data.draw(st.sampled_from(("write", "remove", "mkdir", "recreate-dir")), label="op")
    existing = sorted(model)
    if op in ("remove", "recreate-dir"):
        candidates = existing if op == "remove" else [p for p in existing if model[p].kind == "dir"]
        if not candidates:
            return
        path = data.draw(st.sampled_from(candidates), label=op)
        host = root / path
        if model[path].kind == "dir":
            shutil.rmtree(host)
        else:
            host.unlink()
        for p in [p for p in model if p == path or p.startswith(path + "/")]:
            del model[p]
        if op == "recreate-dir":  # overlayfs makes it opaque: the lower contents must stay gone
            host.mkdir()
            os.chmod(host, 0o750)
            model[path] = _made(model, path, "dir", None, 0o750)
        return
    path = data.draw(st.sampled_from(_PATHS), label=op)
    parent = path.rpartition("/")[0]
    if parent and (parent not in model or model[parent].kind != "dir"):
        return
    host = root / path
    if op == "mkdir":
        if path in model:
            return
        host.mkdir()
        os.chmod(host, 0o750)
        model[path] = _made(model, path, "dir", None, 0o750)
        return
    if path in model and model[path].kind == "dir":
        return
    content = data.draw(st.binary(max_size=32), label="content")
    temp = root / (parent or ".") / ".new"
    temp.write_bytes(content)
    os.chmod(temp, 0o640)
    os.replace(temp, host)
    model[path] = _made(model, path, "file", content, 0o640)


def _made(model: dict[str, Node], path: str, kind: str, data: Any, mode: int) -> Node:
    """What a process running as root makes at ``path``: owned by root — but in a setgid
    directory (a layer may make one) by the directory's group, as the kernel has it."""
    parent = model.get(path.rpartition("/")[0])
    gid = parent.gid if parent is not None and parent.kind == "dir" and parent.mode & stat.S_ISGID else 0
    return Node(kind, data, mode, 0, gid)


# =========================================================================== hostile tars
def _escape(h: Harness, name: str) -> str:
    """``name`` in ``outside``, as an absolute path without its leading ``/``."""
    return str(h.outside / name).lstrip("/")


# Each case: (id, parent layer builder or None, layer builder).  Builders take the harness.
_Builder = Callable[[Harness], "Layer | bytes"]
HOSTILE: list[tuple[str, _Builder | None, _Builder]] = [
    ("dotdot", None, lambda h: Layer().file("../pwned", b"x")),
    ("dotdot-inside", None, lambda h: Layer().dir("a").file("a/../../pwned", b"x")),
    ("dotdot-deep", None, lambda h: Layer().file("../" * 30 + _escape(h, "pwned"), b"x")),
    ("absolute", None, lambda h: Layer().file(str(h.outside / "pwned"), b"x")),
    ("absolute-dir", None, lambda h: Layer().dir(str(h.outside / "pwned"))),
    ("symlink-in-tar", None,
     lambda h: Layer().symlink("evil", str(h.outside)).file("evil/pwned", b"x")),
    ("symlink-in-tar-dir", None,
     lambda h: Layer().symlink("evil", str(h.outside)).dir("evil/pwned")),
    ("symlink-relative", None,
     lambda h: Layer().symlink("evil", "../" * 30 + _escape(h, "")).file("evil/pwned", b"x")),
    ("symlink-chain", None,
     lambda h: Layer().symlink("a", "b").symlink("b", str(h.outside)).file("a/pwned", b"x")),
    ("symlink-loop", None, lambda h: Layer().symlink("loop", "loop").file("loop/pwned", b"x")),
    ("symlink-in-parent", lambda h: Layer().symlink("evil", str(h.outside)),
     lambda h: Layer().file("evil/pwned", b"x")),
    ("symlink-in-parent-deep", lambda h: Layer().dir("d").symlink("d/evil", str(h.outside)),
     lambda h: Layer().file("d/evil/dir/pwned", b"x")),
    ("symlink-in-parent-symlink", lambda h: Layer().symlink("evil", str(h.outside)),
     lambda h: Layer().symlink("evil/pwned", "/etc/passwd")),
    ("symlink-in-parent-device", lambda h: Layer().symlink("evil", str(h.outside)),
     lambda h: Layer().device("evil/pwned", "c", 1, 3)),
    ("hardlink-dotdot", None, lambda h: Layer().hardlink("pwned", "../../secret")),
    ("hardlink-absolute", None, lambda h: Layer().hardlink("pwned", str(h.outside / "secret"))),
    ("hardlink-host-file", None, lambda h: Layer().hardlink("pwned", "etc/passwd")),
    ("hardlink-through-symlink", None,
     lambda h: Layer().symlink("evil", str(h.outside)).hardlink("pwned", "evil/secret")),
    ("hardlink-through-parent-symlink", lambda h: Layer().symlink("evil", str(h.outside)),
     lambda h: Layer().hardlink("pwned", "evil/secret")),
    ("hardlink-name-through-symlink", lambda h: Layer().symlink("evil", str(h.outside)).file("f"),
     lambda h: Layer().hardlink("evil/pwned", "f")),
    ("hardlink-to-directory", None, lambda h: Layer().dir("d").hardlink("pwned", "d")),
    ("hardlink-to-itself", None, lambda h: Layer().hardlink("pwned", "pwned")),
    ("hardlink-to-whiteout", lambda h: Layer().file("f"),
     lambda h: Layer().whiteout("f").hardlink("pwned", "f")),
    ("whiteout-through-symlink", None,
     lambda h: Layer().symlink("evil", str(h.outside)).whiteout("evil/secret")),
    ("whiteout-through-parent-symlink", lambda h: Layer().symlink("evil", str(h.outside)),
     lambda h: Layer().whiteout("evil/secret")),
    ("whiteout-dir-through-parent-symlink", lambda h: Layer().symlink("evil", str(h.outside)),
     lambda h: Layer().whiteout("evil/dir")),
    ("opaque-through-symlink", None,
     lambda h: Layer().symlink("evil", str(h.outside)).opaque("evil")),
    ("opaque-through-parent-symlink", lambda h: Layer().symlink("evil", str(h.outside)),
     lambda h: Layer().opaque("evil")),
    ("whiteout-dotdot", None, lambda h: Layer().file(".wh..", b"")),
    ("whiteout-dotdot-inside", None, lambda h: Layer().dir("a").file("a/.wh..", b"")),
    ("whiteout-empty", None, lambda h: Layer().file(".wh.", b"")),
    ("whiteout-absolute", None, lambda h: Layer().whiteout(str(h.outside / "secret"))),
    ("whiteout-dotdot-path", None, lambda h: Layer().whiteout("../" * 30 + _escape(h, "secret"))),
    ("device-named-whiteout", None, lambda h: Layer().device(".wh.x", "c", 1, 3)),
    ("block-device-named-whiteout", None, lambda h: Layer().device("a/.wh.x", "b", 7, 0)),
    ("root-replaced-by-file", None, lambda h: Layer().file(".", b"x")),
    ("root-replaced-by-symlink", None, lambda h: Layer().symlink("./", str(h.outside))),
    ("name-too-long", None, lambda h: Layer().file("a/" * 2100 + "f", b"x")),
    ("component-too-long", None, lambda h: Layer().file("a" * 256, b"x")),
    ("huge-extended-header", None,
     lambda h: Layer().file("f", b"x", xattrs={"user.big": b"x" * (2 << 20)})),
    ("negative-owner", None, lambda h: Layer().file("f", b"x", uid=-5)),
    ("not-a-tar", None, lambda h: b"this is not a tar archive at all" * 40),
    ("truncated-data", None, lambda h: Layer().file("f", b"x" * 5000).data()[:2048]),
    ("truncated-header", None, lambda h: Layer().file("f", b"x").file("g", b"y").data()[:1024 + 100]),
    ("corrupt-header", None,
     lambda h: (lambda d: d[:512] + b"\x01" * 512 + d[1024:])(Layer().file("f").file("g").data())),
]


def _assert_untouched(h: Harness, before: dict[str, Node]) -> None:
    assert_tree(read_tree(h.outside), before, "the directory outside the snapshots")
    found = [p for p in h.root.rglob("pwned*")]
    assert not found, f"a hostile tar wrote {found}"
    for host in (Path("/pwned"), Path("/tmp/pwned"), Path("/etc/pwned")):
        assert not host.exists(), f"a hostile tar wrote {host}"


# =========================================================================== the suite
class SnapshotterSuite(DriverSuite):
    """The storage conformance suite; subclass it with ``name = "<driver>"``."""

    kind = "storage"

    #: hypothesis settings of the layer-stack state machine (bounded: the suite runs in a minute)
    stateful_settings = settings(max_examples=100, stateful_step_count=10, deadline=None,
                                 database=None, suppress_health_check=list(HealthCheck))

    @pytest.fixture
    def harness(self, driver_under_test: tuple[str, str]) -> Iterator[Harness]:
        h = Harness(*driver_under_test, self.driver_options())
        try:
            yield h
        finally:
            h.close()

    # ------------------------------------------------------------------- 1. the model
    def test_layer_stacks_match_the_model(self, driver_under_test: tuple[str, str]) -> None:
        if os.geteuid() != 0:
            pytest.skip("the storage conformance suite mounts snapshots: run it as root")
        machine = type("LayerStacks", (LayerStackMachine,), {"driver": driver_under_test,
                                                              "options": self.driver_options()})
        run_state_machine_as_test(machine, settings=self.stateful_settings)

    # ------------------------------------------------------------------- 2. lifecycle
    def test_prepare_returns_mounts_of_an_empty_writable_root(self, harness: Harness) -> None:
        mounts = harness.prepare("k")
        assert mounts and mounts == harness.mounts("k")
        info = harness.stat("k")
        assert (info.name, info.kind, info.parent) == ("k", SnapshotKind.ACTIVE, "")
        with harness.mounted(mounts) as root:
            assert read_tree(root) == {}
            (root / "f").write_bytes(b"written")
        with harness.mounted(harness.mounts("k")) as root:
            assert (root / "f").read_bytes() == b"written"

    def test_keys_and_names_share_one_namespace(self, harness: Harness) -> None:
        harness.prepare("k")
        for call in (lambda: harness.prepare("k"), lambda: harness.view("k")):
            with pytest.raises(AlreadyExists):
                call()
        harness.commit("name", "k")
        harness.prepare("k2", "name")
        for call in (lambda: harness.prepare("name"), lambda: harness.view("name", "name"),
                     lambda: harness.commit("name", "k2")):
            with pytest.raises(AlreadyExists):
                call()
        harness.prepare("k3")
        with pytest.raises(AlreadyExists):
            harness.commit("k3", "k2")  # a key in use is taken too
        harness.commit("k", "k2")       # a key that was committed away is free again

    def test_parent_must_exist_and_be_committed(self, harness: Harness) -> None:
        with pytest.raises(NotFound):
            harness.prepare("k", "nope")
        with pytest.raises(NotFound):
            harness.view("v", "nope")
        harness.prepare("active")
        harness.view("view")
        for parent in ("active", "view"):
            with pytest.raises(InvalidArgument):
                harness.prepare("k", parent)
        assert set(harness.walk()) == {"active", "view"}  # failed calls leave nothing

    def test_concurrent_prepares_of_one_key(self, harness: Harness) -> None:
        base = harness.chain(Layer().file("f", b"x"))
        outcomes: list[str] = []

        async def prepare() -> None:
            try:
                await harness.driver.prepare("k", base)
                outcomes.append("created")
            except AlreadyExists:
                outcomes.append("exists")

        async def race() -> None:
            async with trio.open_nursery() as nursery:
                for _ in range(4):
                    nursery.start_soon(prepare)

        harness.call(race)
        assert sorted(outcomes) == ["created", "exists", "exists", "exists"]
        with harness.mounted(harness.mounts("k")) as root:
            assert read_tree(root) == {"f": Node("file", b"x")}

    def test_invalid_keys_and_labels_are_rejected(self, harness: Harness) -> None:
        for bad in ("", "a\0b", "x" * 5000):
            with pytest.raises(InvalidArgument):
                harness.prepare(bad)
        with pytest.raises(InvalidArgument):
            harness.prepare("k", labels={"a": 1})  # type: ignore[dict-item]

    def test_commit_rules(self, harness: Harness) -> None:
        with pytest.raises(NotFound):
            harness.commit("name", "nope")
        harness.view("view")
        with pytest.raises(InvalidArgument):
            harness.commit("name", "view")
        harness.prepare("k", labels={"a": "1"})
        harness.commit("name", "k", labels={"b": "2"})
        with pytest.raises(NotFound):
            harness.stat("k")
        info = harness.stat("name")
        assert (info.kind, info.labels) == (SnapshotKind.COMMITTED, {"a": "1", "b": "2"})
        with pytest.raises(InvalidArgument):
            harness.commit("again", "name")  # committed already
        with pytest.raises(InvalidArgument):
            harness.mounts("name")           # committed snapshots are viewed, not mounted

    def test_remove_rules(self, harness: Harness) -> None:
        with pytest.raises(NotFound):
            harness.remove("nope")
        top = harness.chain(Layer().file("a"), Layer().file("b"))
        harness.prepare("ctr", top)
        harness.view("v", "L0")
        for parent in ("L0", top):
            with pytest.raises(Conflict):
                harness.remove(parent)
        assert set(harness.walk()) == {"L0", top, "ctr", "v"}
        harness.remove("ctr")
        harness.remove("v")
        harness.remove(top)
        harness.remove("L0")
        assert harness.walk() == {}
        with pytest.raises(NotFound):
            harness.remove("L0")

    def test_unknown_keys_are_not_found(self, harness: Harness) -> None:
        for call in (lambda: harness.stat("nope"), lambda: harness.mounts("nope"),
                     lambda: harness.usage("nope"), lambda: harness.remove("nope"),
                     lambda: harness.commit("x", "nope"),
                     lambda: harness.apply("nope", Layer().file("f"))):
            with pytest.raises(NotFound):
                call()

    @pytest.mark.parametrize("depth", [0, 1, 3])
    def test_views_are_read_only(self, harness: Harness, depth: int) -> None:
        layers = [Layer().file(f"f{i}", b"x") for i in range(depth)]
        parent = harness.chain(*layers) if layers else ""
        mounts = harness.view("v", parent)
        assert harness.stat("v").kind is SnapshotKind.VIEW
        with harness.mounted(mounts) as root:
            assert sorted(read_tree(root)) == [f"f{i}" for i in range(depth)]
            for write in (lambda: (root / "new").write_bytes(b"x"), lambda: (root / "d").mkdir()):
                with pytest.raises(OSError) as caught:
                    write()
                assert caught.value.errno == errno.EROFS
        with pytest.raises(InvalidArgument):
            harness.apply("v", Layer().file("f"))
        with pytest.raises(InvalidArgument):
            harness.commit("name", "v")

    def test_active_snapshots_are_isolated(self, harness: Harness) -> None:
        base = harness.chain(Layer().file("shared", b"base"))
        with harness.mounted(harness.prepare("one", base)) as one, \
                harness.mounted(harness.prepare("two", base)) as two:
            (one / "shared").write_bytes(b"changed by one")
            (one / "mine").write_bytes(b"one")
            (two / "shared").unlink()
            assert (two / "shared").exists() is False and not (two / "mine").exists()
            assert (one / "shared").read_bytes() == b"changed by one"
        with harness.viewed(base) as root:
            assert read_tree(root) == {"shared": Node("file", b"base")}

    def test_walk_lists_every_snapshot(self, harness: Harness) -> None:
        top = harness.chain(Layer().file("a"), Layer().file("b"))
        harness.prepare("ctr", top, labels={"role": "container"})
        harness.view("v", "L0")
        infos = harness.walk()
        assert {n: (i.kind, i.parent) for n, i in infos.items()} == {
            "L0": (SnapshotKind.COMMITTED, ""), top: (SnapshotKind.COMMITTED, "L0"),
            "ctr": (SnapshotKind.ACTIVE, top), "v": (SnapshotKind.VIEW, "L0")}
        assert infos["ctr"].labels == {"role": "container"}
        assert all(i.created > 0 for i in infos.values())

    def test_usage_counts_the_snapshots_own_bytes(self, harness: Harness) -> None:
        harness.prepare("k")
        empty = harness.usage("k")
        harness.apply("k", Layer().file("big", os.urandom(1 << 20)).file("small", b"x"))
        grown = harness.usage("k")
        assert grown.size - empty.size >= 1 << 20
        assert grown.inodes - empty.inodes >= 2
        harness.commit("name", "k")
        assert harness.usage("name") == grown
        harness.prepare("child", "name")
        with harness.mounted(harness.mounts("child")) as root:
            (root / "more").write_bytes(os.urandom(256 << 10))
        assert harness.usage("child").size >= 256 << 10

    def test_state_survives_reopening(self, harness: Harness) -> None:
        top = harness.chain(Layer().file("a", b"A"), Layer().file("b", b"B"))
        harness.prepare("ctr", top)
        before = harness.walk()
        harness.reopen()
        assert harness.walk() == before
        with harness.mounted(harness.mounts("ctr")) as root:
            assert read_tree(root) == {"a": Node("file", b"A"), "b": Node("file", b"B")}
        harness.remove("ctr")

    def test_apply_layer_returns_the_bytes_read(self, harness: Harness) -> None:
        data = Layer().file("f", b"x" * 1000).data() + b"\0" * 4096  # padding after the end
        harness.prepare("k")
        assert harness.apply("k", data, chunk=333) == len(data)
        harness.prepare("empty")
        assert harness.apply("empty", b"") == 0

    def test_attributes_are_kept(self, harness: Harness) -> None:
        capability = struct.pack("<5I", 0x02000001, 1 << 13, 0, 0, 0)  # cap_net_raw+ep
        mtime = 1_600_000_000
        layer = (Layer()
                 .dir("d", 0o2775, 1000, 2000, mtime=mtime)
                 .file("d/suid", b"#!", 0o4755, 1000, 2000, mtime=mtime + 1,
                       xattrs={"user.note": b"\x00binary\xff", "security.capability": capability,
                               "trusted.hidden": b"host policy"})
                 .dir("tmp", 0o1777, mtime=mtime)
                 .symlink("d/link", "../tmp", 1000, 2000, mtime=mtime + 2)
                 .hardlink("d/hard", "d/suid")
                 .device("null", "c", 1, 3, 0o666)
                 .device("loop", "b", 7, 0, 0o660)
                 .device("fifo", "p", 0, 0, 0o644))
        top = harness.chain(layer, Layer().file("later", b"l"))
        with harness.viewed(top) as root:
            tree = read_tree(root)
            assert tree["d"] == Node("dir", None, 0o2775, 1000, 2000)
            assert tree["d/suid"] == Node("file", b"#!", 0o4755, 1000, 2000,
                                          (("user.note", b"\x00binary\xff"),))
            assert tree["d/hard"] == tree["d/suid"]
            assert os.stat(root / "d/hard").st_ino == os.stat(root / "d/suid").st_ino
            assert tree["tmp"].mode == 0o1777
            assert tree["d/link"] == Node("symlink", "../tmp", 0o777, 1000, 2000)
            assert tree["null"] == Node("char", (1, 3), 0o666)
            assert tree["loop"] == Node("block", (7, 0), 0o660)
            assert tree["fifo"].kind == "fifo" and tree["fifo"].mode == 0o644
            assert os.getxattr(root / "d/suid", "security.capability") == capability
            with pytest.raises(OSError):
                os.getxattr(root / "d/suid", "trusted.hidden")
            assert os.lstat(root / "d").st_mtime == mtime  # set after its contents
            assert os.lstat(root / "d/suid").st_mtime == mtime + 1
            assert os.lstat(root / "d/link").st_mtime == mtime + 2

    def test_whiteouts_and_opaque_directories(self, harness: Harness) -> None:
        base = (Layer().file("gone", b"1").dir("dir").file("dir/a").dir("dir/sub").file("dir/sub/b")
                .dir("opq").file("opq/old").dir("opq/sub").file("opq/sub/old")
                .dir("readd").file("readd/old").file("keep", b"k"))
        top = (Layer().whiteout("gone").whiteout("dir")
               .opaque("opq").file("opq/new", b"n").dir("opq/sub").file("opq/sub/new")
               .file("readd/new", b"n").whiteout("readd")     # this layer's entries stay
               .whiteout("never-existed"))
        name = harness.chain(base, top)
        with harness.viewed(name) as root:
            assert sorted(read_tree(root)) == ["keep", "opq", "opq/new", "opq/sub", "opq/sub/new",
                                               "readd", "readd/new"]

    def test_opaque_root(self, harness: Harness) -> None:
        name = harness.chain(Layer().dir("d").file("d/f").file("f"),
                             Layer().file("d/new").opaque("").file("g"))
        with harness.viewed(name) as root:
            assert sorted(read_tree(root)) == ["d", "d/new", "g"]

    def test_replacing_entries(self, harness: Harness) -> None:
        base = (Layer().dir("dir2file").file("dir2file/child").file("file2dir", b"f")
                .symlink("link2dir", "/etc").dir("dirdir", 0o700).file("dirdir/kept"))
        top = (Layer().file("dir2file", b"now a file").dir("file2dir").file("file2dir/new")
               .dir("link2dir").file("link2dir/inside").dir("dirdir", 0o755)
               .file("dup", b"first").file("dup", b"second").dir("dup2").file("dup2", b"file")
               .file("dup3").dir("dup3").file("dup3/x"))
        name = harness.chain(base, top)
        with harness.viewed(name) as root:
            tree = read_tree(root)
        assert tree["dir2file"] == Node("file", b"now a file") and "dir2file/child" not in tree
        assert tree["file2dir"].kind == "dir" and "file2dir/new" in tree
        assert tree["link2dir"].kind == "dir" and "link2dir/inside" in tree
        assert tree["dirdir"].mode == 0o755 and "dirdir/kept" in tree
        assert tree["dup"].data == b"second" and tree["dup2"].kind == "file"
        assert sorted(p for p in tree if p.startswith("dup3")) == ["dup3", "dup3/x"]

    def test_device_nodes_are_never_followed(self, harness: Harness) -> None:
        name = harness.chain(Layer().device("null", "c", 1, 3),
                             Layer().file("null", b"replaced, not written into"))
        with harness.viewed(name) as root:
            assert read_tree(root)["null"] == Node("file", b"replaced, not written into")

    def test_hardlinks_to_lower_layers(self, harness: Harness) -> None:
        name = harness.chain(Layer().dir("d", 0o700).file("d/f", b"lower", 0o600, 5, 5),
                             Layer().hardlink("link", "d/f"))
        with harness.viewed(name) as root:
            tree = read_tree(root)
            assert tree["link"] == tree["d/f"] == Node("file", b"lower", 0o600, 5, 5)
            assert tree["d"].mode == 0o700
            assert os.stat(root / "link").st_ino == os.stat(root / "d/f").st_ino

    def test_entries_in_lower_directories_keep_their_attributes(self, harness: Harness) -> None:
        name = harness.chain(Layer().dir("d", 0o710, 3, 4, xattrs={"user.k": b"v"}).file("d/old"),
                             Layer().file("d/sub/new", b"n"))  # no entries for d, d/sub
        with harness.viewed(name) as root:
            tree = read_tree(root)
        assert tree["d"] == Node("dir", None, 0o710, 3, 4, (("user.k", b"v"),))
        assert tree["d/sub"] == Node("dir", None, 0o755) and "d/old" in tree

    def test_corrupt_stream_errors_propagate(self, harness: Harness) -> None:
        harness.prepare("k")

        async def failing() -> AsyncIterator[bytes]:
            yield Layer().file("f", b"x" * 10000).data()[:4096]
            raise ConnectionResetError("the registry went away")

        with pytest.raises(ConnectionResetError):
            harness.call(harness.driver.apply_layer, "k", failing())

    # ------------------------------------------------------------------- 3. hostile tars
    @pytest.mark.parametrize("case", HOSTILE, ids=[c[0] for c in HOSTILE])
    def test_hostile_tar_is_rejected(self, harness: Harness, case: tuple) -> None:
        _id, parent_builder, builder = case
        before = read_tree(harness.outside)
        parent = harness.layer("parent", "", parent_builder(harness)) if parent_builder else ""
        harness.prepare("k", parent)
        with pytest.raises(InvalidArgument):
            harness.apply("k", builder(harness))
        _assert_untouched(harness, before)
        harness.remove("k")  # a failed snapshot can be removed

    def test_symlink_replaced_by_file_is_not_written_through(self, harness: Harness) -> None:
        before = read_tree(harness.outside)
        name = harness.chain(Layer().symlink("evil", str(harness.outside / "secret")),
                             Layer().file("evil", b"mine").symlink("evil2", str(harness.outside))
                             .file("evil2", b"mine too"))
        _assert_untouched(harness, before)
        with harness.viewed(name) as root:
            assert read_tree(root) == {"evil": Node("file", b"mine"),
                                       "evil2": Node("file", b"mine too")}

    def test_whiteout_of_a_symlink_removes_the_link_only(self, harness: Harness) -> None:
        before = read_tree(harness.outside)
        name = harness.chain(Layer().symlink("evil", str(harness.outside)).dir("d")
                             .symlink("d/evil", str(harness.outside)),
                             Layer().whiteout("evil").opaque("d"))
        _assert_untouched(harness, before)
        with harness.viewed(name) as root:
            assert read_tree(root) == {"d": Node("dir", None, 0o755)}

    # ------------------------------------------------------------------- 4. many layers
    def test_a_chain_of_130_layers_mounts(self, harness: Harness) -> None:
        parent = ""
        for i in range(130):
            parent = harness.layer(f"layer-{i:03}", parent, Layer().file(f"f{i:03}", str(i).encode()))
        expected = {f"f{i:03}": Node("file", str(i).encode()) for i in range(130)}
        with harness.viewed(parent) as root:
            assert_tree(read_tree(root), expected, "a view of 130 layers")
        with harness.mounted(harness.prepare("ctr", parent)) as root:
            assert_tree(read_tree(root), expected, "a container on 130 layers")
            (root / "f000").unlink()
            (root / "new").write_bytes(b"new")
        harness.remove("ctr")


class TestSnapshotter(SnapshotterSuite):
    """Collected when this module is run with ``--pyargs``; runs for every ``--driver storage=``."""
