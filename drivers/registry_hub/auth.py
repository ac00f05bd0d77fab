"""Registry authentication: ``WWW-Authenticate`` challenges, bearer tokens and their cache.

A registry answers an unauthenticated request with ``401`` and a challenge::

    WWW-Authenticate: Bearer realm="https://auth.example/token",service="registry.example",
                      scope="repository:library/alpine:pull"
    WWW-Authenticate: Basic realm="registry"

For ``Basic`` the client resends with the credentials.  For ``Bearer`` it asks the *realm* (the
token server) for a token covering the scopes it needs -- ``GET realm?service=...&scope=...``,
anonymously or with ``Authorization: Basic`` (the token spec), or ``POST realm`` with an OAuth2
``refresh_token`` grant when it holds an identity token from ``docker login`` -- and resends
with ``Authorization: Bearer <token>``.

:class:`Authenticator` remembers, per endpoint (scheme, host and port), the last challenge, so
later requests carry credentials up front instead of collecting a 401 each time; and it caches
tokens per (realm, service, scopes, credentials) until they expire (``expires_in``, 60 s when
absent), fetching one token at a time per key however many tasks ask at once.
"""
from __future__ import annotations

import base64
import hashlib
import json
import time
import urllib.parse
from collections.abc import Awaitable, Callable, Iterable, Mapping

import attrs
import trio

from core.contracts.registry import AuthConfig
from core.errors import Unauthorized, Unavailable

__all__ = ["Challenge", "parse_challenges", "Authenticator", "TokenResponse", "errcode_text",
           "CLIENT_ID"]

CLIENT_ID = "core"
DEFAULT_EXPIRES_IN = 60  # seconds; the token spec's default and minimum
MAX_TOKEN_BODY = 1 << 20

#: ``send(method, url, headers, form) -> (status, headers, body)``: the client's HTTP, with
#: retries of 5xx and error translation, the body read with a bound
Send = Callable[[str, str, dict[str, str], "dict[str, str] | None"],
                Awaitable[tuple[int, Mapping[str, str], bytes]]]


@attrs.frozen
class Challenge:
    """One challenge of a ``WWW-Authenticate`` header: ``scheme`` (lower case) and its
    parameters (keys lower case)."""

    scheme: str
    params: dict[str, str] = attrs.field(factory=dict, hash=False)

    @property
    def realm(self) -> str:
        return self.params.get("realm", "")

    @property
    def service(self) -> str:
        return self.params.get("service", "")

    @property
    def scopes(self) -> tuple[str, ...]:
        return tuple(s for s in self.params.get("scope", "").split(" ") if s)


def _token_char(c: str) -> bool:
    return c.isalnum() or c in "!#$%&'*+-.^_`|~/="


def parse_challenges(values: Iterable[str]) -> list[Challenge]:
    """Parse ``WWW-Authenticate`` header values (RFC 7235: several challenges per value,
    comma-separated, parameters as ``key=token`` or ``key="quoted \\"string\\""``).

    Lenient: what cannot be parsed is skipped, never raised.
    """
    out: list[Challenge] = []
    for value in values:
        s, i, n = value, 0, len(value)

        def skip(chars: str = " \t,") -> None:
            nonlocal i
            while i < n and s[i] in chars:
                i += 1

        def token() -> str:
            nonlocal i
            start = i
            while i < n and _token_char(s[i]) and s[i] != "=":
                i += 1
            return s[start:i]

        current: Challenge | None = None
        while i < n:
            skip()
            start = i
            name = token()
            if not name:
                i += 1  # junk character
                continue
            skip(" \t")
            if current is not None and i < n and s[i] == "=":
                i += 1
                skip(" \t")
                if i < n and s[i] == '"':
                    i += 1
                    chars = []
                    while i < n and s[i] != '"':
                        if s[i] == "\\" and i + 1 < n:
                            i += 1
                        chars.append(s[i])
                        i += 1
                    i += 1
                    val = "".join(chars)
                else:
                    vstart = i
                    while i < n and s[i] not in ", \t":
                        i += 1
                    val = s[vstart:i]
                current.params[name.lower()] = val
                continue
            if current is None or i >= n or s[i] != "=":
                # a new challenge (token68 forms such as "Negotiate abc==" are not used by
                # registries: the token is read as a parameterless scheme)
                i = start + len(name)
                current = Challenge(name.lower(), {})
                out.append(current)
    return out


def errcode_text(body: bytes) -> str:
    """The message of a registry's JSON error body, formatted as Go's ``errcode.Error`` is:
    ``"manifest unknown: manifest unknown"`` (code lower-cased, ``_`` as spaces, then the
    message).  ``""`` when the body is not such a document."""
    try:
        doc = json.loads(body[:65536])
    except ValueError:
        return ""
    if not isinstance(doc, dict):
        return ""
    errors = doc.get("errors")
    if isinstance(errors, list) and errors and isinstance(errors[0], dict):
        first = errors[0]
        code = first.get("code")
        message = first.get("message")
        code_text = code.lower().replace("_", " ") if isinstance(code, str) else ""
        if isinstance(message, str) and message:
            return f"{code_text}: {message}" if code_text else message
        return code_text
    # OAuth2-style token server errors
    if isinstance(doc.get("error"), str):
        detail = doc.get("error_description") or doc.get("details")
        return f"{doc['error']}: {detail}" if isinstance(detail, str) and detail else doc["error"]
    return ""


@attrs.frozen
class TokenResponse:
    """What a token server answered: the token and when it stops being used (monotonic s)."""

    token: str = attrs.field(repr=False)
    expires_at: float
    refresh_token: str = attrs.field(default="", repr=False)


def _creds_key(creds: AuthConfig | None) -> str:
    """Identifies credentials in cache keys without keeping secrets in them."""
    if creds is None or creds.anonymous:
        return ""
    material = json.dumps(creds.to_json(), sort_keys=True).encode()
    return hashlib.sha256(material).hexdigest()


def _basic_header(user: str, password: str) -> str:
    return "Basic " + base64.b64encode(f"{user}:{password}".encode()).decode()


class Authenticator:
    """Challenges per endpoint and tokens per scope, shared by every task of one client.

    ``send`` performs the token requests (see :data:`Send`); ``is_secure(url)`` says whether
    credentials may be sent to that URL (https, or a host configured as insecure).
    """

    def __init__(self, send: Send, is_secure: Callable[[str], bool], *,
                 clock: Callable[[], float] = time.monotonic) -> None:
        self._send = send
        self._is_secure = is_secure
        self._clock = clock
        self._challenges: dict[str, Challenge] = {}
        self._tokens: dict[tuple[str, ...], TokenResponse] = {}
        self._locks: dict[tuple[str, ...], trio.Lock] = {}
        self.tokens_fetched = 0

    # ------------------------------------------------------------------ challenges
    def learn(self, endpoint: str, header_values: Iterable[str]) -> Challenge | None:
        """Record the challenge of a 401 from ``endpoint`` (Bearer preferred over Basic);
        return it, or ``None`` when there is no usable one."""
        chosen = None
        for ch in parse_challenges(header_values):
            if ch.scheme == "bearer" and ch.realm:
                chosen = ch
                break
            if ch.scheme == "basic" and chosen is None:
                chosen = ch
        if chosen is not None:
            self._challenges[endpoint] = chosen
        return chosen

    def challenge(self, endpoint: str) -> Challenge | None:
        return self._challenges.get(endpoint)

    # ------------------------------------------------------------------ headers
    async def authorization(self, endpoint: str, scopes: tuple[str, ...],
                            creds: AuthConfig | None, *, reject: str | None = None
                            ) -> tuple[str | None, bool]:
        """``(value, fresh)``: the ``Authorization`` value for a request to ``endpoint`` needing
        ``scopes`` -- ``None`` when no challenge is known, or Basic is asked for and there are no
        credentials -- and whether it is a token just fetched (a refusal of it is final).
        ``reject``: a value the registry just refused; a cached token equal to it is not
        reused.  Raises ``Unauthorized`` when the token server refuses the credentials.
        """
        ch = self._challenges.get(endpoint)
        if ch is None:
            return None, False
        if ch.scheme == "basic":
            basic = creds.basic() if creds is not None else None
            return (_basic_header(*basic) if basic else None), False
        if creds is not None and creds.registrytoken:
            return f"Bearer {creds.registrytoken}", False
        scopes = tuple(sorted(set(scopes)))
        key = (ch.realm, ch.service, " ".join(scopes), _creds_key(creds))
        lock = self._locks.setdefault(key, trio.Lock())
        async with lock:  # one fetch per key, whoever else is waiting reuses it
            cached = self._tokens.get(key)
            if (cached is not None and cached.expires_at > self._clock()
                    and f"Bearer {cached.token}" != reject):
                return f"Bearer {cached.token}", False
            self._tokens.pop(key, None)
            token = await self.fetch_token(ch, scopes, creds)
            self._tokens[key] = token
            return f"Bearer {token.token}", True

    # ------------------------------------------------------------------ token server
    async def fetch_token(self, ch: Challenge, scopes: Iterable[str], creds: AuthConfig | None,
                          *, offline: bool = False) -> TokenResponse:
        """Ask the realm of ``ch`` for a token for ``scopes``.

        With an identity token: OAuth2 ``POST`` (``grant_type=refresh_token``).  Otherwise
        ``GET`` with ``Authorization: Basic`` when there are credentials (and ``account=``), or
        anonymously.  ``offline`` asks for a refresh token too (``docker login``).  Raises
        ``Unauthorized`` (refused), ``Unavailable`` (unreachable, not a token).
        """
        realm = ch.realm
        parsed = urllib.parse.urlsplit(realm)
        if parsed.scheme not in ("http", "https") or not parsed.netloc:
            raise Unavailable(f"invalid token realm {realm!r} in the registry's challenge")
        scopes = list(scopes)
        basic = creds.basic() if creds is not None else None
        secret = bool(basic) or bool(creds is not None and creds.identitytoken)
        if secret and not self._is_secure(realm):
            raise Unauthorized(f"refusing to send credentials to the token server {realm} over "
                               "plain HTTP (configure the registry as insecure to allow it)")
        headers = {"Accept": "application/json"}
        if creds is not None and creds.identitytoken:
            form = {"grant_type": "refresh_token", "refresh_token": creds.identitytoken,
                    "client_id": CLIENT_ID}
            if ch.service:
                form["service"] = ch.service
            if scopes:
                form["scope"] = " ".join(scopes)
            if offline:
                form["access_type"] = "offline"
            status, _h, body = await self._send("POST", realm, headers, form)
        else:
            query: list[tuple[str, str]] = []
            if ch.service:
                query.append(("service", ch.service))
            query.extend(("scope", s) for s in scopes)
            if basic:
                query.append(("account", basic[0]))
                headers["Authorization"] = _basic_header(*basic)
            if offline:
                query.append(("offline_token", "true"))
                query.append(("client_id", CLIENT_ID))
            sep = "&" if parsed.query else "?"
            url = realm + (sep + urllib.parse.urlencode(query) if query else "")
            status, _h, body = await self._send("GET", url, headers, None)
        if status in (401, 403):
            detail = errcode_text(body) or "authentication required"
            if not detail.startswith(("unauthorized", "denied")):
                detail = f"unauthorized: {detail}"
            raise Unauthorized(detail)
        if status != 200:
            detail = errcode_text(body)
            raise Unavailable(f"token server {realm} answered {status}"
                              + (f": {detail}" if detail else ""))
        try:
            doc = json.loads(body)
        except ValueError:
            raise Unavailable(f"token server {realm} answered something that is not JSON") from None
        if not isinstance(doc, dict):
            raise Unavailable(f"token server {realm} answered something that is not a token")
        token = doc.get("token") or doc.get("access_token")
        if not isinstance(token, str) or not token:
            raise Unavailable(f"token server {realm} answered without a token")
        expires_in = doc.get("expires_in")
        if not isinstance(expires_in, int) or isinstance(expires_in, bool) or expires_in <= 0:
            expires_in = DEFAULT_EXPIRES_IN
        # stop using a token a little before the server does (clock skew, request time)
        margin = min(10.0, expires_in / 10)
        refresh = doc.get("refresh_token")
        self.tokens_fetched += 1
        return TokenResponse(token, self._clock() + expires_in - margin,
                             refresh if isinstance(refresh, str) else "")
