"""The registry contract: resolving, pulling and pushing images.

A registry client speaks the OCI distribution API (Docker Registry HTTP API v2) for the kernel.
It turns a :class:`core.reference.Reference` into verified manifests and blobs, writing blobs into
the kernel's content store (``context.content``, a :class:`core.contracts.content.ContentStore`:
read its docstring for ingests and their rules) so that nothing unverified ever becomes visible
there.  Parsing manifests and choosing a platform
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

Registry settings come from ``context.registry``, a :class:`RegistryConfig` (mirrors per registry,
insecure hosts and networks; built with :meth:`RegistryConfig.from_mapping` from ``{"mirrors":
{registry: [base URL, ...]}, "insecure": [host[:port] or CIDR, ...]}``).  Pulls (resolve, manifests, blobs,
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
import ipaddress
import json
import urllib.parse
from collections.abc import AsyncIterable, AsyncIterator, Callable, Mapping
from typing import TYPE_CHECKING, Any, Protocol, Union, runtime_checkable

import attrs

from core.errors import InvalidArgument
from core.reference import DEFAULT_DOMAIN

if TYPE_CHECKING:
    from core.reference import Reference
    from core.types import Descriptor

__all__ = ["AuthConfig", "RegistryClient", "RegistryConfig", "BlobSource", "Progress",
           "MAX_MANIFEST_BYTES", "parse_mirror"]

#: manifests and indexes larger than this are refused (containerd and docker use 4 MiB too)
MAX_MANIFEST_BYTES = 4 * 1024 * 1024

#: ``progress(total_bytes_so_far)``, called as a blob's bytes arrive
Progress = Callable[[int], None]

#: what :meth:`RegistryClient.push_blob` uploads: the bytes; a zero-argument callable returning a
#: fresh async iterator of them (called again for a retry); a one-shot async iterable (no retry
#: once it was started); or ``None``: the blob from the content store (retries re-read it)
BlobSource = Union[bytes, Callable[[], AsyncIterator[bytes]], AsyncIterable[bytes], None]

#: the names Docker Hub goes by (mirrors and insecure entries under any of them are "docker.io"'s)
DOCKER_HUB_NAMES = ("docker.io", "index.docker.io", "registry-1.docker.io")
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


def _split_host_port(authority: str) -> tuple[str, str]:
    """``("host", "port")`` of ``host[:port]`` / ``[v6]:port`` (port ``""`` when absent)."""
    if authority.startswith("["):
        host, _, rest = authority[1:].partition("]")
        return host, rest.removeprefix(":")
    if authority.count(":") == 1:
        host, _, port = authority.partition(":")
        return host, port
    return authority, ""


def _hub_key(name: str) -> str:
    return DEFAULT_DOMAIN if name in DOCKER_HUB_NAMES else name


@attrs.frozen
class RegistryConfig:
    """The daemon's registry settings, given to registry drivers as ``context.registry``.

    ``mirrors``: registry host (``docker.io`` for Docker Hub) -> mirror base URLs, tried in
    order before the registry itself.  ``insecure``: ``host[:port]`` names or CIDRs that may be
    reached over plain HTTP or TLS without verification; loopback (127.0.0.0/8, ::1,
    ``localhost``) always may, as with docker, unless ``loopback_insecure`` is off.
    """

    mirrors: Mapping[str, tuple[str, ...]] = attrs.field(factory=dict)
    insecure_names: frozenset[str] = frozenset()
    insecure_networks: tuple[Any, ...] = ()
    loopback_insecure: bool = True

    @classmethod
    def from_mapping(cls, cfg: Mapping[str, Any] | None, *,
                     loopback_insecure: bool = True) -> RegistryConfig:
        """Parse ``{"mirrors": {...}, "insecure": [...]}``.  Raises ``InvalidArgument`` on a
        malformed entry (a daemon with a broken registry config should not start quietly)."""
        cfg = cfg or {}
        mirrors: dict[str, tuple[str, ...]] = {}
        raw_mirrors = cfg.get("mirrors") or {}
        if not isinstance(raw_mirrors, Mapping):
            raise InvalidArgument("registry config: mirrors must map a registry to a list of URLs")
        for registry, urls in raw_mirrors.items():
            if isinstance(urls, str):
                urls = [urls]
            if not isinstance(registry, str) or not all(isinstance(u, str) for u in urls):
                raise InvalidArgument(f"registry config: invalid mirrors for {registry!r}")
            for url in urls:
                parse_mirror(url)  # validate now
            key = _hub_key(registry)
            mirrors[key] = mirrors.get(key, ()) + tuple(u for u in urls if u)
        names: set[str] = set()
        networks: list[Any] = []
        for entry in cfg.get("insecure") or ():
            if not isinstance(entry, str) or not entry:
                raise InvalidArgument(f"registry config: invalid insecure registry {entry!r}")
            entry = entry.removeprefix("http://").removeprefix("https://").rstrip("/")
            if "/" in entry:
                try:
                    networks.append(ipaddress.ip_network(entry, strict=False))
                except ValueError as exc:
                    raise InvalidArgument(f"registry config: invalid CIDR {entry!r}") from exc
            else:
                names.add(_hub_key(entry.lower()))
        return cls(mirrors, frozenset(names), tuple(networks), loopback_insecure)

    def is_insecure(self, authority: str) -> bool:
        """Whether ``host[:port]`` may be reached without verified TLS."""
        authority = authority.lower()
        host, _port = _split_host_port(authority)
        if authority in self.insecure_names or host in self.insecure_names:
            return True
        if self.loopback_insecure and host == "localhost":
            return True
        try:
            ip = ipaddress.ip_address(host)
        except ValueError:
            return False
        if self.loopback_insecure and ip.is_loopback:
            return True
        return any(ip in net for net in self.insecure_networks)


def parse_mirror(url: str) -> tuple[str | None, str, str]:
    """``(scheme or None, authority, path prefix)`` of a mirror URL.  ``InvalidArgument``."""
    text = url.strip()
    if "://" not in text:
        text = "//" + text
    parts = urllib.parse.urlsplit(text)
    if parts.scheme not in ("", "http", "https") or not parts.netloc or parts.query:
        raise InvalidArgument(f"registry config: invalid mirror URL {url!r}")
    prefix = parts.path.rstrip("/").removesuffix("/v2")
    return parts.scheme or None, parts.netloc, prefix


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

    async def aclose(self) -> None:
        """Close connections.  The client cannot be used afterwards; closing twice is harmless."""
