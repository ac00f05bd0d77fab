"""The orchestrator: each service's desired tasks against the actual ones (swarmkit's
``manager/orchestrator/{replicated,global,restart}``).

Pure decisions (:meth:`Orchestrator.reconcile`) over a :class:`View` of the store: in, the
services, tasks and nodes; out, a :class:`Changes` (tasks to create or change, when to look
again).  The leader's loop (:mod:`core.engine.swarm.leader`) runs it on every change the store's
watch brings and writes what it returns.

Replicated services (``Spec.Mode.Replicated.Replicas`` N): slots 1..N, each with at most one
*runnable* task (``DesiredState`` ``ready``/``running``; a rolling update holds two for a while,
see :mod:`core.engine.swarm.updater`).  Missing slots get a new task (state ``new``,
``DesiredState`` running, ``Spec`` the service's ``TaskTemplate``, ``ServiceAnnotations``,
``SpecVersion``, ``Slot``) at the lowest free numbers; surplus slots are retired with
``DesiredState`` ``remove`` (the agent stops them, the reaper deletes them), preferring, as
swarmkit does, slots on the nodes holding the most tasks of the service, then tasks not running.

Global services (``Spec.Mode.Global``): one task per eligible node (not down, availability
``active``, constraints met), created with its ``NodeID``; a paused node keeps its task but gets
no new one; tasks on drained, down or no-longer-matching nodes are shut down.

Restart policy (``TaskTemplate.RestartPolicy``: ``Condition`` ``any`` (default) |
``on-failure`` | ``none``, ``Delay`` (ns, default 5 s), ``MaxAttempts``, ``Window``): a task that
ends while desired running (``complete``/``failed``/``rejected``/``shutdown``/``orphaned``) gets
``DesiredState`` shutdown and, if the policy says so, a replacement in its slot (on its node for
a global service) at once, with ``DesiredState`` ``ready`` until the delay has passed (the
agent prepares it -- pull, create -- and starts it when it turns ``running``), as swarmkit's
restart supervisor does.  A slot whose last task ended without a restart stays empty.
``MaxAttempts`` and ``Window`` count the slot's restarts since its task spec last changed; a
new leader counts them from the slot's task history in the store (and a replacement still in
its delay waits out the rest of it), so a leader change neither forgets restarts nor adds one.

Nodes: a task on a node that is ``down`` (or was removed) is marked ``orphaned`` and replaced
at once (the restart policy's condition and attempts apply, not its delay: the node's heartbeat
grace has passed already -- swarmkit waits the delay here too); a task on a ``drain`` node is
shut down and replaced (no delay either, as swarmkit); a ``pause`` node gets nothing new (the
scheduler).

A service that no longer exists has its tasks' ``DesiredState`` set to ``remove``; unassigned
tasks desired shut down are marked ``shutdown`` at once (no agent will).
"""
from __future__ import annotations

import copy
from typing import Any

import attrs

from core.engine.swarm.scheduler import node_matches, task_constraints
from core.engine.swarm.store import SERVICES, now_text, seconds
from core.engine.swarm.tasks import TERMINAL, new_task_id, status

RUNNABLE = ("ready", "running")
SECOND = 10**9
DEFAULT_RESTART_DELAY = 5 * SECOND
#: states a task reaches without being told to stop: its end counts for the restart policy
ENDED = frozenset({"complete", "failed", "rejected", "shutdown", "orphaned"})


@attrs.define
class View:
    """What the leader knows of the store: objects by ID (services, tasks, nodes) and the
    cluster's spec."""

    services: dict[str, dict[str, Any]] = attrs.field(factory=dict)
    tasks: dict[str, dict[str, Any]] = attrs.field(factory=dict)
    nodes: dict[str, dict[str, Any]] = attrs.field(factory=dict)
    cluster: dict[str, Any] = attrs.field(factory=dict)
    versions: dict[str, int] = attrs.field(factory=dict)  # store key -> mod_revision
    #: one copy of each service version's TaskTemplate, shared by the tasks made from it
    #: (nothing edits a task's Spec in place)
    templates: dict[tuple[str, int], dict[str, Any]] = attrs.field(factory=dict)

    def template_of(self, service: dict[str, Any], version: int) -> dict[str, Any]:
        key = (service["ID"], version)
        spec = self.templates.get(key)
        if spec is None or spec is not template(service) and spec != template(service):
            if len(self.templates) > 1000:
                self.templates.clear()
            spec = self.templates[key] = copy.deepcopy(template(service))
        return spec

    def share_spec(self, task: dict[str, Any]) -> None:
        """A task read from the store: its ``Spec`` becomes the shared copy of its service
        version's template when equal (one decoded copy per version, not one per task)."""
        spec = task.get("Spec")
        if not isinstance(spec, dict):
            return
        key = (task.get("ServiceID", ""), int((task.get("SpecVersion") or {}).get("Index") or 0))
        known = self.templates.get(key)
        if known is not None and known == spec:
            task["Spec"] = known
        elif known is None:
            if len(self.templates) > 1000:
                self.templates.clear()
            self.templates[key] = spec

    def by_service(self) -> dict[str, list[dict[str, Any]]]:
        out: dict[str, list[dict[str, Any]]] = {}
        for t in self.tasks.values():
            out.setdefault(t.get("ServiceID", ""), []).append(t)
        return out


@attrs.define
class Changes:
    """What a pass decided: tasks to write (new or changed, by ID), services to write, task IDs
    to delete, and the earliest time (clock seconds) something is due."""

    tasks: dict[str, dict[str, Any]] = attrs.field(factory=dict)
    services: dict[str, dict[str, Any]] = attrs.field(factory=dict)
    deletes: set[str] = attrs.field(factory=set)
    wake: float | None = None

    def due(self, when: float) -> None:
        self.wake = when if self.wake is None else min(self.wake, when)

    def put(self, view: View, task: dict[str, Any]) -> None:
        """Record a task write and show it in ``view`` at once (later decisions see it)."""
        self.tasks[task["ID"]] = task
        view.tasks[task["ID"]] = task


def state_of(task: dict[str, Any]) -> str:
    return (task.get("Status") or {}).get("State", "")


def runnable(task: dict[str, Any]) -> bool:
    return task.get("DesiredState") in RUNNABLE


def is_global(service: dict[str, Any]) -> bool:
    return "Global" in ((service.get("Spec") or {}).get("Mode") or {})


def replicas(service: dict[str, Any]) -> int:
    mode = (service.get("Spec") or {}).get("Mode") or {}
    return int(((mode.get("Replicated") or {}).get("Replicas")) or 0)


def template(service: dict[str, Any]) -> dict[str, Any]:
    return (service.get("Spec") or {}).get("TaskTemplate") or {}


def node_down(node: dict[str, Any] | None) -> bool:
    return node is None or (node.get("Status") or {}).get("State") == "down"


def availability(node: dict[str, Any]) -> str:
    return (node.get("Spec") or {}).get("Availability", "active")


def host_mode_ports(service: dict[str, Any]) -> list[dict[str, Any]]:
    """The service's ``mode=host`` ports (its ``Endpoint.Ports``, else its spec's): what its
    tasks carry as ``Endpoint.Ports``."""
    spec = service.get("Spec") or {}
    return [copy.deepcopy(p) for p in ((service.get("Endpoint") or {}).get("Ports")
                                       or (spec.get("EndpointSpec") or {}).get("Ports") or ())
            if isinstance(p, dict) and p.get("PublishMode") == "host"]


def new_task(service: dict[str, Any], version: int, *, slot: int | None = None, node_id: str = "",
             desired: str = "running", view: View | None = None) -> dict[str, Any]:
    """A task of ``service`` (its version ``version``) in state ``new``."""
    t = now_text()
    spec = service.get("Spec") or {}
    task: dict[str, Any] = {
        "ID": new_task_id(), "CreatedAt": t, "UpdatedAt": t, "Labels": {},
        "Spec": view.template_of(service, version) if view is not None else copy.deepcopy(template(service)),
        "ServiceID": service["ID"],
        "NodeID": node_id, "Status": status("new", "created"), "DesiredState": desired,
        "NetworksAttachments": [],
        "ServiceAnnotations": {"Name": spec.get("Name", ""), "Labels": dict(spec.get("Labels") or {})},
        "SpecVersion": {"Index": version},
    }
    ports = host_mode_ports(service)
    if ports:  # swarmkit's Task.Endpoint: the node publishes these itself (mode=host)
        task["Endpoint"] = {"Ports": ports}
    if slot is not None:
        task["Slot"] = slot
    return task


def _fits(memo: dict[tuple[int, str], bool], constraints: list[tuple[str, bool, str]],
          node: dict[str, Any]) -> bool:
    """``node_matches`` once per constraints (the parsed, cached list) and node in a pass."""
    key = (id(constraints), node.get("ID", ""))
    found = memo.get(key)
    if found is None:
        found = memo[key] = node_matches(constraints, node)
    return found


def changed(task: dict[str, Any], **fields: Any) -> dict[str, Any]:
    out = copy.copy(task)
    out.update(fields)
    return out


def restart_delay(task: dict[str, Any]) -> int:
    """The task's restart delay in ns (docker's default 5 s)."""
    delay = ((task.get("Spec") or {}).get("RestartPolicy") or {}).get("Delay")
    return DEFAULT_RESTART_DELAY if delay is None else int(delay)


class Orchestrator:
    """The orchestrator's memory between passes: the restarts of each slot (for
    ``MaxAttempts``/``Window``: when each replacement was made, and from which task spec) and
    when each delayed replacement may start.  A new leader rebuilds both from the tasks in the
    store (:meth:`seed`), as swarmkit's ``CheckTasks``/``RecordRestartHistory`` do."""

    def __init__(self) -> None:
        self.restarts: dict[tuple[str, Any], list[tuple[float, dict[str, Any]]]] = {}
        self.start_after: dict[str, float] = {}  # task ID -> clock time its delay ends
        self._fits: dict[tuple[int, str], bool] = {}

    def seed(self, view: View, now: float) -> None:
        """What an earlier leader knew, from the store: in each slot (a global service's: each
        node), the tasks made from the service's current task spec, oldest first, are a first
        run and its restarts (the first one is no restart); a replacement still waiting for its
        restart delay (desired ``ready``) starts when its delay from its creation has passed.
        (A slot keeps ``--task-history-limit`` tasks: restarts beyond those are not seen, as in
        swarmkit.)"""
        slots: dict[tuple[str, Any], list[dict[str, Any]]] = {}
        for t in view.tasks.values():
            slots.setdefault((t.get("ServiceID", ""), t.get("Slot") or t.get("NodeID", "")), []).append(t)
        for key, tasks in slots.items():
            service = view.services.get(key[0])
            if service is None:
                continue
            current = template(service)
            if not int((current.get("RestartPolicy") or {}).get("MaxAttempts") or 0):
                continue  # no limit: no history needed (swarmkit records none)
            same = sorted((t for t in tasks if (t.get("Spec") or {}) == current),
                          key=lambda t: (t.get("CreatedAt", ""), t["ID"]))
            history = [(seconds(t.get("CreatedAt")) or now, t.get("Spec") or {}) for t in same[1:]]
            if history:
                self.restarts[key] = history
        for t in view.tasks.values():
            if t.get("DesiredState") != "ready" or state_of(t) in TERMINAL or t["ID"] in self.start_after:
                continue
            created = seconds(t.get("CreatedAt"))
            if created is not None and created + restart_delay(t) / SECOND > now:
                self.start_after[t["ID"]] = created + restart_delay(t) / SECOND

    # -- the restart policy --

    def should_restart(self, task: dict[str, Any], key: tuple[str, Any], now: float) -> bool:
        """swarmkit's ``Supervisor.shouldRestart``."""
        policy = (task.get("Spec") or {}).get("RestartPolicy") or {}
        condition = policy.get("Condition") or "any"
        if condition == "none":
            return False
        if condition == "on-failure" and state_of(task) == "complete":
            return False
        attempts = int(policy.get("MaxAttempts") or 0)
        if not attempts:
            return True
        window = int(policy.get("Window") or 0) / SECOND
        spec = task.get("Spec") or {}
        # restarts of another task spec (before an update) do not count (swarmkit's specVersion)
        history = [t for t, made_from in self.restarts.get(key, ())
                   if made_from == spec and (not window or now - t <= window)]
        return len(history) < attempts

    def _restart(self, view: View, out: Changes, service: dict[str, Any], task: dict[str, Any],
                 now: float, *, node_id: str = "", delay: int | None = None,
                 slot: list[dict[str, Any]] = ()) -> None:
        """Shut ``task`` down and put a replacement in its slot if the policy says so (and the
        slot holds no other runnable task: an update's new one, say)."""
        out.put(view, changed(task, DesiredState="shutdown"))
        key = (task.get("ServiceID", ""), task.get("Slot") or task.get("NodeID", ""))
        if not self.should_restart(task, key, now):
            return
        for other in slot:
            other = view.tasks.get(other["ID"], other)
            if other["ID"] != task["ID"] and runnable(other) and state_of(other) not in TERMINAL:
                return
        if delay is None:
            delay = restart_delay(task)
        version = view.versions.get(SERVICES + service["ID"], 0)
        new = new_task(service, version, slot=task.get("Slot"), node_id=node_id,
                       desired="ready" if delay > 0 else "running", view=view)
        if delay > 0:
            self.start_after[new["ID"]] = now + delay / SECOND
            out.due(now + delay / SECOND)
        history = self.restarts.setdefault(key, [])
        if history and history[-1][1] != new["Spec"]:
            history.clear()  # a new task spec: its restarts count from zero
        history.append((now, new["Spec"]))
        out.put(view, new)

    # -- one pass --

    def reconcile(self, view: View, now: float) -> Changes:
        out = Changes()
        self._fits: dict[tuple[int, str], bool] = {}  # (constraints, node) -> met: once a pass
        by_service = view.by_service()
        for sid, tasks in by_service.items():
            if sid not in view.services:
                for t in tasks:
                    if t.get("DesiredState") != "remove":
                        out.put(view, changed(t, DesiredState="remove"))
        for sid, service in view.services.items():
            tasks = by_service.get(sid, [])
            mode = (service.get("Spec") or {}).get("Mode") or {}
            if "Replicated" not in mode and "Global" not in mode:
                continue  # jobs: not orchestrated here (the API refuses them)
            if is_global(service):
                self._global(view, out, service, tasks, now)
            else:
                self._replicated(view, out, service, tasks, now)
        self._promote_and_settle(view, out, now)
        return out

    def _node_checks(self, view: View, out: Changes, service: dict[str, Any],
                     tasks: list[dict[str, Any]], now: float, global_: bool) -> None:
        """Tasks on down, removed or drained nodes, and tasks that ended: shut down, replaced."""
        by_slot: dict[Any, list[dict[str, Any]]] | None = None
        fits = self._fits

        def slot_of(t: dict[str, Any]) -> list[dict[str, Any]]:
            nonlocal by_slot
            if by_slot is None:  # (only when something is to be replaced)
                by_slot = {}
                for o in tasks:
                    by_slot.setdefault(o.get("Slot") or o.get("NodeID", ""), []).append(o)
            return by_slot.get(t.get("Slot") or t.get("NodeID", ""), [])

        for t in list(tasks):
            t = view.tasks.get(t["ID"], t)
            if not runnable(t):
                continue
            node = view.nodes.get(t["NodeID"]) if t.get("NodeID") else None
            if t.get("NodeID") and node_down(node):
                orphan = t
                if state_of(t) not in TERMINAL and state_of(t) not in ("new", "allocated", "pending"):
                    # swarmkit's dispatcher: it may have run on; nobody knows (message kept)
                    orphan = changed(t, Status={**(t.get("Status") or {}), "State": "orphaned",
                                                "Timestamp": now_text()})
                if global_:
                    out.put(view, changed(orphan, DesiredState="shutdown"))
                else:  # no restart delay: the node's heartbeat grace has passed already
                    self._restart(view, out, service, orphan, now, delay=0, slot=slot_of(t))
            elif node is not None and availability(node) == "drain":
                if global_:
                    out.put(view, changed(t, DesiredState="shutdown"))
                else:
                    self._restart(view, out, service, t, now, delay=0, slot=slot_of(t))  # no delay off a drained node
            elif (not global_ and node is not None and state_of(t) not in TERMINAL
                  and not _fits(fits, task_constraints(t.get("Spec") or {}), node)):
                # swarmkit's constraint enforcer: the node no longer meets the constraints
                rejected = changed(t, Status=status("rejected", "task rejected by constraint enforcer",
                                                    "assigned node no longer meets constraints"))
                self._restart(view, out, service, rejected, now, delay=0, slot=slot_of(t))
            elif state_of(t) in ENDED:
                self._restart(view, out, service, t, now, node_id=t.get("NodeID", "") if global_ else "",
                              slot=slot_of(t))

    @staticmethod
    def _current(view: View, out: Changes, sid: str, tasks: list[dict[str, Any]]) -> list[dict[str, Any]]:
        """The service's tasks as they are now (``tasks`` as changed, plus the new ones)."""
        ids = {t["ID"] for t in tasks}
        return ([view.tasks[i] for i in ids]
                + [t for t in out.tasks.values() if t.get("ServiceID") == sid and t["ID"] not in ids])

    def _replicated(self, view: View, out: Changes, service: dict[str, Any],
                    tasks: list[dict[str, Any]], now: float) -> None:
        self._node_checks(view, out, service, tasks, now, False)
        tasks = self._current(view, out, service["ID"], tasks)
        slots: dict[int, list[dict[str, Any]]] = {}
        for t in tasks:
            if t.get("Slot"):
                slots.setdefault(int(t["Slot"]), []).append(t)
        live = {s: ts for s, ts in slots.items() if any(runnable(t) for t in ts)}
        # a slot whose last task ended without a restart stays as it is (not refilled)
        settled = set()
        for s, ts in slots.items():
            if s in live:
                continue
            last = max(ts, key=lambda t: (t.get("CreatedAt", ""), t["ID"]))
            if (last.get("DesiredState") == "shutdown" and state_of(last) in ENDED
                    and state_of(last) != "shutdown"
                    and not self.should_restart(last, (service["ID"], s), now)):
                settled.add(s)
        want = replicas(service)
        occupied = len(live) + len([s for s in settled if s <= want])
        version = view.versions.get(SERVICES + service["ID"], 0)
        if occupied < want:
            taken = set(live) | settled
            slot = 0
            for _ in range(want - occupied):
                slot += 1
                while slot in taken:
                    slot += 1
                out.put(view, new_task(service, version, slot=slot, view=view))
        elif len(live) > want:
            for s in self._surplus(live, want):
                for t in live[s]:
                    if runnable(t):
                        out.put(view, changed(t, DesiredState="remove"))

    @staticmethod
    def _surplus(live: dict[int, list[dict[str, Any]]], want: int) -> list[int]:
        """The slots to retire when scaling down (swarmkit's order: keep running tasks, balance
        the nodes; among equals the highest slots go)."""
        def running(slot: int) -> bool:
            return any(state_of(t) == "running" for t in live[slot])
        order = sorted(live, key=lambda s: (not running(s), s))
        per_node: dict[str, int] = {}
        ranked = []
        for s in order:
            ts = [t for t in live[s] if runnable(t)]
            if len(ts) == 1 and ts[0].get("NodeID"):
                per_node[ts[0]["NodeID"]] = per_node.get(ts[0]["NodeID"], 0) + 1
                ranked.append((per_node[ts[0]["NodeID"]], s))
            else:
                ranked.append((1 << 30, s))  # unassigned: first to go
        keep = sorted(ranked, key=lambda r: (r[0], r[1]))[:want]
        kept = {s for _i, s in keep}
        return sorted((s for s in live if s not in kept), reverse=True)

    def _global(self, view: View, out: Changes, service: dict[str, Any],
                tasks: list[dict[str, Any]], now: float) -> None:
        self._node_checks(view, out, service, tasks, now, True)
        tasks = self._current(view, out, service["ID"], tasks)
        constraints = task_constraints(template(service))
        on_node: dict[str, list[dict[str, Any]]] = {}
        for t in tasks:
            if t.get("NodeID"):
                on_node.setdefault(t["NodeID"], []).append(t)
        version = view.versions.get(SERVICES + service["ID"], 0)
        for node_id, node in view.nodes.items():
            ts = on_node.get(node_id, [])
            live = [t for t in ts if runnable(t)]
            fits = not node_down(node) and node_matches(constraints, node)
            if not fits:
                for t in live:
                    out.put(view, changed(t, DesiredState="shutdown"))
                continue
            if live or availability(node) != "active":
                continue
            if ts:
                last = max(ts, key=lambda t: (t.get("CreatedAt", ""), t["ID"]))
                if (state_of(last) in ENDED and state_of(last) != "shutdown"
                        and not self.should_restart(last, (service["ID"], node_id), now)):
                    continue  # ended and not to be restarted
            out.put(view, new_task(service, version, node_id=node_id, view=view))

    def _promote_and_settle(self, view: View, out: Changes, now: float) -> None:
        """Start delayed replacements whose delay has passed and whose slot's other tasks have
        stopped; mark unassigned tasks desired down as shut down (no agent will)."""
        slots: dict[tuple[str, Any], list[dict[str, Any]]] | None = None  # (built when needed)
        for t in list(view.tasks.values()):
            desired = t.get("DesiredState")
            if desired in ("shutdown", "remove") and state_of(t) in ("new", "allocated", "pending"):
                out.put(view, changed(t, Status=status("shutdown", "shutdown before assignment")))
                continue
            if desired != "ready" or state_of(t) in TERMINAL:
                continue
            if slots is None:
                slots = {}
                for o in view.tasks.values():
                    slots.setdefault((o.get("ServiceID", ""), o.get("Slot") or o.get("NodeID", "")), []).append(o)
            key = (t.get("ServiceID", ""), t.get("Slot") or t.get("NodeID", ""))
            others = [o for o in slots.get(key, ()) if o["ID"] != t["ID"]]
            if any(state_of(o) not in TERMINAL and not node_down(view.nodes.get(o.get("NodeID", "")))
                   and o.get("NodeID") for o in others):
                continue  # a stop-first update: the old task is still stopping
            when = self.start_after.get(t["ID"], 0.0)
            if when > now:
                out.due(when)
                continue
            self.start_after.pop(t["ID"], None)
            out.put(view, changed(t, DesiredState="running"))
