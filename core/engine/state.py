"""The daemon's state database: SQLite in WAL mode, every change in a transaction.

Tables are created by numbered migrations: each part of the kernel that keeps state registers
its own with :func:`migration` under a fixed number (images 2, volumes 3, containers 4,
networks 5 ...), so the order never depends on which module was imported first; opening a
:class:`State` imports those modules (:data:`_MODULES`), and a gap in the numbers is an error,
not a silently shifted schema.  Opening a database written by a newer core
fails clearly instead of corrupting it.  A :class:`State` is a :class:`core.sqlite.Database`
(nested transactions, a full disk as ``Unavailable``) whose rows are ``sqlite3.Row``.
"""
from __future__ import annotations

import sqlite3
from pathlib import Path

from core.errors import CoreError
from core.sqlite import Database

_MIGRATIONS: dict[int, tuple[str, str]] = {}
# the kernel's modules that keep state, each registering its migration when imported
_MODULES = ("core.engine.images.store", "core.engine.volumes", "core.engine.containers.service", "core.engine.networks.service")


def migration(number: int, name: str, sql: str) -> None:
    """Register migration ``number`` (statements separated by ``;``); at import time."""
    known = _MIGRATIONS.get(number)
    if known is not None and known != (name, sql):
        raise RuntimeError(f"state migration {number} is registered twice ({known[0]}, {name})")
    _MIGRATIONS[number] = (name, sql)


migration(1, "meta", "CREATE TABLE meta (key TEXT PRIMARY KEY, value TEXT NOT NULL);")


def _steps() -> list[str]:
    import importlib

    for module in _MODULES:
        importlib.import_module(module)
    numbers = sorted(_MIGRATIONS)
    if numbers != list(range(1, len(numbers) + 1)):
        missing = sorted(set(range(1, numbers[-1] + 1)) - set(numbers))
        raise CoreError(f"state migrations {missing} are not registered (their modules were not imported)")
    return [_MIGRATIONS[n][1] for n in numbers]


class State(Database):
    def __init__(self, path: Path) -> None:
        steps = _steps()
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
