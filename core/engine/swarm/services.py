"""Swarm services, the front: specs checked and stored, services and tasks as the API shows them
(moby's ``daemon/cluster/services.go`` and ``tasks.go`` over swarmkit's ``controlapi``).

:class:`SwarmServices` serves ``/services…`` and ``/tasks…`` (:mod:`core.api.services`).  It
writes services (``/swarm/services/<id>``, :data:`core.engine.swarm.store.SERVICES`) and only
reads tasks: the leader's loops turn a stored service into tasks, the agents run them
(:mod:`core.engine.swarm.tasks`).

The stored service is docker's ``Service`` without ``Version``::

    {"ID", "CreatedAt", "UpdatedAt", "Spec": <ServiceSpec, normalized>,
     "PreviousSpec": <the spec before the last update; absent until one>,
     "Endpoint": {"Spec": <Spec.EndpointSpec or {}>, "Ports": [<PortConfig with PublishedPort
                  allocated>], "VirtualIPs": [<core.engine.swarm.vip's, at render>]},
     "UpdateStatus": <written by the updater; reset by an update, set by a rollback>}

Specs
-----
:func:`normalize_spec` checks a ``ServiceSpec`` as swarmkit's ``validateServiceSpec`` and
moby's converters do (docker's messages, :class:`~core.errors.InvalidArgument`) and fills in
what docker always stores: ``Mode`` (``Replicated`` with 1 replica when none is given),
``Labels``, ``TaskTemplate.ForceUpdate``, a port's ``Protocol`` (``tcp``) and ``PublishMode``
(``ingress``), ``EndpointSpec.Mode`` (``vip``) when ports are given.  The other defaults
(:data:`DEFAULTS`: restart policy, update and rollback configs, stop grace period) are not
stored, as docker's; ``GET /services/{id}?insertDefaults=true`` shows them and the leader's
loops read them with :func:`with_defaults`.  Placement constraints are parsed as the scheduler
reads them (swarmkit's ``constraint.Parse``: ``key 'x' is invalid``, ``value 'x' is invalid``);
a replica count above :data:`MAX_REPLICAS` and a spec over :data:`MAX_SPEC_BYTES` are refused
(docker sets no bounds, but etcd's store has them).

Published ports: an ingress port without ``PublishedPort`` gets the lowest free one of
30000–32767 (swarmkit's dynamic range) and keeps it across updates; an ingress port already
published by another service is docker's ``port '8080' is already in use by service ...``.

Images and credentials
----------------------
When the image has no digest and the registry answers (``resolve_image``, the daemon's image
service asking the registry driver), the stored image is pinned: ``name:tag@sha256:…``, as
docker's CLI pins it; otherwise the answer carries docker's warning and every node resolves
the tag itself.  The ``X-Registry-Auth`` header (``--with-registry-auth``) is stored as given
(base64url JSON, as :func:`core.api.images.registry_auth` decodes it) in
``Spec.TaskTemplate.ContainerSpec.PullOptions.RegistryAuth`` (swarmkit's place): it travels to
the agents inside each task's ``Spec`` and is never shown by the API.  An update without the
header keeps the current spec's credentials (``registryAuthFrom=spec``) or the previous
spec's (``previous-spec``).

Logs
----
``service logs`` and ``task logs`` are gathered from the nodes by the agent side, behind the
small :class:`TaskLogs` interface: ``logs(task_ids, follow, tail, timestamps, since)`` yields
``(task_id, stream, time, data)`` — the swarm service's :meth:`~core.engine.swarm.service.
SwarmService.logs`, which the daemon hands over.  A service's logs are those of the tasks it has
when they are asked for.
"""
from __future__ import annotations

import copy
import json
import logging
import math
import re
import secrets
from typing import Any, AsyncIterator, Awaitable, Callable, Protocol

import trio

from core import errors
from core.engine.swarm import tasks as swarm_tasks
from core.engine.swarm.etcd import WatchCompacted
from core.engine.swarm.store import NETWORKS, NODES, SERVICES, TASKS, Store, now_text
from core.engine.swarm.vip import virtual_ips, with_vips

log = logging.getLogger("core.swarm.services")
#: reads and writes of one ``service update`` while the swarm's own writes (``UpdateStatus``)
#: land between them
UPDATE_ATTEMPTS = 5


class _WrittenMeanwhile(Exception):
    """The service was written between an update's read and its write."""

NS = 10**9
#: what docker's inspect shows of a spec's unset parts (swarmkit's ``api/defaults``)
DEFAULTS: dict[str, Any] = {
    "TaskTemplate": {
        "ContainerSpec": {"StopGracePeriod": 10 * NS, "DNSConfig": {}, "Isolation": "default"},
        "Resources": {"Limits": {}, "Reservations": {}},
        "RestartPolicy": {"Condition": "any", "Delay": 5 * NS, "MaxAttempts": 0},
        "Placement": {},
        "ForceUpdate": 0,
        "Runtime": "container",
    },
    "UpdateConfig": {"Parallelism": 1, "FailureAction": "pause", "Monitor": 5 * NS,
                     "MaxFailureRatio": 0, "Order": "stop-first"},
    "RollbackConfig": {"Parallelism": 1, "FailureAction": "pause", "Monitor": 5 * NS,
                       "MaxFailureRatio": 0, "Order": "stop-first"},
    "EndpointSpec": {"Mode": "vip"},
}
DYNAMIC_PORTS = (30000, 32767)  # swarmkit's dynamic published port range
RESOLVE_TIMEOUT = 8.0
SERVICE_FILTERS = frozenset({"id", "name", "label", "mode"})
TASK_FILTERS = frozenset({"id", "name", "service", "node", "label", "desired-state", "_up-to-date"})
_DNS_NAME = re.compile(r"^[a-zA-Z0-9](?:[-_]*[A-Za-z0-9]+)*$")
#: the most replicas a service may ask for (docker sets no bound): every task is a record in
#: etcd, whose store is bounded (2 GiB by default), and the orchestrator writes the missing tasks
#: of a service at once, so a count beyond anything a cluster can run would exhaust both
MAX_REPLICAS = 100_000
#: the largest spec a service may have, as JSON: the stored service holds it twice (``Spec`` and
#: ``PreviousSpec``) and every task a copy of its template, and etcd takes 1.5 MiB a request
MAX_SPEC_BYTES = 512 * 1024
ERR_NAME_CONFLICT = "rpc error: code = AlreadyExists desc = name conflicts with an existing object"


# -- the spec --------------------------------------------------------------------------------------

def _bad(message: str) -> errors.InvalidArgument:
    return errors.InvalidArgument(message)


def _obj(value: Any, what: str) -> dict[str, Any]:
    if value is None:
        return {}
    if not isinstance(value, dict):
        raise _bad(f"json: cannot unmarshal {_kind(value)} into Go struct field {what} of type object")
    return value


def _kind(value: Any) -> str:
    if isinstance(value, bool):
        return "bool"
    if isinstance(value, (int, float)):
        return "number"
    if isinstance(value, str):
        return "string"
    if isinstance(value, list):
        return "array"
    return "object" if isinstance(value, dict) else "null"


def _int(value: Any, what: str, *, minimum: int | None = None) -> int:
    if isinstance(value, bool) or not isinstance(value, (int, float)) or \
            (isinstance(value, float) and not value.is_integer()):
        raise _bad(f"json: cannot unmarshal {_kind(value)} into Go struct field {what} of type int64")
    value = int(value)
    if minimum is not None and value < minimum:
        raise _bad(f"json: cannot unmarshal number {value} into Go struct field {what} of type uint64")
    return value


def _str(value: Any, what: str) -> str:
    if not isinstance(value, str):
        raise _bad(f"json: cannot unmarshal {_kind(value)} into Go struct field {what} of type string")
    return value


def _strs(value: Any, what: str) -> list[str]:
    if value is None:
        return []
    if not isinstance(value, list) or not all(isinstance(v, str) for v in value):
        raise _bad(f"json: cannot unmarshal {_kind(value)} into Go struct field {what} of type []string")
    return list(value)


def _labels(value: Any, what: str) -> dict[str, str]:
    if value is None:
        return {}
    if not isinstance(value, dict) or not all(isinstance(v, str) for v in value.values()):
        raise _bad(f"json: cannot unmarshal {_kind(value)} into Go struct field {what} of type "
                   "map[string]string")
    return dict(value)


def _duration(section: dict[str, Any], key: str, what: str, negative: str) -> None:
    if key in section and section[key] is not None:
        section[key] = _int(section[key], f"{what}.{key}")
        if section[key] < 0:
            raise _bad(negative)


def _image_ok(image: str) -> bool:
    from core.reference import parse_reference

    try:
        parse_reference(image)
    except errors.InvalidArgument:
        return False
    return True


def _container_spec(cs: dict[str, Any]) -> dict[str, Any]:
    cs = copy.deepcopy(cs)
    image = cs.get("Image")
    if not image:
        raise _bad("ContainerSpec: image reference must be provided")
    image = _str(image, "ContainerSpec.Image")
    if not _image_ok(image):
        raise _bad(f'ContainerSpec: "{image}" is not a valid repository/tag')
    for key in ("Labels",):
        if key in cs:
            cs[key] = _labels(cs[key], f"ContainerSpec.{key}")
    for key in ("Command", "Args", "Env", "Groups", "Hosts", "CapabilityAdd", "CapabilityDrop"):
        if key in cs:
            cs[key] = _strs(cs[key], f"ContainerSpec.{key}")
            if not cs[key]:
                del cs[key]
    for key in ("Hostname", "Dir", "User", "StopSignal", "Isolation"):
        if key in cs and cs[key] is not None:
            _str(cs[key], f"ContainerSpec.{key}")
    for env in cs.get("Env") or []:
        if not env.split("=", 1)[0]:
            raise _bad(f"invalid environment variable: {env}")
    if cs.get("StopGracePeriod") is not None:
        cs["StopGracePeriod"] = _int(cs["StopGracePeriod"], "ContainerSpec.StopGracePeriod")
        if cs["StopGracePeriod"] < 0:
            raise _bad("ContainerSpec: stop grace period cannot be negative")
    mounts = cs.get("Mounts")
    if mounts is not None:
        if not isinstance(mounts, list):
            raise _bad("json: cannot unmarshal into Go struct field ContainerSpec.Mounts of type []mount.Mount")
        seen: set[str] = set()
        for m in mounts:
            m = _obj(m, "ContainerSpec.Mounts")
            kind = m.get("Type") or "volume"
            if kind not in ("bind", "volume", "tmpfs", "npipe", "cluster"):
                raise _bad(f"invalid mount type: {kind!r}")
            target = m.get("Target") or ""
            if not isinstance(target, str) or not target.startswith("/"):
                raise _bad(f"invalid mount target, must be an absolute path: {target}")
            if target in seen:
                raise _bad(f"ContainerSpec: duplicate mount point: {target}")
            seen.add(target)
            if kind == "bind" and not str(m.get("Source") or "").startswith("/"):
                raise _bad(f"invalid bind mount source, must be an absolute path: {m.get('Source') or ''}")
    hc = cs.get("Healthcheck")
    if hc is not None:
        hc = _obj(hc, "ContainerSpec.Healthcheck")
        if "Test" in hc:
            hc["Test"] = _strs(hc["Test"], "HealthConfig.Test")
        for key in ("Interval", "Timeout", "StartPeriod", "StartInterval"):
            if hc.get(key) is not None:
                hc[key] = _int(hc[key], f"HealthConfig.{key}")
                if hc[key] != 0 and hc[key] < 1_000_000:
                    raise _bad(f"ContainerSpec: {key} in HealthConfig cannot be less than 1ms")
        if hc.get("Retries") is not None:
            hc["Retries"] = _int(hc["Retries"], "HealthConfig.Retries")
            if hc["Retries"] < 0:
                raise _bad("ContainerSpec: Retries in HealthConfig cannot be negative")
        cs["Healthcheck"] = hc
    if "PullOptions" in cs:  # credentials are the header's business, never the body's
        del cs["PullOptions"]
    return cs


def _resources(value: Any) -> dict[str, Any]:
    res = _obj(value, "TaskSpec.Resources")
    out: dict[str, Any] = {}
    for part in ("Limits", "Reservations"):
        section = dict(_obj(res.get(part), f"ResourceRequirements.{part}"))
        for key in ("NanoCPUs", "MemoryBytes", "Pids"):
            if section.get(key) is not None:
                section[key] = _int(section[key], f"{part}.{key}")
        cpus = section.get("NanoCPUs") or 0
        if cpus and cpus < 1_000_000:
            raise _bad(f"invalid cpu value {cpus / 1e9:g}: Must be at least {1e6 / 1e9:g}")
        memory = section.get("MemoryBytes") or 0
        if memory and memory < 4 * 1024 * 1024:
            raise _bad(f"invalid memory value {memory}: Must be at least 4MiB")
        out[part] = section
    return out


def _restart_policy(value: Any) -> dict[str, Any]:
    rp = dict(_obj(value, "TaskSpec.RestartPolicy"))
    cond = rp.get("Condition")
    if cond not in (None, "", "none", "on-failure", "any"):
        raise _bad(f"unknown restart policy: {cond}")
    _duration(rp, "Delay", "RestartPolicy", "TaskSpec: restart-delay cannot be negative")
    _duration(rp, "Window", "RestartPolicy", "TaskSpec: restart-window cannot be negative")
    if rp.get("MaxAttempts") is not None:
        rp["MaxAttempts"] = _int(rp["MaxAttempts"], "RestartPolicy.MaxAttempts", minimum=0)
    return rp


def _placement(value: Any) -> dict[str, Any]:
    pl = dict(_obj(value, "TaskSpec.Placement"))
    if "Constraints" in pl:
        pl["Constraints"] = _strs(pl["Constraints"], "Placement.Constraints")
        from core.engine.swarm.scheduler import parse_constraints

        parse_constraints(pl["Constraints"])  # swarmkit's checks and words, as the scheduler reads them
        if not pl["Constraints"]:
            del pl["Constraints"]
    if "Preferences" in pl:
        prefs = pl["Preferences"] or []
        if not isinstance(prefs, list):
            raise _bad("json: cannot unmarshal into Go struct field Placement.Preferences of type "
                       "[]swarm.PlacementPreference")
        for p in prefs:
            spread = _obj(_obj(p, "Placement.Preferences").get("Spread"), "PlacementPreference.Spread")
            if not spread.get("SpreadDescriptor"):
                raise _bad("placement preference: only the spread strategy with a descriptor "
                           "(spread=<label>) is supported")
        if not prefs:
            del pl["Preferences"]
    if pl.get("MaxReplicas") is not None:
        pl["MaxReplicas"] = _int(pl["MaxReplicas"], "Placement.MaxReplicas", minimum=0)
    return pl


def _update_config(value: Any, what: str) -> dict[str, Any]:
    uc = dict(_obj(value, what))
    word = "update" if what == "UpdateConfig" else "rollback"
    if uc.get("Parallelism") is not None:
        uc["Parallelism"] = _int(uc["Parallelism"], f"{what}.Parallelism", minimum=0)
    _duration(uc, "Delay", what, f"TaskSpec: {word}-delay cannot be negative")
    _duration(uc, "Monitor", what, f"TaskSpec: {word}-monitor cannot be negative")
    ratio = uc.get("MaxFailureRatio")
    if ratio is not None:
        if isinstance(ratio, bool) or not isinstance(ratio, (int, float)) or not math.isfinite(ratio):
            raise _bad(f"json: cannot unmarshal {_kind(ratio)} into Go struct field {what}.MaxFailureRatio "
                       "of type float32")
        if ratio < 0 or ratio > 1:
            raise _bad(f"TaskSpec: {word}-maxfailureratio cannot be less than 0 or bigger than 1")
    actions = ("pause", "continue", "rollback") if word == "update" else ("pause", "continue")
    action = uc.get("FailureAction")
    if action not in (None, "", *actions):
        raise _bad(f"unrecognized {word} failure action {action}")
    order = uc.get("Order")
    if order not in (None, "", "stop-first", "start-first"):
        raise _bad(f"unrecognized {word} order {order}")
    return uc


def _ports(value: Any) -> list[dict[str, Any]]:
    if value is None:
        return []
    if not isinstance(value, list):
        raise _bad("json: cannot unmarshal into Go struct field EndpointSpec.Ports of type []swarm.PortConfig")
    out = []
    for p in value:
        p = dict(_obj(p, "EndpointSpec.Ports"))
        proto = p.get("Protocol") or "tcp"
        if proto not in ("tcp", "udp", "sctp"):
            raise _bad(f"unknown protocol: {proto}")
        mode = p.get("PublishMode") or "ingress"
        if mode not in ("ingress", "host"):
            raise _bad(f"unknown publish mode: {mode}")
        target = _int(p.get("TargetPort", 0), "PortConfig.TargetPort", minimum=0)
        published = _int(p.get("PublishedPort", 0) or 0, "PortConfig.PublishedPort", minimum=0)
        if not 0 < target <= 65535 or published > 65535:
            raise _bad(f"invalid port: target {target}, published {published}: ports are 1-65535")
        port: dict[str, Any] = {"Protocol": proto, "TargetPort": target}
        if p.get("Name"):
            port["Name"] = _str(p["Name"], "PortConfig.Name")
        if published:
            port["PublishedPort"] = published
        port["PublishMode"] = mode
        out.append(port)
    seen = set()
    for p in out:
        if p["PublishMode"] == "ingress" and p.get("PublishedPort"):
            key = (p["PublishedPort"], p["Protocol"])
            if key in seen:
                raise _bad("EndpointSpec: duplicate published ports provided")
            seen.add(key)
    return out


def normalize_spec(body: Any) -> dict[str, Any]:
    """A ``ServiceSpec`` from the API, checked (docker's messages) and in the shape stored."""
    if not isinstance(body, dict):
        raise _bad("invalid service spec: expected a JSON object")
    spec = copy.deepcopy(body)
    name = spec.get("Name") or ""
    if not isinstance(name, str):
        raise _bad("json: cannot unmarshal into Go struct field ServiceSpec.Name of type string")
    if name and (len(name) > 63 or not _DNS_NAME.match(name)):
        raise _bad("name must be valid as a DNS name component")
    spec["Name"] = name
    spec["Labels"] = _labels(spec.get("Labels"), "ServiceSpec.Labels")
    tt = dict(_obj(spec.get("TaskTemplate"), "ServiceSpec.TaskTemplate"))
    runtime = tt.get("Runtime") or "container"
    if runtime != "container" or tt.get("PluginSpec") or tt.get("NetworkAttachmentSpec"):
        raise _bad(f"TaskSpec: runtime {runtime!r} is not supported: core runs containers only")
    if tt.get("ContainerSpec") is None:
        raise _bad("TaskSpec: missing runtime")
    tt["ContainerSpec"] = _container_spec(_obj(tt["ContainerSpec"], "TaskSpec.ContainerSpec"))
    if "Resources" in tt:
        tt["Resources"] = _resources(tt["Resources"])
    if "RestartPolicy" in tt:
        tt["RestartPolicy"] = _restart_policy(tt["RestartPolicy"])
    if "Placement" in tt:
        tt["Placement"] = _placement(tt["Placement"])
    networks = tt.get("Networks") or spec.pop("Networks", None) or []  # the old place, as moby
    if not isinstance(networks, list):
        raise _bad("json: cannot unmarshal into Go struct field TaskSpec.Networks of type "
                   "[]swarm.NetworkAttachmentConfig")
    for n in networks:
        if not _obj(n, "TaskSpec.Networks").get("Target"):
            raise _bad("network target must be specified")
    if networks:
        tt["Networks"] = [dict(n) for n in networks]
    else:
        tt.pop("Networks", None)
    tt["ForceUpdate"] = _int(tt.get("ForceUpdate") or 0, "TaskSpec.ForceUpdate", minimum=0)
    spec["TaskTemplate"] = tt
    mode = _obj(spec.get("Mode"), "ServiceSpec.Mode")
    kinds = [k for k in ("Replicated", "Global", "ReplicatedJob", "GlobalJob") if mode.get(k) is not None]
    if len(kinds) > 1:
        raise _bad("must specify only one service mode")
    if kinds and kinds[0] in ("ReplicatedJob", "GlobalJob"):
        raise errors.NotImplemented_("jobs (replicated-job, global-job modes) are not supported by core")
    if kinds == ["Global"]:
        spec["Mode"] = {"Global": {}}
    else:
        rep = _obj(mode.get("Replicated"), "ServiceMode.Replicated")
        replicas = rep.get("Replicas")
        replicas = 1 if replicas is None else _int(replicas, "ReplicatedService.Replicas", minimum=0)
        if replicas > MAX_REPLICAS:
            raise _bad(f"invalid replicas {replicas}: core runs at most {MAX_REPLICAS} replicas of a service")
        spec["Mode"] = {"Replicated": {"Replicas": replicas}}
    for key in ("UpdateConfig", "RollbackConfig"):
        if spec.get(key) is not None:
            spec[key] = _update_config(spec[key], key)
        else:
            spec.pop(key, None)
    if spec.get("EndpointSpec") is not None:
        es = dict(_obj(spec["EndpointSpec"], "ServiceSpec.EndpointSpec"))
        mode_name = es.get("Mode") or "vip"
        if mode_name not in ("vip", "dnsrr"):
            raise _bad(f'invalid resolution mode: "{mode_name}"')
        es["Mode"] = mode_name
        ports = _ports(es.get("Ports"))
        if mode_name == "dnsrr" and any(p["PublishMode"] == "ingress" for p in ports):
            raise _bad("EndpointSpec: port published with ingress mode can't be used with dnsrr mode")
        if ports:
            es["Ports"] = ports
        else:
            es.pop("Ports", None)
        spec["EndpointSpec"] = es
    else:
        spec.pop("EndpointSpec", None)
    size = len(json.dumps(spec))
    if size > MAX_SPEC_BYTES:
        raise _bad(f"service spec too large: {size} bytes of JSON, core stores at most {MAX_SPEC_BYTES} "
                   "(the swarm's store keeps a copy in every task)")
    return spec


def _merge_defaults(value: Any, defaults: Any) -> Any:
    if isinstance(defaults, dict):
        out = dict(value) if isinstance(value, dict) else {}
        for key, default in defaults.items():
            if key not in out or out[key] is None:
                out[key] = copy.deepcopy(default)
            elif isinstance(default, dict) and default:
                out[key] = _merge_defaults(out[key], default)
        return out
    return value


def with_defaults(spec: dict[str, Any]) -> dict[str, Any]:
    """A spec with docker's defaults (:data:`DEFAULTS`) in what it leaves unset: what
    ``insertDefaults`` shows and what the leader's loops act on."""
    out = _merge_defaults(spec, DEFAULTS)
    for key in ("UpdateConfig", "RollbackConfig"):  # zero values are "unset" in swarmkit
        for field in ("FailureAction", "Order"):
            if not out[key].get(field):
                out[key][field] = DEFAULTS[key][field]
    rp = out["TaskTemplate"]["RestartPolicy"]
    if not rp.get("Condition"):
        rp["Condition"] = "any"
    return out


def _strip_auth(spec: dict[str, Any] | None) -> dict[str, Any] | None:
    if spec is None:
        return None
    spec = copy.deepcopy(spec)
    spec.get("TaskTemplate", {}).get("ContainerSpec", {}).pop("PullOptions", None)
    return spec


def render(service: dict[str, Any], version: int, *, insert_defaults: bool = False) -> dict[str, Any]:
    """A stored service as the API shows it (credentials left out)."""
    out: dict[str, Any] = {"ID": service["ID"], "Version": {"Index": version}}
    for key in ("CreatedAt", "UpdatedAt"):
        out[key] = service.get(key, "")
    spec = _strip_auth(service["Spec"])
    out["Spec"] = with_defaults(spec) if insert_defaults else spec
    if service.get("PreviousSpec") is not None:
        prev = _strip_auth(service["PreviousSpec"])
        out["PreviousSpec"] = with_defaults(prev) if insert_defaults else prev
    out["Endpoint"] = copy.deepcopy(service.get("Endpoint") or {"Spec": {}})
    if service.get("UpdateStatus"):
        out["UpdateStatus"] = copy.deepcopy(service["UpdateStatus"])
    return out


def registry_auth_of(spec: dict[str, Any] | None) -> str:
    """The stored ``X-Registry-Auth`` value of a spec ("" when none): what the agent pulls with."""
    if not spec:
        return ""
    return ((spec.get("TaskTemplate", {}).get("ContainerSpec", {}).get("PullOptions") or {})
            .get("RegistryAuth") or "")


def _set_auth(spec: dict[str, Any], auth: str) -> None:
    cs = spec["TaskTemplate"]["ContainerSpec"]
    if auth:
        cs["PullOptions"] = {"RegistryAuth": auth}
    else:
        cs.pop("PullOptions", None)


def new_service_id() -> str:
    return swarm_tasks.new_task_id()


# -- matching ------------------------------------------------------------------------------------

def _labels_match(labels: dict[str, str], wanted: list[str]) -> bool:
    for item in wanted:
        key, sep, value = item.partition("=")
        if key not in labels or (sep and labels[key] != value):
            return False
    return True


def find(objs: list[tuple[dict[str, Any], int]], ref: str, kind: str = "service",
         name: Callable[[dict[str, Any]], str] | None = None) -> tuple[dict[str, Any], int]:
    """moby's ``getService``/``getTask``: a full ID, else a name, else an ID prefix."""
    if not ref:
        raise errors.InvalidArgument(f"{kind} ID or name is empty")
    for obj, version in objs:
        if obj["ID"] == ref:
            return obj, version
    if name is not None:
        named = [(o, v) for o, v in objs if name(o) == ref]
        if len(named) == 1:
            return named[0]
        if len(named) > 1:
            raise errors.InvalidArgument(f"{kind} {ref} is ambiguous ({len(named)} matches found)")
    prefixed = [(o, v) for o, v in objs if o["ID"].startswith(ref)]
    if not prefixed:
        raise errors.NotFound(f"{kind} {ref} not found")
    if len(prefixed) > 1:
        raise errors.InvalidArgument(f"{kind} {ref} is ambiguous ({len(prefixed)} matches found)")
    return prefixed[0]


def _service_matches(service: dict[str, Any], filters: dict[str, list[str]]) -> bool:
    spec = service["Spec"]
    if "id" in filters and not any(service["ID"].startswith(v) for v in filters["id"]):
        return False
    if "name" in filters and not any(spec.get("Name", "").startswith(v) for v in filters["name"]):
        return False
    if "label" in filters and not _labels_match(spec.get("Labels") or {}, filters["label"]):
        return False
    if "mode" in filters:
        mode = "global" if "Global" in spec.get("Mode", {}) else "replicated"
        if mode not in filters["mode"]:
            return False
    return True


def up_to_date(task: dict[str, Any], service: dict[str, Any] | None) -> bool:
    """Whether a task runs its service's current spec (swarmkit's ``!IsTaskDirty``): the task's
    ``Spec`` is the service's ``TaskTemplate`` as stored."""
    return service is not None and task.get("Spec") == service["Spec"].get("TaskTemplate")


def _check_filters(filters: dict[str, list[str]], known: frozenset[str]) -> None:
    for key in filters:
        if key not in known:
            raise errors.InvalidArgument(f"invalid filter '{key}'")
    for mode in filters.get("mode", []):
        if mode not in ("replicated", "global", "replicated-job", "global-job"):
            raise errors.InvalidArgument(f"Invalid filter: 'mode'='{mode}'")
    for state in filters.get("desired-state", []):
        if state not in ("running", "shutdown", "accepted"):
            raise errors.InvalidArgument(f"Invalid desired-state filter: {state!r}")


# -- logs ------------------------------------------------------------------------------------------

#: one line of a task's output: (task ID, "stdout"|"stderr", RFC 3339 time, the bytes)
LogMessage = tuple[str, str, str, bytes]


class TaskLogs(Protocol):
    """The agent side's log gathering (:meth:`core.engine.swarm.service.SwarmService.logs`,
    over the node protocol's ``logs`` subscription, :mod:`core.engine.swarm.tasks`): the output
    of these tasks from the nodes that hold them, ``tail`` lines of each (None: all), only after
    ``since`` (Unix seconds, 0: from the start), then new output while ``follow``; ends when
    every node has sent what it has (or, with ``follow``, when the reader stops)."""

    def logs(self, task_ids: list[str], *, follow: bool = False, tail: int | None = None,
             timestamps: bool = False, since: float = 0) -> AsyncIterator[LogMessage]: ...


class NoLogs:
    """A gatherer with nothing to show (when none is given)."""

    async def logs(self, task_ids: list[str], *, follow: bool = False, tail: int | None = None,
                   timestamps: bool = False, since: float = 0) -> AsyncIterator[LogMessage]:
        return
        yield  # an async generator that yields nothing


class ClusterAccess(Protocol):
    """What this front uses of :class:`core.engine.swarm.service.SwarmService`: the store, for
    a manager only (docker's 503s otherwise), and reads retried across brief etcd absences."""

    def _require_manager(self) -> Store: ...
    async def _read(self, fn: Callable[[Store], Awaitable[Any]], *, wait: float = 10.0) -> Any: ...


#: ``resolve_image(image, registry_auth_header) -> digest`` (None when the registry does not answer)
ImageResolver = Callable[[str, str], Awaitable["str | None"]]


# -- the service -----------------------------------------------------------------------------------

class SwarmServices:
    """``/services…`` and ``/tasks…``: the manager's front of swarm services."""

    def __init__(self, swarm: ClusterAccess, *, resolve_image: ImageResolver | None = None,
                 logs: TaskLogs | None = None) -> None:
        self.swarm = swarm
        self.resolve_image = resolve_image
        self.gatherer: TaskLogs = logs if logs is not None else NoLogs()
        self._lock = trio.Lock()  # one create/update at a time on this manager: name and ports

    # -- reads --

    async def _services(self) -> list[tuple[dict[str, Any], int]]:
        return await self.swarm._read(lambda store: store.objects(SERVICES))

    async def _tasks(self) -> list[tuple[dict[str, Any], int]]:
        return await self.swarm._read(lambda store: store.objects(TASKS))

    async def _find(self, ref: str) -> tuple[dict[str, Any], int]:
        return find(await self._services(), ref, "service", lambda s: s["Spec"].get("Name", ""))

    async def list(self, filters: dict[str, list[str]], *, status: bool = False) -> list[dict[str, Any]]:
        """``GET /services``: filters ``id``, ``name`` (prefixes), ``label``, ``mode``; with
        ``status``, each service's ``ServiceStatus`` (running, desired, completed tasks)."""
        _check_filters(filters, SERVICE_FILTERS)
        services = [(s, v) for s, v in await self._services() if _service_matches(s, filters)]
        vips = await self.swarm._read(virtual_ips)
        out = [render(with_vips(s, vips), v) for s, v in services]
        if status and out:
            counts = self.task_counts(await self._tasks(), await self._nodes())
            for svc in out:
                svc["ServiceStatus"] = self._status(svc, counts)
        return out

    async def _nodes(self) -> list[tuple[dict[str, Any], int]]:
        return await self.swarm._read(lambda store: store.objects(NODES))

    @staticmethod
    def task_counts(tasks: list[tuple[dict[str, Any], int]],
                    nodes: list[tuple[dict[str, Any], int]]) -> dict[str, dict[str, int]]:
        """Per service, as swarmkit's ``ListServiceStatuses`` counts them: tasks running (on
        nodes not down; whatever their desired state: one being stopped by a scale-down or an
        update still runs, and docker shows ``6/5``), tasks desired running (a global service's
        desired count: one per eligible node once the orchestrator has made them), completed."""
        down = {n["ID"] for n, _v in nodes if (n.get("Status") or {}).get("State") == "down"}
        counts: dict[str, dict[str, int]] = {}
        for task, _v in tasks:
            c = counts.setdefault(task.get("ServiceID", ""), {"running": 0, "desired": 0, "completed": 0})
            state = (task.get("Status") or {}).get("State")
            if task.get("DesiredState") == "running":
                c["desired"] += 1
            if state == "running" and task.get("NodeID") not in down:
                c["running"] += 1
            if state == "complete":
                c["completed"] += 1
        return counts

    @staticmethod
    def _status(svc: dict[str, Any], counts: dict[str, dict[str, int]]) -> dict[str, int]:
        """docker's ``ServiceStatus``: a replicated service desires its replicas, a global one
        its tasks desired running; completed tasks count for jobs only (which core refuses)."""
        c = counts.get(svc["ID"], {"running": 0, "desired": 0, "completed": 0})
        mode = svc["Spec"].get("Mode", {})
        desired = mode["Replicated"].get("Replicas", 1) if "Replicated" in mode else c["desired"]
        completed = c["completed"] if "ReplicatedJob" in mode or "GlobalJob" in mode else 0
        return {"RunningTasks": c["running"], "DesiredTasks": desired, "CompletedTasks": completed}

    async def get(self, ref: str, *, insert_defaults: bool = False) -> dict[str, Any]:
        """``GET /services/{id}``: by ID, name or ID prefix."""
        service, version = await self._find(ref)
        vips = await self.swarm._read(virtual_ips)
        return render(with_vips(service, vips), version, insert_defaults=insert_defaults)

    # -- writes --

    async def _resolve(self, spec: dict[str, Any], auth: str, warnings: list[str]) -> None:
        """Pin the image to its digest when the registry answers (docker's warning if not)."""
        from core.reference import parse_reference

        cs = spec["TaskTemplate"]["ContainerSpec"]
        image = cs["Image"]
        ref = parse_reference(image)
        if ref.digest is not None or self.resolve_image is None:
            return
        digest = None
        with trio.move_on_after(RESOLVE_TIMEOUT):
            try:
                digest = await self.resolve_image(image, auth)
            except errors.CoreError:
                digest = None
        if digest:
            cs["Image"] = f"{ref.familiar()}@{digest}"
        else:
            warnings.append(f"image {image} could not be accessed on a registry to record\n"
                            "its digest. Each node will access {0} independently,\n"
                            "possibly leading to different nodes running different\n"
                            "versions of the image.\n".replace("{0}", image))

    async def _networks(self, store: Store, spec: dict[str, Any]) -> None:
        """Network targets (names or IDs of swarm networks) as IDs; docker's 404 otherwise."""
        attachments = spec["TaskTemplate"].get("Networks")
        if not attachments:
            return
        nets = await store.objects(NETWORKS)
        for att in attachments:
            target = att["Target"]
            net, _v = find(nets, target, "network", lambda n: n.get("Name", ""))
            att["Target"] = net["ID"]

    @staticmethod
    def _endpoint(spec: dict[str, Any], others: list[dict[str, Any]],
                  current: dict[str, Any] | None) -> dict[str, Any]:
        """The service's ``Endpoint``: its spec, the ports with ingress ports allocated."""
        es = spec.get("EndpointSpec")
        ports = (es or {}).get("Ports") or []
        # docker shows the endpoint's spec once something is allocated for it (ports, VIPs)
        endpoint: dict[str, Any] = {"Spec": copy.deepcopy(es) if es and ports else {}}
        taken: dict[tuple[int, str], dict[str, Any]] = {}
        for other in others:
            for p in (other.get("Endpoint") or {}).get("Ports") or []:
                if p.get("PublishMode", "ingress") == "ingress" and p.get("PublishedPort"):
                    taken[(p["PublishedPort"], p.get("Protocol", "tcp"))] = other
        previous = {(p["TargetPort"], p.get("Protocol", "tcp")): p.get("PublishedPort")
                    for p in ((current or {}).get("Endpoint") or {}).get("Ports") or []
                    if p.get("PublishMode", "ingress") == "ingress"}
        out = []
        for p in ports:
            port = copy.deepcopy(p)
            if port["PublishMode"] == "ingress":
                key = (port.get("PublishedPort"), port["Protocol"])
                if port.get("PublishedPort") and key in taken:
                    other = taken[key]
                    raise errors.InvalidArgument(
                        f"port '{port['PublishedPort']}' is already in use by service "
                        f"'{other['Spec'].get('Name', '')}' ({other['ID']}) as an ingress port")
            out.append(port)
        for port in out:  # dynamic ports once the fixed ones are known
            if port["PublishMode"] == "ingress" and not port.get("PublishedPort"):
                used = set(taken) | {(p.get("PublishedPort"), p["Protocol"]) for p in out}
                keep = previous.get((port["TargetPort"], port["Protocol"]))
                if keep and (keep, port["Protocol"]) not in used:
                    port["PublishedPort"] = keep
                    continue
                for candidate in range(DYNAMIC_PORTS[0], DYNAMIC_PORTS[1] + 1):
                    if (candidate, port["Protocol"]) not in used:
                        port["PublishedPort"] = candidate
                        break
                else:
                    raise errors.InvalidArgument("no dynamic published port left in 30000-32767")
        if out:
            endpoint["Ports"] = out
        endpoint["VirtualIPs"] = copy.deepcopy(((current or {}).get("Endpoint") or {}).get("VirtualIPs") or [])
        if not out and not endpoint["VirtualIPs"]:
            del endpoint["VirtualIPs"]
        return endpoint

    async def create(self, body: Any, *, auth: str = "") -> dict[str, Any]:
        """``POST /services/create``: ``{"ID", "Warnings"}``."""
        store = self.swarm._require_manager()
        spec = normalize_spec(body)
        if not spec["Name"]:
            spec["Name"] = _random_name()
        warnings: list[str] = []
        await self._resolve(spec, auth, warnings)
        _set_auth(spec, auth)
        async with self._lock:
            await self._networks(store, spec)
            services = [s for s, _v in await store.objects(SERVICES)]
            if any(s["Spec"].get("Name") == spec["Name"] for s in services):
                raise errors.Conflict(ERR_NAME_CONFLICT)
            t = now_text()
            service = {"ID": new_service_id(), "CreatedAt": t, "UpdatedAt": t, "Spec": spec,
                       "Endpoint": self._endpoint(spec, services, None)}
            await store.put(SERVICES, service, 0, stamp=False)
            # another manager may have taken the name at the same moment: the first written stays
            same = [(v, s["ID"]) for s, v in await store.objects(SERVICES) if s["Spec"].get("Name") == spec["Name"]]
            if same and min(same)[1] != service["ID"]:
                await store.delete(SERVICES, service["ID"])
                raise errors.Conflict(ERR_NAME_CONFLICT)
        return {"ID": service["ID"], "Warnings": warnings or None}

    async def update(self, ref: str, version: int | None, body: Any, *, rollback: str = "",
                     registry_auth_from: str = "", auth: str = "") -> dict[str, Any]:
        """``POST /services/{id}/update?version=``: the new spec (or, with
        ``rollback=previous``, the previous one) if the service is still at ``version``."""
        store = self.swarm._require_manager()
        if version is None:
            raise errors.InvalidArgument("invalid service version '': the version query parameter "
                                         "is required")
        if rollback not in ("", "none", "previous"):
            raise errors.InvalidArgument(f"unrecognized rollback option {rollback}")
        if registry_auth_from not in ("", "spec", "previous-spec"):
            raise errors.InvalidArgument(f"unsupported registryAuthFrom '{registry_auth_from}'")
        spec = normalize_spec(body)
        warnings: list[str] = []
        from core.engine.swarm.etcd import SequenceConflict

        async with self._lock:
            for attempt in range(UPDATE_ATTEMPTS):
                try:
                    await self._update_once(store, ref, version, spec, rollback, registry_auth_from,
                                            auth, warnings)
                    break
                except _WrittenMeanwhile:
                    # the swarm's own write (the updater's UpdateStatus) between this read and
                    # this write: read again; a change of the spec since ``version`` stays
                    # docker's 'update out of sequence' (:meth:`_only_status_moved`)
                    if attempt == UPDATE_ATTEMPTS - 1:
                        raise SequenceConflict() from None
                    log.info("service %s: written in between (attempt %d), reading it again", ref, attempt + 1)
        return {"Warnings": warnings or None}

    async def _update_once(self, store: Store, ref: str, version: int, spec: dict[str, Any], rollback: str,
                           registry_auth_from: str, auth: str, warnings: list[str]) -> None:
        """One read-modify-write of :meth:`update`: :class:`SequenceConflict` when the spec
        changed since ``version``, :class:`_WrittenMeanwhile` when the service was written
        between this read and this write (swarmkit's ``UpdateService`` is one store transaction;
        this is etcd's compare-and-put, tried again)."""
        from core.engine.swarm.etcd import SequenceConflict

        warnings.clear()
        service, current = await self._find(ref)
        if current != version and not await self._only_status_moved(store, service, version):
            raise SequenceConflict()
        old = service["Spec"]
        if rollback == "previous":
            if service.get("PreviousSpec") is None:
                raise errors.InvalidArgument(f"service {service['ID']} does not have a previous spec")
            service["Spec"], service["PreviousSpec"] = service["PreviousSpec"], old
            service["UpdateStatus"] = {"State": "rollback_started",
                                       "StartedAt": now_text(),
                                       "Message": "manually requested rollback"}
            new = service["Spec"]
        else:
            if spec["Name"] and spec["Name"] != old.get("Name"):
                raise errors.NotImplemented_("renaming services is not supported")
            spec["Name"] = old.get("Name", "")
            if ("Global" in spec["Mode"]) != ("Global" in old.get("Mode", {})):
                raise errors.NotImplemented_("service mode change is not allowed")
            if not auth:
                source = service.get("PreviousSpec") if registry_auth_from == "previous-spec" else old
                auth = registry_auth_of(source)
            if spec["TaskTemplate"]["ContainerSpec"]["Image"] != \
                    old["TaskTemplate"]["ContainerSpec"]["Image"]:
                await self._resolve(spec, auth, warnings)
            _set_auth(spec, auth)
            await self._networks(store, spec)
            service["PreviousSpec"] = old
            service["Spec"] = copy.deepcopy(spec)
            service.pop("UpdateStatus", None)
            new = service["Spec"]
        others = [s for s, _v in await store.objects(SERVICES) if s["ID"] != service["ID"]]
        service["Endpoint"] = self._endpoint(new, others, service)
        try:
            await store.put(SERVICES, service, current)
        except SequenceConflict:
            raise _WrittenMeanwhile() from None

    @staticmethod
    async def _only_status_moved(store: Store, service: dict[str, Any], version: int) -> bool:
        """Whether the service read at ``version`` had the spec it has now: the versions since
        are the swarm's own writes (the updater's ``UpdateStatus``), which docker's clients
        cannot tell from a user's change between their read and their write.  etcd keeps the
        object as it was at that revision (until compaction: then the update is refused)."""
        try:
            then = await store.etcd.range(SERVICES + service["ID"], revision=version)
        except errors.CoreError:
            return False
        if not then or then[0].mod_revision != version:
            return False
        old = then[0].json()
        if old.get("Spec") == service.get("Spec") and old.get("PreviousSpec") == service.get("PreviousSpec"):
            return True
        moved = sorted(k for k in set(old) | set(service) if old.get(k) != service.get(k))
        log.info("service %s: update at version %d refused, changed since: %s", service["ID"], version,
                 ", ".join(moved))
        return False

    async def remove(self, ref: str) -> None:
        """``DELETE /services/{id}``: the orchestrator shuts its tasks down, the reaper removes them."""
        store = self.swarm._require_manager()
        service, version = await self._find(ref)
        from core.engine.swarm.etcd import SequenceConflict

        try:
            await store.delete(SERVICES, service["ID"], version)
        except SequenceConflict:
            await store.delete(SERVICES, service["ID"])

    # -- tasks --

    async def list_tasks(self, filters: dict[str, list[str]]) -> list[dict[str, Any]]:
        """``GET /tasks``: filters ``id``, ``name`` (prefixes of ``service.slot.id``),
        ``service`` and ``node`` (IDs, names or ID prefixes), ``label``, ``desired-state``, and
        docker's internal ``_up-to-date`` (tasks running their service's current spec)."""
        _check_filters(filters, TASK_FILTERS)
        tasks = await self._tasks()
        if "service" in filters:
            services = await self._services()
            wanted = set()
            for ref in filters["service"]:
                try:
                    wanted.add(find(services, ref, "service", lambda s: s["Spec"].get("Name", ""))[0]["ID"])
                except errors.NotFound:
                    continue
            tasks = [(t, v) for t, v in tasks if t.get("ServiceID") in wanted]
        if "node" in filters:
            nodes = await self._nodes()
            wanted_nodes = set()
            for ref in filters["node"]:
                try:
                    wanted_nodes.add(find(nodes, ref, "node",
                                          lambda n: (n.get("Description") or {}).get("Hostname", ""))[0]["ID"])
                except errors.NotFound:
                    continue
            tasks = [(t, v) for t, v in tasks if t.get("NodeID") in wanted_nodes]
        by_id: dict[str, dict[str, Any]] = {}
        if "_up-to-date" in filters:  # what docker's CLI asks while it shows progress
            by_id = {s["ID"]: s for s, _v in await self._services()}
        out = []
        for task, version in tasks:
            if "_up-to-date" in filters and not up_to_date(task, by_id.get(task.get("ServiceID", ""))):
                continue
            if "id" in filters and not any(task["ID"].startswith(v) for v in filters["id"]):
                continue
            full_name = f"{swarm_tasks.task_name(task)}.{task['ID']}"
            if "name" in filters and not any(full_name.startswith(v) for v in filters["name"]):
                continue
            if "label" in filters and not _labels_match(task.get("Labels") or {}, filters["label"]):
                continue
            if "desired-state" in filters and task.get("DesiredState") not in filters["desired-state"]:
                continue
            out.append(render_task(task, version))
        return out

    async def get_task(self, ref: str) -> dict[str, Any]:
        task, version = find(await self._tasks(), ref, "task")
        return render_task(task, version)

    # -- logs --

    async def logs_of(self, ref: str, *, task: bool
                      ) -> tuple[list[str], bool, dict[str, dict[str, Any]], str | None]:
        """What ``/services/{id}/logs`` or ``/tasks/{id}/logs`` asks of the gatherer: the task
        IDs (a service's: every task it has now), whether the service has a TTY (raw stream),
        the tasks by ID (for the details of each line) and the service's ID (None for a task's
        logs; :meth:`logs_source` follows the service's later tasks by it)."""
        if task:
            t, _v = find(await self._tasks(), ref, "task")
            tty = bool(t.get("Spec", {}).get("ContainerSpec", {}).get("TTY"))
            return [t["ID"]], tty, {t["ID"]: t}, None
        service, _v = await self._find(ref)
        tty = bool(service["Spec"]["TaskTemplate"]["ContainerSpec"].get("TTY"))
        tasks = {t["ID"]: t for t, _v in await self._tasks() if t.get("ServiceID") == service["ID"]}
        return sorted(tasks), tty, tasks, service["ID"]

    def logs_source(self, task_ids: list[str], tasks: dict[str, dict[str, Any]], *, service_id: str | None,
                    follow: bool = False, tail: int | None = None, timestamps: bool = False,
                    since: float = 0) -> AsyncIterator[LogMessage]:
        """The log lines of ``task_ids`` (as :meth:`logs_of` found them, ``tasks`` by ID) from
        the gatherer; with ``follow`` for a service (``service_id``), also those of its tasks
        that start later: a task that had not started when the logs were asked for (or was
        made since) is followed from its first line once it starts (``tail`` is for the lines
        there were when the logs were asked for), as docker's ``service logs -f`` does."""
        if not follow or service_id is None:
            return self.gatherer.logs(task_ids, follow=follow, tail=tail, timestamps=timestamps, since=since)
        return self._follow_service(service_id, task_ids, tasks, tail=tail, timestamps=timestamps, since=since)

    async def _follow_service(self, service_id: str, task_ids: list[str], tasks: dict[str, dict[str, Any]], *,
                              tail: int | None, timestamps: bool, since: float) -> AsyncIterator[LogMessage]:
        store = self.swarm._require_manager()
        started = {tid for tid in task_ids if _has_started(tasks.get(tid) or {})}
        send, receive = trio.open_memory_channel[LogMessage](256)

        async def pump(ids: list[str], lines: int | None) -> None:
            source = self.gatherer.logs(ids, follow=True, tail=lines, timestamps=timestamps, since=since)
            try:
                async for item in source:
                    await send.send(item)
            except (trio.BrokenResourceError, trio.ClosedResourceError):
                pass  # the reader is gone
            finally:
                aclose = getattr(source, "aclose", None)
                if aclose is not None:
                    await aclose()

        async def new_tasks(nursery: trio.Nursery) -> None:
            def check(task: dict[str, Any]) -> None:
                if (task.get("ServiceID") == service_id and task.get("ID") not in started
                        and task.get("NodeID") and _has_started(task)):
                    started.add(task["ID"])
                    nursery.start_soon(pump, [task["ID"]], None)

            revision = 0
            while True:
                try:
                    if not revision:
                        revision = await store.revision()
                        for task, _v in await store.objects(TASKS):
                            check(task)
                    async with store.watch(TASKS, start_revision=revision + 1) as events:
                        async for event in events:
                            revision = event.kv.mod_revision
                            if event.type == "PUT":
                                check(event.kv.json())
                except errors.CoreError as exc:
                    log.info("service logs: following the tasks of %s: %s", service_id, exc)
                    revision = 0 if isinstance(exc, WatchCompacted) else revision
                await trio.sleep(1.0)

        async with trio.open_nursery() as nursery:
            if started:
                nursery.start_soon(pump, sorted(started), tail)
            nursery.start_soon(new_tasks, nursery)
            try:
                async with receive:
                    async for item in receive:
                        yield item
            except GeneratorExit:  # the reader closed this generator: no exception out of the nursery
                pass
            nursery.cancel_scope.cancel()

    async def task(self, task_id: str) -> dict[str, Any] | None:
        """One stored task (for the details of a log line from a task started after the
        logs were asked for)."""
        found = await self.swarm._read(lambda store: store.get(TASKS, task_id))
        return found[0] if found else None


def _has_started(task: dict[str, Any]) -> bool:
    """Whether the task's container has run, so that a follower of its logs gets them until it
    stops: it got as far as ``running`` (or ended; a container still ``starting`` would end a
    follower at once)."""
    state = (task.get("Status") or {}).get("State", "")
    return swarm_tasks.ORDER.get(state, -1) >= swarm_tasks.ORDER["running"]


def render_task(task: dict[str, Any], version: int) -> dict[str, Any]:
    out: dict[str, Any] = {"ID": task["ID"], "Version": {"Index": version}}
    # (``Endpoint``, swarmkit's copy of the service's host-mode ports, is not in docker's API)
    out.update((k, copy.deepcopy(v)) for k, v in task.items() if k not in ("ID", "Endpoint"))
    spec = out.get("Spec")
    if isinstance(spec, dict):
        spec.get("ContainerSpec", {}).pop("PullOptions", None)
    return out


_ADJECTIVES = ("admiring", "brave", "clever", "eager", "focused", "gallant", "happy", "jolly",
               "keen", "loving", "modest", "nifty", "quirky", "serene", "tender", "vibrant")
_NAMES = ("babbage", "curie", "darwin", "euler", "fermi", "gauss", "hopper", "kepler",
          "lovelace", "noether", "pascal", "ritchie", "shannon", "turing", "wozniak", "yonath")


def _random_name() -> str:
    """docker's namesgenerator for an unnamed service: ``adjective_surname``."""
    return f"{secrets.choice(_ADJECTIVES)}_{secrets.choice(_NAMES)}"
