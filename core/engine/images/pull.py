"""Pulling an image: resolve, fetch, verify, unpack through a storage driver, record.

The pipeline for one image::

    resolve ref -> manifest or index (verified)    -> index: select the platform's manifest
    fetch config (verified, bounded)               -> diff IDs -> ChainIDs (the snapshot names)
    per layer, in parallel (bounded):
        a snapshot with that ChainID exists        -> "Already exists", nothing downloaded
        else download into the content store (the download slots go to the bottom layers
        first); the layer whose parent is already committed is decompressed and unpacked
        *while it streams in*; the others finish downloading and are unpacked from the content
        store as soon as their parent is committed
        the uncompressed stream's digest must equal the config's diff ID; the layer's size
        (docker's: file contents and symlink targets, see LayerSizer) is counted on the way
    record the image, its tag and repo digest       -> "Digest: ...", "Status: ..."

An image that is already here, its layers unpacked in this storage driver, is not pulled again:
as docker, only "Digest" and "Status: Image is up to date" are said.

A layer being unpacked is read ahead (a task keeps its download going into a bounded buffer)
and decompressed in batches of what has arrived, one trip to a worker thread per batch; the
tar is written by :func:`core.storage.layer.apply_layer`'s own worker thread.

Progress goes out as docker's JSON-lines messages, so the docker CLI draws its usual bars
(download progress as often as docker sends it: every 512 KiB or 1%, ten times a second).
A failure anywhere cancels the rest and leaves no half-made snapshot and no unverified blob.
"""
from __future__ import annotations

import contextlib
import hashlib
import logging
import secrets
import time
from typing import Any, AsyncIterator, Callable

import trio

from core.engine.concurrency import first_error
from core.errors import AlreadyExists, CoreError, InvalidArgument, NotFound
from core.engine.images.store import Image, ImageStore
from core.engine.images.manifest import (
    MAX_CONFIG_BYTES,
    check_media_type,
    chain_ids,
    parse_config,
    parse_index,
    parse_manifest,
    select_platform,
)
from core.reference import Reference
from core.types import Descriptor, Digest, Platform, layer_compression
from core.units import human_size

log = logging.getLogger("core.engine.images.pull")
PARALLEL_DOWNLOADS = 3
DECOMPRESS_PIECE = 1 << 20  # bytes of output per gzip decompress call: bounds memory on hostile input
ZSTD_SLICE = 1024           # compressed bytes per zstd call: a 4-byte zstd block (RLE) expands to at
                            # most 128 KiB, so one call gives at most 32 MiB whatever the input
OUT_PER_TRIP = 16 << 20     # uncompressed bytes handed back per trip to the worker thread
READ_AHEAD_CHUNKS = 64      # chunks of a layer read ahead of its unpacking (HTTP: 64 KiB each)
BATCH_BYTES = 1 << 20       # compressed bytes decompressed per trip to a worker thread, about

Emit = Callable[[dict[str, Any]], None]


def progress_bar(current: int, total: int) -> str:
    """docker's JSONProgress.String(): a 50-column bar and the sizes."""
    if total <= 0:
        return f"{human_size(current):>8}"
    filled = min(50, int(50 * current / total))
    bar = "=" * filled + (">" if filled < 50 else "") + " " * max(0, 50 - filled - 1)
    return f"[{bar}] {human_size(current):>8}/{human_size(total)}"


class _ProgressRate:
    """When to report a download's progress, as docker's progress reader does: after each
    512 KiB or 1% of the size (the smaller), at most ten times a second, and at the end."""

    def __init__(self, total: int) -> None:
        self.total = total
        self.step = min(512 * 1024, total // 100) if total > 0 else 512 * 1024
        self.last = 0
        self.when = -1.0

    def due(self, current: int) -> bool:
        if current >= self.total > 0:
            return True
        if current - self.last <= self.step:
            return False
        self.last = current
        now = time.monotonic()
        if now - self.when < 0.1:
            return False
        self.when = now
        return True


class Progress:
    """Docker's pull progress messages, sent to ``emit`` (which must not block)."""

    def __init__(self, emit: Emit) -> None:
        self.emit = emit

    def status(self, status: str, id: str | None = None, current: int | None = None,
               total: int | None = None) -> None:
        msg: dict[str, Any] = {"status": status}
        if id is not None:
            msg["progressDetail"] = {}
            if current is not None:
                msg["progressDetail"] = {"current": current, **({"total": total} if total else {})}
                msg["progress"] = progress_bar(current, total or 0)
            msg["id"] = id
        self.emit(msg)


class _StreamFailed:
    """What :func:`_read_ahead` sends in place of a chunk when the stream raises."""

    __slots__ = ("error",)

    def __init__(self, error: Exception) -> None:
        self.error = error


async def _read_ahead(stream: AsyncIterator[bytes],
                     send: trio.MemorySendChannel[bytes | _StreamFailed]) -> None:
    """Pull ``stream`` into ``send`` (a bounded channel) as fast as it comes, and close it.

    Run as a task, it keeps a download going while the layer is decompressed and unpacked,
    instead of reading a chunk each time the unpacking asks for one.  An error of the stream is
    sent as the last item, for :func:`_batches` to raise where the stream would have.
    """
    async with send:
        try:
            async for chunk in stream:
                if chunk:
                    await send.send(chunk)
        except Exception as exc:
            await send.send(_StreamFailed(exc))


async def _batches(receive: trio.MemoryReceiveChannel[bytes | _StreamFailed]
                   ) -> AsyncIterator[list[bytes]]:
    """The chunks :func:`_read_ahead` sends, in batches: all that are waiting (at least one, at
    most about :data:`BATCH_BYTES`), so that a slow consumer takes them in few, large steps."""
    async for item in receive:
        batch: list[bytes] = []
        size = 0
        while True:
            if isinstance(item, _StreamFailed):
                if batch:
                    yield batch
                raise item.error
            batch.append(item)
            size += len(item)
            if size >= BATCH_BYTES:
                break
            try:
                item = receive.receive_nowait()
            except (trio.WouldBlock, trio.EndOfChannel):
                break
        yield batch


async def decompress(stream: AsyncIterator[list[bytes]], compression: str | None,
                     hasher: Any = None) -> AsyncIterator[bytes]:
    """Uncompressed bytes of a gzip, zstd or plain layer read in batches of chunks (see
    :func:`_batches`), in bounded pieces.

    Concatenated gzip members and zstd frames are followed, as ``gunzip`` and ``zstd -d`` do.
    Decompression (ISA-L's inflate for gzip: three times zlib's speed) and ``hasher.update`` of
    the output run in a worker thread, one trip there per batch, so the event loop stays free.
    Memory stays bounded on hostile input (a few KiB that expand to gigabytes): each call
    produces a bounded piece, and a trip ends after :data:`OUT_PER_TRIP` bytes of output, the
    rest of the batch waiting for the next.
    """
    if compression is None:
        async for batch in stream:
            if hasher is not None:
                await trio.to_thread.run_sync(_update_all, hasher, batch)
            for chunk in batch:
                yield chunk
        return
    if compression == "gzip":
        from isal import isal_zlib

        def new() -> Any:
            return isal_zlib.decompressobj(wbits=31)
    elif compression == "zstd":
        import zstandard

        def new() -> Any:
            return zstandard.ZstdDecompressor().decompressobj()
    else:
        raise InvalidArgument(f"unsupported layer compression {compression!r}")
    d = new()
    pending = False  # a member or frame has started and not ended

    def feed(batch: list[bytes]) -> tuple[list[bytes], list[bytes]]:
        """Decompress ``batch`` until it is used up or OUT_PER_TRIP bytes came out: the output,
        and what is left of the batch."""
        nonlocal d, pending
        out: list[bytes] = []
        produced = 0
        try:
            for i, data in enumerate(batch):
                while data:
                    if produced >= OUT_PER_TRIP:
                        return out, [data, *batch[i + 1:]]
                    pending = True
                    if compression == "gzip":
                        piece = d.decompress(data, DECOMPRESS_PIECE)
                        data = d.unconsumed_tail
                    else:
                        piece = d.decompress(data[:ZSTD_SLICE])
                        data = data[ZSTD_SLICE:]   # a memoryview: no copy
                    if piece:
                        out.append(piece)
                        produced += len(piece)
                        if hasher is not None:
                            hasher.update(piece)
                    if d.eof:
                        rest = d.unused_data
                        d = new()
                        pending = False
                        data = bytes(rest) + bytes(data)
                    if compression != "gzip" and data and not isinstance(data, memoryview):
                        data = memoryview(data)
        except Exception as exc:  # zlib.error, isal_zlib.error, zstandard.ZstdError
            raise InvalidArgument(f"layer is not valid {compression}: {exc}") from None
        return out, []

    async for batch in stream:
        if compression != "gzip":
            batch = [memoryview(chunk) for chunk in batch]
        while batch:
            out, batch = await trio.to_thread.run_sync(feed, batch)
            for piece in out:
                yield piece
    if pending:
        raise InvalidArgument(f"layer is truncated: the {compression} stream ends in the middle")


def _update_all(hasher: Any, chunks: list[bytes]) -> None:
    for chunk in chunks:
        hasher.update(chunk)


async def _counted(stream: AsyncIterator[bytes], counter: list[int]) -> AsyncIterator[bytes]:
    async for chunk in stream:
        counter[0] += len(chunk)
        yield chunk


class LayerSizer:
    """docker's size of a layer (:func:`core.storage.tarstream.content_size`), counted in a
    worker thread from the uncompressed pieces :meth:`tee` passes on, while they are unpacked.

    Run :meth:`run` in a nursery beside the consumer of :meth:`tee`'s stream; :attr:`size` is
    the answer once both are done (``None`` if the tar could not be read: the unpacking says
    why).  The pieces are handed over, never copied; a sizer that stopped reading does not
    hold the stream up.
    """

    def __init__(self) -> None:
        self._send, self._receive = trio.open_memory_channel[bytes](16)
        self.size: int | None = None

    async def tee(self, stream: AsyncIterator[bytes]) -> AsyncIterator[bytes]:
        try:
            async for piece in stream:
                if self._send is not None:
                    try:
                        await self._send.send(piece)
                    except (trio.BrokenResourceError, trio.ClosedResourceError):
                        self._send = None
                yield piece
        finally:
            self.finish()

    def finish(self) -> None:
        """The stream has ended (or its consumer stopped reading it)."""
        if self._send is not None:
            self._send.close()
            self._send = None

    async def run(self) -> None:
        from core.storage.tarstream import content_size

        def fill() -> bytes:
            try:
                return trio.from_thread.run(self._receive.receive)
            except trio.EndOfChannel:
                return b""

        try:
            self.size = await trio.to_thread.run_sync(content_size, fill, limiter=trio.CapacityLimiter(1))
        except InvalidArgument:
            self.size = None
        finally:
            self._receive.close()


async def exists_committed(snapshotter: Any, name: str) -> bool:
    try:
        info = await snapshotter.stat(name)
    except NotFound:
        return False
    return getattr(info.kind, "value", info.kind) == "committed"


async def unpack_layer(snapshotter: Any, images: ImageStore, parent: str, chain: Digest, diff_id: Digest,
                       stream: AsyncIterator[bytes], compression: str | None, blob: Digest) -> int:
    """Unpack one layer blob stream as the committed snapshot ``chain`` on ``parent``.

    Verifies the uncompressed digest against ``diff_id``.  On any failure the active snapshot is
    removed; if another pull committed the same ChainID first, that one is kept.
    """
    key = f"extract-{secrets.token_hex(6)}-{chain.hex[:12]}"
    await snapshotter.prepare(key, parent=parent)
    hasher = hashlib.sha256()
    count = [0]
    sizer = LayerSizer()
    try:
        send, receive = trio.open_memory_channel[bytes | _StreamFailed](READ_AHEAD_CHUNKS)
        error: Exception | None = None
        async with trio.open_nursery() as nursery:
            nursery.start_soon(_read_ahead, stream, send)
            async with trio.open_nursery() as sizing:
                sizing.start_soon(sizer.run)
                try:
                    await snapshotter.apply_layer(
                        key, sizer.tee(_counted(decompress(_batches(receive), compression, hasher), count)))
                except Exception as exc:  # raised below, out of the nursery (not in a group)
                    error = exc
                    sizing.cancel_scope.cancel()
                sizer.finish()
            nursery.cancel_scope.cancel()  # the download, if the unpacking stopped early
        if error is not None:
            raise error
        got = Digest("sha256", hasher.hexdigest())
        if got != diff_id:
            raise InvalidArgument(f"layer {blob}: its content does not match its diff ID: "
                                  f"expected {diff_id}, got {got}")
        try:
            await snapshotter.commit(str(chain), key)
        except AlreadyExists:
            await snapshotter.remove(key)
    except BaseException as exc:
        with trio.CancelScope(shield=True):
            try:
                await snapshotter.remove(key)
            except CoreError:
                pass
        if isinstance(exc, InvalidArgument) and str(blob) not in exc.message:
            raise InvalidArgument(f"failed to register layer {blob}: {exc.message}") from exc
        raise
    images.record_layer(diff_id, sizer.size if sizer.size is not None else count[0])
    return count[0]


class Puller:
    """One ``docker pull``: everything it needs, and :meth:`resolve` / :meth:`run`."""

    def __init__(self, *, images: ImageStore, content: Any, registry: Any, snapshotter: Any, ref: Reference,
                 platform: Platform | None, auth: Any, emit: Emit) -> None:
        self.images = images
        self.content = content
        self.registry = registry
        self.snapshotter = snapshotter
        self.ref = ref
        self.platform = platform or Platform.host()
        self.auth = auth
        self.progress = Progress(emit)
        self.target: Descriptor | None = None
        self.target_bytes = b""

    async def resolve(self) -> Descriptor:
        """Find the manifest (or index); errors here come before any progress is sent."""
        desc, data = await self.registry.resolve(self.ref, self.auth)
        check_media_type(desc.media_type)
        self.target, self.target_bytes = desc, data
        return desc

    async def _store(self, desc: Descriptor, data: bytes) -> None:
        if not self.content.exists(desc.digest):
            await self.content.write_blob(data, desc)

    async def run(self, final_status: bool = True) -> tuple[Image, bool]:
        """Pull; return the image and whether anything changed.  ``final_status``: say "Status: ...".

        ``pull -a`` pulls each tag with ``final_status=False`` and says one status at the end.
        """
        if self.target is None:
            await self.resolve()
        assert self.target is not None
        ref, target = self.ref, self.target
        # a plain status (no progressDetail): docker's CLI starts a new block of layer lines
        self.progress.emit({"status": f"Pulling from {ref.path}", "id": ref.tag or str(ref.digest)})
        blobs = [target]
        await self._store(target, self.target_bytes)
        manifest_desc, manifest_bytes = target, self.target_bytes
        if check_media_type(target.media_type) == "index":
            index = parse_index(self.target_bytes, target.media_type)
            manifest_desc = select_platform(index, self.platform)
            manifest_bytes = await self.registry.fetch_manifest(ref, manifest_desc, self.auth)
            check_media_type(manifest_desc.media_type)
            blobs.append(manifest_desc)
            await self._store(manifest_desc, manifest_bytes)
        manifest = parse_manifest(manifest_bytes, manifest_desc.media_type)
        if manifest.config.size > MAX_CONFIG_BYTES:
            raise InvalidArgument(f"image config is too large ({manifest.config.size} bytes)")
        if self.content.exists(manifest.config.digest):
            config_bytes = self.content.read_bytes(manifest.config.digest, MAX_CONFIG_BYTES)
        else:
            async with contextlib.aclosing(self.registry.fetch_blob(ref, manifest.config, self.auth)) as stream:
                config_bytes = b"".join([c async for c in stream])
        config = parse_config(config_bytes)
        if len(config.diff_ids) != len(manifest.layers):
            raise InvalidArgument(f"image config has {len(config.diff_ids)} diff IDs for "
                                  f"{len(manifest.layers)} layers")
        blobs.append(manifest.config)
        blobs.extend(manifest.layers)
        if not await self._have(str(manifest.config.digest), config.diff_ids):
            await self._layers(manifest.layers, config.diff_ids)
        image_id = str(manifest.config.digest)
        tag = ref if ref.tag and ref.digest is None else None
        digest_ref = Reference(ref.domain, ref.path, None, target.digest)
        image, changed = self.images.add(image_id, config_bytes, str(manifest_desc.digest),
                                         [str(b.digest) for b in blobs], tag, digest_ref)
        self.progress.status(f"Digest: {target.digest}")
        if final_status:
            self.status(ref.familiar(), changed)
        return image, changed

    async def _have(self, image_id: str, diff_ids: tuple[Digest, ...]) -> bool:
        """Whether the image is here, its layers unpacked in this storage driver: then, as
        docker, nothing is said about its layers."""
        if self.images.by_id(image_id) is None:
            return False
        for chain in chain_ids(diff_ids):
            if not await exists_committed(self.snapshotter, str(chain)):
                return False
        return True

    def status(self, shown: str, changed: bool) -> None:
        if changed:
            self.progress.status(f"Status: Downloaded newer image for {shown}")
        else:
            self.progress.status(f"Status: Image is up to date for {shown}")

    async def _layers(self, layers: tuple[Descriptor, ...], diff_ids: tuple[Digest, ...]) -> None:
        chains = chain_ids(diff_ids)
        committed = [trio.Event() for _ in layers]
        limiter = trio.CapacityLimiter(PARALLEL_DOWNLOADS)
        ids = [layer.digest.hex[:12] for layer in layers]
        present = [await exists_committed(self.snapshotter, str(c)) for c in chains]
        for i, layer_id in enumerate(ids):
            if present[i]:
                self.progress.status("Already exists", id=layer_id)
            else:
                self.progress.status("Pulling fs layer", id=layer_id)

        async def one(i: int, task_status: Any = trio.TASK_STATUS_IGNORED) -> None:
            layer, layer_id = layers[i], ids[i]
            parent = str(chains[i - 1]) if i else ""
            compression = layer_compression(layer.media_type)
            total = layer.size
            report = _ProgressRate(total)

            def downloading(n: int) -> None:
                if report.due(n):
                    self.progress.status("Downloading", id=layer_id, current=n, total=total)

            async with limiter:
                task_status.started()
                if not self.content.exists(layer.digest):
                    stream = self.registry.fetch_blob(self.ref, layer, self.auth, progress=downloading)
                    async with contextlib.aclosing(stream):
                        if i == 0 or committed[i - 1].is_set():
                            # its parent is in place: unpack while it downloads
                            await unpack_layer(self.snapshotter, self.images, parent, chains[i], diff_ids[i],
                                               stream, compression, layer.digest)
                            self.progress.status("Download complete", id=layer_id)
                            self.progress.status("Pull complete", id=layer_id)
                            committed[i].set()
                            return
                        async for _ in stream:
                            pass
                    self.progress.status("Verifying Checksum", id=layer_id)
                    self.progress.status("Download complete", id=layer_id)
            if i:
                await committed[i - 1].wait()
            self.progress.status("Extracting", id=layer_id, current=0, total=total)
            await unpack_layer(self.snapshotter, self.images, parent, chains[i], diff_ids[i],
                               self.content.open(layer.digest), compression, layer.digest)
            self.progress.status("Pull complete", id=layer_id)
            committed[i].set()

        try:
            async with trio.open_nursery() as nursery:
                for i in range(len(layers)):
                    if present[i]:
                        committed[i].set()
                    else:
                        # started in order: layer i has its download slot before layer i + 1
                        # asks for one, so the bottom layers (unpacked first) come first
                        await nursery.start(one, i)
        except BaseExceptionGroup as group:
            raise first_error(group) from None


async def ensure_unpacked(image: Image, images: ImageStore, content: Any, snapshotter: Any) -> str:
    """Unpack ``image``'s layers into ``snapshotter`` from the content store where missing.

    Layers are unpacked per storage driver, blobs shared: an image pulled with one driver runs
    with another.  Returns the top ChainID (the parent for a container's snapshot).
    """
    from core.engine.images.manifest import parse_manifest as _pm

    manifest_bytes = content.read_bytes(Digest.parse(image.target), 4 * 1024 * 1024)
    # the target's media type is in the manifest itself
    import json

    media_type = json.loads(manifest_bytes).get("mediaType") or "application/vnd.oci.image.manifest.v1+json"
    manifest = _pm(manifest_bytes, media_type)
    chains = chain_ids(image.config.diff_ids)
    for i, layer in enumerate(manifest.layers):
        if await exists_committed(snapshotter, str(chains[i])):
            continue
        if not content.exists(layer.digest):
            raise NotFound(f"layer {layer.digest} of image {image.short_id} is missing from the content store; "
                           "pull the image again")
        await unpack_layer(snapshotter, images, str(chains[i - 1]) if i else "", chains[i], image.config.diff_ids[i],
                           content.open(layer.digest), layer_compression(layer.media_type), layer.digest)
    return str(chains[-1]) if chains else ""
