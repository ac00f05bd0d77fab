"""The node-to-manager channel: mutual TLS on the swarm listen address (default port 2377).

Every node (managers too) talks to the managers over this channel: it joins, renews its
certificate, keeps a dispatcher session and heartbeats.  It runs on trio with
``trio.SSLStream`` and stdlib ``ssl`` contexts built from the swarm CA material
(:class:`core.engine.swarm.ca.NodeCredentials`).

Wire protocol
-------------
Length-prefixed JSON frames: a 4-byte big-endian length, then that many bytes of a UTF-8 JSON
object (at most 16 MiB).  A connection carries one call at a time::

    client → {"id": 1, "call": "ca.renew", "args": {...}}
    server → {"id": 1, "result": ...}                          a plain call
    server → {"id": 1, "error": {"kind": "Forbidden", "message": "..."}}
    server → {"id": 1, "item": ...}  ...  {"id": 1, "result": ...}   a streaming call

``kind`` names a :mod:`core.errors` class; the client raises that class with the message.

Who may call what
-----------------
The server presents its node certificate (a manager's: the client checks the server name
``swarm-manager``, so a worker cannot pose as a manager) and asks for the client's certificate,
which is verified against the swarm's trust bundle when presented.  Each call is registered with
an access level (:class:`Access`):

``PUBLIC``
    no client certificate needed: ``ca.root`` (the trust bundle) and ``ca.join`` (a join token
    and a CSR → a node certificate).  The joining node has pinned the CA by the token's digest
    before it sends the token (:func:`join`).
``NODE``
    any node of this swarm with a valid certificate whose node ID is not revoked:
    ``ca.renew``, ``session``, ``heartbeat``.
``MANAGER``
    only certificates with ``OU=swarm-manager``.

A handler sees the caller as a :class:`Peer` (node ID, role, cluster ID from its certificate).

Built-in calls
--------------
:class:`CAService` (on managers) — ``ca.root`` → ``{"bundle"}``; ``ca.join`` ``{token, csr,
role?, ip_addresses?}`` → ``{"node_id", "role", "chain", "bundle"}``; ``ca.renew`` ``{csr,
ip_addresses?}`` → ``{"node_id", "role", "chain", "bundle"}`` (the role is the one the swarm has
for the node now: promotions and demotions take effect at renewal; the bundle carries a root
rotation; a manager keeps its IP addresses unless it sends new ones).

:class:`Sessions` (the dispatcher's) — ``session`` (streaming) opens a node's session: the first
item is ``{"session_id", "period"}``, then the messages :meth:`Sessions.send` queues for that node;
``heartbeat`` ``{session_id}`` → ``{"period"}``; a node whose heartbeats stop for
``period × 3`` is reported by :meth:`Sessions.expired`.

Removing a node: ``ClusterCA.revoke(node_id)`` makes every later call of that node Forbidden
(``node <id> was removed from the swarm``), on open connections too; ``Sessions.close(node_id)``
ends its open session stream.  An expired certificate fails the TLS handshake itself: such a
node has to join again.

Client side
-----------
:func:`fetch_ca` and :func:`join` (no certificate yet), and :class:`ManagerClient`: calls and
streams with a node certificate over a list of manager addresses, failing over to the next
manager when one cannot be reached; :meth:`ManagerClient.renew` renews the certificate and
:meth:`ManagerClient.keep_renewed` is the renewal loop (a trio task).
"""
from __future__ import annotations

import datetime as dt
import enum
import itertools
import json
import logging
import math
import secrets
import ssl
import struct
import time
from contextlib import asynccontextmanager
from typing import Any, AsyncIterator, Awaitable, Callable, Iterable, Sequence

import attrs
import trio

from core import errors
from core.engine.swarm import ca as swarm_ca
from core.engine.swarm import tokens as swarm_tokens
from core.engine.swarm.ca import MANAGER_ROLE, ClusterCA, NodeCredentials, NodeIdentity

DEFAULT_PORT = 2377
MAX_FRAME = 16 << 20
HANDSHAKE_TIMEOUT = 10.0
CONNECT_TIMEOUT = 5.0
DEFAULT_HEARTBEAT_PERIOD = 5.0
GRACE_MULTIPLIER = 3

_HEADER = struct.Struct(">I")
log = logging.getLogger(__name__)


class Access(enum.Enum):
    PUBLIC = "public"
    NODE = "node"
    MANAGER = "manager"


@attrs.frozen
class Peer:
    """The caller of a call: its certificate's identity (None for a node without one yet)."""

    identity: NodeIdentity | None
    address: str

    @property
    def node_id(self) -> str | None:
        return self.identity.node_id if self.identity else None


def parse_address(address: str | tuple[str, int], default_port: int = DEFAULT_PORT
                  ) -> tuple[str, int]:
    """``host``, ``host:port``, ``[v6]:port`` or a ``(host, port)`` pair."""
    if isinstance(address, tuple):
        return str(address[0]), int(address[1])
    text = str(address).strip()
    host, port = text, default_port
    if text.startswith("["):
        end = text.find("]")
        if end < 0:
            raise errors.InvalidArgument(f"invalid address {text!r}")
        host, rest = text[1:end], text[end + 1:]
        if rest:
            if not rest.startswith(":"):
                raise errors.InvalidArgument(f"invalid address {text!r}")
            port = rest[1:]
    elif text.count(":") == 1:
        host, port = text.split(":")
    try:
        port = int(port)
    except ValueError:
        raise errors.InvalidArgument(f"invalid port in address {text!r}") from None
    if not host or not 0 < port < 65536:
        raise errors.InvalidArgument(f"invalid address {text!r}")
    return host, port


def format_address(host: str, port: int) -> str:
    return f"[{host}]:{port}" if ":" in host else f"{host}:{port}"


# --- frames ------------------------------------------------------------------------------

class _Frames:
    """Length-prefixed JSON frames over a trio stream."""

    def __init__(self, stream: trio.abc.Stream) -> None:
        self.stream = stream
        self._buf = bytearray()

    async def _fill(self, n: int) -> bool:
        while len(self._buf) < n:
            chunk = await self.stream.receive_some(65536)
            if not chunk:
                return False
            self._buf += chunk
        return True

    async def receive(self) -> dict | None:
        """The next frame, or None at a clean end of stream."""
        if not await self._fill(_HEADER.size):
            if self._buf:
                raise errors.Unavailable("connection closed in the middle of a frame")
            return None
        (size,) = _HEADER.unpack_from(self._buf)
        if size > MAX_FRAME:
            raise errors.InvalidArgument(f"frame of {size} bytes is over the limit")
        if not await self._fill(_HEADER.size + size):
            raise errors.Unavailable("connection closed in the middle of a frame")
        body = bytes(self._buf[_HEADER.size:_HEADER.size + size])
        del self._buf[:_HEADER.size + size]
        try:
            frame = json.loads(body)
        except ValueError:
            raise errors.InvalidArgument("a frame is not JSON") from None
        if not isinstance(frame, dict):
            raise errors.InvalidArgument("a frame is not a JSON object")
        return frame

    async def send(self, frame: dict) -> None:
        body = json.dumps(frame, separators=(",", ":")).encode()
        if len(body) > MAX_FRAME:
            raise errors.InvalidArgument(f"frame of {len(body)} bytes is over the limit")
        await self.stream.send_all(_HEADER.pack(len(body)) + body)


def _error_frame(call_id: Any, exc: BaseException) -> dict:
    """The error answer: the nearest :mod:`core.errors` class of ``exc`` and its message."""
    kind = next((c.__name__ for c in type(exc).__mro__
                 if c.__module__ == errors.__name__ and issubclass(c, errors.CoreError)),
                "CoreError")
    return {"id": call_id, "error": {"kind": kind, "message": str(exc)}}


def _raise_remote(error: Any) -> None:
    if not isinstance(error, dict):
        raise errors.CoreError(f"malformed error from the manager: {error!r}")
    cls = getattr(errors, str(error.get("kind")), None)
    if not (isinstance(cls, type) and issubclass(cls, errors.CoreError)):
        cls = errors.CoreError
    exc = cls(str(error.get("message", "")))
    exc.remote = True  # the manager answered: no reason to fail over
    raise exc


# --- server ------------------------------------------------------------------------------

Handler = Callable[..., Awaitable[Any]]


@attrs.frozen
class _Call:
    handler: Handler
    access: Access
    stream: bool


def _manager_only(peer: Peer) -> errors.Forbidden:
    return errors.Forbidden(
        f"Permission denied: node {peer.node_id} is a {peer.identity.role}: "
        f"remote certificate not part of OUs: [{MANAGER_ROLE}]")


class Server:
    """A manager's side of the channel: TLS, the caller's identity, access checks, dispatch.

    ``credentials`` is the manager's own :class:`NodeCredentials` (replace it with
    :meth:`update_credentials` after a renewal); ``is_revoked(node_id)`` says whether a node
    was removed from the swarm.  Register calls with :meth:`register`, then run
    :meth:`serve` as a trio task.
    """

    def __init__(self, credentials: NodeCredentials, *,
                 is_revoked: Callable[[str], bool] = lambda node_id: False) -> None:
        self._calls: dict[str, _Call] = {}
        self.is_revoked = is_revoked
        self.update_credentials(credentials)

    def update_credentials(self, credentials: NodeCredentials) -> None:
        """New connections use these (a renewed certificate, a new trust bundle)."""
        identity = credentials.identity
        if not identity.is_manager:
            raise errors.InvalidArgument("only a manager's certificate can serve the swarm "
                                         f"channel (this one is {identity.role})")
        self._ctx = credentials.server_context()
        self.credentials = credentials
        self.cluster_id = identity.cluster_id

    def register(self, name: str, handler: Handler, *, access: Access = Access.NODE,
                 stream: bool = False) -> None:
        """``await handler(peer, args)`` → result, or for a streaming call
        ``await handler(peer, args, send)`` with ``await send(item)`` → final result.
        Handlers raise :mod:`core.errors` classes; the caller gets kind and message."""
        if name in self._calls:
            raise errors.AlreadyExists(f"call {name!r} is already registered")
        self._calls[name] = _Call(handler, access, stream)

    async def serve(self, host: str = "0.0.0.0", port: int = DEFAULT_PORT, *,
                    task_status=trio.TASK_STATUS_IGNORED) -> None:
        """Listen on ``host:port`` until cancelled; ``task_status.started`` gets the bound
        ``(host, port)`` (port 0 picks a free one).  Errors of one connection (a failed
        handshake, a peer gone) close that connection only."""
        try:
            listeners = await trio.open_tcp_listeners(port, host=host)
        except OSError as exc:  # docker's words
            raise errors.Unavailable(f"listen tcp {format_address(host, port)}: bind: "
                                     f"{(exc.strerror or str(exc)).lower()}") from None
        bound = listeners[0].socket.getsockname()[:2]
        async with trio.open_nursery() as nursery:
            for listener in listeners:
                nursery.start_soon(self._accept_loop, listener, nursery)
            task_status.started((bound[0], bound[1]))

    async def _accept_loop(self, listener: trio.SocketListener, nursery) -> None:
        async with listener:
            while True:
                tcp = await listener.accept()
                nursery.start_soon(self._connection, tcp)

    async def _connection(self, tcp: trio.SocketStream) -> None:
        try:
            remote = format_address(*tcp.socket.getpeername()[:2])
        except OSError:
            remote = "?"
        stream = trio.SSLStream(tcp, self._ctx, server_side=True)
        try:
            with trio.fail_after(HANDSHAKE_TIMEOUT):
                await stream.do_handshake()
            der = stream.getpeercert(binary_form=True)
            identity = swarm_ca.identity_of(der) if der else None
            peer = Peer(identity=identity, address=remote)
            frames = _Frames(stream)
            while True:
                request = await frames.receive()
                if request is None:
                    break
                await self._dispatch(peer, frames, request)
        except (trio.BrokenResourceError, trio.ClosedResourceError, trio.TooSlowError,
                ssl.SSLError, OSError, errors.CoreError):
            pass  # a failed handshake, a peer gone, a malformed frame: this connection ends
        except Exception:
            log.exception("swarm connection from %s failed", remote)
        finally:
            with trio.move_on_after(1) as scope:
                scope.shield = True
                try:
                    await stream.aclose()
                except (trio.BrokenResourceError, trio.ClosedResourceError, OSError):
                    pass

    def _authorize(self, peer: Peer, call: _Call) -> None:
        if call.access is Access.PUBLIC:
            return
        if peer.identity is None:
            raise errors.Unauthorized("this call needs a node certificate of the swarm")
        if peer.identity.cluster_id != self.cluster_id:
            raise errors.Forbidden("Permission denied: remote certificate not part of "
                                   f"organization: {self.cluster_id}")
        if self.is_revoked(peer.identity.node_id):
            raise errors.Forbidden(f"node {peer.identity.node_id} was removed from the swarm")
        if call.access is Access.MANAGER and not peer.identity.is_manager:
            raise _manager_only(peer)

    async def _dispatch(self, peer: Peer, frames: _Frames, request: dict) -> None:
        call_id = request.get("id")
        name, args = request.get("call"), request.get("args", {})
        try:
            call = self._calls.get(name) if isinstance(name, str) else None
            if call is None:
                raise errors.NotFound(f"unknown call {name!r}")
            if not isinstance(args, dict):
                raise errors.InvalidArgument("the arguments of a call are a JSON object")
            self._authorize(peer, call)
            if call.stream:
                result = await self._run_stream(call, peer, args, frames, call_id)
            else:
                result = await call.handler(peer, args)
        except (trio.BrokenResourceError, trio.ClosedResourceError):
            raise  # the connection is gone: nobody to answer
        except errors.CoreError as exc:
            await frames.send(_error_frame(call_id, exc))
            return
        except (KeyError, TypeError, ValueError) as exc:
            await frames.send(_error_frame(call_id, errors.InvalidArgument(
                f"bad arguments for {name}: {exc!r}")))
            return
        except Exception as exc:  # a handler's bug answers this call, it never ends serve()
            log.exception("swarm call %s from %s failed", name, peer.address)
            await frames.send(_error_frame(call_id, errors.CoreError(
                f"{name} failed: {type(exc).__name__}: {exc}")))
            return
        await frames.send({"id": call_id, "result": result})

    async def _run_stream(self, call: _Call, peer: Peer, args: dict, frames: _Frames,
                          call_id: Any) -> Any:
        """Run a streaming handler while watching the connection: when the client hangs up
        (or sends anything: a stream ends the client's turn), the handler is cancelled."""
        outcome: dict = {}

        async def send(item: Any) -> None:
            await frames.send({"id": call_id, "item": item})

        async def run() -> None:
            outcome["result"] = await call.handler(peer, args, send)
            nursery.cancel_scope.cancel()

        async def watch() -> None:
            try:
                await frames.stream.receive_some(1)
            except (trio.BrokenResourceError, trio.ClosedResourceError, OSError,
                    ssl.SSLError):
                pass
            outcome["gone"] = True
            nursery.cancel_scope.cancel()

        async with trio.open_nursery() as nursery:
            nursery.start_soon(run)
            nursery.start_soon(watch)
        if "result" not in outcome:
            raise trio.ClosedResourceError("the client closed the stream")
        return outcome["result"]


# --- the CA calls ------------------------------------------------------------------------

def _str_arg(args: dict, name: str) -> str:
    value = args.get(name)
    if not isinstance(value, str) or not value:
        raise errors.InvalidArgument(f"missing argument {name!r}")
    return value


def _ip_arg(args: dict, role: str) -> list[str]:
    ips = args.get("ip_addresses") or []
    swarm_ca.parse_ip_addresses(ips)
    if ips and role != MANAGER_ROLE:
        raise errors.InvalidArgument("only a manager's certificate carries IP addresses")
    return [str(ip) for ip in ips]


class CAService:
    """The CA calls of a manager: ``ca.root``, ``ca.join``, ``ca.renew``.

    ``on_join(node_id, role)`` is awaited before a joining node's certificate is signed (the
    swarm service records the node); ``role_of(node_id)`` gives the role a renewing node has now
    (default: the one in its certificate); ``on_issue(node_id, chain_pem)`` is awaited after
    each certificate (the swarm service tracks which nodes still have the old key in a root
    rotation).
    """

    def __init__(self, ca: ClusterCA, *,
                 on_join: Callable[[str, str], Awaitable[None]] | None = None,
                 role_of: Callable[[str], Awaitable[str]] | None = None,
                 on_issue: Callable[[str, bytes], Awaitable[None]] | None = None) -> None:
        self.ca = ca
        self.on_join, self.role_of, self.on_issue = on_join, role_of, on_issue

    def install(self, server: Server) -> None:
        server.register("ca.root", self.root, access=Access.PUBLIC)
        server.register("ca.join", self.join, access=Access.PUBLIC)
        server.register("ca.renew", self.renew, access=Access.NODE)

    async def root(self, peer: Peer, args: dict) -> dict:
        return {"bundle": self.ca.trust_pem.decode()}

    async def join(self, peer: Peer, args: dict) -> dict:
        role = self.ca.role_for_token(args.get("token"))
        wanted = args.get("role")
        if wanted is not None:
            if wanted not in swarm_tokens.ROLES:
                raise errors.InvalidArgument(f"unknown role {wanted!r}: use worker or manager")
            if swarm_ca.role_of_token_role(wanted) != role:
                raise errors.InvalidArgument(
                    f"the join token is a {role.removeprefix('swarm-')} token: "
                    f"it cannot join the swarm as a {wanted}")
        csr = _str_arg(args, "csr").encode()
        ips = _ip_arg(args, role)
        node_id = swarm_ca.new_id()
        chain = self.ca.sign_csr(csr, node_id, role, ip_addresses=ips)  # checked before on_join
        if self.on_join is not None:
            await self.on_join(node_id, role)
        if self.on_issue is not None:
            await self.on_issue(node_id, chain)
        return {"node_id": node_id, "role": role, "chain": chain.decode(),
                "bundle": self.ca.trust_pem.decode()}

    async def renew(self, peer: Peer, args: dict) -> dict:
        node_id = peer.identity.node_id
        role = await self.role_of(node_id) if self.role_of else peer.identity.role
        ips = _ip_arg(args, role)
        if "ip_addresses" not in args and role == MANAGER_ROLE:
            ips = list(peer.identity.ip_addresses)  # a renewal keeps the manager's addresses
        chain = self.ca.sign_csr(_str_arg(args, "csr").encode(), node_id, role,
                                 ip_addresses=ips)
        if self.on_issue is not None:
            await self.on_issue(node_id, chain)
        return {"node_id": node_id, "role": role, "chain": chain.decode(),
                "bundle": self.ca.trust_pem.decode()}


# --- sessions and heartbeats (what the dispatcher builds on) -----------------------------

@attrs.define
class _Session:
    session_id: str
    node_id: str
    last_seen: float
    send: trio.MemorySendChannel
    receive: trio.MemoryReceiveChannel


class Sessions:
    """Node sessions and heartbeats: ``session`` (streaming) and ``heartbeat``.

    A node opens one session (a new one replaces the old); the first item it gets is
    ``{"session_id", "period"}``, then whatever :meth:`send` queues for it.  It must call
    ``heartbeat {"session_id"}`` every ``period`` seconds; :meth:`expired` lists nodes silent
    for ``period × 3``.  A heartbeat with an unknown or replaced session ID is NotFound
    (``session invalid``): the node opens a new session, possibly with another manager.
    """

    def __init__(self, period: float = DEFAULT_HEARTBEAT_PERIOD, *,
                 clock: Callable[[], float] = time.monotonic) -> None:
        self.period = period
        self.clock = clock
        self._sessions: dict[str, _Session] = {}

    def install(self, server: Server) -> None:
        server.register("session", self.session, access=Access.NODE, stream=True)
        server.register("heartbeat", self.heartbeat, access=Access.NODE)

    @property
    def nodes(self) -> list[str]:
        return sorted(self._sessions)

    def last_seen(self, node_id: str) -> float | None:
        s = self._sessions.get(node_id)
        return s.last_seen if s else None

    def expired(self) -> list[str]:
        limit = self.clock() - self.period * GRACE_MULTIPLIER
        return sorted(n for n, s in self._sessions.items() if s.last_seen < limit)

    def send(self, node_id: str, message: Any) -> bool:
        """Queue a message for a node's session; False when it has none."""
        s = self._sessions.get(node_id)
        if s is None:
            return False
        try:
            s.send.send_nowait(message)
        except (trio.WouldBlock, trio.ClosedResourceError, trio.BrokenResourceError):
            return False
        return True

    def close(self, node_id: str) -> None:
        """End a node's session (a removed node): its stream ends."""
        s = self._sessions.pop(node_id, None)
        if s is not None:
            s.send.close()

    async def session(self, peer: Peer, args: dict, send) -> dict:
        node_id = peer.identity.node_id
        self.close(node_id)  # a new session replaces the old one
        tx, rx = trio.open_memory_channel(math.inf)
        s = _Session(session_id=secrets.token_hex(12), node_id=node_id,
                     last_seen=self.clock(), send=tx, receive=rx)
        self._sessions[node_id] = s
        try:
            await send({"session_id": s.session_id, "period": self.period})
            async for message in rx:
                await send(message)
        finally:
            if self._sessions.get(node_id) is s:
                del self._sessions[node_id]
            tx.close()
        return {"closed": True}

    async def heartbeat(self, peer: Peer, args: dict) -> dict:
        s = self._sessions.get(peer.identity.node_id)
        if s is None or not secrets.compare_digest(str(args.get("session_id", "")),
                                                   s.session_id):
            raise errors.NotFound("session invalid")
        s.last_seen = self.clock()
        return {"period": self.period}


# --- client ------------------------------------------------------------------------------

class _Connection:
    def __init__(self, stream: trio.SSLStream, address: str) -> None:
        self.stream = stream
        self.frames = _Frames(stream)
        self.address = address
        self._ids = itertools.count(1)

    async def request(self, name: str, args: dict) -> int:
        call_id = next(self._ids)
        await self.frames.send({"id": call_id, "call": name, "args": args})
        return call_id

    async def response(self, call_id: int) -> tuple[str, Any]:
        """("item", value) or ("result", value); raises the remote error."""
        frame = await self.frames.receive()
        if frame is None:
            raise errors.Unavailable(f"manager {self.address} closed the connection")
        if frame.get("id") != call_id:
            raise errors.Unavailable(f"manager {self.address} answered out of turn")
        if "error" in frame:
            _raise_remote(frame["error"])
        if "item" in frame:
            return "item", frame["item"]
        return "result", frame.get("result")

    async def call(self, name: str, args: dict) -> Any:
        call_id = await self.request(name, args)
        kind, value = await self.response(call_id)
        if kind != "result":
            raise errors.Unavailable(f"{name} is a streaming call")
        return value

    async def aclose(self) -> None:
        with trio.move_on_after(1) as scope:
            scope.shield = True
            try:
                await self.stream.aclose()
            except (trio.BrokenResourceError, trio.ClosedResourceError, OSError):
                pass


_CONNECT_ERRORS = (OSError, ssl.SSLError, trio.BrokenResourceError, trio.ClosedResourceError,
                   trio.TooSlowError, errors.Unavailable)


async def _connect(address: str | tuple[str, int], ctx: ssl.SSLContext,
                   timeout: float = CONNECT_TIMEOUT) -> _Connection:
    host, port = parse_address(address)
    shown = format_address(host, port)
    with trio.fail_after(timeout):
        tcp = await trio.open_tcp_stream(host, port)
        stream = trio.SSLStream(tcp, ctx, server_hostname=MANAGER_ROLE)
        try:
            await stream.do_handshake()
        except BaseException:
            await trio.aclose_forcefully(stream)
            raise
    return _Connection(stream, shown)


def _unreachable(failures: list[str]) -> errors.Unavailable:
    return errors.Unavailable("no manager could be reached: " + "; ".join(failures))


def _describe(exc: BaseException) -> str:
    if isinstance(exc, trio.BrokenResourceError) and exc.__cause__ is not None:
        exc = exc.__cause__  # trio wraps the ssl module's errors
    if isinstance(exc, trio.TooSlowError):
        return "timed out"
    if isinstance(exc, ssl.SSLCertVerificationError):
        return f"TLS: certificate verify failed: {exc.verify_message}"
    return str(exc) or type(exc).__name__


async def fetch_ca(addresses: Sequence[str | tuple[str, int]], token: str,
                   *, timeout: float = CONNECT_TIMEOUT) -> bytes:
    """The swarm's trust bundle from the first manager that answers, checked against the
    join token's CA digest *before* it is trusted (the token pins the CA).

    The manager is not verified for this one call (nothing secret is sent).  A bundle that
    does not match is ``remote CA does not match fingerprint. Expected: <digest>``.
    """
    parsed = swarm_tokens.parse_token(token)
    failures = []
    for address in addresses:
        try:
            conn = await _connect(address, swarm_ca.client_context(None), timeout)
        except _CONNECT_ERRORS as exc:
            failures.append(f"{format_address(*parse_address(address))}: {_describe(exc)}")
            continue
        try:
            with trio.fail_after(timeout):
                result = await conn.call("ca.root", {})
        except _CONNECT_ERRORS as exc:
            failures.append(f"{conn.address}: {_describe(exc)}")
            continue
        finally:
            await conn.aclose()
        bundle = str((result or {}).get("bundle", "")).encode()
        swarm_tokens.check_ca_digest(parsed, bundle)
        swarm_ca.load_certs(bundle)
        return bundle
    raise _unreachable(failures)


async def join(addresses: Sequence[str | tuple[str, int]], token: str, *,
               role: str | None = None, ip_addresses: Sequence[str] = (),
               timeout: float = CONNECT_TIMEOUT) -> NodeCredentials:
    """Join a swarm (``docker swarm join --token T ADDR``): a new key (it never leaves this
    node), the CA pinned by the token, then the token and a CSR sent to a manager verified
    against that CA.  ``role`` (``worker``/``manager``), when given, must be the token's;
    ``ip_addresses`` (a manager's advertise addresses) go into its certificate.

    Returns the node's credentials (not yet saved).  Errors: ``invalid join token``, ``remote
    CA does not match fingerprint...``, ``A valid join token is necessary to join this
    cluster`` (InvalidArgument), or Unavailable when no manager answers.
    """
    swarm_tokens.parse_token(token)
    if role is not None and role not in swarm_tokens.ROLES:
        raise errors.InvalidArgument(f"unknown role {role!r}: use worker or manager")
    bundle = await fetch_ca(addresses, token, timeout=timeout)
    key = swarm_ca.generate_key()
    args = {"token": token, "csr": swarm_ca.make_csr(key).decode()}
    if role is not None:
        args["role"] = role
    if ip_addresses:
        swarm_ca.parse_ip_addresses(ip_addresses)
        args["ip_addresses"] = [str(ip) for ip in ip_addresses]
    ctx = swarm_ca.client_context(bundle)
    failures = []
    for address in addresses:
        try:
            conn = await _connect(address, ctx, timeout)
        except _CONNECT_ERRORS as exc:
            failures.append(f"{format_address(*parse_address(address))}: {_describe(exc)}")
            continue
        try:
            with trio.fail_after(timeout):
                result = await conn.call("ca.join", args)
        except (trio.TooSlowError, trio.BrokenResourceError, OSError, ssl.SSLError,
                errors.Unavailable) as exc:
            failures.append(f"{conn.address}: {_describe(exc)}")
            continue
        finally:
            await conn.aclose()
        creds = NodeCredentials(key_pem=swarm_ca.key_pem(key),
                                chain_pem=str(result["chain"]).encode(),
                                trust_pem=str(result["bundle"]).encode())
        identity = creds.identity
        if identity.node_id != result.get("node_id"):
            raise errors.CoreError("the manager issued a certificate for another node ID")
        return creds
    raise _unreachable(failures)


class ManagerClient:
    """A node's calls to the managers with its certificate, failing over between them.

    ``addresses`` are the managers to try, in order, starting with the one that last
    answered.  A manager that cannot be reached (refused, timed out, TLS failure, dropped
    connection) makes the client try the next; when none answers the call fails with
    Unavailable.  An error the manager *answers* (Forbidden, NotFound...) is raised as is:
    another manager would say the same.

    Plain calls share one connection; each stream has its own.
    """

    def __init__(self, credentials: NodeCredentials,
                 addresses: Iterable[str | tuple[str, int]], *,
                 timeout: float = CONNECT_TIMEOUT, like: ManagerClient | None = None) -> None:
        self.timeout = timeout
        self._conn: _Connection | None = None
        self._lock = trio.Lock()
        self._current = 0
        self._renew_now = trio.Event()
        self.set_addresses(addresses)
        if like is not None and like.credentials is credentials:
            # the TLS context of a client with the same credentials (building one writes the
            # key to a file and reads it back: not once per session of a thousand nodes)
            self.credentials, self._ctx = credentials, like._ctx
        else:
            self.update_credentials(credentials)

    def set_addresses(self, addresses: Iterable[str | tuple[str, int]]) -> None:
        parsed = [format_address(*parse_address(a)) for a in addresses]
        if not parsed:
            raise errors.InvalidArgument("no manager address")
        self.addresses = parsed
        self._current = 0

    def update_credentials(self, credentials: NodeCredentials) -> None:
        """Use a renewed certificate / new trust bundle from the next connection on."""
        self.credentials = credentials
        self._ctx = credentials.client_context()

    @property
    def address(self) -> str | None:
        """The manager of the open connection, if any."""
        return self._conn.address if self._conn else None

    def _order(self) -> list[str]:
        n = len(self.addresses)
        return [self.addresses[(self._current + i) % n] for i in range(n)]

    async def _open(self, failures: list[str], exclude: str | None = None) -> _Connection:
        for address in self._order():
            if address == exclude and len(self.addresses) > 1:
                continue
            try:
                conn = await _connect(address, self._ctx, self.timeout)
            except _CONNECT_ERRORS as exc:
                failures.append(f"{address}: {_describe(exc)}")
                continue
            self._current = self.addresses.index(address)
            return conn
        raise _unreachable(failures)

    async def _drop(self) -> None:
        conn, self._conn = self._conn, None
        if conn is not None:
            await conn.aclose()

    async def call(self, name: str, **args: Any) -> Any:
        """One call; on a broken connection the call is sent again to the next manager
        (calls are idempotent or, like ``ca.join``, harmless to repeat)."""
        async with self._lock:
            failures: list[str] = []
            for _ in range(len(self.addresses)):
                if self._conn is None:
                    self._conn = await self._open(failures)
                conn = self._conn
                try:
                    with trio.fail_after(self.timeout):
                        return await conn.call(name, args)
                except BaseException as exc:
                    if getattr(exc, "remote", False):
                        raise  # the manager answered: the connection is fine
                    await self._drop()  # broken, or cancelled with an answer still to come
                    if not isinstance(exc, _CONNECT_ERRORS):
                        raise
                    failures.append(f"{conn.address}: {_describe(exc)}")
                    if conn.address in self.addresses:  # start with the next one
                        self._current = ((self.addresses.index(conn.address) + 1)
                                         % len(self.addresses))
            raise _unreachable(failures)

    @asynccontextmanager
    async def stream(self, name: str, **args: Any) -> AsyncIterator[AsyncIterator[Any]]:
        """``async with client.stream("session") as items: async for item in items: ...``

        Opened on its own connection to the first manager that answers; when that manager
        goes away the iteration raises Unavailable: the caller opens a new stream (which fails
        over) — a dispatcher session is per manager.
        """
        failures: list[str] = []
        conn = await self._open(failures)
        try:
            call_id = await conn.request(name, args)

            async def items() -> AsyncIterator[Any]:
                while True:
                    try:
                        kind, value = await conn.response(call_id)
                    except (OSError, ssl.SSLError, trio.BrokenResourceError,
                            trio.ClosedResourceError) as exc:
                        raise errors.Unavailable(
                            f"manager {conn.address}: {_describe(exc)}") from None
                    if kind == "result":
                        return
                    yield value

            yield items()
        finally:
            await conn.aclose()

    async def renew(self, ip_addresses: Sequence[str] | None = None) -> NodeCredentials:
        """A new certificate for this node's key (same node ID; the role the swarm has for it
        now; the current trust bundle; a manager's IP addresses, kept unless given).  The
        client uses it at once; the caller saves it."""
        args: dict[str, Any] = {"csr": self.credentials.csr().decode()}
        if ip_addresses is not None:
            args["ip_addresses"] = list(ip_addresses)
        result = await self.call("ca.renew", **args)
        creds = self.credentials.with_certificate(str(result["chain"]).encode(),
                                                  str(result["bundle"]).encode())
        if creds.identity.node_id != self.credentials.identity.node_id:
            raise errors.CoreError("the manager renewed the certificate for another node ID")
        self.update_credentials(creds)
        await self._drop()  # the next call shows the new certificate
        return creds

    async def keep_renewed(self, directory: str | None = None, *,
                           on_renewed: Callable[[NodeCredentials], Awaitable[None]] | None = None,
                           retry: float = 5.0,
                           task_status=trio.TASK_STATUS_IGNORED) -> None:
        """Renew the certificate at its renewal time (:meth:`NodeCredentials.renew_at`), for
        ever: a trio task.  Each new certificate is saved in ``directory`` (when given) and
        handed to ``on_renewed`` (a manager updates its :class:`Server` there).  When no
        manager answers it tries again every ``retry`` seconds; an answered refusal (a removed
        node: Forbidden) ends the task with that error.  :meth:`request_renewal` renews at
        once."""
        task_status.started()
        while True:
            now = dt.datetime.now(dt.timezone.utc)
            with trio.move_on_after(max(0.0, (self.credentials.renew_at() - now).total_seconds())):
                await self._renew_now.wait()
            self._renew_now = trio.Event()
            try:
                creds = await self.renew()
            except errors.Unavailable as exc:
                if getattr(exc, "remote", False):
                    raise
                log.warning("certificate renewal failed, retrying in %ss: %s", retry, exc)
                await trio.sleep(retry)
                continue
            if directory is not None:
                creds.save(directory)
            if on_renewed is not None:
                await on_renewed(creds)

    def request_renewal(self) -> None:
        """Wake :meth:`keep_renewed` now (a root rotation started, the node's role changed)."""
        self._renew_now.set()

    async def aclose(self) -> None:
        await self._drop()
