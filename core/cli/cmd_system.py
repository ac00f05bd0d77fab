"""``core version``, ``core info``, ``core events`` and ``core system df``."""
from __future__ import annotations

import os
import sys

from core import API_VERSION, __version__
from core.cli.client import APIError, CLIError
from core.cli.flags import INSPECT_FORMAT_HELP, Flags, command
from core.cli.format import render_each
from core.units import bytes_size

TYPE_CHECKING = False
if TYPE_CHECKING:
    from typing import Any

GO_ARCH = {"x86_64": "amd64", "aarch64": "arm64", "armv7l": "arm", "i686": "386"}


def _client_info() -> dict[str, Any]:
    return {
        "Platform": {"Name": ""},
        "Version": __version__,
        "ApiVersion": API_VERSION,
        "DefaultAPIVersion": API_VERSION,
        "GitCommit": "",
        "GoVersion": "python{}.{}.{}".format(*sys.version_info[:3]),
        "Os": "linux",
        "Arch": GO_ARCH.get(os.uname().machine, os.uname().machine),
        "BuildTime": "",
        "Context": "default",
    }


@command
def version(ctx, argv: list[str], prog: str) -> int:
    f = Flags(prog, "[OPTIONS]", "Show the core version information")
    f.add("format", "f", "string", help=INSPECT_FORMAT_HELP)
    args, rest = f.parse(argv)
    f.require(rest, exact=0)
    client = _client_info()
    server = None
    error = None
    try:
        server = ctx.client.get_json("/version")
    except CLIError as exc:
        error = exc
    if args.format:
        render_each(args.format, [{"Client": client, "Server": server}], formatter=False)
    else:
        out = ["Client:"]
        out += [
            f" Version:           {client['Version']}",
            f" API version:       {client['ApiVersion']}",
            f" Python version:    {client['GoVersion'][len('python'):]}",
            f" OS/Arch:           {client['Os']}/{client['Arch']}",
            f" Context:           {client['Context']}",
        ]
        if server:
            out += ["", f"Server: {server.get('Platform', {}).get('Name', '')}"]
            for comp in server.get("Components") or []:
                d = comp.get("Details") or {}
                out.append(f" {comp.get('Name')}:")
                out.append(f"  Version:          {comp.get('Version')}")
                if comp.get("Name") == "Engine":
                    out.append(f"  API version:      {d.get('ApiVersion')} (minimum version {d.get('MinAPIVersion')})")
                    out.append(f"  Python version:   {d.get('GoVersion', '')[len('python'):]}")
                    out.append(f"  Built:            {d.get('BuildTime', '')}")
                    out.append(f"  OS/Arch:          {d.get('Os')}/{d.get('Arch')}")
                    out.append(f"  Experimental:     {d.get('Experimental')}")
        sys.stdout.write("\n".join(out) + "\n")
    if error is not None:
        raise error
    return 0


def _yesno(value: Any) -> str:
    return "true" if value else "false"


@command
def info(ctx, argv: list[str], prog: str) -> int:
    f = Flags(prog, "[OPTIONS]", "Display system-wide information", aliases="core system info, core info")
    f.add("format", "f", "string", help=INSPECT_FORMAT_HELP)
    args, rest = f.parse(argv)
    f.require(rest, exact=0)
    try:
        server = ctx.client.get_json("/info")
    except APIError:
        raise
    if args.format:
        render_each(args.format, [{**server, "ClientInfo": {"Debug": ctx.debug, "Context": "default"}}]
                    if args.format != "json" else [server], formatter=False)
        return 0
    s = server
    out = [
        "Client:",
        f" Version:    {__version__}",
        " Context:    default",
        f" Debug Mode: {_yesno(ctx.debug)}",
        "",
        "Server:",
        f" Containers: {s.get('Containers', 0)}",
        f"  Running: {s.get('ContainersRunning', 0)}",
        f"  Paused: {s.get('ContainersPaused', 0)}",
        f"  Stopped: {s.get('ContainersStopped', 0)}",
        f" Images: {s.get('Images', 0)}",
        f" Server Version: {s.get('ServerVersion', '')}",
        f" Storage Driver: {s.get('Driver', '')}",
    ]
    out += [f"  {k}: {v}" for k, v in s.get("DriverStatus") or []]
    out += [
        f" Logging Driver: {s.get('LoggingDriver', '')}",
        f" Cgroup Driver: {s.get('CgroupDriver', '')}",
        f" Cgroup Version: {s.get('CgroupVersion', '')}",
        " Plugins:",
        f"  Volume: {' '.join(s.get('Plugins', {}).get('Volume') or [])}",
        f"  Network: {' '.join(s.get('Plugins', {}).get('Network') or [])}",
        f"  Log: {' '.join(s.get('Plugins', {}).get('Log') or [])}",
        f" Swarm: {s.get('Swarm', {}).get('LocalNodeState', 'inactive')}",
    ]
    if (s.get("Swarm") or {}).get("LocalNodeState", "inactive") != "inactive":
        from core.cli.cmd_swarm import info_lines

        out += info_lines(s["Swarm"])
    out += [
        " Drivers:",
    ]
    drivers = s.get("Drivers") or []
    if drivers:
        wk = max(len(d["Kind"]) for d in drivers)
        wn = max(len(d["Name"]) for d in drivers)
        for d in drivers:
            marks = [d["Status"]]
            if d.get("Default"):
                marks.append("default")
            if d.get("Selected") and not d.get("Default"):
                marks.append("selected")
            detail = d.get("Reason") if d["Status"] != "ok" else d.get("Description")
            dist = f" [{d['Distribution']}]" if d.get("Distribution") and not d["Distribution"].startswith("core-engine ") else ""
            out.append(f"  {d['Kind']:<{wk}}  {d['Name']:<{wn}}  {', '.join(marks):<17} {detail or ''}{dist}".rstrip())
    out += [
        f" Security Options: {' '.join(o.split(',')[0].split('=')[-1] for o in s.get('SecurityOptions') or [])}",
        f" Kernel Version: {s.get('KernelVersion', '')}",
        f" Operating System: {s.get('OperatingSystem', '')}",
        f" OSType: {s.get('OSType', '')}",
        f" Architecture: {s.get('Architecture', '')}",
        f" CPUs: {s.get('NCPU', 0)}",
        f" Total Memory: {bytes_size(s.get('MemTotal', 0))}",
        f" Name: {s.get('Name', '')}",
        f" ID: {s.get('ID', '')}",
        f" Core Root Dir: {s.get('DockerRootDir', '')}",
        f" Debug Mode: {_yesno(s.get('Debug'))}",
        f" Experimental: {_yesno(s.get('ExperimentalBuild'))}",
        " Insecure Registries:",
    ]
    reg = s.get("RegistryConfig") or {}
    out += [f"  {c}" for c in reg.get("InsecureRegistryCIDRs") or []]
    if reg.get("Mirrors"):
        out.append(" Registry Mirrors:")
        out += [f"  {m}" for m in reg["Mirrors"]]
    out.append(f" Live Restore Enabled: {_yesno(s.get('LiveRestoreEnabled'))}")
    sys.stdout.write("\n".join(out) + "\n")
    for w in s.get("Warnings") or []:
        sys.stderr.write(w + "\n")
    return 0


@command
def events(ctx, argv: list[str], prog: str) -> int:
    f = Flags(prog, "[OPTIONS]", "Get real time events from the server", aliases="core system events, core events")
    f.add("filter", "f", "list", typename="filter", help="Filter output based on conditions provided")
    f.add("format", None, "string", help=INSPECT_FORMAT_HELP)
    f.add("since", None, "string", help="Show all events created since timestamp")
    f.add("until", None, "string", help="Stream events until this timestamp")
    args, rest = f.parse(argv)
    f.require(rest, exact=0)
    import json
    import time as _time

    filters: dict[str, list[str]] = {}
    for item in args.filter or []:
        key, _, value = item.partition("=")
        filters.setdefault(key, []).append(value)

    def stamp(value: str | None) -> str | None:
        if value is None:
            return None
        try:
            return str(float(value))
        except ValueError:
            pass
        # relative durations as docker takes them: 10m, 1h, 30s
        units = {"s": 1, "m": 60, "h": 3600}
        if value[:-1].isdigit() and value[-1] in units:
            return str(_time.time() - int(value[:-1]) * units[value[-1]])
        raise CLIError(f"invalid timestamp {value!r}", 125)

    params = {"since": stamp(args.since or None), "until": stamp(args.until or None),
              "filters": json.dumps(filters) if filters else None}
    resp = ctx.client.request("GET", "/events", params)
    try:
        for event in resp.iter_json_lines():
            if args.format:
                render_each(args.format, [event])
            else:
                when = _time.strftime("%Y-%m-%dT%H:%M:%S", _time.localtime(event["time"]))
                nanos = event["timeNano"] % 1_000_000_000
                attrs = event["Actor"].get("Attributes") or {}
                inner = ", ".join(f"{k}={v}" for k, v in sorted(attrs.items()))
                sys.stdout.write(f"{when}.{nanos:09d}{_time.strftime('%z')} {event['Type']} {event['Action']} "
                                 f"{event['Actor']['ID']}" + (f" ({inner})" if inner else "") + "\n")
            sys.stdout.flush()
    finally:
        resp.sock.close()
    return 0


def _share(part: int, total: int) -> str:
    """docker's RECLAIMABLE: the size, and its share of the total when there is one."""
    from core.units import human_size

    return f"{human_size(part)} ({part * 100 // total}%)" if total > 0 else human_size(part)


@command
def df(ctx, argv: list[str], prog: str) -> int:
    f = Flags(prog, "[OPTIONS]", "Show core disk usage")
    f.add("format", None, "string", help=INSPECT_FORMAT_HELP)
    f.add("verbose", "v", help="Show detailed information on space usage")
    args, rest = f.parse(argv)
    f.require(rest, exact=0)
    from core.cli.format import ago, print_table, render_format
    from core.units import human_size

    data = ctx.client.get_json("/system/df")
    images = data.get("Images") or []
    containers = data.get("Containers") or []
    volumes = data.get("Volumes") or []
    cache = data.get("BuildCache") or []
    layers = data.get("LayersSize") or 0
    active = ("running", "paused", "restarting")
    if not args.verbose:
        used = sum(i["Size"] - i["SharedSize"] for i in images
                   if i.get("Containers") and i.get("SharedSize", -1) != -1)
        rw = sum(c.get("SizeRw") or 0 for c in containers)
        idle_rw = sum(c.get("SizeRw") or 0 for c in containers if c.get("State") not in active)
        vol_size = sum(v["UsageData"]["Size"] for v in volumes if v["UsageData"]["Size"] != -1)
        vol_free = sum(v["UsageData"]["Size"] for v in volumes
                       if v["UsageData"]["Size"] != -1 and v["UsageData"]["RefCount"] == 0)
        cache_size = sum(b.get("Size") or 0 for b in cache)
        rows = [
            {"Type": "Images", "TotalCount": str(len(images)),
             "Active": str(sum(1 for i in images if i.get("Containers"))),
             "Size": human_size(layers), "Reclaimable": _share(layers - used, layers)},
            {"Type": "Containers", "TotalCount": str(len(containers)),
             "Active": str(sum(1 for c in containers if c.get("State") in active)),
             "Size": human_size(rw), "Reclaimable": _share(idle_rw, rw)},
            {"Type": "Local Volumes", "TotalCount": str(len(volumes)),
             "Active": str(sum(1 for v in volumes if v["UsageData"]["RefCount"])),
             "Size": human_size(vol_size), "Reclaimable": _share(vol_free, vol_size)},
            {"Type": "Build Cache", "TotalCount": str(len(cache)),
             "Active": str(sum(1 for b in cache if b.get("InUse"))),
             "Size": human_size(cache_size), "Reclaimable": human_size(cache_size)},
        ]
        if args.format and args.format != "table":
            render_format(args.format, rows, {"Type": "TYPE", "TotalCount": "TOTAL", "Active": "ACTIVE",
                                              "Size": "SIZE", "Reclaimable": "RECLAIMABLE"})
            return 0
        print_table(["TYPE", "TOTAL", "ACTIVE", "SIZE", "RECLAIMABLE"],
                    [[r["Type"], r["TotalCount"], r["Active"], r["Size"], r["Reclaimable"]] for r in rows])
        return 0
    from core.cli.cmd_image import _rows

    sys.stdout.write("Images space usage:\n\n")
    table = []
    for image in images:
        shared = image.get("SharedSize", 0)
        for row in _rows([image], False, False):
            table.append([row["Repository"], row["Tag"], row["ID"], row["CreatedSince"], row["Size"],
                          human_size(shared), human_size(image["Size"] - shared),
                          str(image.get("Containers", 0))])
    print_table(["REPOSITORY", "TAG", "IMAGE ID", "CREATED", "SIZE", "SHARED SIZE", "UNIQUE SIZE", "CONTAINERS"],
                table)
    sys.stdout.write("\nContainers space usage:\n\n")
    table = []
    for c in containers:
        command = c.get("Command", "")
        if len(command) > 20:
            command = command[:19] + "…"
        image = c.get("Image", "")
        if image.startswith("sha256:"):
            image = image[7:19]
        table.append([c["Id"][:12], image, "\"" + command.replace("\\", "\\\\").replace("\"", "\\\"") + "\"",
                      str(sum(1 for m in c.get("Mounts") or [] if m.get("Type") == "volume")),
                      human_size(c.get("SizeRw") or 0, 3), ago(c.get("Created", 0)), c.get("Status", ""),
                      ",".join(n.lstrip("/") for n in c.get("Names") or [])])
    print_table(["CONTAINER ID", "IMAGE", "COMMAND", "LOCAL VOLUMES", "SIZE", "CREATED", "STATUS", "NAMES"], table)
    sys.stdout.write("\nLocal Volumes space usage:\n\n")
    print_table(["VOLUME NAME", "LINKS", "SIZE"],
                [[v["Name"], str(v["UsageData"]["RefCount"]), human_size(v["UsageData"]["Size"], 3)]
                 for v in volumes])
    sys.stdout.write(f"\nBuild cache usage: {human_size(sum(b.get('Size') or 0 for b in cache))}\n\n")
    print_table(["CACHE ID", "CACHE TYPE", "SIZE", "CREATED", "LAST USED", "USAGE", "SHARED"], [])
    return 0
