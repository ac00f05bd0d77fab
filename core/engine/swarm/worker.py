"""The node's task runner: runs the swarm tasks assigned to this node through the local engine
(swarmkit's ``agent/worker`` and moby's ``daemon/cluster/executor/container``).

Every node (managers too) runs one :class:`Worker`.  The agent hands it each item of its
session (:meth:`Worker.on_update`); an ``assignments`` item is the complete set of the node's
tasks (the node protocol, :mod:`core.engine.swarm.tasks`).  For each task it runs a controller
that moves the task on and reports every change with the call ``tasks.status`` (batched, sent
again after a failover)::

    assigned -> accepted -> preparing (pull, with the service's registry credentials)
             -> ready (container created) -> starting -> running (healthy, if it has a
             healthcheck) -> complete (exit 0) | failed ("task: non-zero exit (N)")
    a pull and create failure: rejected, with the error; a start failure (a port the routing
    mesh publishes held on this node, say): failed, with the error
    DesiredState shutdown/remove: drained, stopped with the grace period -> shutdown

A task's container is named :func:`core.engine.swarm.tasks.container_name` and labelled as
docker labels it (``com.docker.swarm.task``, ``.task.id``, ``.task.name``, ``.node.id``,
``.service.id``, ``.service.name`` over the spec's own labels); its restart policy is ``no``
(the swarm restarts tasks) and it is never auto-removed.  A task's container stays until the
task leaves the node's set (the leader's task reaper deleted it): then it is removed.

Draining (moby's ``controller.Shutdown``): a task wanted stopped has left its service's balancing
sets already -- the managers count only tasks that run and are wanted running, for the VIPs and
the routing mesh (:mod:`core.engine.swarm.vip`) -- but every node learns it at its next pass
(:mod:`core.engine.networks.swarmlocal`, once a second).  So a running task on a swarm network is
stopped only :data:`DRAIN` seconds after it is told to stop (docker's ``defaultGossipConvergeDelay``,
2 s, for the same reason): new connections go to the other tasks meanwhile, and no request is
sent to a container that is going away (the daemon's environment may set another drain,
:data:`DRAIN_ENV`, to measure without it).  A task that failed its healthcheck is drained the same
way before it is stopped.  A new task joins the sets only when it reports ``running`` (healthy,
if it has a healthcheck).

Deaths are seen on the engine's event stream (``die``, ``destroy``, ``health_status``): a
container that exits or is removed behind the swarm's back is reported ``failed`` (``complete``
for exit 0).

Swarm tasks survive a daemon restart: containers outlive the daemon, and on start the worker
finds its task containers by label and re-adopts them; a running one keeps running (its state
is reported if the manager's differs), one that died meanwhile is reported.

Leaving the swarm (``swarm leave``) removes the node's task containers, as docker does
(:func:`remove_task_containers`).

Logs: a ``logs`` item asks for some tasks' logs; the worker reads their containers' logs and
publishes them with the call ``logs.publish`` until done (or, following, until the manager
says the reader is gone).
"""
from __future__ import annotations

import base64
import binascii
import datetime as dt
import json
import logging
import os
import re
from typing import Any, Awaitable, Callable

import attrs
import trio

from core import errors
from core.engine.containers.store import NotModified  # stop's answer for a stopped container
from core.engine.interfaces import EventSource, ImagePuller, TaskContainers
from core.engine.swarm import tasks as swarm_tasks

log = logging.getLogger("core.swarm.worker")

LABEL = "com.docker.swarm"
TASK_ID_LABEL = f"{LABEL}.task.id"
DEFAULT_GRACE = 10 * 10**9  # docker's StopGracePeriod default, ns
REPORT_DELAY = 0.05  # reports gathered this long, then sent in one call
#: seconds a running task on a swarm network keeps running, out of the balancing sets, before
#: it is stopped (see the module docstring)
DRAIN = 2.0
#: the daemon's environment may set another drain (seconds; ``0``: none), for measurements
DRAIN_ENV = "CORE_SWARM_TASK_DRAIN"


def drain_seconds() -> float:
    """:data:`DRAIN`, or the seconds :data:`DRAIN_ENV` says (a bad value: :data:`DRAIN`, logged)."""
    text = os.environ.get(DRAIN_ENV, "").strip()
    if not text:
        return DRAIN
    try:
        value = float(text)
    except ValueError:
        value = -1.0
    if not 0 <= value <= 600:
        log.warning("%s=%r is no number of seconds (0-600): draining %.1f s", DRAIN_ENV, text, DRAIN)
        return DRAIN
    return value


NS = 10**9

Call = Callable[..., Awaitable[Any]]


def _desired_stop(task: dict[str, Any]) -> bool:
    """The task is wanted stopped (``DesiredState`` past running)."""
    return swarm_tasks.ORDER.get(task.get("DesiredState", "running"), 0) > swarm_tasks.ORDER["running"]


# -- the container a task becomes ------------------------------------------------------------

_TEMPLATE = re.compile(r"\{\{\s*\.([A-Za-z]+)\.([A-Za-z.]+)\s*\}\}")


def expand(text: str, task: dict[str, Any], node: dict[str, str]) -> str:
    """docker's service templates (``{{.Service.Name}}``, ``{{.Task.Slot}}``,
    ``{{.Node.Hostname}}``...); an unknown one is an error (the task is rejected)."""
    service = task.get("ServiceAnnotations", {})
    values = {
        ("Service", "ID"): task.get("ServiceID", ""),
        ("Service", "Name"): service.get("Name", ""),
        ("Task", "ID"): task["ID"],
        ("Task", "Name"): swarm_tasks.container_name(task),
        ("Task", "Slot"): str(task.get("Slot") or task.get("NodeID", "")),
        ("Node", "ID"): node.get("ID", ""),
        ("Node", "Hostname"): node.get("Hostname", ""),
        ("Node", "Platform.OS"): "linux",
        ("Node", "Platform.Architecture"): node.get("Architecture", ""),
    }

    def one(m: re.Match) -> str:
        key = (m.group(1), m.group(2))
        if key not in values:
            raise errors.InvalidArgument(
                f'template: expanding "{text}": can\'t evaluate field {m.group(2)} in {m.group(1)}')
        return values[key]

    return _TEMPLATE.sub(one, text) if "{{" in text else text


def task_labels(task: dict[str, Any]) -> dict[str, str]:
    """docker's labels of a task's container: the spec's, the task's, then the system ones."""
    spec = task.get("Spec", {}).get("ContainerSpec", {})
    labels = {str(k): str(v) for k, v in (spec.get("Labels") or {}).items()}
    labels.update({str(k): str(v) for k, v in (task.get("Labels") or {}).items()})
    labels.update({
        f"{LABEL}.task": "",
        f"{LABEL}.task.id": task["ID"],
        f"{LABEL}.task.name": swarm_tasks.container_name(task),
        f"{LABEL}.node.id": task.get("NodeID", ""),
        f"{LABEL}.service.id": task.get("ServiceID", ""),
        f"{LABEL}.service.name": task.get("ServiceAnnotations", {}).get("Name", ""),
    })
    return labels


def _mount(m: dict[str, Any], task: dict[str, Any], node: dict[str, str]) -> dict[str, Any]:
    out = {k: v for k, v in m.items() if k in ("Type", "Source", "Target", "ReadOnly", "Consistency",
                                                "BindOptions", "VolumeOptions", "TmpfsOptions")}
    for key in ("Source", "Target"):
        if isinstance(out.get(key), str):
            out[key] = expand(out[key], task, node)
    return out


def container_body(task: dict[str, Any], node: dict[str, str]) -> dict[str, Any]:
    """The ``POST /containers/create`` body of a task (moby's ``containerConfig``)."""
    spec = task.get("Spec", {}).get("ContainerSpec") or {}
    if not spec.get("Image"):
        raise errors.InvalidArgument("task has no ContainerSpec.Image")
    body: dict[str, Any] = {
        "Image": spec["Image"],
        "Labels": task_labels(task),
        "Env": [expand(e, task, node) for e in spec.get("Env") or ()],
        "Tty": bool(spec.get("TTY")),
        "OpenStdin": bool(spec.get("OpenStdin")),
    }
    if spec.get("Command"):
        body["Entrypoint"] = list(spec["Command"])
    if spec.get("Args"):
        body["Cmd"] = list(spec["Args"])
    if spec.get("Hostname"):
        body["Hostname"] = expand(spec["Hostname"], task, node)
    for ours, theirs in (("Dir", "WorkingDir"), ("User", "User"), ("StopSignal", "StopSignal"),
                         ("Healthcheck", "Healthcheck")):
        if spec.get(ours):
            body[theirs] = spec[ours]
    resources = task.get("Spec", {}).get("Resources") or {}
    limits = resources.get("Limits") or {}
    host: dict[str, Any] = {
        "RestartPolicy": {"Name": "no"},   # the swarm restarts tasks, not the engine
        "AutoRemove": False,
        "Mounts": [_mount(m, task, node) for m in spec.get("Mounts") or ()],
        "ReadonlyRootfs": bool(spec.get("ReadOnly")),
    }
    if limits.get("NanoCPUs"):
        host["NanoCpus"] = int(limits["NanoCPUs"])
    if limits.get("MemoryBytes"):
        host["Memory"] = int(limits["MemoryBytes"])
    if limits.get("Pids"):
        host["PidsLimit"] = int(limits["Pids"])
    if spec.get("Groups"):
        host["GroupAdd"] = list(spec["Groups"])
    if spec.get("Init") is not None:
        host["Init"] = bool(spec["Init"])
    if spec.get("CapabilityAdd"):
        host["CapAdd"] = list(spec["CapabilityAdd"])
    if spec.get("CapabilityDrop"):
        host["CapDrop"] = list(spec["CapabilityDrop"])
    if spec.get("Sysctls"):
        host["Sysctls"] = dict(spec["Sysctls"])
    if spec.get("Ulimits"):
        host["Ulimits"] = list(spec["Ulimits"])
    dns = spec.get("DNSConfig") or {}
    for ours, theirs in (("Nameservers", "Dns"), ("Search", "DnsSearch"), ("Options", "DnsOptions")):
        if dns.get(ours):
            host[theirs] = list(dns[ours])
    if spec.get("Hosts"):  # swarm's "IP host..." lines -> docker's "host:IP"
        extra = []
        for line in spec["Hosts"]:
            parts = str(line).split()
            extra += [f"{h}:{parts[0]}" for h in parts[1:]]
        host["ExtraHosts"] = extra
    driver = task.get("Spec", {}).get("LogDriver") or {}
    if driver.get("Name"):
        host["LogConfig"] = {"Type": driver["Name"], "Config": dict(driver.get("Options") or {})}
    body["HostConfig"] = host
    return body


def registry_auth(task: dict[str, Any]) -> dict[str, str] | None:
    """The service's registry credentials (``--with-registry-auth``): the client's
    ``X-Registry-Auth`` (base64url JSON) kept in ``ContainerSpec.PullOptions.RegistryAuth``."""
    value = ((task.get("Spec", {}).get("ContainerSpec") or {}).get("PullOptions") or {}).get("RegistryAuth")
    if not value:
        return None
    try:
        data = json.loads(base64.urlsafe_b64decode(value + "=" * (-len(value) % 4)))
    except (binascii.Error, ValueError, UnicodeDecodeError):
        return None
    if not isinstance(data, dict):
        return None
    return {k: v for k, v in data.items() if isinstance(k, str) and isinstance(v, str) and v} or None


def exit_status(code: int) -> tuple[str, str, str]:
    """(state, message, error) of a task whose container exited with ``code``."""
    if code == 0:
        return "complete", "finished", ""
    return "failed", "started", f"task: non-zero exit ({code})"


def _rfc3339(time_ns: int) -> str:
    t = dt.datetime.fromtimestamp(time_ns / NS, dt.timezone.utc)
    return t.strftime("%Y-%m-%dT%H:%M:%S.") + f"{time_ns % NS:09d}Z"


async def remove_task_containers(containers: TaskContainers, node_id: str) -> int:
    """``swarm leave``: the node's task containers go, as docker's do; returns how many."""
    removed = 0
    for c in await containers.list({"label": [f"{LABEL}.node.id={node_id}"]}, all_=True):
        try:
            await containers.remove(c["Id"], force=True)
            removed += 1
        except errors.NotFound:
            pass
        except errors.CoreError as exc:
            log.warning("swarm leave: removing task container %s: %s", c["Id"][:12], exc)
    return removed


# -- the runner --------------------------------------------------------------------------------

@attrs.define(eq=False)
class _Task:
    task: dict[str, Any]
    state: str                       # the last state known to the managers (or reported)
    container: str | None = None     # its container's ID
    scope: trio.CancelScope = attrs.field(factory=trio.CancelScope)
    poke: trio.Event = attrs.field(factory=trio.Event)
    health: str = ""
    status: dict[str, Any] | None = None  # the last status reported

    @property
    def id(self) -> str:
        return self.task["ID"]

    def wake(self) -> None:
        self.poke.set()
        self.poke = trio.Event()


class Worker:
    """The node's task runner (see the module docstring).

    ``call(name, **args)`` is a call on the swarm channel to the node's manager (the agent's
    :class:`~core.engine.swarm.transport.ManagerClient`); ``node()`` is this node's
    ``{"ID", "Hostname", "Architecture"}`` for the templates; ``drivers()`` the engine's
    default drivers for container create; ``networking(attachments)`` (optional) makes a task's
    networks on the node and gives its container's ``NetworkMode`` and ``EndpointsConfig``;
    ``published_check(attachments, service_id)`` (optional), before a task's container starts,
    fails the task with its error (a port the routing mesh cannot publish on this node: the
    restart delay applies to the next try, as to any start that fails); ``drain`` the seconds a
    running task on a swarm network is kept running, out of the balancing sets, before it is
    stopped (:data:`DRAIN`, or :data:`DRAIN_ENV`'s).
    """

    def __init__(self, *, containers: TaskContainers, images: ImagePuller, events: EventSource,
                 call: Call, node: Callable[[], dict[str, str]],
                 drivers: Callable[[], dict[str, str]],
                 networking: Callable[..., Awaitable[dict[str, Any]]] | None = None,
                 published_check: Callable[..., Awaitable[None]] | None = None,
                 drain: float | None = None) -> None:
        self.containers = containers
        self.published_check = published_check
        self.drain = drain_seconds() if drain is None else drain
        self.networking = networking
        self.images = images
        self.events = events
        self.call = call
        self.node = node
        self.drivers = drivers
        self.tasks: dict[str, _Task] = {}
        self._adopted: dict[str, str] = {}       # task ID -> container ID, found at start
        self._assigned: list[dict[str, Any]] | None = None
        self._new_set = trio.Event()
        self._reports: dict[str, dict[str, Any]] = {}
        self._report_wake = trio.Event()
        self._nursery: trio.Nursery | None = None
        self.first_set = trio.Event()
        #: one pull at a time per image: tasks of one service landing together wait for the
        #: same pull (two pulls of one blob race in the content store, and the loser's create
        #: would find no image)
        self._pulls: dict[str, trio.Lock] = {}

    # -- what the agent hands over --

    async def on_update(self, item: dict[str, Any]) -> None:
        """An item of the session (or a heartbeat's answer): assignments and log requests."""
        if isinstance(item.get("assignments"), list):
            self._assigned = item["assignments"]
            self._new_set.set()
        if isinstance(item.get("logs"), dict) and self._nursery is not None:
            self._nursery.start_soon(self._publish_logs, item["logs"])

    # -- the loop --

    async def run(self, *, task_status=trio.TASK_STATUS_IGNORED) -> None:
        """Re-adopt the task containers, then run assignments until cancelled (the containers
        run on: they outlive the daemon and the swarm's session)."""
        for c in await self.containers.list({"label": [TASK_ID_LABEL]}, all_=True):
            task_id = (c.get("Labels") or {}).get(TASK_ID_LABEL)
            if task_id:
                self._adopted[task_id] = c["Id"]
        async with trio.open_nursery() as nursery:
            self._nursery = nursery
            nursery.start_soon(self._watch_events)
            nursery.start_soon(self._reporter)
            task_status.started()
            while True:
                await self._new_set.wait()
                self._new_set = trio.Event()
                assigned, self._assigned = self._assigned, None
                if assigned is not None:
                    await self._reconcile(assigned)

    async def _reconcile(self, assigned: list[dict[str, Any]]) -> None:
        me = self.node().get("ID")
        wanted = {t["ID"]: t for t in assigned if isinstance(t, dict) and t.get("ID")
                  and t.get("NodeID") in (None, me)}
        for task_id, task in wanted.items():
            t = self.tasks.get(task_id)
            if t is None:
                t = _Task(task=task, state=task.get("Status", {}).get("State", "assigned"),
                          container=self._adopted.pop(task_id, None))
                self.tasks[task_id] = t
                assert self._nursery is not None
                self._nursery.start_soon(self._control, t)
            else:
                t.task = task
                theirs = task.get("Status", {}).get("State", "")
                if t.status is not None and swarm_tasks.advances(theirs, t.state) \
                        and task_id not in self._reports:
                    self._reports[task_id] = t.status  # a report the managers missed: again
                    self._report_wake.set()
                t.wake()
        for task_id in [i for i in self.tasks if i not in wanted]:
            t = self.tasks.pop(task_id)
            t.scope.cancel()
            await self._remove(t.container, t.id)
        if not self.first_set.is_set():
            # containers of tasks deleted while this node was away
            for task_id, cid in list(self._adopted.items()):
                if task_id not in wanted:
                    del self._adopted[task_id]
                    await self._remove(cid, task_id)
            self.first_set.set()

    async def _remove(self, cid: str | None, task_id: str) -> None:
        if not cid:
            return
        try:
            await self.containers.remove(cid, force=True)
        except errors.NotFound:
            pass
        except errors.CoreError as exc:
            log.warning("task %s: removing its container: %s", task_id, exc)

    # -- reports --

    def report(self, t: _Task, state: str, message: str = "", err: str = "",
               exit_code: int | None = None, pid: int = 0) -> None:
        """Queue a state change of a task (sent by :meth:`_reporter`)."""
        if not swarm_tasks.advances(t.state, state):
            return
        t.state = state
        status: dict[str, Any] = swarm_tasks.status(state, message or state, err)
        if t.container:
            status["ContainerStatus"] = {"ContainerID": t.container, "PID": pid,
                                         "ExitCode": exit_code or 0}
        status["PortStatus"] = {}
        t.status = status
        self._reports[t.id] = status
        self._report_wake.set()
        log.debug("task %s: %s %s", t.id, state, err)

    async def _reporter(self) -> None:
        while True:
            await self._report_wake.wait()
            await trio.sleep(REPORT_DELAY)
            self._report_wake = trio.Event()
            batch, self._reports = self._reports, {}
            if not batch:
                continue
            try:
                await self.call("tasks.status", updates=[{"ID": i, "Status": s} for i, s in batch.items()])
            except BaseException as exc:
                for task_id, status in batch.items():  # a newer state reported meanwhile wins
                    self._reports.setdefault(task_id, status)
                self._report_wake.set()
                if not isinstance(exc, (errors.CoreError, trio.TooSlowError, OSError)):
                    raise
                log.info("reporting task states: %s; again soon", exc)
                await trio.sleep(1.0)

    # -- one task --

    async def _control(self, t: _Task) -> None:
        with t.scope:
            try:
                await self._run_task(t)
            except errors.CoreError as exc:
                log.info("task %s: %s", t.id, exc)
                self.report(t, "failed", err=str(exc))
            except Exception as exc:  # noqa: BLE001 - a bug fails this task, not the node's runner
                log.exception("task %s failed", t.id)
                self.report(t, "failed", err=f"internal error: {type(exc).__name__}: {exc}")

    async def _inspect(self, t: _Task) -> dict[str, Any] | None:
        if not t.container:
            return None
        try:
            return await self.containers.inspect(t.container)
        except errors.NotFound:
            return None

    async def _run_task(self, t: _Task) -> None:
        if t.state in swarm_tasks.TERMINAL:
            return  # finished: its container stays until the task is deleted
        info = await self._inspect(t)
        if info is None and t.container is None and not _desired_stop(t.task):
            if swarm_tasks.ORDER.get(t.state, 0) > swarm_tasks.ORDER["ready"]:
                # it ran here before, and its container is gone
                self.report(t, "failed", err="task: container removed")
                return
            if not await self._prepare(t):
                return
            info = await self._inspect(t)
        if info is None:
            if t.container is not None and not _desired_stop(t.task):
                self.report(t, "failed", "started", "task: container removed")
            else:
                self.report(t, "shutdown", "shutdown")
            return
        while t.task.get("DesiredState") == "ready" and not _desired_stop(t.task):
            await t.poke.wait()  # a start-first update's new task: created, not started yet
        if _desired_stop(t.task):
            await self._shutdown(t)
            return
        state = info.get("State") or {}
        if not state.get("Running"):
            ran = not str(state.get("StartedAt") or "0001").startswith("0001")
            if ran or swarm_tasks.ORDER.get(t.state, 0) >= swarm_tasks.ORDER["running"]:
                # it ran and exited (while the daemon was away, or before we looked)
                code = int(state.get("ExitCode") or 0)
                self.report(t, *exit_status(code), exit_code=code)
                return
            self.report(t, "starting", "starting")
            try:
                if self.published_check is not None and t.task.get("NetworksAttachments"):
                    await self.published_check(t.task["NetworksAttachments"], t.task.get("ServiceID", ""))
                await self.containers.start(t.container)
            except errors.CoreError as exc:
                self.report(t, "failed", "starting", str(exc))
                return
            info = await self._inspect(t)
            if info is None:
                self.report(t, "failed", "started", "task: container removed")
                return
        await self._monitor(t, info)

    async def _prepare(self, t: _Task) -> bool:
        """accepted -> preparing (pull) -> ready (created); False when rejected."""
        self.report(t, "accepted", "accepted")
        self.report(t, "preparing", "preparing")
        node = self.node()
        try:
            body = container_body(t.task, node)
            if self.networking is not None and t.task.get("NetworksAttachments"):
                # the task's overlay networks on this node, with the leader's addresses
                net = await self.networking(t.task["NetworksAttachments"])
                if net.get("NetworkMode"):
                    body["HostConfig"]["NetworkMode"] = net["NetworkMode"]
                    body["NetworkingConfig"] = {"EndpointsConfig": net["EndpointsConfig"]}
        except errors.CoreError as exc:
            self.report(t, "rejected", "preparing", str(exc))
            return False
        lock = self._pulls.setdefault(body["Image"], trio.Lock())
        try:
            async with lock:
                await self.images.pull_image(body["Image"], auth=registry_auth(t.task))
        except errors.CoreError as exc:
            # docker's agent too: a failed pull is no error when the image is here already;
            # create says "No such image" when it is not
            log.info("task %s: pulling %s: %s", t.id, body["Image"], exc)
        try:
            container, _warnings = await self.containers.create(
                body, name=swarm_tasks.container_name(t.task), drivers=self.drivers())
        except errors.CoreError as exc:
            self.report(t, "rejected", "preparing", str(exc))
            return False
        t.container = container.id
        self.report(t, "ready", "prepared")
        return True

    async def _monitor(self, t: _Task, info: dict[str, Any]) -> None:
        """The container runs: running (once healthy), then its exit or a stop."""
        has_health = bool((info.get("Config") or {}).get("Healthcheck", {}).get("Test")) and \
            (info["Config"]["Healthcheck"]["Test"] or ["NONE"])[0] != "NONE"
        while True:
            poke = t.poke  # taken before the inspect: a death after it still wakes us
            found = await self._inspect(t)
            if found is None:
                self.report(t, "failed", "started", "task: container removed")
                return
            info = found
            state = info.get("State") or {}
            if not state.get("Running"):
                code = int(state.get("ExitCode") or 0)
                self.report(t, *exit_status(code), exit_code=code, pid=0)
                return
            if _desired_stop(t.task):
                await self._shutdown(t)
                return
            health = (state.get("Health") or {}).get("Status", "")
            if has_health and health == "unhealthy":
                self.report(t, "failed", "started", "task: unhealthy container")
                with trio.move_on_after(self._grace(t) / NS + self.drain + 5):
                    await self._drain(t, serving=True)
                    await self._stop(t)
                return
            if not has_health or health == "healthy":
                self.report(t, "running", "started", pid=int(state.get("Pid") or 0))
            await poke.wait()

    def _grace(self, t: _Task) -> int:
        spec = t.task.get("Spec", {}).get("ContainerSpec") or {}
        grace = spec.get("StopGracePeriod")
        return int(grace) if isinstance(grace, int) and grace >= 0 else DEFAULT_GRACE

    async def _stop(self, t: _Task) -> None:
        if not t.container:
            return
        try:
            await self.containers.stop(t.container, timeout=-(-self._grace(t) // NS))
        except (errors.NotFound, NotModified):
            pass

    async def _drain(self, t: _Task, serving: bool) -> None:
        """A task that served on swarm networks waits out of the balancing sets (see the module
        docstring) before it is stopped."""
        if serving and self.drain > 0 and t.task.get("NetworksAttachments"):
            log.debug("task %s: draining %.1f s before the stop", t.id, self.drain)
            await trio.sleep(self.drain)

    async def _shutdown(self, t: _Task) -> None:
        await self._drain(t, serving=t.state == "running")
        await self._stop(t)
        info = await self._inspect(t)
        code = int(((info or {}).get("State") or {}).get("ExitCode") or 0)
        self.report(t, "shutdown", "shutdown", exit_code=code)
        if t.task.get("DesiredState") == "remove":
            await self._remove(t.container, t.id)

    # -- deaths, health --

    async def _watch_events(self) -> None:
        subscription = self.events.subscribe(filters={"type": ["container"], "label": [TASK_ID_LABEL]})
        try:
            async for event in subscription:
                action = event.get("Action", "")
                if action in ("die", "destroy", "start", "stop", "kill") or action.startswith("health_status"):
                    task_id = (event.get("Actor", {}).get("Attributes") or {}).get(TASK_ID_LABEL)
                    t = self.tasks.get(task_id or "")
                    if t is not None:
                        t.wake()
        finally:
            await subscription.aclose()

    # -- logs --

    async def _publish_logs(self, req: dict[str, Any]) -> None:
        sub_id = req.get("id")
        follow = bool(req.get("follow"))
        tail = req.get("tail")
        tail = int(tail) if isinstance(tail, int) and tail >= 0 else None
        try:  # unix seconds (docker's ``since``), the container logs' nanoseconds
            since = int(float(req.get("since") or 0) * NS)
        except (TypeError, ValueError):
            since = 0
        closed = trio.Event()
        lock = trio.Lock()

        async def send(messages: list[dict[str, Any]], close: bool = False) -> None:
            async with lock:
                if closed.is_set():
                    return
                answer = await self.call("logs.publish", id=sub_id, messages=messages, close=close)
                if not (answer or {}).get("open", True):
                    closed.set()

        async def one(task_id: str, nursery: trio.Nursery) -> None:
            t = self.tasks.get(task_id)
            cid = t.container if t is not None else self._adopted.get(task_id)
            if not cid:
                return
            try:
                _c, entries = self.containers.logs(cid, tail=tail, since=since, until=0, follow=follow)
            except errors.CoreError as exc:
                log.info("logs of task %s: %s", task_id, exc)
                return
            batch: list[dict[str, Any]] = []
            async for stream, data, time_ns in entries:
                batch.append({"task": task_id, "stream": "stderr" if stream == 2 else "stdout",
                              "time": _rfc3339(time_ns), "data": base64.b64encode(data).decode()})
                if len(batch) >= 100 or follow:
                    await send(batch)
                    batch = []
                if closed.is_set():
                    nursery.cancel_scope.cancel()
                    return
            if batch:
                await send(batch)

        try:
            async with trio.open_nursery() as nursery:
                for task_id in req.get("tasks") or ():
                    nursery.start_soon(one, str(task_id), nursery)
            await send([], close=True)
        except (errors.CoreError, trio.TooSlowError, OSError) as exc:
            log.info("publishing logs: %s", exc)
