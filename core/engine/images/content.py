"""The content store: blobs by digest, written through verified, resumable ingests.

This is containerd's ``content`` package (``core/content/content.go``) in its three roles:

- **provider** -- read committed blobs: :meth:`ContentStore.exists`, :meth:`~ContentStore.size`,
  :meth:`~ContentStore.path`, :meth:`~ContentStore.read_bytes` (bounded), and the async chunk
  iterator :meth:`~ContentStore.open`;
- **ingester** -- write new blobs: :meth:`ContentStore.ingest` returns an :class:`Ingest`;
  :meth:`ContentStore.write_blob` stores a small blob held in memory;
- **manager** -- :meth:`~ContentStore.walk`, :meth:`~ContentStore.usage`,
  :meth:`~ContentStore.delete`, :meth:`~ContentStore.ingests`,
  :meth:`~ContentStore.cleanup_ingests`.

Layout on disk (``root`` is ``<data-root>/content``)::

    blobs/sha256/<hex>                 committed blobs, read-only (0444), never rewritten
    ingest/<sha256 of the ref>/data    the bytes written so far (its length is the offset)
    ingest/<sha256 of the ref>/ref     the ingest's ref, for listings
    ingest/<sha256 of the ref>/expected   the expected descriptor (JSON: mediaType, digest, size)

Lifecycle of an ingest::

    with store.ingest("blob-sha256:...", expected_descriptor) as w:   # Conflict if in use
        async for chunk in w.prefix():   # only when resuming (w.offset > 0): the bytes already
            ...                          # on disk, re-hashed on the way
        await w.write(chunk)             # appends; InvalidArgument at once past expected.size
        ...
        await w.commit()                 # verify size and digest, fsync, rename into blobs/

An ingest is invisible until committed: :meth:`Ingest.commit` checks the size and the digest
against the expected descriptor, fsyncs the data, renames it into ``blobs/`` (atomic on one
filesystem) and fsyncs that directory, so a crash at any point leaves either no blob or a
complete, verified one.  A mismatch stores nothing: the data is discarded and
``InvalidArgument`` raised.  Leaving the ``with`` block without committing (an error, a
cancellation, a dropped connection the caller gives up on) *keeps* the partial data: the next
:meth:`ContentStore.ingest` with the same ref resumes at its length, re-hashing the prefix, and
:meth:`ContentStore.cleanup_ingests` removes the ones nobody came back for.  A process killed
mid-write leaves the same resumable state.  (Data is fsynced only at commit: after a power loss
a partial ingest may hold a damaged tail; the digest check at commit then discards it, and the
next attempt starts from zero.)

Sizes are never trusted: writes past the expected size fail at once, ``read_bytes`` reads at most
``max_size`` bytes.  A full disk (``ENOSPC``, ``EDQUOT``) raises ``Unavailable("no space left on
device ...")`` and removes the ingest, so the space it held is given back.

Concurrency: one process owns a content root (the daemon, under its data-root lock).  Inside it,
an ingest ref has one writer at a time (:meth:`ContentStore.ingest` raises ``Conflict`` for a ref
in use, even through another ``ContentStore`` object on the same root); committed blobs can be read
by any number of tasks.  Writes of up to 256 KiB (HTTP bodies arrive in 64 KiB pieces) are done
on the trio thread: appending 64 KiB to the page cache and hashing it costs about 0.05 ms, less
than a hop to a worker thread (about 0.14 ms); 1 MiB costs 2.5 ms, so larger writes, every read
and every ``fsync`` go through ``trio.to_thread.run_sync``.
"""
from __future__ import annotations

import errno
import hashlib
import json
import os
import shutil
import time
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any

import attrs
import trio

from core.errors import AlreadyExists, Conflict, CoreError, InvalidArgument, NotFound, Unavailable
from core.types import Descriptor, Digest

__all__ = ["ContentStore", "Ingest", "ContentInfo", "ContentUsage", "IngestStatus",
           "CHUNK_SIZE", "INLINE_WRITE_MAX"]

#: size of the chunks :meth:`ContentStore.open` and :meth:`Ingest.prefix` yield
CHUNK_SIZE = 1 << 20
#: writes up to this size are done on the trio thread; larger ones in a worker thread
INLINE_WRITE_MAX = 256 * 1024
_SMALL_FILE_MAX = 64 * 1024  # the ref / expected files
_NO_SPACE = (errno.ENOSPC, errno.EDQUOT)

# Ingest directories being written by this process (absolute paths), whichever ContentStore
# object opened them: a ref has one writer at a time.
_ACTIVE: set[str] = set()


@attrs.frozen
class ContentInfo:
    """A committed blob: its digest, size in bytes and when it was committed (epoch seconds)."""

    digest: Digest
    size: int
    committed_at: float


@attrs.frozen
class ContentUsage:
    """Disk use of the committed blobs: how many, and their total size in bytes."""

    count: int
    size: int


@attrs.frozen
class IngestStatus:
    """An ingest on disk: its ref, what it expects (``None`` if unreadable), bytes written so far,
    when it was last written (epoch seconds) and whether a writer holds it in this process."""

    ref: str
    expected: Descriptor | None
    offset: int
    updated_at: float
    active: bool


def _no_space(path: Path, exc: OSError) -> Unavailable:
    return Unavailable(f"no space left on device: writing {path}: {exc.strerror or exc}")


def _fsync_dir(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def _read_small(path: Path) -> bytes:
    with open(path, "rb") as f:
        return f.read(_SMALL_FILE_MAX)


class ContentStore:
    """Blobs by digest under ``root`` (``<data-root>/content``).  See the module docstring."""

    def __init__(self, root: str | os.PathLike[str]) -> None:
        self.root = Path(root).absolute()
        self._blobs = self.root / "blobs"
        self._ingest = self.root / "ingest"
        for d in (self.root, self._blobs, self._ingest):
            d.mkdir(mode=0o700, exist_ok=True, parents=d is self.root)

    def __repr__(self) -> str:
        return f"<ContentStore {self.root}>"

    # ------------------------------------------------------------------ provider
    def blob_path(self, digest: Digest | str) -> Path:
        """Where the blob ``digest`` lives, whether it exists or not.

        Raises ``InvalidArgument`` for a malformed digest.
        """
        d = Digest.parse(digest)
        return self._blobs / d.algorithm / d.encoded

    def exists(self, digest: Digest | str) -> bool:
        """Whether the blob ``digest`` is committed."""
        return self.blob_path(digest).is_file()

    def size(self, digest: Digest | str) -> int:
        """The size in bytes of the committed blob ``digest``.  ``NotFound`` if absent."""
        try:
            return self.blob_path(digest).stat().st_size
        except FileNotFoundError:
            raise NotFound(f"content {digest}: not found") from None

    def path(self, digest: Digest | str) -> Path:
        """The path of the committed blob ``digest`` (read-only, never rewritten).

        ``NotFound`` if absent.
        """
        p = self.blob_path(digest)
        if not p.is_file():
            raise NotFound(f"content {digest}: not found")
        return p

    def read_bytes(self, digest: Digest | str, max_size: int) -> bytes:
        """The whole blob ``digest``, for small blobs (manifests, configs: a few MiB at most,
        read inline -- use :meth:`open` for layers).

        Raises ``NotFound`` if absent and ``InvalidArgument`` if it is larger than ``max_size``
        bytes (at most ``max_size + 1`` bytes are ever read, whatever the file grew to).
        """
        try:
            with open(self.blob_path(digest), "rb") as f:
                data = f.read(max_size + 1)
        except FileNotFoundError:
            raise NotFound(f"content {digest}: not found") from None
        if len(data) > max_size:
            raise InvalidArgument(f"content {digest}: larger than the {max_size} bytes allowed")
        return data

    async def open(self, digest: Digest | str, *, offset: int = 0,
                   chunk_size: int = CHUNK_SIZE) -> AsyncIterator[bytes]:
        """Yield the bytes of the blob ``digest`` from ``offset``, in chunks of ``chunk_size``.

        An async generator: close it (``contextlib.aclosing``) if you stop early.  Raises
        ``NotFound`` (at the first iteration) if the blob is absent.
        """
        try:
            f = open(self.blob_path(digest), "rb")  # noqa: SIM115 -- closed below
        except FileNotFoundError:
            raise NotFound(f"content {digest}: not found") from None
        try:
            if offset:
                f.seek(offset)
            while True:
                chunk = await trio.to_thread.run_sync(f.read, chunk_size)
                if not chunk:
                    return
                yield chunk
        finally:
            f.close()

    # ------------------------------------------------------------------ manager
    def delete(self, digest: Digest | str) -> None:
        """Remove the committed blob ``digest``.  ``NotFound`` if absent."""
        try:
            self.blob_path(digest).unlink()
        except FileNotFoundError:
            raise NotFound(f"content {digest}: not found") from None

    def walk(self) -> Iterator[ContentInfo]:
        """Yield every committed blob, in no particular order."""
        for alg_dir in sorted(self._blobs.iterdir()):
            if not alg_dir.is_dir():
                continue
            with os.scandir(alg_dir) as it:
                for entry in it:
                    try:
                        digest = Digest(alg_dir.name, entry.name)
                        st = entry.stat(follow_symlinks=False)
                    except (InvalidArgument, FileNotFoundError):
                        continue  # not a blob (a stray file), or deleted meanwhile
                    yield ContentInfo(digest, st.st_size, st.st_mtime)

    def usage(self) -> ContentUsage:
        """How many blobs are committed and their total size in bytes."""
        count = size = 0
        for info in self.walk():
            count += 1
            size += info.size
        return ContentUsage(count, size)

    # ------------------------------------------------------------------ ingester
    def _ingest_dir(self, ref: str) -> Path:
        return self._ingest / hashlib.sha256(ref.encode()).hexdigest()

    def ingest(self, ref: str, expected: Descriptor) -> Ingest:
        """Open the ingest ``ref`` for writing the blob ``expected`` describes.

        ``ref`` names the ingest (the registry driver uses ``"blob-<digest>"``): opening the same
        ref again after an interruption resumes it, :attr:`Ingest.offset` bytes in.  A partial
        ingest recorded for another digest or size, or longer than ``expected.size``, is started
        over.  Raises ``AlreadyExists`` if the blob is already committed, ``Conflict`` if another
        writer holds ``ref``, ``InvalidArgument`` for an empty ref and ``Unavailable`` when the
        disk is full.
        """
        if not isinstance(ref, str) or not ref:
            raise InvalidArgument("ingest ref must be a non-empty string")
        if not isinstance(expected, Descriptor):
            raise InvalidArgument("ingest needs the expected descriptor (digest and size)")
        if self.exists(expected.digest):
            raise AlreadyExists(f"content {expected.digest}: already exists")
        d = self._ingest_dir(ref)
        key = str(d)
        if key in _ACTIVE:
            raise Conflict(f"ingest {ref!r} is in use by another writer")
        _ACTIVE.add(key)
        try:
            return Ingest._open(self, ref, d, expected)
        except BaseException:
            _ACTIVE.discard(key)
            raise

    async def write_blob(self, data: bytes, expected: Descriptor) -> None:
        """Store the small blob ``data`` (a manifest, a config) as ``expected`` describes it.

        Does nothing if the blob exists.  ``InvalidArgument`` if ``data`` does not match
        ``expected`` (nothing is stored), ``Conflict`` if the same blob is being ingested.
        """
        if self.exists(expected.digest):
            return
        if len(data) != expected.size:
            raise InvalidArgument(f"content {expected.digest}: unexpected size {len(data)}, "
                                  f"expected {expected.size}")
        try:
            w = self.ingest(f"write-{expected.digest}", expected)
        except AlreadyExists:
            return
        with w:
            await w.truncate()
            await w.write(data)
            await w.commit()

    def ingests(self) -> list[IngestStatus]:
        """Every ingest on disk (partial downloads), active or left behind."""
        out = []
        for d in sorted(self._ingest.iterdir()):
            try:
                ref = _read_small(d / "ref").decode()
                st = (d / "data").stat()
            except (OSError, UnicodeDecodeError):
                continue
            out.append(IngestStatus(ref, _read_expected(d), st.st_size, st.st_mtime,
                                    str(d) in _ACTIVE))
        return out

    def cleanup_ingests(self, max_age: float) -> int:
        """Remove the ingests nobody holds that were last written more than ``max_age`` seconds
        ago (``0``: every one not in use), and leftovers of interrupted set-ups.  Returns how many
        were removed."""
        removed = 0
        cutoff = time.time() - max_age
        for d in list(self._ingest.iterdir()):
            if str(d) in _ACTIVE:
                continue
            try:
                mtime = max((p.stat().st_mtime for p in d.iterdir()), default=d.stat().st_mtime)
            except FileNotFoundError:
                continue
            if max_age <= 0 or mtime < cutoff:
                shutil.rmtree(d, ignore_errors=True)
                removed += 1
        return removed


def _read_expected(d: Path) -> Descriptor | None:
    try:
        return Descriptor.from_json(json.loads(_read_small(d / "expected")))
    except (OSError, ValueError, CoreError):
        return None


class Ingest:
    """A blob being written: made by :meth:`ContentStore.ingest`, one writer, one task.

    ``offset`` is the number of bytes written so far (on resume: the length found on disk).
    Use as a context manager: leaving it without :meth:`commit` keeps the data for a later
    resume (:meth:`close`); :meth:`abort` discards it.
    """

    def __init__(self, store: ContentStore, ref: str, directory: Path, expected: Descriptor,
                 fd: int, offset: int) -> None:
        self.store = store
        self.ref = ref
        self.expected = expected
        self.directory = directory
        self.offset = offset
        self._fd: int | None = fd
        self._data = directory / "data"
        self._resumed_at = offset  # the prefix found on disk, hashed lazily
        self._hasher = expected.digest.hasher()
        self._hashed = 0  # how many bytes of the file the hasher has seen
        self.committed = False

    @classmethod
    def _open(cls, store: ContentStore, ref: str, d: Path, expected: Descriptor) -> Ingest:
        want = json.dumps(expected.to_json(), sort_keys=True).encode()
        try:
            d.mkdir(mode=0o700, exist_ok=True)
            old = _read_expected(d)
            fresh = old is None or (old.digest, old.size) != (expected.digest, expected.size)
            if fresh:
                (d / "ref").write_text(ref)
                (d / "expected").write_bytes(want)
            fd = os.open(d / "data", os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o600)
        except OSError as exc:
            if exc.errno in _NO_SPACE:
                shutil.rmtree(d, ignore_errors=True)
                raise _no_space(d, exc) from exc
            raise
        try:
            size = os.fstat(fd).st_size
            if fresh or size > expected.size:
                os.ftruncate(fd, 0)
                size = 0
            os.lseek(fd, size, os.SEEK_SET)
        except BaseException:
            os.close(fd)
            raise
        return cls(store, ref, d, expected, fd, size)

    def __repr__(self) -> str:
        return f"<Ingest {self.ref!r} {self.offset}/{self.expected.size}>"

    def __enter__(self) -> Ingest:
        return self

    def __exit__(self, *exc: Any) -> None:
        self.close()

    # ------------------------------------------------------------------ reading the prefix
    async def prefix(self) -> AsyncIterator[bytes]:
        """Yield the bytes that were on disk when the ingest was opened (``offset`` at open), in
        order, feeding them to the digest on the way.  Nothing for a new ingest.

        Writing without consuming the prefix is fine too: :meth:`write` and :meth:`commit` hash
        what is left of it first.
        """
        self._check_open()
        pos = 0
        end = self._resumed_at
        with open(self._data, "rb") as f:
            while pos < end:
                chunk = await trio.to_thread.run_sync(f.read, min(CHUNK_SIZE, end - pos))
                if not chunk:
                    raise Unavailable(f"ingest {self.ref!r}: data shrank while reading it")
                self._feed(pos, chunk)
                pos += len(chunk)
                yield chunk

    def _feed(self, pos: int, chunk: bytes) -> None:
        """Hash the part of ``chunk`` (at file position ``pos``) the hasher has not seen."""
        if pos + len(chunk) > self._hashed and pos <= self._hashed:
            self._hasher.update(memoryview(chunk)[self._hashed - pos:])
            self._hashed = pos + len(chunk)

    async def _catch_up(self) -> None:
        if self._hashed < self._resumed_at:
            async for _ in self.prefix():
                pass

    # ------------------------------------------------------------------ writing
    def _check_open(self) -> None:
        if self._fd is None:
            raise InvalidArgument(f"ingest {self.ref!r} is closed")

    async def write(self, chunk: bytes) -> None:
        """Append ``chunk``.

        ``InvalidArgument`` (and the ingest is discarded) if it would take the blob past the
        expected size; ``Unavailable`` (ingest discarded) when the disk is full.
        """
        self._check_open()
        if not chunk:
            return
        if self.offset + len(chunk) > self.expected.size:
            self.abort()
            raise InvalidArgument(
                f"content {self.expected.digest}: more data than the expected "
                f"{self.expected.size} bytes ({self.offset + len(chunk)} at least)")
        await self._catch_up()
        try:
            if len(chunk) <= INLINE_WRITE_MAX:
                self._write_all(chunk)
            else:
                await trio.to_thread.run_sync(self._write_all, chunk)
        except OSError as exc:
            self._fail(exc)
        self._feed(self.offset, chunk)
        self.offset += len(chunk)

    def _write_all(self, chunk: bytes) -> None:
        assert self._fd is not None
        view = memoryview(chunk)
        while view:
            n = os.write(self._fd, view)
            view = view[n:]

    def _fail(self, exc: OSError) -> None:
        """Translate a write/fsync error: a full disk gives the space back."""
        if exc.errno in _NO_SPACE:
            self.abort()
            raise _no_space(self._data, exc) from exc
        self.close()
        raise Unavailable(f"writing {self._data}: {exc.strerror or exc}") from exc

    async def truncate(self) -> None:
        """Start over: drop every byte written so far (``offset`` becomes 0)."""
        self._check_open()
        assert self._fd is not None
        os.ftruncate(self._fd, 0)
        os.lseek(self._fd, 0, os.SEEK_SET)
        self.offset = self._resumed_at = self._hashed = 0
        self._hasher = self.expected.digest.hasher()

    async def commit(self) -> Descriptor:
        """Verify size and digest, make the blob visible; return the expected descriptor.

        On a mismatch the data is discarded and ``InvalidArgument`` raised ("a mismatch stores
        nothing").  If the blob got committed meanwhile by another ingest, this one is dropped.
        """
        self._check_open()
        exp = self.expected
        if self.offset != exp.size:
            self.abort()
            raise InvalidArgument(f"content {exp.digest}: unexpected size {self.offset}, "
                                  f"expected {exp.size}")
        await self._catch_up()
        got = f"{exp.digest.algorithm}:{self._hasher.hexdigest()}"
        if got != str(exp.digest):
            self.abort()
            raise InvalidArgument(f"content {exp.digest}: unexpected digest {got}")
        target = self.store.blob_path(exp.digest)
        try:
            await trio.to_thread.run_sync(self._publish, target)
        except OSError as exc:
            self._fail(exc)
        self.committed = True
        self._release()
        shutil.rmtree(self.directory, ignore_errors=True)
        return exp

    def _publish(self, target: Path) -> None:
        """fsync the data, make it read-only, rename it into place, fsync the directory."""
        assert self._fd is not None
        os.fsync(self._fd)
        os.fchmod(self._fd, 0o444)
        target.parent.mkdir(mode=0o700, exist_ok=True)
        if target.exists():
            return  # committed meanwhile through another ref: keep that one
        os.rename(self._data, target)
        _fsync_dir(target.parent)

    # ------------------------------------------------------------------ ending
    def _release(self) -> None:
        fd, self._fd = self._fd, None
        if fd is not None:
            os.close(fd)
        _ACTIVE.discard(str(self.directory))

    def close(self) -> None:
        """Release the ingest, keeping what was written for a later resume.  Idempotent."""
        self._release()

    def abort(self) -> None:
        """Release the ingest and discard its data.  Idempotent."""
        self._release()
        shutil.rmtree(self.directory, ignore_errors=True)
