"""The content store as drivers see it: blobs by digest, written through verified ingests.

The kernel owns one content store per daemon (``<data-root>/content``; the implementation is
:class:`core.engine.images.content.ContentStore`) and hands it to the drivers that need it —
registry drivers — as ``context.content`` (:class:`core.contracts.DriverContext`).  A driver
codes against these Protocols only, never against the implementation.  They are containerd's
small roles (``core/content/content.go``):

- :class:`ContentProvider` reads committed blobs;
- :class:`ContentIngester` writes new blobs through an :class:`Ingest`;
- :class:`ContentStore` is both, and is what a driver receives.

(Deleting, listing and expiring blobs — containerd's *manager* role — is the engine's business:
no driver needs it.)

The rules every implementation keeps:

- **Nothing unverified is visible.**  An ingest's bytes become a blob only at
  :meth:`Ingest.commit`, which checks their size and digest against the expected descriptor; a
  mismatch stores nothing and raises ``InvalidArgument``.  Until then :meth:`~ContentProvider.exists`
  is false.
- **Ingests resume.**  Leaving an ingest without committing (an error, a cancellation, a
  dropped connection) keeps what was written; opening the same ``ref`` again continues at
  :attr:`Ingest.offset`, first replaying the bytes on disk through :meth:`Ingest.prefix` so the
  caller can hash or forward them.
- **One writer per ref.**  :meth:`~ContentIngester.ingest` raises ``Conflict`` while another
  writer holds ``ref`` (wait and look again: the other writer may commit the blob), and
  ``AlreadyExists`` once the blob is committed.
- **Sizes are never trusted.**  A write past the expected size fails at once.

A registry driver's download, in short::

    while True:
        if store.exists(desc.digest):
            async with contextlib.aclosing(store.open(desc.digest)) as chunks: ...   # done
        try:
            ingest = store.ingest(f"blob-{desc.digest}", desc)
            break
        except Conflict:
            await trio.sleep(0.05)                   # someone else is downloading it
    with ingest:                                     # leaving without commit keeps the bytes
        async with contextlib.aclosing(ingest.prefix()) as old: ...   # resumed bytes first
        await ingest.write(chunk)                    # ... for every chunk from the network
        await ingest.commit()                        # verify, then publish

Errors are those of ``core.errors``: ``NotFound``, ``AlreadyExists``, ``Conflict``,
``InvalidArgument``, and ``Unavailable`` when the disk is full (the ingest is then discarded).
"""
from __future__ import annotations

from collections.abc import AsyncIterator
from typing import TYPE_CHECKING, Any, Protocol, runtime_checkable

if TYPE_CHECKING:
    from core.types import Descriptor, Digest

__all__ = ["ContentIngester", "ContentProvider", "ContentStore", "Ingest"]


@runtime_checkable
class ContentProvider(Protocol):
    """Reads committed blobs.  ``digest`` is a :class:`core.types.Digest` or its string form;
    a malformed one raises ``InvalidArgument``."""

    def exists(self, digest: Digest | str) -> bool:
        """Whether the blob ``digest`` is committed."""

    def size(self, digest: Digest | str) -> int:
        """The size in bytes of the committed blob ``digest``.  ``NotFound`` if absent."""

    def read_bytes(self, digest: Digest | str, max_size: int) -> bytes:
        """The whole blob ``digest``, for small blobs (manifests, configs).  ``NotFound`` if
        absent, ``InvalidArgument`` if it is larger than ``max_size`` bytes."""

    def open(self, digest: Digest | str, *, offset: int = 0) -> AsyncIterator[bytes]:
        """An async generator of the blob's bytes from ``offset``, in chunks.  Close it
        (``contextlib.aclosing``) when stopping early.  ``NotFound`` (at the first iteration)
        if the blob is absent."""


@runtime_checkable
class Ingest(Protocol):
    """One blob being written.  A context manager: leaving the ``with`` block releases the ref
    for another writer and keeps the bytes written (unless committed or discarded)."""

    #: the ingest's name, as given to :meth:`ContentIngester.ingest`
    ref: str
    #: the descriptor the bytes must match (digest and size)
    expected: Descriptor
    #: how many bytes are written so far (on resume: the length found on disk)
    offset: int

    def __enter__(self) -> Ingest: ...

    def __exit__(self, *exc: Any) -> None: ...

    def prefix(self) -> AsyncIterator[bytes]:
        """Yield the bytes that were on disk when the ingest was opened (empty for a fresh
        one), in order, so that a resumed download can replay them to its consumer."""

    async def write(self, chunk: bytes) -> None:
        """Append ``chunk``.  ``InvalidArgument`` (nothing more is accepted) if the bytes would
        exceed the expected size; ``Unavailable`` (ingest discarded) when the disk is full."""

    async def truncate(self) -> None:
        """Start over: drop every byte written so far (``offset`` becomes 0)."""

    async def commit(self) -> Descriptor:
        """Verify size and digest against ``expected`` and publish the blob; return its
        descriptor.  On a mismatch nothing is stored (the bytes are discarded) and
        ``InvalidArgument`` is raised."""


@runtime_checkable
class ContentIngester(Protocol):
    """Writes new blobs."""

    def ingest(self, ref: str, expected: Descriptor) -> Ingest:
        """Open (or resume) the ingest ``ref`` for the blob ``expected`` describes.

        ``ref`` names the download (registry drivers use ``"blob-<digest>"``); a partial ingest
        recorded for another digest or size is started over.  Raises ``AlreadyExists`` if the
        blob is committed, ``Conflict`` if another writer holds ``ref``, ``InvalidArgument`` for
        an empty ref, ``Unavailable`` when the disk is full.
        """

    async def write_blob(self, data: bytes, expected: Descriptor) -> None:
        """Store the small blob ``data`` as ``expected`` describes it (nothing if it exists).
        ``InvalidArgument`` if ``data`` does not match ``expected``."""


@runtime_checkable
class ContentStore(ContentProvider, ContentIngester, Protocol):
    """What a registry driver receives as ``context.content``: a provider and an ingester."""
