"""The registry contract: resolving, pulling and pushing images.

A registry client speaks the OCI distribution API (Docker Registry HTTP API v2) for the kernel.
It turns a :class:`core.reference.Reference` into verified manifests and blobs, writing blobs into
the kernel's content store (:class:`core.engine.images.content.ContentStore`, ``context.services["content"]``)
so that nothing unverified ever becomes visible there.  Parsing manifests and choosing a platform
are the caller's (``core.engine.images.manifest``); the client moves verified bytes.

Lifecycle of a pull (the image puller, ``core.engine.images.pull``)::

    desc, data = await reg.resolve(ref, auth)            # tag or digest -> manifest or index
    # an index: pick the platform's entry (core.engine.images.manifest.select_platform), then
    data = await reg.fetch_manifest(ref, child_desc, auth)   # by digest, verified
    # per blob (config, layers), possibly several at a time:
    async with contextlib.aclosing(reg.fetch_blob(ref, layer_desc, auth, progress)) as stream:
        async for chunk in stream:                       # the blob's bytes, in order, while
            ...                                          # they are written to the content store
    # when the loop ends the blob is verified and committed; on a mismatch it raised
    # InvalidArgument and kept nothing

``fetch_blob`` streams from the content store when the blob is already there, and resumes a
partial download left by an earlier interruption (first yielding the bytes already on disk).  A
connection dropped mid-blob is retried with a ``Range`` request from the bytes already written.
``fetch_blob_to_store`` is the same without a consumer.  ``tags`` lists a repository's tags (for
``pull --all-tags``).

Lifecycle of a push::

    for blob in config_and_layers:
        await reg.push_blob(ref, blob_desc, auth=auth)   # skipped when the registry has it
    await reg.push_manifest(ref, media_type, manifest_bytes, auth)   # tag (or digest) last

``login(serveraddress, auth)`` checks credentials the way ``docker login`` does and returns its
status line.

Credentials are an :class:`AuthConfig` (or the same keys as a mapping), given per call; a client
keeps the tokens it was issued, per registry and scope, and reuses them until they expire.
A client is used by many tasks at once: its methods are safe to run concurrently.  How many
downloads run in parallel is the caller's choice.

Registry settings come from ``context.services["registry_config"]``: ``{"mirrors": {registry:
[base URL, ...]}, "insecure": [host[:port] or CIDR, ...]}``.  Pulls (resolve, manifests, blobs,
tags) try each mirror of the reference's registry in order (``docker.io`` for Docker Hub; any
registry may have mirrors), then the registry itself; a mirror that fails or lacks the content
is skipped.  Credentials go to the registry only, never to a mirror.  Pushes and logins go to the
registry.  Insecure hosts (and loopback, always) may use plain HTTP or unverified TLS.

Errors (``core.errors``): unknown repository, tag or blob ``NotFound`` (docker's wording:
``manifest for <ref> not found: manifest unknown: manifest unknown``, ``pull access denied for
<repo>, repository does not exist or may require 'docker login': ...``); refused credentials
``Unauthorized`` (with the registry's message, ``unauthorized: authentication required``; an
anonymous pull that is refused gets the ``pull access denied`` wording), a 403 ``Forbidden``; a
registry that cannot be reached, fails TLS verification or keeps answering 5xx ``Unavailable``;
a manifest or blob whose digest or size does not match, an unsupported manifest type (schema 1),
an oversized manifest ``InvalidArgument``.
"""
from __future__ import annotations

import base64
import binascii
import json
from collections.abc import AsyncIterable, AsyncIterator, Callable, Mapping
from typing import TYPE_CHECKING, Any, Protocol, Union, runtime_checkable

import attrs

from core.errors import InvalidArgument

if TYPE_CHECKING:
    from core.reference import Reference
    from core.types import Descriptor

__all__ = ["AuthConfig", "RegistryClient", "BlobSource", "Progress", "MAX_MANIFEST_BYTES"]

#: manifests and indexes larger than this are refused (containerd and docker use 4 MiB too)
MAX_MANIFEST_BYTES = 4 * 1024 * 1024

#: ``progress(total_bytes_so_far)``, called as a blob's bytes arrive
Progress = Callable[[int], None]

#: what :meth:`RegistryClient.push_blob` uploads: the bytes; a zero-argument callable returning a
#: fresh async iterator of them (called again for a retry); a one-shot async iterable (no retry
#: once it was started); or ``None``: the blob from the content store (retries re-read it)
BlobSource = Union[bytes, Callable[[], AsyncIterator[bytes]], AsyncIterable[bytes], None]

_AUTH_FIELDS = ("username", "password", "auth", "email", "serveraddress", "identitytoken",
                "registrytoken")


@attrs.frozen
class AuthConfig:
    """Credentials for one registry, in the shape docker clients send them.

    ``X-Registry-Auth`` carries this as base64url-encoded JSON (:meth:`from_header`); the keys
    are those of docker's ``registry.AuthConfig``: ``username``/``password``, or ``auth``
    (base64 of ``user:password``, as in ``~/.docker/config.json``), ``identitytoken`` (an OAuth2
    refresh token from an earlier login), ``registrytoken`` (a bearer token used as is),
    ``serveraddress`` and the ignored ``email``.  Secrets are left out of ``repr``.
    """

    username: str = ""
    password: str = attrs.field(default="", repr=False)
    auth: str = attrs.field(default="", repr=False)
    email: str = ""
    serveraddress: str = ""
    identitytoken: str = attrs.field(default="", repr=False)
    registrytoken: str = attrs.field(default="", repr=False)

    @classmethod
    def from_json(cls, obj: object) -> AuthConfig:
        """From docker's JSON object; keys match case-insensitively (as Go's ``encoding/json``),
        unknown keys are ignored.  Raises ``InvalidArgument`` unless a JSON object of strings."""
        if not isinstance(obj, Mapping):
            raise InvalidArgument("invalid registry credentials: not a JSON object")
        values: dict[str, str] = {}
        for key, value in obj.items():
            name = key.lower() if isinstance(key, str) else None
            if name not in _AUTH_FIELDS or value is None:
                continue
            if not isinstance(value, str):
                raise InvalidArgument(f"invalid registry credentials: {name} must be a string")
            values[name] = value
        return cls(**values)

    @classmethod
    def coerce(cls, value: AuthConfig | Mapping[str, Any] | None) -> AuthConfig | None:
        """``value`` as an AuthConfig: an AuthConfig, a mapping of its keys, or ``None``."""
        if value is None or isinstance(value, AuthConfig):
            return value
        return cls.from_json(value)

    @classmethod
    def from_header(cls, value: str) -> AuthConfig | None:
        """Decode ``X-Registry-Auth``: base64url (padded or not; the standard alphabet is
        accepted too) of a JSON object.  An empty header is ``None``.  Raises
        ``InvalidArgument``."""
        value = value.strip()
        if not value:
            return None
        try:
            raw = base64.urlsafe_b64decode(value.translate(str.maketrans("+/", "-_"))
                                           + "=" * (-len(value) % 4))
            obj = json.loads(raw) if raw.strip() else {}
        except (binascii.Error, ValueError) as exc:
            raise InvalidArgument("invalid X-Registry-Auth header: not base64url-encoded "
                                  "JSON") from exc
        return cls.from_json(obj)

    def to_json(self) -> dict[str, str]:
        """The non-empty fields, under docker's keys."""
        return {name: getattr(self, name) for name in _AUTH_FIELDS if getattr(self, name)}

    def to_header(self) -> str:
        """The ``X-Registry-Auth`` value: base64url of the JSON."""
        return base64.urlsafe_b64encode(json.dumps(self.to_json()).encode()).decode()

    def basic(self) -> tuple[str, str] | None:
        """``(username, password)``, from the fields or decoded from ``auth``; ``None`` when
        there are none."""
        if self.username:
            return self.username, self.password
        if self.auth:
            try:
                user, sep, password = base64.b64decode(self.auth).decode().partition(":")
            except (binascii.Error, ValueError):
                return None
            if sep and user:
                return user, password
        return None

    @property
    def anonymous(self) -> bool:
        """True when there is nothing to authenticate with."""
        return self.basic() is None and not self.identitytoken and not self.registrytoken


@runtime_checkable
class RegistryClient(Protocol):
    """A registry driver's client.  See the module docstring for the lifecycle and errors.

    ``ref`` is always a :class:`core.reference.Reference` (its ``domain`` picks the registry and
    the mirrors, its ``path`` the repository); ``auth`` an :class:`AuthConfig`, a mapping of its
    keys, or ``None`` (anonymous).
    """

    async def resolve(self, ref: Reference, auth: AuthConfig | Mapping[str, str] | None = None
                      ) -> tuple[Descriptor, bytes]:
        """The manifest or index ``ref`` names (by tag, or by digest) and its exact bytes.

        The descriptor's media type comes from the registry's ``Content-Type`` (or, when that is
        generic, the document's ``mediaType``/shape), its digest is the sha256 of the bytes
        (checked against ``Docker-Content-Digest`` and a digest reference), its size their
        length.  ``InvalidArgument`` for schema 1 or unknown media types, a mismatch, or more
        than :data:`MAX_MANIFEST_BYTES`.
        """

    async def fetch_manifest(self, ref: Reference, desc: Descriptor,
                             auth: AuthConfig | Mapping[str, str] | None = None) -> bytes:
        """The bytes of the manifest ``desc`` (a child of an index), fetched by digest from
        ``ref``'s repository and verified against ``desc``'s digest and size."""

    def fetch_blob(self, ref: Reference, desc: Descriptor,
                   auth: AuthConfig | Mapping[str, str] | None = None,
                   progress: Progress | None = None) -> AsyncIterator[bytes]:
        """An async generator of the blob's bytes, in order, written to the content store as
        they pass; the blob is committed (verified by size and digest) before the generator
        ends.  ``progress(n)`` gets the running total.  Close it (``contextlib.aclosing``) when
        stopping early: what was downloaded is kept for a later resume, nothing is committed."""

    async def fetch_blob_to_store(self, ref: Reference, desc: Descriptor,
                                  auth: AuthConfig | Mapping[str, str] | None = None,
                                  progress: Progress | None = None) -> None:
        """:meth:`fetch_blob` without a consumer: the blob ends up in the content store."""

    async def tags(self, ref: Reference, auth: AuthConfig | Mapping[str, str] | None = None
                   ) -> list[str]:
        """Every tag of ``ref``'s repository (all pages), in the registry's order."""

    async def push_blob(self, ref: Reference, desc: Descriptor, data_source: BlobSource = None,
                        auth: AuthConfig | Mapping[str, str] | None = None) -> bool:
        """Upload the blob ``desc`` to ``ref``'s repository unless the registry has it.

        ``data_source``: see :data:`BlobSource`.  Returns True when bytes were uploaded, False
        when the registry already had the blob.
        """

    async def push_manifest(self, ref: Reference, media_type: str, data: bytes,
                            auth: AuthConfig | Mapping[str, str] | None = None) -> Descriptor:
        """Upload a manifest or index under ``ref``'s tag (or digest); return its descriptor.

        Blobs it points to must have been pushed first.
        """

    async def login(self, serveraddress: str, auth: AuthConfig | Mapping[str, str]) -> str:
        """Check ``auth`` against the registry at ``serveraddress`` (``""``/``docker.io``: Docker
        Hub); return ``"Login Succeeded"``.  ``Unauthorized`` when refused."""

    async def close(self) -> None:
        """Close connections.  The client cannot be used afterwards."""
