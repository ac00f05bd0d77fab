"""Parent-chain bookkeeping shared by every directory-based snapshotter (containerd's metastore).

A :class:`MetaStore` is a small SQLite database (WAL mode) under a driver's root that records
each snapshot: its key or name, kind, parent, labels, creation time, and a numeric *id* that the
driver uses to name the snapshot's directory.  It enforces the rules of
:mod:`core.contracts.storage` so that no driver can get them wrong:

- keys and names share one namespace: creating or committing to a taken one is
  ``AlreadyExists``;
- a parent must exist (``NotFound``) and be committed (``InvalidArgument``);
- only an active, writable snapshot can be committed (``InvalidArgument`` for a view or a
  committed one); committing keeps the id, so the data directory does not move;
- a snapshot that is the parent of another cannot be removed (``Conflict``);
- unknown keys are ``NotFound``; keys and labels are validated (``InvalidArgument``).

Ids come from an ``AUTOINCREMENT`` column and are never reused, so a directory left behind by a
crash can never be mistaken for a new snapshot's.

Every method is one transaction.  To make several steps atomic with a filesystem change, group
them in :meth:`MetaStore.transaction`; if the block raises, nothing of it is recorded::

    with store.transaction():
        snap = store.create(SnapshotKind.ACTIVE, key, parent)
        os.rename(staging_dir, snapshot_dir(snap.id))   # fails -> the row is rolled back

A transaction must not span an ``await``: the store serialises threads with a lock, but trio
tasks share one thread, so a task switch inside a transaction would let another task's calls
join it.  Calls are short (tens of microseconds), so drivers call the store inline from trio.
"""
from __future__ import annotations

import json
import time

from pathlib import Path

import attrs

from core.contracts.storage import SnapshotInfo, SnapshotKind, Usage
from core.errors import AlreadyExists, Conflict, InvalidArgument, NotFound
from core.sqlite import Database

__all__ = ["MetaStore", "Snapshot"]

MAX_KEY_BYTES = 4096

_SCHEMA = ("""
CREATE TABLE snapshots (
    id       INTEGER PRIMARY KEY AUTOINCREMENT,   -- names the data directory; never reused
    key      TEXT    NOT NULL UNIQUE,             -- the key (active, view) or name (committed)
    kind     TEXT    NOT NULL CHECK (kind IN ('active', 'view', 'committed')),
    parent   INTEGER REFERENCES snapshots (id) ON DELETE RESTRICT,
    labels   TEXT    NOT NULL DEFAULT '{}',       -- JSON object of strings
    created  REAL    NOT NULL,
    size     INTEGER,                             -- usage, recorded at commit
    inodes   INTEGER
)""", "CREATE INDEX snapshots_parent ON snapshots (parent)")
_VERSION = 1


@attrs.frozen
class Snapshot:
    """What a driver needs to find a snapshot's data: its id, kind and parents' ids.

    ``parent_ids`` runs from the nearest parent to the bottom layer.
    """

    id: int
    kind: SnapshotKind
    parent_ids: tuple[int, ...] = ()


def _check_key(key: object, what: str = "key") -> str:
    if not isinstance(key, str) or not key:
        raise InvalidArgument(f"snapshot {what} must be a non-empty string")
    if "\0" in key or len(key.encode("utf-8", "surrogatepass")) > MAX_KEY_BYTES:
        raise InvalidArgument(f"snapshot {what} must be at most {MAX_KEY_BYTES} bytes, without NUL")
    return key


def _check_labels(labels: object) -> dict[str, str]:
    if labels is None:
        return {}
    if not isinstance(labels, dict) or not all(
            isinstance(k, str) and isinstance(v, str) for k, v in labels.items()):
        raise InvalidArgument("snapshot labels must map strings to strings")
    return dict(labels)


class MetaStore(Database):
    """The snapshots of one driver, in the SQLite database ``path`` (created if absent).

    Thread-safe; see the module docstring for transactions.  Raises ``CoreError`` if the
    database cannot be opened or has a newer schema than this code knows.
    """

    def __init__(self, path: Path) -> None:
        super().__init__(path, "snapshot database", _VERSION, _SCHEMA)

    # ----------------------------------------------------------------------- queries
    def _row(self, key: str) -> tuple[int, str, int | None]:
        row = self._db.execute("SELECT id, kind, parent FROM snapshots WHERE key = ?",
                               (_check_key(key),)).fetchone()
        if row is None:
            raise NotFound(f"snapshot {key!r} does not exist")
        return row

    def _parent_ids(self, parent: int | None) -> tuple[int, ...]:
        if parent is None:
            return ()
        rows = self._db.execute(
            """WITH RECURSIVE chain (id, parent, depth) AS (
                   SELECT id, parent, 0 FROM snapshots WHERE id = ?
                   UNION ALL
                   SELECT s.id, s.parent, c.depth + 1 FROM snapshots s JOIN chain c ON s.id = c.parent)
               SELECT id FROM chain ORDER BY depth""", (parent,)).fetchall()
        return tuple(r[0] for r in rows)

    def get(self, key: str) -> Snapshot:
        """The snapshot ``key`` (any kind) with its parent chain.  ``NotFound`` if unknown."""
        with self.transaction():
            id_, kind, parent = self._row(key)
            return Snapshot(id_, SnapshotKind(kind), self._parent_ids(parent))

    def info(self, key: str) -> SnapshotInfo:
        """What is known of ``key``.  ``NotFound`` if unknown."""
        with self.transaction():
            self._row(key)
            return self._infos("WHERE s.key = ?", (key,))[0]

    def walk(self) -> list[SnapshotInfo]:
        """Every snapshot, oldest first."""
        with self.transaction():
            return self._infos("", ())

    def _infos(self, where: str, args: tuple) -> list[SnapshotInfo]:
        rows = self._db.execute(
            f"""SELECT s.key, s.kind, COALESCE(p.key, ''), s.labels, s.created
                FROM snapshots s LEFT JOIN snapshots p ON p.id = s.parent {where}
                ORDER BY s.id""", args).fetchall()
        return [SnapshotInfo(name=k, kind=SnapshotKind(kind), parent=parent,
                             labels=json.loads(labels), created=created)
                for k, kind, parent, labels, created in rows]

    def usage(self, key: str) -> Usage | None:
        """The usage recorded when ``key`` was committed; ``None`` while it is active."""
        with self.transaction():
            self._row(key)
            size, inodes = self._db.execute("SELECT size, inodes FROM snapshots WHERE key = ?",
                                            (key,)).fetchone()
            return None if size is None else Usage(size=size, inodes=inodes)

    def ids(self) -> set[int]:
        """The ids of every snapshot (to find data directories no snapshot owns)."""
        with self.transaction():
            return {r[0] for r in self._db.execute("SELECT id FROM snapshots")}

    # ----------------------------------------------------------------------- changes
    def check_create(self, kind: SnapshotKind, key: str, parent: str = "",
                     labels: dict[str, str] | None = None) -> tuple[int, ...]:
        """Raise what :meth:`create` would raise, record nothing; return the parent chain's ids.

        Lets a driver fail fast before staging a snapshot's data (a vfs copy is slow);
        :meth:`create` checks again, atomically.
        """
        with self.transaction():
            return self._check_create(kind, key, parent, labels)[0]

    def _check_create(self, kind: SnapshotKind, key: str, parent: str,
                      labels: dict[str, str] | None) -> tuple[tuple[int, ...], dict[str, str]]:
        if kind not in (SnapshotKind.ACTIVE, SnapshotKind.VIEW):
            raise InvalidArgument(f"cannot create a snapshot of kind {kind.value}")
        _check_key(key)
        labels = _check_labels(labels)
        if not isinstance(parent, str):
            raise InvalidArgument("snapshot parent must be a string")
        parent_ids: tuple[int, ...] = ()
        if parent:
            parent_id, parent_kind, _ = self._row(parent)
            if parent_kind != SnapshotKind.COMMITTED.value:
                raise InvalidArgument(f"parent {parent!r} is not a committed snapshot "
                                      f"(it is {parent_kind})")
            parent_ids = self._parent_ids(parent_id)
        if self._db.execute("SELECT 1 FROM snapshots WHERE key = ?", (key,)).fetchone():
            raise AlreadyExists(f"snapshot {key!r} already exists")
        return parent_ids, labels

    def create(self, kind: SnapshotKind, key: str, parent: str = "",
               labels: dict[str, str] | None = None) -> Snapshot:
        """Record the new active (``ACTIVE``) or read-only (``VIEW``) snapshot ``key``.

        Raises ``AlreadyExists`` (``key`` is taken), ``NotFound`` (no ``parent``),
        ``InvalidArgument`` (``parent`` is not committed, or bad arguments).
        """
        with self.transaction():
            parent_ids, labels = self._check_create(kind, key, parent, labels)
            cursor = self._db.execute(
                "INSERT INTO snapshots (key, kind, parent, labels, created) VALUES (?, ?, ?, ?, ?)",
                (key, kind.value, parent_ids[0] if parent_ids else None, json.dumps(labels),
                 time.time()))
            return Snapshot(cursor.lastrowid, kind, parent_ids)

    def commit(self, key: str, name: str, usage: Usage,
               labels: dict[str, str] | None = None) -> Snapshot:
        """Turn the active snapshot ``key`` into the committed ``name``, keeping its id.

        ``labels`` are merged over the active snapshot's.  ``usage`` is recorded.  Raises
        ``NotFound`` (no ``key``), ``InvalidArgument`` (``key`` is a view or committed),
        ``AlreadyExists`` (``name`` is taken).
        """
        _check_key(name, "name")
        labels = _check_labels(labels)
        with self.transaction():
            id_, kind, parent = self._row(key)
            if kind != SnapshotKind.ACTIVE.value:
                raise InvalidArgument(f"snapshot {key!r} is {'a view' if kind == 'view' else kind}"
                                      "; only an active snapshot can be committed")
            if self._db.execute("SELECT 1 FROM snapshots WHERE key = ?", (name,)).fetchone():
                raise AlreadyExists(f"snapshot {name!r} already exists")
            (old,) = self._db.execute("SELECT labels FROM snapshots WHERE id = ?", (id_,)).fetchone()
            self._db.execute(
                "UPDATE snapshots SET key = ?, kind = 'committed', labels = ?, size = ?, inodes = ?"
                " WHERE id = ?",
                (name, json.dumps({**json.loads(old), **labels}), usage.size, usage.inodes, id_))
            return Snapshot(id_, SnapshotKind.COMMITTED, self._parent_ids(parent))

    def remove(self, key: str) -> Snapshot:
        """Forget ``key`` and return what it was.  ``NotFound``; ``Conflict`` if it has children."""
        with self.transaction():
            id_, kind, parent = self._row(key)
            children = self._db.execute("SELECT key FROM snapshots WHERE parent = ? LIMIT 3",
                                        (id_,)).fetchall()
            if children:
                names = ", ".join(repr(c[0]) for c in children)
                raise Conflict(f"snapshot {key!r} is the parent of {names}; remove them first")
            snap = Snapshot(id_, SnapshotKind(kind), self._parent_ids(parent))
            self._db.execute("DELETE FROM snapshots WHERE id = ?", (id_,))
            return snap
