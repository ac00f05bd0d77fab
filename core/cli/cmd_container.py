"""Container commands: ps, stop, kill, restart, pause, unpause, rm, logs, wait, inspect, top, port,
rename, container prune, stats — and the docker-style flag parser every container command uses.

``run``, ``create``, ``start``, ``attach`` and ``exec`` live in :mod:`core.cli.cmd_run`, ``cp`` in
:mod:`core.cli.cmd_cp`.  Output, flags and exit codes follow docker 28's CLI.
"""
from __future__ import annotations

import sys
import time

from core.cli.client import APIError, CLIError
from core.cli.lean import dumps

TYPE_CHECKING = False
if TYPE_CHECKING:
    from typing import Any, Callable, Iterable

# ================================================================================================
# A pflag-like parser: docker's flag syntax, messages and exit codes
# ================================================================================================

_TRUE = ("1", "t", "T", "TRUE", "true", "True")
_FALSE = ("0", "f", "F", "FALSE", "false", "False")


class Flag:
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
                text += f' (default "{f.default}")' if f.kind == "string" else \
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
                elif eq:
                    self._set(ns, flag, value, True)
                elif i < len(argv):
                    self._set(ns, flag, argv[i], True)
                    i += 1
                else:
                    raise self.flag_error(f"flag needs an argument: --{name}")
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
                if rest:
                    self._set(ns, flag, rest[1:] if rest.startswith("=") else rest, True)
                elif i < len(argv):
                    self._set(ns, flag, argv[i], True)
                    i += 1
                else:
                    raise self.flag_error(f"flag needs an argument: '{c}' in -{shorts}")
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


def fail_joined(errors: list[str]) -> int:
    """docker's errors.Join: every message on stderr, exit status 1."""
    if errors:
        sys.stderr.write("\n".join(e.rstrip("\n") for e in errors) + "\n")
        return 1
    return 0


def _close(resp: Any) -> None:
    try:
        resp.sock.close()
    except OSError:
        pass


def post(ctx: Any, path: str, params: dict[str, Any] | None = None, body: Any = None) -> Any:
    resp = ctx.client.request("POST", path, params, body=body, raw_body=None if body is not None else b"")
    try:
        return resp.json() if resp.status not in (204, 304) else None
    except (ValueError, CLIError):
        return None
    finally:
        _close(resp)


def parse_filters(values: list[str] | None) -> dict[str, list[str]]:
    filters: dict[str, list[str]] = {}
    for f in values or []:
        key, eq, value = f.partition("=")
        if not eq:
            raise CLIError("bad format of filter (expected name=value)", 125)
        filters.setdefault(key.strip().lower(), []).append(value)
    return filters


# ================================================================================================
# Formatting: human sizes, ports, ps columns
# ================================================================================================


def human_size(n: float, precision: int = 4) -> str:
    from core.cli.render import human_size as hs

    return hs(n, precision)


def bytes_size(n: float) -> str:
    """docker's units.BytesSize: binary units, 4 significant digits ("1.5MiB")."""
    units = ["B", "KiB", "MiB", "GiB", "TiB", "PiB", "EiB"]
    i = 0
    while n >= 1024 and i < len(units) - 1:
        n /= 1024
        i += 1
    return f"{_g4(n)}{units[i]}"


def _g4(n: float) -> str:
    text = f"{n:.4g}"
    if "e" in text:  # Go's %g switches to exponent later than Python's for 4 digits; keep plain
        text = f"{n:.0f}"
    return text


def truncate_id(ident: str) -> str:
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
    from core.cli.template import _goquote

    return _goquote(s)


def format_command(command: str, trunc: bool = True) -> str:
    """The COMMAND column: quoted as Go's strconv.Quote, cut to 20 columns with "…"."""
    return go_quote(ellipsis(command, 20) if trunc else command)


def displayable_ports(ports: list[dict[str, Any]] | None) -> str:
    """docker's DisplayablePorts: "0.0.0.0:80->8080/tcp, 9000-9001/tcp" (consecutive ports grouped)."""
    ports = sorted(ports or [], key=lambda p: (p.get("PrivatePort", 0), p.get("IP", "") or "",
                                               p.get("PublicPort", 0) or 0, p.get("Type", "")))
    groups: dict[str, list[int]] = {}
    order: list[str] = []
    result: list[str] = []
    mappings: list[str] = []

    def join_host(ip: str, port: Any) -> str:
        return f"[{ip}]:{port}" if ":" in ip else f"{ip}:{port}"

    def form(key: str, first: int, last: int) -> str:
        ip, _, kind = key.rpartition("/")
        group = str(first) if first == last else f"{first}-{last}"
        if ip:
            group = f"{join_host(ip, group)}->{group}"
        return f"{group}/{kind}"

    for p in ports:
        current = p.get("PrivatePort", 0)
        kind = p.get("Type", "tcp")
        key = kind
        ip = p.get("IP") or ""
        if ip:
            public = p.get("PublicPort", 0) or 0
            if public != current:
                mappings.append(f"{join_host(ip, public)}->{current}/{kind}")
                continue
            key = f"{ip}/{kind}"
        group = groups.get(key)
        if group is None:
            groups[key] = [current, current]
            order.append(key)
            continue
        if current == group[1] + 1:
            group[1] = current
            continue
        result.append(form(key, group[0], group[1]))
        groups[key] = [current, current]
    for key in order:
        g = groups[key]
        result.append(form(key, g[0], g[1]))
    return ", ".join(result + mappings)


def container_status(state: dict[str, Any], now: float | None = None) -> str:
    """Docker's human STATUS for a container's inspect ``State`` ("Up 3 seconds", "Exited (0) 2
    minutes ago", "Created", "Up 1 second (Paused)", "Restarting (1) 5 seconds ago").  ``ps``
    shows the daemon's own ``Status``; this is the same rule, for daemons that leave it empty."""
    from core.cli.render import human_duration

    now = time.time() if now is None else now
    status = (state.get("Status") or "").lower()
    started = parse_time(state.get("StartedAt"))
    finished = parse_time(state.get("FinishedAt"))
    health = (state.get("Health") or {}).get("Status", "")
    if state.get("Running") or status in ("running", "paused", "restarting"):
        if state.get("Paused") or status == "paused":
            return f"Up {human_duration(now - started)} (Paused)"
        if state.get("Restarting") or status == "restarting":
            return f"Restarting ({state.get('ExitCode', 0)}) {human_duration(now - finished)} ago"
        text = f"Up {human_duration(now - started)}"
        if health and health != "none":
            text += f" ({'health: starting' if health == 'starting' else health})"
        return text
    if status == "removing":
        return "Removal In Progress"
    if status == "dead":
        return "Dead"
    if status == "created" or not started:
        return "Created"
    return f"Exited ({state.get('ExitCode', 0)}) {human_duration(now - finished)} ago"


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


def _ps_image(c: dict[str, Any], trunc: bool) -> str:
    image = c.get("Image") or ""
    if not image:
        return "<no image>"
    if trunc:
        if truncate_id(c.get("ImageID") or "") == truncate_id(image):
            return truncate_id(image)
        name = image.split("@", 1)[0]
        return familiar(name)
    return image


def _ps_names(c: dict[str, Any], trunc: bool) -> str:
    names = [n[1:] if n.startswith("/") else n for n in c.get("Names") or []]
    if trunc:
        for n in names:
            if "/" not in n:
                names = [n]
                break
    return ",".join(names)


def _ps_size(c: dict[str, Any]) -> str:
    srw = human_size(c.get("SizeRw") or 0, 3)
    root = c.get("SizeRootFs") or 0
    return f"{srw} (virtual {human_size(root, 3)})" if root > 0 else srw


def ps_row(c: dict[str, Any], trunc: bool = True, now: float | None = None) -> dict[str, Any]:
    """One container of GET /containers/json as docker's ContainerContext sees it (keys sorted
    as its JSON output has them)."""
    from core.cli.render import human_duration

    now = time.time() if now is None else now
    created = c.get("Created") or 0
    labels = c.get("Labels") or {}
    mounts = []
    for m in c.get("Mounts") or []:
        name = m.get("Name") or m.get("Source") or ""
        mounts.append(ellipsis(name, 15) if trunc else name)
    networks = list(((c.get("NetworkSettings") or {}).get("Networks") or {}).keys())
    status = c.get("Status") or ""
    if not status and isinstance(c.get("State"), dict):
        status = container_status(c["State"], now)
    state = c.get("State") if isinstance(c.get("State"), str) else ((c.get("State") or {}).get("Status") or "")
    return {
        "Command": format_command(c.get("Command") or "", trunc),
        "CreatedAt": _timestamp(created),
        "ID": truncate_id(c.get("Id") or "") if trunc else c.get("Id") or "",
        "Image": _ps_image(c, trunc),
        "Labels": ",".join(sorted(f"{k}={v}" for k, v in labels.items())),
        "LocalVolumes": str(sum(1 for m in c.get("Mounts") or [] if m.get("Driver") == "local")),
        "Mounts": ",".join(mounts),
        "Names": _ps_names(c, trunc),
        "Networks": ",".join(networks),
        "Platform": _platform(c),
        "Ports": displayable_ports(c.get("Ports")),
        "RunningFor": (human_duration(now - created) + " ago") if created else "",
        "Size": _ps_size(c),
        "State": state,
        "Status": status,
    }


def _platform(c: dict[str, Any]) -> Any:
    desc = c.get("ImageManifestDescriptor") or {}
    p = desc.get("platform") if isinstance(desc, dict) else None
    if not p:
        return None
    text = "/".join(x for x in (p.get("os"), p.get("architecture"), p.get("variant")) if x)
    return text


def _timestamp(epoch: float) -> str:
    """Go's time.Time.String() of a Unix time, in local time."""
    if not epoch:
        return ""
    return time.strftime("%Y-%m-%d %H:%M:%S %z %Z", time.localtime(epoch))


PS_HEADERS = {"ID": "CONTAINER ID", "Names": "NAMES", "Image": "IMAGE", "Command": "COMMAND",
              "CreatedAt": "CREATED AT", "RunningFor": "CREATED", "Ports": "PORTS", "State": "STATE",
              "Status": "STATUS", "Size": "SIZE", "Labels": "LABELS", "Mounts": "MOUNTS",
              "LocalVolumes": "LOCAL VOLUMES", "Networks": "NETWORKS", "Platform": "PLATFORM"}
PS_TABLE = "table {{.ID}}\t{{.Image}}\t{{.Command}}\t{{.RunningFor}}\t{{.Status}}\t{{.Ports}}\t{{.Names}}"


def _render(fmt: str, rows: list[dict[str, Any]], headers: dict[str, str], what: str = "template parsing error",
            code: int = 125) -> None:
    """``--format`` of a list command (``table`` with docker's headers, ``json``, a template)."""
    from core.cli.template import TemplateError, compile_template

    try:
        tmpl = compile_template(fmt)
    except TemplateError as exc:
        raise CLIError(f"{what}: {exc}", code) from None
    try:
        sys.stdout.write(tmpl.render_all(rows, headers))
    except TemplateError as exc:
        raise CLIError(f"template parsing error: {exc}", 1) from None


# ================================================================================================
# ps
# ================================================================================================


def _ps_flags(prog: str) -> Flags:
    f = Flags(prog, "[OPTIONS]", "List containers",
              aliases="core container ls, core container list, core container ps, core ps")
    f.add("all", "a", help="Show all containers (default shows just running)")
    f.add("filter", "f", "list", typename="filter", help="Filter output based on conditions provided")
    f.format_flag()
    f.add("last", "n", "int", default=-1, help="Show n last created containers (includes all states)")
    f.add("latest", "l", help="Show the latest created container (includes all states)")
    f.add("no-trunc", help="Don't truncate output")
    f.add("quiet", "q", help="Only display container IDs")
    f.add("size", "s", help="Display total file sizes")
    return f


@command
def ps(ctx: Any, argv: list[str], prog: str) -> int:
    flags = _ps_flags(prog)
    opts, args = flags.parse(argv)
    flags.require(args, exact=0)
    fmt = opts.format
    if fmt and opts.quiet:
        sys.stderr.write("WARNING: Ignoring custom format, because both --format and --quiet are set.\n")
    limit = opts.last
    if opts.latest and limit == -1:
        limit = 1
    size = opts.size
    if fmt and not opts.quiet and "size" not in opts.changed and ".Size" in fmt:
        size = True
    if fmt:  # always validate the template, as docker does
        from core.cli.template import TemplateError, compile_template

        try:
            compile_template(fmt)
        except TemplateError as exc:
            raise CLIError(f"failed to parse template: {exc}", 1) from None
    filters = parse_filters(opts.filter)
    params = {"all": opts.all or None, "limit": limit if limit > 0 else None, "size": size or None,
              "filters": dumps(filters) if filters else None}
    containers = ctx.client.get_json("/containers/json", params) or []
    trunc = not opts.no_trunc
    if opts.quiet:
        sys.stdout.write("".join((truncate_id(c["Id"]) if trunc else c["Id"]) + "\n" for c in containers))
        return 0
    now = time.time()
    rows = [ps_row(c, trunc, now) for c in containers]
    if not fmt or fmt == "table":
        fmt = PS_TABLE + ("\t{{.Size}}" if size else "")
    elif fmt == "raw":
        fmt = ("container_id: {{.ID}}\nimage: {{.Image}}\ncommand: {{.Command}}\ncreated_at: {{.CreatedAt}}\n"
               "state: {{- pad .State 1 0}}\nstatus: {{- pad .Status 1 0}}\nnames: {{.Names}}\n"
               "labels: {{- pad .Labels 1 0}}\nports: {{- pad .Ports 1 0}}\n" + ("size: {{.Size}}\n" if size else ""))
    _render(fmt, rows, PS_HEADERS)
    return 0


# ================================================================================================
# stop, kill, restart, pause, unpause, rm, wait, rename
# ================================================================================================


def _each(ctx: Any, names: Iterable[str], op: Callable[[str], Any]) -> int:
    """Run ``op`` on each container, print each name that succeeded, then the errors (exit 1)."""
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


def _stop_or_restart(ctx: Any, argv: list[str], prog: str, action: str, summary: str) -> int:
    """``stop`` and ``restart``: the same flags, one endpoint each."""
    f = Flags(prog, "[OPTIONS] CONTAINER [CONTAINER...]", summary,
              aliases=f"core container {action}, core {action}")
    f.add("signal", "s", "string", help="Signal to send to the container")
    f.add("timeout", "t", "int", help="Seconds to wait before killing the container")
    f.add("time", None, "int", dest="time", hidden=True,
          help="Seconds to wait before killing the container (deprecated: use --timeout)")
    opts, args = f.parse(argv)
    f.require(args, least=1)
    if "time" in opts.changed and "timeout" in opts.changed:
        raise CLIError("conflicting options: cannot specify both --timeout and --time", 1)
    timeout = opts.timeout if "timeout" in opts.changed else opts.time if "time" in opts.changed else None
    params = {"t": timeout, "signal": opts.signal or None}
    return _each(ctx, args, lambda c: post(ctx, f"/containers/{c}/{action}", params))


@command
def stop(ctx: Any, argv: list[str], prog: str) -> int:
    return _stop_or_restart(ctx, argv, prog, "stop", "Stop one or more running containers")


@command
def restart(ctx: Any, argv: list[str], prog: str) -> int:
    return _stop_or_restart(ctx, argv, prog, "restart", "Restart one or more containers")


@command
def kill(ctx: Any, argv: list[str], prog: str) -> int:
    f = Flags(prog, "[OPTIONS] CONTAINER [CONTAINER...]", "Kill one or more running containers",
              aliases="core container kill, core kill")
    f.add("signal", "s", "string", help="Signal to send to the container")
    opts, args = f.parse(argv)
    f.require(args, least=1)
    return _each(ctx, args, lambda c: post(ctx, f"/containers/{c}/kill", {"signal": opts.signal or None}))


@command
def pause(ctx: Any, argv: list[str], prog: str) -> int:
    f = Flags(prog, "CONTAINER [CONTAINER...]", "Pause all processes within one or more containers",
              aliases="core container pause, core pause")
    _opts, args = f.parse(argv)
    f.require(args, least=1)
    return _each(ctx, args, lambda c: post(ctx, f"/containers/{c}/pause"))


@command
def unpause(ctx: Any, argv: list[str], prog: str) -> int:
    f = Flags(prog, "CONTAINER [CONTAINER...]", "Unpause all processes within one or more containers",
              aliases="core container unpause, core unpause")
    _opts, args = f.parse(argv)
    f.require(args, least=1)
    return _each(ctx, args, lambda c: post(ctx, f"/containers/{c}/unpause"))


@command
def rm(ctx: Any, argv: list[str], prog: str) -> int:
    f = Flags(prog, "[OPTIONS] CONTAINER [CONTAINER...]", "Remove one or more containers",
              aliases="core container rm, core container remove, core rm")
    f.add("force", "f", help="Force the removal of a running container (uses SIGKILL)")
    f.add("link", "l", help="Remove the specified link")
    f.add("volumes", "v", help="Remove anonymous volumes associated with the container")
    opts, args = f.parse(argv)
    f.require(args, least=1)
    errors = []
    for name in args:
        ident = name.strip("/")
        if not ident:
            errors.append("container name cannot be empty")
            continue
        try:
            resp = ctx.client.request("DELETE", f"/containers/{ident}", {
                "v": opts.volumes or None, "force": opts.force or None, "link": opts.link or None})
            _close(resp)
        except APIError as exc:
            if opts.force and exc.status == 404:
                sys.stderr.write(exc.message + "\n")
                continue
            errors.append(exc.message)
            continue
        sys.stdout.write(name + "\n")
        sys.stdout.flush()
    return fail_joined(errors)


def wait_container(ctx: Any, ident: str, condition: str | None = None) -> dict[str, Any]:
    resp = ctx.client.request("POST", f"/containers/{ident}/wait", {"condition": condition or None}, raw_body=b"")
    try:
        return resp.json() or {}
    finally:
        _close(resp)


@command
def wait(ctx: Any, argv: list[str], prog: str) -> int:
    f = Flags(prog, "CONTAINER [CONTAINER...]", "Block until one or more containers stop, then print their exit codes",
              aliases="core container wait, core wait")
    _opts, args = f.parse(argv)
    f.require(args, least=1)
    errors = []
    for name in args:
        try:
            result = wait_container(ctx, name)
        except APIError as exc:
            errors.append(exc.message)
            continue
        if (result.get("Error") or {}).get("Message"):
            errors.append(result["Error"]["Message"])
            continue
        sys.stdout.write(f"{result.get('StatusCode', 0)}\n")
        sys.stdout.flush()
    return fail_joined(errors)


@command
def rename(ctx: Any, argv: list[str], prog: str) -> int:
    f = Flags(prog, "CONTAINER NEW_NAME", "Rename a container", aliases="core container rename, core rename")
    _opts, args = f.parse(argv)
    f.require(args, exact=2)
    old, new = args[0].strip(), args[1].strip()
    if not old or not new:
        raise CLIError("Error: Neither old nor new names may be empty", 1)
    try:
        post(ctx, f"/containers/{old}/rename", {"name": new})
    except APIError as exc:
        sys.stderr.write(exc.message + "\n")
        raise CLIError(f"Error: failed to rename container named {old}", 1) from None
    return 0


# ================================================================================================
# logs
# ================================================================================================

_DURATION_UNITS = {"ns": 1e-9, "us": 1e-6, "µs": 1e-6, "μs": 1e-6, "ms": 1e-3, "s": 1.0, "m": 60.0, "h": 3600.0}


def parse_go_duration(text: str) -> float:
    """Go's time.ParseDuration ("1h30m", "10s", "1.5h", "-5m") in seconds; ValueError otherwise."""
    s = text
    if not s:
        raise ValueError(f'time: invalid duration "{text}"')
    sign = 1.0
    if s[0] in "+-":
        sign = -1.0 if s[0] == "-" else 1.0
        s = s[1:]
    if s == "0":
        return 0.0
    if not s:
        raise ValueError(f'time: invalid duration "{text}"')
    total = 0.0
    while s:
        num = ""
        while s and (s[0].isdigit() or s[0] == "."):
            num, s = num + s[0], s[1:]
        if not num or num == ".":
            raise ValueError(f'time: invalid duration "{text}"')
        unit = ""
        while s and not (s[0].isdigit() or s[0] == "."):
            unit, s = unit + s[0], s[1:]
        if not unit:
            raise ValueError(f'time: missing unit in duration "{text}"')
        if unit not in _DURATION_UNITS:
            raise ValueError(f'time: unknown unit "{unit}" in duration "{text}"')
        total += float(num) * _DURATION_UNITS[unit]
    return sign * total


def get_timestamp(value: str, now: float | None = None) -> str:
    """docker's timetypes.GetTimestamp: a duration before now ("10m"), a Unix time ("1700000000.5"),
    or an RFC 3339 date ("2013-01-02T13:23:37Z", "2013-01-02"), as "seconds.nanoseconds"."""
    import datetime

    now = time.time() if now is None else now
    if not value:
        return ""
    try:
        d = parse_go_duration(value)
        t = now - d
        return f"{int(t)}.{int(round((t - int(t)) * 1e9)):09d}"
    except ValueError:
        pass
    if all(c.isdigit() or c == "." for c in value) and value.count(".") <= 1:
        sec, _, frac = value.partition(".")
        return f"{int(sec or 0)}.{(frac + '000000000')[:9]}" if frac else value
    text = value
    local = not (text.endswith("Z") or "+" in text[10:] or (len(text) > 19 and "-" in text[19:]))
    if text.endswith("Z"):
        text = text[:-1] + "+00:00"
    for fmt in ("%Y-%m-%dT%H:%M:%S.%f%z", "%Y-%m-%dT%H:%M:%S%z", "%Y-%m-%dT%H:%M%z", "%Y-%m-%dT%H%z",
                "%Y-%m-%dT%H:%M:%S.%f", "%Y-%m-%dT%H:%M:%S", "%Y-%m-%dT%H:%M", "%Y-%m-%dT%H", "%Y-%m-%d"):
        try:
            dt = datetime.datetime.strptime(text, fmt)
        except ValueError:
            continue
        if dt.tzinfo is None and not local:
            dt = dt.replace(tzinfo=datetime.timezone.utc)
        t = dt.timestamp()
        return f"{int(t)}.{int(round((t - int(t)) * 1e9)):09d}"
    raise ValueError(f'failed to parse value as time or duration: "{value}"')


@command
def logs(ctx: Any, argv: list[str], prog: str) -> int:
    f = Flags(prog, "[OPTIONS] CONTAINER", "Fetch the logs of a container", aliases="core container logs, core logs")
    f.add("details", help="Show extra details provided to logs")
    f.add("follow", "f", help="Follow log output")
    f.add("since", None, "string",
          help='Show logs since timestamp (e.g. "2013-01-02T13:23:37Z") or relative (e.g. "42m" for 42 minutes)')
    f.add("tail", "n", "string", default="all", help="Number of lines to show from the end of the logs")
    f.add("timestamps", "t", help="Show timestamps")
    f.add("until", None, "string",
          help='Show logs before a timestamp (e.g. "2013-01-02T13:23:37Z") or relative (e.g. "42m" for 42 minutes)')
    opts, args = f.parse(argv)
    f.require(args, exact=1)
    info = ctx.client.get_json(f"/containers/{args[0]}/json")
    tty = bool((info.get("Config") or {}).get("Tty"))
    try:
        since = get_timestamp(opts.since) if opts.since else None
        until = get_timestamp(opts.until) if opts.until else None
    except ValueError as exc:
        raise CLIError(str(exc), 1) from None
    params = {"stdout": True, "stderr": True, "follow": opts.follow or None, "timestamps": opts.timestamps or None,
              "since": since, "until": until, "tail": opts.tail, "details": opts.details or None}
    resp = ctx.client.request("GET", f"/containers/{info.get('Id') or args[0]}/logs", params)
    sys.stdout.flush()
    try:
        from core.cli.hijack import Demux, _write_all

        demux = None if tty else Demux(1, 2)
        for chunk in resp.iter_chunks():
            if demux is not None:
                demux.feed(chunk)
            else:
                _write_all(1, chunk)
    except BrokenPipeError:
        pass
    finally:
        _close(resp)
    return 0


# ================================================================================================
# inspect (generic and container)
# ================================================================================================

INSPECT_TYPES = ["config", "container", "image", "network", "node", "plugin", "secret", "service", "task", "volume"]
_SWARM_TYPES = {"service", "task", "node", "secret", "config"}


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


@command
def inspect(ctx: Any, argv: list[str], prog: str) -> int:
    """``core inspect``: containers, then images, networks, volumes (and swarm objects on a manager)."""
    f = Flags(prog, "[OPTIONS] NAME|ID [NAME|ID...]", "Return low-level information on core objects")
    f.add("format", "f", "string", help=INSPECT_FORMAT_HELP)
    f.add("size", "s", help="Display total file sizes if the type is container")
    f.add("type", None, "string", help="Only inspect objects of the given type")
    opts, args = f.parse(argv)
    f.require(args, least=1)
    kind = opts.type
    if "type" in opts.changed and not kind:
        raise CLIError('type is empty: must be one of "' + '", "'.join(INSPECT_TYPES) + '"', 1)
    if kind and kind not in INSPECT_TYPES:
        raise CLIError(f'unknown type: "{kind}": must be one of "' + '", "'.join(INSPECT_TYPES) + '"', 1)
    order = ["container", "image", "network", "volume", "service", "task", "node", "plugin", "secret", "config"]
    swarm: list[bool] = []

    def is_manager() -> bool:
        if not swarm:
            try:
                info = ctx.client.get_json("/info")
                swarm.append(bool((info.get("Swarm") or {}).get("ControlAvailable")))
            except CLIError as exc:
                sys.stderr.write(exc.message + "\n")
                swarm.append(False)
        return swarm[0]

    def get(what: str, ref: str) -> Any:
        if what == "container":
            return ctx.client.get_json(f"/containers/{ref}/json", {"size": opts.size or None})
        if what == "image":
            return ctx.client.get_json(f"/images/{ref}/json")
        if what == "plugin":
            return ctx.client.get_json(f"/plugins/{ref}/json")
        if what == "service":
            return ctx.client.get_json(f"/services/{ref}", {"insertDefaults": True})
        return ctx.client.get_json(f"/{what}s/{ref}")

    found, errors = [], []
    for ref in args:
        for what in order:
            if kind and what != kind:
                continue
            if not kind and what in _SWARM_TYPES and not is_manager():
                continue
            try:
                obj = get(what, ref)
            except APIError as exc:
                if not kind and (exc.status in (404, 501) or "not supported" in exc.detail
                                 or "invalid reference format" in exc.detail):
                    continue
                errors.append(exc.message)
                break
            if opts.size and what != "container":
                sys.stderr.write(f"WARNING: --size ignored for {what}\n")
            found.append(obj)
            break
        else:
            errors.append(f"Error: No such object: {ref}")
    return print_inspect(opts.format, found, errors)


@command
def container_inspect(ctx: Any, argv: list[str], prog: str) -> int:
    f = Flags(prog, "[OPTIONS] CONTAINER [CONTAINER...]", "Display detailed information on one or more containers")
    f.add("format", "f", "string", help=INSPECT_FORMAT_HELP)
    f.add("size", "s", help="Display total file sizes")
    opts, args = f.parse(argv)
    f.require(args, least=1)
    found, errors = [], []
    for ref in args:
        try:
            found.append(ctx.client.get_json(f"/containers/{ref}/json", {"size": opts.size or None}))
        except APIError as exc:
            errors.append(exc.message)
    return print_inspect(opts.format, found, errors)


# ================================================================================================
# top, port
# ================================================================================================


@command
def top(ctx: Any, argv: list[str], prog: str) -> int:
    f = Flags(prog, "CONTAINER [ps OPTIONS]", "Display the running processes of a container",
              aliases="core container top, core top", interspersed=False)
    _opts, args = f.parse(argv)
    f.require(args, least=1)
    params = {"ps_args": " ".join(args[1:])} if len(args) > 1 else None
    data = ctx.client.get_json(f"/containers/{args[0]}/top", params)
    from core.cli.template import tabwrite

    lines = ["\t".join(data.get("Titles") or [])] + ["\t".join(p) for p in data.get("Processes") or []]
    sys.stdout.write(tabwrite("\n".join(lines) + "\n", minwidth=20))
    return 0


def _natural_key(s: str) -> list[Any]:
    import re

    return [int(p) if p.isdigit() else p for p in re.split(r"(\d+)", s)]


@command
def port(ctx: Any, argv: list[str], prog: str) -> int:
    f = Flags(prog, "CONTAINER [PRIVATE_PORT[/PROTO]]", "List port mappings or a specific mapping for the container",
              aliases="core container port, core port")
    _opts, args = f.parse(argv)
    f.require(args, least=1, most=2)
    info = ctx.client.get_json(f"/containers/{args[0]}/json")
    ports = (info.get("NetworkSettings") or {}).get("Ports") or {}

    def join(b: dict[str, Any]) -> str:
        ip = b.get("HostIp") or ""
        return f"[{ip}]:{b.get('HostPort', '')}" if ":" in ip else f"{ip}:{b.get('HostPort', '')}"

    out = []
    if len(args) == 2:
        number, _, proto = args[1].partition("/")
        proto = proto or "tcp"
        if not number.isdigit() or int(number) > 65535:
            raise CLIError(f'Error: invalid port ({number}): strconv.ParseUint: parsing "{number}": invalid syntax', 1)
        frontends = ports.get(f"{number}/{proto}")
        if not frontends:
            raise CLIError(f"Error: No public port '{args[1]}' published for {args[0]}", 1)
        out = [join(b) for b in frontends]
    else:
        for key, frontends in ports.items():
            for b in frontends or []:
                out.append(f"{key} -> {join(b)}")
    if out:
        sys.stdout.write("\n".join(sorted(out, key=_natural_key)) + "\n")
    return 0


# ================================================================================================
# container prune
# ================================================================================================


def confirm(message: str) -> bool:
    """docker's prompt.Confirm: ``message [y/N] `` on stdout, yes only for y/Y."""
    sys.stdout.write(f"{message} [y/N] ")
    sys.stdout.flush()
    answer = sys.stdin.readline().strip()
    return answer in ("y", "Y")


@command
def prune(ctx: Any, argv: list[str], prog: str) -> int:
    f = Flags(prog, "[OPTIONS]", "Remove all stopped containers")
    f.add("filter", None, "list", typename="filter", help='Provide filter values (e.g. "until=<timestamp>")')
    f.add("force", "f", help="Do not prompt for confirmation")
    opts, args = f.parse(argv)
    f.require(args, exact=0)
    if not opts.force and not confirm("WARNING! This will remove all stopped containers.\n"
                                      "Are you sure you want to continue?"):
        return 0
    filters = parse_filters(opts.filter)
    report = post(ctx, "/containers/prune", {"filters": dumps(filters) if filters else None}) or {}
    deleted = report.get("ContainersDeleted") or []
    if deleted:
        sys.stdout.write("Deleted Containers:\n" + "".join(d + "\n" for d in deleted) + "\n")
    sys.stdout.write(f"Total reclaimed space: {human_size(report.get('SpaceReclaimed') or 0)}\n")
    return 0


# ================================================================================================
# stats
# ================================================================================================


def stats_entry(ident: str, name: str, s: dict[str, Any] | None) -> dict[str, Any]:
    """docker's stats columns from one sample of GET /containers/{id}/stats."""
    if not s:
        return {"Container": ident, "ID": ident, "Name": name or "--", "CPUPerc": "--", "MemUsage": "-- / --",
                "MemPerc": "--", "NetIO": "--", "BlockIO": "--", "PIDs": "--"}
    cpu, pre = s.get("cpu_stats") or {}, s.get("precpu_stats") or {}
    cpu_delta = float((cpu.get("cpu_usage") or {}).get("total_usage") or 0) - \
        float((pre.get("cpu_usage") or {}).get("total_usage") or 0)
    sys_delta = float(cpu.get("system_cpu_usage") or 0) - float(pre.get("system_cpu_usage") or 0)
    online = float(cpu.get("online_cpus") or len((cpu.get("cpu_usage") or {}).get("percpu_usage") or []))
    cpu_pct = (cpu_delta / sys_delta) * online * 100.0 if sys_delta > 0 and cpu_delta > 0 else 0.0
    mem = s.get("memory_stats") or {}
    usage = float(mem.get("usage") or 0)
    extra = mem.get("stats") or {}
    if "total_inactive_file" in extra and extra["total_inactive_file"] < usage:
        used = usage - extra["total_inactive_file"]
    elif (extra.get("inactive_file") or 0) < usage:
        used = usage - (extra.get("inactive_file") or 0)
    else:
        used = usage
    limit = float(mem.get("limit") or 0)
    mem_pct = used / limit * 100.0 if limit else 0.0
    rx = sum(float(n.get("rx_bytes") or 0) for n in (s.get("networks") or {}).values())
    tx = sum(float(n.get("tx_bytes") or 0) for n in (s.get("networks") or {}).values())
    read = write = 0.0
    for e in (s.get("blkio_stats") or {}).get("io_service_bytes_recursive") or []:
        op = (e.get("op") or "")[:1].lower()
        if op == "r":
            read += e.get("value") or 0
        elif op == "w":
            write += e.get("value") or 0
    sname = s.get("name") or name
    return {
        "Container": ident,
        "ID": s.get("id") or ident,
        "Name": sname[1:] if len(sname) > 1 and sname.startswith("/") else (sname or "--"),
        "CPUPerc": f"{cpu_pct:.2f}%",
        "MemUsage": f"{bytes_size(used)} / {bytes_size(limit)}",
        "MemPerc": f"{mem_pct:.2f}%",
        "NetIO": f"{human_size(rx, 3)} / {human_size(tx, 3)}",
        "BlockIO": f"{human_size(read, 3)} / {human_size(write, 3)}",
        "PIDs": str((s.get("pids_stats") or {}).get("current") or 0),
    }


STATS_HEADERS = {"Container": "CONTAINER", "Name": "NAME", "ID": "CONTAINER ID", "CPUPerc": "CPU %",
                 "MemUsage": "MEM USAGE / LIMIT", "MemPerc": "MEM %", "NetIO": "NET I/O", "BlockIO": "BLOCK I/O",
                 "PIDs": "PIDS"}
STATS_TABLE = "table {{.ID}}\t{{.Name}}\t{{.CPUPerc}}\t{{.MemUsage}}\t{{.MemPerc}}\t{{.NetIO}}\t{{.BlockIO}}\t{{.PIDs}}"


@command
def stats(ctx: Any, argv: list[str], prog: str) -> int:
    f = Flags(prog, "[OPTIONS] [CONTAINER...]", "Display a live stream of container(s) resource usage statistics",
              aliases="core container stats, core stats")
    f.add("all", "a", help="Show all containers (default shows just running)")
    f.format_flag()
    f.add("no-stream", help="Disable streaming stats and only pull the first result")
    f.add("no-trunc", help="Do not truncate output")
    opts, args = f.parse(argv)
    from concurrent.futures import ThreadPoolExecutor

    def targets() -> list[tuple[str, str]]:
        if args:
            return [(a, "") for a in args]
        listing = ctx.client.get_json("/containers/json", {"all": opts.all or None}) or []
        return [(c["Id"], (c.get("Names") or [""])[0]) for c in listing]

    def sample(target: tuple[str, str]) -> tuple[dict[str, Any], str | None]:
        ident, name = target
        try:
            data = ctx.client.get_json(f"/containers/{ident}/stats", {"stream": False})
        except APIError as exc:
            return stats_entry(ident, name, None), exc.message
        return stats_entry(ident, name, data), None

    fmt = opts.format or "table"
    if fmt == "table":
        fmt = STATS_TABLE
    trunc = not opts.no_trunc
    while True:
        items = targets()
        with ThreadPoolExecutor(max_workers=min(16, max(1, len(items)))) as pool:
            results = list(pool.map(sample, items))
        errors = [e for _r, e in results if e]
        if args and errors and len(errors) == len(results):
            return fail_joined(errors)
        rows = []
        for r, _e in results:
            if trunc:
                r = {**r, "ID": truncate_id(r["ID"])}
            rows.append(r)
        if not opts.no_stream:
            sys.stdout.write("\x1b[2J\x1b[H")
        _render(fmt, rows, STATS_HEADERS)
        sys.stdout.flush()
        if opts.no_stream:
            return fail_joined(errors) if args else 0
        time.sleep(1.0)
