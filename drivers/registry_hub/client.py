"""An OCI distribution / Docker Registry HTTP API v2 client under trio, on httpx.

:class:`HubClient` implements :class:`core.contracts.RegistryClient`; read that module for the
lifecycle.  How a request travels::

    operation (resolve, fetch_blob, push_blob, ...)
      -> endpoints: each mirror configured for the registry, in order, then the registry itself
         (pushes and logins: the registry only).  A mirror that fails in any way -- unreachable,
         5xx, 404, a digest that does not verify -- is skipped; the registry's answer is final.
        -> retries: 5xx, 429 and dropped connections are retried with exponential back-off
           (``attempts`` times, once for a mirror), then ``Unavailable``
          -> scheme: https with verified TLS; for an insecure host (``insecure`` in the config,
             127.0.0.0/8 and ::1 always) plain http first, then https without verification
            -> auth: the credentials the endpoint asked for last time are sent up front; a 401
               is answered once (Basic, or a bearer token from the challenge's realm), a second
               401 is final (``Unauthorized``)
              -> redirects (followed here, not by httpx): ``Authorization`` is never sent to
                 another origin, so blob storage behind a 307 does not see registry tokens

Errors of httpx (connection refused, TLS verification, timeouts) are translated into
``core.errors`` at this boundary, with docker's wording: ``Get "https://host/v2/": tls: failed
to verify certificate: ...``.  Every body read from a registry is bounded: manifests and
indexes by :data:`~core.contracts.registry.MAX_MANIFEST_BYTES`, blobs by their descriptor's
size, error bodies and tokens by small limits.

Blob downloads stream through the content store: :meth:`HubClient.fetch_blob` writes each chunk
to an ingest (``blob-<digest>``) before yielding it, so a download cut by a dropped connection
resumes with ``Range: bytes=<offset>-`` -- in the same call (docker restarts from zero: moby
#25866) or in a later one, even after a daemon restart -- and the blob is committed only once
its size and digest are verified.
"""
from __future__ import annotations

import contextlib
import json
import logging
import re
import ssl
import urllib.parse
from collections.abc import AsyncIterable, AsyncIterator, Awaitable, Callable, Iterable, Mapping
from typing import Any, TypeVar

import attrs
import httpx
import trio

from core import __version__
from core.contracts.content import ContentStore
from core.contracts.registry import (DOCKER_HUB_NAMES, MAX_MANIFEST_BYTES, AuthConfig, BlobSource,
                                     Progress, RegistryConfig, parse_mirror)
from core.errors import (AlreadyExists, Conflict, CoreError, Forbidden, InvalidArgument, NotFound,
                         Unauthorized, Unavailable)
from core.reference import DOCKER_HUB_API_HOST, Reference
from core.types import (INDEX_MEDIA_TYPES, MANIFEST_MEDIA_TYPES, MEDIA_TYPE_DOCKER_MANIFEST,
                        MEDIA_TYPE_DOCKER_MANIFEST_LIST, MEDIA_TYPE_OCI_INDEX,
                        MEDIA_TYPE_OCI_MANIFEST, SCHEMA1_MEDIA_TYPES, Descriptor, Digest)
from drivers.registry_hub.auth import Authenticator, errcode_text

__all__ = ["HubClient", "Endpoint", "MANIFEST_ACCEPT"]

log = logging.getLogger("core.registry")
T = TypeVar("T")

#: what we accept for manifests: never schema 1 (the registry converts or refuses)
MANIFEST_ACCEPT = ", ".join([MEDIA_TYPE_OCI_INDEX, MEDIA_TYPE_DOCKER_MANIFEST_LIST,
                             MEDIA_TYPE_OCI_MANIFEST, MEDIA_TYPE_DOCKER_MANIFEST])
USER_AGENT = f"core/{__version__} (registry hub) httpx/{httpx.__version__}"
MAX_ERROR_BODY = 64 * 1024
MAX_TAG_PAGES = 10_000
MAX_TAGS = 1_000_000
MAX_REDIRECTS = 10
CONFLICT_POLL = 0.05  # s between looks at a blob another task is downloading
_GENERIC_TYPES = ("", "application/json", "text/plain", "application/octet-stream")
_HTTPS_ONLY_HINT = b"HTTP request to an HTTPS server"
_CONTENT_RANGE = re.compile(r"bytes\s+(\d+)-(\d+)/(\d+|\*)", re.ASCII)
_SCHEMA1_MESSAGE = ("schema 1 images are not supported, push the image again with a current "
                    "docker (support for Docker Image manifest version 2, schema 1 has been "
                    "removed; see https://docs.docker.com/go/deprecated-image-specs/)")

#: a request body: bytes, or a factory of a fresh body (called again for each retry)
Body = Callable[[], bytes | AsyncIterable[bytes]] | None


@attrs.frozen
class Endpoint:
    """Where requests for one registry go: a mirror or the registry itself.

    ``scheme`` is fixed by a mirror URL; ``None`` means https, or http-then-https when
    ``insecure``.  ``prefix`` is a path before ``/v2`` on a mirror.
    """

    host: str
    prefix: str = ""
    scheme: str | None = None
    mirror: bool = False
    insecure: bool = False


# ---------------------------------------------------------------------------------- errors
def _exception_chain(exc: BaseException) -> Iterable[BaseException]:
    """``exc``, its causes and contexts, and the members of exception groups among them (trio
    reports each failed connection attempt of a happy-eyeballs connect in a group)."""
    seen: set[int] = set()
    todo: list[BaseException] = [exc]
    while todo:
        e = todo.pop(0)
        if id(e) in seen:
            continue
        seen.add(id(e))
        yield e
        if isinstance(e, BaseExceptionGroup):
            todo.extend(e.exceptions)
        for linked in (e.__cause__, e.__context__):
            if linked is not None:
                todo.append(linked)


def _reason(exc: BaseException) -> str:
    """A short, docker-like reason for a transport failure."""
    for e in _exception_chain(exc):
        if isinstance(e, ssl.SSLCertVerificationError):
            return f"tls: failed to verify certificate: {e.verify_message or e.reason}"
        if isinstance(e, ssl.SSLError):
            return f"tls: {e.reason or e}"
        if isinstance(e, ConnectionRefusedError):
            return "connect: connection refused"
        if isinstance(e, OSError) and e.errno is not None and e.strerror:
            if "getaddrinfo" in str(e) or "Name or service" in e.strerror:
                return f"lookup: {e.strerror}"
    if isinstance(exc, httpx.TimeoutException):
        return f"timeout ({type(exc).__name__})"
    text = str(exc)
    if "CERTIFICATE_VERIFY_FAILED" in text:
        return f"tls: failed to verify certificate: {text}"
    if "connection refused" in text.lower() or "Errno 111" in text:
        return "connect: connection refused"
    return text or type(exc).__name__


class _Unreachable(Unavailable):
    """A transport failure talking to ``url`` (the httpx exception is the ``__cause__``)."""

    def __init__(self, message: str, url: str) -> None:
        super().__init__(message)
        self.url = url


def _transport_error(method: str, url: str, exc: BaseException) -> _Unreachable:
    return _Unreachable(f'{method.title()} "{_redact(url)}": {_reason(exc)}', url)


def _redact(url: str) -> str:
    """A URL fit for an error message: no query (upload state, signed-URL secrets)."""
    return url.split("?", 1)[0]


def _first_code(body: bytes) -> str:
    try:
        doc = json.loads(body[:MAX_ERROR_BODY])
        code = doc["errors"][0]["code"]
        return code if isinstance(code, str) else ""
    except (ValueError, KeyError, IndexError, TypeError):
        return ""


def _origin(url: httpx.URL) -> tuple[str, str, int | None]:
    return (url.scheme, url.host, url.port)


# ---------------------------------------------------------------------------------- client
class HubClient:
    """The registry driver ``hub``: see the module docstring and ``core.contracts.registry``.

    ``content`` is the kernel's content store (blobs land there: any
    :class:`core.contracts.content.ContentStore`); ``config`` the registry
    settings (:class:`RegistryConfig` or its mapping form).  ``attempts``: tries of a request
    that fails with 5xx/429 or cannot connect; ``blob_attempts``: tries of a blob body that
    keeps dropping without progress; ``backoff``: the first pause between tries, doubling.
    """

    def __init__(self, content: ContentStore,
                 config: RegistryConfig | Mapping[str, Any] | None = None, *,
                 attempts: int = 3, blob_attempts: int = 5,
                 backoff: float = 0.25, max_backoff: float = 5.0,
                 timeout: httpx.Timeout | float | None = None,
                 max_connections: int = 32, loopback_insecure: bool = True,
                 user_agent: str = USER_AGENT) -> None:
        self.content = content
        if isinstance(config, RegistryConfig):
            self.config = config
        else:
            self.config = RegistryConfig.from_mapping(config, loopback_insecure=loopback_insecure)
        self.attempts = max(1, attempts)
        self.blob_attempts = max(1, blob_attempts)
        self.backoff = backoff
        self.max_backoff = max_backoff
        if timeout is None:
            timeout = httpx.Timeout(60.0, connect=15.0, pool=None)
        elif not isinstance(timeout, httpx.Timeout):
            timeout = httpx.Timeout(timeout, pool=None)
        limits = httpx.Limits(max_connections=max_connections,
                              max_keepalive_connections=max_connections)
        self._common: dict[str, Any] = dict(timeout=timeout, limits=limits, follow_redirects=False,
                                            headers={"User-Agent": user_agent}, trust_env=True)
        # Plain http and insecure https share the client without certificate checks; the one
        # that verifies is made on first use (loading the system's CA store takes ~20 ms).
        self._verified: httpx.AsyncClient | None = None
        self._unverified = httpx.AsyncClient(verify=False, **self._common)
        self._schemes: dict[str, str] = {}  # insecure host -> the scheme that worked
        self._auth = Authenticator(self._token_send, self._may_send_secrets)
        self._closed = False

    # ------------------------------------------------------------------ plumbing: config
    def _endpoints(self, ref: Reference, *, pull: bool = True) -> list[Endpoint]:
        """The mirrors for ``ref``'s registry (pulls only), then the registry."""
        out = []
        if pull:
            for url in self.config.mirrors.get(ref.domain, ()):
                scheme, host, prefix = parse_mirror(url)
                out.append(Endpoint(host, prefix, scheme, mirror=True,
                                    insecure=self.config.is_insecure(host)))
        out.append(self._upstream(ref.api_host))
        return out

    def _upstream(self, host: str) -> Endpoint:
        return Endpoint(host, insecure=self.config.is_insecure(host))

    def _may_send_secrets(self, url: str) -> bool:
        parts = urllib.parse.urlsplit(url)
        return parts.scheme == "https" or self.config.is_insecure(parts.netloc)

    async def aclose(self) -> None:
        """Close every connection; the client cannot be used afterwards."""
        self._closed = True
        try:
            if self._verified is not None:
                await self._verified.aclose()
        finally:
            await self._unverified.aclose()

    # ------------------------------------------------------------------ plumbing: one HTTP send
    async def _send(self, method: str, url: str, headers: Mapping[str, str],
                    body: Body = None) -> httpx.Response:
        """One request, its response head read, its body not (``aclose`` it).  Transport errors
        become ``Unavailable`` (the httpx exception is the ``__cause__``)."""
        if self._closed:
            raise Unavailable("the registry client is closed")
        parts = httpx.URL(url)
        if parts.scheme != "https" or self.config.is_insecure(parts.netloc.decode()):
            http = self._unverified  # nothing to verify, or not to be verified
        else:
            if self._verified is None:
                self._verified = httpx.AsyncClient(verify=ssl.create_default_context(),
                                                   **self._common)
            http = self._verified
        content = body() if body is not None else None
        try:
            request = http.build_request(method, url, headers=dict(headers), content=content)
            return await http.send(request, stream=True)
        except httpx.HTTPError as exc:
            raise _transport_error(method, url, exc) from exc

    async def _send_following(self, method: str, url: str, headers: Mapping[str, str],
                              body: Body = None) -> httpx.Response:
        """:meth:`_send`, following redirects ourselves: ``Authorization`` never goes to another
        origin, and https never turns into plain http unless the target host is insecure."""
        headers = dict(headers)
        for _hop in range(MAX_REDIRECTS + 1):
            resp = await self._send(method, url, headers, body)
            location = resp.headers.get("location")
            if resp.status_code not in (301, 302, 303, 307, 308) or not location:
                return resp
            await resp.aclose()
            here = httpx.URL(url)
            there = here.join(location)
            if there.scheme not in ("http", "https"):
                raise Unavailable(f'{method.title()} "{_redact(url)}": redirected to an '
                                  f"unsupported URL {_redact(str(there))!r}")
            if (here.scheme == "https" and there.scheme == "http"
                    and not self.config.is_insecure(there.netloc.decode())):
                raise Unavailable(f'{method.title()} "{_redact(url)}": refusing a redirect from '
                                  "https to plain http")
            if _origin(there) != _origin(here):
                headers = {k: v for k, v in headers.items() if k.lower() != "authorization"}
            if resp.status_code == 303 or (resp.status_code in (301, 302) and method == "POST"):
                method, body = "GET", None
            url = str(there)
        raise Unavailable(f'{method.title()} "{_redact(url)}": stopped after {MAX_REDIRECTS} '
                          "redirects")

    # ------------------------------------------------------------------ plumbing: auth + scheme
    def _base(self, ep: Endpoint, scheme: str) -> str:
        return f"{scheme}://{ep.host}{ep.prefix}"

    def _schemes_for(self, ep: Endpoint) -> list[str]:
        if ep.scheme:
            return [ep.scheme]
        if not ep.insecure:
            return ["https"]
        known = self._schemes.get(ep.host)
        return [known] if known else ["http", "https"]

    async def _exchange(self, ep: Endpoint, method: str, target: str, *,
                        scopes: tuple[str, ...], creds: AuthConfig | None,
                        headers: Mapping[str, str] | None = None,
                        body: Body = None) -> httpx.Response:
        """One logical request to ``ep``: scheme choice, credentials, one answer to a 401.

        ``target`` is a path after ``/v2`` (``"/busybox/manifests/latest"``) or an absolute
        URL (an upload ``Location``).  Returns the open response, whatever its status.
        """
        creds = None if ep.mirror else creds  # upstream credentials never go to a mirror
        absolute = "://" in target
        schemes = [httpx.URL(target).scheme] if absolute else self._schemes_for(ep)
        for i, scheme in enumerate(schemes):
            base = self._base(ep, scheme)
            url = target if absolute else f"{base}/v2{target}"
            try:
                resp = await self._authorized(base, method, url, scopes, creds, headers, body)
            except _Unreachable as exc:
                # the port answered but not in this protocol (a refused connection would be
                # refused for the other scheme too)
                cause = exc.__cause__
                wrong_scheme = exc.url == url and (
                    isinstance(cause, (httpx.ReadError, httpx.RemoteProtocolError))
                    or (isinstance(cause, httpx.ConnectError)
                        and _reason(cause) != "connect: connection refused"))
                if wrong_scheme and i + 1 < len(schemes):
                    continue
                raise
            if resp.status_code == 400 and i + 1 < len(schemes):
                async with _closing(resp):
                    head = await _read_some(resp, 512)
                if _HTTPS_ONLY_HINT in head:
                    continue  # Go's answer to plain HTTP on a TLS port
                # not the hint: hand back a response whose body is what we read
                resp = _replay(resp, head)
            if ep.insecure and not ep.scheme:
                self._schemes[ep.host] = scheme
            return resp
        raise AssertionError("unreachable")

    async def _authorized(self, base: str, method: str, url: str, scopes: tuple[str, ...],
                          creds: AuthConfig | None, headers: Mapping[str, str] | None,
                          body: Body) -> httpx.Response:
        same_origin = url.startswith(base + "/")
        authz, fresh = None, False
        if same_origin:
            authz, fresh = await self._auth.authorization(base, scopes, creds)
        for answered in (False, True):
            h = dict(headers or {})
            if authz:
                h["Authorization"] = authz
            resp = await self._send_following(method, url, h, body)
            if resp.status_code != 401 or answered or not same_origin:
                return resp
            challenge = self._auth.learn(base, resp.headers.get_list("www-authenticate"))
            if challenge is None:
                return resp
            wanted = scopes
            if challenge.scheme == "bearer" and not set(challenge.scopes) <= set(scopes):
                wanted = tuple(sorted(set(scopes) | set(challenge.scopes)))
            elif fresh:
                return resp  # a token fetched for this very request was refused: final
            new, fresh = await self._auth.authorization(base, wanted, creds, reject=authz)
            if new is None or new == authz:
                return resp
            await resp.aclose()
            authz = new
        raise AssertionError("unreachable")

    async def _token_send(self, method: str, url: str, headers: dict[str, str],
                          form: dict[str, str] | None) -> tuple[int, Mapping[str, str], bytes]:
        """The Authenticator's HTTP: token requests, retried on 5xx, body bounded."""
        body: Body = None
        if form is not None:
            encoded = urllib.parse.urlencode(form).encode()
            headers = {**headers, "Content-Type": "application/x-www-form-urlencoded"}
            body = lambda: encoded  # noqa: E731
        resp = await self._retrying(lambda: self._send_following(method, url, headers, body),
                                    self.attempts, f'{method.title()} "{_redact(url)}"')
        async with _closing(resp):
            data = await _read_bounded(resp, 1 << 20, "token server answer")
        return resp.status_code, resp.headers, data

    # ------------------------------------------------------------------ plumbing: retries
    async def _pause(self, attempt: int) -> None:
        await trio.sleep(min(self.max_backoff, self.backoff * (2 ** attempt)))

    async def _retrying(self, send: Callable[[], Awaitable[httpx.Response]], attempts: int,
                        what: str) -> httpx.Response:
        """``send()`` until it answers something else than 5xx/429/408 or cannot connect,
        ``attempts`` times at most; then ``Unavailable``."""
        for attempt in range(attempts):
            last = attempt + 1 == attempts
            try:
                resp = await send()
            except _Unreachable:
                if last:
                    raise
                await self._pause(attempt)
                continue
            if resp.status_code >= 500 or resp.status_code in (408, 429):
                if not last:
                    await resp.aclose()
                    await self._pause(attempt)
                    continue
                async with _closing(resp):
                    detail = errcode_text(await _read_bounded(resp, MAX_ERROR_BODY, "error",
                                                              truncate=True))
                reason = f"{resp.status_code} {resp.reason_phrase}".strip()
                if resp.status_code == 429:
                    raise Unavailable(f"{what}: toomanyrequests: {detail or reason}")
                raise Unavailable(f"{what}: received unexpected HTTP status: {reason}"
                                  + (f" ({detail})" if detail else ""))
            return resp
        raise AssertionError("unreachable")

    async def _request(self, ep: Endpoint, method: str, target: str, *,
                       scopes: tuple[str, ...], creds: AuthConfig | None,
                       headers: Mapping[str, str] | None = None,
                       body: Body = None) -> httpx.Response:
        """:meth:`_exchange` with retries (a single try for a mirror)."""
        attempts = 1 if ep.mirror else self.attempts
        where = f"{ep.host}{ep.prefix}"
        return await self._retrying(
            lambda: self._exchange(ep, method, target, scopes=scopes, creds=creds,
                                   headers=headers, body=body),
            attempts, f'{method.title()} "{where}/v2{target if "://" not in target else ""}"')

    async def _on_endpoints(self, ref: Reference, op: Callable[[Endpoint], Awaitable[T]]) -> T:
        """``op(endpoint)`` on each mirror, then the registry; the first that does not raise
        wins.  A mirror's error is logged and skipped, the registry's is raised."""
        for ep in self._endpoints(ref):
            try:
                return await op(ep)
            except CoreError as exc:
                if not ep.mirror:
                    raise
                log.info("mirror %s%s failed for %s, trying the next: %s", ep.host, ep.prefix,
                         ref, exc)
        raise AssertionError("unreachable: the registry itself is always the last endpoint")

    # ------------------------------------------------------------------ plumbing: statuses
    async def _fail(self, resp: httpx.Response, ref: Reference | None, what: str,
                    creds: AuthConfig | None, digest: Digest | None = None) -> None:
        """Read the error body of ``resp`` and raise the matching ``core.errors`` exception.

        ``what``: ``manifest``, ``blob``, ``tags`` (pulls: ``ref`` is needed), ``push`` or
        ``login``.
        """
        body = b""
        if resp.request.method != "HEAD":
            async with _closing(resp):
                body = await _read_bounded(resp, MAX_ERROR_BODY, "error", truncate=True)
        status = resp.status_code
        detail = errcode_text(body)
        code = _first_code(body)
        pulling = ref is not None and what in ("manifest", "blob", "tags")
        anonymous = creds is None or creds.anonymous
        denied = "" if ref is None else (
            f"pull access denied for {ref.familiar_name}, repository does not exist or may "
            "require 'docker login'")
        if status == 404 or code in ("MANIFEST_UNKNOWN", "NAME_UNKNOWN", "BLOB_UNKNOWN"):
            if code == "NAME_UNKNOWN" and pulling:
                raise NotFound(f"{denied}: {detail}")
            if ref is None:
                raise NotFound(detail or f"not found: {resp.request.method} "
                               f"{_redact(str(resp.url))}")
            if what == "manifest":
                raise NotFound(f"manifest for {ref.familiar()} not found: "
                               f"{detail or 'manifest unknown: manifest unknown'}")
            if what == "blob":
                raise NotFound(f"blob {digest} not found in {ref.familiar_name}: "
                               f"{detail or 'blob unknown: blob unknown to registry'}")
            if what == "tags":
                raise NotFound(f"{denied}: {detail or 'name unknown'}")
            raise NotFound(detail or f"not found: {resp.request.method} {_redact(str(resp.url))}")
        if status == 401:
            detail = detail or "unauthorized: authentication required"
            if pulling and anonymous:
                raise Unauthorized(f"{denied}: {detail}")
            raise Unauthorized(detail)
        if status == 403:
            detail = detail or "denied: requested access to the resource is denied"
            raise Forbidden(f"{denied}: {detail}" if pulling else detail)
        if status in (400, 411, 413, 416):
            raise InvalidArgument(detail or f"the registry refused the request: {status} "
                                  f"{resp.reason_phrase}")
        if status == 405:
            raise Forbidden(detail or "unsupported: the registry does not allow this operation")
        raise CoreError(f"received unexpected HTTP status: {status} {resp.reason_phrase}"
                        + (f" ({detail})" if detail else ""))

    # ================================================================== pulling
    async def resolve(self, ref: Reference, auth: AuthConfig | Mapping[str, str] | None = None
                      ) -> tuple[Descriptor, bytes]:
        """See :meth:`core.contracts.RegistryClient.resolve`."""
        creds = AuthConfig.coerce(auth)
        name = str(ref.digest) if ref.digest is not None else (ref.tag or "latest")
        scopes = (f"repository:{ref.path}:pull",)

        async def one(ep: Endpoint) -> tuple[Descriptor, bytes]:
            resp = await self._request(ep, "GET", f"/{ref.path}/manifests/{name}",
                                       scopes=scopes, creds=creds,
                                       headers={"Accept": MANIFEST_ACCEPT})
            if resp.status_code != 200:
                await self._fail(resp, ref, "manifest", creds)
            async with _closing(resp):
                data = await _read_bounded(resp, MAX_MANIFEST_BYTES, f"manifest for {ref}")
            media_type = _manifest_media_type(resp.headers.get("content-type", ""), data, ref)
            digest = Digest.from_bytes(data, ref.digest.algorithm if ref.digest else "sha256")
            if ref.digest is not None and digest != ref.digest:
                raise InvalidArgument(f"manifest for {ref}: the registry sent content with "
                                      f"digest {digest}")
            _check_content_digest(resp, data, f"manifest for {ref}")
            return Descriptor(media_type, digest, len(data)), data

        return await self._on_endpoints(ref, one)

    async def fetch_manifest(self, ref: Reference, desc: Descriptor,
                             auth: AuthConfig | Mapping[str, str] | None = None) -> bytes:
        """See :meth:`core.contracts.RegistryClient.fetch_manifest`."""
        creds = AuthConfig.coerce(auth)
        if desc.size > MAX_MANIFEST_BYTES:
            raise InvalidArgument(f"manifest {desc.digest} is {desc.size} bytes, more than the "
                                  f"{MAX_MANIFEST_BYTES} allowed")
        accept = MANIFEST_ACCEPT
        if desc.media_type not in accept:
            accept = f"{desc.media_type}, {accept}"
        scopes = (f"repository:{ref.path}:pull",)
        what = f"manifest {ref.name}@{desc.digest}"

        async def one(ep: Endpoint) -> bytes:
            resp = await self._request(ep, "GET", f"/{ref.path}/manifests/{desc.digest}",
                                       scopes=scopes, creds=creds, headers={"Accept": accept})
            if resp.status_code != 200:
                await self._fail(resp, ref.with_tag(None).with_digest(desc.digest), "manifest",
                                 creds)
            async with _closing(resp):
                data = await _read_bounded(resp, desc.size, what)
            _verify(data, desc, what)
            return data

        return await self._on_endpoints(ref, one)

    async def tags(self, ref: Reference, auth: AuthConfig | Mapping[str, str] | None = None
                   ) -> list[str]:
        """See :meth:`core.contracts.RegistryClient.tags`.  Follows ``Link: <...>; rel="next"``
        pages on the endpoint that answered the first one."""
        creds = AuthConfig.coerce(auth)
        scopes = (f"repository:{ref.path}:pull",)

        async def page(ep: Endpoint, target: str) -> tuple[list[str], str | None]:
            resp = await self._request(ep, "GET", target, scopes=scopes, creds=creds,
                                       headers={"Accept": "application/json"})
            if resp.status_code != 200:
                await self._fail(resp, ref, "tags", creds)
            async with _closing(resp):
                data = await _read_bounded(resp, MAX_MANIFEST_BYTES, f"tag list of {ref.name}")
            try:
                doc = json.loads(data)
                found = doc.get("tags") or []
            except (ValueError, AttributeError):
                raise InvalidArgument(f"tag list of {ref.name}: not a JSON object") from None
            if not isinstance(found, list) or not all(isinstance(t, str) for t in found):
                raise InvalidArgument(f"tag list of {ref.name}: tags is not a list of strings")
            return found, _next_link(resp, ep)

        async def all_pages(ep: Endpoint) -> list[str]:
            out: list[str] = []
            target: str | None = f"/{ref.path}/tags/list"
            for _ in range(MAX_TAG_PAGES):
                if target is None:
                    return out
                found, target = await page(ep, target)
                out.extend(found)
                if len(out) > MAX_TAGS:
                    raise InvalidArgument(f"tag list of {ref.name}: more than {MAX_TAGS} tags")
            raise InvalidArgument(f"tag list of {ref.name}: more than {MAX_TAG_PAGES} pages")

        return await self._on_endpoints(ref, all_pages)

    async def _open_blob(self, ep: Endpoint, ref: Reference, desc: Descriptor,
                         creds: AuthConfig | None, offset: int) -> httpx.Response:
        """An open response for the blob's bytes from ``offset``: 200 (all) or 206 (rest)."""
        headers = {"Accept-Encoding": "identity"}
        if offset:
            headers["Range"] = f"bytes={offset}-"
        resp = await self._request(ep, "GET", f"/{ref.path}/blobs/{desc.digest}",
                                   scopes=(f"repository:{ref.path}:pull",), creds=creds,
                                   headers=headers)
        if resp.status_code == 206 and offset:
            m = _CONTENT_RANGE.match(resp.headers.get("content-range", ""))
            if m is None or int(m.group(1)) != offset:
                await resp.aclose()
                raise InvalidArgument(f"blob {desc.digest}: asked for bytes {offset}-, the "
                                      f"registry sent {resp.headers.get('content-range')!r}")
            return resp
        if resp.status_code != 200:
            await self._fail(resp, ref, "blob", creds, desc.digest)
        return resp

    async def fetch_blob(self, ref: Reference, desc: Descriptor,
                         auth: AuthConfig | Mapping[str, str] | None = None,
                         progress: Progress | None = None) -> AsyncIterator[bytes]:
        """See :meth:`core.contracts.RegistryClient.fetch_blob`.

        In order: a blob already in the content store streams from there; another task
        downloading the same blob is waited for; a partial ingest is resumed -- its bytes are
        yielded first, then ``Range: bytes=<offset>-`` asks for the rest (a registry that sends
        the whole blob again, 200, has its first ``offset`` bytes skipped); a connection that
        drops mid-body is resumed the same way, after a pause, up to ``blob_attempts`` times in
        a row without progress.  At the end size and digest are verified and the blob
        committed; on a mismatch ``InvalidArgument`` and nothing is kept.
        """
        creds = AuthConfig.coerce(auth)
        store = self.content
        total = 0

        def advance(n: int) -> None:
            nonlocal total
            total += n
            if progress is not None:
                progress(total)

        ingest = None
        while ingest is None:
            if store.exists(desc.digest):
                have = store.size(desc.digest)
                if have != desc.size:
                    raise InvalidArgument(f"blob {desc.digest}: {desc.size} bytes expected, the "
                                          f"content store holds {have}")
                async with contextlib.aclosing(store.open(desc.digest)) as chunks:
                    async for chunk in chunks:
                        advance(len(chunk))
                        yield chunk
                return
            try:
                ingest = store.ingest(f"blob-{desc.digest}", desc)
            except AlreadyExists:
                continue
            except Conflict:
                await trio.sleep(CONFLICT_POLL)  # another task is downloading it

        with ingest:  # leaving without commit keeps the partial data for a later resume
            async with contextlib.aclosing(ingest.prefix()) as chunks:
                async for chunk in chunks:
                    advance(len(chunk))
                    yield chunk
            failures = 0
            while ingest.offset < desc.size:
                offset = ingest.offset
                last_error: BaseException | None = None
                resp = await self._on_endpoints(
                    ref, lambda ep: self._open_blob(ep, ref, desc, creds, offset))
                skip = offset if resp.status_code == 200 else 0
                try:
                    async for chunk in resp.aiter_raw():
                        if skip:
                            dropped = min(skip, len(chunk))
                            chunk, skip = chunk[dropped:], skip - dropped
                            if not chunk:
                                continue
                        await ingest.write(chunk)
                        advance(len(chunk))
                        yield chunk
                except httpx.TransportError as exc:  # dropped, reset, timed out: resume
                    last_error = exc
                finally:
                    with trio.move_on_after(5, shield=True):
                        await resp.aclose()
                if ingest.offset >= desc.size:
                    break
                failures = 0 if ingest.offset > offset else failures + 1
                if failures >= self.blob_attempts:
                    why = _reason(last_error) if last_error else "the body ended early"
                    raise Unavailable(f"downloading blob {desc.digest} from {ref.name}: no "
                                      f"progress after {failures} attempts at byte "
                                      f"{ingest.offset} of {desc.size}: {why}")
                log.info("blob %s: connection dropped at %d of %d bytes (%s); resuming",
                         desc.digest, ingest.offset, desc.size,
                         _reason(last_error) if last_error else "short body")
                await self._pause(failures)
            try:
                await ingest.commit()
            except InvalidArgument as exc:
                raise InvalidArgument(f"failed to verify blob {desc.digest} of {ref.name}: "
                                      f"{exc}") from exc

    async def fetch_blob_to_store(self, ref: Reference, desc: Descriptor,
                                  auth: AuthConfig | Mapping[str, str] | None = None,
                                  progress: Progress | None = None) -> None:
        """See :meth:`core.contracts.RegistryClient.fetch_blob_to_store`."""
        if self.content.exists(desc.digest) and self.content.size(desc.digest) == desc.size:
            return
        async with contextlib.aclosing(self.fetch_blob(ref, desc, auth, progress)) as chunks:
            async for _ in chunks:
                pass

    # ================================================================== pushing
    def _push_body(self, desc: Descriptor, data_source: BlobSource) -> Body:
        if data_source is None:
            store = self.content
            if store.size(desc.digest) != desc.size:  # NotFound if it is not there
                raise InvalidArgument(f"blob {desc.digest}: {desc.size} bytes expected, the "
                                      f"content store holds {store.size(desc.digest)}")
            return lambda: store.open(desc.digest)
        if isinstance(data_source, (bytes, bytearray, memoryview)):
            data = bytes(data_source)
            _verify(data, desc, f"blob {desc.digest}")
            return lambda: data
        if callable(data_source):
            return data_source
        if isinstance(data_source, AsyncIterable):
            used = False

            def once() -> AsyncIterable[bytes]:  # a one-shot stream: no retry after it started
                nonlocal used
                if used:
                    raise Unavailable(f"push of {desc.digest} failed and its data cannot be "
                                      "read again (pass a factory or None to allow retries)")
                used = True
                return data_source

            return once
        raise InvalidArgument("push_blob: data_source must be bytes, a callable returning an "
                              "async iterator of bytes, an async iterable, or None")

    async def push_blob(self, ref: Reference, desc: Descriptor, data_source: BlobSource = None,
                        auth: AuthConfig | Mapping[str, str] | None = None) -> bool:
        """See :meth:`core.contracts.RegistryClient.push_blob`.  A monolithic upload: ``POST``
        an upload session, ``PUT <location>&digest=...`` with the whole body (retried from a new
        session when the connection drops)."""
        creds = AuthConfig.coerce(auth)
        body = self._push_body(desc, data_source)
        ep = self._upstream(ref.api_host)
        scopes = (f"repository:{ref.path}:pull,push",)
        resp = await self._request(ep, "HEAD", f"/{ref.path}/blobs/{desc.digest}", scopes=scopes,
                                   creds=creds)
        await resp.aclose()
        if resp.status_code == 200:
            return False
        if resp.status_code != 404:
            await self._fail(resp, None, "push", creds, desc.digest)
        for attempt in range(self.attempts):
            resp = await self._request(ep, "POST", f"/{ref.path}/blobs/uploads/", scopes=scopes,
                                       creds=creds, headers={"Content-Length": "0"})
            location = resp.headers.get("location")
            if resp.status_code != 202 or not location:
                if resp.status_code == 202:
                    await resp.aclose()
                    raise Unavailable(f"push of {desc.digest}: the registry opened an upload "
                                      "without a Location")
                await self._fail(resp, None, "push", creds, desc.digest)
            await resp.aclose()
            url = resp.url.join(location)
            url = url.copy_merge_params({"digest": str(desc.digest)})
            headers = {"Content-Type": "application/octet-stream",
                       "Content-Length": str(desc.size)}
            try:
                resp = await self._exchange(ep, "PUT", str(url), scopes=scopes, creds=creds,
                                            headers=headers, body=body)
            except Unavailable:
                if attempt + 1 == self.attempts:
                    raise
                await self._pause(attempt)
                continue
            if resp.status_code >= 500 and attempt + 1 < self.attempts:
                await resp.aclose()
                await self._pause(attempt)
                continue
            if resp.status_code not in (201, 204):
                await self._fail(resp, None, "push", creds, desc.digest)
            await resp.aclose()
            _check_header_digest(resp, desc.digest, f"blob {desc.digest}")
            return True
        raise AssertionError("unreachable")

    async def push_manifest(self, ref: Reference, media_type: str, data: bytes,
                            auth: AuthConfig | Mapping[str, str] | None = None) -> Descriptor:
        """See :meth:`core.contracts.RegistryClient.push_manifest`."""
        creds = AuthConfig.coerce(auth)
        if len(data) > MAX_MANIFEST_BYTES:
            raise InvalidArgument(f"manifest is {len(data)} bytes, more than the "
                                  f"{MAX_MANIFEST_BYTES} allowed")
        digest = Digest.from_bytes(data)
        if ref.digest is not None and Digest.from_bytes(data, ref.digest.algorithm) != ref.digest:
            raise InvalidArgument(f"manifest does not match the digest of {ref}")
        desc = Descriptor(media_type, digest, len(data))
        name = ref.tag or str(ref.digest or "latest")
        ep = self._upstream(ref.api_host)
        resp = await self._request(ep, "PUT", f"/{ref.path}/manifests/{name}",
                                   scopes=(f"repository:{ref.path}:pull,push",), creds=creds,
                                   headers={"Content-Type": media_type}, body=lambda: data)
        if resp.status_code not in (200, 201, 202):
            await self._fail(resp, None, "push", creds)
        await resp.aclose()
        _check_header_digest(resp, digest, f"manifest {ref}")
        return desc

    # ================================================================== login
    async def login(self, serveraddress: str, auth: AuthConfig | Mapping[str, str]) -> str:
        """See :meth:`core.contracts.RegistryClient.login`.  ``GET /v2/`` with the credentials
        (a bearer flow asks the token server for a token for ``account=<user>``, no scope)."""
        creds = AuthConfig.coerce(auth)
        ep = self._upstream(_login_host(serveraddress))
        resp = await self._request(ep, "GET", "/", scopes=(), creds=creds)
        if resp.status_code != 200:
            await self._fail(resp, None, "login", creds)
        await resp.aclose()
        return "Login Succeeded"


# ---------------------------------------------------------------------------------- helpers
@contextlib.asynccontextmanager
async def _closing(resp: httpx.Response) -> AsyncIterator[httpx.Response]:
    try:
        yield resp
    finally:
        with trio.move_on_after(5, shield=True):
            await resp.aclose()


async def _read_bounded(resp: httpx.Response, limit: int, what: str, *,
                        truncate: bool = False) -> bytes:
    """The body of ``resp``, at most ``limit`` bytes: more is ``InvalidArgument`` (or, with
    ``truncate``, cut off).  Transport errors are ``Unavailable``."""
    length = resp.headers.get("content-length")
    if not truncate and length and length.isdigit() and int(length) > limit:
        raise InvalidArgument(f"{what} is {length} bytes, more than the {limit} allowed")
    buf = bytearray()
    try:
        async for chunk in resp.aiter_bytes():
            buf += chunk
            if len(buf) > limit:
                if truncate:
                    return bytes(buf[:limit])
                raise InvalidArgument(f"{what} is more than the {limit} bytes allowed")
    except httpx.HTTPError as exc:
        raise _transport_error(resp.request.method, str(resp.url), exc) from exc
    return bytes(buf)


async def _read_some(resp: httpx.Response, limit: int) -> bytes:
    try:
        return await _read_bounded(resp, limit, "response", truncate=True)
    except Unavailable:
        return b""


def _replay(resp: httpx.Response, body: bytes) -> httpx.Response:
    """A closed response with the same status and headers and ``body`` as its content."""
    headers = [(k, v) for k, v in resp.headers.multi_items()
               if k.lower() not in ("content-length", "transfer-encoding", "content-encoding")]
    return httpx.Response(resp.status_code, headers=headers, content=body, request=resp.request)


def _verify(data: bytes, desc: Descriptor, what: str) -> None:
    if len(data) != desc.size:
        raise InvalidArgument(f"{what}: {len(data)} bytes, expected {desc.size}")
    got = Digest.from_bytes(data, desc.digest.algorithm)
    if got != desc.digest:
        raise InvalidArgument(f"{what}: content has digest {got}")


def _check_content_digest(resp: httpx.Response, data: bytes, what: str) -> None:
    header = resp.headers.get("docker-content-digest")
    if not header:
        return
    try:
        claimed = Digest.parse(header.strip())
    except InvalidArgument:
        raise InvalidArgument(f"{what}: invalid Docker-Content-Digest {header!r}") from None
    if Digest.from_bytes(data, claimed.algorithm) != claimed:
        raise InvalidArgument(f"{what}: the registry says {claimed}, the content hashes to "
                              f"{Digest.from_bytes(data, claimed.algorithm)}")


def _check_header_digest(resp: httpx.Response, digest: Digest, what: str) -> None:
    header = resp.headers.get("docker-content-digest")
    if header and header.strip() != str(digest):
        raise InvalidArgument(f"{what}: the registry stored it as {header.strip()}")


def _manifest_media_type(content_type: str, data: bytes, ref: Reference) -> str:
    """The media type of a manifest: its ``Content-Type``, or for a generic one the document's
    ``mediaType`` or shape.  Schema 1 and unknown types are ``InvalidArgument``."""
    mt = content_type.split(";", 1)[0].strip().lower()
    if mt in SCHEMA1_MEDIA_TYPES:
        raise InvalidArgument(f"unsupported manifest media type {mt} for {ref.familiar()}: "
                              + _SCHEMA1_MESSAGE)
    if mt in MANIFEST_MEDIA_TYPES or mt in INDEX_MEDIA_TYPES:
        return mt
    if mt in _GENERIC_TYPES:
        try:
            doc = json.loads(data)
        except ValueError:
            doc = None
        if isinstance(doc, dict):
            inner = doc.get("mediaType")
            if inner in SCHEMA1_MEDIA_TYPES or (inner is None and doc.get("schemaVersion") == 1):
                raise InvalidArgument(
                    f"unsupported manifest media type "
                    f"{inner or 'application/vnd.docker.distribution.manifest.v1+json'} for "
                    f"{ref.familiar()}: " + _SCHEMA1_MESSAGE)
            if inner in MANIFEST_MEDIA_TYPES or inner in INDEX_MEDIA_TYPES:
                return inner
            if inner is None and doc.get("schemaVersion") == 2:
                if isinstance(doc.get("manifests"), list):
                    return MEDIA_TYPE_OCI_INDEX
                if isinstance(doc.get("config"), dict) and isinstance(doc.get("layers"), list):
                    return MEDIA_TYPE_OCI_MANIFEST
    raise InvalidArgument(f"unsupported manifest media type {mt or '(none)'!s} for "
                          f"{ref.familiar()}")


def _next_link(resp: httpx.Response, ep: Endpoint) -> str | None:
    """The next page of a paginated list, as a target for the same endpoint (``Link: <url>;
    rel="next"``), or ``None``."""
    for value in resp.headers.get_list("link"):
        for part in value.split(","):
            m = re.match(r'\s*<([^>]*)>\s*;(.*)', part)
            if m and re.search(r'rel="?next"?', m.group(2)):
                url = urllib.parse.urlsplit(m.group(1))
                path = url.path
                prefix = f"{ep.prefix}/v2"
                if not path.startswith(prefix + "/"):
                    return None
                target = path[len(prefix):]
                return target + (f"?{url.query}" if url.query else "")
    return None


def _login_host(serveraddress: str) -> str:
    """The registry host of a ``docker login`` server address: Docker Hub for ``""``,
    ``docker.io``, ``index.docker.io`` and ``https://index.docker.io/v1/``."""
    text = (serveraddress or "").strip()
    if "://" in text:
        text = urllib.parse.urlsplit(text).netloc
    text = text.split("/", 1)[0].lower()
    if not text or text in DOCKER_HUB_NAMES:
        return DOCKER_HUB_API_HOST
    return text
