"""The image store: images by ID (the config digest), repository tags and repository digests.

Records live in the daemon's SQLite database; the bytes (manifests, configs, layer blobs) live in
the content store; unpacked layers live in each storage driver as committed snapshots named by
ChainID.  Lookups follow docker: a full or short image ID, ``name[:tag]`` (``latest`` by
default) or ``name@digest``.  Removal follows ``docker rmi``: untag first, delete the image when
its last reference goes, then the blobs and snapshots nothing else uses.
"""
from __future__ import annotations

import re
import time
from typing import Any, Iterable

import attrs

from core.errors import Conflict, InvalidArgument, NotFound
from core.engine.images.manifest import ImageConfig, chain_ids, parse_config
from core.engine.interfaces import ImageUsers
from core.reference import Reference, parse_reference
from core.engine.state import Migration, State
from core.types import Digest

MIGRATION = Migration(2, "images",
    """
    CREATE TABLE images (
        id TEXT PRIMARY KEY,            -- sha256:<config digest>
        config BLOB NOT NULL,           -- the config JSON, exactly as pulled
        target TEXT NOT NULL,           -- digest of the manifest pulled (the image's own)
        size INTEGER NOT NULL,          -- sum of the layers' sizes (see layers.size)
        created REAL NOT NULL           -- when this engine got it
    );
    CREATE TABLE image_tags (
        name TEXT PRIMARY KEY,          -- docker.io/library/alpine:latest
        image_id TEXT NOT NULL REFERENCES images(id),
        tagged REAL NOT NULL
    );
    CREATE TABLE image_digests (
        name TEXT NOT NULL,             -- docker.io/library/alpine
        digest TEXT NOT NULL,           -- the manifest or index digest it was pulled by
        image_id TEXT NOT NULL REFERENCES images(id),
        PRIMARY KEY (name, digest)
    );
    CREATE TABLE image_blobs (          -- what in the content store an image keeps alive
        image_id TEXT NOT NULL REFERENCES images(id),
        digest TEXT NOT NULL,
        PRIMARY KEY (image_id, digest)
    );
    CREATE TABLE layers (               -- uncompressed layers, by diff ID
        diff_id TEXT PRIMARY KEY,
        size INTEGER NOT NULL           -- docker's size: file contents and symlink targets
    );
    CREATE INDEX image_blobs_digest ON image_blobs(digest)
    """
)

_HEX = re.compile(r"^(?:sha256:)?([0-9a-f]{1,64})$")


@attrs.frozen
class Image:
    id: str
    config: ImageConfig
    config_bytes: bytes
    target: str
    size: int
    created: float
    tags: tuple[Reference, ...] = ()
    digests: tuple[Reference, ...] = ()
    blobs: tuple[str, ...] = ()  # filled only for an image just removed

    @property
    def parent(self) -> str:
        """The image this one was committed on (``""`` for a pulled or loaded one)."""
        value = self.config.raw.get("parent")
        return value if isinstance(value, str) and value.startswith("sha256:") else ""

    @property
    def short_id(self) -> str:
        return self.id.split(":", 1)[1][:12]

    @property
    def chain_ids(self) -> list[Digest]:
        return chain_ids(self.config.diff_ids)

    def inspect(self, storage: str = "") -> dict[str, Any]:
        """``GET /images/{name}/json``: docker's ImageInspect shape."""
        raw = self.config.raw
        cfg = self.config.config
        return {
            "Id": self.id,
            "RepoTags": [r.familiar() for r in self.tags],
            "RepoDigests": [r.familiar() for r in self.digests],
            "Parent": self.parent,
            "Comment": raw.get("comment", "") if isinstance(raw.get("comment"), str) else "",
            "Created": self.config.created,
            "DockerVersion": raw.get("docker_version", "") if isinstance(raw.get("docker_version"), str) else "",
            "Author": raw.get("author", "") if isinstance(raw.get("author"), str) else "",
            "Config": _container_config(cfg),
            "Architecture": self.config.platform.architecture,
            **({"Variant": self.config.platform.variant} if self.config.platform.variant else {}),
            "Os": self.config.platform.os,
            "Size": self.size,
            "GraphDriver": {"Name": storage, "Data": None},
            "RootFS": {"Type": "layers", "Layers": [str(d) for d in self.config.diff_ids]},
            "Metadata": {"LastTagTime": "0001-01-01T00:00:00Z"},
        }

    def summary(self, containers: int = -1) -> dict[str, Any]:
        """``GET /images/json``: docker's ImageSummary shape."""
        labels = self.config.config.get("Labels") or {}
        return {
            "Id": self.id,
            "ParentId": self.parent,
            "RepoTags": [r.familiar() for r in self.tags],
            "RepoDigests": [r.familiar() for r in self.digests],
            "Created": unix_time(self.config.created) or int(self.created),
            "Size": self.size,
            "SharedSize": -1,
            "VirtualSize": self.size,
            "Labels": labels if isinstance(labels, dict) else {},
            "Containers": containers,
        }


def _container_config(cfg: dict[str, Any]) -> dict[str, Any]:
    out = {
        "Hostname": "", "Domainname": "", "User": cfg.get("User", ""), "AttachStdin": False,
        "AttachStdout": False, "AttachStderr": False, "Tty": False, "OpenStdin": False, "StdinOnce": False,
        "Env": cfg.get("Env"), "Cmd": cfg.get("Cmd"), "Image": "", "Volumes": cfg.get("Volumes"),
        "WorkingDir": cfg.get("WorkingDir", ""), "Entrypoint": cfg.get("Entrypoint"), "OnBuild": cfg.get("OnBuild"),
        "Labels": cfg.get("Labels"),
    }
    for key in ("ExposedPorts", "StopSignal", "Healthcheck", "ArgsEscaped", "Shell", "StopTimeout"):
        if key in cfg:
            out[key] = cfg[key]
    return out


def unix_time(rfc3339: str) -> int:
    """Seconds since the epoch of an RFC 3339 time (fractions dropped); 0 if unparseable."""
    import calendar

    m = re.match(r"^(\d{4})-(\d\d)-(\d\d)T(\d\d):(\d\d):(\d\d)(?:\.\d+)?(Z|[+-]\d\d:\d\d)$", rfc3339 or "")
    if not m:
        return 0
    y, mo, d, h, mi, s, tz = m.groups()
    t = calendar.timegm((int(y), int(mo), int(d), int(h), int(mi), int(s), 0, 0, 0))
    if tz != "Z":
        sign = 1 if tz[0] == "+" else -1
        t -= sign * (int(tz[1:3]) * 3600 + int(tz[4:6]) * 60)
    return t


class ImageStore:
    """The images of one daemon (rows of ``state.db``).  ``users`` says which containers use an
    image (the container store: an image in use is not removed without force)."""

    def __init__(self, state: State, *, users: ImageUsers) -> None:
        self.state = state
        self.db = state.db
        self.users = users

    # -- reading ---------------------------------------------------------------------------------

    def _load(self, row: Any) -> Image:
        image_id = row["id"]
        tags = tuple(parse_reference(r[0]) for r in self.db.execute(
            "SELECT name FROM image_tags WHERE image_id=? ORDER BY tagged, name", (image_id,)))
        digests = tuple(parse_reference(f"{r[0]}@{r[1]}") for r in self.db.execute(
            "SELECT name, digest FROM image_digests WHERE image_id=? ORDER BY name, digest", (image_id,)))
        config_bytes = bytes(row["config"])
        return Image(id=image_id, config=parse_config(config_bytes), config_bytes=config_bytes,
                     target=row["target"], size=row["size"], created=row["created"], tags=tags, digests=digests)

    def by_id(self, image_id: str) -> Image | None:
        row = self.db.execute("SELECT * FROM images WHERE id=?", (image_id,)).fetchone()
        return self._load(row) if row else None

    def count(self) -> int:
        return self.db.execute("SELECT COUNT(*) FROM images").fetchone()[0]

    def list(self) -> list[Image]:
        rows = self.db.execute("SELECT * FROM images ORDER BY created DESC").fetchall()
        return [self._load(r) for r in rows]

    def lookup(self, name: str) -> Image:
        """An image by full ID, ID prefix, ``name[:tag]`` or ``name@digest``; ``NotFound`` else."""
        if not isinstance(name, str) or not name or len(name) > 1024:
            raise NotFound(f"No such image: {name}")
        m = _HEX.match(name)
        if m and len(m.group(1)) == 64:
            image = self.by_id("sha256:" + m.group(1))
            if image:
                return image
        ref = None
        try:
            ref = parse_reference(name)
        except InvalidArgument:
            if not m:
                raise
        if ref is not None:
            if ref.digest is not None:
                row = self.db.execute("SELECT image_id FROM image_digests WHERE name=? AND digest=?",
                                      (ref.name, str(ref.digest))).fetchone()
                if row is None and ref.tag is None:
                    # pulled by tag, asked by the digest of its manifest (or its index)
                    row = self.db.execute("SELECT id AS image_id FROM images WHERE target=? OR id=?",
                                          (str(ref.digest), str(ref.digest))).fetchone()
            else:
                row = self.db.execute("SELECT image_id FROM image_tags WHERE name=?", (str(ref),)).fetchone()
            if row is not None:
                image = self.by_id(row[0])
                if image:
                    return image
        if m and ":" not in name.replace("sha256:", ""):
            rows = self.db.execute("SELECT id FROM images WHERE id LIKE ?", (f"sha256:{m.group(1)}%",)).fetchall()
            if len(rows) == 1:
                return self.by_id(rows[0][0])  # type: ignore[return-value]
            if len(rows) > 1:
                raise InvalidArgument(f"multiple images found with ID prefix {m.group(1)}; be more specific")
        raise NotFound(f"No such image: {name}")

    def blobs_of(self, image_id: str) -> list[str]:
        return [r[0] for r in self.db.execute("SELECT digest FROM image_blobs WHERE image_id=?", (image_id,))]

    def layer_size(self, diff_id: Digest) -> int | None:
        row = self.db.execute("SELECT size FROM layers WHERE diff_id=?", (str(diff_id),)).fetchone()
        return row[0] if row else None

    # -- writing ---------------------------------------------------------------------------------

    def record_layer(self, diff_id: Digest, size: int) -> None:
        with self.state.transaction() as db:
            db.execute("INSERT OR REPLACE INTO layers(diff_id, size) VALUES(?, ?)", (str(diff_id), size))

    def refresh_size(self, image_id: str) -> None:
        """Recompute an image's size from its layers' (after they were corrected)."""
        image = self.by_id(image_id)
        if image is None:
            return
        size = sum(self.layer_size(d) or 0 for d in image.config.diff_ids)
        with self.state.transaction() as db:
            db.execute("UPDATE images SET size=? WHERE id=?", (size, image_id))

    def add(self, image_id: str, config_bytes: bytes, target: str, blobs: Iterable[str],
            tag: Reference | None, digest_ref: Reference | None) -> tuple[Image, bool]:
        """Record an image (idempotent) and point ``tag`` and ``digest_ref`` at it.

        Returns the image and whether anything changed (docker's "Downloaded newer image" versus
        "Image is up to date").
        """
        config = parse_config(config_bytes)
        size = sum(self.layer_size(d) or 0 for d in config.diff_ids)
        now = time.time()
        changed = False
        with self.state.transaction() as db:
            if db.execute("SELECT 1 FROM images WHERE id=?", (image_id,)).fetchone() is None:
                db.execute("INSERT INTO images(id, config, target, size, created) VALUES(?, ?, ?, ?, ?)",
                           (image_id, config_bytes, target, size, now))
                changed = True
            for blob in blobs:
                db.execute("INSERT OR IGNORE INTO image_blobs(image_id, digest) VALUES(?, ?)", (image_id, blob))
            if tag is not None:
                old = db.execute("SELECT image_id FROM image_tags WHERE name=?", (str(tag),)).fetchone()
                if old is None or old[0] != image_id:
                    changed = True
                    db.execute("INSERT OR REPLACE INTO image_tags(name, image_id, tagged) VALUES(?, ?, ?)",
                               (str(tag), image_id, now))
            if digest_ref is not None:
                db.execute("INSERT OR REPLACE INTO image_digests(name, digest, image_id) VALUES(?, ?, ?)",
                           (digest_ref.name, str(digest_ref.digest), image_id))
        image = self.by_id(image_id)
        assert image is not None
        return image, changed

    def tag(self, image: Image, ref: Reference) -> None:
        if ref.digest is not None:
            raise InvalidArgument("refusing to create a tag with a digest reference")
        with self.state.transaction() as db:
            db.execute("INSERT OR REPLACE INTO image_tags(name, image_id, tagged) VALUES(?, ?, ?)",
                       (str(ref), image.id, time.time()))

    async def remove(self, name: str, force: bool = False) -> tuple[list[dict[str, str]], Image | None]:
        """``docker rmi NAME``: the ``Untagged``/``Deleted`` records, and the image if it went.

        The caller then removes the blobs (``image.blobs``) and snapshots nothing else uses.
        """
        image = self.lookup(name)
        by_reference = not _HEX.match(name) or self._is_reference(name, image)
        users = [(u.id, u.running) for u in await self.users.image_users(image.id)]
        running = [c for c, up in users if up]
        out: list[dict[str, str]] = []
        if by_reference:
            ref = parse_reference(name)
            if users and not force and _single_reference(image):
                raise Conflict(
                    f'conflict: unable to remove repository reference "{name}" (must force) - container '
                    f"{users[0][0][:12]} is using its referenced image {image.short_id}"
                )
            with self.state.transaction() as db:
                if ref.digest is not None:
                    db.execute("DELETE FROM image_digests WHERE name=? AND digest=?", (ref.name, str(ref.digest)))
                else:
                    db.execute("DELETE FROM image_tags WHERE name=?", (str(ref),))
            out.append({"Untagged": ref.familiar()})
            remaining = self.by_id(image.id)
            assert remaining is not None
            if remaining.tags:
                return out, None
            # the last tag went: its digests go with it, then the image
            with self.state.transaction() as db:
                for d in remaining.digests:
                    db.execute("DELETE FROM image_digests WHERE name=? AND digest=?", (d.name, str(d.digest)))
                    out.append({"Untagged": d.familiar()})
            if users and (running or not force):
                # still used: kept, untagged (as docker).  Forced, an image only stopped containers
                # use is deleted (they keep their layers until they go: core.engine.containers.remove)
                return out, None
        else:
            if running:
                raise Conflict(f"conflict: unable to delete {image.short_id} (cannot be forced) - image is being "
                               f"used by running container {running[0][:12]}")
            if users and not force:
                raise Conflict(f"conflict: unable to delete {image.short_id} (must be forced) - image is being "
                               f"used by stopped container {users[0][0][:12]}")
            # docker's isSingleReference: by ID, an image with several tags (in one repository or
            # more) is removed only by force; one tag and the digests of its repository go with it
            if (image.tags or image.digests) and not _single_reference(image) and not force:
                raise Conflict(f"conflict: unable to delete {image.short_id} (must be forced) - image is "
                               "referenced in multiple repositories")
            with self.state.transaction() as db:
                for t in image.tags:
                    db.execute("DELETE FROM image_tags WHERE name=?", (str(t),))
                    out.append({"Untagged": t.familiar()})
                for d in image.digests:
                    db.execute("DELETE FROM image_digests WHERE name=? AND digest=?", (d.name, str(d.digest)))
                    out.append({"Untagged": d.familiar()})
        blobs = tuple(self.blobs_of(image.id))
        with self.state.transaction() as db:
            db.execute("DELETE FROM image_blobs WHERE image_id=?", (image.id,))
            db.execute("DELETE FROM images WHERE id=?", (image.id,))
        out.append({"Deleted": image.id})
        return out, attrs.evolve(image, blobs=blobs)

    def _is_reference(self, name: str, image: Image) -> bool:
        """A hex string that names a tag (``docker tag x abc123``) is a reference, not an ID."""
        try:
            ref = parse_reference(name)
        except InvalidArgument:
            return False
        return any(str(t) == str(ref) for t in image.tags)

    def unused_blobs(self, candidates: Iterable[str]) -> list[str]:
        return [d for d in candidates
                if self.db.execute("SELECT 1 FROM image_blobs WHERE digest=? LIMIT 1", (d,)).fetchone() is None]

    def chains_in_use(self) -> set[str]:
        """ChainIDs of every layer stack an image still needs."""
        used: set[str] = set()
        for row in self.db.execute("SELECT config FROM images"):
            used.update(str(c) for c in chain_ids(parse_config(bytes(row[0])).diff_ids))
        return used


def _single_reference(image: Image) -> bool:
    """docker's isSingleReference: the image has one reference, or one tag and digests of that
    tag's repository only (``busybox:latest`` and ``busybox@sha256:...`` as a pull leaves them)."""
    refs = len(image.tags) + len(image.digests)
    if refs <= 1:
        return refs == 1
    if len(image.tags) > 1:
        return False
    canonical = {d.name for d in image.digests}
    single = image.tags[0] if image.tags else image.digests[0]
    return len(canonical) == 1 and single.name in canonical
