"""The CLI's command framework: docker's flag syntax, usage and errors (spf13/pflag as docker
configures it), and :func:`command`, which every command function wears.

A command is a function ``run(ctx, argv, prog) -> int`` named in :data:`core.cli.main.COMMANDS`;
it makes a :class:`Flags`, adds its flags, parses ``argv`` and checks its arguments with
:meth:`Flags.require`.  Errors are :class:`~core.cli.client.CLIError` with docker's messages and
exit statuses (125 for a bad flag, 1 for a wrong number of arguments); ``--help`` prints the usage
and the command exits 0.  :func:`parser` gives an :mod:`argparse` parser with the same error
behaviour, for ``core daemon``.

Standard library only, and little of it: every command imports this module on start-up.
"""
from __future__ import annotations

import sys

from core.cli.client import CLIError

TYPE_CHECKING = False
if TYPE_CHECKING:
    import argparse
    from typing import Any, Callable

_TRUE = ("1", "t", "T", "TRUE", "true", "True")
_FALSE = ("0", "f", "F", "FALSE", "false", "False")


class Flag:
    """One flag: its spellings, kind (``bool``, ``string``, ``int``, ``list``), default and help;
    ``dest`` names its attribute in :class:`Values`, ``convert`` checks or converts each value
    (a ValueError becomes docker's ``invalid argument`` message)."""

    def __init__(self, long: str, short: str | None, kind: str, default: Any, help: str,
                 typename: str | None, hidden: bool, dest: str | None, convert: Callable[[str], Any] | None,
                 show_default: bool) -> None:
        self.long, self.short, self.kind, self.default, self.help = long, short, kind, default, help
        self.typename = typename if typename is not None else {"bool": "", "string": "string", "int": "int",
                                                                 "list": "list"}.get(kind, kind)
        self.hidden = hidden
        self.dest = dest or long.replace("-", "_")
        self.convert = convert
        self.show_default = show_default

    @property
    def label(self) -> str:
        return f"-{self.short}, --{self.long}" if self.short else f"--{self.long}"


class Values:
    """Parsed flag values as attributes; ``changed`` holds the long names given on the line."""

    def __init__(self) -> None:
        self.changed: set[str] = set()

    def __repr__(self) -> str:
        return f"Values({self.__dict__!r})"


class Flags:
    """Docker's command-line syntax (spf13/pflag as docker configures it).

    ``--name value``, ``--name=value``, ``-abc`` (bools combined), ``-p80:80``, ``-e=A``, ``--``;
    booleans take ``--rm=false``; list flags repeat.  With ``interspersed=False`` (run, create,
    exec) flags end at the first argument, the rest being the container's command.  Errors are
    docker's messages with exit status 125; ``--help`` prints the command's usage.
    """

    def __init__(self, prog: str, use: str, short: str, aliases: str = "", long: str = "",
                 interspersed: bool = True, help_shorthand: bool = True) -> None:
        self.prog, self.use, self.short, self.aliases, self.long = prog, use, short, aliases, long
        self.interspersed = interspersed
        self.help_shorthand = help_shorthand
        self.flags: list[Flag] = []
        self._long: dict[str, Flag] = {}
        self._short: dict[str, Flag] = {}

    def add(self, long: str, short: str | None = None, kind: str = "bool", default: Any = None, help: str = "",
            typename: str | None = None, hidden: bool = False, dest: str | None = None,
            convert: Callable[[str], Any] | None = None, show_default: bool = True) -> "Flags":
        if default is None:
            default = {"bool": False, "list": None, "int": 0}.get(kind, "")
        flag = Flag(long, short, kind, default, help, typename, hidden, dest, convert, show_default)
        self.flags.append(flag)
        self._long[long] = flag
        if short:
            self._short[short] = flag
        return self

    def format_flag(self) -> "Flags":
        return self.add("format", kind="string", help=FORMAT_HELP)

    # -- usage --

    @property
    def use_line(self) -> str:
        return f"{self.prog} {self.use}".rstrip()

    def usage(self) -> str:
        out = [f"Usage:  {self.use_line}", "", self.long or self.short]
        if self.aliases:
            out += ["", "Aliases:", f"  {self.aliases}"]
        lines, width = [], 0
        for f in sorted(self.flags, key=lambda f: f.long):
            if f.hidden:
                continue
            head = (f"  -{f.short}, --{f.long}" if f.short else f"      --{f.long}") + \
                (f" {f.typename}" if f.typename else "")
            width = max(width, len(head))
            text = f.help
            if f.show_default and f.default not in (False, "", 0, None, []) and f.kind != "list":
                text += f' (default "{f.default}")' if f.typename == "string" else \
                    f" (default {'true' if f.default is True else f.default})"
            lines.append((head, text))
        if lines:
            out += ["", "Options:"]
            for head, text in lines:
                pad = " " * (width - len(head) + 3)
                body = text.replace("\n", "\n" + " " * (width + 3))
                out.append(f"{head}{pad}{body}".rstrip())
        return "\n".join(out) + "\n"

    # -- errors --

    def flag_error(self, message: str) -> CLIError:
        return CLIError(f"{message}\n\nUsage:  {self.use_line}\n\nRun '{self.prog} --help' for more information", 125)

    def args_error(self, requirement: str) -> CLIError:
        return CLIError(f"core: '{self.prog}' {requirement}\n\nUsage:  {self.use_line}\n\n"
                        f"See '{self.prog} --help' for more information", 1)

    def require(self, args: list[str], least: int = 0, most: int | None = None, exact: int | None = None) -> None:
        def plural(n: int) -> str:
            return "argument" if n == 1 else "arguments"

        if exact is not None and len(args) != exact:
            if exact == 0:
                raise CLIError(f"core: '{self.prog}' accepts no arguments\n\nUsage:  {self.use_line}\n\n"
                               f"Run '{self.prog} --help' for more information", 1)
            raise self.args_error(f"requires {exact} {plural(exact)}")
        if most is not None and least and not (least <= len(args) <= most):
            raise self.args_error(f"requires at least {least} and at most {most} {plural(most)}")
        if len(args) < least:
            raise self.args_error(f"requires at least {least} {plural(least)}")
        if most is not None and len(args) > most:
            raise self.args_error(f"requires at most {most} {plural(most)}")

    # -- parsing --

    def _set(self, ns: Values, flag: Flag, value: str | None, explicit: bool) -> None:
        ns.changed.add(flag.long)
        if flag.kind == "bool":
            if value is None or not explicit:
                v: Any = True
            elif value in _TRUE:
                v = True
            elif value in _FALSE:
                v = False
            else:
                raise self.flag_error(f'invalid argument "{value}" for "{flag.label}" flag: '
                                      f'strconv.ParseBool: parsing "{value}": invalid syntax')
            setattr(ns, flag.dest, v)
            return
        assert value is not None
        if flag.kind == "int":
            try:
                v = int(value, 10)
            except ValueError:
                raise self.flag_error(f'invalid argument "{value}" for "{flag.label}" flag: '
                                      f'strconv.ParseInt: parsing "{value}": invalid syntax') from None
        else:
            v = value
        if flag.convert is not None:
            try:
                v = flag.convert(v)
            except ValueError as exc:
                raise self.flag_error(f'invalid argument "{value}" for "{flag.label}" flag: {exc}') from None
        if flag.kind == "list":
            current = getattr(ns, flag.dest, None)
            if current is None:
                current = []
                setattr(ns, flag.dest, current)
            current.append(v)
        else:
            setattr(ns, flag.dest, v)

    def _argument(self, inline: str | None, argv: list[str], i: int, spelled: str) -> tuple[str, int]:
        """A flag's value: given with it (``--name=x``, ``-px``), else the next argument."""
        if inline is not None:
            return inline, i
        if i < len(argv):
            return argv[i], i + 1
        raise self.flag_error(f"flag needs an argument: {spelled}")

    def parse(self, argv: list[str]) -> tuple[Values, list[str]]:
        ns = Values()
        for f in self.flags:
            setattr(ns, f.dest, list(f.default) if isinstance(f.default, list) else f.default)
        args: list[str] = []
        i = 0
        want_help = False
        while i < len(argv):
            a = argv[i]
            i += 1
            if a == "--":
                args += argv[i:]
                break
            if not a.startswith("-") or a == "-":
                args.append(a)
                if not self.interspersed:
                    args += argv[i:]
                    break
                continue
            if a.startswith("--"):
                name, eq, value = a[2:].partition("=")
                flag = self._long.get(name)
                if flag is None:
                    if name == "help":
                        want_help = True
                        continue
                    raise self.flag_error(f"unknown flag: --{name}")
                if flag.kind == "bool":
                    self._set(ns, flag, value if eq else None, bool(eq))
                else:
                    value, i = self._argument(value if eq else None, argv, i, f"--{name}")
                    self._set(ns, flag, value, True)
                continue
            shorts = a[1:]
            j = 0
            while j < len(shorts):
                c = shorts[j]
                flag = self._short.get(c)
                if flag is None:
                    if c == "h" and self.help_shorthand:
                        want_help = True
                        j += 1
                        continue
                    raise self.flag_error(f"unknown shorthand flag: '{c}' in -{shorts}")
                rest = shorts[j + 1:]
                if flag.kind == "bool":
                    if rest.startswith("="):
                        self._set(ns, flag, rest[1:], True)
                        break
                    self._set(ns, flag, None, False)
                    j += 1
                    continue
                inline = (rest[1:] if rest.startswith("=") else rest) if rest else None
                value, i = self._argument(inline, argv, i, f"'{c}' in -{shorts}")
                self._set(ns, flag, value, True)
                break
        if want_help:
            sys.stdout.write(self.usage())
            raise HelpShown()
        return ns, args


class HelpShown(CLIError):
    """--help was printed: the command exits 0."""

    def __init__(self) -> None:
        super().__init__("", 0)


FORMAT_HELP = ("Format output using a custom template:\n"
               "'table':            Print output in table format with column headers (default)\n"
               "'table TEMPLATE':   Print output in table format using the given Go template\n"
               "'json':             Print in JSON format\n"
               "'TEMPLATE':         Print output using the given Go template.")
INSPECT_FORMAT_HELP = ("Format output using a custom template:\n"
                       "'json':             Print in JSON format\n"
                       "'TEMPLATE':         Print output using the given Go template.")


def command(fn: Callable[..., int]) -> Callable[..., int]:
    """Run a command: ``--help`` exits 0 without doing anything else."""

    def wrapper(ctx: Any, argv: list[str], prog: str) -> int:
        try:
            return fn(ctx, argv, prog)
        except HelpShown:
            return 0

    wrapper.__name__ = fn.__name__
    wrapper.__doc__ = fn.__doc__
    return wrapper


def parse_filters(values: list[str] | None) -> dict[str, list[str]]:
    """``--filter name=value`` (repeatable) as the API's ``filters`` map: name → values."""
    filters: dict[str, list[str]] = {}
    for f in values or []:
        key, eq, value = f.partition("=")
        if not eq:
            raise CLIError("bad format of filter (expected name=value)", 125)
        filters.setdefault(key.strip().lower(), []).append(value)
    return filters


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
