"""The swarm's objects in etcd, in docker's API shapes (swarmkit's ``manager/state/store``).

Every manager reads and writes the cluster through its local etcd member
(:class:`core.engine.swarm.etcd.EtcdClient`).  The keys::

    /swarm/cluster          the cluster: {"Cluster": <docker's ClusterInfo without Version>,
                            "CA": <ClusterCA.to_json(): roots, signing key, join-token secrets,
                            revoked node IDs>, "RotationIssued": [node IDs with a certificate
                            from the new key during a root rotation], "CrossSigned": [the
                            cross-signed root of every rotation, for etcd's peers]}
    /swarm/nodes/<id>       a node: docker's Node object without Version
    /swarm/sessions/<id>    a node's dispatcher session: {"Manager", "Addr", "Beat"}, put again
                            at every heartbeat (the leader marks a node down when its key's
                            revision stops moving, and deletes the key), under an etcd lease
                            the dispatcher keeps alive (:mod:`core.engine.swarm.dispatcher`)
    /swarm/services/<id>    a service: docker's Service object without Version
    /swarm/tasks/<id>       a task: docker's Task object without Version
                            (:mod:`core.engine.swarm.tasks` has its states and life cycle)
    /swarm/networks/<id>    a swarm-scoped network: docker's Network object (overlay, ingress)
                            with its allocation (VNI, subnets) under ``"Allocation"``
    /swarm/ipam/...         the networks' allocation sequence and endpoint addresses
                            (:mod:`core.engine.swarm.networks` writes both)

The object kinds (services, tasks, networks, and nodes too) share one set of generic calls:
:meth:`Store.objects`, :meth:`Store.get`, :meth:`Store.put`, :meth:`Store.put_many`,
:meth:`Store.delete`, :meth:`Store.update` and :meth:`Store.watch`, each naming its kind by
its key prefix (:data:`SERVICES`, :data:`TASKS`, :data:`NETWORKS`, :data:`NODES`).

A stored object's ``Version.Index`` is its key's ``mod_revision``: an update names the version it
read and is an etcd transaction comparing it, so a stale one fails like docker's ``update out of
sequence`` (:class:`~core.engine.swarm.etcd.SequenceConflict`).
"""
from __future__ import annotations

import copy
import datetime as dt
import json
from typing import Any, Awaitable, Callable, Iterator

import attrs
import trio

from core.engine.swarm.ca import ClusterCA
from core.engine.swarm.etcd import Compare, EtcdClient, KeyValue, Put, SequenceConflict
from core.errors import NotFound, Unavailable

PREFIX = "/swarm/"
CLUSTER_KEY = PREFIX + "cluster"
NODES = PREFIX + "nodes/"
SESSIONS = PREFIX + "sessions/"
SERVICES = PREFIX + "services/"
TASKS = PREFIX + "tasks/"
NETWORKS = PREFIX + "networks/"
TXN_OPS = 100  # puts per etcd transaction (etcd's --max-txn-ops default is 128)
#: bytes of values per etcd transaction: etcd refuses requests over 1.5 MiB (--max-request-bytes)
TXN_BYTES = 1024 * 1024


async def write_gathered(batch: Any, write: Callable[[Any], Awaitable[None]], timeout: float,
                         what: str) -> None:
    """The end of a gathered write (several callers' changes in one etcd transaction, the
    first caller writing for all): ``write(batch)`` shielded from the caller's cancellation,
    at most ``timeout`` seconds; its failure (or :class:`~core.errors.Unavailable` "``what``
    timed out") kept in ``batch.error`` for every caller, and ``batch.done`` set in any case."""
    try:
        with trio.CancelScope(shield=True) as scope:
            scope.deadline = trio.current_time() + timeout
            try:
                await write(batch)
            except Exception as exc:  # (the etcd client's, its HTTP pool's)
                batch.error = exc
        if scope.cancelled_caught and batch.error is None:
            batch.error = Unavailable(f"{what} timed out")
    finally:
        batch.done.set()


def txn_chunks(items: list[Any], size: Callable[[Any], int], ops: int = TXN_OPS) -> Iterator[list[Any]]:
    """``items`` in runs of at most ``ops`` (:data:`TXN_OPS`) and :data:`TXN_BYTES`
    (``size(item)`` each; an item larger than that goes alone), in order: one etcd transaction
    each."""
    chunk: list[Any] = []
    total = 0
    for item in items:
        n = size(item)
        if chunk and (len(chunk) >= ops or total + n > TXN_BYTES):
            yield chunk
            chunk, total = [], 0
        chunk.append(item)
        total += n
    if chunk:
        yield chunk


def now_text() -> str:
    """docker's timestamps: RFC 3339 with nanoseconds, UTC."""
    t = dt.datetime.now(dt.timezone.utc)
    return t.strftime("%Y-%m-%dT%H:%M:%S.") + f"{t.microsecond:06d}000Z"


def time_ns(text: Any) -> int | None:
    """A stored RFC 3339 time (:func:`now_text`'s) as nanoseconds since the epoch (None if it
    does not parse)."""
    if not isinstance(text, str) or not text:
        return None
    head, _, frac = text.rstrip("Z").partition(".")
    try:
        seconds = dt.datetime.fromisoformat(head).replace(tzinfo=dt.timezone.utc).timestamp()
    except ValueError:
        return None
    digits = "".join(c for c in frac if c.isdigit())[:9]
    return int(seconds) * 1_000_000_000 + int((digits + "000000000")[:9])


def seconds(text: Any) -> float | None:
    """A stored RFC 3339 time as seconds since the epoch (None if it does not parse)."""
    ns = time_ns(text)
    return None if ns is None else ns / 1e9


def with_version(obj: dict[str, Any], kv: KeyValue) -> dict[str, Any]:
    """The stored object as the API shows it: ``ID``, ``Version``, then the rest."""
    out = {"ID": obj.get("ID", ""), "Version": {"Index": kv.mod_revision}}
    out.update((k, v) for k, v in obj.items() if k != "ID")
    return out


@attrs.define
class ClusterRecord:
    """The cluster key, read: the docker object, the CA and the key's version."""

    cluster: dict[str, Any]
    ca: ClusterCA
    rotation_issued: set[str]
    version: int
    cross_certs: list[str] = attrs.field(factory=list)  # every rotation's cross-signed root (PEM)

    def to_value(self) -> str:
        return json.dumps({"Cluster": self.cluster, "CA": self.ca.to_json(),
                           "RotationIssued": sorted(self.rotation_issued),
                           "CrossSigned": self.cross_certs})


class Store:
    """Typed access to the keys above over one :class:`EtcdClient`."""

    def __init__(self, etcd: EtcdClient) -> None:
        self.etcd = etcd

    # -- the cluster --

    async def cluster(self) -> ClusterRecord:
        kv = await self.etcd.get(CLUSTER_KEY)
        if kv is None:
            raise NotFound("the swarm's cluster object is missing from the store")
        data = kv.json()
        return ClusterRecord(cluster=data["Cluster"], ca=ClusterCA.from_json(data["CA"]),
                             rotation_issued=set(data.get("RotationIssued") or ()),
                             version=kv.mod_revision,
                             cross_certs=list(data.get("CrossSigned") or ()))

    async def create_cluster(self, record: ClusterRecord) -> int:
        return await self.etcd.create(CLUSTER_KEY, record.to_value())

    async def update_cluster(self, record: ClusterRecord, version: int | None = None) -> int:
        """Write ``record`` if the key is still at ``version`` (default: the version it was
        read at); :class:`SequenceConflict` otherwise."""
        record.cluster["UpdatedAt"] = now_text()
        return await self.etcd.put_if(CLUSTER_KEY, record.to_value(),
                                      record.version if version is None else version)

    # -- any kind of object (services, tasks, networks, nodes) --

    async def objects(self, kind: str) -> list[tuple[dict[str, Any], int]]:
        """Every object of a kind (its key prefix, e.g. :data:`TASKS`), with its version."""
        return [(kv.json(), kv.mod_revision) for kv in await self.etcd.get_prefix(kind)]

    async def get(self, kind: str, object_id: str) -> tuple[dict[str, Any], int] | None:
        kv = await self.etcd.get(kind + object_id)
        return (kv.json(), kv.mod_revision) if kv is not None else None

    async def put(self, kind: str, obj: dict[str, Any], version: int | None = None, *,
                  stamp: bool = True) -> int:
        """Write an object (keyed by its ``ID``); with ``version`` only if the stored one is
        still at it (0: it must be new), else :class:`SequenceConflict`.  ``UpdatedAt`` is set
        unless ``stamp`` is false.  Returns the new version."""
        if stamp:
            obj = {**obj, "UpdatedAt": now_text()}
        value = json.dumps(obj)
        if version is None:
            return await self.etcd.put(kind + obj["ID"], value)
        return await self.etcd.put_if(kind + obj["ID"], value, version)

    async def put_many(self, kind: str, objs: list[dict[str, Any]], *, stamp: bool = True) -> int:
        """Write many objects unconditionally, :func:`txn_chunks` per etcd transaction (what the
        leader's loops use to create or change tasks by the hundred); returns the last revision."""
        revision = 0
        now = now_text()
        puts = [Put(kind + o["ID"], json.dumps({**o, "UpdatedAt": now} if stamp else o)) for o in objs]
        for chunk in txn_chunks(puts, lambda p: len(p.value)):
            revision = (await self.etcd.txn([], chunk)).revision
        return revision

    async def delete(self, kind: str, object_id: str, version: int | None = None) -> bool:
        """Delete an object (with ``version``: only if still at it, else
        :class:`SequenceConflict`); False if it did not exist."""
        from core.engine.swarm.etcd import Delete

        if version is None:
            return await self.etcd.delete(kind + object_id) > 0
        result = await self.etcd.txn([Compare("mod", kind + object_id, "==", version)],
                                     [Delete(kind + object_id)])
        if not result.succeeded:
            raise SequenceConflict()
        return True

    async def update(self, kind: str, object_id: str, change, *,
                     attempts: int = 5) -> dict[str, Any] | None:
        """Read-modify-write an object (``change(obj)`` edits it in place; returning False
        means "nothing to write"), retrying lost races; None when it does not exist."""
        for _ in range(attempts):
            found = await self.get(kind, object_id)
            if found is None:
                return None
            obj, version = found
            if change(obj) is False:
                return obj
            try:
                await self.put(kind, obj, version)
                return obj
            except SequenceConflict:
                continue
        raise SequenceConflict()

    def watch(self, kind: str, *, start_revision: int = 0):
        """``async with store.watch(TASKS) as events: async for e in events`` — the changes of
        a kind (:class:`core.engine.swarm.etcd.Event`; ``e.kv.json()`` for a PUT's object, the
        ID is ``e.kv.key[len(kind):]``).  Read with :meth:`objects` first and watch from its
        revision + 1 (``start_revision``) to miss nothing."""
        return self.etcd.watch(kind, prefix=True, start_revision=start_revision)

    async def revision(self) -> int:
        """The store's current revision (to start a watch after a read)."""
        result = await self.etcd.txn([], [])
        return result.revision

    # -- nodes --

    async def nodes(self) -> list[tuple[dict[str, Any], int]]:
        return await self.objects(NODES)

    async def node(self, node_id: str) -> tuple[dict[str, Any], int] | None:
        return await self.get(NODES, node_id)

    async def put_node(self, node: dict[str, Any], version: int | None = None) -> int:
        """Write a node; with ``version`` only if the stored one is still at it (0: new)."""
        return await self.put(NODES, copy.deepcopy(node), version)

    async def delete_node(self, node_id: str, version: int) -> None:
        from core.engine.swarm.etcd import Delete

        result = await self.etcd.txn([Compare("mod", NODES + node_id, "==", version)],
                                     [Delete(NODES + node_id), Delete(SESSIONS + node_id)])
        if not result.succeeded:
            raise SequenceConflict()

    async def update_node(self, node_id: str, change, *, attempts: int = 5) -> dict[str, Any] | None:
        """Read-modify-write a node (``change(node)`` edits it in place), retrying lost races;
        None when the node does not exist."""
        return await self.update(NODES, node_id, change, attempts=attempts)

    # -- sessions --

    async def sessions(self) -> dict[str, dict[str, Any]]:
        out = {}
        for kv in await self.etcd.get_prefix(SESSIONS):
            try:
                out[kv.key[len(SESSIONS):]] = kv.json()
            except ValueError:
                out[kv.key[len(SESSIONS):]] = {}
        return out

    async def put_session(self, node_id: str, value: dict[str, Any], lease: int) -> None:
        await self.etcd.put(SESSIONS + node_id, json.dumps(value), lease=lease)

    async def leader(self) -> str | None:
        """The node ID of the manager whose etcd member is the Raft leader (members are named
        by node ID), None while there is none."""
        status = await self.etcd.status(timeout=2.0)
        if not status.leader:
            return None
        for member in await self.etcd.members():
            if member.id == status.leader:
                return member.name or None
        return None


class Decoded:
    """Every object of a kind, as :meth:`Store.objects` reads them, but each decoded once per
    version: reading a thousand node records again decodes only the ones that changed since
    (what the loops that read every node each second use).  The objects are shared between
    reads: the callers must not change them."""

    def __init__(self, kind: str) -> None:
        self.kind = kind
        self._seen: dict[str, tuple[dict[str, Any], int]] = {}

    async def objects(self, store: Store) -> list[tuple[dict[str, Any], int]]:
        seen: dict[str, tuple[dict[str, Any], int]] = {}
        for kv in await store.etcd.get_prefix(self.kind):
            old = self._seen.get(kv.key)
            seen[kv.key] = old if old is not None and old[1] == kv.mod_revision else (kv.json(), kv.mod_revision)
        self._seen = seen
        return list(seen.values())


def cluster_txn_put(record: ClusterRecord) -> tuple[Compare, Put]:
    """The compare-and-put of a cluster record (for transactions that write more keys)."""
    return Compare("mod", CLUSTER_KEY, "==", record.version), Put(CLUSTER_KEY, record.to_value())
