"""Swarm join tokens: ``SWMTKN-1-<CA digest>-<secret>``, as docker (swarmkit ``ca/config.go``).

A join token is what ``docker swarm join --token`` takes.  Its four ``-``-separated parts:

``SWMTKN``
    the prefix;
``1``
    the format version (swarmkit's FIPS ``SWMTKN-2-1-...`` form is not supported);
digest
    the SHA-256 of the swarm's root CA bundle (the PEM the managers serve), as a base-36 number
    zero-padded to 50 characters.  A joining node fetches the bundle *without* verifying the
    manager, checks it against this digest (:func:`check_ca_digest`) and only then trusts it:
    the token pins the CA before the node sends anything secret;
secret
    16 random bytes as a base-36 number zero-padded to 25 characters.  The worker and the
    manager token have different secrets; the manager that signs the joining node's
    certificate compares the whole token in constant time (:meth:`JoinTokens.role_for`), and the
    token that matched decides the node's role.

Rotating a token (``docker swarm join-token --rotate worker``) draws a new secret: the old
token is refused from then on, nodes that already joined are not affected.  A token names the
CA digest, so when the root CA changes (a CA rotation) the tokens change with it.

Errors are :class:`core.errors.InvalidArgument` with docker's words: ``invalid join token`` for
anything that is not a well-formed token, ``A valid join token is necessary to join this
cluster`` when the secret is wrong, ``remote CA does not match fingerprint. Expected: <hex>``
when the fetched CA is not the one the token names.
"""
from __future__ import annotations

import hashlib
import hmac
import re
import secrets

import attrs

from core.errors import InvalidArgument

PREFIX = "SWMTKN"
VERSION = "1"
BASE = 36
DIGEST_LEN = 50  # ceil(log36(2**256))
SECRET_LEN = 25  # ceil(log36(2**128))
SECRET_BYTES = 16

MANAGER = "manager"
WORKER = "worker"
ROLES = (WORKER, MANAGER)

INVALID_TOKEN = "invalid join token"
WRONG_SECRET = "A valid join token is necessary to join this cluster"

_DIGITS = "0123456789abcdefghijklmnopqrstuvwxyz"
_B36 = re.compile(r"[0-9a-z]+\Z")


def to_base36(n: int, width: int) -> str:
    """``n`` in base 36 (lower case), zero-padded to ``width`` characters."""
    if n < 0:
        raise ValueError("negative")
    out = []
    while n:
        n, r = divmod(n, BASE)
        out.append(_DIGITS[r])
    return "".join(reversed(out)).rjust(width, "0")


def new_secret() -> str:
    """A fresh token secret: 128 random bits, 25 base-36 characters."""
    return to_base36(int.from_bytes(secrets.token_bytes(SECRET_BYTES), "big"), SECRET_LEN)


def ca_digest(bundle_pem: bytes) -> str:
    """The hex SHA-256 of a root CA bundle, as a join token pins it."""
    return hashlib.sha256(bundle_pem).hexdigest()


@attrs.frozen
class ParsedToken:
    """A well-formed join token: the pinned CA digest (hex SHA-256) and the secret."""

    ca_digest: str
    secret: str

    def __str__(self) -> str:
        return format_token(self.ca_digest, self.secret)


def format_token(digest_hex: str, secret: str) -> str:
    """``SWMTKN-1-<digest base 36>-<secret>`` for a hex SHA-256 digest and a secret."""
    if not re.fullmatch(r"[0-9a-f]{64}", digest_hex or ""):
        raise InvalidArgument(f"not a hex sha256 digest: {digest_hex!r}")
    if len(secret) != SECRET_LEN or not _B36.match(secret):
        raise InvalidArgument("a join token secret is 25 base-36 characters")
    return f"{PREFIX}-{VERSION}-{to_base36(int(digest_hex, 16), DIGEST_LEN)}-{secret}"


def parse_token(token: object) -> ParsedToken:
    """Parse a join token; anything malformed is ``InvalidArgument("invalid join token")``.

    Never raises anything else, whatever ``token`` is.
    """
    if not isinstance(token, str):
        raise InvalidArgument(INVALID_TOKEN)
    parts = token.split("-")
    if len(parts) != 4 or parts[0] != PREFIX or parts[1] != VERSION:
        raise InvalidArgument(INVALID_TOKEN)
    digest, secret = parts[2], parts[3]
    if len(digest) != DIGEST_LEN or len(secret) != SECRET_LEN:
        raise InvalidArgument(INVALID_TOKEN)
    if not (_B36.match(digest) and _B36.match(secret)):
        raise InvalidArgument(INVALID_TOKEN)
    value = int(digest, BASE)
    if value >= 1 << 256:
        raise InvalidArgument(INVALID_TOKEN)
    return ParsedToken(ca_digest=f"{value:064x}", secret=secret)


def check_ca_digest(token: str | ParsedToken, bundle_pem: bytes) -> None:
    """Raise unless ``bundle_pem`` is the CA the token pins (docker's message)."""
    parsed = token if isinstance(token, ParsedToken) else parse_token(token)
    if not hmac.compare_digest(ca_digest(bundle_pem), parsed.ca_digest):
        raise InvalidArgument(
            f"remote CA does not match fingerprint. Expected: {parsed.ca_digest}")


@attrs.define
class JoinTokens:
    """The worker and manager secrets of a swarm; the tokens are rendered with the CA digest.

    Kept by the managers (persisted with the CA, :class:`core.engine.swarm.ca.ClusterCA`).
    """

    worker: str = attrs.field(factory=new_secret)
    manager: str = attrs.field(factory=new_secret)

    def rotate(self, role: str) -> None:
        """A new secret for ``role`` (``worker`` or ``manager``): its old token is refused."""
        if role not in ROLES:
            raise InvalidArgument(f"unknown role {role!r}: use worker or manager")
        setattr(self, role, new_secret())

    def token(self, role: str, digest_hex: str) -> str:
        """The ``SWMTKN-1-...`` token of ``role`` for the CA whose digest is ``digest_hex``."""
        if role not in ROLES:
            raise InvalidArgument(f"unknown role {role!r}: use worker or manager")
        return format_token(digest_hex, getattr(self, role))

    def role_for(self, token: object, digest_hex: str) -> str:
        """The role a presented token grants, comparing whole tokens in constant time.

        A malformed token is ``invalid join token``; a well-formed one that is neither the
        worker nor the manager token (forged, rotated, or naming another CA) is
        ``A valid join token is necessary to join this cluster``.
        """
        parse_token(token)  # the format first: a clear message for a typo
        presented = str(token).encode()
        role = None
        # both comparisons always run: the time does not tell which one matched
        if hmac.compare_digest(self.token(MANAGER, digest_hex).encode(), presented):
            role = MANAGER
        if hmac.compare_digest(self.token(WORKER, digest_hex).encode(), presented):
            role = WORKER
        if role is None:
            raise InvalidArgument(WRONG_SECRET)
        return role

    def to_json(self) -> dict[str, str]:
        return {"worker": self.worker, "manager": self.manager}

    @classmethod
    def from_json(cls, data: dict[str, str]) -> "JoinTokens":
        return cls(worker=data["worker"], manager=data["manager"])
