"""The scheduler: assigns tasks waiting for a node to one (swarmkit's ``manager/scheduler``).

Pure decisions over a snapshot (:func:`schedule`): in, the tasks to place and the cluster's
nodes and tasks; out, the tasks changed -- ``assigned`` with a ``NodeID``, or ``pending`` with
docker's reason in ``Status.Err``.  The leader's loop (:mod:`core.engine.swarm.leader`) writes
them.

A task to place is one in state ``new``/``allocated``/``pending`` whose ``DesiredState`` is
``ready`` or ``running``.  A global service's task comes with its ``NodeID`` already chosen by
the orchestrator: the scheduler only confirms that node can run it.

Filters, in swarmkit's order (a node is counted against the first one it fails, for the
explanation): the node is ready and its availability ``active``; resources (the task's
``Resources.Reservations`` ``NanoCPUs``/``MemoryBytes`` fit in the node's
``Description.Resources`` minus what its other active tasks reserve); ``Placement.Constraints``
(``node.id``, ``node.hostname``, ``node.role``, ``node.ip``, ``node.platform.os``/``arch``,
``node.labels.X``, ``engine.labels.X``; ``==``/``!=``, values compared case-insensitively);
``Placement.Platforms``; host-mode published ports (``--publish mode=host``: a node where an
active task already publishes the port is out); ``Placement.MaxReplicas`` tasks of the service
per node.

Among the nodes left: ``Placement.Preferences`` ``spread`` descriptors first (hierarchical: the
branch -- label value -- with the fewest tasks of the service, nodes without the label forming
their own branch), then -- swarmkit's ``maxFailures`` -- a node where tasks of the service
failed :data:`MAX_FAILURES` times or more in the last :data:`FAILURE_WINDOW` seconds comes after
those with fewer failures (a task that fails on a node, such as one whose host port is taken
there by another program, is placed elsewhere after a few attempts), then the node with the
fewest tasks of the service, then the fewest tasks in all.  A task that fits nowhere stays
``pending`` with ``Err`` ``no suitable node (<reasons>)``, each reason swarmkit's
(``scheduling constraints not satisfied on 3 nodes``, ``insufficient resources on 1 node``,
``max replicas per node limit exceed``...), most frequent first.
"""
from __future__ import annotations

import copy
import functools
import heapq
import ipaddress
import re
import time
from typing import Any, Iterable

from core.engine.swarm.store import seconds
from core.engine.swarm.tasks import TERMINAL, status
from core.errors import InvalidArgument

#: states of a task waiting for a node
UNPLACED = frozenset({"new", "allocated", "pending"})

_KEY = re.compile(r"(?i)^[a-z_][a-z0-9\-_.]+$")
_VALUE = re.compile(r"(?i)^[a-z0-9:\-_\s.*()?+\[\]\\^$|/]+$")

# the filters, in swarmkit's pipeline order, with their explanation
READY, RESOURCES, CONSTRAINTS, PLATFORM, HOST_PORT, MAX_REPLICAS = range(6)
#: swarmkit's ``maxFailures`` and ``monitorFailures``: failures of a service's tasks on a node
#: that put the node after the others, and how long a failure counts (seconds)
MAX_FAILURES = 5
FAILURE_WINDOW = 300.0


def explain(kind: int, n: int) -> str:
    """swarmkit's ``Filter.Explain`` for ``n`` nodes failing ``kind``."""
    one = n == 1
    if kind == READY:
        return "1 node not available for new tasks" if one else f"{n} nodes not available for new tasks"
    if kind == RESOURCES:
        return "insufficient resources on 1 node" if one else f"insufficient resources on {n} nodes"
    if kind == CONSTRAINTS:
        return ("scheduling constraints not satisfied on 1 node" if one
                else f"scheduling constraints not satisfied on {n} nodes")
    if kind == PLATFORM:
        return "unsupported platform on 1 node" if one else f"unsupported platform on {n} nodes"
    if kind == HOST_PORT:
        return "host-mode port already in use on 1 node" if one \
            else f"host-mode port already in use on {n} nodes"
    return "max replicas per node limit exceed"


def no_suitable_node(failures: dict[int, int]) -> str:
    """The ``Status.Err`` of a task no node can run (swarmkit's ``Pipeline.Explain``)."""
    parts = [explain(kind, n) for kind, n in sorted(failures.items(), key=lambda kv: (-kv[1], kv[0])) if n]
    return f"no suitable node ({'; '.join(parts)})" if parts else "no suitable node"


# -- constraints -----------------------------------------------------------------------------

def parse_constraints(exprs: Iterable[str]) -> list[tuple[str, bool, str]]:
    """swarmkit's ``constraint.Parse``: ``[(key, equal?, value)]``; bad ones raise
    :class:`InvalidArgument` with swarmkit's message."""
    out = []
    for expr in exprs:
        for op in ("==", "!="):
            if op in expr:
                key, value = (p.strip() for p in expr.split(op, 1))
                if not _KEY.match(key):
                    raise InvalidArgument(f"key '{key}' is invalid")
                if not _VALUE.match(value):
                    raise InvalidArgument(f"value '{value}' is invalid")
                out.append((key, op == "==", value))
                break
        else:
            raise InvalidArgument("constraint expected one operator from ==, !=")
    return out


def _node_value(node: dict[str, Any], key: str) -> str | None:
    lower = key.lower()
    desc = node.get("Description") or {}
    if lower == "node.id":
        return node.get("ID", "")
    if lower == "node.hostname":
        return desc.get("Hostname", "")
    if lower == "node.role":
        return (node.get("Spec") or {}).get("Role", "")
    if lower == "node.platform.os":
        return (desc.get("Platform") or {}).get("OS", "")
    if lower == "node.platform.arch":
        return (desc.get("Platform") or {}).get("Architecture", "")
    if lower.startswith("node.labels.") and len(key) > len("node.labels."):
        return ((node.get("Spec") or {}).get("Labels") or {}).get(key[len("node.labels."):], "")
    if lower.startswith("engine.labels.") and len(key) > len("engine.labels."):
        return ((desc.get("Engine") or {}).get("Labels") or {}).get(key[len("engine.labels."):], "")
    return None


def node_matches(constraints: list[tuple[str, bool, str]], node: dict[str, Any]) -> bool:
    """swarmkit's ``constraint.NodeMatches``."""
    for key, equal, value in constraints:
        if key.lower() == "node.ip":
            try:
                addr = ipaddress.ip_address((node.get("Status") or {}).get("Addr", ""))
            except ValueError:
                addr = None
            try:
                inside = addr is not None and addr in ipaddress.ip_network(value, strict=False)
            except ValueError:
                return False
            if inside != equal:
                return False
            continue
        actual = _node_value(node, key)
        if actual is None:  # a key swarmkit does not know matches no node
            return False
        if (actual.lower() == value.lower()) != equal:
            return False
    return True


def task_constraints(spec: dict[str, Any]) -> list[tuple[str, bool, str]]:
    return _constraints(tuple(((spec.get("Placement") or {}).get("Constraints")) or ()))


@functools.lru_cache(maxsize=1024)
def _constraints(exprs: tuple[str, ...]) -> list[tuple[str, bool, str]]:
    try:
        return parse_constraints(exprs)
    except InvalidArgument:
        return [("node.id", True, "\0")]  # unparseable: matches nothing (the front refuses these)


# -- the cluster's load ------------------------------------------------------------------------

def reservations(task: dict[str, Any]) -> tuple[int, int]:
    res = (((task.get("Spec") or {}).get("Resources") or {}).get("Reservations")) or {}
    return int(res.get("NanoCPUs") or 0), int(res.get("MemoryBytes") or 0)


def host_ports(task: dict[str, Any]) -> frozenset[tuple[int, str]]:
    """The ``(port, protocol)`` a task publishes on its node (``mode=host``, a fixed port)."""
    return frozenset((int(p["PublishedPort"]), p.get("Protocol") or "tcp")
                     for p in ((task.get("Endpoint") or {}).get("Ports") or ())
                     if p.get("PublishMode") == "host" and p.get("PublishedPort"))


def failed_recently(task: dict[str, Any], now: float) -> bool:
    """A task that failed on its node (``failed``/``rejected``) less than
    :data:`FAILURE_WINDOW` ago."""
    st = task.get("Status") or {}
    if not task.get("NodeID") or st.get("State") not in ("failed", "rejected"):
        return False
    when = seconds(st.get("Timestamp"))
    return when is not None and now - when < FAILURE_WINDOW


class FailureLog:
    """swarmkit's ``recentFailures`` of its node infos: the leader remembers each task that
    failed on a node (by ID, from the snapshots it schedules over) for :data:`FAILURE_WINDOW`
    seconds, so that failures still count once the task reaper has deleted the tasks."""

    def __init__(self) -> None:
        self._seen: dict[str, tuple[str, str, float]] = {}  # task ID -> (node, service, when)

    def observe(self, tasks: Iterable[dict[str, Any]], now: float | None = None
                ) -> dict[tuple[str, str], int]:
        """Note the failed tasks of ``tasks``; the recent failures per ``(node, service)``."""
        now = time.time() if now is None else now
        for t in tasks:
            if t["ID"] not in self._seen and failed_recently(t, now):
                when = seconds((t.get("Status") or {}).get("Timestamp")) or now
                self._seen[t["ID"]] = (t["NodeID"], t.get("ServiceID", ""), when)
        counts: dict[tuple[str, str], int] = {}
        for tid, (node_id, sid, when) in list(self._seen.items()):
            if now - when >= FAILURE_WINDOW:
                del self._seen[tid]
            else:
                counts[(node_id, sid)] = counts.get((node_id, sid), 0) + 1
        return counts


def occupies(task: dict[str, Any]) -> bool:
    """A task that counts on its node (load, reservations, replicas per node)."""
    return (bool(task.get("NodeID")) and task.get("DesiredState") in ("ready", "running")
            and (task.get("Status") or {}).get("State") not in TERMINAL
            and (task.get("Status") or {}).get("State") not in UNPLACED)


class NodeInfo:
    """One node with what its tasks use (swarmkit's ``NodeInfo``)."""

    __slots__ = ("node", "id", "total", "by_service", "cpu", "memory", "ready", "ports",
                 "failures")

    def __init__(self, node: dict[str, Any]) -> None:
        self.node = node
        self.id = node["ID"]
        res = (node.get("Description") or {}).get("Resources") or {}
        self.cpu = int(res.get("NanoCPUs") or 0)
        self.memory = int(res.get("MemoryBytes") or 0)
        self.total = 0
        self.by_service: dict[str, int] = {}
        self.ports: set[tuple[int, str]] = set()       # host-mode ports its tasks publish
        self.failures: dict[str, int] = {}             # service -> recent failures here
        self.ready = ((node.get("Status") or {}).get("State") == "ready"
                      and (node.get("Spec") or {}).get("Availability") == "active")

    def add(self, task: dict[str, Any]) -> None:
        self.total += 1
        sid = task.get("ServiceID", "")
        self.by_service[sid] = self.by_service.get(sid, 0) + 1
        cpu, mem = reservations(task)
        self.cpu -= cpu
        self.memory -= mem
        self.ports |= host_ports(task)

    def failed(self, sid: str) -> int:
        """The service's recent failures here, when they are enough to count (else 0)."""
        n = self.failures.get(sid, 0)
        return n if n >= MAX_FAILURES else 0

    def fits(self, cpu: int, mem: int) -> bool:
        return cpu <= self.cpu and mem <= self.memory


def node_infos(nodes: Iterable[dict[str, Any]], tasks: Iterable[dict[str, Any]],
               now: float | None = None,
               failures: dict[tuple[str, str], int] | None = None) -> dict[str, NodeInfo]:
    """The nodes with their load; ``failures``: the recent failures per ``(node, service)``
    (a :class:`FailureLog`'s), else counted from the failed tasks of ``tasks``."""
    infos = {n["ID"]: NodeInfo(n) for n in nodes}
    tasks = list(tasks)
    for t in tasks:
        if occupies(t) and t["NodeID"] in infos:
            infos[t["NodeID"]].add(t)
    if failures is None:
        failures = FailureLog().observe(tasks, now)
    for (node_id, sid), n in failures.items():
        if node_id in infos:
            infos[node_id].failures[sid] = n
    return infos


def _platform_ok(spec: dict[str, Any], node: dict[str, Any]) -> bool:
    platforms = (spec.get("Placement") or {}).get("Platforms") or ()
    if not platforms:
        return True
    plat = (node.get("Description") or {}).get("Platform") or {}
    arch, os_ = (plat.get("Architecture") or "").lower(), (plat.get("OS") or "").lower()
    aliases = {"x86_64": "amd64", "aarch64": "arm64"}
    for p in platforms:
        want_arch = (p.get("Architecture") or "").lower()
        want_os = (p.get("OS") or "").lower()
        if (not want_os or want_os == os_) and (not want_arch or want_arch in (arch, aliases.get(arch, arch))):
            return True
    return False


def _spread_keys(spec: dict[str, Any]) -> list[str]:
    out = []
    for pref in (spec.get("Placement") or {}).get("Preferences") or ():
        desc = ((pref or {}).get("Spread") or {}).get("SpreadDescriptor")
        if desc:
            out.append(desc)
    return out


def _spread_value(node: dict[str, Any], key: str) -> str | None:
    value = _node_value(node, key)
    return value if value else None  # nodes without the label: a branch of their own


# -- deciding ------------------------------------------------------------------------------------

def _filter(spec, constraints, cpu, mem, max_replicas, sid, info: NodeInfo,
            ports: frozenset[tuple[int, str]] = frozenset()) -> int | None:
    """The first filter ``info`` fails for a task, None if it passes them all."""
    if not info.ready:
        return READY
    if not info.fits(cpu, mem):
        return RESOURCES
    if constraints and not node_matches(constraints, info.node):
        return CONSTRAINTS
    if not _platform_ok(spec, info.node):
        return PLATFORM
    if ports and ports & info.ports:
        return HOST_PORT
    if max_replicas and info.by_service.get(sid, 0) >= max_replicas:
        return MAX_REPLICAS
    return None


def _assigned(task: dict[str, Any], node_id: str, message: str) -> dict[str, Any]:
    out = copy.copy(task)
    out["NodeID"] = node_id
    out["Status"] = status("assigned", message)
    return out


def _pending(task: dict[str, Any], err: str) -> dict[str, Any] | None:
    st = task.get("Status") or {}
    if st.get("State") == "pending" and st.get("Err", "") == err:
        return None  # nothing new to say
    out = copy.copy(task)
    out["Status"] = status("pending", "pending task scheduling", err)
    return out


def schedule(to_place: Iterable[dict[str, Any]], nodes: Iterable[dict[str, Any]],
             tasks: Iterable[dict[str, Any]], now: float | None = None,
             failures: dict[tuple[str, str], int] | None = None) -> list[dict[str, Any]]:
    """Place ``to_place`` (tasks waiting for a node) on ``nodes``, given every task of the
    cluster (``tasks``: the nodes' load and, without ``failures`` -- a :class:`FailureLog`'s
    counts -- their recent failures; ``now``: POSIX seconds).  Returns the changed tasks
    (copies)."""
    infos = node_infos(nodes, tasks, now, failures)
    out: list[dict[str, Any]] = []
    groups: dict[tuple[str, str], list[dict[str, Any]]] = {}
    for t in sorted(to_place, key=lambda t: (t.get("ServiceID", ""), t.get("Slot") or 0, t["ID"])):
        if t.get("NodeID"):
            _place_preassigned(t, infos, out)
            continue
        # tasks of one service with one spec share their filters' verdicts
        key = (t.get("ServiceID", ""), repr(sorted(((t.get("Spec") or {}).get("Placement") or {}).items()))
               + repr(reservations(t)) + repr(sorted(host_ports(t))))
        groups.setdefault(key, []).append(t)
    for group in groups.values():
        if _spread_keys(group[0].get("Spec") or {}):
            _place_spread(group, infos, out)
        else:
            _place_group(group, infos, out)
    return out


def _place_preassigned(t: dict[str, Any], infos: dict[str, NodeInfo], out: list) -> None:
    spec = t.get("Spec") or {}
    info = infos.get(t["NodeID"])
    cpu, mem = reservations(t)
    if info is None:
        failure: int | None = READY
    else:
        failure = _filter(spec, task_constraints(spec), cpu, mem, 0, t.get("ServiceID", ""), info,
                          host_ports(t))
    if failure is None:
        assert info is not None
        info.add(t)
        out.append(_assigned(t, t["NodeID"], "scheduler confirmed task can run on preassigned node"))
    elif (changed := _pending(t, no_suitable_node({failure: 1}))) is not None:
        out.append(changed)


def _place_group(group: list[dict[str, Any]], infos: dict[str, NodeInfo], out: list) -> None:
    first = group[0]
    spec = first.get("Spec") or {}
    sid = first.get("ServiceID", "")
    constraints = task_constraints(spec)
    cpu, mem = reservations(first)
    max_replicas = int((spec.get("Placement") or {}).get("MaxReplicas") or 0)
    ports = host_ports(first)
    failures: dict[int, int] = {}
    heap: list[tuple[int, int, int, str]] = []
    for info in infos.values():
        failure = _filter(spec, constraints, cpu, mem, max_replicas, sid, info, ports)
        if failure is None:
            heap.append((info.failed(sid), info.by_service.get(sid, 0), info.total, info.id))
        else:
            failures[failure] = failures.get(failure, 0) + 1
    heapq.heapify(heap)
    for i, t in enumerate(group):
        chosen = None
        while heap:
            _failed, _svc, _total, node_id = heapq.heappop(heap)
            info = infos[node_id]
            # counts only grow within the group: a node failing now fails for the rest too
            failure = _filter(spec, (), cpu, mem, max_replicas, sid, info, ports)
            if failure is None:
                chosen = info
                break
            failures[failure] = failures.get(failure, 0) + 1
        if chosen is None:
            err = no_suitable_node(failures)
            for rest in group[i:]:
                if (changed := _pending(rest, err)) is not None:
                    out.append(changed)
            return
        chosen.add(t)
        out.append(_assigned(t, chosen.id, "scheduler assigned task to node"))
        heapq.heappush(heap, (chosen.failed(sid), chosen.by_service.get(sid, 0), chosen.total,
                              chosen.id))


def _place_spread(group: list[dict[str, Any]], infos: dict[str, NodeInfo], out: list) -> None:
    spec = group[0].get("Spec") or {}
    sid = group[0].get("ServiceID", "")
    constraints = task_constraints(spec)
    cpu, mem = reservations(group[0])
    max_replicas = int((spec.get("Placement") or {}).get("MaxReplicas") or 0)
    keys = _spread_keys(spec)
    ports = host_ports(group[0])
    paths = {i.id: tuple(_spread_value(i.node, k) for k in keys) for i in infos.values()}
    for t in group:
        failures: dict[int, int] = {}
        eligible = []
        for info in infos.values():
            failure = _filter(spec, constraints, cpu, mem, max_replicas, sid, info, ports)
            if failure is None:
                eligible.append(info)
            else:
                failures[failure] = failures.get(failure, 0) + 1
        if not eligible:
            if (changed := _pending(t, no_suitable_node(failures))) is not None:
                out.append(changed)
            continue
        candidates = eligible
        chosen_path: tuple[Any, ...] = ()
        for depth in range(len(keys)):
            branches: dict[Any, list[NodeInfo]] = {}
            for info in candidates:
                branches.setdefault(paths[info.id][depth], []).append(info)

            def load(value: Any, depth: int = depth, above: tuple = chosen_path) -> tuple[int, str]:
                # the service's tasks in the branch, over all its nodes (eligible or not)
                return (sum(o.by_service.get(sid, 0) for o in infos.values()
                            if paths[o.id][:depth] == above and paths[o.id][depth] == value),
                        str(value))
            best = min(branches, key=load)
            chosen_path += (best,)
            candidates = branches[best]
        chosen = min(candidates, key=lambda i: (i.failed(sid), i.by_service.get(sid, 0), i.total,
                                                i.id))
        chosen.add(t)
        out.append(_assigned(t, chosen.id, "scheduler assigned task to node"))


def to_place(tasks: Iterable[dict[str, Any]]) -> list[dict[str, Any]]:
    """The tasks waiting for the scheduler."""
    return [t for t in tasks if (t.get("Status") or {}).get("State") in UNPLACED
            and t.get("DesiredState") in ("ready", "running")]
