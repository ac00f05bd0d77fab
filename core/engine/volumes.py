"""Volumes and a container's mounts: local named volumes, anonymous volumes, binds, tmpfs.

Volumes
-------
A *local volume* is a directory ``<data-root>/volumes/<name>/_data`` and a row of the
``volumes`` table.  Named volumes are made by ``docker volume create`` or on first use
(``-v data:/var/lib/data``) and outlive the containers that use them; *anonymous* volumes (an
image's ``VOLUME``, ``-v /data``) get a random 64-hex name and the label
``com.docker.volume.anonymous``, and go with their container on ``docker rm -v`` (and with
``--rm``).  A volume in use by a container, running or not, is not removed
(``remove NAME: volume is in use - [ID]``).  Names match ``[a-zA-Z0-9][a-zA-Z0-9_.-]+``.

The ``local`` driver takes docker's ``type``/``device``/``o`` options (``--opt type=tmpfs
--opt device=tmpfs --opt o=size=64m``): such a volume is mounted on its ``_data`` directory
while a running container uses it.

Mounts of a container
---------------------
:func:`parse_mounts` turns a create request's ``HostConfig.Binds`` (``-v``),
``HostConfig.Mounts`` (``--mount``), ``HostConfig.Tmpfs`` (``--tmpfs``),
``HostConfig.VolumesFrom`` and the image's ``Volumes`` into :class:`MountPoint` values, with
docker's rules and error messages (absolute destinations, no duplicates, bind sources created
for ``-v`` but required for ``--mount``...).  The container keeps them; at start
:func:`oci_mount` gives each one's OCI runtime-spec mount, and ``MountPoint.to_json`` is what
``docker inspect`` shows under ``Mounts``.  A read-only bind is read-only all the way down
(``-v /:/host:ro`` leaves no writable ``/host/dev/shm``), as docker 25+ makes it: runc's ``rro``
option, unless ``BindOptions.ReadOnlyNonRecursive`` (or ``NonRecursive``) is set.
"""
from __future__ import annotations

import itertools
import json
import os
import re
import secrets
import shutil
import time
from pathlib import Path
from typing import Any, Callable, Iterable

import attrs

from core.errors import Conflict, CoreError, InvalidArgument, NotFound
from core.engine.interfaces import VolumeUsers
from core.engine.state import Migration, State

MIGRATION = Migration(3, "volumes",
    """
    CREATE TABLE IF NOT EXISTS volumes (
        name TEXT PRIMARY KEY,
        driver TEXT NOT NULL,           -- "local"
        created INTEGER NOT NULL,       -- nanoseconds since the epoch
        labels TEXT NOT NULL,           -- JSON object
        options TEXT NOT NULL,          -- JSON object: the local driver's type/device/o
        anonymous INTEGER NOT NULL      -- 1 for an image VOLUME or -v /path
    )
    """
)

VOLUME_NAME = re.compile(r"^[a-zA-Z0-9][a-zA-Z0-9_.-]+$")
ANONYMOUS_LABEL = "com.docker.volume.anonymous"
LOCAL_OPTIONS = {"type", "device", "o", "size"}
BIND_MODES = {"ro", "rw", "z", "Z", "nocopy", "private", "rprivate", "shared", "rshared", "slave", "rslave",
              "consistent", "cached", "delegated"}
PROPAGATIONS = {"private", "rprivate", "shared", "rshared", "slave", "rslave"}

# tmpfs flags and their opposites: the last one given wins (docker's MergeTmpfsOptions)
_OPPOSITES = {
    "ro": "rw", "rw": "ro", "exec": "noexec", "noexec": "exec", "suid": "nosuid", "nosuid": "suid",
    "dev": "nodev", "nodev": "dev", "atime": "noatime", "noatime": "atime", "diratime": "nodiratime",
    "nodiratime": "diratime", "relatime": "norelatime", "norelatime": "relatime",
    "strictatime": "nostrictatime", "nostrictatime": "strictatime", "sync": "async", "async": "sync",
    "mand": "nomand", "nomand": "mand", "dirsync": "", "private": "", "rprivate": "", "shared": "",
    "rshared": "", "slave": "", "rslave": "",
}


def rfc3339_seconds(ns: int) -> str:
    return time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(ns // 1_000_000_000))


@attrs.frozen
class Volume:
    name: str
    driver: str
    created: int
    labels: dict[str, str]
    options: dict[str, str]
    anonymous: bool
    mountpoint: Path

    def to_json(self, usage: dict[str, int] | None = None) -> dict[str, Any]:
        """docker's ``Volume`` object (``UsageData`` only for ``/system/df``)."""
        out: dict[str, Any] = {
            "CreatedAt": rfc3339_seconds(self.created),
            "Driver": self.driver,
            "Labels": dict(self.labels),
            "Mountpoint": str(self.mountpoint),
            "Name": self.name,
            "Options": dict(self.options),
            "Scope": "local",
        }
        if usage is not None:
            out["UsageData"] = usage
        return out


def check_volume_name(name: str) -> None:
    if not isinstance(name, str) or not VOLUME_NAME.match(name):
        raise InvalidArgument(
            f'create {name}: "{name}" includes invalid characters for a local volume name, only '
            '"[a-zA-Z0-9][a-zA-Z0-9_.-]" are allowed. If you intended to pass a host directory, use absolute path')


def _str_map(value: Any, what: str) -> dict[str, str]:
    if value is None:
        return {}
    if not isinstance(value, dict) or not all(isinstance(k, str) and isinstance(v, str) for k, v in value.items()):
        raise InvalidArgument(f"{what} must be an object of strings")
    return dict(value)


class VolumeStore:
    """The volumes of one daemon.  ``users`` (the container store) says which containers use a
    volume: one in use is not removed, one with a device stays mounted while one runs."""

    def __init__(self, state: State, root: Path, *, users: VolumeUsers) -> None:
        self.state = state
        self.db = state.db
        self.root = root
        self.users = users
        root.mkdir(parents=True, exist_ok=True)
        os.chmod(root, 0o701)

    def _load(self, row: Any) -> Volume:
        return Volume(name=row["name"], driver=row["driver"], created=row["created"],
                      labels=json.loads(row["labels"]), options=json.loads(row["options"]),
                      anonymous=bool(row["anonymous"]), mountpoint=self.root / row["name"] / "_data")

    def get(self, name: str) -> Volume:
        row = self.db.execute("SELECT * FROM volumes WHERE name=?", (name,)).fetchone()
        if row is None:
            raise NotFound(f"get {name}: no such volume")
        return self._load(row)

    def find(self, name: str) -> Volume | None:
        row = self.db.execute("SELECT * FROM volumes WHERE name=?", (name,)).fetchone()
        return self._load(row) if row else None

    def list(self) -> list[Volume]:
        return [self._load(r) for r in self.db.execute("SELECT * FROM volumes ORDER BY name")]

    def count(self) -> int:
        return self.db.execute("SELECT COUNT(*) FROM volumes").fetchone()[0]

    def create(self, name: str | None = None, driver: str | None = None, labels: Any = None,
               options: Any = None, anonymous: bool = False) -> tuple[Volume, bool]:
        """Create a volume (or return the one of that name); True when it is new."""
        driver = driver or "local"
        if driver != "local":
            raise NotFound(f'error looking up volume plugin {driver}: plugin "{driver}" not found')
        labels = _str_map(labels, "Labels")
        options = _str_map(options, "DriverOpts")
        for key in options:
            if key not in LOCAL_OPTIONS:
                raise InvalidArgument(f'invalid option key: "{key}"')
        if options and ("type" not in options and "size" not in options):
            raise InvalidArgument('missing required option: "type"')
        if not name:
            name = secrets.token_hex(32)
            anonymous = True
        check_volume_name(name)
        if anonymous:
            labels.setdefault(ANONYMOUS_LABEL, "")
        existing = self.find(name)
        if existing is not None:
            if existing.driver != driver:
                raise Conflict(f"a volume with name {name} already exists with driver {existing.driver!r}")
            return existing, False
        path = self.root / name
        path.mkdir(exist_ok=True)
        os.chmod(path, 0o701)
        (path / "_data").mkdir(exist_ok=True)
        try:
            with self.state.transaction() as db:
                db.execute("INSERT INTO volumes(name, driver, created, labels, options, anonymous) "
                           "VALUES(?, ?, ?, ?, ?, ?)",
                           (name, driver, time.time_ns(), json.dumps(labels), json.dumps(options), int(anonymous)))
        except Exception:
            shutil.rmtree(path, ignore_errors=True)
            raise
        return self.get(name), True

    async def in_use(self, name: str) -> bool:
        """Whether a container, running or not, uses volume ``name``."""
        return bool(await self.users.volume_users(name))

    async def remove(self, name: str, force: bool = False) -> Volume:
        """``docker volume rm``: refused while a container uses it; ``force`` ignores absence."""
        vol = self.find(name)
        if vol is None:
            if force:
                return Volume(name, "local", 0, {}, {}, False, self.root / name / "_data")
            raise NotFound(f"get {name}: no such volume")
        users = await self.users.volume_users(name)
        if users:
            raise Conflict(f"remove {name}: volume is in use - [{', '.join(u.id for u in users)}]")
        self._unmount(vol)
        with self.state.transaction() as db:
            db.execute("DELETE FROM volumes WHERE name=?", (name,))
        from core.storage.fs import remove_tree

        remove_tree(self.root / name)
        return vol

    def usage(self, vol: Volume) -> int:
        """docker's size of a volume: its files' contents (``-1`` if unreadable)."""
        from core.storage.fs import content_size

        try:
            return content_size(vol.mountpoint)
        except OSError:
            return -1

    # -- local volumes with mount options ------------------------------------------------------

    def _mounted(self, vol: Volume) -> bool:
        target = str(vol.mountpoint)
        try:
            with open("/proc/self/mountinfo") as f:
                return any(line.split()[4] == target for line in f)
        except OSError:
            return False

    def acquire(self, name: str) -> None:
        """Before a container using ``name`` starts: mount it if it has a device to mount."""
        vol = self.find(name)
        if vol is None or not vol.options.get("type") or self._mounted(vol):
            return
        from core.storage.mount import mount
        from core.types import Mount

        opts = [o for o in vol.options.get("o", "").split(",") if o]
        if "size" in vol.options:
            opts.append(f"size={vol.options['size']}")
        try:
            mount(Mount(type=vol.options["type"], source=vol.options.get("device") or vol.options["type"],
                        options=tuple(opts)), vol.mountpoint)
        except CoreError as exc:
            raise CoreError(f"error while mounting volume '{vol.mountpoint}': {exc.message}") from exc

    async def release(self, name: str) -> None:
        """After a container using ``name`` stopped: unmount it if nothing running uses it."""
        vol = self.find(name)
        if vol is None or not vol.options.get("type"):
            return
        if any(u.running for u in await self.users.volume_users(name)):
            return
        self._unmount(vol)

    def _unmount(self, vol: Volume) -> None:
        if vol.options.get("type") and self._mounted(vol):
            from core.storage.mount import unmount

            try:
                unmount(vol.mountpoint)
            except CoreError:
                unmount(vol.mountpoint, detach=True)


# --------------------------------------------------------------------------- mount points
@attrs.define
class MountPoint:
    """One mount of a container, as it is kept with the container."""

    type: str                      # "bind" | "volume" | "tmpfs"
    destination: str
    source: str = ""               # bind: the host path; volume: filled in at create
    name: str = ""                 # volume name
    driver: str = ""
    mode: str = ""                 # what docker shows as Mode
    rw: bool = True
    propagation: str = ""
    copy_data: bool = True         # volume: populate it from the image when it is empty
    anonymous: bool = False
    recursive: bool = True         # bind: rbind (NonRecursive: bind)
    ro_recursive: bool = True      # read-only all the way down (rro; BindOptions.ReadOnlyNonRecursive: not)
    options: list[str] = attrs.field(factory=list)  # tmpfs options (already merged)
    subpath: str = ""
    listed: bool = True            # shown in inspect's Mounts (--tmpfs mounts are not)
    labels: dict[str, str] = attrs.field(factory=dict)   # for a volume made on first use
    volume_options: dict[str, str] = attrs.field(factory=dict)

    def to_record(self) -> dict[str, Any]:
        return attrs.asdict(self)

    @classmethod
    def from_record(cls, data: dict[str, Any]) -> MountPoint:
        known = {f.name for f in attrs.fields(cls)}
        return cls(**{k: v for k, v in data.items() if k in known})

    def to_json(self) -> dict[str, Any]:
        out: dict[str, Any] = {"Type": self.type}
        if self.type == "volume":
            out["Name"] = self.name
        out["Source"] = self.source
        out["Destination"] = self.destination
        if self.type == "volume":
            out["Driver"] = self.driver or "local"
        out["Mode"] = self.mode
        out["RW"] = self.rw
        out["Propagation"] = self.propagation
        return out


def _clean_destination(dest: Any, kind: str, spec: str | None = None) -> str:
    def fail(why: str) -> InvalidArgument:
        if spec is not None:
            return InvalidArgument(f"invalid volume specification: '{spec}': {why}")
        return InvalidArgument(why)

    if not isinstance(dest, str) or not dest:
        raise fail(f'invalid mount config for type "{kind}": field Target must not be empty')
    if not dest.startswith("/"):
        raise fail(f"invalid mount config for type \"{kind}\": invalid mount path: '{dest}' mount path must be absolute")
    clean = os.path.normpath(dest)
    if clean.startswith("//"):
        clean = "/" + clean.lstrip("/")
    if clean == "/":
        raise InvalidArgument("invalid specification: destination can't be '/'")
    return clean


def merge_tmpfs_options(options: Iterable[str]) -> list[str]:
    """docker's MergeTmpfsOptions: for flags the last of a pair wins, for ``key=value`` the
    last value of a key."""
    out: list[str] = []
    seen_flags: set[str] = set()
    seen_keys: set[str] = set()
    for option in reversed([o.strip() for o in options if o and o.strip()]):
        if "=" in option:
            key = option.split("=", 1)[0]
            if key in seen_keys:
                continue
            seen_keys.add(key)
            out.insert(0, option)
            continue
        opposite = _OPPOSITES.get(option)
        if option in seen_flags or (opposite and opposite in seen_flags):
            continue
        seen_flags.add(option)
        out.insert(0, option)
    return out


def parse_bind(spec: str) -> MountPoint:
    """One ``-v`` / ``HostConfig.Binds`` entry: ``src:dst[:mode]`` or ``dst``."""
    if not isinstance(spec, str) or not spec:
        raise InvalidArgument(f"invalid volume specification: '{spec}'")
    parts = spec.split(":")
    if len(parts) > 3 or any(p == "" for p in parts):
        raise InvalidArgument(f"invalid volume specification: '{spec}'")
    mode = ""
    if len(parts) == 1:
        source, dest = "", parts[0]
    elif len(parts) == 2:
        source, dest = parts
    else:
        source, dest, mode = parts
    modes = [m for m in mode.split(",") if m] if mode else []
    for m in modes:
        if m not in BIND_MODES:
            raise InvalidArgument(f"invalid mode: {mode}")
    if sum(m in ("ro", "rw") for m in modes) > 1 or sum(m in PROPAGATIONS for m in modes) > 1:
        raise InvalidArgument(f"invalid mode: {mode}")
    rw = "ro" not in modes
    propagation = next((m for m in modes if m in PROPAGATIONS), "")
    if source.startswith("/") or source.startswith("."):
        if not source.startswith("/"):
            raise InvalidArgument(f"invalid volume specification: '{spec}': bind source path must be absolute")
        dest = _clean_destination(dest, "bind", spec)
        if "nocopy" in modes:
            raise InvalidArgument(f"invalid mode: {mode}")
        return MountPoint(type="bind", destination=dest, source=os.path.normpath(source), mode=mode, rw=rw,
                          propagation=propagation or "rprivate")
    dest = _clean_destination(dest, "volume", spec)
    if propagation:
        raise InvalidArgument(f"invalid mode: {mode}")
    if source:
        check_volume_name(source)
    return MountPoint(type="volume", destination=dest, name=source, driver="local", mode=mode or ("z" if source else ""),
                      rw=rw, copy_data="nocopy" not in modes, anonymous=not source)


def parse_mount(m: Any) -> MountPoint:
    """One ``HostConfig.Mounts`` entry (``--mount``)."""
    if not isinstance(m, dict):
        raise InvalidArgument("invalid mount config: expected an object")
    kind = m.get("Type")
    if kind not in ("bind", "volume", "tmpfs"):
        raise InvalidArgument(f'invalid mount config: mount type unknown: "{kind}"' if kind else
                              "invalid mount config: mount type must not be empty")
    dest = _clean_destination(m.get("Target"), kind)
    source = m.get("Source") or ""
    read_only = bool(m.get("ReadOnly"))
    bind_opts = m.get("BindOptions") or None
    vol_opts = m.get("VolumeOptions") or None
    tmpfs_opts = m.get("TmpfsOptions") or None
    for field, value, allowed in (("BindOptions", bind_opts, "bind"), ("VolumeOptions", vol_opts, "volume"),
                                  ("TmpfsOptions", tmpfs_opts, "tmpfs")):
        if value and kind != allowed:
            raise InvalidArgument(f'invalid mount config for type "{kind}": field {field} must not be specified')
    if kind == "bind":
        if not source:
            raise InvalidArgument('invalid mount config for type "bind": field Source must not be empty')
        if not source.startswith("/"):
            raise InvalidArgument(f'invalid mount config for type "bind": invalid mount path: \'{source}\' '
                                  "mount path must be absolute")
        bind_opts = bind_opts or {}
        if not os.path.exists(source):
            if bind_opts.get("CreateMountpoint"):
                os.makedirs(source, exist_ok=True)
            else:
                raise InvalidArgument(f'invalid mount config for type "bind": bind source path does not exist: {source}')
        propagation = bind_opts.get("Propagation") or "rprivate"
        if propagation not in PROPAGATIONS:
            raise InvalidArgument(f'invalid mount config for type "bind": invalid propagation mode: {propagation}')
        return MountPoint(type="bind", destination=dest, source=os.path.normpath(source), rw=not read_only,
                          propagation=propagation, recursive=not bind_opts.get("NonRecursive"),
                          ro_recursive=not bind_opts.get("ReadOnlyNonRecursive"))
    if kind == "volume":
        vol_opts = vol_opts or {}
        if source:
            check_volume_name(source)
        subpath = vol_opts.get("Subpath") or ""
        if subpath:
            clean = os.path.normpath(subpath)
            if clean.startswith("/") or clean == ".." or clean.startswith("../"):
                raise InvalidArgument(f'invalid mount config for type "volume": subpath must be a relative path '
                                      f"within the volume: {subpath}")
            subpath = clean
        driver_cfg = vol_opts.get("DriverConfig") or {}
        driver = driver_cfg.get("Name") or "local"
        if driver != "local":
            raise NotFound(f'error looking up volume plugin {driver}: plugin "{driver}" not found')
        return MountPoint(type="volume", destination=dest, name=source, driver="local", rw=not read_only,
                          copy_data=not vol_opts.get("NoCopy"), anonymous=not source, subpath=subpath,
                          labels=_str_map(vol_opts.get("Labels"), "VolumeOptions.Labels"),
                          volume_options=_str_map(driver_cfg.get("Options"), "DriverConfig.Options"))
    # tmpfs
    if source:
        raise InvalidArgument('invalid mount config for type "tmpfs": field Source must not be specified')
    tmpfs_opts = tmpfs_opts or {}
    options = ["noexec", "nosuid", "nodev", "rprivate"]
    if read_only:
        options.append("ro")
    size = tmpfs_opts.get("SizeBytes")
    if size:
        if not isinstance(size, int) or size < 0:
            raise InvalidArgument('invalid mount config for type "tmpfs": invalid tmpfs size')
        options.append(f"size={size // 1024}k" if size % 1024 == 0 else f"size={size}")
    mode = tmpfs_opts.get("Mode")
    if mode:
        options.append(f"mode={int(mode):o}")
    for opt in tmpfs_opts.get("Options") or []:
        if isinstance(opt, list) and 1 <= len(opt) <= 2 and all(isinstance(x, str) for x in opt):
            options.append(opt[0] if len(opt) == 1 else f"{opt[0]}={opt[1]}")
        else:
            raise InvalidArgument('invalid mount config for type "tmpfs": invalid tmpfs option')
    return MountPoint(type="tmpfs", destination=dest, rw=not read_only, options=merge_tmpfs_options(options))


def parse_tmpfs(dest: str, options: str) -> MountPoint:
    """One ``HostConfig.Tmpfs`` entry (``--tmpfs /run:rw,size=64m``)."""
    clean = _clean_destination(dest, "tmpfs")
    opts = ["noexec", "nosuid", "nodev", "rprivate"] + [o for o in (options or "").split(",") if o]
    for o in opts:
        if "=" not in o and o not in _OPPOSITES and o not in ("remount", "defaults", "tmpcopyup"):
            raise InvalidArgument(f"invalid tmpfs option {o!r}")
    merged = merge_tmpfs_options(opts)
    return MountPoint(type="tmpfs", destination=clean, rw="ro" not in merged, options=merged, listed=False)


def parse_mounts(host_config: dict[str, Any], image_volumes: Iterable[str],
                 volumes_from: Callable[[str], list[MountPoint]] | None = None) -> list[MountPoint]:
    """Every mount of a new container, in docker's order of precedence: ``VolumesFrom``, then
    binds (``-v``), then ``--mount``, then ``--tmpfs``; the image's (and ``Config.Volumes``')
    anonymous volumes fill destinations nothing else took.  Duplicates among ``-v``,
    ``--mount`` and ``--tmpfs`` are an error (``Duplicate mount point: /x``)."""
    out: dict[str, MountPoint] = {}
    explicit: set[str] = set()
    for spec in host_config.get("VolumesFrom") or []:
        if volumes_from is None:
            break
        if not isinstance(spec, str) or not spec:
            raise InvalidArgument(f"invalid volumes-from specification: {spec!r}")
        ref, _, mode = spec.partition(":")
        if mode and mode not in ("ro", "rw"):
            raise InvalidArgument(f"invalid mode: {mode}")
        for mp in volumes_from(ref):
            copy = MountPoint.from_record(mp.to_record())
            if mode:
                copy.rw = mode == "rw"
            copy.anonymous = False  # the volume belongs to the other container
            copy.copy_data = False
            out[copy.destination] = copy
    binds = (parse_bind(spec) for spec in host_config.get("Binds") or [])
    mounts = (parse_mount(m) for m in host_config.get("Mounts") or [])
    for mp in itertools.chain(binds, mounts):  # parsed and checked in this order
        if mp.destination in explicit:
            raise InvalidArgument(f"Duplicate mount point: {mp.destination}")
        explicit.add(mp.destination)
        out[mp.destination] = mp
    tmpfs = host_config.get("Tmpfs") or {}
    if not isinstance(tmpfs, dict):
        raise InvalidArgument("HostConfig.Tmpfs must be an object")
    for dest, options in tmpfs.items():
        mp = parse_tmpfs(dest, options if isinstance(options, str) else "")
        if mp.destination in explicit:
            raise InvalidArgument(f"Duplicate mount point: {mp.destination}")
        explicit.add(mp.destination)
        out[mp.destination] = mp
    for dest in image_volumes:
        try:
            clean = _clean_destination(dest, "volume")
        except InvalidArgument:
            continue
        if clean not in out:
            out[clean] = MountPoint(type="volume", destination=clean, driver="local", anonymous=True)
    return sorted(out.values(), key=lambda mp: (mp.destination.rstrip("/").count("/"), mp.destination))


def prepare_sources(mounts: list[MountPoint], volumes: VolumeStore) -> list[str]:
    """At create: make the volumes the mounts name (or new anonymous ones) and bind sources
    that ``-v`` names but do not exist (docker creates those).  Fills ``source``/``name``.
    Returns the names of the volumes made, for the caller to undo on failure."""
    made: list[str] = []
    for mp in mounts:
        if mp.type == "volume":
            if not mp.source or not mp.name:
                vol, new = volumes.create(mp.name or None, "local", mp.labels or None, mp.volume_options or None,
                                          anonymous=mp.anonymous)
                if new:
                    made.append(vol.name)
                mp.name = vol.name
                mp.source = str(vol.mountpoint / mp.subpath) if mp.subpath else str(vol.mountpoint)
        elif mp.type == "bind" and not os.path.exists(mp.source):
            try:
                os.makedirs(mp.source, 0o755, exist_ok=True)
            except OSError as exc:
                raise InvalidArgument(f"error while creating mount source path '{mp.source}': "
                                      f"mkdir {mp.source}: {exc.strerror}") from exc
    return made


def oci_mount(mp: MountPoint, readonly_rootfs: bool = False) -> dict[str, Any]:
    """The OCI runtime-spec mount of one mount point."""
    if mp.type == "tmpfs":
        return {"destination": mp.destination, "type": "tmpfs", "source": "tmpfs", "options": list(mp.options)}
    options = ["rbind" if mp.recursive else "bind"]
    options.append(mp.propagation or "rprivate")
    if not mp.rw:
        options.append("ro")
        if mp.recursive and mp.ro_recursive:
            options.append("rro")   # docker 25+: the mounts below a read-only bind are read-only too
    return {"destination": mp.destination, "type": "bind", "source": mp.source, "options": options}


def volume_names(mounts: Iterable[MountPoint]) -> list[str]:
    return [mp.name for mp in mounts if mp.type == "volume" and mp.name]


__all__ = [
    "ANONYMOUS_LABEL", "MountPoint", "Volume", "VolumeStore", "check_volume_name", "merge_tmpfs_options",
    "oci_mount", "parse_bind", "parse_mount", "parse_mounts", "parse_tmpfs", "prepare_sources", "volume_names",
]
