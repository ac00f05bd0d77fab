"""``docker top``: the processes of a container, as ``ps -ef`` shows them (read from /proc), or
as the host's ``ps`` shows them with the arguments given (docker's way)."""
from __future__ import annotations

import os
import pwd
import time
from pathlib import Path
from typing import Any

import trio

from core.errors import CoreError, InvalidArgument, NotImplemented_


def _ps_row(pid: int, clk: int, boot: float, now: float) -> list[str] | None:
    try:
        with open(f"/proc/{pid}/stat", "rb") as f:
            raw = f.read().decode("utf-8", "replace")
        with open(f"/proc/{pid}/cmdline", "rb") as f:
            cmdline = f.read()
        status = Path(f"/proc/{pid}/status").read_text()
    except OSError:
        return None
    comm = raw[raw.index("(") + 1: raw.rindex(")")]
    fields = raw[raw.rindex(")") + 2:].split()
    ppid, tty_nr = int(fields[1]), int(fields[4])
    utime, stime, start = int(fields[11]), int(fields[12]), int(fields[19])
    uid = 0
    for line in status.splitlines():
        if line.startswith("Uid:"):
            uid = int(line.split()[1])
    try:
        user = pwd.getpwuid(uid).pw_name
    except KeyError:
        user = str(uid)
    cpu_secs = (utime + stime) / clk
    started = boot + start / clk
    elapsed = max(now - started, 1e-9)
    c_pct = int(cpu_secs * 100 / elapsed)
    st = time.localtime(started)
    stime_txt = time.strftime("%H:%M", st) if time.localtime(now)[:3] == st[:3] else time.strftime("%b%d", st)
    major, minor = (tty_nr >> 8) & 0xFFF, (tty_nr & 0xFF) | ((tty_nr >> 12) & 0xFFF00)
    if tty_nr == 0:
        tty = "?"
    elif 136 <= major <= 143:
        tty = f"pts/{(major - 136) * 256 + minor}"
    elif major == 4:
        tty = f"tty{minor}"
    else:
        tty = "?"
    total = int(cpu_secs)
    days, rest = divmod(total, 86400)
    time_txt = (f"{days}-" if days else "") + f"{rest // 3600:02d}:{rest % 3600 // 60:02d}:{rest % 60:02d}"
    args = [a.decode("utf-8", "replace") for a in cmdline.split(b"\0") if a]
    cmd = " ".join(args) if args else f"[{comm}]"
    return [user, str(pid), str(ppid), str(c_pct), stime_txt, tty, time_txt, cmd]


def ps_table(pids: list[int]) -> dict[str, Any]:
    """``ps -ef`` of the given host pids, read from /proc."""
    clk = os.sysconf("SC_CLK_TCK")
    with open("/proc/uptime") as f:
        uptime = float(f.read().split()[0])
    now = time.time()
    boot = now - uptime
    rows = [r for r in (_ps_row(p, clk, boot, now) for p in sorted(pids)) if r is not None]
    return {"Titles": ["UID", "PID", "PPID", "C", "STIME", "TTY", "TIME", "CMD"], "Processes": rows}


async def ps_with_args(pids: list[int], ps_args: str) -> dict[str, Any]:
    """docker's way: run the host's ``ps`` with the given arguments and keep the container's rows."""
    import shlex
    import shutil

    if not shutil.which("ps"):
        raise NotImplemented_("ps_args needs the host's ps(1), which is not installed")
    args = shlex.split(ps_args)
    try:
        proc = await trio.run_process(["ps", *args], capture_stdout=True, capture_stderr=True, check=False)
    except OSError as exc:
        raise CoreError(f"running ps: {exc}") from exc
    if proc.returncode != 0:
        raise CoreError(f"ps: {proc.stderr.decode(errors='replace').strip()}")
    lines = proc.stdout.decode(errors="replace").splitlines()
    if not lines:
        return {"Titles": [], "Processes": []}
    titles = lines[0].split()
    if "PID" not in titles:
        raise InvalidArgument("Couldn't find PID field in ps output")
    col = titles.index("PID")
    wanted = set(pids)
    rows = []
    for line in lines[1:]:
        fields = line.split(None, len(titles) - 1)
        if len(fields) > col and fields[col].isdigit() and int(fields[col]) in wanted:
            rows.append(fields)
    return {"Titles": titles, "Processes": rows}




async def top(pids: list[int], ps_args: str | None) -> dict[str, Any]:
    """docker's ``Titles`` and ``Processes`` for the host pids of a container."""
    if ps_args and ps_args != "-ef":
        return await ps_with_args(pids, ps_args)
    return await trio.to_thread.run_sync(ps_table, pids)
