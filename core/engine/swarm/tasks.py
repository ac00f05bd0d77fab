"""Tasks: what a service's desired state becomes, one slot at a time (swarmkit's ``api.Task``).

A task is stored at ``/swarm/tasks/<id>`` (:data:`core.engine.swarm.store.TASKS`) in docker's
API shape (``GET /tasks``), without ``Version``::

    {"ID", "CreatedAt", "UpdatedAt", "Labels": {}, "Spec": <the service's TaskTemplate>,
     "ServiceID", "Slot": <1..N; absent for a global service's task>, "NodeID": <"" until
     assigned>, "Status": {"Timestamp", "State", "Message", "Err", "ContainerStatus":
     {"ContainerID", "PID", "ExitCode"}, "PortStatus": {}}, "DesiredState", "NetworksAttachments": [],
     "ServiceAnnotations": {"Name", "Labels"},      # the service's name, for container names
     "SpecVersion": {"Index": <the service's version the task was made from>},
     "Endpoint": {"Ports": [<the service's mode=host ports>]}}   # only with such ports; not
                                                                  # shown by the API

Who writes what (swarmkit's split, on etcd):

- the **orchestrator** (leader) creates tasks in state ``new`` with ``DesiredState`` running
  (or ``ready`` -- the agent prepares the task (pull, create) but does not start it -- for a
  restart's replacement until its restart delay has passed and for a stop-first update's new
  task until the old one has stopped; :mod:`core.engine.swarm.orchestrator`) and sets
  ``DesiredState`` to ``shutdown``/``remove`` on the tasks it retires;
- the **scheduler** (leader) moves ``new``/``pending`` tasks to ``assigned`` with a ``NodeID``,
  or leaves them ``pending`` with docker's reason in ``Status.Err`` (``no suitable node (...)``);
- the **agent** (the node the task is assigned to) moves it on from ``assigned``: accepted,
  preparing (pull), ready (container created), starting, running, then complete/failed/
  shutdown/rejected; it reports each change through its manager's dispatcher
  (:ref:`the node protocol <node-protocol>` below), never writes etcd itself.
- the **task reaper** (leader) deletes the oldest finished tasks of a slot beyond
  ``Orchestration.TaskHistoryRetentionLimit`` and tasks of removed services once they are down.

A task's ``Status.State`` only moves forward (:func:`advances`); ``DesiredState`` too.

.. _node-protocol:

The node protocol (over the swarm channel, :mod:`core.engine.swarm.transport`)
-------------------------------------------------------------------------------
- manager → node, on the node's ``session`` stream: ``{"assignments": [task, ...]}``, the
  complete set of tasks assigned to the node: every task with that ``NodeID`` whose
  ``Status.State`` is at least ``assigned``, until the task is deleted (a finished task stays
  in the set, and its container on the node, until the leader's task reaper deletes it; then
  the node removes the container), each with its ``Version`` (``{"Index"}``).  Sent in the
  session's first item and whenever the set changes for the node: a task added or deleted, or
  a change other than its ``Status`` (which the node reported itself).  Every manager keeps
  one watch of the tasks for all its sessions (:class:`core.engine.swarm.dispatcher.Assignments`).
- node → manager: the call ``tasks.status`` with ``{"updates": [{"ID": <task id>, "Status":
  <docker's TaskStatus>}, ...]}`` (any manager: the caller is the node of its certificate);
  answers ``{}``.  The dispatcher refuses a task that is not assigned to the calling node
  (``Forbidden``), ignores a state that would move backwards and a task that was deleted, and
  writes the rest in etcd transactions comparing the versions it read (the reports of all the
  nodes that called within a few hundredths of a second together, 50 tasks a transaction;
  :class:`core.engine.swarm.assignments.TaskStatusWriter`).  The node sends its
  changes gathered, the latest state of each task, and sends them again after a failure.
- networks: manager → node, on the session stream: ``{"networks": {<network id>: <state>}}``
  when the state of a swarm network the node has endpoints on changes — the state is what
  the call ``networks.peers`` answers (``{"peers": [{"Address", "NodeID", "VTEP", "Names"}],
  "names": {name: [ip]}, "backends": {vip: [ip]}, "published": [...], "revision": <etcd
  revision it is at least as new as>}``) — and ``{"networks": {<network id>: null}}`` to every
  node when a network is created or removed (the node lists its networks again).  Sent by the
  manager the node is in session with (:mod:`core.engine.swarm.netpush`, one watch per manager);
  the node applies a state unless older than the one it applied last, and still asks
  (``networks.node``, ``networks.peers``) when a session starts, when it makes a network and
  every 10 s, the backstop (:mod:`core.engine.networks.swarmlocal`).
- logs: manager → node ``{"logs": {"id": <subscription>, "tasks": [ids], "follow", "tail",
  "timestamps", "since"}}`` and node → manager the call ``logs.publish`` with ``{"id", "messages":
  [{"task": id, "stream": "stdout"|"stderr", "time", "data": <base64>}], "close": bool}``,
  answered ``{"open": bool}`` (false: the reader is gone, the node stops).  A manager whose
  reader wants tasks of nodes in session with another manager asks that one with the call
  ``logs.relay`` (manager to manager, a stream of the same messages).

The service's registry credentials (``--with-registry-auth``) travel in the task's
``Spec.ContainerSpec.PullOptions.RegistryAuth`` (the client's ``X-Registry-Auth``: base64url
JSON), as swarmkit keeps them; the node pulls with them.
"""
from __future__ import annotations

import secrets
from typing import Any

from core.engine.swarm.store import now_text

#: docker's task states, in their order (swarmkit's ``api.TaskState``)
STATES = ("new", "allocated", "pending", "assigned", "accepted", "preparing", "ready", "starting",
          "running", "complete", "shutdown", "failed", "rejected", "remove", "orphaned")
ORDER = {state: i for i, state in enumerate(STATES)}
#: a task in one of these states has stopped for good
TERMINAL = frozenset({"complete", "shutdown", "failed", "rejected", "remove", "orphaned"})


def advances(current: str, new: str) -> bool:
    """Whether ``new`` is a move forward from ``current`` (states never go back)."""
    return ORDER.get(new, -1) > ORDER.get(current, -1)


def is_terminal(task: dict[str, Any]) -> bool:
    return task.get("Status", {}).get("State") in TERMINAL


def is_active(task: dict[str, Any]) -> bool:
    """A task the orchestrator counts: desired to run and not finished."""
    return task.get("DesiredState") in ("ready", "running") and not is_terminal(task)


def new_task_id() -> str:
    """Swarmkit's IDs: 25 characters of base 36."""
    n = secrets.randbits(128)
    digits = "0123456789abcdefghijklmnopqrstuvwxyz"
    out = []
    while len(out) < 25:
        n, r = divmod(n, 36)
        out.append(digits[r])
    return "".join(out)


def status(state: str, message: str = "", err: str = "", **extra: Any) -> dict[str, Any]:
    """A ``TaskStatus`` stamped now."""
    out: dict[str, Any] = {"Timestamp": now_text(), "State": state, "Message": message}
    if err:
        out["Err"] = err
    out.update(extra)
    return out


def container_name(task: dict[str, Any]) -> str:
    """docker's name for a task's container: ``<service>.<slot>.<task id>`` (a global service's
    task uses the node ID in place of the slot)."""
    name = task.get("ServiceAnnotations", {}).get("Name", "")
    slot = task.get("Slot") or task.get("NodeID", "")
    return f"{name}.{slot}.{task['ID']}"


def task_name(task: dict[str, Any]) -> str:
    """``service ps``'s NAME: ``<service>.<slot>`` (``<service>.<node id>`` when global)."""
    name = task.get("ServiceAnnotations", {}).get("Name", "")
    return f"{name}.{task.get('Slot') or task.get('NodeID', '')}"
