"""The shape every ``prune`` command shares: its flags, docker's confirmation, the report."""
from __future__ import annotations

from typing import Any

from core.cli.flags import Flags, parse_filters
from core.cli.format import confirm, print_pruned
from core.cli.lean import dumps


def prune_flags(prog: str, summary: str, example: str, all_help: str | None = None) -> Flags:
    """``[-a] --filter … -f``: ``example`` is the filter the help shows (``until=<timestamp>``)."""
    f = Flags(prog, "[OPTIONS]", summary)
    if all_help:
        f.add("all", "a", help=all_help)
    f.add("filter", None, "list", typename="filter", help=f'Provide filter values (e.g. "{example}")')
    f.add("force", "f", help="Do not prompt for confirmation")
    return f


def confirmed(opts: Any, warning: str) -> bool:
    """``--force``, or the user said yes to ``warning``."""
    return bool(opts.force) or confirm(f"{warning}\nAre you sure you want to continue?")


def post_prune(ctx: Any, path: str, filters: dict[str, list[str]], key: str, title: str,
               space: bool = True) -> int:
    """``POST path`` with the filters; prints ``Deleted <title>:`` and the space reclaimed."""
    report = ctx.client.post(path, {"filters": dumps(filters) if filters else None}) or {}
    print_pruned(title, report.get(key) or [], (report.get("SpaceReclaimed") or 0) if space else None)
    return 0


def simple_prune(ctx: Any, argv: list[str], prog: str, *, summary: str, warning: str, path: str,
                 key: str, title: str, space: bool = True) -> int:
    """A whole ``prune`` command with no options of its own (containers, networks)."""
    f = prune_flags(prog, summary, "until=<timestamp>")
    opts, args = f.parse(argv)
    f.require(args, exact=0)
    if not confirmed(opts, warning):
        return 0
    return post_prune(ctx, path, parse_filters(opts.filter), key, title, space)
