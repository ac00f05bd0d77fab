"""The swarm's objects in etcd, in docker's API shapes (swarmkit's ``manager/state/store``).

Every manager reads and writes the cluster through its local etcd member
(:class:`core.engine.swarm.etcd.EtcdClient`).  The keys::

    /swarm/cluster          the cluster: {"Cluster": <docker's ClusterInfo without Version>,
                            "CA": <ClusterCA.to_json(): roots, signing key, join-token secrets,
                            revoked node IDs>, "RotationIssued": [node IDs with a certificate
                            from the new key during a root rotation]}
    /swarm/nodes/<id>       a node: docker's Node object without Version
    /swarm/sessions/<id>    a node's dispatcher session: {"Manager", "Addr"}, attached to an etcd
                            lease the dispatcher refreshes at every heartbeat; the key vanishes
                            when the heartbeats stop (that is how the leader sees a node go down)

A stored object's ``Version.Index`` is its key's ``mod_revision``: an update names the version it
read and is an etcd transaction comparing it, so a stale one fails like docker's ``update out of
sequence`` (:class:`~core.engine.swarm.etcd.SequenceConflict`).
"""
from __future__ import annotations

import copy
import datetime as dt
import json
from typing import Any

import attrs

from core.engine.swarm.ca import ClusterCA
from core.engine.swarm.etcd import Compare, EtcdClient, KeyValue, Put, SequenceConflict
from core.errors import NotFound

PREFIX = "/swarm/"
CLUSTER_KEY = PREFIX + "cluster"
NODES = PREFIX + "nodes/"
SESSIONS = PREFIX + "sessions/"


def now_text() -> str:
    """docker's timestamps: RFC 3339 with nanoseconds, UTC."""
    t = dt.datetime.now(dt.timezone.utc)
    return t.strftime("%Y-%m-%dT%H:%M:%S.") + f"{t.microsecond:06d}000Z"


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

    def to_value(self) -> str:
        return json.dumps({"Cluster": self.cluster, "CA": self.ca.to_json(),
                           "RotationIssued": sorted(self.rotation_issued)})


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
                             version=kv.mod_revision)

    async def create_cluster(self, record: ClusterRecord) -> int:
        return await self.etcd.create(CLUSTER_KEY, record.to_value())

    async def update_cluster(self, record: ClusterRecord, version: int | None = None) -> int:
        """Write ``record`` if the key is still at ``version`` (default: the version it was
        read at); :class:`SequenceConflict` otherwise."""
        record.cluster["UpdatedAt"] = now_text()
        return await self.etcd.put_if(CLUSTER_KEY, record.to_value(),
                                      record.version if version is None else version)

    # -- nodes --

    async def nodes(self) -> list[tuple[dict[str, Any], int]]:
        return [(kv.json(), kv.mod_revision) for kv in await self.etcd.get_prefix(NODES)]

    async def node(self, node_id: str) -> tuple[dict[str, Any], int] | None:
        kv = await self.etcd.get(NODES + node_id)
        return (kv.json(), kv.mod_revision) if kv is not None else None

    async def put_node(self, node: dict[str, Any], version: int | None = None) -> int:
        """Write a node; with ``version`` only if the stored one is still at it (0: new)."""
        node = copy.deepcopy(node)
        node["UpdatedAt"] = now_text()
        value = json.dumps(node)
        if version is None:
            return await self.etcd.put(NODES + node["ID"], value)
        return await self.etcd.put_if(NODES + node["ID"], value, version)

    async def delete_node(self, node_id: str, version: int) -> None:
        from core.engine.swarm.etcd import Delete

        result = await self.etcd.txn([Compare("mod", NODES + node_id, "==", version)],
                                     [Delete(NODES + node_id), Delete(SESSIONS + node_id)])
        if not result.succeeded:
            raise SequenceConflict()

    async def update_node(self, node_id: str, change, *, attempts: int = 5) -> dict[str, Any] | None:
        """Read-modify-write a node (``change(node)`` edits it in place), retrying lost races;
        None when the node does not exist."""
        for _ in range(attempts):
            found = await self.node(node_id)
            if found is None:
                return None
            node, version = found
            if change(node) is False:
                return node
            try:
                await self.put_node(node, version)
                return node
            except SequenceConflict:
                continue
        raise SequenceConflict()

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


def cluster_txn_put(record: ClusterRecord) -> tuple[Compare, Put]:
    """The compare-and-put of a cluster record (for transactions that write more keys)."""
    return Compare("mod", CLUSTER_KEY, "==", record.version), Put(CLUSTER_KEY, record.to_value())
