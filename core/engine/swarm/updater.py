"""The updater: rolling updates and rollbacks of services (swarmkit's ``manager/orchestrator/update``).

A slot (a global service's node) is *dirty* when its runnable task's ``Spec`` is not the
service's ``TaskTemplate`` (a ``ForceUpdate`` increment changes it too; specs are compared by meaning: swarmkit's defaults
and empty parts equal absent ones; a change of ``Placement`` alone leaves a task whose node meets the new constraints where it is), or when it
holds more than one runnable task.  An update that changes no task (only ``UpdateConfig``, say) replaces
nothing.  While a service has dirty slots the updater rolls them, :meth:`Updater.step` being
called on every pass of the leader's loop (:mod:`core.engine.swarm.leader`):

- configuration: ``Spec.UpdateConfig``, or ``Spec.RollbackConfig`` while ``UpdateStatus.State``
  is ``rollback_started``; swarmkit's defaults (``Parallelism`` 1, ``Delay`` 0,
  ``FailureAction`` pause, ``Monitor`` 5 s, ``MaxFailureRatio`` 0, ``Order`` stop-first);
- batches of ``Parallelism`` slots (0: all at once), lowest slots first.  Each slot gets a new
  task; ``stop-first``: the old task is told to shut down and the new one (``DesiredState``
  ready: the agent prepares it) starts once the old one has stopped (the orchestrator promotes
  it); ``start-first``: the new one starts at once and the old one is shut down when the new
  one runs.  A batch is done when its new tasks run (or failed); the next starts ``Delay``
  later;
- a new task that fails, is rejected or completes before it ran ``Monitor`` long counts as a
  failure; failures over ``MaxFailureRatio`` of the dirty slots trigger ``FailureAction``:
  ``pause`` (``UpdateStatus.State`` paused, ``update paused due to failure or early termination
  of task <id>``), ``rollback`` (``Spec`` takes ``PreviousSpec`` back, state
  ``rollback_started``, ``update rolled back due to failure or early termination of task
  <id>``; a failing rollback pauses: ``rollback_paused``), ``continue``;
- after the last batch the updater keeps watching for ``Monitor`` (or ``Delay`` + 1 s if longer),
  then writes ``completed`` / ``update completed`` (``rollback_completed`` / ``rollback
  completed``) with ``CompletedAt``.

``UpdateStatus`` is what docker shows.  The agreement with the API's ``service update`` (which
writes ``PreviousSpec``): an update clears ``UpdateStatus`` (swarmkit's controlapi does) and the
updater writes ``updating`` / ``update in progress`` with ``StartedAt`` when it starts; ``service
rollback`` swaps ``Spec``/``PreviousSpec`` and writes ``UpdateStatus`` ``{"State":
"rollback_started", "Message": "manually requested rollback"}``: the updater then rolls with
``RollbackConfig``.  A paused update stays paused until the next ``service update``.

Progress is kept in memory (:class:`Run`); a new leader resumes from the store: the dirty slots
are still dirty.
"""
from __future__ import annotations

import copy
from typing import Any

import attrs

from core.engine.swarm.orchestrator import (SECOND, Changes, View, changed, host_mode_ports,
                                            is_global, new_task, runnable, state_of, template)
from core.engine.swarm.scheduler import node_matches, task_constraints
from core.engine.swarm.store import SERVICES, now_text
from core.engine.swarm.tasks import TERMINAL

DEFAULTS = {"Parallelism": 1, "Delay": 0, "FailureAction": "pause", "Monitor": 5 * SECOND,
            "MaxFailureRatio": 0.0, "Order": "stop-first"}
#: a new task ending in one of these before its monitor period is over is a failure
FAILED = frozenset({"failed", "rejected", "complete"})


def config(service: dict[str, Any], rollback: bool) -> dict[str, Any]:
    spec = service.get("Spec") or {}
    given = spec.get("RollbackConfig" if rollback else "UpdateConfig") or {}
    out = dict(DEFAULTS)
    out.update({k: v for k, v in given.items() if v is not None})
    return out


@attrs.define
class Run:
    """One service's update in progress."""

    target: dict[str, Any]  # the TaskTemplate rolled to
    rollback: bool
    total: int  # dirty slots when it started
    batch: dict[str, Any] = attrs.field(factory=dict)  # new task ID -> slot key
    created: set[str] = attrs.field(factory=set)
    running_at: dict[str, float] = attrs.field(factory=dict)
    failed: set[str] = attrs.field(factory=set)
    next_at: float = 0.0
    done_at: float | None = None
    batches: int = 0


#: what an unset part of a TaskTemplate means (swarmkit's ``api/defaults``; ``GET
#: /services/{id}?insertDefaults=true`` shows them and the Docker SDK's update sends them back)
TASK_DEFAULTS = {"ContainerSpec": {"StopGracePeriod": 10 * SECOND, "Isolation": "default"},
                 "RestartPolicy": {"Condition": "any", "Delay": 5 * SECOND, "MaxAttempts": 0},
                 "Runtime": "container"}


def _with_defaults(spec: Any, defaults: dict[str, Any]) -> Any:
    if not isinstance(spec, dict):
        return spec
    out = dict(spec)
    for k, v in defaults.items():
        if isinstance(v, dict):
            out[k] = _with_defaults(out.get(k) or {}, v)
        elif out.get(k) is None:
            out[k] = v
    return out


def same_spec(a: dict[str, Any], b: dict[str, Any]) -> bool:
    """Whether two task specs mean the same (defaults and empty parts as absent ones)."""
    return a == b or normal(_with_defaults(a, TASK_DEFAULTS)) == normal(_with_defaults(b, TASK_DEFAULTS))


def normal(value: Any) -> Any:
    """A spec as protobuf compares it: empty values (``{}``, ``[]``, ``""``, ``0``, ``False``,
    None) are the same as absent ones (clients send ``"Placement": {}`` or leave it out)."""
    if isinstance(value, dict):
        out = {k: normal(v) for k, v in value.items()}
        return {k: v for k, v in out.items() if v not in ({}, [], "", 0, False, None)}
    if isinstance(value, list):
        return [normal(v) for v in value]
    return value


def meaning(spec: dict[str, Any]) -> Any:
    return normal(_with_defaults(spec, TASK_DEFAULTS))


def is_dirty(task: dict[str, Any], tmpl: dict[str, Any], view: View,
             memo: dict[int, Any] | None = None, ports: list[dict[str, Any]] | None = None) -> bool:
    """swarmkit's ``IsTaskDirty``: the task's spec is not the template -- unless only the
    placement differs and the task's node meets the new constraints (it stays where it is) --
    or (``ports``: the service's ``mode=host`` ports) the task publishes other host ports.
    ``memo`` keeps specs' meanings by object (tasks made from one template share it)."""
    if ports is not None and ((task.get("Endpoint") or {}).get("Ports") or []) != ports:
        return True
    spec = task.get("Spec") or {}
    if spec is tmpl or spec == tmpl:
        return False
    memo = {} if memo is None else memo
    a = memo.get(id(spec))
    if a is None:
        a = memo[id(spec)] = (meaning(spec), spec)
    b = memo.get(id(tmpl))
    if b is None:
        b = memo[id(tmpl)] = (meaning(tmpl), tmpl)
    a, b = a[0], b[0]
    if a == b:
        return False
    if {k: v for k, v in a.items() if k != "Placement"} != {k: v for k, v in b.items() if k != "Placement"}:
        return True
    node = view.nodes.get(task.get("NodeID", ""))
    return node is None or not node_matches(task_constraints(tmpl), node)


def slot_key(task: dict[str, Any]) -> Any:
    return task.get("Slot") or task.get("NodeID", "")


class Updater:
    def __init__(self) -> None:
        self.runs: dict[str, Run] = {}

    def step(self, view: View, now: float, out: Changes) -> None:
        by_service = view.by_service()
        for sid in list(self.runs):
            if sid not in view.services:
                del self.runs[sid]
        for sid, service in list(view.services.items()):
            self._service(view, now, out, service, by_service.get(sid, []))

    # -- one service --

    def _service(self, view: View, now: float, out: Changes, service: dict[str, Any],
                 tasks: list[dict[str, Any]]) -> None:
        sid = service["ID"]
        us = service.get("UpdateStatus") or {}
        state = us.get("State")
        if state in ("paused", "rollback_paused"):
            self.runs.pop(sid, None)
            return
        rollback = state == "rollback_started"
        tmpl = template(service)
        ports = host_mode_ports(service)
        memo: dict[int, Any] = {}  # spec meanings, for this pass
        slots: dict[Any, list[dict[str, Any]]] = {}
        for t in tasks:
            t = view.tasks.get(t["ID"], t)
            if runnable(t) and state_of(t) not in TERMINAL:
                slots.setdefault(slot_key(t), []).append(t)
        run = self.runs.get(sid)
        if run is not None and (run.target != tmpl or run.rollback != rollback):
            run = None  # the spec changed under the update: start over
        in_batch = set(run.batch.values()) if run else set()
        dirty = sorted((k for k, ts in slots.items()
                        if k not in in_batch and (len(ts) > 1 or is_dirty(ts[0], tmpl, view, memo,
                                                                          ports))),
                       key=lambda k: (isinstance(k, str), k))
        if run is None:
            self.runs.pop(sid, None)
            if not dirty:
                if state in ("updating", "rollback_started"):
                    self._write_status(view, out, service, completed=True, rollback=rollback)
                return
            run = self.runs[sid] = Run(target=copy.deepcopy(tmpl), rollback=rollback, total=len(dirty))
        if state not in ("updating", "rollback_started"):  # (again if the last write lost a race)
            self._write_status(view, out, service, started=True)
            service = view.services[sid]
        cfg = config(service, rollback)
        if self._failures(view, now, out, service, run, cfg):
            self.runs.pop(sid, None)
            return
        if run.batch:
            self._follow_batch(view, now, out, run, cfg, slots)
        if run.batch:
            return
        if dirty:
            run.done_at = None
            if now < run.next_at:
                out.due(run.next_at)
                return
            parallelism = int(cfg["Parallelism"] or 0) or len(dirty)
            for key in dirty[:parallelism]:
                self._update_slot(view, out, service, run, key, slots[key], cfg, memo, tmpl, ports)
            run.batches += 1
            if not run.batch:  # only leftovers to shut down: no new tasks to wait for
                run.next_at = now + int(cfg["Delay"] or 0) / SECOND
            return
        monitor = int(cfg["Monitor"] or 0) / SECOND
        delay = int(cfg["Delay"] or 0) / SECOND
        if run.done_at is None:
            run.done_at = now + (delay + 1 if delay >= monitor and delay else monitor)
        if now >= run.done_at:
            self.runs.pop(sid, None)
            self._write_status(view, out, service, completed=True, rollback=rollback)
        else:
            out.due(run.done_at)

    def _update_slot(self, view: View, out: Changes, service: dict[str, Any], run: Run, key: Any,
                     live: list[dict[str, Any]], cfg: dict[str, Any], memo: dict[int, Any],
                     tmpl: dict[str, Any], ports: Any) -> None:
        clean = [t for t in live if not is_dirty(t, tmpl, view, memo, ports)]
        if clean:  # a task with the new spec is there already: keep it, stop the others
            keep = max(clean, key=lambda t: (state_of(t) == "running", t.get("CreatedAt", "")))
            for t in live:
                if t["ID"] != keep["ID"]:
                    out.put(view, changed(t, DesiredState="shutdown"))
            return
        start_first = cfg.get("Order") == "start-first"
        version = view.versions.get(SERVICES + service["ID"], 0)
        if is_global(service):
            new = new_task(service, version, node_id=key, desired="running" if start_first else "ready",
                           view=view)
        else:
            new = new_task(service, version, slot=key, desired="running" if start_first else "ready",
                           view=view)
        if not start_first:
            for t in live:
                out.put(view, changed(t, DesiredState="shutdown"))
        out.put(view, new)
        run.batch[new["ID"]] = key
        run.created.add(new["ID"])

    def _follow_batch(self, view: View, now: float, out: Changes, run: Run, cfg: dict[str, Any],
                      slots: dict[Any, list[dict[str, Any]]]) -> None:
        start_first = cfg.get("Order") == "start-first"
        for tid, key in list(run.batch.items()):
            t = view.tasks.get(tid)
            st = state_of(t) if t else "remove"
            if st == "running":
                run.running_at.setdefault(tid, now)
                if start_first:
                    for o in slots.get(key, ()):
                        o = view.tasks.get(o["ID"], o)
                        if o["ID"] != tid and runnable(o):
                            out.put(view, changed(o, DesiredState="shutdown"))
                del run.batch[tid]
            elif st in TERMINAL or t is None or not runnable(t):
                del run.batch[tid]
        if not run.batch:
            run.next_at = now + int(cfg["Delay"] or 0) / SECOND
            if run.next_at > now:
                out.due(run.next_at)

    def _failures(self, view: View, now: float, out: Changes, service: dict[str, Any], run: Run,
                  cfg: dict[str, Any]) -> bool:
        """Count the new tasks that failed; True when the failure action stopped the run."""
        monitor = int(cfg["Monitor"] or 0) / SECOND
        for tid in sorted(run.created - run.failed):
            t = view.tasks.get(tid)
            if t is None or state_of(t) not in FAILED:
                continue
            ran = run.running_at.get(tid)
            if ran is not None and now - ran > monitor:
                continue
            run.failed.add(tid)
            action = cfg.get("FailureAction") or "pause"
            if len(run.failed) / max(1, run.total) <= float(cfg.get("MaxFailureRatio") or 0):
                continue
            if action == "continue":
                continue
            if action == "rollback" and not run.rollback and (service.get("PreviousSpec")):
                self._write_rollback(view, out, service, tid)
            elif action == "rollback" and not run.rollback:
                self._write_status(view, out, service, paused=f"update paused due to failure or "
                                   f"early termination of task {tid}")
            else:
                what = "rollback" if run.rollback else "update"
                self._write_status(view, out, service, paused=f"{what} paused due to failure or "
                                   f"early termination of task {tid}")
            return True
        return False

    # -- the service's UpdateStatus --

    @staticmethod
    def _write_status(view: View, out: Changes, service: dict[str, Any], *, started: bool = False,
                      completed: bool = False, rollback: bool = False, paused: str = "") -> None:
        svc = copy.deepcopy(service)
        us = dict(svc.get("UpdateStatus") or {})
        if started:
            us = {"State": "updating", "StartedAt": now_text(), "Message": "update in progress"}
        elif completed:
            us["State"] = "rollback_completed" if rollback else "completed"
            us["Message"] = "rollback completed" if rollback else "update completed"
            us["CompletedAt"] = now_text()
        elif paused:
            us["State"] = "rollback_paused" if us.get("State") == "rollback_started" else "paused"
            us["Message"] = paused
        svc["UpdateStatus"] = us
        out.services[svc["ID"]] = svc
        view.services[svc["ID"]] = svc

    @staticmethod
    def _write_rollback(view: View, out: Changes, service: dict[str, Any], task_id: str) -> None:
        svc = copy.deepcopy(service)
        svc["Spec"] = svc.pop("PreviousSpec")
        us = dict(svc.get("UpdateStatus") or {})
        us["State"] = "rollback_started"
        us["Message"] = f"update rolled back due to failure or early termination of task {task_id}"
        svc["UpdateStatus"] = us
        out.services[svc["ID"]] = svc
        view.services[svc["ID"]] = svc
