"""Image endpoints: pull, list, inspect, history, tag, remove, prune, push, distribution, auth,
save (``/images/get``), load, commit, and ``/build/prune``.

Each handler parses the request, calls one method of the image service
(:class:`core.engine.images.service.Images`) and renders its answer in docker's shape.
"""
from __future__ import annotations

import base64
import binascii
import json
from typing import AsyncIterator, Protocol

from core.api.http import Request, Response, Route, json_response
from core.engine.images.service import IMAGE_FILTERS, Images, Progress
from core.engine.interfaces import CommitSources
from core.errors import InvalidArgument
from core.reference import Reference, parse_reference
from core.types import Platform


class ImageServices(Protocol):
    """What the image routes use."""

    image_service: Images
    containers: CommitSources


def registry_auth(req: Request) -> dict[str, str] | None:
    """The credentials docker clients send in ``X-Registry-Auth``: base64url-encoded JSON."""
    value = req.headers.get("x-registry-auth", "").strip()
    if not value:
        return None
    try:
        raw = base64.urlsafe_b64decode(value + "=" * (-len(value) % 4))
        data = json.loads(raw) if raw.strip() else {}
    except (binascii.Error, ValueError, UnicodeDecodeError, RecursionError):
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


def progress_response(progress: Progress) -> Response:
    """A background operation's progress as docker's streamed JSON lines."""

    async def lines() -> AsyncIterator[bytes]:
        try:
            async for message in progress:
                yield json.dumps(message).encode() + b"\r\n"
        finally:
            progress.close()

    return Response(status=200, body=lines())


def _platform(req: Request) -> Platform | None:
    value = req.q("platform")
    return Platform.parse(value) if value else None


async def pull(req: Request, services: ImageServices) -> Response:
    if req.q("fromSrc"):
        raise InvalidArgument("importing from a tarball (fromSrc) is not supported")
    from_image = req.q("fromImage")
    if not from_image:
        raise InvalidArgument("fromImage is required")
    ref, all_tags = parse_pull_reference(from_image, req.q("tag"))
    progress = await services.image_service.pull(
        ref, all_tags=all_tags, auth=registry_auth(req), platform=_platform(req),
        storage=req.drivers["storage"], registry=req.drivers["registry"])
    return progress_response(progress)


async def list_images(req: Request, services: ImageServices) -> Response:
    images = services.image_service.list(req.filters(IMAGE_FILTERS))
    return json_response([image.summary() for image in images])


async def inspect(req: Request, services: ImageServices) -> Response:
    image = services.image_service.lookup(req.params["name"])
    return json_response(image.inspect(req.drivers.get("storage", "")))


async def history(req: Request, services: ImageServices) -> Response:
    return json_response(services.image_service.history(req.params["name"]))


async def tag(req: Request, services: ImageServices) -> Response:
    services.image_service.tag(req.params["name"], req.q("repo"), req.q("tag") or None)
    return Response(status=201, body=b"", content_type=None)


async def remove(req: Request, services: ImageServices) -> Response:
    return json_response(await services.image_service.remove(req.params["name"], force=req.qbool("force")))


async def prune(req: Request, services: ImageServices) -> Response:
    deleted, reclaimed = await services.image_service.prune(req.filters(IMAGE_FILTERS))
    return json_response({"ImagesDeleted": deleted or None, "SpaceReclaimed": reclaimed})


async def distribution(req: Request, services: ImageServices) -> Response:
    ref = parse_reference(req.params["name"])
    answer = await services.image_service.distribution(ref, auth=registry_auth(req),
                                                       registry=req.drivers["registry"])
    return json_response(answer)


async def auth(req: Request, services: ImageServices) -> Response:
    body = req.json({}) or {}
    if not isinstance(body, dict):
        raise InvalidArgument("auth: expected a JSON object")
    creds = {k: v for k, v in body.items() if isinstance(v, str) and v}
    status = await services.image_service.login(creds, registry=req.drivers["registry"])
    return json_response({"Status": status, "IdentityToken": ""})


async def push(req: Request, services: ImageServices) -> Response:
    name, tag_value = req.params["name"], req.q("tag")
    ref = parse_reference(f"{name}:{tag_value}" if tag_value else name)
    progress = await services.image_service.push(ref, auth=registry_auth(req), registry=req.drivers["registry"])
    return progress_response(progress)


async def save(req: Request, services: ImageServices) -> Response:
    """``GET /images/{name}/get`` and ``GET /images/get?names=...``: docker's image archive."""
    names = [req.params["name"]] if "name" in req.params else list(req.query.get("names") or [])
    items = services.image_service.save_items(names)
    return Response(status=200, body=services.image_service.save(items), content_type="application/x-tar")


async def load(req: Request, services: ImageServices) -> Response:
    """``POST /images/load``: the archive in the body; docker's JSON messages (an archive that
    is refused is an ``error`` message, as docker answers)."""
    if req.body_stream is not None:
        receive = req.body_stream.receive
    else:
        pieces = [req.body, b""]

        async def receive() -> bytes:
            return pieces.pop(0) if pieces else b""

    messages = await services.image_service.load(receive, storage=req.drivers["storage"])
    return Response(status=200, body=b"".join(json.dumps(m).encode() + b"\r\n" for m in messages))


async def commit(req: Request, services: ImageServices) -> Response:
    """``POST /commit?container=...``: the new image's ID."""
    container = req.q("container")
    if not container:
        raise InvalidArgument("container is required: the container to commit")
    repo, tag = req.q("repo") or "", req.q("tag") or ""
    ref = None
    if repo:
        ref = parse_reference(f"{repo}:{tag}" if tag else repo)
        if ref.digest is not None:
            raise InvalidArgument("refusing to create a tag with a digest reference")
    elif tag:
        raise InvalidArgument("tag given without repository")
    changes = [c for c in req.query.get("changes") or [] if c]
    config = req.json(None)
    image = await services.image_service.commit(
        services.containers, container, ref=ref, comment=req.q("comment") or "", author=req.q("author") or "",
        changes=changes, config=config, pause=req.qbool("pause", True))
    return json_response({"Id": image.id}, status=201)


async def build_prune(req: Request, services: ImageServices) -> Response:
    """``POST /build/prune``: core has no builder, so no build cache: nothing is deleted (what
    docker answers when its cache is empty)."""
    req.filters({"until", "id", "parent", "type", "description", "inuse", "shared", "private"})
    req.qint("keep-storage")
    req.qbool("all")
    return json_response({"CachesDeleted": None, "SpaceReclaimed": 0})


ROUTES = [
    ("POST", "/images/create", pull),
    ("GET", "/images/json", list_images),
    ("GET", "/images/{name:path}/json", inspect),
    ("GET", "/images/{name:path}/history", history),
    ("POST", "/images/{name:path}/tag", tag),
    ("DELETE", "/images/{name:path}", remove),
    ("POST", "/images/prune", prune),
    ("GET", "/distribution/{name:path}/json", distribution),
    ("POST", "/auth", auth),
    ("POST", "/images/{name:path}/push", push),
    ("POST", "/build/prune", build_prune),
    ("POST", "/commit", commit),
    ("GET", "/images/get", save),
    ("GET", "/images/{name:path}/get", save),
    Route("POST", "/images/load", load, stream_body=True),
]

