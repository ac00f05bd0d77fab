"""Output as docker draws it: JSON-message progress streams, human sizes and durations."""
from __future__ import annotations

import sys
import time
from typing import Any, Iterable, TextIO

from core.cli.client import CLIError
from core.units import human_size


def human_duration(seconds: float) -> str:
    """docker's units.HumanDuration ("Less than a second", "About a minute", "2 weeks")."""
    s = int(seconds)
    if s < 1:
        return "Less than a second"
    if s == 1:
        return "1 second"
    if s < 60:
        return f"{s} seconds"
    minutes = s // 60
    if minutes == 1:
        return "About a minute"
    if minutes < 60:
        return f"{minutes} minutes"
    hours = int(seconds / 3600 + 0.5)
    if hours == 1:
        return "About an hour"
    if hours < 48:
        return f"{hours} hours"
    if hours < 24 * 7 * 2:
        return f"{hours // 24} days"
    if hours < 24 * 30 * 2:
        return f"{hours // 24 // 7} weeks"
    if hours < 24 * 365 * 2:
        return f"{hours // 24 // 30} months"
    return f"{int(seconds / 3600) // 24 // 365} years"


def ago(epoch: float) -> str:
    if not epoch:
        return "N/A"
    return human_duration(time.time() - epoch) + " ago"


def _progress_text(msg: dict[str, Any]) -> str:
    detail = msg.get("progressDetail") or {}
    current, total = detail.get("current"), detail.get("total")
    if current is None:
        return ""
    if msg.get("progress"):
        return msg["progress"]
    if total:
        return f"{human_size(current)}/{human_size(total)}"
    return human_size(current)


def display_stream(messages: Iterable[dict[str, Any]], out: TextIO = sys.stdout) -> None:
    """Show a docker JSON-message stream (pull, push) as the docker CLI does.

    On a terminal each layer keeps one line, redrawn in place; elsewhere only the status lines
    are printed, without progress bars.  An ``error`` message raises :class:`CLIError`.
    """
    tty = out.isatty()
    lines: dict[str, int] = {}  # id -> line index, on a terminal
    count = 0
    for msg in messages:
        if msg.get("error") or msg.get("errorDetail"):
            message = msg.get("error") or (msg.get("errorDetail") or {}).get("message", "")
            raise CLIError(message)
        status = msg.get("status", "")
        ident = msg.get("id")
        progress = _progress_text(msg)
        if not tty and progress:
            continue  # docker disables progress bars off a terminal
        text = f"{ident}: {status}" if ident else status
        if tty and progress:
            text += " " + progress
        if tty and ident:
            if ident in lines:
                up = count - lines[ident]
                out.write(f"\x1b[{up}A\x1b[2K\r{text}\n" + (f"\x1b[{up - 1}B" if up > 1 else ""))
            else:
                lines[ident] = count
                count += 1
                out.write(text + "\n")
        else:
            if msg.get("stream"):
                out.write(msg["stream"])
                continue
            out.write(text + "\n")
            if tty:
                count += 1
        out.flush()
