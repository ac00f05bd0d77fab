"""Image endpoints: pull, list, inspect, history, tag, remove, prune, push, distribution, auth."""
from __future__ import annotations

import base64
import contextlib
import binascii
import json
import logging
from typing import TYPE_CHECKING, Any, AsyncIterator, Awaitable, Callable

import trio

from core.errors import CoreError, InvalidArgument, NotFound
from core.api.http import Request, Response, json_response
from core.engine.images.store import Image, unix_time
from core.engine.images.pull import Puller
from core.reference import Reference, parse_reference
from core.types import Platform

if TYPE_CHECKING:
    from core.daemon.app import Daemon

log = logging.getLogger("core.engine.images.store")
PROGRESS_BUFFER = 1024


def registry_auth(req: Request) -> dict[str, str] | None:
    """The credentials docker clients send in ``X-Registry-Auth``: base64url-encoded JSON."""
    value = req.headers.get("x-registry-auth", "").strip()
    if not value:
        return None
    try:
        raw = base64.urlsafe_b64decode(value + "=" * (-len(value) % 4))
        data = json.loads(raw) if raw.strip() else {}
    except (binascii.Error, ValueError, UnicodeDecodeError):
        raise InvalidArgument("invalid X-Registry-Auth header: not base64url-encoded JSON") from None
    if not isinstance(data, dict):
        raise InvalidArgument("invalid X-Registry-Auth header: not a JSON object")
    out = {k: v for k, v in data.items() if isinstance(k, str) and isinstance(v, str) and v}
    return out or None


def parse_pull_reference(from_image: str, tag: str | None) -> tuple[Reference, bool]:
    """``fromImage`` and ``tag`` as docker clients send them; True when every tag is wanted."""
    ref = parse_reference(from_image, default_tag=None)
    if tag:
        if ":" in tag and tag.split(":", 1)[0] in ("sha256", "sha384", "sha512"):
            ref = parse_reference(f"{ref.name}@{tag}", default_tag=None)
        else:
            ref = parse_reference(f"{ref.name}:{tag}", default_tag=None)
    all_tags = ref.tag is None and ref.digest is None
    return ref, all_tags


IMAGE_FILTERS = frozenset({"dangling", "reference", "label", "before", "since", "until"})


class JSONLines:
    """A streamed response body of docker's JSON messages, fed without blocking the producer."""

    def __init__(self) -> None:
        self.send, self.receive = trio.open_memory_channel[bytes](PROGRESS_BUFFER)
        self.closed = False

    def emit(self, message: dict[str, Any]) -> None:
        if self.closed:
            return
        try:
            self.send.send_nowait(json.dumps(message).encode() + b"\r\n")
        except trio.WouldBlock:
            if "progressDetail" in message and message.get("progressDetail"):
                return  # a slow client misses some progress updates, never a status line
            self.closed = True  # a client that reads nothing loses the rest
        except (trio.BrokenResourceError, trio.ClosedResourceError):
            self.closed = True

    def error(self, exc: CoreError) -> None:
        self.emit({"errorDetail": {"message": exc.message}, "error": exc.message})

    async def body(self) -> AsyncIterator[bytes]:
        async with self.receive:
            async for chunk in self.receive:
                yield chunk

    def respond(self, nursery: trio.Nursery, work: Callable[[], Awaitable[None]], what: str) -> Response:
        """Run ``work`` in ``nursery`` (it outlives the request) and stream its messages.

        Errors become docker's in-stream ``{"error": ...}`` message; the stream ends either way.
        """

        async def run() -> None:
            try:
                await work()
            except CoreError as exc:
                self.error(exc)
            except Exception as exc:  # a bug: tell the client, log the traceback
                log.exception("%s failed", what)
                self.error(CoreError(f"internal error: {type(exc).__name__}: {exc}"))
            finally:
                self.send.close()

        nursery.start_soon(run)
        return Response(status=200, body=self.body())


def register(daemon: Daemon) -> None:
    r = daemon.router

    def storage(req: Request) -> tuple[str, Any]:
        name = req.drivers["storage"]
        return name, daemon.drivers.get("storage", name)

    def platform_of(req: Request) -> Platform | None:
        value = req.q("platform")
        return Platform.parse(value) if value else None

    async def pull(req: Request) -> Response:
        if req.q("fromSrc"):
            raise InvalidArgument("importing from a tarball (fromSrc) is not supported")
        from_image = req.q("fromImage")
        if not from_image:
            raise InvalidArgument("fromImage is required")
        ref, all_tags = parse_pull_reference(from_image, req.q("tag"))
        auth = registry_auth(req)
        plat = platform_of(req)
        storage_name, snapshotter = storage(req)
        registry = daemon.drivers.get("registry", req.drivers["registry"])
        lines = JSONLines()

        def puller(r: Reference) -> Puller:
            return Puller(images=daemon.images, content=daemon.content, registry=registry, snapshotter=snapshotter,
                          ref=r, platform=plat, auth=auth, emit=lines.emit)

        if all_tags:
            tags = await registry.tags(ref, auth)
            if not tags:
                raise NotFound(f"no tags found for {ref.familiar_name}")
            pullers = [puller(ref.with_tag(t)) for t in sorted(tags)]
        else:
            pullers = [puller(ref)]
        # errors finding the image come back as an HTTP status, before any progress is sent
        await pullers[0].resolve()

        async def run() -> None:
            changed = False
            for p in pullers:
                _image, changed_one = await p.run(final_status=not all_tags)
                changed = changed or changed_one
                daemon.events.emit("image", "pull", str(p.ref), {"name": p.ref.familiar()})
            if all_tags:
                pullers[-1].status(ref.familiar_name, changed)

        return lines.respond(daemon.nursery, run, f"pull of {ref}")

    r.add("POST", "/images/create", pull)

    async def list_images(req: Request) -> Response:
        filters = req.filters(IMAGE_FILTERS)
        return json_response([image.summary() for image in daemon.images.list() if _match_filters(image, filters)])

    r.add("GET", "/images/json", list_images)

    async def inspect(req: Request) -> Response:
        image = daemon.images.lookup(req.params["name"])
        return json_response(image.inspect(req.drivers.get("storage", "")))

    r.add("GET", "/images/{name:path}/json", inspect)

    async def history(req: Request) -> Response:
        """One row per history entry, newest first; sizes from the layers that entry made."""
        image = daemon.images.lookup(req.params["name"])
        layers = iter(image.config.diff_ids)
        rows = []
        for h in image.config.history or [{}]:
            size = 0
            if not h.get("empty_layer"):
                diff = next(layers, None)
                size = (daemon.images.layer_size(diff) or 0) if diff is not None else 0
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
        return json_response(rows)

    r.add("GET", "/images/{name:path}/history", history)

    async def tag(req: Request) -> Response:
        image = daemon.images.lookup(req.params["name"])
        repo = req.q("repo")
        if not repo:
            raise InvalidArgument("repository name must have at least one component")
        tag_value = req.q("tag") or None
        ref = parse_reference(f"{repo}:{tag_value}" if tag_value else repo)
        daemon.images.tag(image, ref)
        daemon.events.emit("image", "tag", image.id, {"name": ref.familiar()})
        return Response(status=201, body=b"", content_type=None)

    r.add("POST", "/images/{name:path}/tag", tag)

    async def remove(req: Request) -> Response:
        records, gone = daemon.images.remove(req.params["name"], force=req.qbool("force"))
        if gone is not None:
            records += await daemon.collect_image(gone)
        for rec in records:
            if "Deleted" in rec:
                daemon.events.emit("image", "delete", rec["Deleted"], {})
            else:
                daemon.events.emit("image", "untag", rec["Untagged"], {})
        return json_response(records)

    r.add("DELETE", "/images/{name:path}", remove)

    async def prune(req: Request) -> Response:
        filters = req.filters(IMAGE_FILTERS)
        dangling_only = True
        if "dangling" in filters:
            dangling_only = any(v in ("true", "1") for v in filters["dangling"])
        deleted: list[dict[str, str]] = []
        reclaimed = 0
        for image in daemon.images.list():
            if daemon.images.users(image.id):
                continue
            if dangling_only and image.tags:
                continue
            if not _match_until_label(image, filters):
                continue
            reclaimed += image.size
            records, gone = daemon.images.remove(image.id, force=True)
            if gone is not None:
                records += await daemon.collect_image(gone)
            deleted += records
        return json_response({"ImagesDeleted": deleted or None, "SpaceReclaimed": reclaimed})

    r.add("POST", "/images/prune", prune)

    async def distribution(req: Request) -> Response:
        ref = parse_reference(req.params["name"])
        registry = daemon.drivers.get("registry", req.drivers["registry"])
        auth = registry_auth(req)
        desc, data = await registry.resolve(ref, auth)
        platforms: list[dict[str, Any]] = []
        from core.engine.images.manifest import check_media_type, is_attestation, parse_config, parse_index, parse_manifest

        if check_media_type(desc.media_type) == "index":
            index = parse_index(data, desc.media_type)
            platforms = [d.platform.to_json() for d in index.manifests if d.platform and not is_attestation(d)]
        else:
            manifest = parse_manifest(data, desc.media_type)
            async with contextlib.aclosing(registry.fetch_blob(ref, manifest.config, auth)) as stream:
                config = b"".join([c async for c in stream])
            platforms = [parse_config(config).platform.to_json()]
        return json_response({"Descriptor": desc.to_json(), "Platforms": platforms})

    r.add("GET", "/distribution/{name:path}/json", distribution)

    async def auth(req: Request) -> Response:
        body = req.json({}) or {}
        if not isinstance(body, dict):
            raise InvalidArgument("auth: expected a JSON object")
        registry = daemon.drivers.get("registry", req.drivers["registry"])
        creds = {k: v for k, v in body.items() if isinstance(v, str) and v}
        status = await registry.login(creds.get("serveraddress", ""), creds)
        return json_response({"Status": status, "IdentityToken": ""})

    r.add("POST", "/auth", auth)

    async def push(req: Request) -> Response:
        name = req.params["name"]
        tag_value = req.q("tag")
        ref = parse_reference(f"{name}:{tag_value}" if tag_value else name)
        image = daemon.images.lookup(str(ref))
        registry = daemon.drivers.get("registry", req.drivers["registry"])
        auth_cfg = registry_auth(req)
        lines = JSONLines()

        async def run() -> None:
            from core.engine.images.push import push_image

            await push_image(registry, daemon.content, image, ref, auth_cfg, lines.emit)
            daemon.events.emit("image", "push", str(ref), {"name": ref.familiar()})

        return lines.respond(daemon.nursery, run, f"push of {ref}")

    r.add("POST", "/images/{name:path}/push", push)


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
    import re as _re

    rx = "".join("[^/]*" if c == "*" else "[^/]" if c == "?" else _re.escape(c) for c in pattern)
    return _re.fullmatch(rx, name) is not None


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
