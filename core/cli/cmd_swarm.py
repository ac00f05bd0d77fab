"""Swarm commands: ``swarm init``, ``join``, ``join-token``, ``leave``, ``update``, ``ca``,
``unlock-key``, ``unlock`` — docker's flags, requests and output (docker/cli's
``cli/command/swarm``), spoken to any daemon with docker's Engine API.

What each sends:

- ``init``: ``POST /swarm/init`` with ``ListenAddr`` (default ``0.0.0.0:2377``, a missing host or
  port filled from it), ``AdvertiseAddr``, ``DataPathAddr``, ``DataPathPort``,
  ``DefaultAddrPool``, ``SubnetSize``, ``ForceNewCluster``, ``Availability`` (only when given)
  and a ``Spec`` holding only the flags given (``--task-history-limit``,
  ``--dispatcher-heartbeat``, ``--cert-expiry``, ...: durations in nanoseconds, as Go's).  The
  answer is the new node's ID; the worker join command is printed from ``GET /nodes/<id>``
  (its manager address) and ``GET /swarm`` (the tokens).
- ``join``: ``POST /swarm/join``; then ``GET /info``'s ``Swarm.ControlAvailable`` says whether
  the node joined as a manager or a worker.
- ``join-token``, ``update``, ``ca --rotate``: ``GET /swarm``, then ``POST /swarm/update?version=``
  with the spec changed (the ``version`` makes a concurrent change fail, as docker's).
- ``leave``: ``POST /swarm/leave[?force=1]``.

The daemon's refusals (not in a swarm, not a manager, no leader, a wrong token...) are printed
as ``Error response from daemon: ...`` with exit status 1, as docker's.
"""
from __future__ import annotations

import sys

from core.cli.client import CLIError
from core.cli.flags import Flags, command
from core.cli.flagvalues import parse_uint

TYPE_CHECKING = False
if TYPE_CHECKING:
    from typing import Any

DEFAULT_LISTEN_ADDR = "0.0.0.0:2377"
DEFAULT_CERT_EXPIRY = 90 * 24 * 3600 * 10**9   # ns, swarmkit's default
DEFAULT_HEARTBEAT = 5 * 10**9                   # ns
AVAILABILITIES = ("active", "pause", "drain")


# -- flag values ---------------------------------------------------------------------------------


def parse_tcp_addr(value: str, default: str = DEFAULT_LISTEN_ADDR) -> str:
    """docker's opts.ParseTCPAddr without the ``tcp://``: ``HOST[:PORT]`` with a missing host or
    port taken from ``default`` (``10.0.0.1`` → ``10.0.0.1:2377``, ``:4000`` → ``0.0.0.0:4000``,
    ``eth0:2377`` stays).  ValueError with docker's message otherwise."""
    if value in ("", "tcp://"):
        return default
    addr = value.removeprefix("tcp://")
    if "://" in addr or not addr:
        raise ValueError(f"invalid proto, expected tcp: {value}")
    default_host, _, default_port = default.rpartition(":")
    if addr.endswith("]:"):
        addr += default_port
    addr = addr.split("/", 1)[0]
    if addr.startswith("["):
        end = addr.find("]")
        if end < 0:
            raise ValueError(f"invalid bind address format: {value}")
        host, rest = addr[1:end], addr[end + 1:]
        if rest and not rest.startswith(":"):
            raise ValueError(f"invalid bind address format: {value}")
        port = rest[1:]
    elif addr.count(":") > 1:
        raise ValueError(f"invalid bind address format: {value}")
    else:
        host, _, port = addr.partition(":")
    host = host or default_host
    port = port or default_port
    if not port.isdigit():
        raise ValueError(f"invalid bind address format: {value}")
    return f"[{host}]:{port}" if ":" in host else f"{host}:{port}"


def _duration_ns(text: str) -> int:
    from core.units import parse_go_duration

    return int(round(parse_go_duration(text) * 1e9))


def go_duration(ns: int) -> str:
    """Go's time.Duration.String() for whole seconds and above (``2160h0m0s``, ``5s``)."""
    if ns == 0:
        return "0s"
    sign = "-" if ns < 0 else ""
    ns = abs(ns)
    if ns < 10**9:
        for unit, size in (("ms", 10**6), ("µs", 10**3), ("ns", 1)):
            if ns >= size:
                return f"{sign}{ns / size:g}{unit}"
    secs, frac = divmod(ns, 10**9)
    h, rest = divmod(secs, 3600)
    m, s = divmod(rest, 60)
    s_text = f"{s}" + (f".{frac:09d}".rstrip("0") if frac else "")
    if h:
        return f"{sign}{h}h{m}m{s_text}s"
    if m:
        return f"{sign}{m}m{s_text}s"
    return f"{sign}{s_text}s"


def _uint32(text: str) -> int:
    return parse_uint(text, 32)


def _cidr(text: str) -> str:
    import ipaddress

    try:
        return str(ipaddress.ip_network(text.strip(), strict=False))
    except ValueError:
        raise ValueError(f"invalid CIDR address: {text}") from None


def _pem_file(path: str) -> str:
    try:
        with open(path, encoding="utf-8", errors="replace") as f:
            contents = f.read()
    except OSError as exc:
        raise ValueError(f"open {path}: {exc.strerror.lower() if exc.strerror else exc}") from None
    if "-----BEGIN " not in contents:
        raise ValueError("file contents must be in PEM format")
    return contents


def parse_external_ca(spec: str) -> dict[str, Any]:
    """``protocol=cfssl,url=https://...[,cacert=FILE][,key=value]`` as docker's ExternalCA."""
    import csv

    try:
        fields = next(csv.reader([spec]))
    except (csv.Error, StopIteration):
        raise ValueError(f"invalid external CA: {spec}") from None
    ca: dict[str, Any] = {"Protocol": "", "URL": "", "Options": {}}
    for field in fields:
        key, eq, value = field.partition("=")
        if not eq:
            raise ValueError(f"invalid field '{field}' must be a key=value pair")
        lower = key.lower()
        if lower == "protocol":
            if value.lower() != "cfssl":
                raise ValueError(f"unrecognized external CA protocol {value}")
            ca["Protocol"] = "cfssl"
        elif lower == "url":
            ca["URL"] = value
        elif lower == "cacert":
            try:
                ca["CACert"] = _pem_file(value)
            except ValueError as exc:
                raise ValueError(f"unable to read CA cert for external CA: {exc}") from None
        else:
            ca["Options"][key] = value
    if not ca["Protocol"]:
        raise ValueError("the external-ca option needs a protocol= parameter")
    if not ca["URL"]:
        raise ValueError("the external-ca option needs a url= parameter")
    return ca


def _add_ca_flags(f: Flags) -> None:
    f.add("cert-expiry", None, "string", default="2160h0m0s", typename="duration",
          help="Validity period for node certificates (ns|us|ms|s|m|h)", convert=_duration_ns)
    f.add("external-ca", None, "list", typename="external-ca",
          help="Specifications of one or more certificate signing endpoints", convert=parse_external_ca)


def _add_swarm_flags(f: Flags) -> None:
    f.add("task-history-limit", None, "int", default=5, typename="int",
          help="Task history retention limit")
    f.add("dispatcher-heartbeat", None, "string", default="5s", typename="duration",
          help="Dispatcher heartbeat period (ns|us|ms|s|m|h)", convert=_duration_ns)
    f.add("max-snapshots", None, "string", typename="uint", default="0", show_default=False,
          help="Number of additional Raft snapshots to retain", convert=parse_uint)
    f.add("snapshot-interval", None, "string", typename="uint", default="10000",
          help="Number of log entries between Raft snapshots", convert=parse_uint)
    _add_ca_flags(f)


def merge_ca_flags(spec: dict[str, Any], opts: Any, ca_cert: str | None = None) -> None:
    """docker's mergeSwarmSpecCAFlags: the CA flags given, into ``spec``."""
    ca = spec.setdefault("CAConfig", {}) if {"cert-expiry", "external-ca"} & opts.changed else None
    if "cert-expiry" in opts.changed:
        ca["NodeCertExpiry"] = opts.cert_expiry
    if "external-ca" in opts.changed:
        ca["ExternalCAs"] = [dict(x) for x in opts.external_ca or []]
        if ca_cert is not None:
            for ext in ca["ExternalCAs"]:
                if not ext.get("CACert"):
                    ext["CACert"] = ca_cert


def merge_swarm_spec(spec: dict[str, Any], opts: Any, ca_cert: str | None = None) -> dict[str, Any]:
    """docker's mergeSwarmSpec: only the flags given change ``spec`` (returned)."""
    if "task-history-limit" in opts.changed:
        spec.setdefault("Orchestration", {})["TaskHistoryRetentionLimit"] = opts.task_history_limit
    if "dispatcher-heartbeat" in opts.changed:
        spec.setdefault("Dispatcher", {})["HeartbeatPeriod"] = opts.dispatcher_heartbeat
    if "max-snapshots" in opts.changed:
        spec.setdefault("Raft", {})["KeepOldSnapshots"] = opts.max_snapshots
    if "snapshot-interval" in opts.changed:
        spec.setdefault("Raft", {})["SnapshotInterval"] = opts.snapshot_interval
    if "autolock" in opts.changed:
        spec.setdefault("EncryptionConfig", {})["AutoLockManagers"] = opts.autolock
    merge_ca_flags(spec, opts, ca_cert)
    return spec


def _availability(opts: Any) -> str | None:
    if "availability" not in opts.changed:
        return None
    value = opts.availability.lower()
    if value not in AVAILABILITIES:
        raise CLIError(f'invalid availability "{opts.availability}", only active, pause and drain are supported')
    return value


def _listen_addr(value: str) -> str:
    return parse_tcp_addr(value)


# -- output --------------------------------------------------------------------------------------


def join_command_text(tokens: dict[str, Any], manager_addr: str, worker: bool, manager: bool) -> str:
    """docker's printJoinCommand, for this CLI: the command to run on the node to add."""
    out = ""
    if worker:
        out += ("To add a worker to this swarm, run the following command:\n\n"
                f"    core swarm join --token {tokens.get('Worker', '')} {manager_addr}\n\n")
    if manager:
        out += ("To add a manager to this swarm, run the following command:\n\n"
                f"    core swarm join --token {tokens.get('Manager', '')} {manager_addr}\n\n")
    return out


def print_join_command(ctx: Any, node_id: str, worker: bool, manager: bool) -> None:
    node = ctx.client.get_json(f"/nodes/{node_id}") or {}
    swarm = ctx.client.get_json("/swarm") or {}
    status = node.get("ManagerStatus")
    if status:
        sys.stdout.write(join_command_text(swarm.get("JoinTokens") or {}, status.get("Addr", ""), worker, manager))


def unlock_command_text(key: str) -> str:
    if not key:
        return ""
    return ("To unlock a swarm manager after it restarts, run the `core swarm unlock`\n"
            f"command and provide the following key:\n\n    {key}\n\n"
            "Remember to store this key in a password manager, since without it you\n"
            "will not be able to restart the manager.\n")


def _unlock_key(ctx: Any) -> str:
    from core.cli.client import APIError

    try:
        answer = ctx.client.get_json("/swarm/unlockkey") or {}
    except APIError as exc:
        raise CLIError(f"could not fetch unlock key: {exc.message}") from None
    return answer.get("UnlockKey", "")


def info_lines(swarm: dict[str, Any]) -> list[str]:
    """The lines ``core info`` prints under `` Swarm: <state>`` (docker's printSwarmInfo): node,
    role, and on a manager the cluster's settings; nothing when inactive or locked."""
    from core.units import human_duration

    def go(value: Any) -> str:
        return ("true" if value else "false") if isinstance(value, bool) else str(value)

    state = swarm.get("LocalNodeState") or "inactive"
    if state in ("inactive", "locked"):
        return []
    out = [f"  NodeID: {swarm.get('NodeID', '')}"]
    if swarm.get("Error"):
        out.append(f"  Error: {swarm['Error']}")
    control = bool(swarm.get("ControlAvailable"))
    out.append(f"  Is Manager: {go(control)}")
    cluster = swarm.get("Cluster")
    if cluster and control and not swarm.get("Error") and state != "error":
        spec = cluster.get("Spec") or {}
        out += [f"  ClusterID: {cluster.get('ID', '')}", f"  Managers: {swarm.get('Managers', 0)}",
                f"  Nodes: {swarm.get('Nodes', 0)}"]
        if cluster.get("DefaultAddrPool") is not None:
            out.append("  Default Address Pool: " + "".join(p + "  " for p in cluster["DefaultAddrPool"]))
            out.append(f"  SubnetSize: {cluster.get('SubnetSize', 0)}")
        if (cluster.get("DataPathPort") or 0) > 0:
            out.append(f"  Data Path Port: {cluster['DataPathPort']}")
        raft = spec.get("Raft") or {}
        ca_config = spec.get("CAConfig") or {}
        out += ["  Orchestration:",
                f"   Task History Retention Limit: {(spec.get('Orchestration') or {}).get('TaskHistoryRetentionLimit') or 0}",
                "  Raft:", f"   Snapshot Interval: {raft.get('SnapshotInterval') or 0}"]
        if raft.get("KeepOldSnapshots") is not None:
            out.append(f"   Number of Old Snapshots to Retain: {raft['KeepOldSnapshots']}")
        out += [f"   Heartbeat Tick: {raft.get('HeartbeatTick') or 0}", f"   Election Tick: {raft.get('ElectionTick') or 0}",
                "  Dispatcher:",
                f"   Heartbeat Period: {human_duration((spec.get('Dispatcher') or {}).get('HeartbeatPeriod', 0) / 1e9)}",
                "  CA Configuration:",
                f"   Expiry Duration: {human_duration((ca_config.get('NodeCertExpiry') or 0) / 1e9)}",
                f"   Force Rotate: {ca_config.get('ForceRotate') or 0}"]
        signing = (ca_config.get("SigningCACert") or "").strip()
        if signing:
            out.append(f"   Signing CA Certificate: \n{signing}\n")
        if ca_config.get("ExternalCAs"):
            out.append("   External CAs:")
            out += [f"     {e.get('Protocol', '')}: {e.get('URL', '')}" for e in ca_config["ExternalCAs"]]
        out.append(f"  Autolock Managers: {go(bool((spec.get('EncryptionConfig') or {}).get('AutoLockManagers')))}")
        out.append(f"  Root Rotation In Progress: {go(bool(cluster.get('RootRotationInProgress')))}")
    out.append(f"  Node Address: {swarm.get('NodeAddr', '')}")
    managers = sorted(m.get("Addr", "") for m in swarm.get("RemoteManagers") or [])
    if managers:
        out.append("  Manager Addresses:")
        out += [f"   {m}" for m in managers]
    return out


# -- commands ------------------------------------------------------------------------------------


@command
def init(ctx: Any, argv: list[str], prog: str) -> int:
    f = Flags(prog, "[OPTIONS]", "Initialize a swarm")
    f.add("advertise-addr", None, "string", help='Advertised address (format: "<ip|interface>[:port]")')
    f.add("autolock", None, help="Enable manager autolocking (requiring an unlock key to start a stopped manager)")
    f.add("availability", None, "string", default="active",
          help='Availability of the node ("active", "pause", "drain")')
    f.add("data-path-addr", None, "string",
          help='Address or interface to use for data path traffic (format: "<ip|interface>")')
    f.add("data-path-port", None, "string", typename="uint32", default="0", show_default=False,
          help="Port number to use for data path traffic (1024 - 49151). If no value is set or is set to 0, "
               "the default port (4789) is used.", convert=_uint32)
    f.add("default-addr-pool", None, "list", typename="ipNetSlice",
          help="default address pool in CIDR format (default [])", convert=_cidr)
    f.add("default-addr-pool-mask-length", None, "string", typename="uint32", default="24",
          help="default address pool subnet mask length", convert=_uint32)
    f.add("force-new-cluster", None, help="Force create a new cluster from current state")
    f.add("listen-addr", None, "string", typename="node-addr", default=DEFAULT_LISTEN_ADDR,
          help='Listen address (format: "<ip|interface>[:port]")', convert=_listen_addr)
    _add_swarm_flags(f)
    opts, args = f.parse(argv)
    f.require(args, exact=0)
    availability = _availability(opts)
    body: dict[str, Any] = {
        "ListenAddr": opts.listen_addr,
        "AdvertiseAddr": opts.advertise_addr,
        "DataPathAddr": opts.data_path_addr,
        "DataPathPort": int(opts.data_path_port),
        "DefaultAddrPool": list(opts.default_addr_pool or []),
        "ForceNewCluster": opts.force_new_cluster,
        "SubnetSize": int(opts.default_addr_pool_mask_length),
        "Spec": merge_swarm_spec({}, opts),
        "AutoLockManagers": opts.autolock,
    }
    if availability:
        body["Availability"] = availability
    from core.cli.client import APIError

    try:
        node_id = ctx.client.post("/swarm/init", body=body)
    except APIError as exc:
        if ("could not choose an IP address to advertise" in exc.detail
                or "could not find the system's IP address" in exc.detail):
            raise CLIError(exc.message + " - specify one with --advertise-addr") from None
        raise
    node_id = node_id if isinstance(node_id, str) else str(node_id or "")
    sys.stdout.write(f"Swarm initialized: current node ({node_id}) is now a manager.\n\n")
    sys.stdout.flush()
    print_join_command(ctx, node_id, worker=True, manager=False)
    sys.stdout.write("To add a manager to this swarm, run 'core swarm join-token manager' "
                     "and follow the instructions.\n")
    if opts.autolock:
        sys.stdout.write(unlock_command_text(_unlock_key(ctx)))
    return 0


@command
def join(ctx: Any, argv: list[str], prog: str) -> int:
    f = Flags(prog, "[OPTIONS] HOST:PORT", "Join a swarm as a node and/or manager")
    f.add("advertise-addr", None, "string", help='Advertised address (format: "<ip|interface>[:port]")')
    f.add("availability", None, "string", default="active",
          help='Availability of the node ("active", "pause", "drain")')
    f.add("data-path-addr", None, "string",
          help='Address or interface to use for data path traffic (format: "<ip|interface>")')
    f.add("listen-addr", None, "string", typename="node-addr", default=DEFAULT_LISTEN_ADDR,
          help='Listen address (format: "<ip|interface>[:port]")', convert=_listen_addr)
    f.add("token", None, "string", help="Token for entry into the swarm")
    opts, args = f.parse(argv)
    f.require(args, exact=1)
    availability = _availability(opts)
    body: dict[str, Any] = {
        "ListenAddr": opts.listen_addr,
        "AdvertiseAddr": opts.advertise_addr,
        "DataPathAddr": opts.data_path_addr,
        "RemoteAddrs": [args[0]],
        "JoinToken": opts.token,
    }
    if availability:
        body["Availability"] = availability
    ctx.client.post("/swarm/join", body=body)
    info = ctx.client.get_json("/info") or {}
    manager = bool((info.get("Swarm") or {}).get("ControlAvailable"))
    sys.stdout.write(f"This node joined a swarm as a {'manager' if manager else 'worker'}.\n")
    return 0


def _update(ctx: Any, swarm: dict[str, Any], spec: dict[str, Any], **rotate: bool) -> None:
    version = (swarm.get("Version") or {}).get("Index", 0)
    params: dict[str, Any] = {"version": str(version)}
    for name in ("rotateWorkerToken", "rotateManagerToken", "rotateManagerUnlockKey"):
        params[name] = "true" if rotate.get(name) else "false"
    ctx.client.post("/swarm/update", params, body=spec)


@command
def join_token(ctx: Any, argv: list[str], prog: str) -> int:
    f = Flags(prog, "[OPTIONS] (worker|manager)", "Manage join tokens")
    f.add("quiet", "q", help="Only display token")
    f.add("rotate", None, help="Rotate join token")
    opts, args = f.parse(argv)
    f.require(args, exact=1)
    role = args[0]
    worker, manager = role == "worker", role == "manager"
    if not worker and not manager:
        raise CLIError(f"unknown role {role}")
    if opts.rotate:
        swarm = ctx.client.get_json("/swarm") or {}
        _update(ctx, swarm, swarm.get("Spec") or {}, rotateWorkerToken=worker, rotateManagerToken=manager)
        if not opts.quiet:
            sys.stdout.write(f"Successfully rotated {role} join token.\n\n")
    swarm = ctx.client.get_json("/swarm") or {}
    tokens = swarm.get("JoinTokens") or {}
    if opts.quiet:
        sys.stdout.write((tokens.get("Worker" if worker else "Manager") or "") + "\n")
        return 0
    info = ctx.client.get_json("/info") or {}
    print_join_command(ctx, (info.get("Swarm") or {}).get("NodeID", ""), worker, manager)
    return 0


@command
def leave(ctx: Any, argv: list[str], prog: str) -> int:
    f = Flags(prog, "[OPTIONS]", "Leave the swarm")
    f.add("force", "f", help="Force this node to leave the swarm, ignoring warnings")
    opts, args = f.parse(argv)
    f.require(args, exact=0)
    ctx.client.post("/swarm/leave", {"force": "1" if opts.force else None})
    sys.stdout.write("Node left the swarm.\n")
    return 0


@command
def update(ctx: Any, argv: list[str], prog: str) -> int:
    f = Flags(prog, "[OPTIONS]", "Update the swarm")
    f.add("autolock", None, help="Change manager autolocking setting (true|false)")
    _add_swarm_flags(f)
    opts, args = f.parse(argv)
    f.require(args, exact=0)
    if not opts.changed:  # docker: no flag at all shows the usage
        sys.stdout.write(f.usage())
        return 0
    swarm = ctx.client.get_json("/swarm") or {}
    spec = swarm.get("Spec") or {}
    before = bool((spec.get("EncryptionConfig") or {}).get("AutoLockManagers"))
    trust_root = ((swarm.get("ClusterInfo") or swarm).get("TLSInfo") or {}).get("TrustRoot", "")
    merge_swarm_spec(spec, opts, trust_root)
    _update(ctx, swarm, spec)
    sys.stdout.write("Swarm updated.\n")
    if (spec.get("EncryptionConfig") or {}).get("AutoLockManagers") and not before:
        sys.stdout.write(unlock_command_text(_unlock_key(ctx)))
    return 0


@command
def unlock_key(ctx: Any, argv: list[str], prog: str) -> int:
    f = Flags(prog, "[OPTIONS]", "Manage the unlock key")
    f.add("quiet", "q", help="Only display token")
    f.add("rotate", None, help="Rotate unlock key")
    opts, args = f.parse(argv)
    f.require(args, exact=0)
    if opts.rotate:
        swarm = ctx.client.get_json("/swarm") or {}
        spec = swarm.get("Spec") or {}
        if not (spec.get("EncryptionConfig") or {}).get("AutoLockManagers"):
            raise CLIError("cannot rotate because autolock is not turned on")
        _update(ctx, swarm, spec, rotateManagerUnlockKey=True)
        if not opts.quiet:
            sys.stdout.write("Successfully rotated manager unlock key.\n")
    key = _unlock_key(ctx)
    if not key:
        raise CLIError("no unlock key is set")
    sys.stdout.write(key + "\n" if opts.quiet else unlock_command_text(key))
    return 0


@command
def unlock(ctx: Any, argv: list[str], prog: str) -> int:
    f = Flags(prog, "", "Unlock swarm")
    opts, args = f.parse(argv)
    f.require(args, exact=0)
    info = ctx.client.get_json("/info") or {}
    state = (info.get("Swarm") or {}).get("LocalNodeState", "inactive")
    if state in ("inactive", ""):
        raise CLIError("error: this node is not part of a swarm")
    if state != "locked":
        raise CLIError("error: swarm is not locked")
    if sys.stdin.isatty():
        import getpass

        key = getpass.getpass("Enter unlock key: ")
    else:
        key = sys.stdin.readline().strip()
    ctx.client.post("/swarm/unlock", body={"UnlockKey": key})
    return 0


# -- ca ------------------------------------------------------------------------------------------

CERTS_ROTATED = "  rotated TLS certificates"
ROTATION_NO_LEADER_GRACE = 60.0  # seconds
ROOTS_ROTATED = "  rotated CA certificates"


def rotation_progress(swarm: dict[str, Any], nodes: list[dict[str, Any]]) -> tuple[list[dict[str, Any]], bool]:
    """docker's updateProgress: the JSON messages drawing a root rotation's two bars, and whether
    it has converged (every node's certificate from the new issuer and every node trusting the
    new root, the rotation no longer in progress)."""
    import hashlib

    info = swarm.get("ClusterInfo") or swarm
    tls = info.get("TLSInfo") or {}
    root = tls.get("TrustRoot", "")
    certs_right = roots_right = 0
    for n in nodes:
        ntls = (n.get("Description") or {}).get("TLSInfo") or {}
        if (ntls.get("CertIssuerPublicKey") == tls.get("CertIssuerPublicKey")
                and ntls.get("CertIssuerSubject") == tls.get("CertIssuerSubject")):
            certs_right += 1
        if ntls.get("TrustRoot") == root:
            roots_right += 1
    total = len(nodes)
    in_progress = bool(info.get("RootRotationInProgress"))
    if not (certs_right == total and not in_progress):
        roots_right = 0

    def bar(ident: str, action: str, current: int) -> dict[str, Any]:
        width = 50 * current // total if total else 0
        return {"id": ident, "status": action, "progressDetail": {"current": current, "total": total},
                "progress": f"[{'=' * width}>{' ' * (50 - width)}] {current}/{total} nodes"}

    messages = [{"id": "desired root digest", "status": "sha256:" + hashlib.sha256(root.encode()).hexdigest()},
                bar(CERTS_ROTATED, "", certs_right), bar(ROOTS_ROTATED, " ", roots_right)]
    done = certs_right == total and not in_progress and roots_right == total
    return messages, done


def display_trust_root(swarm: dict[str, Any]) -> None:
    root = ((swarm.get("ClusterInfo") or swarm).get("TLSInfo") or {}).get("TrustRoot", "")
    if not root:
        raise CLIError("no CA information available")
    sys.stdout.write(root.strip() + "\n")


@command
def ca(ctx: Any, argv: list[str], prog: str) -> int:
    f = Flags(prog, "[OPTIONS]", "Display and rotate the root CA")
    _add_ca_flags(f)
    f.add("ca-cert", None, "string", typename="pem-file",
          help="Path to the PEM-formatted root CA certificate to use for the new cluster", convert=_pem_file)
    f.add("ca-key", None, "string", typename="pem-file",
          help="Path to the PEM-formatted root CA key to use for the new cluster", convert=_pem_file)
    f.add("detach", "d", help="Exit immediately instead of waiting for the root rotation to converge")
    f.add("quiet", "q", help="Suppress progress output")
    f.add("rotate", None, help="Rotate the swarm CA - if no certificate or key are provided, new ones will be "
                               "generated")
    opts, args = f.parse(argv)
    f.require(args, exact=0)
    swarm = ctx.client.get_json("/swarm") or {}
    if not opts.rotate:
        for name in ("ca-cert", "ca-key", "cert-expiry", "external-ca"):
            if name in opts.changed:
                raise CLIError(f"`--{name}` flag requires the `--rotate` flag to update the CA")
        display_trust_root(swarm)
        return 0
    if "external-ca" in opts.changed and opts.external_ca and "ca-cert" not in opts.changed:
        raise CLIError("rotating to an external CA requires the `--ca-cert` flag to specify the external CA's "
                       "cert - to add an external CA with the current root CA certificate, use the `update` "
                       "command instead")
    if "ca-cert" in opts.changed and not opts.external_ca and "ca-key" not in opts.changed:
        raise CLIError("the --ca-cert flag requires that a --ca-key flag and/or --external-ca flag be provided "
                       "as well")
    spec = swarm.get("Spec") or {}
    merge_ca_flags(spec, opts, opts.ca_cert)
    ca_config = spec.setdefault("CAConfig", {})
    ca_config["SigningCACert"] = opts.ca_cert
    ca_config["SigningCAKey"] = opts.ca_key
    if not opts.ca_cert and not opts.ca_key:
        ca_config["ForceRotate"] = int(ca_config.get("ForceRotate") or 0) + 1
    _update(ctx, swarm, spec)
    if opts.detach:
        return 0
    import time

    from core.cli.format import display_stream

    from core.cli.client import APIError

    def read() -> tuple[dict[str, Any], list[dict[str, Any]]]:
        # core's managers restart their etcd members on the new trust bundle: a moment without a
        # leader is part of the rotation, not a reason to stop watching it
        deadline = time.monotonic() + ROTATION_NO_LEADER_GRACE
        while True:
            try:
                return ctx.client.get_json("/swarm") or {}, ctx.client.get_json("/nodes") or []
            except APIError as exc:
                if exc.status != 503 or "does not have a leader" not in exc.detail or time.monotonic() > deadline:
                    raise
            time.sleep(0.5)

    def stream() -> Any:
        shown: dict[str, Any] = {}  # each line again only when it changed (docker repeats them all)
        while True:
            current, nodes = read()
            messages, done = rotation_progress(current, nodes)
            for msg in messages:
                if shown.get(msg["id"]) != msg:
                    shown[msg["id"]] = msg
                    yield msg
            if done:
                return
            time.sleep(0.2)

    try:
        if opts.quiet:
            for _ in stream():
                pass
            return 0
        display_stream(stream())
    except KeyboardInterrupt:
        sys.stdout.write("Operation continuing in background.\n")
        return 0
    display_trust_root(read()[0])
    return 0
