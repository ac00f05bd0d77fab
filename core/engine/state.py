"""The daemon's state database: SQLite in WAL mode, every change in a transaction.

Tables are created by numbered migrations: each engine service that keeps state defines its
own :class:`Migration` under a fixed number (images 2, volumes 3, containers 4, networks 5 ...)
as its module's ``MIGRATION``, and whoever opens a :class:`State` passes them all (the daemon's
start-up, :data:`core.daemon.app.MIGRATIONS`); a gap or a clash in the numbers is an error, not
a silently shifted schema.  Opening a database written by a newer core
fails clearly instead of corrupting it.  A :class:`State` is a :class:`core.sqlite.Database`
(nested transactions, a full disk as ``Unavailable``) whose rows are ``sqlite3.Row``.
"""
from __future__ import annotations

import sqlite3
from pathlib import Path
from typing import Iterable

import attrs

from core.errors import CoreError
from core.sqlite import Database



@attrs.frozen
class Migration:
    """One numbered step of the schema: statements separated by ``;``."""

    number: int
    name: str
    sql: str


META = Migration(1, "meta", "CREATE TABLE meta (key TEXT PRIMARY KEY, value TEXT NOT NULL);")


def _steps(migrations: Iterable[Migration]) -> list[str]:
    by_number: dict[int, Migration] = {META.number: META}
    for m in migrations:
        known = by_number.get(m.number)
        if known is not None and known != m:
            raise CoreError(f"state migration {m.number} is given twice ({known.name}, {m.name})")
        by_number[m.number] = m
    numbers = sorted(by_number)
    if numbers != list(range(1, len(numbers) + 1)):
        missing = sorted(set(range(1, numbers[-1] + 1)) - set(numbers))
        raise CoreError(f"state migrations {missing} are missing (numbers given: {numbers})")
    return [by_number[n].sql for n in numbers]


class State(Database):
    def __init__(self, path: Path, migrations: Iterable[Migration]) -> None:
        steps = _steps(migrations)
        super().__init__(path, "state database", len(steps), steps, row_factory=sqlite3.Row)
        self.db = self._db   # reads (writes go through transaction())

    def _upgrade(self, found: int, version: int, schema: list[str]) -> None:   # type: ignore[override]
        for number in range(found, version):
            for statement in schema[number].split(";"):
                if statement.strip():
                    self._db.execute(statement)
            self._db.execute(f"PRAGMA user_version = {number + 1}")

    def get_meta(self, key: str) -> str | None:
        row = self.db.execute("SELECT value FROM meta WHERE key=?", (key,)).fetchone()
        return row[0] if row else None

    def set_meta(self, key: str, value: str) -> None:
        with self.transaction() as db:
            db.execute("INSERT OR REPLACE INTO meta(key, value) VALUES(?, ?)", (key, value))
