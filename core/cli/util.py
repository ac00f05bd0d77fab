"""Helpers shared by the CLI's commands: argument parsing, --format, tables.

:mod:`argparse` (for ``core daemon``; the other commands parse docker's way, with
:class:`core.cli.cmd_container.Flags`) is imported when a parser is made."""
from __future__ import annotations

import sys

from core.cli.client import CLIError

TYPE_CHECKING = False
if TYPE_CHECKING:
    import argparse
    from typing import Any, Callable, Iterable

_PARSER: Any = None


def parser(prog: str, usage: str, description: str) -> argparse.ArgumentParser:
    """argparse with docker's behaviour on bad flags: a short message, exit 125."""
    global _PARSER
    import argparse

    if _PARSER is None:
        class Parser(argparse.ArgumentParser):
            def error(self, message: str) -> None:  # type: ignore[override]
                raise CLIError(f"{self.prog}: {message}\nSee '{self.prog} --help'.", 125)

        _PARSER = Parser
    return _PARSER(prog=prog, usage=f"{prog} {usage}".rstrip(), description=description,
                   formatter_class=argparse.RawDescriptionHelpFormatter)


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
