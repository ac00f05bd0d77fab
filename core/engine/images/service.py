"""The image service: what ``docker image …`` asks of the engine, in one place.

:class:`Images` takes its collaborators in its constructor — the image store (records), the
content store (blobs), the daemon's drivers (storage and registry drivers by name) and the event
stream — and runs as a trio task (:meth:`Images.serve`) whose nursery carries the pulls and
pushes that outlive the request that started them.  The API layer (``core.api.images``) parses
a request, calls one method and renders the result; the rules live here:

* listing and prune filters (docker's ``dangling``, ``reference``, ``label``, ``until``);
* removal as ``docker rmi`` does it, then garbage collection (:meth:`Images.collect`): the
  snapshots and blobs of a removed image that no other image uses go;
* pull and push run in the background and report docker's JSON progress messages through a
  :class:`Progress` stream; errors finding the image are raised before any progress is sent;
* ``save``/``load`` of docker's image archive (:mod:`core.engine.images.archive`), ``commit`` of
  a container's changes (:mod:`core.engine.images.commit`, the container read through the
  :class:`core.engine.interfaces.CommitSources` it is given), and the images' part of
  ``system df`` (:meth:`Images.disk_usage`).
"""
from __future__ import annotations

import contextlib
import logging
import re
from typing import Any, AsyncIterator, Awaitable, Callable, Protocol

import trio

from core import plugins
from core.engine.images.archive import Loader, SaveItem, manifest_of, spool_file, write_archive
from core.engine.images.content import ContentStore
from core.engine.images.manifest import check_media_type, is_attestation, parse_config, parse_index, parse_manifest
from core.engine.images.pull import LayerSizer, Puller, decompress
from core.engine.images.push import push_image
from core.engine.images.store import Image, ImageStore, unix_time
from core.engine.images.commit import commit_container
from core.engine.interfaces import CommitSources, EventSink
from core.errors import Conflict, CoreError, InvalidArgument, NotFound, Unavailable
from core.reference import Reference, parse_reference
from core.types import Platform, layer_compression

log = logging.getLogger("core.engine.images")
PROGRESS_BUFFER = 1024
IMAGE_FILTERS = frozenset({"dangling", "reference", "label", "before", "since", "until"})
Message = dict[str, Any]


SIZES_META = "image_layer_sizes"  # "content": the layers' sizes are docker's (file contents), not tar lengths


async def _one_chunk_batches(stream: AsyncIterator[bytes]) -> AsyncIterator[list[bytes]]:
    async with contextlib.aclosing(stream):  # type: ignore[type-var]
        async for chunk in stream:
            yield [chunk]


class DriverLookup(Protocol):
    """What the image service needs of the daemon's drivers."""

    def get(self, kind: str, name: str | None = None) -> Any:
        """The driver object of ``kind`` named ``name`` (the default one if ``None``)."""


class Progress:
    """docker's JSON progress messages of a background operation, as an async iterator.

    The producer calls :meth:`emit` (it never blocks: a slow reader misses some progress
    updates, never a status line; a reader that reads nothing loses the rest); the stream ends
    when the operation does.  The reader calls :meth:`close` when it stops reading.  An error ends it with docker's in-stream ``{"error": ...}``.
    """

    def __init__(self) -> None:
        self._send, self._receive = trio.open_memory_channel[Message](PROGRESS_BUFFER)
        self._closed = False

    def emit(self, message: Message) -> None:
        if self._closed:
            return
        try:
            self._send.send_nowait(message)
        except trio.WouldBlock:
            if "progressDetail" in message and message.get("progressDetail"):
                return
            self._closed = True
        except (trio.BrokenResourceError, trio.ClosedResourceError):
            self._closed = True

    def error(self, exc: CoreError) -> None:
        self.emit({"errorDetail": {"message": exc.message}, "error": exc.message})

    def __aiter__(self) -> Progress:
        return self

    async def __anext__(self) -> Message:
        try:
            return await self._receive.receive()
        except (trio.EndOfChannel, trio.ClosedResourceError):
            raise StopAsyncIteration from None

    def close(self) -> None:
        """The reader is gone: the operation goes on, its messages go nowhere."""
        self._receive.close()

    def start(self, nursery: trio.Nursery, work: Callable[[], Awaitable[None]], what: str) -> Progress:
        """Run ``work`` in ``nursery``; its errors become the stream's last message."""

        async def run() -> None:
            try:
                await work()
            except CoreError as exc:
                self.error(exc)
            except Exception as exc:  # a bug: tell the client, log the traceback
                log.exception("%s failed", what)
                self.error(CoreError(f"internal error: {type(exc).__name__}: {exc}"))
            finally:
                self._send.close()

        nursery.start_soon(run)
        return self


class Images:
    """The image service (see the module docstring)."""

    def __init__(self, *, store: ImageStore, content: ContentStore, drivers: DriverLookup,
                 events: EventSink) -> None:
        self.store = store
        self.content = content
        self.drivers = drivers
        self.events = events
        self._nursery: trio.Nursery | None = None

    async def serve(self, *, task_status: Any = trio.TASK_STATUS_IGNORED) -> None:
        """Carry background pulls and pushes until cancelled (which cancels them).  Once per
        state database, the layer sizes an older core recorded (tar lengths) are recounted."""
        async with trio.open_nursery() as nursery:
            self._nursery = nursery
            nursery.start_soon(self._recount_layer_sizes)
            task_status.started()
            try:
                await trio.sleep_forever()
            finally:
                self._nursery = None

    async def _recount_layer_sizes(self) -> None:
        """Layers recorded before sizes were docker's (the tar's length) get docker's size,
        counted from their blobs in the content store; then the images' sizes follow.  Marked
        done in the state database (:data:`SIZES_META`), so it runs once."""
        state = self.store.state
        if state.get_meta(SIZES_META) == "content":
            return
        try:
            for image in self.store.list():
                try:
                    manifest = manifest_of(image, self.content)
                except CoreError:
                    continue
                for layer, diff_id in zip(manifest.layers, image.config.diff_ids):
                    if not self.content.exists(layer.digest):
                        continue
                    sizer = LayerSizer()
                    async with trio.open_nursery() as nursery:
                        nursery.start_soon(sizer.run)
                        stream = decompress(_one_chunk_batches(self.content.open(layer.digest)),
                                            layer_compression(layer.media_type))
                        async for _ in sizer.tee(stream):
                            pass
                        sizer.finish()
                    if sizer.size is not None:
                        self.store.record_layer(diff_id, sizer.size)
                self.store.refresh_size(image.id)
            state.set_meta(SIZES_META, "content")
        except Exception as exc:  # noqa: BLE001 - never the daemon's end: retried at the next start
            log.warning("recounting the layers' sizes failed (retried at the next start): %s", exc)

    def _background(self) -> trio.Nursery:
        if self._nursery is None:
            raise Unavailable("the image service is not running")
        return self._nursery

    # -- reading -------------------------------------------------------------------------------

    def list(self, filters: dict[str, list[str]]) -> list[Image]:
        """``docker images``: newest first, filtered (keys of :data:`IMAGE_FILTERS`)."""
        return [image for image in self.store.list() if _match_filters(image, filters)]

    def lookup(self, name: str) -> Image:
        return self.store.lookup(name)

    def history(self, name: str) -> list[Message]:
        """``docker history``: one row per history entry, newest first; sizes from the layers
        that entry made."""
        image = self.store.lookup(name)
        layers = iter(image.config.diff_ids)
        rows = []
        for h in image.config.history or [{}]:
            size = 0
            if not h.get("empty_layer"):
                diff = next(layers, None)
                size = (self.store.layer_size(diff) or 0) if diff is not None else 0
            rows.append({
                "Id": "<missing>",
                "Created": _epoch(h.get("created")),
                "CreatedBy": _str(h.get("created_by")),
                "Tags": None,
                "Size": size,
                "Comment": _str(h.get("comment")),
            })
        rows.reverse()
        rows[0]["Id"] = image.id
        rows[0]["Tags"] = [t.familiar() for t in image.tags] or None
        return rows

    async def disk_usage(self) -> tuple[int, list[Message]]:
        """``GET /system/df``'s images: ``LayersSize`` (every layer once, by ChainID) and each
        image's summary with ``SharedSize`` (its layers another image has too) and
        ``Containers`` (how many use it)."""
        images = self.store.list()
        sizes: dict[str, int] = {}
        holders: dict[str, int] = {}
        for image in images:
            for chain, diff in zip(image.chain_ids, image.config.diff_ids):
                sizes[str(chain)] = self.store.layer_size(diff) or 0
                holders[str(chain)] = holders.get(str(chain), 0) + 1
        out = []
        for image in images:
            summary = image.summary(containers=len(await self.store.users.image_users(image.id)))
            summary["SharedSize"] = sum(sizes[str(c)] for c in set(image.chain_ids) if holders[str(c)] > 1)
            out.append(summary)
        return sum(sizes.values()), out

    # -- references ----------------------------------------------------------------------------

    def tag(self, name: str, repo: str | None, tag: str | None) -> None:
        """``docker tag NAME REPO[:TAG]``."""
        image = self.store.lookup(name)
        if not repo:
            raise InvalidArgument("repository name must have at least one component")
        ref = parse_reference(f"{repo}:{tag}" if tag else repo)
        self.store.tag(image, ref)
        self.events.emit("image", "tag", image.id, {"name": ref.familiar()})

    async def remove(self, name: str, force: bool = False) -> list[dict[str, str]]:
        """``docker rmi``: docker's ``Untagged``/``Deleted`` records; what went is collected."""
        records, gone = await self.store.remove(name, force=force)
        if gone is not None:
            records += await self.collect(gone)
        for rec in records:
            if "Deleted" in rec:
                self.events.emit("image", "delete", rec["Deleted"], {})
            else:
                self.events.emit("image", "untag", rec["Untagged"], {})
        return records

    async def prune(self, filters: dict[str, list[str]]) -> tuple[list[dict[str, str]], int]:
        """``docker image prune``: the images no container uses — only untagged ones unless
        ``dangling=false`` — that pass ``label``/``until``; the records and the bytes reclaimed."""
        dangling_only = True
        if "dangling" in filters:
            dangling_only = any(v in ("true", "1") for v in filters["dangling"])
        deleted: list[dict[str, str]] = []
        reclaimed = 0
        for image in self.store.list():
            if await self._in_use(image.id):
                continue
            if dangling_only and image.tags:
                continue
            if not _match_until_label(image, filters):
                continue
            reclaimed += image.size
            records, gone = await self.store.remove(image.id, force=True)
            if gone is not None:
                records += await self.collect(gone)
            deleted += records
        return deleted, reclaimed

    async def _in_use(self, image_id: str) -> bool:
        return bool(await self.store.users.image_users(image_id))

    async def collect(self, image: Image) -> list[dict[str, str]]:
        """After an image record went: remove its snapshots and blobs that nothing else uses.

        Snapshots are removed top-down in every storage driver that has them, stopping at the
        first layer another image (or a container, which makes the driver answer Conflict) uses.
        Returns docker's ``Deleted`` records for the layers removed.
        """
        in_use = self.store.chains_in_use()
        deleted: list[str] = []
        for name in plugins.available("storage"):
            try:
                snapshotter = self.drivers.get("storage", name)
            except CoreError:
                continue  # cannot run here or broken: it cannot hold layers either
            for chain in reversed(image.chain_ids):
                if str(chain) in in_use:
                    break
                try:
                    await snapshotter.remove(str(chain))
                except NotFound:
                    continue
                except (Conflict, CoreError):
                    break
                if str(chain) not in deleted:
                    deleted.append(str(chain))
        for digest in self.store.unused_blobs(image.blobs):
            try:
                self.content.delete(digest)
            except NotFound:
                pass
        return [{"Deleted": d} for d in deleted]

    # -- commit --------------------------------------------------------------------------------

    async def commit(self, containers: CommitSources, container: str, *, ref: Reference | None, comment: str,
                     author: str, changes: list[str], config: dict[str, Any] | None, pause: bool) -> Image:
        """``docker commit``: the image of ``container``'s changes (see
        :mod:`core.engine.images.commit`), tagged ``ref`` if given."""
        async with containers.commit_source(container, pause=pause) as src:
            image = await commit_container(src, store=self.store, content=self.content,
                                           snapshotter=self.drivers.get("storage", src.storage), ref=ref,
                                           comment=comment, author=author, changes=changes, config=config)
            self.events.emit("container", "commit", src.id,
                             {"comment": comment, "imageID": image.id, "imageRef": ref.familiar() if ref else "",
                              "name": src.name})
        return image

    # -- archives ------------------------------------------------------------------------------

    def save_items(self, names: list[str]) -> list[SaveItem]:
        """What ``docker save NAME...`` writes: each image once, with the references named —
        ``repo`` is every tag of the repository, ``repo:tag`` that tag, an ID none.
        ``NotFound`` (before anything is written) for a name that matches nothing."""
        if not names:
            raise InvalidArgument("no images named: give at least one image name or ID")
        order: list[str] = []
        found: dict[str, tuple[Image, list[Reference]]] = {}

        def add(image: Image, ref: Reference | None) -> None:
            if image.id not in found:
                order.append(image.id)
                found[image.id] = (image, [])
            refs = found[image.id][1]
            if ref is not None and all(str(r) != str(ref) for r in refs):
                refs.append(ref)

        for name in names:
            try:
                ref: Reference | None = parse_reference(name, default_tag=None)
            except InvalidArgument:
                ref = None
            if ref is not None and ref.tag is None and ref.digest is None:
                tagged = [(image, t) for image in self.store.list() for t in image.tags if t.name == ref.name]
                for image, t in tagged:
                    add(image, t)
                if not tagged:
                    add(self.store.lookup(name), None)  # an ID, or nothing
                continue
            image = self.store.lookup(name)
            add(image, ref if ref is not None and ref.tag and ref.digest is None else None)
        items = [SaveItem(found[i][0], tuple(found[i][1])) for i in order]
        for item in items:
            manifest_of(item.image, self.content)  # its blobs are here: checked before the stream starts
        return items

    def save(self, items: list[SaveItem]) -> AsyncIterator[bytes]:
        """``docker save``: the archive of ``items`` (:func:`save_items`), as it is made."""
        for item in items:
            self.events.emit("image", "save", item.image.id, {"name": item.image.id})
        return write_archive(items, self.content)

    async def load(self, receive: Callable[[], Awaitable[bytes]], *, storage: str) -> list[Message]:
        """``docker load``: read the archive (``receive()`` gives its pieces, ``b""`` at the
        end) into a scratch file, then load every image it holds; docker's ``stream``
        messages, and its ``error`` message last if the archive is refused."""
        snapshotter = self.drivers.get("storage", storage)
        messages: list[Message] = []
        f = spool_file(self.content.root)
        try:
            pending: list[bytes] = []
            size = 0
            while True:
                chunk = await receive()
                if chunk:
                    pending.append(chunk)
                    size += len(chunk)
                if pending and (not chunk or size >= 1 << 20):
                    try:
                        await trio.to_thread.run_sync(f.writelines, pending)
                    except OSError as exc:
                        raise Unavailable(f"cannot keep the uploaded archive: {exc.strerror or exc}") from None
                    pending, size = [], 0
                if not chunk:
                    break
            await trio.to_thread.run_sync(f.flush)
            loader = Loader(f=f, store=self.store, content=self.content, snapshotter=snapshotter,
                            emit=lambda line: messages.append({"stream": line}))
            for image, refs in await loader.run():
                self.events.emit("image", "load", image.id, {"name": image.id})
                for ref in refs:
                    self.events.emit("image", "tag", image.id, {"name": ref.familiar()})
        except CoreError as exc:
            messages.append({"errorDetail": {"message": exc.message}, "error": exc.message})
        finally:
            f.close()
        return messages

    # -- registries ----------------------------------------------------------------------------

    async def pull(self, ref: Reference, *, all_tags: bool, auth: dict[str, str] | None,
                   platform: Platform | None, storage: str, registry: str) -> Progress:
        """``docker pull``: every tag of ``ref``'s repository if ``all_tags``.  Errors finding
        the image are raised here; the rest runs in the background, reported by the result."""
        snapshotter = self.drivers.get("storage", storage)
        client = self.drivers.get("registry", registry)
        progress = Progress()

        def puller(r: Reference) -> Puller:
            return Puller(images=self.store, content=self.content, registry=client, snapshotter=snapshotter,
                          ref=r, platform=platform, auth=auth, emit=progress.emit)

        if all_tags:
            tags = await client.tags(ref, auth)
            if not tags:
                raise NotFound(f"no tags found for {ref.familiar_name}")
            pullers = [puller(ref.with_tag(t)) for t in sorted(tags)]
        else:
            pullers = [puller(ref)]
        await pullers[0].resolve()

        async def run() -> None:
            changed = False
            for p in pullers:
                _image, changed_one = await p.run(final_status=not all_tags)
                changed = changed or changed_one
                self.events.emit("image", "pull", str(p.ref), {"name": p.ref.familiar()})
            if all_tags:
                pullers[-1].status(ref.familiar_name, changed)

        return progress.start(self._background(), run, f"pull of {ref}")

    async def pull_image(self, image: str, *, auth: dict[str, str] | None = None) -> None:
        """Pull ``image`` to the end with the default drivers (the swarm's task runner, an
        :class:`core.engine.interfaces.ImagePuller`); the error the pull ended with is raised."""
        ref = parse_reference(image)
        progress = await self.pull(ref, all_tags=False, auth=auth, platform=None,
                                   storage=None, registry=None)  # type: ignore[arg-type]
        error = None
        try:
            async for message in progress:
                if "error" in message:
                    error = message["error"]
        finally:
            progress.close()
        if error is not None:
            raise CoreError(error)

    async def push(self, ref: Reference, *, auth: dict[str, str] | None, registry: str) -> Progress:
        """``docker push``: the local image ``ref`` names, in the background."""
        image = self.store.lookup(str(ref))
        client = self.drivers.get("registry", registry)
        progress = Progress()

        async def run() -> None:
            await push_image(client, self.content, image, ref, auth, progress.emit)
            self.events.emit("image", "push", str(ref), {"name": ref.familiar()})

        return progress.start(self._background(), run, f"push of {ref}")

    async def distribution(self, ref: Reference, *, auth: dict[str, str] | None, registry: str) -> Message:
        """``GET /distribution/{name}/json``: the registry's descriptor of ``ref`` and the
        platforms it offers (attestations left out)."""
        client = self.drivers.get("registry", registry)
        desc, data = await client.resolve(ref, auth)
        if check_media_type(desc.media_type) == "index":
            index = parse_index(data, desc.media_type)
            platforms = [d.platform.to_json() for d in index.manifests if d.platform and not is_attestation(d)]
        else:
            manifest = parse_manifest(data, desc.media_type)
            async with contextlib.aclosing(client.fetch_blob(ref, manifest.config, auth)) as stream:
                config = b"".join([c async for c in stream])
            platforms = [parse_config(config).platform.to_json()]
        return {"Descriptor": desc.to_json(), "Platforms": platforms}

    async def login(self, creds: dict[str, str], *, registry: str) -> str:
        """``docker login``: the registry driver's status line."""
        client = self.drivers.get("registry", registry)
        return await client.login(creds.get("serveraddress", ""), creds)


def _match_filters(image: Image, filters: dict[str, list[str]]) -> bool:
    if "dangling" in filters:
        want = any(v in ("true", "1") for v in filters["dangling"])
        if want != (not image.tags):
            return False
    if "reference" in filters:
        # docker's reference.FamiliarMatch over every tag and digest: the whole string, then the name
        refs = image.tags + image.digests
        names = [r.familiar() for r in refs] + [r.familiar_name for r in refs]
        if not any(_path_match(pat, n) for pat in filters["reference"] for n in names):
            return False
    return _match_until_label(image, filters)


def _path_match(pattern: str, name: str) -> bool:
    """Go's path.Match: ``*`` and ``?`` do not cross ``/``."""
    rx = "".join("[^/]*" if c == "*" else "[^/]" if c == "?" else re.escape(c) for c in pattern)
    return re.fullmatch(rx, name) is not None


def _match_until_label(image: Image, filters: dict[str, list[str]]) -> bool:
    labels = image.config.config.get("Labels") or {}
    for want in filters.get("label", []):
        key, eq, value = want.partition("=")
        if key not in labels or (eq and labels.get(key) != value):
            return False
    for until in filters.get("until", []):
        try:
            limit = float(until)
        except ValueError:
            raise InvalidArgument(f"invalid until filter {until!r}: expected a unix timestamp") from None
        if image.created >= limit:
            return False
    return True


def _epoch(value: Any) -> int:
    return unix_time(value) if isinstance(value, str) else 0


def _str(value: Any) -> str:
    return value if isinstance(value, str) else ""
