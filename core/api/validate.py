"""Request validation for the Engine API, in one place: every request body is checked against
the API's types before its handler runs, and the query values and headers that reach the
filesystem or a subprocess are checked too.  Bad input is a 400 naming the field, never an
exception inside a handler.

Bodies.  :data:`BODIES` maps a route, ``(method, path pattern)`` as the route tables write it,
to the schema of its JSON body.  The schemas are the types of ``docker-engine-api-v1.47.yaml``
(``ContainerConfig``, ``HostConfig``, ``Resources``, ``NetworkingConfig``,
``EndpointSettings``, ``ExecConfig``, ``NetworkCreateRequest``, ``VolumeCreateOptions``,
``ServiceSpec``, the swarm's ``InitRequest``, ``JoinRequest``, ``Spec`` and ``NodeSpec``, ...)
written as data with the Go types moby decodes them into, and :func:`check_body` decodes a
body as moby's ``encoding/json`` does:

* object keys match case-insensitively (an exact match first) and are rewritten in the
  schema's case, so handlers see ``DetachKeys`` whether the client sent ``detachKeys`` or not;
  keys the schema does not know are kept as they are (Go ignores them);
* ``null`` anywhere means "not set": a struct field set to null is dropped, a null element of
  a list or map becomes the zero value of its type;
* a value of the wrong JSON type, a fraction or an exponent where an integer goes, and an
  integer out of its Go type's range (``int64``, ``uint16``, ...) are 400s in moby's words,
  with the path of the field: ``json: cannot unmarshal number into Go struct field
  ContainerConfig.WorkingDir of type string``;
* ``Cmd``, ``Entrypoint``, ``Shell``, ``CapAdd`` and ``CapDrop`` are moby's ``StrSlice``: a
  string or a list of strings.

Enumerations and the meaning of values (a restart policy's name, a mount's type) are the
engine's to check: this module checks shapes.

JSON anywhere in a request (bodies, ``filters=``) is parsed by :func:`loads`, which refuses
documents nested deeper than :data:`MAX_DEPTH` with a 400 instead of a ``RecursionError``.

Queries and headers.  :func:`check_request` also refuses a NUL byte in the path or in any query
value (no path on Linux holds one), over-long names (:data:`QUERY_CHECKS`), a ``ps_args`` that
is not a shell word list, and an ``X-Core-Driver`` header whose names are not plain driver
names (:func:`check_driver_header`).
"""
from __future__ import annotations

import json
import re
import shlex
from typing import TYPE_CHECKING, Any, Callable, Mapping

from core.errors import DriverError, InvalidArgument

if TYPE_CHECKING:
    from core.api.http import Request

MAX_DEPTH = 64            # levels of nesting a JSON document may have (docker's are < 10)
MAX_FILTERS_BYTES = 64 * 1024
MAX_NAME = 255            # a name that becomes a path component (NAME_MAX)
DRIVER_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,63}$")


# -- the type language --------------------------------------------------------------------------

class T:
    """A type of the API: ``go`` is the name moby's error messages give it."""

    go = "?"

    def check(self, value: Any, path: str) -> Any:
        raise NotImplementedError

    def zero(self) -> Any:
        return None


class Scalar(T):
    def __init__(self, go: str, pytype: type, zero: Any) -> None:
        self.go, self._type, self._zero = go, pytype, zero

    def check(self, value: Any, path: str) -> Any:
        if isinstance(value, self._type) and not (self._type is not bool and isinstance(value, bool)):
            return value
        raise _mismatch(value, path, self.go)

    def zero(self) -> Any:
        return self._zero


class Int(T):
    def __init__(self, go: str, lo: int, hi: int) -> None:
        self.go, self.lo, self.hi = go, lo, hi

    def check(self, value: Any, path: str) -> Any:
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            raise _mismatch(value, path, self.go)
        if isinstance(value, float) or not self.lo <= value <= self.hi:
            raise _mismatch(value, path, self.go, number=True)
        return value

    def zero(self) -> Any:
        return 0


class Any_(T):
    go = "interface {}"

    def check(self, value: Any, path: str) -> Any:
        return value


class List(T):
    def __init__(self, item: T, size: int | None = None) -> None:
        self.item, self.size = item, size
        self.go = (f"[{size}]" if size else "[]") + item.go

    def check(self, value: Any, path: str) -> Any:
        if not isinstance(value, list):
            raise _mismatch(value, path, self.go)
        if self.size is not None:   # a Go array: what does not fit is dropped, what is missing is zero
            value = (value + [self.item.zero()] * self.size)[:self.size]
        return [self.item.zero() if v is None else self.item.check(v, path) for v in value]

    def zero(self) -> Any:
        return []


class StrSlice(List):
    """moby's ``strslice.StrSlice``: a string or a list of strings."""

    def __init__(self) -> None:
        super().__init__(STR)
        self.go = "strslice.StrSlice"

    def check(self, value: Any, path: str) -> Any:
        if isinstance(value, str):
            return value
        if not isinstance(value, list):
            raise _mismatch(value, path, self.go)
        return super().check(value, path)


class Map(T):
    def __init__(self, value: T) -> None:
        self.value = value
        self.go = f"map[string]{value.go}"

    def check(self, value: Any, path: str) -> Any:
        if not isinstance(value, dict):
            raise _mismatch(value, path, self.go)
        return {k: self.value.zero() if v is None else self.value.check(v, f"{path}.{k}") for k, v in value.items()}

    def zero(self) -> Any:
        return {}


class Struct(T):
    """A Go struct: named fields, matched case-insensitively; ``embeds`` are Go's embedded
    structs (their fields are the struct's own)."""

    def __init__(self, go: str, fields: Mapping[str, T], embeds: tuple[Struct, ...] = ()) -> None:
        self.go = go
        self.fields: dict[str, T] = {}
        for e in embeds:
            self.fields.update(e.fields)
        self.fields.update(fields)
        self._folded = {k.lower(): k for k in self.fields}

    def check(self, value: Any, path: str) -> Any:
        if not isinstance(value, dict):
            raise _mismatch(value, path, self.go)
        out: dict[str, Any] = {}
        for key, v in value.items():
            name = key if key in self.fields else self._folded.get(key.lower(), key)
            if v is None:   # "not set"; and of two keys for one field the later wins, as in Go
                out.pop(name, None)
                continue
            kind = self.fields.get(name)
            out[name] = v if kind is None else kind.check(v, f"{path}.{name}" if path else name)
        return out

    def zero(self) -> Any:
        return {}


def _kind(value: Any) -> str:
    if isinstance(value, bool):
        return "bool"
    if isinstance(value, (int, float)):
        return "number"
    if isinstance(value, str):
        return "string"
    if isinstance(value, list):
        return "array"
    if isinstance(value, dict):
        return "object"
    return type(value).__name__


def _mismatch(value: Any, path: str, go: str, number: bool = False) -> InvalidArgument:
    what = f"number {value!r}" if number else _kind(value)
    if len(what) > 64:
        what = what[:60] + "..."
    if len(path) > 200:
        path = path[:200] + "..."
    where = f"Go struct field {path}" if path else "Go value"
    return InvalidArgument(f"json: cannot unmarshal {what} into {where} of type {go}")


STR = Scalar("string", str, "")
BOOL = Scalar("bool", bool, False)
INT = Int("int", -(2 ** 63), 2 ** 63 - 1)
INT64 = Int("int64", -(2 ** 63), 2 ** 63 - 1)
UINT16 = Int("uint16", 0, 2 ** 16 - 1)
UINT32 = Int("uint32", 0, 2 ** 32 - 1)
UINT = Int("uint", 0, 2 ** 64 - 1)
UINT64 = Int("uint64", 0, 2 ** 64 - 1)
STRS = List(STR)
STRMAP = Map(STR)
EMPTY = Struct("struct {}", {})


def _struct(go: str, spec: str, types: Mapping[str, T], embeds: tuple[Struct, ...] = ()) -> Struct:
    """A struct from ``"Name:type Name:type ..."``, the types named in ``types``."""
    return Struct(go, {name: types[kind] for name, kind in (f.split(":") for f in spec.split())}, embeds)


_T: dict[str, T] = {"s": STR, "b": BOOL, "i": INT, "i64": INT64, "u16": UINT16, "u32": UINT32,
                    "u": UINT, "u64": UINT64, "ss": STRS, "sm": STRMAP, "slice": StrSlice(), "any": Any_(),
                    # [height, width] of a terminal: the kernel's winsize holds 16 bits each
                    "console": List(UINT16, 2)}

HEALTH = _struct("container.HealthConfig", "Test:ss Interval:i64 Timeout:i64 StartPeriod:i64 "
                 "StartInterval:i64 Retries:i", _T)
CONTAINER_CONFIG = Struct("container.Config", {
    **_struct("", "Hostname:s Domainname:s User:s AttachStdin:b AttachStdout:b AttachStderr:b Tty:b "
              "OpenStdin:b StdinOnce:b Env:ss Cmd:slice ArgsEscaped:b Image:s WorkingDir:s "
              "Entrypoint:slice NetworkDisabled:b MacAddress:s OnBuild:ss Labels:sm StopSignal:s "
              "StopTimeout:i Shell:slice", _T).fields,
    "ExposedPorts": Map(EMPTY), "Volumes": Map(EMPTY), "Healthcheck": HEALTH,
})
_THROTTLE = _struct("blkiodev.ThrottleDevice", "Path:s Rate:u64", _T)
RESOURCES = Struct("container.Resources", {
    **_struct("", "CpuShares:i64 Memory:i64 NanoCpus:i64 CgroupParent:s BlkioWeight:u16 CpuPeriod:i64 "
              "CpuQuota:i64 CpuRealtimePeriod:i64 CpuRealtimeRuntime:i64 CpusetCpus:s CpusetMems:s "
              "DeviceCgroupRules:ss KernelMemory:i64 KernelMemoryTCP:i64 MemoryReservation:i64 "
              "MemorySwap:i64 MemorySwappiness:i64 OomKillDisable:b PidsLimit:i64 CpuCount:i64 "
              "CpuPercent:i64 IOMaximumIOps:u64 IOMaximumBandwidth:u64", _T).fields,
    "BlkioWeightDevice": List(_struct("blkiodev.WeightDevice", "Path:s Weight:u16", _T)),
    "BlkioDeviceReadBps": List(_THROTTLE), "BlkioDeviceWriteBps": List(_THROTTLE),
    "BlkioDeviceReadIOps": List(_THROTTLE), "BlkioDeviceWriteIOps": List(_THROTTLE),
    "Devices": List(_struct("container.DeviceMapping", "PathOnHost:s PathInContainer:s CgroupPermissions:s", _T)),
    "DeviceRequests": List(Struct("container.DeviceRequest", {
        **_struct("", "Driver:s Count:i DeviceIDs:ss Options:sm", _T).fields, "Capabilities": List(STRS)})),
    "Ulimits": List(_struct("units.Ulimit", "Name:s Hard:i64 Soft:i64", _T)),
})
RESTART_POLICY = _struct("container.RestartPolicy", "Name:s MaximumRetryCount:i", _T)
MOUNT = Struct("mount.Mount", {
    **_struct("", "Type:s Source:s Target:s ReadOnly:b Consistency:s", _T).fields,
    "BindOptions": _struct("mount.BindOptions", "Propagation:s NonRecursive:b CreateMountpoint:b "
                           "ReadOnlyNonRecursive:b ReadOnlyForceRecursive:b", _T),
    "VolumeOptions": Struct("mount.VolumeOptions", {
        **_struct("", "NoCopy:b Labels:sm Subpath:s", _T).fields,
        "DriverConfig": _struct("mount.Driver", "Name:s Options:sm", _T)}),
    "TmpfsOptions": Struct("mount.TmpfsOptions", {
        **_struct("", "SizeBytes:i64 Mode:u32", _T).fields, "Options": List(STRS)}),
})
HOST_CONFIG = Struct("container.HostConfig", {
    **_struct("", "Binds:ss ContainerIDFile:s NetworkMode:s AutoRemove:b VolumeDriver:s VolumesFrom:ss "
              "ConsoleSize:console Annotations:sm CapAdd:slice CapDrop:slice CgroupnsMode:s Dns:ss "
              "DnsOptions:ss DnsSearch:ss ExtraHosts:ss GroupAdd:ss IpcMode:s Cgroup:s Links:ss "
              "OomScoreAdj:i PidMode:s Privileged:b PublishAllPorts:b ReadonlyRootfs:b SecurityOpt:ss "
              "StorageOpt:sm Tmpfs:sm UTSMode:s UsernsMode:s ShmSize:i64 Sysctls:sm Runtime:s "
              "Isolation:s MaskedPaths:ss ReadonlyPaths:ss Init:b", _T).fields,
    "LogConfig": _struct("container.LogConfig", "Type:s Config:sm", _T),
    "PortBindings": Map(List(_struct("nat.PortBinding", "HostIp:s HostPort:s", _T))),
    "RestartPolicy": RESTART_POLICY,
    "Mounts": List(MOUNT),
}, embeds=(RESOURCES,))
ENDPOINT_SETTINGS = Struct("network.EndpointSettings", {
    **_struct("", "Links:ss Aliases:ss MacAddress:s DriverOpts:sm NetworkID:s EndpointID:s Gateway:s "
              "IPAddress:s IPPrefixLen:i IPv6Gateway:s GlobalIPv6Address:s GlobalIPv6PrefixLen:i "
              "DNSNames:ss", _T).fields,
    "IPAMConfig": _struct("network.EndpointIPAMConfig", "IPv4Address:s IPv6Address:s LinkLocalIPs:ss", _T),
})
NETWORKING_CONFIG = Struct("network.NetworkingConfig", {"EndpointsConfig": Map(ENDPOINT_SETTINGS)})
CONTAINER_CREATE = Struct("container.CreateRequest", {
    "HostConfig": HOST_CONFIG, "NetworkingConfig": NETWORKING_CONFIG}, embeds=(CONTAINER_CONFIG,))
CONTAINER_UPDATE = Struct("container.UpdateConfig", {"RestartPolicy": RESTART_POLICY}, embeds=(RESOURCES,))
EXEC_CONFIG = _struct("container.ExecOptions", "User:s Privileged:b Tty:b ConsoleSize:console AttachStdin:b "
                      "AttachStderr:b AttachStdout:b DetachKeys:s Env:ss WorkingDir:s Cmd:ss", _T)
EXEC_START = _struct("container.ExecStartOptions", "Detach:b Tty:b ConsoleSize:console", _T)
IPAM = Struct("network.IPAM", {
    **_struct("", "Driver:s Options:sm", _T).fields,
    "Config": List(_struct("network.IPAMConfig", "Subnet:s IPRange:s Gateway:s AuxiliaryAddresses:sm", _T)),
})
NETWORK_CREATE = Struct("network.CreateRequest", {
    **_struct("", "Name:s Driver:s Scope:s EnableIPv4:b EnableIPv6:b Internal:b Attachable:b Ingress:b "
              "ConfigOnly:b Options:sm Labels:sm CheckDuplicate:b", _T).fields,
    "IPAM": IPAM, "ConfigFrom": _struct("network.ConfigReference", "Network:s", _T),
})
NETWORK_CONNECT = Struct("network.ConnectOptions", {"Container": STR, "EndpointConfig": ENDPOINT_SETTINGS})
NETWORK_DISCONNECT = _struct("network.DisconnectOptions", "Container:s Force:b", _T)
VOLUME_CREATE = _struct("volume.CreateOptions", "Name:s Driver:s DriverOpts:sm Labels:sm ClusterVolumeSpec:any", _T)
AUTH_CONFIG = _struct("registry.AuthConfig", "username:s password:s auth:s email:s serveraddress:s "
                      "identitytoken:s registrytoken:s", _T)

_DURATION = INT64  # Go's time.Duration: nanoseconds
_SWARM_RESOURCES = _struct("swarm.Limit", "NanoCPUs:i64 MemoryBytes:i64 Pids:i64", _T)
_UPDATE_CONFIG = Struct("swarm.UpdateConfig", {
    **_struct("", "Parallelism:u64 Delay:i64 FailureAction:s Monitor:i64 Order:s", _T).fields,
    "MaxFailureRatio": Any_()})  # a float32: the services front checks it
SERVICE_SPEC = Struct("swarm.ServiceSpec", {
    **_struct("", "Name:s Labels:sm", _T).fields,
    "TaskTemplate": Struct("swarm.TaskSpec", {
        **_struct("", "ForceUpdate:u64 Runtime:s", _T).fields,
        "ContainerSpec": Struct("swarm.ContainerSpec", {
            **_struct("", "Image:s Labels:sm Command:ss Args:ss Hostname:s Env:ss Dir:s User:s Groups:ss "
                      "TTY:b OpenStdin:b ReadOnly:b StopSignal:s StopGracePeriod:i64 Hosts:ss Isolation:s "
                      "Init:b Sysctls:sm CapabilityAdd:ss CapabilityDrop:ss", _T).fields,
            "Mounts": List(MOUNT), "Healthcheck": HEALTH,
            "DNSConfig": _struct("swarm.DNSConfig", "Nameservers:ss Search:ss Options:ss", _T),
            "Ulimits": List(_struct("units.Ulimit", "Name:s Hard:i64 Soft:i64", _T)),
        }),
        "Resources": Struct("swarm.ResourceRequirements", {
            "Limits": _SWARM_RESOURCES,
            "Reservations": _struct("swarm.Resources", "NanoCPUs:i64 MemoryBytes:i64", _T)}),
        "RestartPolicy": _struct("swarm.RestartPolicy", "Condition:s Delay:i64 MaxAttempts:u64 Window:i64", _T),
        "Placement": Struct("swarm.Placement", {
            **_struct("", "Constraints:ss MaxReplicas:u64", _T).fields,
            "Preferences": List(Struct("swarm.PlacementPreference", {
                "Spread": _struct("swarm.SpreadOver", "SpreadDescriptor:s", _T)})),
            "Platforms": List(_struct("swarm.Platform", "Architecture:s OS:s", _T))}),
        "Networks": List(_struct("swarm.NetworkAttachmentConfig", "Target:s Aliases:ss DriverOpts:sm", _T)),
        "LogDriver": _struct("swarm.Driver", "Name:s Options:sm", _T),
    }),
    "Mode": Struct("swarm.ServiceMode", {
        "Replicated": _struct("swarm.ReplicatedService", "Replicas:u64", _T), "Global": Any_(),
        "ReplicatedJob": Any_(), "GlobalJob": Any_()}),
    "UpdateConfig": _UPDATE_CONFIG, "RollbackConfig": _UPDATE_CONFIG,
    "Networks": List(_struct("swarm.NetworkAttachmentConfig", "Target:s Aliases:ss DriverOpts:sm", _T)),
    "EndpointSpec": Struct("swarm.EndpointSpec", {
        "Mode": STR, "Ports": List(_struct("swarm.PortConfig", "Name:s Protocol:s TargetPort:u32 "
                                           "PublishedPort:u32 PublishMode:s", _T))}),
})

_ANNOTATIONS = _struct("swarm.Annotations", "Name:s Labels:sm", _T)
SWARM_SPEC = Struct("swarm.Spec", {
    "Orchestration": _struct("swarm.OrchestrationConfig", "TaskHistoryRetentionLimit:i64", _T),
    "Raft": _struct("swarm.RaftConfig", "SnapshotInterval:u64 KeepOldSnapshots:u64 "
                    "LogEntriesForSlowFollowers:u64 ElectionTick:i HeartbeatTick:i", _T),
    "Dispatcher": _struct("swarm.DispatcherConfig", "HeartbeatPeriod:i64", _T),
    "CAConfig": Struct("swarm.CAConfig", {
        **_struct("", "NodeCertExpiry:i64 SigningCACert:s SigningCAKey:s ForceRotate:u64", _T).fields,
        "ExternalCAs": List(_struct("swarm.ExternalCA", "Protocol:s URL:s Options:sm CACert:s", _T))}),
    "TaskDefaults": Struct("swarm.TaskDefaults", {"LogDriver": _struct("swarm.Driver", "Name:s Options:sm", _T)}),
    "EncryptionConfig": _struct("swarm.EncryptionConfig", "AutoLockManagers:b", _T),
}, embeds=(_ANNOTATIONS,))
SWARM_INIT = Struct("swarm.InitRequest", {
    **_struct("", "ListenAddr:s AdvertiseAddr:s DataPathAddr:s DataPathPort:u32 ForceNewCluster:b "
              "AutoLockManagers:b Availability:s DefaultAddrPool:ss SubnetSize:u32", _T).fields,
    "Spec": SWARM_SPEC})
SWARM_JOIN = _struct("swarm.JoinRequest", "ListenAddr:s AdvertiseAddr:s DataPathAddr:s RemoteAddrs:ss "
                     "JoinToken:s Availability:s", _T)
SWARM_UNLOCK = _struct("swarm.UnlockRequest", "UnlockKey:s", _T)
NODE_SPEC = _struct("swarm.NodeSpec", "Role:s Availability:s", _T, embeds=(_ANNOTATIONS,))

#: the JSON body of each route, by ``(method, path pattern)`` as the route tables write them
BODIES: dict[tuple[str, str], Struct] = {
    ("POST", "/containers/create"): CONTAINER_CREATE,
    ("POST", "/containers/{id}/update"): CONTAINER_UPDATE,
    ("POST", "/containers/{id}/exec"): EXEC_CONFIG,
    ("POST", "/exec/{id}/start"): EXEC_START,
    ("POST", "/networks/create"): NETWORK_CREATE,
    ("POST", "/networks/{id}/connect"): NETWORK_CONNECT,
    ("POST", "/networks/{id}/disconnect"): NETWORK_DISCONNECT,
    ("POST", "/volumes/create"): VOLUME_CREATE,
    ("POST", "/auth"): AUTH_CONFIG,
    ("POST", "/commit"): CONTAINER_CONFIG,
    ("POST", "/services/create"): SERVICE_SPEC,
    ("POST", "/services/{id}/update"): SERVICE_SPEC,
    ("POST", "/swarm/init"): SWARM_INIT,
    ("POST", "/swarm/join"): SWARM_JOIN,
    ("POST", "/swarm/update"): SWARM_SPEC,
    ("POST", "/swarm/unlock"): SWARM_UNLOCK,
    ("POST", "/nodes/{id}/update"): NODE_SPEC,
}


# -- JSON ---------------------------------------------------------------------------------------

def loads(text: str | bytes, what: str = "request body") -> Any:
    """``json.loads``, refusing documents nested more than :data:`MAX_DEPTH` levels (400)."""
    try:
        value = json.loads(text)
    except RecursionError:
        raise _too_deep(what) from None
    except (ValueError, UnicodeDecodeError) as exc:
        raise InvalidArgument(f"invalid JSON in {what}: {exc}") from None
    stack = [(value, 1)] if isinstance(value, (dict, list)) else []
    while stack:
        node, depth = stack.pop()
        if depth > MAX_DEPTH:
            raise _too_deep(what)
        for child in (node.values() if isinstance(node, dict) else node):
            if isinstance(child, (dict, list)):
                stack.append((child, depth + 1))
    return value


def _too_deep(what: str) -> InvalidArgument:
    return InvalidArgument(f"invalid JSON in {what}: nested more than {MAX_DEPTH} levels deep")


def check_body(schema: Struct, body: bytes) -> Any:
    """The body decoded against ``schema``: keys in the API's case, nulls dropped; an empty
    body or ``null`` is ``{}``."""
    if not body.strip():
        return {}
    value = loads(body)
    if value is None:
        return {}
    return schema.check(value, "")


# -- queries and headers ------------------------------------------------------------------------

def _name_check(what: str) -> Callable[[str, str], None]:
    def check(_param: str, value: str) -> None:
        if len(value) > MAX_NAME:
            raise InvalidArgument(f"invalid {what} name: longer than {MAX_NAME} characters "
                                  f"({value[:32]}... has {len(value)})")

    return check


def _ps_args(_param: str, value: str) -> None:
    try:
        shlex.split(value)
    except ValueError as exc:
        raise InvalidArgument(f"invalid ps_args {value!r}: {exc}") from None


def _winsize(param: str, value: str) -> None:
    try:
        number = int(value) if value else 0
    except ValueError:
        return   # the handler's own message
    if not 0 <= number <= 65535:
        raise InvalidArgument(f'invalid value for "{param}": {value[:32]} is not a terminal size (0 to 65535)')


def _filters(_param: str, value: str) -> None:
    if len(value) > MAX_FILTERS_BYTES:
        raise InvalidArgument(f"invalid filters: longer than {MAX_FILTERS_BYTES} bytes")


#: checks of query values, by route; ``"*"`` applies to every route
QUERY_CHECKS: dict[tuple[str, str] | str, dict[str, Callable[[str, str], None]]] = {
    "*": {"filters": _filters},
    ("POST", "/containers/create"): {"name": _name_check("container")},
    ("POST", "/containers/{id}/rename"): {"name": _name_check("container")},
    ("GET", "/containers/{id}/top"): {"ps_args": _ps_args},
    ("POST", "/containers/{id}/resize"): {"h": _winsize, "w": _winsize},
    ("POST", "/exec/{id}/resize"): {"h": _winsize, "w": _winsize},
}

#: body fields that are names, by route
BODY_NAMES: dict[tuple[str, str], tuple[str, str]] = {
    ("POST", "/volumes/create"): ("Name", "volume"),
    ("POST", "/networks/create"): ("Name", "network"),
}


def check_request(request: Request, pattern: str) -> None:
    """Everything about ``request`` that can be checked before its handler (route ``pattern``):
    its path and query, and its JSON body if the route has a schema and the request has a body
    (the decoded body is left for :meth:`Request.json`; an empty body is the handler's default)."""
    if "\0" in request.path:
        raise InvalidArgument("invalid request path: it holds a NUL byte")
    route = (request.method if request.method != "HEAD" else "GET", pattern)
    checks = {**QUERY_CHECKS["*"], **QUERY_CHECKS.get(route, {})}
    for name, values in request.query.items():
        for value in values:
            if "\0" in value or "\0" in name:
                raise InvalidArgument(f'invalid value for "{name[:64]}": it holds a NUL byte')
            check = checks.get(name)
            if check is not None:
                check(name, value)
    schema = BODIES.get(route)
    if schema is not None and request.body_stream is None and request.body.strip():
        body = check_body(schema, request.body)
        named = BODY_NAMES.get(route)
        if named is not None and isinstance(body.get(named[0]), str):
            _name_check(named[1])(named[0], body[named[0]])
        request.set_json(body)


def check_driver_header(header: str | None, available: Callable[[str], list[str]], kinds: tuple[str, ...]) -> None:
    """``X-Core-Driver: KIND=NAME[,KIND=NAME]``: known kinds, plain names (no path characters),
    drivers that exist.  The errors are :class:`DriverError` (the CLI exits 125 on them) with
    a client's status: 400, or 404 naming the drivers that exist."""
    if not header:
        return
    for item in header.split(","):
        kind, sep, name = item.strip().partition("=")
        shown = item.strip()[:80]
        if not sep or not kind or not name:
            raise _driver_error(400, f'invalid driver selection "{shown}": expected KIND=NAME')
        if kind not in kinds:
            raise _driver_error(400, f'unknown driver kind "{kind[:32]}" (kinds: {", ".join(kinds)})')
        if not DRIVER_NAME.match(name):
            raise _driver_error(400, f'invalid driver selection "{shown}": a driver name is letters, '
                                     'digits, "_", "." and "-"')
        names = available(kind)
        if name not in names:
            raise _driver_error(404, f'{kind} driver "{name}" not found (available: {", ".join(names)})')


def _driver_error(status: int, message: str) -> DriverError:
    error = DriverError(message)
    error.status = status
    return error
