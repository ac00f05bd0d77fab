"""A container's users: ``/etc/passwd`` and ``/etc/group`` read from its root filesystem (safely:
see :mod:`core.engine.containers.archive`) and docker's user specs resolved against them —
``name``, ``uid``, ``name:group``, ``uid:gid``...; names looked up in the container's own files,
numbers taken as they are; supplementary groups are the ``/etc/group`` entries listing the
user, plus ``--group-add``."""
from __future__ import annotations

import os
from pathlib import Path
from typing import Iterable, Iterator

import attrs

from core.errors import InvalidArgument

MAX_ID = 2**31 - 1


@attrs.frozen
class PasswdEntry:
    name: str
    uid: int
    gid: int
    home: str


@attrs.frozen
class GroupEntry:
    name: str
    gid: int
    members: tuple[str, ...]


@attrs.frozen
class ExecUser:
    uid: int
    gid: int
    additional_gids: tuple[int, ...] = ()
    home: str = "/"
    name: str = ""


def _int(text: str) -> int | None:
    try:
        value = int(text, 10)
    except ValueError:
        return None
    return value if text.strip() == text and not text.startswith("+") else None


def _records(data: bytes | None, least: int) -> Iterator[list[str]]:
    """The ``:``-separated fields of each line of a passwd or group file that has a name and at
    least ``least`` fields (comments and short lines are passed over)."""
    for line in (data or b"").decode("utf-8", "replace").splitlines():
        parts = line.strip().split(":")
        if len(parts) >= least and parts[0] and not parts[0].startswith("#"):
            yield parts


def parse_passwd(data: bytes | None) -> list[PasswdEntry]:
    out = []
    for parts in _records(data, 4):
        uid, gid = _int(parts[2]), _int(parts[3])
        if uid is None or gid is None:
            continue
        out.append(PasswdEntry(parts[0], uid, gid, parts[5] if len(parts) > 5 else ""))
    return out


def parse_group(data: bytes | None) -> list[GroupEntry]:
    out = []
    for parts in _records(data, 3):
        gid = _int(parts[2])
        if gid is None:
            continue
        members = tuple(m for m in (parts[3].split(",") if len(parts) > 3 else []) if m)
        out.append(GroupEntry(parts[0], gid, members))
    return out


def _check_id(value: int) -> int:
    if not 0 <= value <= MAX_ID:
        raise InvalidArgument("uids and gids must be in range 0-2147483647")
    return value


def resolve_user(spec: str, passwd: bytes | None, group: bytes | None, group_add: Iterable[str] = ()) -> ExecUser:
    """``--user`` (``name``, ``uid``, ``name:group``, ``uid:gid``...) against the container's
    passwd and group files (either may be ``None``: absent), as docker resolves it."""
    spec = spec or ""
    user_part, _, group_part = spec.partition(":")
    users = parse_passwd(passwd)
    groups = parse_group(group)
    uid, gid, home, name = 0, 0, "/", ""
    if user_part == "":
        entry = next((u for u in users if u.uid == 0), None)
        if entry:
            gid, home, name = entry.gid, entry.home or "/", entry.name
    else:
        number = _int(user_part)
        entry = next((u for u in users if u.name == user_part), None)
        if entry is None and number is not None:
            entry = next((u for u in users if u.uid == number), None)
        if entry is not None:
            uid, gid, home, name = entry.uid, entry.gid, entry.home or "/", entry.name
        elif number is not None:
            uid = _check_id(number)
        else:
            raise InvalidArgument(f"unable to find user {user_part}: no matching entries in passwd file")
    extra: list[int] = []
    if group_part:
        number = _int(group_part)
        g = next((g for g in groups if g.name == group_part), None)
        if g is None and number is not None:
            gid = _check_id(number)
        elif g is not None:
            gid = g.gid
        else:
            raise InvalidArgument(f"unable to find group {group_part}: no matching entries in group file")
    elif name:
        extra = [g.gid for g in groups if name in g.members]
    for wanted in group_add:
        number = _int(wanted)
        g = next((g for g in groups if g.name == wanted), None)
        if g is not None:
            extra.append(g.gid)
        elif number is not None:
            extra.append(_check_id(number))
        else:
            raise InvalidArgument(f"Unable to find group {wanted}: no matching entries in group file")
    seen: list[int] = []
    for g_ in extra:
        if g_ not in seen:
            seen.append(g_)
    return ExecUser(uid=uid, gid=gid, additional_gids=tuple(seen), home=home, name=name)


def read_user_db(rootfs: Path | int) -> tuple[bytes | None, bytes | None]:
    """``/etc/passwd`` and ``/etc/group`` of a container root (a path or an open descriptor),
    resolved inside it; ``None`` for a file that is absent or not a regular file."""
    from core.engine.containers.archive import read_file_in_root

    fd = rootfs if isinstance(rootfs, int) else os.open(rootfs, os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)
    try:
        return read_file_in_root(fd, "/etc/passwd"), read_file_in_root(fd, "/etc/group")
    finally:
        if not isinstance(rootfs, int):
            os.close(fd)
