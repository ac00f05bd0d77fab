"""The daemon's state database: SQLite in WAL mode, every change in a transaction.

Tables are created by numbered migrations (plain statements separated by ``;``); each part of the kernel that keeps state adds its own
migration to :data:`MIGRATIONS` (images, containers, networks, volumes ...).  Opening a database
written by a newer core fails clearly instead of corrupting it.
"""
from __future__ import annotations

import contextlib
import sqlite3
from pathlib import Path
from typing import Iterator

from core.errors import CoreError, Unavailable

MIGRATIONS: list[str] = [
    # 1: the engine's own facts
    """
    CREATE TABLE meta (key TEXT PRIMARY KEY, value TEXT NOT NULL);
    """,
]


class State:
    def __init__(self, path: Path) -> None:
        self.path = path
        self.db = sqlite3.connect(path, isolation_level=None, check_same_thread=False)
        self.db.row_factory = sqlite3.Row
        self.db.execute("PRAGMA journal_mode=WAL")
        self.db.execute("PRAGMA synchronous=NORMAL")
        self.db.execute("PRAGMA foreign_keys=ON")
        self._migrate()

    def _migrate(self) -> None:
        version = self.db.execute("PRAGMA user_version").fetchone()[0]
        if version > len(MIGRATIONS):
            raise CoreError(
                f"{self.path} was written by a newer core (schema {version}, this one knows {len(MIGRATIONS)})"
            )
        for number in range(version, len(MIGRATIONS)):
            with self.transaction() as db:
                for statement in MIGRATIONS[number].split(";"):
                    if statement.strip():
                        db.execute(statement)
                db.execute(f"PRAGMA user_version={number + 1}")

    @contextlib.contextmanager
    def transaction(self) -> Iterator[sqlite3.Connection]:
        """One transaction; a full disk becomes ``Unavailable`` and nothing of it is kept."""
        try:
            self.db.execute("BEGIN IMMEDIATE")
            try:
                yield self.db
            except BaseException:
                self.db.execute("ROLLBACK")
                raise
            else:
                self.db.execute("COMMIT")
        except sqlite3.OperationalError as exc:
            if "full" in str(exc) or "disk I/O" in str(exc):
                if self.db.in_transaction:
                    self.db.execute("ROLLBACK")
                raise Unavailable(f"no space left on device: {self.path}: {exc}") from exc
            raise

    def get_meta(self, key: str) -> str | None:
        row = self.db.execute("SELECT value FROM meta WHERE key=?", (key,)).fetchone()
        return row[0] if row else None

    def set_meta(self, key: str, value: str) -> None:
        with self.transaction() as db:
            db.execute("INSERT OR REPLACE INTO meta(key, value) VALUES(?, ?)", (key, value))

    def close(self) -> None:
        self.db.close()
