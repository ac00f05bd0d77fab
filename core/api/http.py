"""A small HTTP/1.1 server for the Engine API: h11 over trio streams, and its routing table.

Routes are data.  Each route module (``core.api.images``, ``core.api.system``, ...) declares a
module-level table, ``ROUTES``, and the daemon (``Daemon._routes``, the one place) hands the
:class:`Router` each table with the service its handlers call: ``router.include(ROUTES,
services)``::

    ROUTES = [
        ("GET", "/images/json", list_images),
        ("GET", "/images/{name:path}/json", inspect_image),
        Route("PUT", "/containers/{id}/archive", put_archive, stream_body=True),
    ]

    async def list_images(req: Request, services: ImageServices) -> Response:
        ...  # parse the request, call one service method, render

A route is a ``(method, path, handler)`` tuple or a :class:`Route` (which can also say
``stream_body``).  A handler is a module-level ``async def handler(request, services) ->
Response``: ``services`` is whatever object was given to :meth:`Router.include` (each route
module types it with a small Protocol of what it uses).  Path parameters are ``{name}`` (one
segment) or ``{name:path}`` (the rest, slashes included); their values are in
``request.params``.  Routes are tried in the order added; a ``HEAD`` request takes the first
``GET`` or ``HEAD`` route that matches; :meth:`Router.resolve` finds none for a path no route
matches, or a known path asked with another method, and the daemon answers docker's ``404
{"message": "page not found"}`` (moby's router makes no 405 either: its
``MethodNotAllowedHandler`` is its not-found handler).  The endpoints of the API that core
does not serve are a table too: :mod:`core.api.unimplemented`.

A response body is bytes or an async iterator of bytes (sent chunked: pull progress, ``logs
-f``, events).  A response with ``hijack`` set answers ``101 UPGRADED`` and hands the raw stream
to that callable (attach, exec).

Before a handler runs, the daemon checks the request with :mod:`core.api.validate` (by the
route's pattern, which :meth:`Router.match` gives): a body of a route with a schema is decoded
and checked there, and :meth:`Request.json` then answers the checked body, its keys in the API's
case.  Any JSON a handler parses itself (:meth:`Request.json`, :meth:`Request.qjson`,
:meth:`Request.filters`) goes through :func:`core.api.validate.loads`, whose nesting is bounded.

Errors raised by handlers become docker's JSON errors, ``{"message": "..."}``, with the status of
the :class:`core.errors.CoreError` subclass; anything else is logged with its traceback and
answered 500 — a client never sees a Python traceback.  Malformed HTTP gets 400 (a chunk size
that cannot be valid too, at once), oversized headers 431, oversized bodies 413, request lines
of another HTTP than 1.x 505 — except that on routes added with ``stream_body=True`` (``docker
cp`` uploads) the handlers read the body as it arrives from :attr:`Request.body_stream`, of any
size.  Every response carries the headers given to :class:`HTTPServer` (docker's
``Api-Version``, ``Docker-Experimental``, ``Ostype``) and a reason phrase; error answers are
logged.
"""
from __future__ import annotations

import functools
import http
import io
import json
import logging
import re
import socket
import urllib.parse
from typing import Any, AsyncIterator, Awaitable, Callable, Iterable, Union

import attrs
import h11
import trio

from core.api.validate import loads
from core.errors import CoreError, InvalidArgument

log = logging.getLogger("core.http")
_UNSET: Any = object()

MAX_HEADER_BYTES = 1024 * 1024  # as Go's net/http
MAX_BODY_BYTES = 16 * 1024 * 1024
MAX_CHUNK_BYTES = 2 ** 63 - 1  # a chunk of a streamed body (Go's limit: its length is an int64)
RECEIVE_SIZE = 64 * 1024
JSON = "application/json"


def parse_bool(value: str | None, default: bool = False) -> bool:
    """Docker's boolean query values: ``1``/``true``/``True`` are true, ``0``/``false``/empty false."""
    if value is None:
        return default
    v = value.strip().lower()
    if v in ("1", "true", "yes"):
        return True
    if v in ("", "0", "false", "no"):
        return False
    raise InvalidArgument(f'invalid boolean value "{value}"')


@attrs.define
class Request:
    method: str
    path: str  # without the /vX.Y prefix, percent-decoded
    query: dict[str, list[str]]
    headers: dict[str, str]  # lower-case names
    body: bytes = b""
    api_version: str = ""
    params: dict[str, str] = attrs.field(factory=dict)
    stream: Any = None  # the connection's trio stream, for hijacking handlers
    drivers: dict[str, str] = attrs.field(factory=dict)  # the driver of each kind for this request
    body_stream: BodyStream | None = None  # routes with stream_body=True: the body, unread
    pattern: str = ""  # the route's path pattern, once resolved
    target: str = ""  # the request target as sent (path and query, not decoded)
    _json: Any = attrs.field(default=_UNSET, init=False, repr=False)

    def q(self, name: str, default: str | None = None) -> str | None:
        values = self.query.get(name)
        return values[-1] if values else default

    def qbool(self, name: str, default: bool = False) -> bool:
        try:
            return parse_bool(self.q(name), default)
        except InvalidArgument:
            raise InvalidArgument(f'invalid value for "{name}": {self.q(name)!r} is not a boolean') from None

    def qint(self, name: str, default: int | None = None) -> int | None:
        value = self.q(name)
        if value is None or value == "":
            return default
        try:
            number = int(value)
        except ValueError:
            raise InvalidArgument(f'invalid value for "{name}": {value!r} is not an integer') from None
        if not -(2 ** 63) <= number < 2 ** 63:   # Go's strconv.Atoi: out of range
            raise InvalidArgument(f'invalid value for "{name}": {value!r} is out of range')
        return number

    def qjson(self, name: str, default: Any = None) -> Any:
        """A query parameter holding JSON (docker's ``filters``)."""
        value = self.q(name)
        if not value:
            return default
        return loads(value, f'the value of "{name}"')

    def filters(self, known: set[str] | frozenset[str] | None = None) -> dict[str, list[str]]:
        """docker's ``filters`` parameter: ``{"name": ["x"]}`` (or the old ``{"name": {"x": true}}``,
        or a bare string) as ``{"name": ["x"]}``.  Keys outside ``known`` are docker's
        ``invalid filter 'key'`` error."""
        raw = self.qjson("filters", {}) or {}
        if not isinstance(raw, dict):
            raise InvalidArgument("invalid filters: expected a JSON object")
        out: dict[str, list[str]] = {}
        for key, value in raw.items():
            if known is not None and key not in known:
                raise InvalidArgument(f"invalid filter '{key}'")
            if isinstance(value, dict):
                out[key] = [k for k, v in value.items() if v]
            elif isinstance(value, list):
                out[key] = [str(v) for v in value]
            elif isinstance(value, str):
                out[key] = [value]
            else:
                raise InvalidArgument(f"invalid filter '{key}'")
        return out

    def json(self, default: Any = None) -> Any:
        """The JSON body; for a route with a schema (:mod:`core.api.validate`), as validated."""
        if self._json is not _UNSET:
            return self._json
        if not self.body.strip():
            return default
        return loads(self.body)

    def set_json(self, value: Any) -> None:
        """What :meth:`json` answers from now on (the body as :mod:`core.api.validate` decoded it)."""
        self._json = value


class BodyStream:
    """A request body read as it arrives: ``await receive()`` gives the next piece, ``b""`` at
    the end; :meth:`reader` is the same as a blocking file for a trio worker thread.  A body
    cut short raises ``InvalidArgument``."""

    def __init__(self, conn: h11.Connection, stream: trio.abc.Stream) -> None:
        self._conn, self._stream = conn, stream
        self.done = False

    async def receive(self) -> bytes:
        while not self.done:
            if self._conn.they_are_waiting_for_100_continue:
                await _send(self._conn, self._stream, h11.InformationalResponse(status_code=100, headers=[],
                                                                                   reason=b"Continue"))
            try:
                event = await _receive_event(self._conn, self._stream, MAX_CHUNK_BYTES)
            except h11.RemoteProtocolError as exc:
                raise InvalidArgument(f"the request body ended early: {exc}") from None
            if isinstance(event, h11.Data):
                if event.data:
                    return bytes(event.data)
            elif isinstance(event, h11.EndOfMessage):
                self.done = True
            else:
                raise InvalidArgument("the client closed the connection before the end of the body")
        return b""

    async def drain(self, limit: int = 256 * 1024, seconds: float = 1.0) -> bool:
        """Read and drop the rest, if it is small and comes soon; whether it all came (the
        connection can then serve another request, as Go's server does for unread bodies)."""
        with trio.move_on_after(seconds):
            try:
                while not self.done and limit > 0:
                    limit -= len(await self.receive())
            except InvalidArgument:
                return False
        return self.done

    def reader(self) -> io.BufferedReader:
        """The body as a binary file for another thread (the trio loop stays free); made in
        the trio loop, read outside it."""
        return io.BufferedReader(_ThreadReader(self, trio.lowlevel.current_trio_token()), 1 << 20)


class _ThreadReader(io.RawIOBase):
    def __init__(self, body: BodyStream, token: trio.lowlevel.TrioToken) -> None:
        self._body, self._token = body, token
        self._buf = memoryview(b"")

    def readable(self) -> bool:
        return True

    def readinto(self, b: Any) -> int:
        if not self._buf:
            self._buf = memoryview(trio.from_thread.run(self._body.receive, trio_token=self._token))
        n = min(len(b), len(self._buf))
        b[:n] = self._buf[:n]
        self._buf = self._buf[n:]
        return n


Body = bytes | AsyncIterator[bytes]


@attrs.define
class Response:
    status: int = 200
    body: Body = b""
    content_type: str | None = JSON
    headers: list[tuple[str, str]] = attrs.field(factory=list)
    hijack: Callable[[Any, bytes], Awaitable[None]] | None = None


def json_response(obj: Any, status: int = 200, headers: list[tuple[str, str]] | None = None) -> Response:
    return Response(status=status, body=json.dumps(obj).encode() + b"\n", headers=headers or [])


def error_response(status: int, message: str) -> Response:
    return json_response({"message": message}, status=status)


def no_content() -> Response:
    return Response(status=204, body=b"", content_type=None)


Handler = Callable[[Request], Awaitable[Response]]
# a route table's handler: ``await handler(request, services)``
ServiceHandler = Callable[[Request, Any], Awaitable[Response]]
_PARAM = re.compile(r"\{(\w+)(:path)?\}")


@attrs.frozen
class Route:
    """One entry of a route table: ``method`` and ``path`` pattern to ``handler(request,
    services)``; ``stream_body``: the handler reads the body itself (``Request.body_stream``)."""

    method: str
    path: str
    handler: ServiceHandler
    stream_body: bool = False


RouteEntry = Union[Route, tuple[str, str, ServiceHandler]]


class Router:
    """Routes by method and path pattern: ``/containers/{id}/json``, ``/images/{name:path}/json``."""

    def __init__(self) -> None:
        self._routes: list[tuple[str, re.Pattern[str], Handler, str]] = []
        self._streaming: set[Handler] = set()

    def include(self, routes: Iterable[RouteEntry], services: Any) -> None:
        """Add a route table: each handler is called as ``handler(request, services)``."""
        for entry in routes:
            route = entry if isinstance(entry, Route) else Route(*entry)
            self.add(route.method, route.path, _bind(route.handler, services), stream_body=route.stream_body)

    def add(self, method: str, pattern: str, handler: Handler, stream_body: bool = False) -> None:
        """``stream_body``: the handler reads the body itself (``Request.body_stream``), any size."""
        regex = _PARAM.sub(lambda m: f"(?P<{m.group(1)}>{'.+' if m.group(2) else '[^/]+'})", pattern)
        self._routes.append((method, re.compile(f"^{regex}$"), handler, pattern))
        if stream_body:
            self._streaming.add(handler)

    def routes(self) -> list[tuple[str, str]]:
        """Every route, ``(method, path pattern)``, in the order they are tried."""
        return [(method, pattern) for method, _regex, _handler, pattern in self._routes]

    def streams_body(self, method: str, path: str) -> bool:
        handler, _params = self.resolve(method, path)
        return handler is not None and handler in self._streaming

    def resolve(self, method: str, path: str) -> tuple[Handler | None, dict[str, str]]:
        handler, params, _pattern = self.match(method, path)
        return handler, params

    def match(self, method: str, path: str) -> tuple[Handler | None, dict[str, str], str]:
        """The handler of a request, its path parameters and the route's pattern."""
        lookup = "GET" if method == "HEAD" else method
        for m, regex, handler, pattern in self._routes:
            if m == lookup or (m == "HEAD" and method == "HEAD"):
                match = regex.match(path)
                if match:
                    return handler, match.groupdict(), pattern
        return None, {}, ""


def _bind(handler: ServiceHandler, services: Any) -> Handler:
    @functools.wraps(handler)
    async def bound(request: Request) -> Response:
        return await handler(request, services)

    return bound


def _chunk_left(conn: h11.Connection) -> int:
    """What is left of the chunk h11 is reading (the size its header announced): h11 keeps it
    in its chunked reader, and has no public name for it."""
    return getattr(getattr(conn, "_reader", None), "_bytes_in_chunk", 0) or 0


async def _receive_event(conn: h11.Connection, stream: trio.abc.Stream, max_chunk: int = MAX_BODY_BYTES) -> Any:
    """The next h11 event.  A chunk announcing more than ``max_chunk`` bytes is refused (400)
    at once: waiting for data that can never be taken would hang the connection."""
    while True:
        event = conn.next_event()
        if event is not h11.NEED_DATA:
            return event
        left = _chunk_left(conn)
        if left > max_chunk:
            raise h11.RemoteProtocolError(f"invalid chunk size {left}: larger than a request body "
                                          f"may be ({max_chunk} bytes)", error_status_hint=400)
        data = await stream.receive_some(RECEIVE_SIZE)
        conn.receive_data(data)  # b"" means EOF, which h11 turns into ConnectionClosed or an error


async def _send(conn: h11.Connection, stream: trio.abc.Stream, event: Any) -> None:
    data = conn.send(event)
    if data:
        await stream.send_all(data)


def listen_backlog() -> int:
    """The listen backlog Go's net package uses: the kernel's ``net.core.somaxconn``."""
    try:
        with open("/proc/sys/net/core/somaxconn") as f:
            n = int(f.read().split()[0])
    except (OSError, ValueError, IndexError):
        return socket.SOMAXCONN
    return n if n > 0 else socket.SOMAXCONN


def _short(text: str, limit: int = 200) -> str:
    return text if len(text) <= limit else f"{text[:limit]}...({len(text)} characters)"


def _message_of(response: Response) -> str:
    if isinstance(response.body, (bytes, bytearray)) and response.content_type == JSON:
        try:
            message = json.loads(response.body).get("message")
        except (ValueError, AttributeError):
            message = None
        if isinstance(message, str):
            return message
    return ""


class HTTPServer:
    """Serves ``dispatch(request) -> Response`` over any trio listener.

    Every response carries the ``Server`` header and ``headers`` (the daemon's docker version
    headers: ``Api-Version``, ``Docker-Experimental``, ``Ostype``), and a reason phrase in its
    status line.  A request line of another HTTP than 1.x is answered 505, as Go's server does.
    Every request is logged at debug level (``Calling GET /v1.47/info``, as dockerd ``-D``),
    every error answer at info (4xx) or error (5xx) level with its status and message.
    """

    def __init__(self, dispatch: Callable[[Request], Awaitable[Response]], server_header: str,
                 streams_body: Callable[[str, str], bool] | None = None,
                 headers: Iterable[tuple[str, str]] = ()) -> None:
        """``streams_body(method, path)``: whether that request's body is left to its handler."""
        self.dispatch = dispatch
        self.server_header = server_header
        self.streams_body = streams_body
        self.headers = [("Server", server_header), *headers]

    async def handle(self, stream: trio.abc.Stream) -> None:
        conn = h11.Connection(h11.SERVER, max_incomplete_event_size=MAX_HEADER_BYTES)
        try:
            while True:
                early: Response | None = None
                try:
                    request = await self._read_request(conn, stream)
                except h11.RemoteProtocolError as exc:
                    early = error_response(exc.error_status_hint or 400, f"bad request: {exc}")
                except _BodyTooLarge:
                    early = error_response(413, f"request body too large (more than {MAX_BODY_BYTES} bytes)")
                except _VersionNotSupported:
                    early = error_response(505, "unsupported protocol version")
                if early is not None:
                    _log_answer(conn, None, early)
                    if conn.our_state in (h11.IDLE, h11.SEND_RESPONSE):
                        await self._send_response(conn, stream, early, False)
                        await _linger(stream)
                    return
                if request is None:
                    return
                log.debug("Calling %s %s", request.method, _short(request.target))
                response = await self.dispatch(request)
                _log_answer(conn, request, response)
                unread = request.body_stream is not None and not await request.body_stream.drain()
                if unread:   # answered before reading the body: the connection cannot go on
                    response.headers.append(("Connection", "close"))
                await self._send_response(conn, stream, response, request.method == "HEAD")
                if response.hijack is not None:
                    leftover, _closed = conn.trailing_data
                    await response.hijack(stream, leftover)
                    return
                if unread:
                    await _linger(stream)
                    return
                if conn.our_state is h11.MUST_CLOSE or conn.their_state is h11.MUST_CLOSE:
                    return
                try:
                    conn.start_next_cycle()
                except h11.LocalProtocolError:
                    return
        except (trio.BrokenResourceError, trio.ClosedResourceError):
            pass
        except Exception:  # a bug of ours: log it, drop the connection, keep serving others
            log.exception("error while serving a connection")
        finally:
            with trio.move_on_after(1) as scope:
                scope.shield = True
                await stream.aclose()

    async def _read_request(self, conn: h11.Connection, stream: trio.abc.Stream) -> Request | None:
        event = await _receive_event(conn, stream)
        if isinstance(event, h11.ConnectionClosed):
            return None
        assert isinstance(event, h11.Request)
        if not event.http_version.startswith(b"1."):
            raise _VersionNotSupported()
        method = event.method.decode("ascii", "replace").upper()
        target = event.target.decode("latin-1")
        raw_path, _, raw_query = target.partition("?")
        headers: dict[str, str] = {}
        for name, value in event.headers:
            headers[name.decode("latin-1").lower()] = value.decode("latin-1")
        request = Request(method=method, path=urllib.parse.unquote(raw_path),
                          query=urllib.parse.parse_qs(raw_query, keep_blank_values=True),
                          headers=headers, stream=stream, target=target)
        if self.streams_body is not None and self.streams_body(method, request.path):
            request.body_stream = BodyStream(conn, stream)
            return request
        if int(headers.get("content-length") or 0) > MAX_BODY_BYTES:
            raise _BodyTooLarge()
        body = bytearray()
        while True:
            ev = await _receive_event(conn, stream)
            if isinstance(ev, h11.Data):
                body += ev.data
                if len(body) > MAX_BODY_BYTES:
                    raise _BodyTooLarge()
            elif isinstance(ev, h11.EndOfMessage):
                break
            elif isinstance(ev, h11.ConnectionClosed):
                return None
        request.body = bytes(body)
        return request

    async def _send_response(self, conn: h11.Connection, stream: trio.abc.Stream, response: Response,
                             head_only: bool) -> None:
        own = {name.lower() for name, _value in response.headers}
        headers = [(name, value) for name, value in self.headers if name.lower() not in own]
        if response.content_type:
            headers.append(("Content-Type", response.content_type))
        headers += response.headers
        if response.hijack is not None:
            headers += [("Connection", "Upgrade"), ("Upgrade", "tcp")]
            await _send(conn, stream, h11.InformationalResponse(status_code=101, headers=headers,
                                                                reason=b"UPGRADED"))
            return
        body = response.body
        if isinstance(body, (bytes, bytearray)):
            headers.append(("Content-Length", str(len(body))))
            await _send(conn, stream, h11.Response(status_code=response.status, headers=headers,
                                                   reason=_reason(response.status)))
            if body and not head_only and response.status not in (204, 304):
                await _send(conn, stream, h11.Data(data=body))
            await _send(conn, stream, h11.EndOfMessage())
            return
        # a streamed body: chunked; the iterator is closed whatever happens to the client
        await _send(conn, stream, h11.Response(status_code=response.status, headers=headers,
                                               reason=_reason(response.status)))
        try:
            if not head_only:
                async for chunk in body:
                    if chunk:
                        await _send(conn, stream, h11.Data(data=chunk))
        finally:
            aclose = getattr(body, "aclose", None)
            if aclose is not None:
                with trio.CancelScope(shield=True):
                    await aclose()
        await _send(conn, stream, h11.EndOfMessage())


class _BodyTooLarge(Exception):
    pass


class _VersionNotSupported(Exception):
    pass


def _reason(status: int) -> bytes:
    try:
        return http.HTTPStatus(status).phrase.encode()
    except ValueError:
        return b""


def _log_answer(conn: h11.Connection, request: Request | None, response: Response) -> None:
    """An error answer in the daemon log: method, path, status and message."""
    if response.status < 400:
        return
    if request is not None:
        what = f"{request.method} {_short(request.target)}"
    else:
        what = "a malformed request"
    level = logging.ERROR if response.status >= 500 and response.status not in (501, 503) else logging.INFO
    log.log(level, "%s: %d %s", what, response.status, _short(_message_of(response), 500))


async def _linger(stream: trio.abc.Stream, limit: int = 64 * 1024 * 1024, seconds: float = 2.0) -> None:
    """After an early error answer, read and drop what the client is still sending for a moment.

    Closing a socket with unread input makes the kernel send RST, and the client may then lose
    the answer it has not read yet.
    """
    with trio.move_on_after(seconds):
        try:
            send_eof = getattr(stream, "send_eof", None)
            if send_eof is not None:
                await send_eof()
            while limit > 0:
                data = await stream.receive_some(RECEIVE_SIZE)
                if not data:
                    return
                limit -= len(data)
        except (trio.BrokenResourceError, trio.ClosedResourceError):
            pass


async def dispatch_errors(handler: Handler, request: Request) -> Response:
    """Run ``handler``, turning errors into docker's JSON error responses."""
    try:
        return await handler(request)
    except CoreError as exc:
        response = error_response(exc.status, exc.message or type(exc).__name__)
        response.headers.append(("X-Core-Error", type(exc).__name__))
        return response
    except Exception as exc:
        log.exception("internal error handling %s %s", request.method, request.path)
        return error_response(500, f"internal error: {type(exc).__name__}: {exc}")
