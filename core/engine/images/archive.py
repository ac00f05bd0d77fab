"""docker's image archive: ``docker save`` writes one, ``docker load`` reads one.

Written (docker 20.10's format, which every docker, skopeo's ``docker-archive:`` and podman
read)::

    <layer>/VERSION, <layer>/json      one directory per layer (named by the layer's ChainID),
    <layer>/layer.tar                  the layer uncompressed (its digest is its diff ID)
    <config hex>.json                  each image's config, byte for byte (its digest is its ID)
    manifest.json                      [{"Config": "<hex>.json", "RepoTags": [...],
                                         "Layers": ["<layer>/layer.tar", ...]}]
    repositories                       {"repo": {"tag": "<top layer>"}} (for old readers)

``RepoTags`` are the references named (``save busybox`` takes every tag of the repository,
``save busybox:1`` that one, ``save <id>`` none), as docker has it.

Read: ``manifest.json`` and the files it names, wherever they are in the archive -- docker's
own layout, newer docker's (OCI ``blobs/sha256/...``), skopeo's (``<digest>.tar``, with
symlinks between entries); layers plain, gzip or zstd.  The archive is untrusted, like a
registry's layer:

- the upload is spooled to an unlinked file under the content store, then indexed once with the
  strict tar reader (:mod:`core.storage.tarstream`); nothing of it is extracted as such: it is
  only a set of named byte ranges.  Symlinks and hard links between entries are followed inside
  the archive only (at most :data:`MAX_LINK_HOPS`), names with ``..`` that leave it name nothing;
- ``manifest.json`` (4 MiB) and configs (8 MiB) are read bounded and parsed as pulled ones are
  (:mod:`core.engine.images.manifest`); at most :data:`MAX_MEMBERS` entries and
  :data:`MAX_IMAGES` images;
- every layer must hash to its config's diff ID (the content store verifies it on commit, the
  unpacking again) and is unpacked by the storage driver's safe applier; a failure leaves no
  image recorded and no unverified blob.
"""
from __future__ import annotations

import contextlib
import hashlib
import json
import posixpath
import tarfile
import tempfile
from typing import IO, Any, AsyncIterator, Callable

import attrs
import trio

from core.engine.images.manifest import (
    MAX_CONFIG_BYTES,
    MAX_MANIFEST_BYTES,
    Manifest,
    chain_ids,
    parse_config,
    parse_manifest,
    sniff_media_type,
)
from core.engine.images.pull import decompress, exists_committed, unpack_layer
from core.engine.images.store import Image, ImageStore, unix_time
from core.errors import AlreadyExists, CoreError, InvalidArgument, NotFound
from core.reference import Reference, parse_reference
from core.types import (
    MEDIA_TYPE_DOCKER_CONFIG,
    MEDIA_TYPE_DOCKER_LAYER_TAR,
    MEDIA_TYPE_DOCKER_MANIFEST,
    Descriptor,
    Digest,
    layer_compression,
)

MAX_MEMBERS = 100_000
MAX_IMAGES = 1000
MAX_LINK_HOPS = 16
CHUNK = 1 << 20
Emit = Callable[[str], None]


def spool_file(directory: Any) -> IO[bytes]:
    """An unlinked scratch file on the content store's filesystem (gone when closed, or if the
    daemon dies)."""
    return tempfile.TemporaryFile(dir=directory)


# -------------------------------------------------------------------------------------- reading
def manifest_of(image: Image, content: Any) -> Manifest:
    """The manifest ``image`` was pulled (or made) with, from the content store."""
    digest = Digest.parse(image.target)
    if not content.exists(digest):
        raise NotFound(f"the manifest of image {image.short_id} is not in the content store; pull it again")
    data = content.read_bytes(digest, MAX_MANIFEST_BYTES)
    return parse_manifest(data, sniff_media_type(data, None))


def _header(name: str, size: int = 0, *, kind: bytes = tarfile.REGTYPE, mode: int = 0o644, mtime: int = 0) -> bytes:
    info = tarfile.TarInfo(name)
    info.size, info.type, info.mode, info.mtime = size, kind, mode, mtime
    return info.tobuf(tarfile.PAX_FORMAT)


def _pad(size: int) -> bytes:
    return b"\0" * (-size % 512)


async def _file_chunks(f: IO[bytes], offset: int, size: int) -> AsyncIterator[bytes]:
    """``size`` bytes of ``f`` from ``offset``, read in a worker thread."""

    def read(at: int, n: int) -> bytes:
        f.seek(at)
        return f.read(n)

    done = 0
    while done < size:
        chunk = await trio.to_thread.run_sync(read, offset + done, min(CHUNK, size - done))
        if not chunk:
            raise InvalidArgument("the archive ends inside a file")
        done += len(chunk)
        yield chunk


async def _batched(stream: AsyncIterator[bytes]) -> AsyncIterator[list[bytes]]:
    async with contextlib.aclosing(stream):  # type: ignore[type-var]
        async for chunk in stream:
            yield [chunk]


async def _uncompressed_copy(stream: AsyncIterator[bytes], compression: str | None, diff_id: Digest,
                             scratch: Any) -> IO[bytes]:
    """The layer ``stream`` uncompressed into a scratch file (positioned at 0), checked
    against ``diff_id``."""
    f = spool_file(scratch)
    try:
        hasher = hashlib.sha256()
        async for piece in decompress(_batched(stream), compression, hasher):
            await trio.to_thread.run_sync(f.write, piece)
        if hasher.hexdigest() != diff_id.hex:
            raise InvalidArgument(f"layer {diff_id}: its content does not match its diff ID "
                                  f"(got sha256:{hasher.hexdigest()})")
        f.flush()
        f.seek(0)
        return f
    except BaseException:
        f.close()
        raise


# -------------------------------------------------------------------------------------- save
@attrs.frozen
class SaveItem:
    """One image to save and the references recorded for it in ``manifest.json``."""

    image: Image
    refs: tuple[Reference, ...] = ()


async def write_archive(items: list[SaveItem], content: Any) -> AsyncIterator[bytes]:
    """The tar of ``items`` in docker's format (see the module docstring), as it is made.

    A layer kept compressed in the content store is uncompressed into a scratch file first (a
    tar entry needs its size up front).  Each layer and config is written once.
    """
    written: set[str] = set()
    entries: list[dict[str, Any]] = []
    repositories: dict[str, dict[str, str]] = {}
    for item in items:
        image = item.image
        mtime = unix_time(image.config.created)
        manifest = manifest_of(image, content)
        diff_ids = image.config.diff_ids
        if len(manifest.layers) != len(diff_ids):
            raise CoreError(f"image {image.short_id}: its manifest and config disagree on its layers")
        chains = chain_ids(diff_ids)
        layer_files = []
        for i, (layer, chain, diff_id) in enumerate(zip(manifest.layers, chains, diff_ids)):
            directory = chain.hex
            layer_files.append(f"{directory}/layer.tar")
            if directory in written:
                continue
            written.add(directory)
            yield _header(f"{directory}/", kind=tarfile.DIRTYPE, mode=0o755, mtime=mtime)
            yield _header(f"{directory}/VERSION", 3, mtime=mtime) + b"1.0" + _pad(3)
            v1 = {"id": directory, **({"parent": chains[i - 1].hex} if i else {}),
                  "created": image.config.created or "1970-01-01T00:00:00Z",
                  "container_config": {"Cmd": None}, "os": image.config.platform.os}
            data = json.dumps(v1).encode()
            yield _header(f"{directory}/json", len(data), mtime=mtime) + data + _pad(len(data))
            if not content.exists(layer.digest):
                raise NotFound(f"layer {layer.digest} of image {image.short_id} is not in the content store")
            compression = layer_compression(layer.media_type)
            if compression is None:
                size = content.size(layer.digest)
                yield _header(f"{directory}/layer.tar", size, mtime=mtime)
                async with contextlib.aclosing(content.open(layer.digest)) as stream:
                    async for chunk in stream:
                        yield chunk
            else:
                f = await _uncompressed_copy(content.open(layer.digest), compression, diff_id, content.root)
                try:
                    size = await trio.to_thread.run_sync(lambda: f.seek(0, 2))
                    yield _header(f"{directory}/layer.tar", size, mtime=mtime)
                    async for chunk in _file_chunks(f, 0, size):
                        yield chunk
                finally:
                    f.close()
            yield _pad(size)
        config_name = f"{image.id.split(':', 1)[1]}.json"
        if config_name not in written:
            written.add(config_name)
            data = image.config_bytes
            yield _header(config_name, len(data), mtime=mtime) + data + _pad(len(data))
        tags = [r.familiar() for r in item.refs]
        entries.append({"Config": config_name, "RepoTags": tags or None, "Layers": layer_files})
        for ref in item.refs:
            if chains:
                repositories.setdefault(ref.familiar_name, {})[ref.tag or "latest"] = chains[-1].hex
    data = json.dumps(entries).encode()
    yield _header("manifest.json", len(data)) + data + _pad(len(data))
    if repositories:
        data = json.dumps(repositories).encode()
        yield _header("repositories", len(data)) + data + _pad(len(data))
    yield b"\0" * 1024


# -------------------------------------------------------------------------------------- load
@attrs.frozen
class _Member:
    kind: str            # "file", "symlink", "link"
    offset: int = 0
    size: int = 0
    target: str = ""


def _clean(name: str) -> str | None:
    """An archive path as a lookup key (``./a//b/`` is ``a/b``); None for one outside it."""
    name = posixpath.normpath("/" + name.replace("\\", "/")).lstrip("/")
    return name or None


def index_archive(f: IO[bytes]) -> dict[str, _Member]:
    """The regular files of the tar in ``f`` (where their data lies) and its links. Blocking."""
    from core.storage.tarstream import HARDLINK, REGULAR, SYMLINK, TarReader

    f.seek(0)
    reader = TarReader(lambda: f.read(CHUNK))
    members: dict[str, _Member] = {}
    count = 0
    try:
        while (entry := reader.next()) is not None:
            count += 1
            if count > MAX_MEMBERS:
                raise InvalidArgument(f"invalid image archive: more than {MAX_MEMBERS} entries")
            name = _clean(entry.name)
            if name is None:
                continue
            if entry.type == REGULAR and entry.sparse is None:
                members[name] = _Member("file", reader.offset, entry.size)
            elif entry.type == SYMLINK:
                link = entry.linkname
                target = _clean(link if link.startswith("/") else posixpath.join(posixpath.dirname(name), link))
                members[name] = _Member("symlink", target=target or "")
            elif entry.type == HARDLINK:
                members[name] = _Member("link", target=_clean(entry.linkname) or "")
            else:
                members.pop(name, None)
    except InvalidArgument as exc:
        raise InvalidArgument(exc.message.replace("invalid layer tar", "invalid image archive")) from None
    return members


def _resolve(members: dict[str, _Member], name: Any) -> _Member:
    if not isinstance(name, str) or not name:
        raise InvalidArgument("invalid image archive: manifest.json names a file with no name")
    key = _clean(name)
    for _ in range(MAX_LINK_HOPS):
        member = members.get(key or "")
        if member is None:
            if key != _clean(name):
                raise InvalidArgument(f"invalid image archive: {name!r} is a link to {key or '/'!r}, "
                                      "which is not in it")
            raise InvalidArgument(f"invalid image archive: {name!r} is not in it")
        if member.kind == "file":
            return member
        key = member.target
    raise InvalidArgument(f"invalid image archive: too many links to follow for {name!r}")


def _read_member(f: IO[bytes], member: _Member, limit: int, what: str) -> bytes:
    if member.size > limit:
        raise InvalidArgument(f"invalid image archive: {what} is too large ({member.size} bytes, at most {limit})")
    f.seek(member.offset)
    data = f.read(member.size)
    if len(data) != member.size:
        raise InvalidArgument(f"invalid image archive: it ends inside {what}")
    return data


def _manifest_entries(raw: bytes) -> list[dict[str, Any]]:
    try:
        entries = json.loads(raw)
    except (ValueError, UnicodeDecodeError) as exc:
        raise InvalidArgument(f"invalid image archive: manifest.json is not valid JSON: {exc}") from None
    if not isinstance(entries, list) or not all(isinstance(e, dict) for e in entries):
        raise InvalidArgument("invalid image archive: manifest.json must be a list of objects")
    if len(entries) > MAX_IMAGES:
        raise InvalidArgument(f"invalid image archive: more than {MAX_IMAGES} images")
    for e in entries:
        if not isinstance(e.get("Config"), str):
            raise InvalidArgument("invalid image archive: an image of manifest.json has no Config")
        if not isinstance(e.get("Layers"), list):
            raise InvalidArgument("invalid image archive: an image of manifest.json has no Layers list")
        tags = e.get("RepoTags")
        if tags is not None and (not isinstance(tags, list) or not all(isinstance(t, str) for t in tags)):
            raise InvalidArgument("invalid image archive: RepoTags must be a list of strings")
    return entries


_GZIP_MAGIC = b"\x1f\x8b"
_ZSTD_MAGIC = b"\x28\xb5\x2f\xfd"


class Loader:
    """One ``docker load``: the spooled archive ``f`` into the store, unpacked in ``snapshotter``.

    ``emit`` gets docker's ``stream`` lines (``Loaded image: busybox:latest``)."""

    def __init__(self, *, f: IO[bytes], store: ImageStore, content: Any, snapshotter: Any, emit: Emit) -> None:
        self.f = f
        self.store = store
        self.content = content
        self.snapshotter = snapshotter
        self.emit = emit
        self.loaded: list[tuple[Image, list[Reference]]] = []

    async def run(self) -> list[tuple[Image, list[Reference]]]:
        members = await trio.to_thread.run_sync(index_archive, self.f)
        if "manifest.json" not in members:
            raise InvalidArgument("invalid image archive: it has no manifest.json (is it the output of docker save?)")
        raw = await trio.to_thread.run_sync(_read_member, self.f, _resolve(members, "manifest.json"),
                                            MAX_MANIFEST_BYTES, "manifest.json")
        entries = _manifest_entries(raw)
        # every reference is checked before anything is stored
        planned = []
        for e in entries:
            refs = []
            for tag in e.get("RepoTags") or []:
                ref = parse_reference(tag)
                if ref.digest is not None:
                    raise InvalidArgument(f"invalid image archive: RepoTags holds a digest reference {tag!r}")
                refs.append(ref)
            config_bytes = await trio.to_thread.run_sync(_read_member, self.f, _resolve(members, e["Config"]),
                                                         MAX_CONFIG_BYTES, e["Config"])
            config = parse_config(config_bytes)
            if len(config.diff_ids) != len(e["Layers"]):
                raise InvalidArgument(f"invalid image archive: {e['Config']} has {len(config.diff_ids)} diff IDs "
                                      f"for {len(e['Layers'])} layers")
            layers = [_resolve(members, name) for name in e["Layers"]]
            planned.append((config_bytes, config, layers, refs))
        for config_bytes, config, layers, refs in planned:
            image = await self._image(config_bytes, config.diff_ids, layers)
            for ref in refs:
                try:
                    old = self.store.lookup(str(ref))
                except NotFound:
                    old = None
                if old is not None and old.id != image.id:
                    self.emit(f"The image {ref.familiar()} already exists, renaming the old one with ID "
                              f"{old.id} to empty string\n")
                self.store.tag(image, ref)
                self.emit(f"Loaded image: {ref.familiar()}\n")
            if not refs:
                self.emit(f"Loaded image ID: {image.id}\n")
            self.loaded.append((image, refs))
        return self.loaded

    async def _image(self, config_bytes: bytes, diff_ids: tuple[Digest, ...], layers: list[_Member]) -> Image:
        image_id = "sha256:" + hashlib.sha256(config_bytes).hexdigest()
        chains = chain_ids(diff_ids)
        existing = self.store.by_id(image_id)
        if existing is not None and all([await exists_committed(self.snapshotter, str(c)) for c in chains]):
            return existing
        new_blobs: list[str] = []
        new_chains: list[str] = []
        try:
            descriptors = []
            for member, diff_id in zip(layers, diff_ids):
                if not self.content.exists(diff_id):
                    new_blobs.append(str(diff_id))
                descriptors.append(await self._layer_blob(member, diff_id))
            for i, (chain, diff_id) in enumerate(zip(chains, diff_ids)):
                if await exists_committed(self.snapshotter, str(chain)):
                    if self.store.layer_size(diff_id) is None:
                        self.store.record_layer(diff_id, 0)
                    continue
                await unpack_layer(self.snapshotter, self.store, str(chains[i - 1]) if i else "", chain, diff_id,
                                   self.content.open(diff_id), None, diff_id)
                new_chains.append(str(chain))
        except BaseException:
            with trio.CancelScope(shield=True):
                await self._undo(new_blobs, new_chains)
            raise
        config_desc = Descriptor(MEDIA_TYPE_DOCKER_CONFIG, image_id, len(config_bytes))
        await self.content.write_blob(config_bytes, config_desc)
        manifest = json.dumps({
            "schemaVersion": 2, "mediaType": MEDIA_TYPE_DOCKER_MANIFEST, "config": config_desc.to_json(),
            "layers": [d.to_json() for d in descriptors],
        }, separators=(",", ":")).encode()
        manifest_desc = Descriptor(MEDIA_TYPE_DOCKER_MANIFEST, "sha256:" + hashlib.sha256(manifest).hexdigest(),
                                   len(manifest))
        await self.content.write_blob(manifest, manifest_desc)
        blobs = [str(manifest_desc.digest), image_id, *(str(d.digest) for d in descriptors)]
        image, _changed = self.store.add(image_id, config_bytes, str(manifest_desc.digest), blobs, None, None)
        return image

    async def _undo(self, blobs: list[str], chains: list[str]) -> None:
        """An image that failed to load leaves nothing behind that no other image uses."""
        in_use = self.store.chains_in_use()
        for chain in reversed(chains):
            if chain not in in_use:
                try:
                    await self.snapshotter.remove(chain)
                except CoreError:
                    break
        for digest in self.store.unused_blobs(blobs):
            try:
                self.content.delete(digest)
            except NotFound:
                pass

    async def _layer_blob(self, member: _Member, diff_id: Digest) -> Descriptor:
        """The layer in the content store, uncompressed (its digest is ``diff_id``)."""
        if self.content.exists(diff_id):
            return Descriptor(MEDIA_TYPE_DOCKER_LAYER_TAR, diff_id, self.content.size(diff_id))

        def head() -> bytes:
            self.f.seek(member.offset)
            return self.f.read(min(4, member.size))

        magic = await trio.to_thread.run_sync(head)
        compression = "gzip" if magic.startswith(_GZIP_MAGIC) else "zstd" if magic.startswith(_ZSTD_MAGIC) else None
        if compression is None:
            await self._ingest(_file_chunks(self.f, member.offset, member.size), diff_id, member.size)
            return Descriptor(MEDIA_TYPE_DOCKER_LAYER_TAR, diff_id, member.size)
        plain = await _uncompressed_copy(_file_chunks(self.f, member.offset, member.size), compression, diff_id,
                                         self.content.root)
        try:
            size = await trio.to_thread.run_sync(lambda: plain.seek(0, 2))
            await self._ingest(_file_chunks(plain, 0, size), diff_id, size)
        finally:
            plain.close()
        return Descriptor(MEDIA_TYPE_DOCKER_LAYER_TAR, diff_id, size)

    async def _ingest(self, stream: AsyncIterator[bytes], diff_id: Digest, size: int) -> None:
        expected = Descriptor(MEDIA_TYPE_DOCKER_LAYER_TAR, diff_id, size)
        try:
            w = self.content.ingest(f"load-{diff_id}", expected)
        except AlreadyExists:
            return
        with w:
            try:
                await w.truncate()
                async for chunk in stream:
                    await w.write(chunk)
                await w.commit()
            except BaseException as exc:
                w.abort()  # an upload is not resumed: nothing of it is kept
                if isinstance(exc, InvalidArgument):
                    raise InvalidArgument(f"invalid image archive: layer {diff_id}: {exc.message}") from None
                raise
