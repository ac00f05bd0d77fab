"""Volume commands: ``volume create``, ``ls``, ``inspect``, ``rm``, ``prune`` — docker 28's output."""
from __future__ import annotations

import json
import sys

from core.cli.client import CLIError
from core.cli.flags import INSPECT_FORMAT_HELP, Flags, command, parse_filters
from core.cli.flagvalues import kv_map
from core.cli.format import each, natural_key, print_inspect, render_format
from core.units import human_size

TYPE_CHECKING = False
if TYPE_CHECKING:
    from typing import Any

VOLUME_HEADERS = {"Name": "VOLUME NAME", "Driver": "DRIVER", "Scope": "SCOPE", "Mountpoint": "MOUNTPOINT",
                  "Labels": "LABELS", "Links": "LINKS", "Size": "SIZE", "Group": "GROUP",
                  "Availability": "AVAILABILITY", "Status": "STATUS"}


def volume_row(v: dict[str, Any]) -> dict[str, Any]:
    """A volume as docker's volume formatter shows it (keys in its JSON order)."""
    usage = v.get("UsageData")
    labels = v.get("Labels") or {}
    cluster = v.get("ClusterVolume") or {}
    spec = cluster.get("Spec") or {}
    return {
        "Availability": spec.get("Availability", "N/A") if cluster else "N/A",
        "Driver": v.get("Driver", ""),
        "Group": spec.get("Group", "N/A") if cluster else "N/A",
        "Labels": ",".join(f"{k}={labels[k]}" for k in sorted(labels)),
        "Links": "N/A" if not usage else str(usage.get("RefCount", 0)),
        "Mountpoint": v.get("Mountpoint", ""),
        "Name": v.get("Name", ""),
        "Scope": v.get("Scope", ""),
        "Size": "N/A" if not usage or usage.get("Size", -1) < 0 else human_size(usage["Size"], 3),
        "Status": "N/A",
    }


@command
def create(ctx: Any, argv: list[str], prog: str) -> int:
    f = Flags(prog, "[OPTIONS] [VOLUME]", "Create a volume")
    f.add("driver", "d", "string", default="local", help="Specify volume driver name")
    f.add("label", None, "list", help="Set metadata for a volume")
    f.add("name", None, "string", help="Specify volume name")
    f.add("opt", "o", "list", typename="map", help="Set driver specific options")
    opts, args = f.parse(argv)
    f.require(args, most=1)
    if args and opts.name:
        raise CLIError("conflicting options: cannot specify a volume-name through both --name and as a positional "
                       "arg", 1)
    name = args[0] if args else opts.name
    body = {"Name": name, "Driver": opts.driver, "DriverOpts": kv_map(opts.opt), "Labels": kv_map(opts.label)}
    vol = ctx.client.post("/volumes/create", body=body) or {}
    sys.stdout.write(vol.get("Name", name) + "\n")
    return 0


@command
def ls(ctx: Any, argv: list[str], prog: str) -> int:
    f = Flags(prog, "[OPTIONS]", "List volumes", aliases="core volume ls, core volume list")
    f.add("cluster", hidden=True, help="Display only cluster volumes, and use cluster volume list formatting")
    f.add("filter", "f", "list", typename="filter", help='Provide filter values (e.g. "dangling=true")')
    f.format_flag()
    f.add("quiet", "q", help="Only display volume names")
    opts, args = f.parse(argv)
    f.require(args, exact=0)
    filters = parse_filters(opts.filter)
    data = ctx.client.get_json("/volumes", {"filters": json.dumps(filters) if filters else None}) or {}
    volumes = sorted(data.get("Volumes") or [], key=lambda v: natural_key(v.get("Name", "")))
    rows = [volume_row(v) for v in volumes]
    fmt = opts.format
    if opts.quiet and (not fmt or fmt == "table"):
        sys.stdout.write("".join(r["Name"] + "\n" for r in rows))
        return 0
    if not fmt or fmt == "table":
        fmt = "table {{.Driver}}\t{{.Name}}"
    render_format(fmt, rows, VOLUME_HEADERS)
    for w in data.get("Warnings") or []:
        sys.stderr.write(w + "\n")
    return 0


@command
def inspect(ctx: Any, argv: list[str], prog: str) -> int:
    f = Flags(prog, "[OPTIONS] VOLUME [VOLUME...]", "Display detailed information on one or more volumes")
    f.add("format", "f", "string", help=INSPECT_FORMAT_HELP)
    opts, args = f.parse(argv)
    f.require(args, least=1)
    found, errors = ctx.client.get_each([f"/volumes/{name}" for name in args])
    return print_inspect(opts.format, found, errors)


@command
def rm(ctx: Any, argv: list[str], prog: str) -> int:
    f = Flags(prog, "[OPTIONS] VOLUME [VOLUME...]", "Remove one or more volumes. You cannot remove a volume that is "
              "in use by a container.", aliases="core volume rm, core volume remove")
    f.add("force", "f", help="Force the removal of one or more volumes")
    opts, args = f.parse(argv)
    f.require(args, least=1)
    return each(args, lambda name: ctx.client.request("DELETE", f"/volumes/{name}",
                                                      {"force": opts.force or None}).close())


@command
def prune(ctx: Any, argv: list[str], prog: str) -> int:
    from core.cli.prune import confirmed, post_prune, prune_flags

    f = prune_flags(prog, "Remove unused local volumes", "label=<label>",
                    all_help="Remove all unused volumes, not just anonymous ones")
    opts, args = f.parse(argv)
    f.require(args, exact=0)
    filters = parse_filters(opts.filter)
    everything = opts.all
    if "all" in filters:
        if opts.all:
            raise CLIError("conflicting options: cannot specify both --all and --filter all=1", 1)
        everything = filters["all"][-1].lower() in ("1", "true")
    if opts.all:
        filters["all"] = ["true"]
    warning = ("WARNING! This will remove all local volumes not used by at least one container."
               if everything else
               "WARNING! This will remove anonymous local volumes not used by at least one container.")
    if not confirmed(opts, warning):
        return 0
    return post_prune(ctx, "/volumes/prune", filters, "VolumesDeleted", "Volumes")
