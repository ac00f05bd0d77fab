"""Output as docker draws it: JSON-message progress streams, human sizes and durations."""
from __future__ import annotations

import sys
import time

from core.cli.client import CLIError
from core.units import human_duration, human_size  # noqa: F401 - human_duration re-exported

TYPE_CHECKING = False
if TYPE_CHECKING:
    from typing import Any, Iterable, TextIO


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
