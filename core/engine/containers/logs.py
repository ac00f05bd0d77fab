"""A container's logs: the json-file log its executor's shim writes (``<id>-json.log``), read
with docker's ``since``/``until``/``tail``/``follow`` — for ``docker logs`` and the replay of
``docker attach --logs``."""
from __future__ import annotations

import calendar
import collections
import decimal
import json
import os
import re
import time
from pathlib import Path
from typing import Any, AsyncIterator, Callable

import trio

from core.errors import InvalidArgument

LOG_POLL = 0.1

_TS = re.compile(r"^(\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d)(?:\.(\d+))?(Z|[+-]\d\d:\d\d)$")


def parse_time_ns(text: str) -> int:
    m = _TS.match(text or "")
    if not m:
        return 0
    secs = calendar.timegm(time.strptime(m.group(1), "%Y-%m-%dT%H:%M:%S"))
    frac = int((m.group(2) or "0")[:9].ljust(9, "0"))
    tz = m.group(3)
    if tz != "Z":
        sign = 1 if tz[0] == "+" else -1
        secs -= sign * (int(tz[1:3]) * 3600 + int(tz[4:6]) * 60)
    return secs * 1_000_000_000 + frac


def fixed_time(ns: int) -> str:
    """docker's RFC3339NanoFixed: always nine fractional digits."""
    secs, frac = divmod(ns, 1_000_000_000)
    return time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(secs)) + f".{frac:09d}Z"


def parse_since(value: str | None, name: str) -> int:
    """A ``since``/``until`` value (seconds, possibly fractional: ``1700000000.5``) in ns; 0 if unset."""
    if not value:
        return 0
    try:
        return int(decimal.Decimal(value) * 1_000_000_000)
    except decimal.InvalidOperation:
        pass
    ns = parse_time_ns(value)
    if ns:
        return ns
    raise InvalidArgument(f'invalid value for "{name}": {value!r} is not a timestamp')


def _parse_line(line: bytes) -> tuple[int, bytes, int] | None:
    try:
        entry = json.loads(line)
    except ValueError:
        return None
    if not isinstance(entry, dict):
        return None
    text = entry.get("log", "")
    data = text.encode("utf-8", "surrogateescape") if isinstance(text, str) else b""
    stream = 2 if entry.get("stream") == "stderr" else 1
    return stream, data, parse_time_ns(entry.get("time", ""))


def parse_tail(value: str | None) -> int | None:
    """``tail``: a number of lines, or ``all`` (``None``)."""
    if value is None or value in ("", "all"):
        return None
    try:
        n = int(value)
    except ValueError:
        raise InvalidArgument(f'invalid value for "tail": {value!r}') from None
    return None if n < 0 else n


def _split(pending: bytes, chunk: bytes) -> tuple[list[bytes], bytes]:
    parts = (pending + chunk).split(b"\n")
    return parts, parts.pop()


def _open(path: Path) -> Any:
    try:
        return open(path, "rb")
    except FileNotFoundError:
        return None


def _read_chunk(fh: Any, left: int) -> bytes:
    return fh.read(1 << 20 if left < 0 else min(left, 1 << 20))


def _read_tail(fh: Any, tail: int, limit: int | None) -> tuple[list[bytes], bytes]:
    """The last ``tail`` lines (up to byte ``limit``), and what follows the last newline."""
    lines: Any = collections.deque(maxlen=tail)
    pending = b""
    left = limit if limit is not None else -1
    while left != 0:
        chunk = _read_chunk(fh, left)
        if not chunk:
            break
        if left > 0:
            left -= len(chunk)
        parts, pending = _split(pending, chunk)
        lines.extend(p for p in parts if p)
    return list(lines), pending


class _Reader:
    """One read of a log through one descriptor: the entries wanted, and where it stopped."""

    def __init__(self, f: Any, since: int, until: int) -> None:
        self.f, self.since, self.until = f, since, until
        self.pending = b""
        self.done = False       # an entry after ``until`` was met

    def select(self, lines: list[bytes]) -> list[tuple[int, bytes, int]]:
        out = []
        for line in lines:
            entry = _parse_line(line) if line else None
            if entry is None or (self.since and entry[2] < self.since):
                continue
            if self.until and entry[2] > self.until:
                self.done = True
                break
            out.append(entry)
        return out

    async def tail(self, tail: int, limit: int | None) -> list[tuple[int, bytes, int]]:
        lines, self.pending = await trio.to_thread.run_sync(_read_tail, self.f, tail, limit)
        return self.select(lines)

    async def whole(self, limit: int | None) -> AsyncIterator[tuple[int, bytes, int]]:
        """The whole log, a megabyte at a time."""
        left = limit if limit is not None else -1
        while left != 0 and not self.done:
            chunk = await trio.to_thread.run_sync(_read_chunk, self.f, left)
            if not chunk:
                break
            if left > 0:
                left -= len(chunk)
            lines, self.pending = _split(self.pending, chunk)
            for entry in self.select(lines):
                yield entry

    async def follow(self, alive: Callable[[], bool]) -> AsyncIterator[tuple[int, bytes, int]]:
        """New entries as they are written, until ``alive()`` says the container stopped."""
        while not self.done:
            if self.until and time.time_ns() > self.until:
                return
            running = alive()
            data = await trio.to_thread.run_sync(self.f.read, 4 << 20)
            if data:
                lines, self.pending = _split(self.pending, data)
                for entry in self.select(lines):
                    yield entry
                continue
            if not running:
                return
            await trio.sleep(LOG_POLL)


async def read_logs(path: Path, *, tail: int | None, since: int, until: int, follow: bool,
                    alive: Callable[[], bool], limit: int | None = None) -> AsyncIterator[tuple[int, bytes, int]]:
    """``(stream, bytes, time_ns)`` of the json-file log at ``path``; with ``follow`` new lines
    as they are written until ``alive()`` says the container stopped.

    The file is opened once and read through that descriptor to the end: a container removed
    meanwhile (``docker run --rm`` reading its own logs) loses nothing that was written.
    ``limit`` (without ``follow``) stops at that byte offset.
    """
    f = await trio.to_thread.run_sync(_open, path)
    while f is None and follow and alive():
        await trio.sleep(LOG_POLL)
        f = await trio.to_thread.run_sync(_open, path)
    if f is None:
        return
    try:
        reader = _Reader(f, since, until)
        if tail == 0:
            await trio.to_thread.run_sync(lambda: f.seek(0, os.SEEK_END))
        elif tail is not None:
            for entry in await reader.tail(tail, limit):
                yield entry
        else:
            async for entry in reader.whole(limit):
                yield entry
        if follow and not reader.done:
            async for entry in reader.follow(alive):
                yield entry
    finally:
        f.close()
