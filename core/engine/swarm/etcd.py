"""The v3 client of the swarm's store: the daemon's only way to its etcd member.

Every manager's daemon runs one etcd member (:mod:`core.engine.swarm.etcd_member`) and reads
and writes the swarm's state through it only, with this client.  Consensus, replication and
leader election are etcd's.

etcd's gRPC-JSON gateway (``/v3/...``) over the unix socket with httpx (trio through anyio).
Keys are text, values bytes (``str`` values are UTF-8 encoded); both travel base64-encoded as
the gateway wants.  Revisions are etcd's (docker's ``Version.Index`` is a key's
``mod_revision``).  Operations: get / range by prefix / put / delete, transactions
(:class:`Compare`, :class:`Put`, :class:`Get`, :class:`Delete`; :meth:`EtcdClient.put_if`
raises :class:`SequenceConflict` on a stale revision), leases (grant, keep-alive, revoke, TTL),
watches (:meth:`EtcdClient.watch`, streaming), members (list, add, remove), status, and leader
election (etcd's election service: campaign, leader, proclaim, resign).

Errors are core's: the socket not answering is :class:`~core.errors.Unavailable`; a member with
no leader (quorum lost) or a request that timed out for want of one is :class:`NoLeader`, whose
message is docker's ("The swarm does not have a leader. ..."); unknown leases or members are
:class:`~core.errors.NotFound`; a reconfiguration etcd refuses (it would lose quorum) is
:class:`~core.errors.Conflict`.  Requests on keys, leases, watches and elections carry etcd's
*require leader* flag, so a member without a leader refuses them at once rather than hanging.

The member's names (``EtcdMember``, ``EtcdSettings``, ``Bootstrap``, ``PeerTLS``,
``CLIENT_SOCKET_NAME``...) are :mod:`core.engine.swarm.etcd_member`'s; importing them from here
still works (a module ``__getattr__``), as it did before the two were split.
"""
from __future__ import annotations

import base64
import contextlib
import json
import logging
import math
import os
import re
import time
from typing import Any, AsyncIterator, Awaitable, Callable, Iterable, Literal, Sequence

import attrs
import httpx
import trio

from core.errors import AlreadyExists, Conflict, CoreError, InvalidArgument, NotFound, Unavailable

log = logging.getLogger("core.swarm.etcd")

#: what docker answers when the managers have no quorum (swarmkit's raft.ErrNoRaftMember family)
NO_LEADER_MESSAGE = ("The swarm does not have a leader. It's possible that too few managers are "
                     "online. Make sure more than half of the managers are online.")


class NoLeader(Unavailable):
    """The member has no leader: too few managers are online (or a request timed out for it).

    ``str()`` is docker's message; :attr:`detail` is what etcd said."""

    def __init__(self, detail: str = "") -> None:
        super().__init__(NO_LEADER_MESSAGE)
        self.detail = detail


class SequenceConflict(Conflict):
    """An optimistic update lost: the key's ``mod_revision`` was not the one expected."""

    def __init__(self, message: str = "update out of sequence") -> None:
        super().__init__(message)


class WatchCompacted(Conflict):
    """A watch asked for revisions etcd has compacted away; restart from :attr:`revision`."""

    def __init__(self, revision: int) -> None:
        super().__init__(f"etcd: required revision has been compacted (oldest available {revision})")
        self.revision = revision


# -- values ------------------------------------------------------------------------------------


def _b64(data: str | bytes) -> str:
    return base64.b64encode(data.encode() if isinstance(data, str) else data).decode()


def _unb64(text: str | None) -> bytes:
    return base64.b64decode(text) if text else b""


def _int(value: Any) -> int:
    return int(value) if value not in (None, "") else 0


def prefix_end(prefix: str | bytes) -> bytes:
    """The ``range_end`` that makes a range cover every key starting with ``prefix``."""
    key = bytearray(prefix.encode() if isinstance(prefix, str) else prefix)
    while key:
        if key[-1] < 0xFF:
            key[-1] += 1
            return bytes(key)
        key.pop()
    return b"\0"  # every key


def _key_range(key: str, prefix: bool) -> dict[str, Any]:
    """The ``key`` (and with ``prefix``, the ``range_end``) fields of a range, delete or watch."""
    body: dict[str, Any] = {"key": _b64(key)}
    if prefix:
        body["range_end"] = _b64(prefix_end(key))
    return body


def _put_body(key: str, value: str | bytes, lease: int) -> dict[str, Any]:
    body: dict[str, Any] = {"key": _b64(key), "value": _b64(value)}
    if lease:
        body["lease"] = str(lease)
    return body


@attrs.frozen
class KeyValue:
    key: str
    value: bytes
    create_revision: int
    mod_revision: int
    version: int
    lease: int = 0

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> KeyValue:
        return cls(key=_unb64(data.get("key")).decode(errors="surrogateescape"), value=_unb64(data.get("value")),
                   create_revision=_int(data.get("create_revision")), mod_revision=_int(data.get("mod_revision")),
                   version=_int(data.get("version")), lease=_int(data.get("lease")))

    def json(self) -> Any:
        """The value parsed as JSON."""
        return json.loads(self.value)


@attrs.frozen
class Event:
    """One change a watch saw: ``type`` is ``"PUT"`` or ``"DELETE"`` (then ``kv.value`` is empty)."""

    type: Literal["PUT", "DELETE"]
    kv: KeyValue
    prev_kv: KeyValue | None = None


@attrs.frozen
class Member:
    id: int
    name: str  # empty while an added member has not started yet
    peer_urls: tuple[str, ...]
    client_urls: tuple[str, ...] = ()
    is_learner: bool = False

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> Member:
        return cls(id=_int(data.get("ID")), name=data.get("name", ""),
                   peer_urls=tuple(data.get("peerURLs") or ()), client_urls=tuple(data.get("clientURLs") or ()),
                   is_learner=bool(data.get("isLearner")))


@attrs.frozen
class Status:
    member_id: int
    leader: int  # 0: no leader
    raft_term: int
    revision: int
    version: str

    @property
    def is_leader(self) -> bool:
        return self.leader != 0 and self.leader == self.member_id


@attrs.frozen
class Lease:
    id: int
    ttl: int


@attrs.frozen
class LeaderKey:
    """What :meth:`EtcdClient.campaign` returns: the winner's key in the election."""

    name: str
    key: str
    rev: int
    lease: int

    def to_json(self) -> dict[str, Any]:
        return {"name": _b64(self.name), "key": _b64(self.key), "rev": str(self.rev), "lease": str(self.lease)}


# -- transactions ------------------------------------------------------------------------------

_OPS = {"==": "EQUAL", "!=": "NOT_EQUAL", "<": "LESS", ">": "GREATER"}
_TARGETS = {"mod": ("MOD", "mod_revision"), "create": ("CREATE", "create_revision"),
            "version": ("VERSION", "version"), "value": ("VALUE", "value"), "lease": ("LEASE", "lease")}


@attrs.frozen
class Compare:
    """One condition of a transaction: ``Compare("mod", key, "==", 7)``.

    ``target`` is ``mod`` / ``create`` (revisions), ``version``, ``value`` or ``lease``; a key that
    does not exist has revision and version 0, so ``Compare("create", key, "==", 0)`` means "absent".
    """

    target: Literal["mod", "create", "version", "value", "lease"]
    key: str
    op: Literal["==", "!=", "<", ">"]
    value: int | str | bytes

    def to_json(self) -> dict[str, Any]:
        if self.target not in _TARGETS or self.op not in _OPS:
            raise InvalidArgument(f"etcd: invalid compare {self.target} {self.op}")
        target, field = _TARGETS[self.target]
        value = _b64(self.value) if self.target == "value" else str(int(self.value))  # type: ignore[arg-type]
        return {"key": _b64(self.key), "target": target, "result": _OPS[self.op], field: value}


@attrs.frozen
class Put:
    key: str
    value: str | bytes
    lease: int = 0

    def to_json(self) -> dict[str, Any]:
        return {"request_put": _put_body(self.key, self.value, self.lease)}


@attrs.frozen
class Get:
    key: str
    prefix: bool = False

    def to_json(self) -> dict[str, Any]:
        return {"request_range": _key_range(self.key, self.prefix)}


@attrs.frozen
class Delete:
    key: str
    prefix: bool = False

    def to_json(self) -> dict[str, Any]:
        return {"request_delete_range": _key_range(self.key, self.prefix)}


@attrs.frozen
class TxnResult:
    """``succeeded``: the compares held (the success ops ran).  ``responses``: one per op, in
    order -- a list of :class:`KeyValue` for a Get, the revision for a Put, the count of deleted
    keys for a Delete."""

    succeeded: bool
    revision: int
    responses: list[Any]


def _txn_response(item: dict[str, Any]) -> Any:
    if "response_range" in item:
        return [KeyValue.from_json(kv) for kv in item["response_range"].get("kvs") or ()]
    if "response_put" in item:
        return _int((item["response_put"].get("header") or {}).get("revision"))
    if "response_delete_range" in item:
        return _int(item["response_delete_range"].get("deleted"))
    return item


# -- the client --------------------------------------------------------------------------------

# gRPC codes the gateway answers with
_GRPC_ERRORS: dict[int, type[CoreError]] = {
    3: InvalidArgument, 5: NotFound, 6: AlreadyExists, 9: Conflict, 14: Unavailable, 8: Unavailable,
}
# what etcd says when it has no leader, or could not commit a request for want of one
_NO_LEADER_TEXT = ("etcdserver: no leader", "leader changed", "timed out")
# what etcd says of a request over its --max-request-bytes (or the gateway's gRPC limit above it)
_TOO_LARGE_TEXT = ("etcdserver: request is too large", "received message larger than max")
_REQUIRE_LEADER = {"Grpc-Metadata-hasleader": "true"}  # etcd's rpctypes.MetadataRequireLeaderKey
# the peers a member is connected to, in its metrics (a gauge of 1 each)
_ACTIVE_PEER = re.compile(r'^etcd_network_active_peers\{[^}]*Remote="([0-9a-f]+)"[^}]*\}\s+1(?:\.0*)?\s*$',
                          re.M)


#: unary calls one client has in flight at once (watches do not count)
CALLS_AT_ONCE = 64


class EtcdClient:
    """etcd's v3 API through its JSON gateway on the member's unix socket.

    ``EtcdClient(socket)`` (or ``url="http://127.0.0.1:2379"``); ``timeout`` bounds each unary
    request once sent (at most :data:`CALLS_AT_ONCE` are in flight; the others wait their
    turn).  Use as an async context manager or call :meth:`aclose`.
    """

    def __init__(self, socket: str | os.PathLike[str] | None = None, *, url: str | None = None,
                 timeout: float = 5.0) -> None:
        if (socket is None) == (url is None):
            raise InvalidArgument("EtcdClient: give either a unix socket or a URL")
        self.endpoint = str(socket) if socket is not None else str(url)
        self.timeout = timeout
        self._where = (socket, url)
        transport = httpx.AsyncHTTPTransport(uds=str(socket)) if socket is not None else None
        self._http = httpx.AsyncClient(transport=transport, base_url=url or "http://etcd",
                                       timeout=httpx.Timeout(timeout))
        # unary calls in flight at once (below the pool's 100 connections, watches included);
        # the rest wait here, in order, rather than in httpcore's pool, whose queue costs time
        # in proportion to its length at every request (hundreds of nodes reporting at once
        # made each call slower than the one before)
        self._calls = trio.CapacityLimiter(CALLS_AT_ONCE)

    def sibling(self) -> EtcdClient:
        """Another client of the same member, with its own connections and its own turn for
        calls (for the few calls that must not wait behind bulk ones: heartbeats)."""
        socket, url = self._where
        return EtcdClient(socket, url=url, timeout=self.timeout)

    async def __aenter__(self) -> EtcdClient:
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.aclose()

    async def aclose(self) -> None:
        await self._http.aclose()

    # -- plumbing --

    def _unavailable(self, exc: Exception) -> Unavailable:
        return Unavailable(f"etcd is not answering on {self.endpoint}: {exc}")

    async def _leader_missing(self) -> bool:
        try:
            return (await self.status(timeout=1.0)).leader == 0
        except CoreError:
            return True

    async def call(self, path: str, body: dict[str, Any], *, timeout: float | None = None,
                   require_leader: bool = True) -> dict[str, Any]:
        """POST ``body`` to ``/v3/<path>`` and return the answer; errors become core's."""
        headers = _REQUIRE_LEADER if require_leader else None
        try:
            async with self._calls:
                response = await self._http.post(f"/v3/{path}", json=body, headers=headers,
                                                  timeout=timeout if timeout is not None else self.timeout)
        except httpx.TimeoutException as exc:
            if await self._leader_missing():
                raise NoLeader(f"etcd /v3/{path}: no answer in time, and no leader") from exc
            raise Unavailable(f"etcd /v3/{path}: no answer within {timeout or self.timeout} s") from exc
        except (httpx.TransportError, OSError) as exc:
            raise self._unavailable(exc) from exc
        try:
            data = response.json()
        except ValueError:
            data = {"error": response.text}
        if response.status_code != 200 or (isinstance(data, dict) and "error" in data and "code" in data):
            raise self._error(path, data)
        return data

    @staticmethod
    def _error(path: str, data: Any) -> CoreError:
        if isinstance(data, dict) and isinstance(data.get("error"), dict):  # a stream's error frame
            data = data["error"]
        message = str(data.get("message") or data.get("error") or data) if isinstance(data, dict) else str(data)
        code = _int(data.get("code")) if isinstance(data, dict) else 0
        if code == 4 or any(text in message for text in _NO_LEADER_TEXT):  # 4: DeadlineExceeded
            return NoLeader(message)
        if any(text in message for text in _TOO_LARGE_TEXT):  # the request, not the store: 400
            return InvalidArgument(f"too large for the swarm's store (etcd takes requests of at most "
                                   f"1.5 MiB): etcd /v3/{path}: {message}")
        cls = _GRPC_ERRORS.get(code, CoreError)
        return cls(f"etcd /v3/{path}: {message}")

    # -- keys --

    async def get(self, key: str) -> KeyValue | None:
        kvs = await self.range(key)
        return kvs[0] if kvs else None

    async def range(self, key: str, *, prefix: bool = False, limit: int = 0, revision: int = 0,
                    keys_only: bool = False, serializable: bool = False) -> list[KeyValue]:
        """The key, or every key under ``key`` with ``prefix=True`` (sorted by key)."""
        body = _key_range(key, prefix)
        if limit:
            body["limit"] = str(limit)
        if revision:
            body["revision"] = str(revision)
        if keys_only:
            body["keys_only"] = True
        if serializable:
            body["serializable"] = True
        data = await self.call("kv/range", body)
        return [KeyValue.from_json(kv) for kv in data.get("kvs") or ()]

    async def get_prefix(self, prefix: str) -> list[KeyValue]:
        return await self.range(prefix, prefix=True)

    async def put(self, key: str, value: str | bytes, *, lease: int = 0) -> int:
        """Store ``value`` at ``key``; returns the revision of the write."""
        data = await self.call("kv/put", _put_body(key, value, lease))
        return _int(data["header"].get("revision"))

    async def delete(self, key: str, *, prefix: bool = False) -> int:
        """Delete the key (or all under the prefix); returns how many were deleted."""
        data = await self.call("kv/deleterange", _key_range(key, prefix))
        return _int(data.get("deleted"))

    async def txn(self, compare: Iterable[Compare], success: Iterable[Put | Get | Delete] = (),
                  failure: Iterable[Put | Get | Delete] = ()) -> TxnResult:
        data = await self.call("kv/txn", {"compare": [c.to_json() for c in compare],
                                          "success": [op.to_json() for op in success],
                                          "failure": [op.to_json() for op in failure]})
        return TxnResult(succeeded=bool(data.get("succeeded")), revision=_int(data["header"].get("revision")),
                         responses=[_txn_response(item) for item in data.get("responses") or ()])

    async def put_if(self, key: str, value: str | bytes, mod_revision: int, *, lease: int = 0) -> int:
        """Store ``value`` only if the key's ``mod_revision`` is still the one given (0: the key
        must not exist); returns the new revision, or raises :class:`SequenceConflict`."""
        result = await self.txn([Compare("mod", key, "==", mod_revision)], [Put(key, value, lease)])
        if not result.succeeded:
            raise SequenceConflict()
        return result.revision

    async def create(self, key: str, value: str | bytes, *, lease: int = 0) -> int:
        """Store ``value`` only if the key does not exist (else :class:`~core.errors.AlreadyExists`)."""
        result = await self.txn([Compare("create", key, "==", 0)], [Put(key, value, lease)])
        if not result.succeeded:
            raise AlreadyExists(f"etcd: key {key} already exists")
        return result.revision

    # -- leases --

    async def lease_grant(self, ttl: int, *, lease_id: int = 0) -> Lease:
        """A lease of ``ttl`` seconds.  etcd raises a TTL below 1.5 election timeouts to that
        (15 s with docker's timing): the returned :attr:`Lease.ttl` is the one granted."""
        data = await self.call("lease/grant", {"TTL": str(ttl), "ID": str(lease_id)})
        if data.get("error"):
            raise CoreError(f"etcd: lease grant: {data['error']}")
        return Lease(id=_int(data.get("ID")), ttl=_int(data.get("TTL")))

    async def lease_keepalive(self, lease_id: int) -> int:
        """Refresh the lease once; returns its TTL, or raises NotFound if it has expired."""
        data = await self.call("lease/keepalive", {"ID": str(lease_id)})
        result = data.get("result", data)
        ttl = _int(result.get("TTL"))
        if ttl <= 0:
            raise NotFound(f"etcd: lease {lease_id:x} has expired")
        return ttl

    async def lease_revoke(self, lease_id: int) -> None:
        await self.call("lease/revoke", {"ID": str(lease_id)})

    async def lease_time_to_live(self, lease_id: int) -> int:
        """Seconds the lease has left; -1 if it has expired or never existed."""
        data = await self.call("lease/timetolive", {"ID": str(lease_id)})
        return _int(data.get("TTL"))

    async def keep_lease_alive(self, lease: Lease, *,
                               task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED) -> None:
        """Refresh ``lease`` every third of its TTL until cancelled.  Returns (raising) when the
        lease is gone or etcd lost its leader for longer than the TTL."""
        task_status.started()
        interval = max(lease.ttl / 3, 0.2)
        last_ok = time.monotonic()
        while True:
            await trio.sleep(interval)
            try:
                await self.lease_keepalive(lease.id)
                last_ok = time.monotonic()
            except NotFound:
                raise
            except Unavailable:
                if time.monotonic() - last_ok > lease.ttl:
                    raise

    # -- watches --

    @contextlib.asynccontextmanager
    async def watch(self, key: str, *, prefix: bool = False, start_revision: int = 0,
                    prev_kv: bool = False) -> AsyncIterator[AsyncIterator[Event]]:
        """``async with client.watch(key) as events: async for event in events: ...``

        The watch is in place when the ``with`` block starts (changes after that are seen; with
        ``start_revision`` also the ones since that revision).  The iteration raises
        :class:`NoLeader` if the member loses its leader, :class:`WatchCompacted` if
        ``start_revision`` is too old.
        """
        create = _key_range(key, prefix)
        if start_revision:
            create["start_revision"] = str(start_revision)
        if prev_kv:
            create["prev_kv"] = True
        request = self._http.build_request("POST", "/v3/watch", json={"create_request": create},
                                           headers=_REQUIRE_LEADER,
                                           timeout=httpx.Timeout(self.timeout, read=None))
        try:
            response = await self._http.send(request, stream=True)
        except httpx.TimeoutException as exc:
            raise NoLeader("etcd watch: no answer in time") from exc
        except (httpx.TransportError, OSError) as exc:
            raise self._unavailable(exc) from exc
        try:
            if response.status_code != 200:
                await response.aread()
                raise self._error("watch", response.json())
            frames = self._frames(response)
            first = await frames.__anext__()
            if not first.get("created"):
                raise CoreError(f"etcd watch: unexpected first answer {first}")
            yield self._events(first, frames)
        except StopAsyncIteration:
            raise Unavailable("etcd watch: the stream ended before the watch was created") from None
        finally:
            with trio.CancelScope(shield=True):
                await response.aclose()

    async def _frames(self, response: httpx.Response) -> AsyncIterator[dict[str, Any]]:
        try:
            async for line in response.aiter_lines():
                if not line.strip():
                    continue
                frame = json.loads(line)
                if "error" in frame:
                    raise self._error("watch", frame)
                yield frame.get("result", frame)
        except (httpx.TransportError, OSError) as exc:
            raise self._unavailable(exc) from exc

    async def _events(self, first: dict[str, Any], frames: AsyncIterator[dict[str, Any]]) -> AsyncIterator[Event]:
        frame: dict[str, Any] | None = first
        while True:
            if frame is not None:
                if _int(frame.get("compact_revision")):
                    raise WatchCompacted(_int(frame["compact_revision"]))
                if frame.get("canceled"):
                    reason = frame.get("cancel_reason") or "canceled"
                    if "leader" in reason:
                        raise NoLeader(f"etcd watch: {reason}")
                    raise Unavailable(f"etcd watch: {reason}")
                for ev in frame.get("events") or ():
                    yield Event(type="DELETE" if ev.get("type") == "DELETE" else "PUT",
                                kv=KeyValue.from_json(ev.get("kv") or {}),
                                prev_kv=KeyValue.from_json(ev["prev_kv"]) if ev.get("prev_kv") else None)
            try:
                frame = await frames.__anext__()
            except StopAsyncIteration:
                raise Unavailable("etcd watch: the stream ended (member stopped?)") from None

    # -- cluster --

    async def status(self, *, timeout: float | None = None) -> Status:
        """This member's view (answers without a leader: ``leader`` is then 0)."""
        data = await self.call("maintenance/status", {}, require_leader=False, timeout=timeout)
        return Status(member_id=_int(data["header"].get("member_id")), leader=_int(data.get("leader")),
                      raft_term=_int(data.get("raftTerm")), revision=_int(data["header"].get("revision")),
                      version=data.get("version", ""))

    async def members(self) -> list[Member]:
        data = await self.call("cluster/member/list", {}, require_leader=False)
        return [Member.from_json(m) for m in data.get("members") or ()]

    async def member_add(self, peer_urls: Sequence[str], *, wait: float = 20.0) -> tuple[Member, list[Member]]:
        """Add a member (not started yet); returns it and the cluster's members with it, which the
        new member needs to start (:meth:`Bootstrap.from_members`).

        Members run without etcd's strict reconfiguration check (it waits until every member has
        been connected for 5 s), so this checks instead, as that check does but at this moment:
        the cluster has a leader, enough members have started to keep a quorum with the new one,
        and this member is connected to every other.  While it is not, the add is retried for up
        to ``wait`` seconds, then refused as :class:`~core.errors.Unavailable` (``unhealthy
        cluster``)."""
        data = await self._reconfigure("cluster/member/add", {"peerURLs": list(peer_urls)}, wait,
                                       self._check_add)
        return Member.from_json(data["member"]), [Member.from_json(m) for m in data.get("members") or ()]

    async def member_remove(self, member_id: int, *, wait: float = 20.0) -> list[Member]:
        """Remove a member (checked as etcd's strict reconfiguration check would: a member
        that is up may go only if the members left connected keep a quorum; retried as
        :meth:`member_add`); the removed member's etcd exits by itself."""
        data = await self._reconfigure("cluster/member/remove", {"ID": str(member_id)}, wait,
                                       lambda: self._check_remove(member_id))
        return [Member.from_json(m) for m in data.get("members") or ()]

    async def _reconfigure(self, path: str, body: dict[str, Any], wait: float,
                           check: Callable[[], Awaitable[None]]) -> dict[str, Any]:
        deadline = trio.current_time() + wait
        while True:
            try:
                await check()
                return await self.call(path, body)
            except Unavailable as exc:
                if "unhealthy cluster" not in str(exc) or trio.current_time() > deadline:
                    raise
            await trio.sleep(0.1)

    async def active_peers(self) -> set[int]:
        """The members this one is connected to now (etcd's ``etcd_network_active_peers``)."""
        try:
            response = await self._http.get("/metrics")
        except (httpx.TransportError, OSError) as exc:
            raise self._unavailable(exc) from exc
        return {int(m.group(1), 16) for m in _ACTIVE_PEER.finditer(response.text)}

    async def _check_add(self) -> None:
        status = await self.status()
        if not status.leader:
            raise NoLeader("etcd: no leader to add a member")
        members = await self.members()
        started = sum(1 for m in members if m.name)  # a member has a name once it has started
        if started < (len(members) + 1) // 2 + 1 and not (started == 1 and len(members) == 1):
            raise Unavailable("etcd: unhealthy cluster: too few members have started")
        active = await self.active_peers()
        down = [m for m in members if m.id != status.member_id and m.id not in active]
        if down:
            raise Unavailable("etcd: unhealthy cluster: not connected to member(s) "
                              + ", ".join(m.name or f"{m.id:x}" for m in down))

    async def _check_remove(self, member_id: int) -> None:
        status = await self.status()
        members = await self.members()
        if member_id not in {m.id for m in members}:
            return  # etcd answers NotFound
        active = await self.active_peers()
        if member_id != status.member_id and member_id not in active:
            return  # a member that is down is not part of the working quorum
        up = 1 + sum(1 for m in members if m.id != status.member_id and m.id in active)
        if up - 1 < 1 + (len(members) - 1) // 2:
            raise Unavailable("etcd: unhealthy cluster: removing the member would lose the quorum")

    async def member_update(self, member_id: int, peer_urls: Sequence[str]) -> list[Member]:
        data = await self.call("cluster/member/update", {"ID": str(member_id), "peerURLs": list(peer_urls)})
        return [Member.from_json(m) for m in data.get("members") or ()]

    # -- election (etcd's v3election service) --

    async def campaign(self, name: str, value: str | bytes, lease: int) -> LeaderKey:
        """Wait until this lease's holder leads election ``name`` (no timeout: cancel to give up)."""
        data = await self.call("election/campaign", {"name": _b64(name), "value": _b64(value), "lease": str(lease)},
                               timeout=math.inf)
        leader = data["leader"]
        return LeaderKey(name=name, key=_unb64(leader.get("key")).decode(), rev=_int(leader.get("rev")),
                         lease=_int(leader.get("lease")))

    async def leader(self, name: str) -> KeyValue | None:
        """The current leader's key and value, None if nobody leads ``name``."""
        try:
            data = await self.call("election/leader", {"name": _b64(name)})
        except CoreError as exc:
            if "election: no leader" in (exc.detail if isinstance(exc, NoLeader) else str(exc)):
                return None  # nobody campaigns: not a quorum problem
            raise
        return KeyValue.from_json(data["kv"]) if data.get("kv") else None

    async def proclaim(self, leader: LeaderKey, value: str | bytes) -> None:
        await self.call("election/proclaim", {"leader": leader.to_json(), "value": _b64(value)})

    async def resign(self, leader: LeaderKey) -> None:
        await self.call("election/resign", {"leader": leader.to_json()})


# -- the member's names, importable from here as before the split ------------------------------

_MEMBER_NAMES = frozenset({"Bootstrap", "EtcdMember", "EtcdSettings", "PeerTLS", "member_data_dir",
                           "DEFAULT_PEER_PORT", "CLIENT_SOCKET_NAME", "LOG_ROTATE_BYTES"})


def __getattr__(name: str) -> Any:
    """``from core.engine.swarm.etcd import EtcdMember`` still works: the member's names live in
    :mod:`core.engine.swarm.etcd_member` (imported on first use: it imports this module)."""
    if name in _MEMBER_NAMES:
        from core.engine.swarm import etcd_member

        return getattr(etcd_member, name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
