"""Image references, parsed and normalised exactly as docker does.

This is ``github.com/distribution/reference`` (``regexp.go``, ``reference.go``, ``normalize.go``)
in Python: the grammar ::

    reference        := name [ ":" tag ] [ "@" digest ]
    name             := [domain '/'] path
    domain           := host [':' port]         host: domain-name | IPv4 | '[' IPv6 ']'
    domain-component := /([a-zA-Z0-9]|[a-zA-Z0-9][a-zA-Z0-9-]*[a-zA-Z0-9])/
    path             := path-component ['/' path-component]*
    path-component   := /[a-z0-9]+(?:(?:[._]|__|[-]+)[a-z0-9]+)*/
    tag              := /[\\w][\\w.-]{0,127}/
    digest           := algorithm ":" hex        (sha256 / sha512, see core.types.Digest)

and docker's normalisation: a first component is a *domain* when it contains ``.`` or ``:``, is
``localhost``, or has upper-case letters; otherwise the domain is ``docker.io``, and a one-component
path on ``docker.io`` gets ``library/``.  ``index.docker.io`` becomes ``docker.io``.  So
``alpine`` is ``docker.io/library/alpine:latest`` and its familiar form is ``alpine:latest``.

Every failure is :class:`InvalidReference` (an ``InvalidArgument``) carrying docker's message.
"""
from __future__ import annotations

import re

import attrs

from core.errors import InvalidArgument, InvalidReference
from core.types import Digest

__all__ = ["Reference", "parse_reference", "looks_like_id", "InvalidReference",
           "DEFAULT_DOMAIN", "DOCKER_HUB_API_HOST"]

DEFAULT_DOMAIN = "docker.io"
LEGACY_DEFAULT_DOMAIN = "index.docker.io"
DOCKER_HUB_API_HOST = "registry-1.docker.io"
OFFICIAL_REPO_PREFIX = "library/"
DEFAULT_TAG = "latest"
NAME_TOTAL_LENGTH_MAX = 255

# regexp.go, piece by piece.  re.ASCII: Go's \w is [0-9A-Za-z_], never Unicode letters.
_PATH_COMPONENT = r"[a-z0-9]+(?:(?:[._]|__|[-]+)[a-z0-9]+)*"
_REMOTE_NAME = rf"{_PATH_COMPONENT}(?:/{_PATH_COMPONENT})*"
_DOMAIN_COMPONENT = r"(?:[a-zA-Z0-9]|[a-zA-Z0-9][a-zA-Z0-9-]*[a-zA-Z0-9])"
_DOMAIN_NAME = rf"{_DOMAIN_COMPONENT}(?:\.{_DOMAIN_COMPONENT})*"
_IPV6 = r"\[(?:[a-fA-F0-9:]+)\]"
_DOMAIN_AND_PORT = rf"(?:{_DOMAIN_NAME}|{_IPV6})(?::[0-9]+)?"
_TAG = r"[\w][\w.-]{0,127}"
_DIGEST = r"[A-Za-z][A-Za-z0-9]*(?:[-_+.][A-Za-z][A-Za-z0-9]*)*:[0-9a-fA-F]{32,}"
_NAME = rf"(?:{_DOMAIN_AND_PORT}/)?{_REMOTE_NAME}"

_REFERENCE_RE = re.compile(rf"({_NAME})(?::({_TAG}))?(?:@({_DIGEST}))?", re.ASCII)
_ANCHORED_NAME_RE = re.compile(rf"(?:({_DOMAIN_AND_PORT})/)?({_REMOTE_NAME})", re.ASCII)
_DOMAIN_RE = re.compile(_DOMAIN_AND_PORT, re.ASCII)
_REMOTE_NAME_RE = re.compile(_REMOTE_NAME, re.ASCII)
_TAG_RE = re.compile(_TAG, re.ASCII)
_IDENTIFIER_RE = re.compile(r"[a-f0-9]{64}", re.ASCII)
_ID_PREFIX_RE = re.compile(r"(?:sha256:)?[a-f0-9]{12,64}", re.ASCII)

_MESSAGE_MAX = 512  # hostile input can be megabytes; docker would echo it all


def _clip(text: str) -> str:
    return text if len(text) <= _MESSAGE_MAX else text[:_MESSAGE_MAX] + "..."


def _is_domain(first: str) -> bool:
    """Whether normalisation reads the first path element as a registry host (normalize.go)."""
    return first == "localhost" or "." in first or ":" in first or first.lower() != first


def _validate(ref: Reference) -> None:
    if not isinstance(ref.domain, str) or not _DOMAIN_RE.fullmatch(ref.domain):
        raise InvalidReference("invalid reference format")
    if not _is_domain(ref.domain) or ref.domain == LEGACY_DEFAULT_DOMAIN:
        raise InvalidReference(f"invalid reference format: domain ({_clip(ref.domain)}) is not "
                               "in normalised form")
    if not isinstance(ref.path, str) or not _REMOTE_NAME_RE.fullmatch(ref.path):
        raise InvalidReference("invalid reference format")
    if len(ref.path) > NAME_TOTAL_LENGTH_MAX:
        raise InvalidReference(f"repository name must not be more than {NAME_TOTAL_LENGTH_MAX} "
                               "characters")
    if ref.domain == DEFAULT_DOMAIN and "/" not in ref.path:
        raise InvalidReference(f"invalid reference format: docker.io path ({ref.path}) is not in "
                               "normalised form (library/...)")
    if ref.tag is not None and not (isinstance(ref.tag, str) and _TAG_RE.fullmatch(ref.tag)):
        raise InvalidReference("invalid tag format")
    if ref.digest is not None and not isinstance(ref.digest, Digest):
        raise InvalidReference("invalid digest format")


def _to_digest(value: Digest | str | None) -> Digest | None:
    if isinstance(value, str):
        try:
            return Digest.parse(value)
        except InvalidArgument as exc:
            raise InvalidReference(exc.message) from None
    return value


@attrs.frozen(slots=True)
class Reference:
    """A normalised image reference: ``domain/path[:tag][@digest]``.

    Always canonical (``docker.io``, never ``index.docker.io``; ``library/`` on official images),
    so ``parse_reference(str(ref)) == ref``.  Use :func:`parse_reference` to build one from user
    input; the constructor checks the same grammar and raises ``InvalidReference``.  ``digest``
    may be given as a string.
    """

    domain: str
    path: str
    tag: str | None = None
    digest: Digest | None = attrs.field(default=None, converter=_to_digest)

    def __attrs_post_init__(self) -> None:
        _validate(self)

    @property
    def name(self) -> str:
        """``docker.io/library/alpine``: domain and path, no tag or digest."""
        return f"{self.domain}/{self.path}"

    @property
    def familiar_name(self) -> str:
        """The name docker shows: ``alpine``, ``user/repo``, ``localhost:5000/x``."""
        if self.domain != DEFAULT_DOMAIN:
            return self.name
        rest = self.path.removeprefix(OFFICIAL_REPO_PREFIX)
        return rest if "/" not in rest else self.path

    @property
    def api_host(self) -> str:
        """The registry host to talk to: ``registry-1.docker.io`` for ``docker.io``."""
        return DOCKER_HUB_API_HOST if self.domain == DEFAULT_DOMAIN else self.domain

    @property
    def repository_key(self) -> tuple[str, str]:
        """``(api_host, path)``: identifies the repository for registry calls and auth scopes."""
        return (self.api_host, self.path)

    def _suffix(self) -> str:
        return (f":{self.tag}" if self.tag is not None else "") + (
            f"@{self.digest}" if self.digest is not None else "")

    def __str__(self) -> str:
        """``docker.io/library/alpine:latest``, ``host:5000/ns/repo:tag@sha256:...``."""
        return self.name + self._suffix()

    def familiar(self) -> str:
        """The short string docker shows: ``alpine:latest``, ``localhost:5000/x:1``."""
        return self.familiar_name + self._suffix()

    def with_tag(self, tag: str | None) -> Reference:
        """A copy with ``tag`` (``None`` removes it).  Raises ``InvalidReference``."""
        return attrs.evolve(self, tag=tag)

    def with_digest(self, digest: Digest | str | None) -> Reference:
        """A copy with ``digest`` (``None`` removes it).  Raises ``InvalidReference``."""
        return attrs.evolve(self, digest=digest)


def _split_docker_domain(name: str) -> tuple[str, str]:
    """normalize.go ``splitDockerDomain``: ``(domain, remainder)`` with docker.io defaults."""
    first, sep, rest = name.partition("/")
    if not sep:
        return DEFAULT_DOMAIN, OFFICIAL_REPO_PREFIX + name
    if first == LEGACY_DEFAULT_DOMAIN:
        domain, remainder = DEFAULT_DOMAIN, rest
    elif _is_domain(first):
        domain, remainder = first, rest
    else:
        domain, remainder = DEFAULT_DOMAIN, name
    if domain == DEFAULT_DOMAIN and "/" not in remainder:
        remainder = OFFICIAL_REPO_PREFIX + remainder
    return domain, remainder


def parse_reference(s: str, *, default_tag: str | None = DEFAULT_TAG) -> Reference:
    """Parse and normalise a reference as ``docker pull`` does (``ParseNormalizedNamed``).

    ``default_tag`` is added when there is neither a tag nor a digest (``None``: add nothing).
    Raises :class:`InvalidReference` (never anything else, whatever ``s`` is) with docker's
    messages, e.g. ``invalid reference format``, ``invalid reference format: repository name
    (library/Alpine) must be lowercase``, ``invalid checksum digest length``, ``repository name
    must not be more than 255 characters``, ``invalid repository name (<hex>), cannot specify
    64-byte hexadecimal strings``.
    """
    if not isinstance(s, str):
        raise InvalidReference("invalid reference format")
    if _IDENTIFIER_RE.fullmatch(s):
        raise InvalidReference(f"invalid repository name ({s}), cannot specify 64-byte "
                               "hexadecimal strings")
    domain, remainder = _split_docker_domain(s)
    remote = remainder.partition(":")[0]
    if remote.lower() != remote:
        raise InvalidReference(f"invalid reference format: repository name ({_clip(remote)}) "
                               "must be lowercase")
    full = f"{domain}/{remainder}"
    match = _REFERENCE_RE.fullmatch(full)
    if match is None:
        lowered = full.lower()
        if lowered != full and _REFERENCE_RE.fullmatch(lowered):
            raise InvalidReference("repository name must be lowercase")
        raise InvalidReference("invalid reference format")
    name, tag, digest_text = match.groups()
    name_match = _ANCHORED_NAME_RE.fullmatch(name)
    if name_match is None or name_match[1] is None:
        # e.g. "foo_bar.com/x": read as a domain, but only valid as a path with no registry
        raise InvalidReference("invalid reference format")
    domain, path = name_match.groups()
    if len(path) > NAME_TOTAL_LENGTH_MAX:
        raise InvalidReference(f"repository name must not be more than {NAME_TOTAL_LENGTH_MAX} "
                               "characters")
    digest = _to_digest(digest_text)
    if tag is None and digest is None:
        tag = default_tag
    return Reference(domain, path, tag, digest)


def looks_like_id(s: str) -> bool:
    """Whether ``s`` could be an image or container ID rather than a reference: 12 to 64
    lower-case hex characters, optionally after ``sha256:``.  Never raises."""
    return isinstance(s, str) and _ID_PREFIX_RE.fullmatch(s) is not None
