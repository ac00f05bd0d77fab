"""Containers: the store, their names, and their lifecycle from create to rm.

A container is a row of the ``containers`` table (its docker ``Config`` merged with the image's,
its ``HostConfig``, its mounts and its ``State``), a directory ``<data-root>/containers/<id>/``
and an active snapshot ``ctr-<id>`` of the storage driver it was created with.  Its process is
run by an executor driver's shim, which outlives the daemon.

On disk::

    containers/<id>/
        hostname, hosts, resolv.conf      bind-mounted on /etc/... of the container
        <id>-json.log                     stdout/stderr in docker's json-file format (the shim writes it)
        rootfs/                           the snapshot, mounted while the container runs
        bundle/config.json                the OCI runtime spec of the current run

Lifecycle (:class:`Containers`)::

    create   resolve the image, unpack it into the storage driver, prepare ``ctr-<id>``, make the
             volumes it names, write hostname/hosts/resolv.conf, store  -> "created"
    start    mount the snapshot on rootfs/, write bundle/config.json (``core.engine.containers.oci``), executor
             create + start; a task watches the process  -> "running"
    exit     the task records the exit code, unmounts, emits ``die``, applies the restart policy
             (``restarting`` after docker's back-off: 100 ms doubling, reset after 10 s up) and
             ``--rm``  -> "exited"
    stop     StopSignal (SIGTERM), wait ``t`` (10 s, ``--stop-timeout``), SIGKILL
    rm       the executor's state, the snapshot, the directory, ``-v`` the anonymous volumes

Names are unique (``/name``); lookups take a full ID, a name, or a unique ID prefix.

When the daemon starts again (:meth:`Containers.restore`) it asks each executor which
containers it still has: those still running are watched again (logs, attach, exec, stop carry
on — the shim holds them); those that exited meanwhile get their exit recorded; those the
executor lost (a reboot) are marked exited (255); then restart policies apply, ``always`` and
``unless-stopped`` (unless stopped by hand) coming back.
"""
from __future__ import annotations

import json
import logging
import os
import re
import secrets
import shutil
import signal as _signal
import socket
import time
from pathlib import Path
from typing import Any, Awaitable, Callable

import attrs
import trio

from core.engine.containers import archive
from core.engine import names
from core.engine.containers import oci
from core.contracts.executor import ExitStatus, IOConfig, Preparer
from core.engine.concurrency import gather
from core.errors import AlreadyExists, Conflict, CoreError, Forbidden, InvalidArgument, NotFound
from core.engine.state import Migration, State

from core.units import human_duration
from core.engine.volumes import MountPoint, VolumeStore, oci_mount, parse_mounts, prepare_sources, volume_names

log = logging.getLogger("core.engine.containers.service")

MIGRATION = Migration(4, "containers",
    """
    CREATE TABLE IF NOT EXISTS containers (
        id TEXT PRIMARY KEY,            -- 64 hex
        name TEXT NOT NULL UNIQUE,      -- without the leading "/"
        created INTEGER NOT NULL,       -- nanoseconds since the epoch
        image_id TEXT NOT NULL,         -- sha256:<config digest>
        storage TEXT NOT NULL,          -- storage driver holding ctr-<id>
        executor TEXT NOT NULL,         -- executor driver running it
        config TEXT NOT NULL,           -- JSON: docker's Config, merged with the image's
        host_config TEXT NOT NULL,      -- JSON: docker's HostConfig
        networking TEXT NOT NULL,       -- JSON: docker's NetworkingConfig, as given
        mounts TEXT NOT NULL,           -- JSON: [MountPoint record]
        state TEXT NOT NULL             -- JSON: State
    )
    """
)

NAME_RE = re.compile(r"^/?[a-zA-Z0-9][a-zA-Z0-9_.-]+$")
RUNNING = ("running", "paused", "restarting")
DEFAULT_STOP_TIMEOUT = 10
BACKOFF_START = 0.1
BACKOFF_MAX = 60.0
BACKOFF_RESET_AFTER = 10.0
EXIT_UNKNOWN = 128
EXIT_LOST = 255          # the executor has no record of a container it ran (a reboot)
EXEC_KEEP = 300.0        # seconds a finished exec stays inspectable


class NotModified(CoreError):
    """The container is already in the state asked for (``304`` in the API)."""

    status = 304


# --------------------------------------------------------------------------- records
@attrs.define
class ContainerStateRecord:
    status: str = "created"      # created | running | paused | restarting | removing | exited | dead
    pid: int = 0
    exit_code: int = 0
    error: str = ""
    oom_killed: bool = False
    started_at: int = 0          # ns
    finished_at: int = 0         # ns
    restart_count: int = 0
    manually_stopped: bool = False
    has_been_started: bool = False

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> ContainerStateRecord:
        known = {f.name for f in attrs.fields(cls)}
        return cls(**{k: v for k, v in data.items() if k in known})


class Container:
    """One container: its stored record and what the daemon keeps about it while it lives."""

    def __init__(self, *, id: str, name: str, created: int, image_id: str, storage: str, executor: str,
                 config: dict[str, Any], host_config: dict[str, Any], networking: dict[str, Any],
                 mounts: list[MountPoint], state: ContainerStateRecord) -> None:
        self.id = id
        self.name = name
        self.created = created
        self.image_id = image_id
        self.storage = storage
        self.executor = executor
        self.config = config
        self.host_config = host_config
        self.networking = networking
        self.mounts = mounts
        self.state = state
        # runtime only
        self.lock = trio.Lock()                     # start / remove / exit bookkeeping
        self.exits = 0                              # exits recorded since the daemon started
        self.starts = 0
        self.removed = trio.Event()
        self._changed = trio.Event()
        self.backoff = 0.0
        self.restart_cancel: trio.CancelScope | None = None
        self.cancel_restart = False                 # the next exit must not restart (docker stop/kill)
        self.pending_attach: list[PendingAttach] = []
        self.monitoring = False
        self.removing = False
        self.keep = False                           # a docker restart of a --rm container: not removed

    # -- change notification ----------------------------------------------------------------------
    def notify(self) -> None:
        self._changed.set()
        self._changed = trio.Event()

    async def changed(self) -> None:
        await self._changed.wait()

    # -- derived ---------------------------------------------------------------------------------
    @property
    def status(self) -> str:
        return self.state.status

    @property
    def running(self) -> bool:
        return self.state.status in ("running", "paused")

    @property
    def short_id(self) -> str:
        return self.id[:12]

    @property
    def hostname(self) -> str:
        return self.config.get("Hostname") or self.short_id

    @property
    def args(self) -> list[str]:
        try:
            return oci.process_args(self.config)
        except InvalidArgument:
            return []

    def event_attributes(self, **extra: str) -> dict[str, str]:
        attrs_: dict[str, str] = {}
        for k, v in (self.config.get("Labels") or {}).items():
            attrs_[str(k)] = str(v)
        attrs_["image"] = self.config.get("Image") or ""
        attrs_["name"] = self.name
        attrs_.update(extra)
        return attrs_

    def record(self) -> tuple[Any, ...]:
        return (self.id, self.name, self.created, self.image_id, self.storage, self.executor,
                json.dumps(self.config), json.dumps(self.host_config), json.dumps(self.networking),
                json.dumps([m.to_record() for m in self.mounts]), json.dumps(attrs.asdict(self.state)))


@attrs.define
class PendingAttach:
    """An attach waiting for its container to start (``docker run`` attaches, then starts)."""

    ready: trio.Event = attrs.field(factory=trio.Event)
    stream: Any = None
    error: CoreError | None = None
    late: bool = False            # the executor cannot attach before start: attach after it


@attrs.define
class Exec:
    id: str
    container_id: str
    config: dict[str, Any]
    running: bool = False
    started: bool = False
    exit_code: int | None = None
    pid: int = 0
    error: str = ""
    done: trio.Event = attrs.field(factory=trio.Event)
    ready: trio.Event = attrs.field(factory=trio.Event)   # its process started (or failed to)
    created: float = attrs.field(factory=time.time)

    def inspect(self) -> dict[str, Any]:
        cmd = list(self.config.get("Cmd") or [])
        return {
            "CanRemove": False,
            "ContainerID": self.container_id,
            "DetachKeys": self.config.get("DetachKeys") or "",
            "ExitCode": self.exit_code,
            "ID": self.id,
            "OpenStderr": bool(self.config.get("AttachStderr")),
            "OpenStdin": bool(self.config.get("AttachStdin")),
            "OpenStdout": bool(self.config.get("AttachStdout")),
            "ProcessConfig": {
                "arguments": cmd[1:],
                "entrypoint": cmd[0] if cmd else "",
                "privileged": bool(self.config.get("Privileged")),
                "tty": bool(self.config.get("Tty")),
                "user": self.config.get("User") or "",
            },
            "Running": self.running,
            "Pid": self.pid,
        }


# --------------------------------------------------------------------------- helpers
def new_id() -> str:
    """64 hex characters whose 12-character short form is not all digits (docker's rule)."""
    while True:
        value = secrets.token_hex(32)
        if not value[:12].isdigit():
            return value


def status_text(st: ContainerStateRecord, now_ns: int | None = None) -> str:
    """docker's ``State.String()``: ``Up 5 seconds``, ``Exited (0) 2 minutes ago``..."""
    now = now_ns or time.time_ns()
    if st.status in ("running", "paused"):
        text = f"Up {human_duration((now - st.started_at) / 1e9)}"
        return text + " (Paused)" if st.status == "paused" else text
    if st.status == "restarting":
        return f"Restarting ({st.exit_code}) {human_duration((now - st.finished_at) / 1e9)} ago"
    if st.status == "removing":
        return "Removal In Progress"
    if st.status == "dead":
        return "Dead"
    if st.status == "created" or not st.started_at:
        return "Created"
    if not st.finished_at:
        return ""
    return f"Exited ({st.exit_code}) {human_duration((now - st.finished_at) / 1e9)} ago"


def resolv_conf(host_text: str, *, dns: list[str] | None = None, search: list[str] | None = None,
                options: list[str] | None = None, host_network: bool = False) -> str:
    """The container's resolv.conf: the host's, without loopback nameservers (they cannot be
    reached from another network namespace) — docker's 8.8.8.8 and 8.8.4.4 when none is left —
    and with ``--dns``, ``--dns-search``, ``--dns-option`` replacing the host's."""
    lines = host_text.splitlines()
    out: list[str] = []
    nameservers = 0
    for line in lines:
        words = line.split()
        if words and words[0] == "nameserver" and len(words) > 1:
            if dns:
                continue
            addr = words[1].split("%")[0]
            if not host_network and (addr.startswith("127.") or addr == "::1"):
                continue
            nameservers += 1
        elif words and words[0] in ("search", "domain") and search:
            continue
        elif words and words[0] == "options" and options:
            continue
        out.append(line)
    if dns:
        out += [f"nameserver {d}" for d in dns]
        nameservers = len(dns)
    if search:
        out.append("search " + " ".join(search))
    if options:
        out.append("options " + " ".join(options))
    if nameservers == 0:
        out += ["nameserver 8.8.8.8", "nameserver 8.8.4.4"]
    return "\n".join(out).rstrip("\n") + "\n"


HOSTS_DEFAULT = ("127.0.0.1\tlocalhost\n::1\tlocalhost ip6-localhost ip6-loopback\nfe00::0\tip6-localnet\n"
                 "ff00::0\tip6-mcastprefix\nff02::1\tip6-allnodes\nff02::2\tip6-allrouters\n")


def hosts_file(extra_hosts: list[str] | None = None, host_network: bool = False) -> str:
    if host_network:
        try:
            text = Path("/etc/hosts").read_text()
        except OSError:
            text = HOSTS_DEFAULT
    else:
        text = HOSTS_DEFAULT
    for entry in extra_hosts or []:
        if not isinstance(entry, str):
            raise InvalidArgument(f"invalid extra host {entry!r}")
        host, sep, ip = entry.partition(":") if "=" not in entry else entry.partition("=")
        if not sep or not host or not ip:
            raise InvalidArgument(f"invalid argument \"{entry}\" for \"--add-host\" flag: bad format for add-host: {entry!r}")
        if ip == "host-gateway":
            ip = "172.17.0.1"
        text += f"{ip.strip('[]')}\t{host}\n"
    return text


def _write_atomic(path: Path, data: bytes | str, mode: int = 0o644, durable: bool = True) -> None:
    """Replace ``path`` whole (a temporary file renamed over it); ``durable``: fsync'ed first.
    Files a start writes again need not be durable: a host crash stops the container too."""
    tmp = path.with_name(f".{path.name}.tmp")
    with open(tmp, "wb") as f:
        f.write(data.encode() if isinstance(data, str) else data)
        if durable:
            f.flush()
            os.fsync(f.fileno())
    os.chmod(tmp, mode)
    os.replace(tmp, path)


def _write_in_place(path: Path, text: str) -> None:
    """Rewrite a file's content keeping its inode (a bind mount of it sees the change)."""
    with open(path, "r+b" if path.exists() else "wb") as f:
        f.write(text.encode())
        f.truncate()


def normalize_host_config(hc: dict[str, Any]) -> dict[str, Any]:
    """The request's HostConfig with docker's defaults filled in (what inspect shows)."""
    if hc is not None and not isinstance(hc, dict):
        raise InvalidArgument("invalid HostConfig: expected a JSON object")
    out = dict(hc or {})
    if out.get("NetworkMode") in (None, "", "default"):
        out["NetworkMode"] = "bridge"
    policy = out.get("RestartPolicy") or {}
    if not isinstance(policy, dict):
        raise InvalidArgument("invalid RestartPolicy: expected an object")
    name = policy.get("Name") or "no"
    count = policy.get("MaximumRetryCount") or 0
    if name not in ("no", "always", "unless-stopped", "on-failure"):
        raise InvalidArgument(f"invalid restart policy: unknown policy '{name}'; use one of 'no', 'always', "
                              "'on-failure', or 'unless-stopped'")
    if not isinstance(count, int) or count < 0:
        raise InvalidArgument("invalid restart policy: maximum retry count cannot be negative")
    if count and name != "on-failure":
        raise InvalidArgument("invalid restart policy: maximum retry count can only be used with 'on-failure'")
    out["RestartPolicy"] = {"Name": name, "MaximumRetryCount": count}
    if out.get("AutoRemove") and name != "no":
        raise InvalidArgument("can't create 'AutoRemove' container with restart policy")
    log_config = out.get("LogConfig") or {}
    log_type = log_config.get("Type") or "json-file"
    if log_type not in ("json-file", "none"):
        raise InvalidArgument(f'logger: no log driver named \'{log_type}\' is registered')
    out["LogConfig"] = {"Type": log_type, "Config": log_config.get("Config") or {}}
    out.setdefault("ShmSize", oci.DEFAULT_SHM_SIZE)
    if not out.get("ShmSize"):
        out["ShmSize"] = oci.DEFAULT_SHM_SIZE
    for key in ("Binds", "CapAdd", "CapDrop", "Dns", "DnsOptions", "DnsSearch", "ExtraHosts", "GroupAdd", "Links",
                "SecurityOpt", "VolumesFrom", "Mounts", "Ulimits", "Devices", "DeviceCgroupRules", "DeviceRequests"):
        value = out.get(key)
        if value is not None and not isinstance(value, list):
            raise InvalidArgument(f"invalid HostConfig.{key}: expected a list")
    out.setdefault("PortBindings", {})
    for key, default in (("Privileged", False), ("ReadonlyRootfs", False), ("PublishAllPorts", False),
                         ("AutoRemove", False), ("IpcMode", "private"), ("PidMode", ""), ("UTSMode", ""),
                         ("UsernsMode", ""), ("CgroupnsMode", "private" if oci.cgroup_v2() else "host"),
                         ("OomScoreAdj", 0), ("Memory", 0), ("NanoCpus", 0), ("CpuShares", 0), ("CpuPeriod", 0),
                         ("CpuQuota", 0), ("CpusetCpus", ""), ("CpusetMems", ""), ("PidsLimit", None),
                         ("MemoryReservation", 0), ("MemorySwap", 0), ("BlkioWeight", 0), ("VolumeDriver", ""),
                         ("ContainerIDFile", ""), ("ConsoleSize", [0, 0]), ("Runtime", "core"),
                         ("Isolation", ""), ("CgroupParent", ""), ("Cgroup", "")):
        if out.get(key) is None and default is not None:
            out[key] = default
        out.setdefault(key, default)
    if not out.get("IpcMode"):
        out["IpcMode"] = "private"
    if out["IpcMode"] not in ("private", "shareable", "none", "host") and not str(out["IpcMode"]).startswith("container:"):
        raise InvalidArgument(f"invalid IPC mode: {out['IpcMode']}")
    for key in ("PidMode", "UTSMode"):
        value = out.get(key) or ""
        if value not in ("", "host") and not (key == "PidMode" and value.startswith("container:")):
            raise InvalidArgument(f"invalid {key.replace('Mode', '').upper()} mode: {value}")
    return out


def unsupported(hc: dict[str, Any]) -> None:
    """Options docker has and this engine cannot honour: refused, never silently ignored."""
    if hc.get("Init") is not None and not isinstance(hc.get("Init"), bool):
        raise InvalidArgument("invalid HostConfig.Init: expected a boolean")
    if hc.get("Init"):
        oci.init_binary()  # the package to install when the host lacks it
    if hc.get("DeviceRequests"):
        raise InvalidArgument('could not select device driver "" with capabilities: device requests (--gpus) '
                              "are not supported by this engine")
    if hc.get("StorageOpt"):
        raise InvalidArgument("--storage-opt is not supported by this engine's storage drivers")
    if hc.get("Runtime") not in (None, "", "core"):
        raise InvalidArgument(f"unknown or invalid runtime name: {hc['Runtime']}")
    if hc.get("UsernsMode") not in (None, "", "host"):
        raise InvalidArgument(f"user namespaces (--userns={hc['UsernsMode']}) are not supported by this engine")
    if hc.get("DeviceCgroupRules"):
        raise InvalidArgument("--device-cgroup-rule is not supported by this engine")
    if hc.get("Isolation") not in (None, "", "default"):
        raise InvalidArgument(f"invalid isolation '{hc['Isolation']}' on linux")


def check_name(name: str) -> str:
    if not NAME_RE.match(name):
        raise InvalidArgument(f"Invalid container name ({name}), only [a-zA-Z0-9][a-zA-Z0-9_.-] are allowed")
    return name.lstrip("/")


def translate_start_error(exc: CoreError) -> tuple[CoreError, int]:
    """An executor's start failure as docker reports it, and the exit code to record: 127 for a
    program not found (or a mount onto the wrong kind of file), 126 for one that cannot be run."""
    message = exc.message or type(exc).__name__
    if isinstance(exc, NotFound):
        code = 127
    elif isinstance(exc, Forbidden):
        code = 126
        if "permission denied" not in message and "is a directory" not in message:
            message += ": permission denied"
    elif "not a directory" in message:
        code = 127
        message += (": Are you trying to mount a directory onto a file (or vice-versa)? Check if the specified "
                    "host path exists and is the expected type")
    else:
        code = EXIT_UNKNOWN
    text = (f"failed to create task for container: failed to create shim task: OCI runtime create failed: "
            f"unable to start container process: {message}: unknown")
    if code in (126, 127) or isinstance(exc, InvalidArgument):
        return InvalidArgument(text), code
    return CoreError(text), code


# --------------------------------------------------------------------------- the store
class ContainerStore:
    """The containers of one daemon: loaded from SQLite at start, written through."""

    def __init__(self, state: State) -> None:
        self.state = state
        self.db = state.db
        self.by_id: dict[str, Container] = {}
        for row in self.db.execute("SELECT * FROM containers ORDER BY created"):
            c = Container(id=row["id"], name=row["name"], created=row["created"], image_id=row["image_id"],
                          storage=row["storage"], executor=row["executor"], config=json.loads(row["config"]),
                          host_config=json.loads(row["host_config"]), networking=json.loads(row["networking"]),
                          mounts=[MountPoint.from_record(m) for m in json.loads(row["mounts"])],
                          state=ContainerStateRecord.from_json(json.loads(row["state"])))
            self.by_id[c.id] = c

    def all(self) -> list[Container]:
        return sorted(self.by_id.values(), key=lambda c: c.created, reverse=True)

    def by_name(self, name: str) -> Container | None:
        name = name.lstrip("/")
        return next((c for c in self.by_id.values() if c.name == name), None)

    def lookup(self, ref: str) -> Container:
        """A container by full ID, name (with or without ``/``) or unique ID prefix."""
        if not isinstance(ref, str) or not ref:
            raise NotFound(f"No such container: {ref}")
        c = self.by_id.get(ref)
        if c is not None:
            return c
        c = self.by_name(ref)
        if c is not None:
            return c
        if re.fullmatch(r"[0-9a-f]+", ref):
            found = [c for c in self.by_id.values() if c.id.startswith(ref)]
            if len(found) == 1:
                return found[0]
            if len(found) > 1:
                raise InvalidArgument(f"multiple IDs found with provided prefix: {ref}")
        raise NotFound(f"No such container: {ref}")

    def insert(self, c: Container) -> None:
        other = self.by_name(c.name)
        if other is not None:
            raise Conflict(f'Conflict. The container name "/{c.name}" is already in use by container '
                           f'"{other.id}". You have to remove (or rename) that container to be able to reuse that name.')
        with self.state.transaction() as db:
            db.execute("INSERT INTO containers(id, name, created, image_id, storage, executor, config, host_config, "
                       "networking, mounts, state) VALUES(?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)", c.record())
        self.by_id[c.id] = c

    def save(self, c: Container) -> None:
        if c.id not in self.by_id:
            return
        with self.state.transaction() as db:
            db.execute("UPDATE containers SET name=?, config=?, host_config=?, mounts=?, state=? WHERE id=?",
                       (c.name, json.dumps(c.config), json.dumps(c.host_config),
                        json.dumps([m.to_record() for m in c.mounts]), json.dumps(attrs.asdict(c.state)), c.id))

    def delete(self, c: Container) -> None:
        with self.state.transaction() as db:
            db.execute("DELETE FROM containers WHERE id=?", (c.id,))
        self.by_id.pop(c.id, None)

    def rename(self, c: Container, new: str) -> None:
        other = self.by_name(new)
        if other is not None and other is not c:
            raise Conflict(f'Conflict. The container name "/{new}" is already in use by container "{other.id}". '
                           "You have to remove (or rename) that container to be able to reuse that name.")
        old = c.name
        c.name = new
        try:
            self.save(c)
        except BaseException:
            c.name = old
            raise

    def unique_name(self) -> str:
        for retry in range(16):
            name = names.generate(retry)
            if self.by_name(name) is None:
                return name
        return names.generate(1) + secrets.token_hex(3)


# --------------------------------------------------------------------------- the lifecycle
Emit = Callable[[str, str, str, dict[str, str]], None]


class Containers:
    """Lifecycle orchestration over a :class:`ContainerStore`.

    ``drivers`` is the daemon's ``DriverSet`` (``get(kind, name)``), ``images`` the image store,
    ``content`` the content store, ``emit`` the event stream's ``emit``.
    """

    def __init__(self, *, state: State, data_root: Path, images: Any, content: Any, volumes: VolumeStore,
                 drivers: Any, emit: Emit) -> None:
        self.store = ContainerStore(state)
        self.top = data_root / "containers"
        self.top.mkdir(parents=True, exist_ok=True)
        os.chmod(self.top, 0o710)
        self.images = images
        self.content = content
        self.volumes = volumes
        self.drivers = drivers
        self.emit = emit
        self.execs: dict[str, Exec] = {}
        self.nursery: trio.Nursery | None = None
        self.networks: Any = None  # core.engine.networks.service.NetworkManager, once wired (wire_networks)
        volumes.users = lambda name: [c.id for c in self.store.all() if name in volume_names(c.mounts)]
        volumes.running_users = lambda name: [c.id for c in self.store.all()
                                              if c.running and name in volume_names(c.mounts)]
        images.users = self.image_users

    # -- networking ---------------------------------------------------------------------------------
    def wire_networks(self, networks: Any) -> None:
        """Use ``networks`` (a :class:`core.engine.networks.service.NetworkManager`) for containers' networks:
        ``prepare`` at create and before each start, ``attach`` between the executor's create
        and start (its hosts and resolv.conf then replace ours), ``detach`` at exit, ``forget``
        at rm, ``restore`` at daemon start, ``settings``/``ps_ports`` for inspect and ps.
        Without it a container gets an empty network namespace (``--network host``: none)."""
        self.networks = networks
        networks.container_lookup = self._network_lookup
        networks.on_change = self._network_changed

    def _network_lookup(self, ref: str) -> tuple[str, int, bool]:
        c = self.store.lookup(ref)
        return c.id, c.state.pid if c.running else 0, c.running

    def _network_changed(self, container_id: str) -> None:
        c = self.store.by_id.get(container_id)
        if c is not None and self.networks is not None:
            _write_in_place(self.dir(c) / "hosts",
                            self.networks.hosts_file(c.id, domainname=c.config.get("Domainname") or ""))
            # on a user-defined network names come from the embedded DNS: point resolv.conf at it
            _write_in_place(self.dir(c) / "resolv.conf", self.networks.resolv_conf(c.id))

    async def _network_prepare(self, c_id: str, hc: dict[str, Any], networking: dict[str, Any],
                               config: dict[str, Any]) -> str | None:
        return await self.networks.prepare(c_id, hc, networking, exposed_ports=config.get("ExposedPorts"))

    async def _network_release(self, c: Container, forget: bool = False) -> None:
        if self.networks is None:
            return
        with trio.CancelScope(shield=True):
            try:
                if forget:
                    await self.networks.forget(c.id)
                else:
                    await self.networks.detach(c.id)
            except CoreError as exc:
                log.warning("container %s: leaving its networks: %s", c.short_id, exc)

    # -- queries ------------------------------------------------------------------------------------
    def lookup(self, ref: str) -> Container:
        return self.store.lookup(ref)

    def list(self) -> list[Container]:
        return self.store.all()

    def image_users(self, image_id: str) -> list[tuple[str, bool]]:
        return [(c.id, c.status in RUNNING) for c in self.store.all() if c.image_id == image_id]

    def counters(self) -> dict[str, Callable[[], int]]:
        def count(pred: Callable[[Container], bool]) -> Callable[[], int]:
            return lambda: sum(1 for c in self.store.by_id.values() if pred(c))

        return {
            "Containers": count(lambda c: True),
            "ContainersRunning": count(lambda c: c.status in ("running", "restarting")),
            "ContainersPaused": count(lambda c: c.status == "paused"),
            "ContainersStopped": count(lambda c: c.status not in ("running", "restarting", "paused")),
        }

    def dir(self, c: Container) -> Path:
        return self.top / c.id

    def log_path(self, c: Container) -> Path:
        return self.dir(c) / f"{c.id}-json.log"

    def rootfs(self, c: Container) -> Path:
        return self.dir(c) / "rootfs"

    def executor(self, c: Container) -> Any:
        return self.drivers.get("executor", c.executor)

    def snapshotter(self, c: Container) -> Any:
        return self.drivers.get("storage", c.storage)

    def _start_soon(self, fn: Callable[..., Awaitable[Any]], *args: Any) -> None:
        if self.nursery is None:
            raise CoreError("the daemon is not serving yet")
        self.nursery.start_soon(fn, *args)

    # -- create ---------------------------------------------------------------------------------------
    async def create(self, body: dict[str, Any], *, name: str | None, drivers: dict[str, str],
                     platform: str | None = None) -> tuple[Container, list[str]]:
        """``POST /containers/create``; returns the container and docker's warnings."""
        if not isinstance(body, dict):
            raise InvalidArgument("config cannot be empty in order to create a container")
        cid = new_id()
        try:   # first of all: docker run starts it next (a hint; nothing is made yet)
            await self._prepare_executor(self.drivers.get("executor", drivers["executor"]), cid)
        except CoreError:
            pass   # the driver's loading error is reported below, in order
        warnings: list[str] = []
        image_ref = body.get("Image")
        if not isinstance(image_ref, str) or not image_ref:
            raise InvalidArgument("no image specified: a container needs an image")
        if name:
            name = check_name(name)
            other = self.store.by_name(name)
            if other is not None:
                raise Conflict(f'Conflict. The container name "/{name}" is already in use by container '
                               f'"{other.id}". You have to remove (or rename) that container to be able to reuse '
                               "that name.")
        image = self.images.lookup(image_ref)
        from core.types import Platform

        host = Platform.host()
        if platform:
            wanted = Platform.parse(platform)
            if not wanted.matches(image.config.platform):
                raise NotFound(f"image with reference {image_ref} was found but does not match the specified "
                               f"platform: wanted {wanted}, actual: {image.config.platform}")
        elif image.config.platform.os != host.os or image.config.platform.architecture != host.architecture:
            warnings.append(f"WARNING: The requested image's platform ({image.config.platform}) does not match the "
                            f"detected host platform ({host}) and no specific platform was requested")
        user_config = {k: v for k, v in body.items() if k not in ("HostConfig", "NetworkingConfig")}
        config = oci.merge_config(image.config.config, user_config)
        config["Image"] = image_ref
        oci.process_args(config)  # "no command specified"
        hc = normalize_host_config(body.get("HostConfig") or {})
        unsupported(hc)
        warnings += oci.check_resources(hc)
        oci.capabilities(hc.get("CapAdd"), hc.get("CapDrop"), bool(hc.get("Privileged")))  # validate
        oci.parse_security_opts(hc.get("SecurityOpt"))
        oci.rlimits(hc.get("Ulimits"))
        if hc.get("NetworkMode", "").startswith("container:") and config.get("Hostname"):
            raise InvalidArgument("conflicting options: hostname and the network mode")
        config["Hostname"] = config.get("Hostname") or (socket.gethostname() if hc.get("NetworkMode") == "host"
                                                        else cid[:12])
        config.setdefault("Domainname", "")
        for key, default in (("AttachStdin", False), ("AttachStdout", False), ("AttachStderr", False),
                             ("Tty", False), ("OpenStdin", False), ("StdinOnce", False)):
            config[key] = bool(config.get(key, default))
        mounts = parse_mounts(hc, (config.get("Volumes") or {}).keys(), self._volumes_from)
        storage_name = drivers["storage"]
        executor_name = drivers["executor"]
        snapshotter = self.drivers.get("storage", storage_name)
        self.drivers.get("executor", executor_name)  # fails now if it cannot load
        name = name or self.store.unique_name()
        cdir = self.top / cid
        made_volumes: list[str] = []
        prepared = networked = False
        try:
            if self.networks is not None:  # the request is checked (and recorded) before anything is made
                networked = True
                await self._network_prepare(cid, hc, body.get("NetworkingConfig") or {}, config)
            cdir.mkdir(mode=0o710)
            (cdir / "rootfs").mkdir(mode=0o755)
            (cdir / "bundle").mkdir(mode=0o700)
            from core.engine.images.pull import ensure_unpacked

            top = await ensure_unpacked(image, self.images, self.content, snapshotter)
            await snapshotter.prepare(f"ctr-{cid}", parent=top, labels={"core.container": cid})
            prepared = True
            made_volumes = prepare_sources(mounts, self.volumes)
            self._write_etc(cdir, config, hc)
            now = time.time_ns()
            c = Container(id=cid, name=name, created=now, image_id=image.id, storage=storage_name,
                          executor=executor_name, config=config, host_config=hc,
                          networking=body.get("NetworkingConfig") or {}, mounts=mounts,
                          state=ContainerStateRecord())
            self.store.insert(c)
        except BaseException:
            with trio.CancelScope(shield=True):
                for vol in made_volumes:
                    try:
                        self.volumes.remove(vol, force=True)
                    except CoreError:
                        pass
                if prepared:
                    try:
                        await snapshotter.remove(f"ctr-{cid}")
                    except CoreError:
                        pass
                if networked:
                    try:
                        await self.networks.forget(cid)
                    except CoreError:
                        pass
                shutil.rmtree(cdir, ignore_errors=True)
            raise
        self.emit("container", "create", c.id, c.event_attributes())
        return c, warnings

    @staticmethod
    async def _prepare_executor(ex: Any, container_id: str) -> None:
        """The executor's optional ``prepare`` hint (:class:`core.contracts.executor.Preparer`)."""
        if isinstance(ex, Preparer):
            try:
                await ex.prepare(container_id)
            except CoreError as exc:
                log.debug("container %s: executor prepare: %s", container_id[:12], exc)

    def _volumes_from(self, ref: str) -> list[MountPoint]:
        other = self.store.lookup(ref)
        return [m for m in other.mounts if m.type in ("bind", "volume")]

    ETC_FILES = ("hostname", "hosts", "resolv.conf")

    def _write_etc(self, cdir: Path, config: dict[str, Any], hc: dict[str, Any]) -> None:
        """The container's /etc/hostname, hosts and resolv.conf (bind-mounted into it).  Not
        fsync'ed: a start writes any of them again that a host crash left missing or empty."""
        host_net = hc.get("NetworkMode") == "host"
        _write_atomic(cdir / "hostname", f"{config['Hostname']}\n", durable=False)
        _write_atomic(cdir / "hosts", hosts_file(hc.get("ExtraHosts"), host_net), durable=False)
        try:
            host_resolv = Path("/etc/resolv.conf").read_text()
        except OSError:
            host_resolv = ""
        _write_atomic(cdir / "resolv.conf", resolv_conf(host_resolv, dns=hc.get("Dns"), search=hc.get("DnsSearch"),
                                                        options=hc.get("DnsOptions"), host_network=host_net),
                      durable=False)

    def _check_etc(self, c: Container) -> None:
        cdir = self.dir(c)
        for name in self.ETC_FILES:
            try:
                if os.stat(cdir / name).st_size:
                    continue
            except FileNotFoundError:
                pass
            self._write_etc(cdir, c.config, c.host_config)
            return

    # -- start ------------------------------------------------------------------------------------------
    async def start(self, c: Container) -> None:
        """``docker start``: ``NotModified`` when it runs already.  A ``--rm`` container whose
        start fails is removed (docker's CLI waits for that removal)."""
        error: CoreError | None = None
        async with c.lock:
            if c.removing or c.status in ("removing", "dead"):
                raise Conflict(f"container {c.id} is marked for removal and cannot be started")
            if c.status in ("running", "paused"):
                raise NotModified(f"container {c.id} is already running")
            if c.status == "restarting":
                self._cancel_restart(c)
            c.state.restart_count = 0
            c.backoff = 0.0
            c.state.manually_stopped = False
            try:
                await self._start_locked(c)
            except CoreError as exc:
                error = exc
        if error is not None:
            if c.host_config.get("AutoRemove"):
                with trio.CancelScope(shield=True):
                    try:
                        await self.remove(c, force=True, volumes=True)
                    except CoreError as exc:
                        log.warning("container %s: --rm after a failed start: %s", c.short_id, exc)
            raise error

    def _joined_namespaces(self, c: Container) -> dict[str, str]:
        joined: dict[str, str] = {}
        for key, kind in (("NetworkMode", "network"), ("PidMode", "pid"), ("IpcMode", "ipc")):
            if kind == "network" and self.networks is not None:
                continue  # the network manager says which namespace
            value = c.host_config.get(key) or ""
            if value.startswith("container:"):
                other = self.store.lookup(value.split(":", 1)[1])
                if not other.running or not other.state.pid:
                    raise Conflict(f"cannot join the {kind} namespace of container {other.id}: it is not running")
                joined[kind] = f"/proc/{other.state.pid}/ns/{'net' if kind == 'network' else kind}"
        return joined

    async def _spec(self, c: Container, rootfs: Path, netns: Any = None) -> dict[str, Any]:
        passwd, group = await trio.to_thread.run_sync(oci.read_user_db, rootfs)
        user = oci.resolve_user(c.config.get("User") or "", passwd, group, c.host_config.get("GroupAdd") or [])
        cdir = self.dir(c)
        etc = {"/etc/hostname": str(cdir / "hostname"), "/etc/hosts": str(cdir / "hosts"),
               "/etc/resolv.conf": str(cdir / "resolv.conf")}
        size = c.host_config.get("ConsoleSize") or [0, 0]
        term = (int(size[0]), int(size[1])) if isinstance(size, list) and len(size) == 2 and size[0] and size[1] else None
        joined = self._joined_namespaces(c)
        hc = c.host_config
        if self.networks is not None:
            joined["network"] = netns or ""
            hc = {**hc, "NetworkMode": "host" if netns is None else "container:sandbox"}
        namespaces = oci.namespaces_for(hc, joined)
        return oci.build_spec(
            config=c.config, host_config=c.host_config, rootfs=rootfs, user=user, hostname=c.hostname,
            mounts=[oci_mount(m) for m in c.mounts], namespaces=namespaces,
            cgroups_path=f"/{c.host_config.get('CgroupParent') or 'core'}/{c.id}".replace("//", "/"),
            etc_files=etc, terminal_size=term)

    async def _mount_rootfs(self, c: Container) -> Path:
        from core.storage.mount import mount_all, unmount

        rootfs = self.rootfs(c)
        rootfs.mkdir(exist_ok=True)
        mounts = await self.snapshotter(c).mounts(f"ctr-{c.id}")
        await trio.to_thread.run_sync(unmount, rootfs)
        await trio.to_thread.run_sync(mount_all, mounts, rootfs)
        return rootfs

    async def _unmount_rootfs(self, c: Container) -> None:
        from core.storage.mount import unmount

        rootfs = self.rootfs(c)

        def undo() -> None:
            try:
                unmount(rootfs)
            except CoreError:
                unmount(rootfs, detach=True)

        with trio.CancelScope(shield=True):
            try:
                await trio.to_thread.run_sync(undo)
            except CoreError as exc:
                log.warning("container %s: cannot unmount %s: %s", c.short_id, rootfs, exc)

    async def _copy_up_volumes(self, c: Container, rootfs: Path) -> None:
        """Fill each new, empty volume with what the image has at its mount point."""
        for mp in c.mounts:
            if mp.type != "volume" or not mp.copy_data or mp.subpath:
                continue
            vol = self.volumes.find(mp.name)
            if vol is None:
                continue

            def copy(dest: str = mp.destination, data: Path = vol.mountpoint) -> bool:
                if any(os.scandir(data)):
                    return False
                rfd = os.open(rootfs, os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)
                try:
                    try:
                        sfd = archive.open_in_root(rfd, dest, os.O_RDONLY | os.O_DIRECTORY)
                    except OSError:
                        return False
                    try:
                        dfd = os.open(data, os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW | os.O_CLOEXEC)
                        try:
                            archive.copy_dir_contents(sfd, dfd)
                        finally:
                            os.close(dfd)
                    finally:
                        os.close(sfd)
                finally:
                    os.close(rfd)
                return True

            try:
                if await trio.to_thread.run_sync(copy):
                    mp.copy_data = False  # once: a volume is populated when first used
            except OSError as exc:
                raise CoreError(f"failed to copy the image's files into volume {mp.name}: {exc}") from exc

    async def _start_locked(self, c: Container) -> None:
        if c.id not in self.store.by_id:   # removed while the caller waited for the lock
            raise NotFound(f"No such container: {c.id}")
        ex = self.executor(c)
        await self._prepare_executor(ex, c.id)
        for mp in c.mounts:
            if mp.type == "bind" and not os.path.exists(mp.source):
                raise InvalidArgument(f'invalid mount config for type "bind": bind source path does not exist: '
                                      f"{mp.source}")
        c.state.error = ""
        created = recorded = False
        try:
            for mp in c.mounts:
                if mp.type == "volume":
                    self.volumes.acquire(mp.name)
            rootfs = await self._mount_rootfs(c)
            await self._copy_up_volumes(c, rootfs)
            self._check_etc(c)
            netns = None
            if self.networks is not None:
                netns = await self._network_prepare(c.id, c.host_config, c.networking, c.config)
            spec = await self._spec(c, rootfs, netns)
            bundle = self.dir(c) / "bundle"
            bundle.mkdir(exist_ok=True)
            # written for every start: not fsync'ed, and compact (json's C encoder)
            _write_atomic(bundle / "config.json", json.dumps(spec), 0o600, durable=False)
            size = c.host_config.get("ConsoleSize") or [0, 0]
            io = IOConfig(terminal=bool(c.config.get("Tty")), stdin=bool(c.config.get("OpenStdin")),
                          # with a tty docker never closes stdin behind a detached client
                          stdin_once=bool(c.config.get("StdinOnce")) and not c.config.get("Tty"),
                          log_path=None if c.host_config["LogConfig"]["Type"] == "none" else self.log_path(c),
                          width=int(size[1]) if size and size[1] else 80, height=int(size[0]) if size and size[0] else 24)

            async def create() -> None:
                nonlocal created
                try:
                    await ex.create(c.id, bundle, io)
                except AlreadyExists:
                    try:
                        await ex.delete(c.id)
                    except NotFound:
                        pass
                    await ex.create(c.id, bundle, io)
                created = True

            if netns:   # a sandbox of its own: its endpoints are made while the executor creates
                await gather(create, lambda: self.network_setup(c, None))
            else:
                await create()
                await self.network_setup(c, ex)
            await self._connect_pending(c, ex, before_start=True)
            try:
                pid = await ex.start(c.id)
            except (NotFound, Forbidden, InvalidArgument) as exc:
                if isinstance(exc, NotFound) and "executable file not found" not in exc.message \
                        and "no such file" not in exc.message:
                    raise
                err, code = translate_start_error(exc)
                c.state.exit_code = code
                c.state.error = err.message
                self.store.save(c)
                recorded = True
                raise err from exc
        except BaseException as exc:
            with trio.CancelScope(shield=True):
                if created:
                    try:
                        await ex.delete(c.id)
                    except CoreError:
                        try:
                            await ex.kill(c.id, _signal.SIGKILL, True)
                            await ex.delete(c.id)
                        except CoreError:
                            pass
                await self._unmount_rootfs(c)
                await self._network_release(c)
                for mp in c.mounts:
                    if mp.type == "volume":
                        self.volumes.release(mp.name)
                if isinstance(exc, CoreError) and not recorded:
                    c.state.error = exc.message
                    if c.state.exit_code == 0:
                        c.state.exit_code = EXIT_UNKNOWN
                    self.store.save(c)
                self._fail_pending(c, exc if isinstance(exc, CoreError) else CoreError(str(exc)))
            raise
        now = time.time_ns()
        c.state.status = "running"
        c.state.pid = pid
        c.state.started_at = now
        c.state.exit_code = 0
        c.state.error = ""
        c.state.oom_killed = False
        c.state.has_been_started = True
        c.cancel_restart = False
        c.starts += 1
        self.store.save(c)
        await self._connect_pending(c, ex, before_start=False)
        for mp in c.mounts:
            if mp.type == "volume":
                self.emit("volume", "mount", mp.name, {"container": c.id, "destination": mp.destination,
                                                       "driver": mp.driver or "local", "propagation": mp.propagation,
                                                       "read/write": str(mp.rw).lower()})
        self.emit("container", "start", c.id, c.event_attributes())
        c.notify()
        self._start_soon(self._monitor, c)

    async def network_setup(self, c: Container, ex: Any) -> None:
        """Networking joins a container here, before its program runs: after the executor made
        its namespaces (``ex``: the container's pid is asked for), or — a container with a
        sandbox namespace of its own, ``ex`` None — while the executor makes them.  The network
        manager's hosts and resolv.conf replace ours, written in place (the container's bind
        mounts hold the files' inodes)."""
        if self.networks is None:
            return
        pid = (await ex.state(c.id)).pid if ex is not None else 0
        info = await self.networks.attach(c.id, c.name, c.hostname, pid)
        cdir = self.dir(c)
        if info.get("HostsFile") is not None:
            _write_in_place(cdir / "hosts", info["HostsFile"])
        if info.get("ResolvConf") is not None:
            _write_in_place(cdir / "resolv.conf", info["ResolvConf"])

    async def _connect_pending(self, c: Container, ex: Any, before_start: bool) -> None:
        """Give the attaches waiting for this start their streams: before the program runs, so
        they see all of its output; after it, for an executor that cannot attach earlier."""
        waiting, c.pending_attach = c.pending_attach, []
        keep: list[PendingAttach] = []
        for p in waiting:
            if p.ready.is_set():
                continue
            if before_start and not p.late:
                try:
                    p.stream = await ex.attach(c.id)
                except Conflict:
                    p.late = True
                    keep.append(p)
                    continue
                except CoreError as exc:
                    p.error = exc
                p.ready.set()
            elif not before_start:
                try:
                    p.stream = await ex.attach(c.id)
                except CoreError as exc:
                    p.error = exc
                p.ready.set()
            else:
                keep.append(p)
        c.pending_attach = keep + c.pending_attach

    def _fail_pending(self, c: Container, exc: CoreError | None) -> None:
        waiting, c.pending_attach = c.pending_attach, []
        for p in waiting:
            p.error = exc
            p.ready.set()

    # -- attach -----------------------------------------------------------------------------------------
    async def attach(self, c: Container) -> Any | None:
        """A stream of the container's stdio: at once when it runs, else at its next start.

        Returns ``None`` when the container went away before starting.
        """
        if c.status in ("running", "paused"):
            try:
                return await self.executor(c).attach(c.id)
            except Conflict:
                if c.status in ("running", "paused"):
                    raise
        pending = PendingAttach()
        c.pending_attach.append(pending)
        try:
            await pending.ready.wait()
        finally:
            if pending in c.pending_attach:
                c.pending_attach.remove(pending)
        if pending.error is not None:
            raise pending.error
        return pending.stream

    # -- exit ---------------------------------------------------------------------------------------------
    async def _monitor(self, c: Container) -> None:
        """Wait for the container's program to end, then record it (one task per run)."""
        if c.monitoring:
            return
        c.monitoring = True
        ex = self.executor(c)
        try:
            while True:
                try:
                    status = await ex.wait(c.id)
                    break
                except NotFound:
                    status = ExitStatus(code=EXIT_LOST, finished_at=time.time())
                    break
                except CoreError as exc:
                    log.warning("container %s: waiting for it failed: %s; retrying", c.short_id, exc)
                    await trio.sleep(1)
        finally:
            c.monitoring = False
        await self._on_exit(c, status)

    async def _on_exit(self, c: Container, status: ExitStatus) -> None:
        async with c.lock:
            if c.id not in self.store.by_id:
                return
            ran_for = (time.time_ns() - c.state.started_at) / 1e9 if c.state.started_at else 0.0
            c.state.exit_code = status.code
            c.state.oom_killed = bool(status.oom_killed)
            c.state.finished_at = int(status.finished_at * 1e9) if status.finished_at else time.time_ns()
            c.state.pid = 0
            c.state.status = "exited"  # from here on it no longer counts as a user of its volumes' mounts
            await self._unmount_rootfs(c)
            await self._network_release(c)
            for mp in c.mounts:
                if mp.type == "volume":
                    self.volumes.release(mp.name)
                    self.emit("volume", "unmount", mp.name, {"container": c.id, "driver": mp.driver or "local"})
            restart, delay = self._should_restart(c, status.code, ran_for)
            c.state.status = "restarting" if restart else "exited"
            if restart:
                c.state.restart_count += 1
            self.store.save(c)
            c.exits += 1
            if status.oom_killed:
                self.emit("container", "oom", c.id, c.event_attributes())
            self.emit("container", "die", c.id, c.event_attributes(exitCode=str(status.code),
                                                                    execDuration=str(int(ran_for))))
            for e in list(self.execs.values()):
                if e.container_id == c.id and e.running:
                    e.running = False
                    if e.exit_code is None:
                        e.exit_code = 137
                    e.done.set()
            c.notify()
            if restart:
                self._start_soon(self._delayed_restart, c, delay)
                return
            auto_remove = bool(c.host_config.get("AutoRemove")) and not c.keep
        if auto_remove:
            try:
                await self.remove(c, force=False, volumes=True)
            except CoreError as exc:
                log.warning("container %s: --rm failed: %s", c.short_id, exc)

    def _should_restart(self, c: Container, code: int, ran_for: float) -> tuple[bool, float]:
        """docker's restart manager: whether to restart, and after how long."""
        policy = c.host_config.get("RestartPolicy") or {}
        name = policy.get("Name") or "no"
        if name == "no" or c.cancel_restart or c.removing:
            return False, 0.0
        if ran_for >= BACKOFF_RESET_AFTER:
            c.backoff = 0.0
        c.backoff = BACKOFF_START if c.backoff == 0 else min(c.backoff * 2, BACKOFF_MAX)
        if name == "always":
            return True, c.backoff
        if name == "unless-stopped":
            return (not c.state.manually_stopped), c.backoff
        if name == "on-failure":
            limit = policy.get("MaximumRetryCount") or 0
            if code != 0 and (limit == 0 or c.state.restart_count < limit):
                return True, c.backoff
        return False, 0.0

    async def _delayed_restart(self, c: Container, delay: float) -> None:
        with trio.CancelScope() as scope:
            c.restart_cancel = scope
            await trio.sleep(delay)
        if c.restart_cancel is scope:
            c.restart_cancel = None
        if scope.cancelled_caught:
            return
        async with c.lock:
            if c.status != "restarting" or c.cancel_restart or c.id not in self.store.by_id:
                return
            try:
                await self._start_locked(c)
            except CoreError as exc:
                log.warning("container %s: restart failed: %s", c.short_id, exc)
                c.state.status = "exited"
                c.state.error = exc.message
                self.store.save(c)
                c.notify()

    def _cancel_restart(self, c: Container) -> None:
        if c.restart_cancel is not None:
            c.restart_cancel.cancel()
            c.restart_cancel = None
        if c.status == "restarting":
            c.state.status = "exited"
            self.store.save(c)
            c.notify()

    async def wait_exit(self, c: Container, since: int, timeout: float | None = None) -> bool:
        """Wait until more than ``since`` exits have been recorded (or the container is gone)."""
        with trio.move_on_after(timeout if timeout is not None else float("inf")):
            while c.exits <= since and not c.removed.is_set():
                await c.changed()
            return True
        return False

    # -- stop / kill ------------------------------------------------------------------------------------
    async def kill(self, c: Container, sig: int = _signal.SIGKILL, *, manual: bool = True) -> None:
        """``docker kill``: ``Conflict`` unless it runs."""
        if c.status == "restarting":
            c.cancel_restart = True
            self._cancel_restart(c)
            c.state.manually_stopped = True
            self.store.save(c)
            return
        if not c.running:
            raise Conflict(f"Container {c.id} is not running")
        if manual:
            c.state.manually_stopped = True
            stop_sig = oci.parse_signal(c.config.get("StopSignal"), _signal.SIGTERM)
            if sig in (_signal.SIGKILL, stop_sig):
                c.cancel_restart = True
            self.store.save(c)
        ex = self.executor(c)
        try:
            await ex.kill(c.id, sig)
        except Conflict:
            return  # it has just exited
        except NotFound:
            return
        self.emit("container", "kill", c.id, c.event_attributes(signal=str(sig)))
        if c.status == "paused" and sig in (_signal.SIGKILL, _signal.SIGTERM, _signal.SIGINT, _signal.SIGQUIT):
            try:
                await ex.resume(c.id)
            except CoreError:
                pass

    async def stop(self, c: Container, timeout: int | None = None, sig: int | None = None) -> None:
        """``docker stop``: the stop signal, ``timeout`` seconds (``-1``: forever), SIGKILL.
        ``NotModified`` when it is not running."""
        if c.status == "restarting":
            c.state.manually_stopped = True
            c.cancel_restart = True
            self._cancel_restart(c)
            self.emit("container", "stop", c.id, c.event_attributes())
            return
        if not c.running:
            raise NotModified(f"container {c.id} is already stopped")
        if sig is None:
            sig = oci.parse_signal(c.config.get("StopSignal"), _signal.SIGTERM)
        if timeout is None:
            st = c.config.get("StopTimeout")
            timeout = st if isinstance(st, int) else DEFAULT_STOP_TIMEOUT
        c.cancel_restart = True
        since = c.exits
        try:
            await self.kill(c, sig)
        except Conflict:
            pass
        if not await self.wait_exit(c, since, None if timeout < 0 else timeout):
            try:
                await self.kill(c, _signal.SIGKILL)
            except Conflict:
                pass
            if not await self.wait_exit(c, since, 30):
                raise CoreError(f"cannot stop container: {c.id}: the process did not exit after SIGKILL")
        self.emit("container", "stop", c.id, c.event_attributes())

    async def restart(self, c: Container, timeout: int | None = None, sig: int | None = None) -> None:
        """``docker restart``: stop (a ``--rm`` container is kept meanwhile, as docker does), start."""
        if c.running or c.status == "restarting":
            c.keep = True
            try:
                await self.stop(c, timeout, sig)
            except NotModified:
                pass
            finally:
                c.keep = False
        async with c.lock:
            if c.status in ("running", "paused"):
                raise Conflict(f"cannot restart container {c.id}: it is still running")
            c.state.restart_count = 0
            c.backoff = 0.0
            c.state.manually_stopped = False
            await self._start_locked(c)
        self.emit("container", "restart", c.id, c.event_attributes())

    async def pause(self, c: Container) -> None:
        if c.status == "paused":
            raise Conflict(f"Container {c.id} is already paused")
        if c.status != "running":
            raise Conflict(f"Container {c.id} is not running")
        await self.executor(c).pause(c.id)
        c.state.status = "paused"
        self.store.save(c)
        c.notify()
        self.emit("container", "pause", c.id, c.event_attributes())

    async def unpause(self, c: Container) -> None:
        if c.status != "paused":
            raise Conflict(f"Container {c.id} is not paused")
        await self.executor(c).resume(c.id)
        c.state.status = "running"
        self.store.save(c)
        c.notify()
        self.emit("container", "unpause", c.id, c.event_attributes())

    # -- remove / rename ----------------------------------------------------------------------------------
    async def remove(self, c: Container, *, force: bool = False, volumes: bool = False) -> None:
        """``docker rm``: ``Conflict`` while it runs, unless ``force`` (SIGKILL first)."""
        if c.removing:
            raise Conflict(f"removal of container {c.short_id} is already in progress")
        if c.status in RUNNING:
            if not force:
                if c.status == "paused":
                    raise Conflict(f"You cannot remove a paused container {c.id}. Unpause and then stop the "
                                   "container before attempting removal or force remove")
                if c.status == "restarting":
                    raise Conflict(f"You cannot remove a restarting container {c.id}. Stop the container before "
                                   "attempting removal or force remove")
                raise Conflict(f"You cannot remove a running container {c.id}. Stop the container before "
                               "attempting removal or force remove")
            c.cancel_restart = True
            if c.status == "restarting":
                self._cancel_restart(c)
            else:
                since = c.exits
                try:
                    await self.kill(c, _signal.SIGKILL)
                except Conflict:
                    pass
                if not await self.wait_exit(c, since, 30):
                    raise CoreError(f"could not kill running container {c.id}, cannot remove")
        c.removing = True
        try:
            async with c.lock:
                if c.id not in self.store.by_id:
                    return
                c.state.status = "removing"
                c.notify()
                await self._destroy(c, volumes)
        finally:
            c.removing = False

    async def _destroy(self, c: Container, volumes: bool) -> None:
        """Its processes are gone: the executor's state, the network endpoints and the root
        filesystem are removed side by side, then the record and the directory."""
        failed: list[CoreError] = []

        async def executor_state() -> None:
            try:
                await self.executor(c).delete(c.id)
            except NotFound:
                pass
            except CoreError as exc:
                log.warning("container %s: executor delete: %s", c.short_id, exc)

        async def filesystem() -> None:
            await self._unmount_rootfs(c)
            snapshotter, key = self.snapshotter(c), f"ctr-{c.id}"
            try:
                parent = (await snapshotter.stat(key)).parent
                await snapshotter.remove(key)
            except NotFound:
                return
            except CoreError as exc:
                failed.append(exc)
                return
            if parent and self.images.by_id(c.image_id) is None:
                await self._collect_layers(snapshotter, parent)

        with trio.CancelScope(shield=True):
            await gather(executor_state, lambda: self._network_release(c, True), filesystem)
            for exc in failed:
                c.state.status = "dead"
                c.state.error = f"failed to remove the root filesystem: {exc.message}"
                self.store.save(c)
                c.notify()
                raise CoreError(f"unable to remove filesystem for {c.id}: {exc.message}") from exc
            self.store.delete(c)
            for e in [e for e in self.execs.values() if e.container_id == c.id]:
                self.execs.pop(e.id, None)
            if volumes:
                for mp in c.mounts:
                    if mp.type == "volume" and mp.anonymous and mp.name:
                        try:
                            self.volumes.remove(mp.name)
                        except NotFound:
                            pass
                        except CoreError as exc:
                            log.info("container %s: keeping volume %s: %s", c.short_id, mp.name, exc)
            await trio.to_thread.run_sync(self._remove_dir, self.dir(c))
            self._fail_pending(c, None)
            c.removed.set()
            c.notify()
            self.emit("container", "destroy", c.id, c.event_attributes())

    async def _collect_layers(self, snapshotter: Any, chain: str) -> None:
        """The image went while this container kept its layers (``rmi -f`` with only stopped
        users): remove them from the top, down to one another image or container still uses."""
        in_use = self.images.chains_in_use()
        while chain and chain not in in_use:
            try:
                parent = (await snapshotter.stat(chain)).parent
                await snapshotter.remove(chain)
            except CoreError:   # NotFound, or Conflict: another snapshot stands on it
                return
            chain = parent

    @staticmethod
    def _remove_dir(path: Path) -> None:
        from core.storage.mount import unmount

        prefix = str(path) + "/"
        try:
            with open("/proc/self/mountinfo") as f:
                points = [line.split()[4] for line in f if line.split()[4].startswith(prefix)]
        except OSError:
            points = []
        for point in sorted(points, key=len, reverse=True):
            try:
                unmount(point, detach=True)
            except CoreError:
                pass
        shutil.rmtree(path, ignore_errors=True)

    def rename(self, c: Container, new: str) -> None:
        if not new:
            raise InvalidArgument("Neither old nor new names may be empty")
        new = check_name(new)
        if new == c.name:
            raise InvalidArgument("Renaming a container with the same name as its current name")
        old = c.name
        self.store.rename(c, new)
        self.emit("container", "rename", c.id, c.event_attributes(oldName=f"/{old}"))

    # -- exec ---------------------------------------------------------------------------------------------
    def exec_create(self, c: Container, config: dict[str, Any]) -> Exec:
        if not isinstance(config, dict):
            raise InvalidArgument("exec config must be a JSON object")
        if c.status == "paused":
            raise Conflict(f"Container {c.id} is paused, unpause the container before exec")
        if c.status != "running":
            raise Conflict(f"Container {c.id} is not running")
        cmd = config.get("Cmd")
        if isinstance(cmd, str):
            cmd = [cmd]
        if not cmd or not isinstance(cmd, list) or not all(isinstance(x, str) for x in cmd) or not cmd[0]:
            raise InvalidArgument("No exec command specified")
        env = config.get("Env") or []
        if not isinstance(env, list) or not all(isinstance(e, str) for e in env):
            raise InvalidArgument("invalid Env: expected a list of strings")
        now = time.time()
        for old in [x for x in self.execs.values() if x.done.is_set() and now - x.created > EXEC_KEEP]:
            self.execs.pop(old.id, None)  # docker forgets finished execs after a while too
        e = Exec(id=new_id(), container_id=c.id, config={**config, "Cmd": cmd})
        self.execs[e.id] = e
        self.emit("container", f"exec_create: {' '.join(cmd)}", c.id, c.event_attributes(execID=e.id))
        return e

    def exec_lookup(self, exec_id: str) -> Exec:
        e = self.execs.get(exec_id)
        if e is None:
            raise NotFound(f"No such exec instance: {exec_id}")
        return e

    async def exec_start(self, e: Exec, *, tty: bool | None = None, console: tuple[int, int] | None = None) -> None:
        """Run an exec's process (the caller attaches to it unless detached).

        A process that cannot be started gets docker's exit code (127 not found, 126 cannot be
        run, 126 otherwise) and the error is raised."""
        if e.started:
            raise Conflict(f"Error: Exec command {e.id} is already running" if e.running else
                           f"exec {e.id} has already been started")
        c = self.store.lookup(e.container_id)
        if c.status == "paused":
            raise Conflict(f"Container {c.id} is paused, unpause the container before exec")
        if c.status != "running":
            raise Conflict(f"Container {c.id} is not running")
        e.started = True
        if tty is not None:
            e.config["Tty"] = tty
        try:
            e.pid = await self._exec_run(c, e, bool(e.config.get("Tty")), console)
        except BaseException as exc:
            if e.exit_code is None:
                e.exit_code = 126
            if not e.error:
                e.error = exc.message if isinstance(exc, CoreError) else str(exc)
            e.done.set()
            e.ready.set()
            raise
        e.running = True
        e.ready.set()
        self.emit("container", f"exec_start: {' '.join(e.config['Cmd'])}", c.id, c.event_attributes(execID=e.id))
        self._start_soon(self._exec_monitor, c, e)

    async def _exec_run(self, c: Container, e: Exec, tty_on: bool, console: tuple[int, int] | None) -> int:
        try:
            spec = json.loads((self.dir(c) / "bundle" / "config.json").read_text())
        except (OSError, ValueError) as exc:
            raise CoreError(f"cannot read the container's spec: {exc}") from exc
        user_spec = e.config.get("User") or c.config.get("User") or ""

        def user_db() -> tuple[bytes | None, bytes | None]:
            fd = os.open(f"/proc/{c.state.pid}/root", os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)
            try:
                return oci.read_user_db(fd)
            finally:
                os.close(fd)

        try:
            passwd, group = await trio.to_thread.run_sync(user_db)
        except OSError:
            passwd, group = None, None
        size = console or tuple(e.config.get("ConsoleSize") or ()) or None
        user = oci.resolve_user(user_spec, passwd, group, c.host_config.get("GroupAdd") or [])
        process = oci.exec_process(container_spec=spec, config=c.config, hostname=c.hostname,
                                   cmd=e.config["Cmd"], env=e.config.get("Env") or [], user=user,
                                   working_dir=e.config.get("WorkingDir") or "", tty=tty_on,
                                   privileged=bool(e.config.get("Privileged")),
                                   terminal_size=(int(size[0]), int(size[1])) if size and all(size) else None)
        io = IOConfig(terminal=tty_on, stdin=bool(e.config.get("AttachStdin")), stdin_once=not tty_on, log_path=None,
                      width=int(size[1]) if size and size[1] else 80, height=int(size[0]) if size and size[0] else 24)
        try:
            return await self.executor(c).exec(c.id, e.id, process, io)
        except (NotFound, Forbidden) as exc:
            if isinstance(exc, NotFound) and "executable file not found" not in exc.message \
                    and "no such file" not in exc.message:
                raise
            e.exit_code = 127 if isinstance(exc, NotFound) else 126
            msg = exc.message
            if isinstance(exc, Forbidden) and "permission denied" not in msg and "is a directory" not in msg:
                msg += ": permission denied"
            e.error = f"OCI runtime exec failed: exec failed: unable to start container process: {msg}: unknown"
            raise CoreError(e.error) from exc

    async def _exec_monitor(self, c: Container, e: Exec) -> None:
        try:
            code = await self.executor(c).wait_exec(c.id, e.id)
        except CoreError as exc:
            log.info("exec %s of %s: %s", e.id[:12], c.short_id, exc)
            code = 126 if e.exit_code is None else e.exit_code
        e.exit_code = code
        e.running = False
        e.done.set()
        if c.id in self.store.by_id:
            self.emit("container", "exec_die", c.id, c.event_attributes(execID=e.id, exitCode=str(code)))

    # -- archive roots ------------------------------------------------------------------------------------
    async def root(self, c: Container, *, volumes: bool = True) -> archive.Root:
        """Where ``c``'s ``/`` is for a ``docker cp`` (``volumes``) or an export."""
        if c.running and c.state.pid and os.path.exists(f"/proc/{c.state.pid}/root"):
            if volumes:
                return archive.Root(f"/proc/{c.state.pid}/root", expect=str(self.rootfs(c)))
            return archive.Root(str(self.rootfs(c)))
        mounts = await self.snapshotter(c).mounts(f"ctr-{c.id}")
        binds = [(m.source, m.destination, not m.rw) for m in c.mounts if volumes and m.type in ("bind", "volume")]
        return archive.Root(str(self.rootfs(c)), mounts=mounts, binds=binds)

    # -- size ---------------------------------------------------------------------------------------------
    async def sizes(self, c: Container) -> tuple[int, int]:
        """(SizeRw, SizeRootFs): what the container wrote, and that plus its image."""
        try:
            rw = (await self.snapshotter(c).usage(f"ctr-{c.id}")).size
        except CoreError:
            rw = 0
        image = self.images.by_id(c.image_id)
        return rw, rw + (image.size if image else 0)

    # -- restore ------------------------------------------------------------------------------------------
    async def restore(self, nursery: trio.Nursery) -> None:
        """At daemon start: re-adopt running containers, record exits that happened while the
        daemon was away, then restart what the restart policies say (in the background)."""
        self.nursery = nursery
        states: dict[str, dict[str, Any]] = {}
        broken: set[str] = set()
        for executor_name in sorted({c.executor for c in self.store.all()}):
            try:
                ex = self.drivers.get("executor", executor_name)
                states[executor_name] = {s.id: s for s in await ex.list()}
            except CoreError as exc:
                log.warning("executor %s cannot list its containers: %s", executor_name, exc)
                broken.add(executor_name)
        restarts: list[Container] = []
        for c in self.store.all():
            if c.status == "removing":
                c.state.status = "dead"
                self.store.save(c)
                continue
            if c.executor in broken:
                continue
            st = states.get(c.executor, {}).get(c.id)
            if st is not None and st.status in ("running", "paused"):
                c.state.status = st.status
                c.state.pid = st.pid or c.state.pid
                self.store.save(c)
                nursery.start_soon(self._monitor, c)
                continue
            if c.status == "restarting":
                # its exit is recorded and its policy said restart: do it now (a fresh back-off)
                c.state.status = "exited"
                self.store.save(c)
                c.backoff = 0.0
                restarts.append(c)
                continue
            if c.status in ("running", "paused"):
                if st is not None and st.status == "stopped":
                    nursery.start_soon(self._on_exit, c,
                                       ExitStatus(code=st.exit_code if st.exit_code is not None else EXIT_LOST,
                                                  oom_killed=st.oom_killed, finished_at=st.finished_at))
                    continue
                # the executor lost it: the machine rebooted, or its shim died
                c.state.status = "exited"
                c.state.exit_code = EXIT_LOST
                c.state.pid = 0
                if c.state.finished_at < c.state.started_at:
                    c.state.finished_at = time.time_ns()  # when is unknown: now is when we learnt it
                self.store.save(c)
                await self._unmount_rootfs(c)
            if c.status in ("exited", "created") and c.state.has_been_started:
                if c.host_config.get("AutoRemove"):
                    nursery.start_soon(self._remove_quietly, c)
                    continue
                ran = (c.state.finished_at - c.state.started_at) / 1e9 if c.state.finished_at else 0.0
                restart, _ = self._should_restart(c, c.state.exit_code, ran)
                if restart:
                    c.backoff = 0.0
                    restarts.append(c)
        if self.networks is not None:
            try:
                await self.networks.restore([(c.id, c.state.pid) for c in self.store.all()
                                             if c.status in ("running", "paused")])
            except CoreError as exc:
                log.error("networks cannot restore the running containers' networking: %s", exc)
        for c in restarts:
            nursery.start_soon(self._restart_at_boot, c)

    async def _remove_quietly(self, c: Container) -> None:
        try:
            await self.remove(c, volumes=True)
        except CoreError as exc:
            log.warning("container %s: --rm after restart failed: %s", c.short_id, exc)

    async def _restart_at_boot(self, c: Container) -> None:
        async with c.lock:
            if c.running or c.id not in self.store.by_id:
                return
            try:
                await self._start_locked(c)
            except CoreError as exc:
                log.warning("container %s: restart at daemon start failed: %s", c.short_id, exc)

    async def close(self) -> None:
        """Nothing to stop: containers outlive the daemon."""


__all__ = [
    "Container", "ContainerStateRecord", "ContainerStore", "Containers", "Exec", "NotModified", "PendingAttach",
    "hosts_file", "human_duration", "new_id", "resolv_conf", "status_text", "translate_start_error",
]
