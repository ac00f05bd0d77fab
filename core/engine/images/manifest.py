"""Image manifests, indexes and configs: parsing hostile bytes into checked values.

Everything here reads bytes that came from a registry, so every field is type-checked and
bounded, and every failure is an ``InvalidArgument`` that says what is wrong.  Supported:
Docker schema 2 manifests and manifest lists, OCI manifests and indexes.  Schema 1 and unknown
media types are rejected with a clear message.
"""
from __future__ import annotations

import hashlib
import json
from typing import Any

import attrs

from core.errors import InvalidArgument, NotFound
from core.types import (
    CONFIG_MEDIA_TYPES,
    INDEX_MEDIA_TYPES,
    LAYER_MEDIA_TYPES,
    MANIFEST_MEDIA_TYPES,
    SCHEMA1_MEDIA_TYPES,
    Descriptor,
    Digest,
    Platform,
)

MAX_MANIFEST_BYTES = 4 * 1024 * 1024
MAX_CONFIG_BYTES = 8 * 1024 * 1024
MAX_LAYERS = 1000
ATTESTATION_ANNOTATION = "vnd.docker.reference.type"


def _load(data: bytes, what: str, limit: int) -> dict[str, Any]:
    if len(data) > limit:
        raise InvalidArgument(f"{what} is too large ({len(data)} bytes, at most {limit})")
    try:
        obj = json.loads(data)
    except (ValueError, UnicodeDecodeError) as exc:
        raise InvalidArgument(f"{what} is not valid JSON: {exc}") from None
    if not isinstance(obj, dict):
        raise InvalidArgument(f"{what} is not a JSON object")
    return obj


def check_media_type(media_type: str) -> str:
    """``"manifest"`` or ``"index"`` for a supported type; ``InvalidArgument`` otherwise."""
    if media_type in MANIFEST_MEDIA_TYPES:
        return "manifest"
    if media_type in INDEX_MEDIA_TYPES:
        return "index"
    if media_type in SCHEMA1_MEDIA_TYPES:
        raise InvalidArgument(
            f"unsupported manifest media type {media_type}: Docker Image manifest version 2, schema 1 "
            "is not supported; push the image again with a current tool to upgrade it to schema 2 or OCI"
        )
    raise InvalidArgument(f"unsupported manifest media type {media_type!r}")


def sniff_media_type(data: bytes, declared: str | None) -> str:
    """The manifest's media type: its own ``mediaType`` field, else the declared one, else a guess."""
    obj = _load(data, "manifest", MAX_MANIFEST_BYTES)
    own = obj.get("mediaType")
    if own is not None and not isinstance(own, str):
        raise InvalidArgument("manifest mediaType must be a string")
    if own:
        return own
    if declared and declared not in ("application/json", "text/plain"):
        return declared
    if obj.get("schemaVersion") == 1:
        return "application/vnd.docker.distribution.manifest.v1+json"
    if "manifests" in obj:
        return "application/vnd.oci.image.index.v1+json"
    return "application/vnd.oci.image.manifest.v1+json"


@attrs.frozen
class Manifest:
    media_type: str
    config: Descriptor
    layers: tuple[Descriptor, ...]
    annotations: dict[str, str] = attrs.field(factory=dict)


@attrs.frozen
class Index:
    media_type: str
    manifests: tuple[Descriptor, ...]


def parse_manifest(data: bytes, media_type: str) -> Manifest:
    obj = _load(data, "manifest", MAX_MANIFEST_BYTES)
    if obj.get("schemaVersion") != 2:
        raise InvalidArgument(f"manifest schemaVersion must be 2, not {obj.get('schemaVersion')!r}")
    if "config" not in obj:
        raise InvalidArgument("manifest has no config")
    config = Descriptor.from_json(obj["config"])
    if config.media_type not in CONFIG_MEDIA_TYPES:
        raise InvalidArgument(f"unsupported image config media type {config.media_type!r}")
    layers_json = obj.get("layers")
    if not isinstance(layers_json, list):
        raise InvalidArgument("manifest layers must be a list")
    if len(layers_json) > MAX_LAYERS:
        raise InvalidArgument(f"manifest has {len(layers_json)} layers, more than {MAX_LAYERS}")
    layers = tuple(Descriptor.from_json(layer) for layer in layers_json)
    for layer in layers:
        if layer.media_type not in LAYER_MEDIA_TYPES:
            raise InvalidArgument(f"unsupported layer media type {layer.media_type!r}")
    annotations = obj.get("annotations") or {}
    if not isinstance(annotations, dict):
        raise InvalidArgument("manifest annotations must be an object")
    return Manifest(media_type=media_type, config=config, layers=layers,
                    annotations={str(k): str(v) for k, v in annotations.items()})


def parse_index(data: bytes, media_type: str) -> Index:
    obj = _load(data, "manifest list", MAX_MANIFEST_BYTES)
    if obj.get("schemaVersion") != 2:
        raise InvalidArgument(f"manifest list schemaVersion must be 2, not {obj.get('schemaVersion')!r}")
    items = obj.get("manifests")
    if not isinstance(items, list):
        raise InvalidArgument("manifest list manifests must be a list")
    if len(items) > MAX_LAYERS:
        raise InvalidArgument("manifest list is too long")
    return Index(media_type=media_type, manifests=tuple(Descriptor.from_json(m) for m in items))


def is_attestation(desc: Descriptor) -> bool:
    """BuildKit's attestation manifests (SBOM, provenance) are not images to run."""
    if desc.annotations.get(ATTESTATION_ANNOTATION) == "attestation-manifest":
        return True
    return desc.platform is not None and desc.platform.os == "unknown" and desc.platform.architecture == "unknown"


def select_platform(index: Index, want: Platform) -> Descriptor:
    """The manifest of ``index`` for ``want``, skipping attestations; ``NotFound`` if none.

    When several match (``amd64`` with variants v1..v4, say), the first in the index wins, as in
    docker; an exact variant match is preferred over a variant-less request's default.
    """
    candidates = [d for d in index.manifests if not is_attestation(d) and d.media_type in MANIFEST_MEDIA_TYPES]
    matching = [d for d in candidates if d.platform is not None and want.matches(d.platform)]
    if not matching and want.variant is None:
        # a request without variant also takes entries whose platform lacks one
        matching = [d for d in candidates if d.platform is not None and
                    (d.platform.os, d.platform.normalized().architecture) == (want.os, want.architecture)]
    if not matching:
        have = ", ".join(sorted({str(d.platform) for d in candidates if d.platform is not None})) or "none"
        raise NotFound(f"no matching manifest for {want} in the manifest list entries (available: {have})")
    return matching[0]


@attrs.frozen
class ImageConfig:
    """The parts of an image config core uses; ``raw`` is the whole JSON for ``inspect``."""

    raw: dict[str, Any]
    diff_ids: tuple[Digest, ...]
    platform: Platform

    @property
    def config(self) -> dict[str, Any]:
        value = self.raw.get("config")
        return value if isinstance(value, dict) else {}

    @property
    def created(self) -> str:
        value = self.raw.get("created")
        return value if isinstance(value, str) else ""

    @property
    def history(self) -> list[dict[str, Any]]:
        value = self.raw.get("history")
        return [h for h in value if isinstance(h, dict)] if isinstance(value, list) else []


def parse_config(data: bytes) -> ImageConfig:
    obj = _load(data, "image config", MAX_CONFIG_BYTES)
    rootfs = obj.get("rootfs")
    if not isinstance(rootfs, dict) or rootfs.get("type") != "layers":
        raise InvalidArgument('image config rootfs must be an object with type "layers"')
    diff_ids = rootfs.get("diff_ids")
    if not isinstance(diff_ids, list) or len(diff_ids) > MAX_LAYERS:
        raise InvalidArgument("image config rootfs.diff_ids must be a list")
    ids = tuple(Digest.parse(d) for d in diff_ids)
    for key in ("config", "history", "created", "architecture", "os"):
        if key in obj and obj[key] is not None:
            want = {"config": dict, "history": list}.get(key, str)
            if not isinstance(obj[key], want):
                raise InvalidArgument(f"image config {key} must be a {want.__name__}")
    cfg = obj.get("config") or {}
    for key, want in (("Env", list), ("Cmd", list), ("Entrypoint", list), ("Labels", dict),
                      ("ExposedPorts", dict), ("Volumes", dict), ("WorkingDir", str), ("User", str)):
        if cfg.get(key) is not None and not isinstance(cfg[key], want):
            raise InvalidArgument(f"image config config.{key} must be a {want.__name__}")
    try:
        platform = Platform(obj.get("os") or "linux", obj.get("architecture") or "amd64", obj.get("variant") or None)
    except InvalidArgument:
        platform = Platform("linux", "amd64")
    return ImageConfig(raw=obj, diff_ids=ids, platform=platform)


def chain_ids(diff_ids: tuple[Digest, ...] | list[Digest]) -> list[Digest]:
    """OCI ChainIDs: ``C0 = D0``, ``Cn = sha256(C(n-1) + " " + Dn)``; the snapshot names of a stack."""
    out: list[Digest] = []
    for diff_id in diff_ids:
        if not out:
            out.append(diff_id)
        else:
            out.append(Digest.parse("sha256:" + hashlib.sha256(f"{out[-1]} {diff_id}".encode()).hexdigest()))
    return out
