"""Node commands: ``node ls``, ``inspect``, ``update``, ``promote``, ``demote``, ``rm``, ``ps`` — docker's
flags, requests and output (docker/cli's ``cli/command/node``), spoken to any daemon with
docker's Engine API (``GET /nodes``, ``GET/DELETE /nodes/<id>``, ``POST /nodes/<id>/update?version=``).

``node ls`` draws docker's table (``ID`` with `` *`` on the node the CLI talks to, ``HOSTNAME``,
``STATUS``, ``AVAILABILITY``, ``MANAGER STATUS``, ``ENGINE VERSION``) sorted by host name;
``node inspect --pretty`` docker's human-readable form.  ``self`` names the daemon's own node
(``GET /info``'s ``Swarm.NodeID``).  An update reads the node, changes its spec and writes it back
with the version it read, so a concurrent change fails as docker's does.
"""
from __future__ import annotations

import json
import sys

from core.cli.client import CLIError
from core.cli.flags import FORMAT_HELP, INSPECT_FORMAT_HELP, Flags, command, parse_filters
from core.cli.flagvalues import kv_map, validate_label
from core.cli.format import each, natural_key, print_inspect, render_format

TYPE_CHECKING = False
if TYPE_CHECKING:
    from typing import Any, Callable

DEFAULT_FORMAT = ("table {{.ID}} {{if .Self}}*{{else}} {{ end }}\t{{.Hostname}}\t{{.Status}}\t"
                  "{{.Availability}}\t{{.ManagerStatus}}\t{{.EngineVersion}}")
QUIET_FORMAT = "{{.ID}}"
RAW_FORMAT = ("node_id: {{.ID}}\\nhostname: {{.Hostname}}\\nstatus: {{.Status}}\\n"
              "availability: {{.Availability}}\\nmanager_status: {{.ManagerStatus}}\\n")
HEADERS = {"ID": "ID", "Self": "", "Hostname": "HOSTNAME", "Status": "STATUS", "Availability": "AVAILABILITY",
           "ManagerStatus": "MANAGER STATUS", "EngineVersion": "ENGINE VERSION", "TLSStatus": "TLS STATUS"}


def pretty(value: Any) -> str:
    """docker's formatter.PrettyPrint: first letter upper case, the rest lower case."""
    if value is None:
        return "None"
    s = str(value)
    if len(s) <= 1:
        return s.lower()
    return s[0].upper() + s[1:].lower()


def _tls_empty(t: dict[str, Any] | None) -> bool:
    t = t or {}
    return not t.get("TrustRoot") and not t.get("CertIssuerSubject") and not t.get("CertIssuerPublicKey")


def _tls_equal(a: dict[str, Any], b: dict[str, Any]) -> bool:
    return all((a.get(k) or "") == (b.get(k) or "") for k in ("TrustRoot", "CertIssuerSubject", "CertIssuerPublicKey"))


def node_row(node: dict[str, Any], swarm_info: dict[str, Any]) -> dict[str, Any]:
    """A node as docker's node formatter shows it (``--format`` fields, JSON keys in its order)."""
    desc = node.get("Description") or {}
    manager = node.get("ManagerStatus")
    reach = ""
    if manager:
        reach = "Leader" if manager.get("Leader") else manager.get("Reachability", "")
    cluster_tls = ((swarm_info.get("Cluster") or {}).get("TLSInfo")) if swarm_info.get("Cluster") else None
    node_tls = desc.get("TLSInfo") or {}
    if cluster_tls is None or _tls_empty(cluster_tls) or _tls_empty(node_tls):
        tls_status = "Unknown"
    else:
        tls_status = "Ready" if _tls_equal(node_tls, cluster_tls) else "Needs Rotation"
    return {
        "Availability": pretty((node.get("Spec") or {}).get("Availability", "")),
        "EngineVersion": (desc.get("Engine") or {}).get("EngineVersion", ""),
        "Hostname": desc.get("Hostname", ""),
        "ID": node.get("ID", ""),
        "ManagerStatus": pretty(reach),
        "Self": bool(node.get("ID")) and node.get("ID") == swarm_info.get("NodeID"),
        "Status": pretty((node.get("Status") or {}).get("State", "")),
        "TLSStatus": tls_status,
    }


def _go_time(rfc3339: str) -> str:
    """Go's time.String() of an RFC 3339 time: the fraction without its trailing zeros."""
    import re

    from core.cli.cmd_network import go_time

    text = re.sub(r"\.(\d*?)0+(?=\D|$)", lambda m: "." + m.group(1) if m.group(1) else "", rfc3339 or "", count=1)
    return go_time(text)


def pretty_node(node: dict[str, Any]) -> str:
    """``node inspect --pretty``: docker's nodeInspectPrettyTemplate, rendered."""
    from core.units import bytes_size

    spec = node.get("Spec") or {}
    desc = node.get("Description") or {}
    status = node.get("Status") or {}
    out = [f"ID:\t\t\t{node.get('ID', '')}"]
    if spec.get("Name"):
        out.append(f"Name:\t\t\t{spec['Name']}")
    labels = spec.get("Labels") or {}
    if labels:
        out.append("Labels:")
        out += [f" - {k}" + (f"={labels[k]}" if labels[k] else "") for k in sorted(labels)]
    out.append(f"Hostname:              \t{desc.get('Hostname', '')}")
    out.append(f"Joined at:             \t{pretty(_go_time(node.get('CreatedAt', '')))}")
    out.append("Status:")
    out.append(f" State:\t\t\t{pretty(status.get('State', ''))}")
    if status.get("Message"):
        out.append(f" Message:              \t{pretty(status['Message'])}")
    out.append(f" Availability:         \t{pretty(spec.get('Availability', ''))}")
    if status.get("Addr"):
        out.append(f" Address:\t\t{status['Addr']}")
    manager = node.get("ManagerStatus")
    if manager is not None:
        out.append("Manager Status:")
        out.append(f" Address:\t\t{manager.get('Addr', '')}")
        out.append(f" Raft Status:\t\t{pretty(manager.get('Reachability', ''))}")
        out.append(" Leader:\t\tYes" if manager.get("Leader") else " Leader:\t\tNo")
    platform = desc.get("Platform") or {}
    out.append("Platform:")
    out.append(f" Operating System:\t{platform.get('OS', '')}")
    out.append(f" Architecture:\t\t{platform.get('Architecture', '')}")
    resources = desc.get("Resources") or {}
    memory = resources.get("MemoryBytes") or 0
    out.append("Resources:")
    out.append(f" CPUs:\t\t\t{int(resources.get('NanoCPUs') or 0) // 10**9}")
    out.append(f" Memory:\t\t{bytes_size(memory) if memory else ''}")
    engine = desc.get("Engine") or {}
    plugins: dict[str, list[str]] = {}
    for p in engine.get("Plugins") or []:
        plugins.setdefault(p.get("Type", ""), []).append(p.get("Name", ""))
    if plugins:
        out.append("Plugins:")
        for kind in sorted(plugins):
            names = ", ".join(plugins[kind])
            out.append(f" {kind}:" + (f"\t\t{names}" if names else ""))
    out.append(f"Engine Version:\t\t{engine.get('EngineVersion', '')}")
    engine_labels = engine.get("Labels") or {}
    if engine_labels:
        out.append("Engine Labels:")
        out += [f" - {k}" + (f"={engine_labels[k]}" if engine_labels[k] else "") for k in sorted(engine_labels)]
    tls = desc.get("TLSInfo") or {}
    if not _tls_empty(tls):
        out.append("TLS Info:")
        out.append(" TrustRoot:")
        out.append(tls.get("TrustRoot", ""))
        # []byte fields: the API's JSON already carries them base64-encoded, as docker prints them
        out.append(f" Issuer Subject:\t{tls.get('CertIssuerSubject') or ''}")
        out.append(f" Issuer Public Key:\t{tls.get('CertIssuerPublicKey') or ''}")
    return "\n".join(out) + "\n"


def node_reference(ctx: Any, ref: str) -> str:
    """docker's node.Reference: ``self`` is the daemon's own node."""
    if ref != "self":
        return ref
    info = ctx.client.get_json("/info") or {}
    node_id = (info.get("Swarm") or {}).get("NodeID", "")
    if not node_id:
        ctx.client.get_json("/nodes")  # the daemon's own refusal says why (not a manager, no swarm)
        raise CLIError("node ID not found in /info")
    return node_id


@command
def ls(ctx: Any, argv: list[str], prog: str) -> int:
    f = Flags(prog, "[OPTIONS]", "List nodes in the swarm", aliases="core node ls, core node list")
    f.add("filter", "f", "list", typename="filter", help="Filter output based on conditions provided")
    f.add("format", None, "string", help=FORMAT_HELP)
    f.add("quiet", "q", help="Only display IDs")
    opts, args = f.parse(argv)
    f.require(args, exact=0)
    filters = parse_filters(opts.filter)
    nodes = ctx.client.get_json("/nodes", {"filters": json.dumps(filters) if filters else None}) or []
    swarm_info: dict[str, Any] = {}
    if nodes and not opts.quiet:
        swarm_info = (ctx.client.get_json("/info") or {}).get("Swarm") or {}
    nodes = sorted(nodes, key=lambda n: natural_key((n.get("Description") or {}).get("Hostname", "")))
    rows = [node_row(n, swarm_info) for n in nodes]
    fmt = opts.format or "table"
    if fmt == "table":
        fmt = QUIET_FORMAT if opts.quiet else DEFAULT_FORMAT
    elif fmt == "raw":
        fmt = "node_id: {{.ID}}" if opts.quiet else RAW_FORMAT
    render_format(fmt, rows, HEADERS)
    return 0


@command
def inspect(ctx: Any, argv: list[str], prog: str) -> int:
    f = Flags(prog, "[OPTIONS] self|NODE [NODE...]", "Display detailed information on one or more nodes")
    f.add("format", "f", "string", help=INSPECT_FORMAT_HELP)
    f.add("pretty", None, help="Print the information in a human friendly format")
    opts, args = f.parse(argv)
    f.require(args, least=1)
    fmt = "pretty" if opts.pretty else opts.format
    if fmt.startswith("pretty") and fmt != "pretty":
        raise CLIError("cannot supply extra formatting options to the pretty template")
    if fmt == "pretty":
        text = []
        for ref in args:
            try:
                node = ctx.client.get_json(f"/nodes/{node_reference(ctx, ref)}")
            except CLIError as exc:
                raise CLIError(exc.message, 1) from None
            text.append(pretty_node(node))
        sys.stdout.write("".join(text))
        return 0
    found, errors = [], []
    for ref in args:
        try:
            found.append(ctx.client.get_json(f"/nodes/{node_reference(ctx, ref)}"))
        except CLIError as exc:
            errors.append(exc.message)
    return print_inspect(fmt, found, errors)


NO_CHANGE = object()


def update_nodes(ctx: Any, refs: list[str], merge: Callable[[dict[str, Any]], Any],
                 success: Callable[[str], None]) -> int:
    """docker's updateNodes: for each node, read it, ``merge`` its spec (returning
    :data:`NO_CHANGE` skips it), write it back with the version read; the first error stops."""
    for ref in refs:
        node = ctx.client.get_json(f"/nodes/{ref}") or {}
        spec = node.get("Spec") or {}
        node["Spec"] = spec
        if merge(node) is NO_CHANGE:
            continue
        version = (node.get("Version") or {}).get("Index", 0)
        ctx.client.post(f"/nodes/{node.get('ID', ref)}/update", {"version": str(version)}, body=spec)
        success(ref)
    return 0


@command
def update(ctx: Any, argv: list[str], prog: str) -> int:
    f = Flags(prog, "[OPTIONS] NODE", "Update a node")
    f.add("availability", None, "string", help='Availability of the node ("active", "pause", "drain")')
    f.add("label-add", None, "list", help='Add or update a node label ("key=value")', convert=validate_label)
    f.add("label-rm", None, "list", help="Remove a node label if exists")
    f.add("role", None, "string", help='Role of the node ("worker", "manager")')
    opts, args = f.parse(argv)
    f.require(args, exact=1)

    def merge(node: dict[str, Any]) -> None:
        spec = node["Spec"]
        if "role" in opts.changed:
            spec["Role"] = opts.role
        if "availability" in opts.changed:
            spec["Availability"] = opts.availability
        labels = spec.get("Labels") or {}
        spec["Labels"] = labels
        if opts.label_add:
            labels.update(kv_map(opts.label_add))
        for key in opts.label_rm or []:
            if key not in labels:
                raise CLIError(f"key {key} doesn't exist in node's labels")
            del labels[key]

    return update_nodes(ctx, args, merge, lambda ref: sys.stdout.write(ref + "\n"))


def _set_role(ctx: Any, argv: list[str], prog: str, summary: str, role: str) -> int:
    """``promote`` and ``demote``: no flags, the nodes' role set to ``role``."""
    f = Flags(prog, "NODE [NODE...]", summary)
    _opts, refs = f.parse(argv)
    f.require(refs, least=1)

    def merge(node: dict[str, Any]) -> Any:
        if node["Spec"].get("Role") == role:
            sys.stdout.write(f"Node {node.get('ID', '')} is already a {role}.\n")
            return NO_CHANGE
        node["Spec"]["Role"] = role
        return None

    if role == "manager":
        def done(ref: str) -> None:
            sys.stdout.write(f"Node {ref} promoted to a manager in the swarm.\n")
    else:
        def done(ref: str) -> None:
            sys.stdout.write(f"Manager {ref} demoted in the swarm.\n")
    return update_nodes(ctx, refs, merge, done)


@command
def promote(ctx: Any, argv: list[str], prog: str) -> int:
    return _set_role(ctx, argv, prog, "Promote one or more nodes to manager in the swarm", "manager")


@command
def demote(ctx: Any, argv: list[str], prog: str) -> int:
    return _set_role(ctx, argv, prog, "Demote one or more nodes from manager in the swarm", "worker")


@command
def rm(ctx: Any, argv: list[str], prog: str) -> int:
    f = Flags(prog, "[OPTIONS] NODE [NODE...]", "Remove one or more nodes from the swarm",
              aliases="core node rm, core node remove")
    f.add("force", "f", help="Force remove a node from the swarm")
    opts, args = f.parse(argv)
    f.require(args, least=1)
    return each(args, lambda ref: ctx.client.request("DELETE", f"/nodes/{ref}",
                                                     {"force": "1" if opts.force else None}).close())


@command
def ps(ctx: Any, argv: list[str], prog: str) -> int:
    """``node ps [NODE...]``: the tasks on the nodes (default ``self``), docker's task table."""
    from core.cli.cmd_service import print_tasks, ps_flags

    f = Flags(prog, "[OPTIONS] [NODE...]", "List tasks running on one or more nodes, defaults to current node")
    ps_flags(f)
    opts, args = f.parse(argv)
    filters = parse_filters(opts.filter)
    tasks: list[dict[str, Any]] = []
    errors = []
    for ref in args or ["self"]:
        try:
            node = ctx.client.get_json(f"/nodes/{node_reference(ctx, ref)}")
        except CLIError as exc:
            errors.append(exc.message)
            continue
        found = ctx.client.get_json("/tasks", {"filters": json.dumps({**filters, "node": [node["ID"]]})}) or []
        tasks += found
    if tasks or not errors:
        print_tasks(ctx, tasks, opts)
    if errors:
        raise CLIError("\n".join(errors), 1)
    return 0
