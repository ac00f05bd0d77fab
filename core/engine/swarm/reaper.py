"""The task reaper: deletes the tasks nobody needs to see any more (swarmkit's
``manager/orchestrator/taskreaper``).

- a slot (a global service's node) keeps at most ``Orchestration.TaskHistoryRetentionLimit``
  tasks (the cluster's spec, default 5; negative: no limit): beyond it the oldest finished ones
  (terminal and no longer desired running) are deleted;
- a task desired ``remove`` (a removed service's, a scaled-down slot's) is deleted once it is
  terminal, was never assigned, or its node is gone or down.
"""
from __future__ import annotations

from typing import Any

from core.engine.swarm.orchestrator import Changes, View, node_down, runnable, state_of
from core.engine.swarm.tasks import TERMINAL

DEFAULT_HISTORY = 5


def history_limit(cluster: dict[str, Any]) -> int:
    orch = ((cluster.get("Spec") or {}).get("Orchestration")) or {}
    limit = orch.get("TaskHistoryRetentionLimit")
    return DEFAULT_HISTORY if limit is None else int(limit)


def reap(view: View, out: Changes) -> None:
    """Add the tasks to delete to ``out.deletes``."""
    limit = history_limit(view.cluster)
    slots: dict[tuple[str, Any], list[dict[str, Any]]] = {}
    for t in view.tasks.values():
        if t.get("DesiredState") == "remove":
            st = state_of(t)
            if (st in TERMINAL or st in ("new", "allocated", "pending") or not t.get("NodeID")
                    or node_down(view.nodes.get(t["NodeID"]))):
                out.deletes.add(t["ID"])
                continue
        slots.setdefault((t.get("ServiceID", ""), t.get("Slot") or t.get("NodeID", "")), []).append(t)
    if limit < 0:
        return
    for tasks in slots.values():
        if len(tasks) <= limit:
            continue
        finished = sorted((t for t in tasks if state_of(t) in TERMINAL and not runnable(t)),
                          key=lambda t: (t.get("CreatedAt", ""), t["ID"]))
        extra = len(tasks) - limit
        for t in finished[:extra]:
            out.deletes.add(t["ID"])
