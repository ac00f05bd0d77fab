"""The container records and their store: what ``containers/<id>`` is in ``state.db``.

A container is a row of the ``containers`` table (its docker ``Config`` merged with the image's,
its ``HostConfig``, its mounts and its ``State``); :class:`Container` is that row with what the
daemon keeps about it while it lives (a lock, change notification, the restart back-off, the
attaches waiting for its start).  :class:`ContainerStore` holds them all, loaded from SQLite at
start and written through.  Names are unique (``/name``); lookups take a full ID, a name, or a
unique ID prefix.

The store answers the other services' questions about containers
(:class:`core.engine.interfaces.ImageUsers`, :class:`core.engine.interfaces.VolumeUsers`): the
image and volume services are built with it before the container service itself.
"""
from __future__ import annotations

import json
import re
import secrets
import time
from typing import Any

import attrs
import trio

from core.engine import names
from core.engine.containers import oci
from core.engine.interfaces import ContainerUse
from core.engine.state import Migration, State
from core.engine.volumes import MountPoint, volume_names
from core.errors import Conflict, CoreError, InvalidArgument, NotFound
from core.units import human_duration


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
EXIT_UNKNOWN = 128
EXIT_LOST = 255          # the executor has no record of a container it ran (a reboot)


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
    health: dict[str, Any] | None = None   # docker's State.Health (core.engine.containers.health)

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

    def fail_pending(self, exc: CoreError | None) -> None:
        """The attaches waiting for a start get ``exc`` (``None``: the container went)."""
        waiting, self.pending_attach = self.pending_attach, []
        for p in waiting:
            p.error = exc
            p.ready.set()

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


def check_name(name: str) -> str:
    if not NAME_RE.match(name):
        raise InvalidArgument(f"Invalid container name ({name}), only [a-zA-Z0-9][a-zA-Z0-9_.-] are allowed")
    return name.lstrip("/")



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


    # -- what the other services ask ------------------------------------------------------------
    async def image_users(self, image_id: str) -> list[ContainerUse]:
        """:class:`core.engine.interfaces.ImageUsers`: the containers made from ``image_id``;
        ``running`` counts a restarting container too (its image cannot go)."""
        return [ContainerUse(id=c.id, running=c.status in RUNNING) for c in self.all() if c.image_id == image_id]

    async def volume_users(self, name: str) -> list[ContainerUse]:
        """:class:`core.engine.interfaces.VolumeUsers`: the containers that mount volume ``name``;
        ``running`` while their process runs (a volume with a device stays mounted)."""
        return [ContainerUse(id=c.id, running=c.running) for c in self.all() if name in volume_names(c.mounts)]
