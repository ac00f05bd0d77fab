"""The CLI's output, drawn as docker draws it.

- ``--format``: :func:`compile_format` (Go templates, :mod:`core.cli.template`),
  :func:`render_format` for list commands (``table``, ``json``, a template, with docker's
  headers), :func:`render_each` for one object per line, :func:`print_inspect` for ``inspect``'s
  indented JSON array; :func:`print_table` sets columns as docker's tabwriter does.
- Values in columns: :func:`truncate_id`, :func:`ellipsis`, :func:`go_quote`, :func:`familiar`,
  :func:`timestamp`, :func:`parse_time`, :func:`ago` (sizes and durations are :mod:`core.units`').
- Messages: :func:`fail_joined` (docker's errors.Join on stderr), :func:`each` (an operation on
  each name given), :func:`print_pruned`, :func:`confirm` (docker's prompt), :func:`display_stream`
  (pull and push progress, JSON messages redrawn in place on a terminal).

Commands import this module at start-up: the template engine, :mod:`json`, :mod:`re` and
:mod:`datetime` are imported by the functions that need them.
"""
from __future__ import annotations

import sys
import time

from core.cli.client import APIError, CLIError
from core.units import human_duration, human_size

TYPE_CHECKING = False
if TYPE_CHECKING:
    from typing import Any, Callable, Iterable, TextIO


# -- --format ----------------------------------------------------------------------------------------


def compile_format(text: str, formatter: bool = True) -> Any:
    """Compile ``--format``.  ``formatter``: the list commands' dialect (``table``, ``json``,
    typed ``\\t``); inspect, info and version take a plain Go template (``formatter=False``)."""
    from core.cli.template import TemplateError, compile_template

    try:
        return compile_template(text, formatter=formatter)
    except TemplateError as exc:
        raise CLIError(f"template parsing error: {exc}", 125) from None


def render_each(fmt: str, items: Iterable[Any], out: Callable[[str], Any] = sys.stdout.write,
                formatter: bool = True) -> None:
    """``--format`` over objects, one output line each; ``json`` prints each as compact JSON."""
    from core.cli.template import TemplateError

    tmpl = compile_format("{{json .}}" if fmt == "json" else fmt, formatter)
    for item in items:
        try:
            text = tmpl.render(item)
        except TemplateError as exc:
            raise CLIError(f"template parsing error: {exc}", 1) from None
        out(text + "\n")


def render_format(fmt: str, rows: list[dict[str, Any]], headers: dict[str, str]) -> None:
    """``--format`` of a list command: ``table ...`` with docker's headers, else one line per row."""
    from core.cli.template import TemplateError

    tmpl = compile_format(fmt)
    try:
        sys.stdout.write(tmpl.render_all(rows, headers))
    except TemplateError as exc:
        raise CLIError(f"template parsing error: {exc}", 1) from None


def print_table(headers: list[str], rows: list[list[str]], out: Callable[[str], Any] = sys.stdout.write) -> None:
    """Columns as docker's tabwriter sets them: padding 3, minimum width 10 (last column free)."""
    from core.cli.template import tabwrite

    lines = ["\t".join(headers)] + ["\t".join(r) for r in rows]
    out(tabwrite("\n".join(lines) + "\n"))


def print_inspect(fmt: str, found: list[Any], errors: list[str]) -> int:
    """docker's inspect output: the objects as an indented JSON array (or through ``--format``),
    then each error on stderr, exit 1 if any."""
    from core.cli.template import TemplateError, compile_template

    if fmt and fmt != "json":
        try:
            tmpl = compile_template(fmt, formatter=False)
        except TemplateError as exc:
            raise CLIError(f"template parsing error: {exc}", 64) from None
        out = []
        for item in found:
            try:
                out.append(tmpl.render(item) + "\n")
            except TemplateError as exc:
                errors.append(f"template parsing error: {exc}")
        sys.stdout.write("".join(out))
    else:
        import json

        sys.stdout.write(json.dumps(found, indent=4) + "\n")
    return fail_joined(errors)


# -- values in columns --------------------------------------------------------------------------------


def truncate_id(ident: str) -> str:
    """docker's stringid.TruncateID: the first 12 hex digits, without the ``sha256:`` prefix."""
    if ":" in ident:
        ident = ident.split(":", 1)[1]
    return ident[:12]


def ellipsis(s: str, width: int) -> str:
    """docker's formatter.Ellipsis: at most ``width`` display columns, "…" marking a cut."""
    if width <= 0:
        return ""
    if width == 1:
        return s[:1]
    from core.cli.template import _width

    if _width(s) <= width:
        return s
    out, used = [], 0
    for ch in s:
        w = _width(ch)
        if used + w > width - 1:
            break
        out.append(ch)
        used += w
    return "".join(out) + "…"


def go_quote(s: str) -> str:
    """Go's strconv.Quote."""
    from core.cli.template import _goquote

    return _goquote(s)


def parse_time(value: Any) -> float:
    """An RFC 3339 timestamp (nanoseconds allowed) as epoch seconds; 0 for Go's zero time."""
    if not value or not isinstance(value, str) or value.startswith("0001-01-01"):
        return 0.0
    import datetime

    text = value.strip()
    frac = 0.0
    if "." in text:
        head, _, rest = text.partition(".")
        digits = ""
        for ch in rest:
            if ch.isdigit():
                digits += ch
            else:
                break
        frac = float("0." + digits) if digits else 0.0
        text = head + rest[len(digits):]
    if text.endswith("Z"):
        text = text[:-1] + "+00:00"
    try:
        return datetime.datetime.fromisoformat(text).timestamp() + frac
    except ValueError:
        return 0.0


def familiar(ref: str) -> str:
    """docker's reference.FamiliarString: "docker.io/library/busybox:latest" → "busybox:latest"."""
    for prefix in ("docker.io/library/", "index.docker.io/library/"):
        if ref.startswith(prefix):
            return ref[len(prefix):]
    for prefix in ("docker.io/", "index.docker.io/"):
        if ref.startswith(prefix):
            return ref[len(prefix):]
    return ref


def timestamp(epoch: float) -> str:
    """Go's time.Time.String() of a Unix time, in local time."""
    if not epoch:
        return ""
    return time.strftime("%Y-%m-%d %H:%M:%S %z %Z", time.localtime(epoch))


def natural_key(s: str) -> list[Any]:
    """Sort key of docker's natural ordering: "net2" before "net10"."""
    import re

    return [int(p) if p.isdigit() else p for p in re.split(r"(\d+)", s)]


def ago(epoch: float) -> str:
    """``"5 minutes ago"`` for a Unix time; ``"N/A"`` for none."""
    if not epoch:
        return "N/A"
    return human_duration(time.time() - epoch) + " ago"


# -- messages ----------------------------------------------------------------------------------------


def fail_joined(errors: list[str]) -> int:
    """docker's errors.Join: every message on stderr, exit status 1."""
    if errors:
        sys.stderr.write("\n".join(e.rstrip("\n") for e in errors) + "\n")
        return 1
    return 0


def each(names: Iterable[str], op: Callable[[str], Any]) -> int:
    """Run ``op`` on each name (stop, kill, rm ...): print each name it succeeded for, then the
    daemon's errors as :func:`fail_joined` does."""
    errors = []
    for name in names:
        try:
            op(name)
        except APIError as exc:
            errors.append(exc.message)
            continue
        sys.stdout.write(name + "\n")
        sys.stdout.flush()
    return fail_joined(errors)


def print_pruned(title: str, deleted: list[str], reclaimed: float | None = None) -> None:
    """A prune's report: ``Deleted <title>:`` and the IDs or names, then the space reclaimed."""
    if deleted:
        sys.stdout.write(f"Deleted {title}:\n" + "".join(d + "\n" for d in deleted) + "\n")
    if reclaimed is not None:
        sys.stdout.write(f"Total reclaimed space: {human_size(reclaimed)}\n")


def confirm(message: str) -> bool:
    """docker's prompt.Confirm: ``message [y/N] `` on stdout, yes only for y/Y."""
    sys.stdout.write(f"{message} [y/N] ")
    sys.stdout.flush()
    answer = sys.stdin.readline().strip()
    return answer in ("y", "Y")


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
    """Show a docker JSON-message stream (pull, push, load) as the docker CLI does
    (``jsonmessage.DisplayJSONMessagesStream``).

    On a terminal each layer -- a message with an ``id`` and a ``progressDetail`` -- keeps one
    line, redrawn in place; a message of another kind (``latest: Pulling from ...``,
    ``Digest: ...``) ends that block, so the layers of the next tag of a ``pull -a`` get lines
    of their own.  Elsewhere only the status lines are printed, without progress bars.  An
    ``error`` message raises :class:`CLIError`.
    """
    tty = out.isatty()
    lines: dict[str, int] = {}  # id -> line of the current block, on a terminal
    for msg in messages:
        if msg.get("error") or msg.get("errorDetail"):
            message = msg.get("error") or (msg.get("errorDetail") or {}).get("message", "")
            raise CLIError(message)
        if msg.get("aux") is not None and not msg.get("status") and not msg.get("stream"):
            continue
        status = msg.get("status", "")
        ident = msg.get("id")
        progress = _progress_text(msg)
        is_progress = "progressDetail" in msg
        diff = 0
        if ident and is_progress:
            if ident not in lines:
                lines[ident] = len(lines)
                if tty:
                    out.write("\n")
            diff = len(lines) - lines[ident]
            if tty:
                out.write(f"\x1b[{diff}A")
        else:
            lines = {}
        if msg.get("stream"):
            out.write(msg["stream"])
        elif is_progress and tty:
            text = f"{ident}: {status}" if ident else status
            out.write(f"\x1b[2K\r{text}" + (f" {progress}" if progress else "") + "\r")
        elif not (is_progress and progress):   # docker hides progress bars off a terminal
            out.write((f"{ident}: {status}" if ident else status) + "\n")
        if ident and tty and diff:
            out.write(f"\x1b[{diff}B")
        out.flush()
