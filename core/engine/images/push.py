"""Pushing an image: its layers and config from the content store, then its manifest.

The manifest pushed is the one the image was pulled with (its bytes are kept in the content
store), so ``tag`` + ``push`` + ``pull`` round-trips to the same digests.
"""
from __future__ import annotations

from typing import Any, Callable

from core.errors import NotFound
from core.engine.images.store import Image
from core.engine.images.manifest import MAX_MANIFEST_BYTES, parse_manifest, sniff_media_type
from core.reference import Reference
from core.types import Digest

Emit = Callable[[dict[str, Any]], None]


async def push_image(registry: Any, content: Any, image: Image, ref: Reference, auth: Any, emit: Emit) -> None:
    manifest_digest = Digest.parse(image.target)
    if not content.exists(manifest_digest):
        raise NotFound(f"the manifest of image {image.short_id} is not in the content store; pull it again")
    manifest_bytes = content.read_bytes(manifest_digest, MAX_MANIFEST_BYTES)
    media_type = sniff_media_type(manifest_bytes, None)
    manifest = parse_manifest(manifest_bytes, media_type)
    emit({"status": f"The push refers to repository [{ref.name}]"})
    for layer in reversed(manifest.layers):
        emit({"status": "Preparing", "progressDetail": {}, "id": layer.digest.hex[:12]})
    for desc in list(reversed(manifest.layers)) + [manifest.config]:
        short = desc.digest.hex[:12]
        if not content.exists(desc.digest):
            raise NotFound(f"blob {desc.digest} of image {image.short_id} is not in the content store")
        is_layer = desc is not manifest.config
        if is_layer:
            emit({"status": "Pushing", "progressDetail": {"current": 0, "total": desc.size}, "id": short})
        uploaded = await registry.push_blob(ref, desc, auth=auth)  # read from the content store
        if is_layer:
            emit({"status": "Pushed" if uploaded else "Layer already exists", "progressDetail": {}, "id": short})
    await registry.push_manifest(ref, media_type, manifest_bytes, auth)
    tag = ref.tag or "latest"
    emit({"status": f"{tag}: digest: {manifest_digest} size: {len(manifest_bytes)}"})
    emit({"progressDetail": {}, "aux": {"Tag": tag, "Digest": str(manifest_digest), "Size": len(manifest_bytes)}})
