"""A SQLite file: WAL, foreign keys, a schema version, nested transactions.

Drivers that keep state (the storage metastore, the bridge driver's IPAM) subclass
:class:`Database` and write their queries against ``self._db`` under ``self._lock``; the
daemon's own state (:class:`core.engine.state.State`) is one too, upgraded step by step.
"""
from __future__ import annotations

import contextlib
import sqlite3
import threading
from pathlib import Path
from typing import Any, Iterator, Sequence

from core.errors import CoreError, Unavailable


class Database:
    """Thread-safe.  Opening a file written by a newer schema fails with ``CoreError``.

    ``what`` names the database in messages ("snapshot database"); ``schema`` is run once, on an
    empty file, which is then marked ``version`` (a subclass may upgrade older files instead:
    :meth:`_upgrade`).  ``row_factory`` is sqlite3's.
    """

    def __init__(self, path: Path, what: str, version: int, schema: Sequence[str],
                 row_factory: Any = None) -> None:
        self.path = Path(path)
        self.what = what
        self._lock = threading.RLock()
        self._depth = 0
        try:
            self._db = sqlite3.connect(self.path, isolation_level=None, check_same_thread=False)
            if row_factory is not None:
                self._db.row_factory = row_factory
            self._db.execute("PRAGMA journal_mode = WAL")
            self._db.execute("PRAGMA synchronous = NORMAL")
            self._db.execute("PRAGMA foreign_keys = ON")
            self._db.execute("PRAGMA busy_timeout = 5000")
            with self.transaction():
                found = self._db.execute("PRAGMA user_version").fetchone()[0]
                if found > version:
                    raise CoreError(f"{self.path}: {what} version {found} is newer than this engine's ({version})")
                self._upgrade(found, version, schema)
        except sqlite3.Error as exc:
            raise CoreError(f"{self.path}: cannot open the {what}: {exc}") from exc

    def _upgrade(self, found: int, version: int, schema: Sequence[str]) -> None:
        """Bring a file of schema ``found`` to ``version`` (in the opening transaction): here,
        ``schema`` on an empty file."""
        if found == 0:
            for statement in schema:
                self._db.execute(statement)
            self._db.execute(f"PRAGMA user_version = {version}")

    def execute(self, sql: str, params: Sequence[Any] | dict[str, Any] = ()) -> sqlite3.Cursor:
        """``sqlite3.Connection.execute``: inside :meth:`transaction` for changes."""
        return self._db.execute(sql, params)

    def close(self) -> None:
        with self._lock:
            self._db.close()

    @contextlib.contextmanager
    def transaction(self) -> Iterator[Database]:
        """Group calls into one atomic transaction; nested blocks are savepoints.

        If the block raises, its changes are rolled back and the exception propagates.  Errors of
        SQLite itself become ``CoreError``; a full disk becomes ``Unavailable``.
        """
        with self._lock:
            outer = self._depth == 0
            savepoint = f"sp{self._depth}"
            try:
                self._db.execute("BEGIN IMMEDIATE" if outer else f"SAVEPOINT {savepoint}")
                self._depth += 1
                try:
                    yield self
                except BaseException:
                    self._depth -= 1
                    if outer:
                        self._db.execute("ROLLBACK")
                    else:
                        self._db.execute(f"ROLLBACK TO {savepoint}")
                        self._db.execute(f"RELEASE {savepoint}")
                    raise
                self._depth -= 1
                try:
                    self._db.execute("COMMIT" if outer else f"RELEASE {savepoint}")
                except sqlite3.Error:
                    if outer and self._db.in_transaction:
                        self._db.execute("ROLLBACK")
                    raise
            except sqlite3.Error as exc:
                if outer and self._db.in_transaction:
                    self._db.execute("ROLLBACK")
                if isinstance(exc, sqlite3.OperationalError) and ("full" in str(exc) or "disk I/O" in str(exc)):
                    raise Unavailable(f"no space left on device: {self.what} {self.path}: {exc}") from exc
                raise CoreError(f"{self.what} {self.path}: {exc}") from exc
