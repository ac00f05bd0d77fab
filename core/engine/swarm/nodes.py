"""Swarm nodes in docker's shape: the stored record, what the API shows, lookups and filters.

A node record (``/swarm/nodes/<id>``, :mod:`core.engine.swarm.store`) is docker's ``Node``
without ``Version`` and with ``ManagerStatus`` holding only ``Addr`` (present while the node is
a member of the managers' etcd cluster), and ``DataPathAddr`` (the node's ``--data-path-addr``,
its VXLAN underlay end, when it gave one: not shown by the API, as docker's node has none).  What the API shows (:func:`render`) adds the version
and the live parts of ``ManagerStatus``: ``Leader`` (the manager whose etcd member is the Raft leader)
and ``Reachability`` (``reachable`` while the manager keeps a dispatcher session, else
``unreachable``).
"""
from __future__ import annotations

import copy
import platform
from typing import Any, Iterable

from core.engine.swarm.store import now_text
from core.errors import InvalidArgument, NotFound

ROLES = ("worker", "manager")
AVAILABILITIES = ("active", "pause", "drain")
STATES = ("unknown", "down", "ready", "disconnected")
FILTERS = frozenset({"id", "label", "membership", "name", "node.label", "role"})

GO_ARCH = {"x86_64": "x86_64", "aarch64": "aarch64"}  # docker reports uname's machine here


def new_record(node_id: str, role: str, *, availability: str = "active") -> dict[str, Any]:
    """A node as a manager records it when it joins (its agent fills in the description)."""
    t = now_text()
    return {
        "ID": node_id,
        "CreatedAt": t,
        "UpdatedAt": t,
        "Spec": {"Labels": {}, "Role": role, "Availability": availability},
        "Description": {"Hostname": "", "Platform": {"Architecture": "", "OS": ""},
                        "Resources": {"NanoCPUs": 0, "MemoryBytes": 0},
                        "Engine": {"EngineVersion": "", "Plugins": []},
                        "TLSInfo": {"TrustRoot": "", "CertIssuerSubject": "",
                                    "CertIssuerPublicKey": ""}},
        "Status": {"State": "unknown", "Addr": ""},
    }


def local_description(hostname: str, engine_version: str, cpus: int, memory: int,
                      plugins: Iterable[dict[str, str]] = ()) -> dict[str, Any]:
    """What a node's agent reports about itself when it opens its session."""
    return {"Hostname": hostname,
            "Platform": {"Architecture": platform.machine(), "OS": "linux"},
            "Resources": {"NanoCPUs": cpus * 10**9, "MemoryBytes": memory},
            "Engine": {"EngineVersion": engine_version, "Plugins": list(plugins)}}


def render(node: dict[str, Any], version: int, *, leader: str | None,
           sessions: dict[str, Any]) -> dict[str, Any]:
    """The API's view of a stored node."""
    out = {"ID": node["ID"], "Version": {"Index": version}}
    out.update((k, copy.deepcopy(v)) for k, v in node.items() if k not in ("ID", "ManagerStatus", "DataPathAddr"))
    ms = node.get("ManagerStatus")
    if ms is not None:
        is_leader = leader == node["ID"]
        reachable = is_leader or node["ID"] in sessions
        status: dict[str, Any] = {}
        if is_leader:
            status["Leader"] = True
        status["Reachability"] = "reachable" if reachable else "unreachable"
        status["Addr"] = ms.get("Addr", "")
        out["ManagerStatus"] = status
    return out


def find(nodes: list[tuple[dict[str, Any], int]], ref: str) -> tuple[dict[str, Any], int]:
    """moby's ``getNode``: a full ID, else a hostname, else an ID prefix."""
    if not ref:
        raise InvalidArgument("node ID or name is empty")
    for node, version in nodes:
        if node["ID"] == ref:
            return node, version
    matches = [(n, v) for n, v in nodes if n.get("Description", {}).get("Hostname") == ref]
    if not matches:
        matches = [(n, v) for n, v in nodes if n["ID"].startswith(ref)]
    if not matches:
        raise NotFound(f"node {ref} not found")
    if len(matches) > 1:
        raise InvalidArgument(f"node {ref} is ambiguous ({len(matches)} matches found)")
    return matches[0]


def _labels_match(labels: dict[str, str], wanted: list[str]) -> bool:
    for item in wanted:
        key, sep, value = item.partition("=")
        if key not in labels or (sep and labels[key] != value):
            return False
    return True


def matches(node: dict[str, Any], filters: dict[str, list[str]]) -> bool:
    """docker's node list filters (``id``, ``name``, ``label`` (engine labels), ``node.label``,
    ``role``, ``membership``)."""
    unknown = set(filters) - FILTERS
    if unknown:
        raise InvalidArgument(f"invalid filter '{sorted(unknown)[0]}'")
    if "id" in filters and not any(node["ID"].startswith(v) for v in filters["id"]):
        return False
    hostname = node.get("Description", {}).get("Hostname", "")
    if "name" in filters and not any(v in hostname for v in filters["name"]):
        return False
    if "role" in filters:
        for v in filters["role"]:
            if v not in ROLES:
                raise InvalidArgument(f"Invalid role filter value: {v!r}")  # docker: 'Invalid role'
        if node["Spec"]["Role"] not in filters["role"]:
            return False
    if "membership" in filters:
        for v in filters["membership"]:
            if v not in ("accepted", "pending"):
                raise InvalidArgument(f"Invalid membership filter value: {v!r}")
        if "accepted" not in filters["membership"]:
            return False
    if "node.label" in filters and not _labels_match(node["Spec"].get("Labels") or {},
                                                      filters["node.label"]):
        return False
    if "label" in filters and not _labels_match(
            node.get("Description", {}).get("Engine", {}).get("Labels") or {}, filters["label"]):
        return False
    return True


def parse_spec(body: Any) -> dict[str, Any]:
    """A NodeSpec from the API (``/nodes/{id}/update``), checked as moby's NodeSpecToGRPC."""
    if not isinstance(body, dict):
        raise InvalidArgument("invalid node spec: expected a JSON object")
    role = body.get("Role", "")
    if role not in ROLES:
        raise InvalidArgument(f'invalid Role: "{role}"')
    availability = body.get("Availability", "")
    if availability not in AVAILABILITIES:
        raise InvalidArgument(f'invalid Availability: "{availability}"')
    labels = body.get("Labels") or {}
    if not isinstance(labels, dict) or not all(isinstance(k, str) and isinstance(v, str)
                                               for k, v in labels.items()):
        raise InvalidArgument("invalid node spec: Labels must map strings to strings")
    spec: dict[str, Any] = {"Labels": labels, "Role": role, "Availability": availability}
    if body.get("Name"):
        spec["Name"] = str(body["Name"])
    return spec
