"""Container commands: ps, stop, kill, restart, pause, unpause, rm, logs, wait, inspect, top, port,
rename, update, container prune, stats.

``run``, ``create``, ``start``, ``attach`` and ``exec`` live in :mod:`core.cli.cmd_run`, ``cp`` in
:mod:`core.cli.cmd_cp`; the flag parser in :mod:`core.cli.flags`, output helpers in
:mod:`core.cli.format`.  Output, flags and exit codes follow docker 28's CLI.
"""
from __future__ import annotations

import sys
import time

from core.cli.client import APIError, CLIError
from core.cli.flags import INSPECT_FORMAT_HELP, Flags, command, parse_filters
from core.cli.format import (each, ellipsis, fail_joined, familiar, go_quote, natural_key,
                             parse_time, print_inspect, render_format, timestamp, truncate_id)
from core.cli.lean import dumps
from core.units import bytes_size, human_duration, human_size, parse_go_duration

TYPE_CHECKING = False
if TYPE_CHECKING:
    from typing import Any

# ================================================================================================
# Columns: ports, status, ps rows
# ================================================================================================


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
        "CreatedAt": timestamp(created),
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


PS_HEADERS = {"ID": "CONTAINER ID", "Names": "NAMES", "Image": "IMAGE", "Command": "COMMAND",
              "CreatedAt": "CREATED AT", "RunningFor": "CREATED", "Ports": "PORTS", "State": "STATE",
              "Status": "STATUS", "Size": "SIZE", "Labels": "LABELS", "Mounts": "MOUNTS",
              "LocalVolumes": "LOCAL VOLUMES", "Networks": "NETWORKS", "Platform": "PLATFORM"}
PS_TABLE = "table {{.ID}}\t{{.Image}}\t{{.Command}}\t{{.RunningFor}}\t{{.Status}}\t{{.Ports}}\t{{.Names}}"


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
    render_format(fmt, rows, PS_HEADERS)
    return 0


# ================================================================================================
# stop, kill, restart, pause, unpause, rm, wait, rename
# ================================================================================================


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
    return each(args, lambda c: ctx.client.post(f"/containers/{c}/{action}", params))


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
    return each(args, lambda c: ctx.client.post(f"/containers/{c}/kill", {"signal": opts.signal or None}))


def _pause_or_unpause(ctx: Any, argv: list[str], prog: str, action: str, summary: str) -> int:
    """``pause`` and ``unpause``: no flags, one endpoint each."""
    f = Flags(prog, "CONTAINER [CONTAINER...]", summary, aliases=f"core container {action}, core {action}")
    _opts, args = f.parse(argv)
    f.require(args, least=1)
    return each(args, lambda c: ctx.client.post(f"/containers/{c}/{action}"))


@command
def pause(ctx: Any, argv: list[str], prog: str) -> int:
    return _pause_or_unpause(ctx, argv, prog, "pause", "Pause all processes within one or more containers")


@command
def unpause(ctx: Any, argv: list[str], prog: str) -> int:
    return _pause_or_unpause(ctx, argv, prog, "unpause", "Unpause all processes within one or more containers")


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
            resp.close()
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
        resp.close()


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
        ctx.client.post(f"/containers/{old}/rename", {"name": new})
    except APIError as exc:
        sys.stderr.write(exc.message + "\n")
        raise CLIError(f"Error: failed to rename container named {old}", 1) from None
    return 0


# ================================================================================================
# logs
# ================================================================================================

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
def update(ctx: Any, argv: list[str], prog: str) -> int:
    """``docker update``: resources and restart policy, in place; prints each name."""
    from core.cli.flagvalues import parse_cpus, parse_memory, parse_restart_policy

    f = Flags(prog, "[OPTIONS] CONTAINER [CONTAINER...]", "Update configuration of one or more containers",
              aliases="core container update, core update")
    f.add("blkio-weight", None, "int", typename="uint16",
          help="Block IO (relative weight), between 10 and 1000, or 0 to disable (default 0)")
    f.add("cpu-period", None, "int", help="Limit CPU CFS (Completely Fair Scheduler) period")
    f.add("cpu-quota", None, "int", help="Limit CPU CFS (Completely Fair Scheduler) quota")
    f.add("cpu-shares", "c", "int", help="CPU shares (relative weight)")
    f.add("cpus", None, "string", typename="decimal", convert=parse_cpus, help="Number of CPUs")
    f.add("cpuset-cpus", None, "string", help="CPUs in which to allow execution (0-3, 0,1)")
    f.add("cpuset-mems", None, "string", help="MEMs in which to allow execution (0-3, 0,1)")
    f.add("memory", "m", "string", typename="bytes", convert=parse_memory, help="Memory limit")
    f.add("memory-reservation", None, "string", typename="bytes", convert=parse_memory,
          help="Memory soft limit")
    f.add("memory-swap", None, "string", typename="bytes", convert=parse_memory,
          help="Swap limit equal to memory plus swap: -1 to enable unlimited swap")
    f.add("pids-limit", None, "int", help="Tune container pids limit (set -1 for unlimited)")
    f.add("restart", None, "string", convert=parse_restart_policy,
          help="Restart policy to apply when a container exits")
    opts, args = f.parse(argv)
    f.require(args, least=1)
    if not opts.changed:
        raise CLIError("you must provide one or more flags when using this command", 1)
    if "blkio-weight" in opts.changed and not 0 <= opts.blkio_weight <= 65535:
        raise CLIError(f'invalid argument "{opts.blkio_weight}" for "--blkio-weight" flag: '
                       f'strconv.ParseUint: parsing "{opts.blkio_weight}": value out of range', 125)
    body: dict[str, Any] = {
        "BlkioWeight": opts.blkio_weight or 0, "CpuPeriod": opts.cpu_period or 0,
        "CpuQuota": opts.cpu_quota or 0, "CpuShares": opts.cpu_shares or 0,
        "NanoCpus": opts.cpus or 0, "CpusetCpus": opts.cpuset_cpus or "",
        "CpusetMems": opts.cpuset_mems or "", "Memory": opts.memory or 0,
        "MemoryReservation": opts.memory_reservation or 0, "MemorySwap": opts.memory_swap or 0,
        "RestartPolicy": opts.restart if "restart" in opts.changed else {"Name": "", "MaximumRetryCount": 0},
    }
    if "pids-limit" in opts.changed:
        body["PidsLimit"] = opts.pids_limit

    def one(name: str) -> None:
        answer = ctx.client.post(f"/containers/{name}/update", body=body) or {}
        for warning in answer.get("Warnings") or []:
            sys.stderr.write(f"{warning}\n")

    return each(args, one)


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
        resp.close()
    return 0


# ================================================================================================
# inspect (generic and container)
# ================================================================================================

INSPECT_TYPES = ["config", "container", "image", "network", "node", "plugin", "secret", "service", "task", "volume"]
_SWARM_TYPES = {"service", "task", "node", "secret", "config"}


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
    found, errors = ctx.client.get_each([f"/containers/{ref}/json" for ref in args], {"size": opts.size or None})
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
        sys.stdout.write("\n".join(sorted(out, key=natural_key)) + "\n")
    return 0


# ================================================================================================
# container prune
# ================================================================================================


@command
def prune(ctx: Any, argv: list[str], prog: str) -> int:
    from core.cli.prune import simple_prune

    return simple_prune(ctx, argv, prog, summary="Remove all stopped containers",
                        warning="WARNING! This will remove all stopped containers.",
                        path="/containers/prune", key="ContainersDeleted", title="Containers")


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
        render_format(fmt, rows, STATS_HEADERS)
        sys.stdout.flush()
        if opts.no_stream:
            return fail_joined(errors) if args else 0
        time.sleep(1.0)
