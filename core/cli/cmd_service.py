"""Service commands: ``service create``, ``ls``, ``ps``, ``inspect``, ``scale``, ``update``,
``rollback``, ``logs``, ``rm`` — docker's flags, requests and output (docker/cli's
``cli/command/service``), spoken to any daemon with docker's Engine API; and the task table
``node ps`` shares (:func:`print_tasks`).

What each sends:

- ``create``: ``POST /services/create`` with a ``ServiceSpec`` built from the flags (docker's
  flag defaults included: update and rollback configs, restart policy, stop grace period,
  endpoint mode) and, with ``--with-registry-auth``, ``X-Registry-Auth`` from the docker
  config; prints the service ID, then (without ``-d``) docker's progress until the service
  has converged: ``overall progress: 5 out of 5 tasks`` and ``verify: Service converged``.
- ``update``, ``scale``, ``rollback``: ``GET /services/<id>``, the spec changed by the flags
  given, ``POST /services/<id>/update?version=`` with the version read (a concurrent change
  fails as docker's, ``update out of sequence``); ``rollback`` (and ``update --rollback``)
  sends ``rollback=previous``.
- ``ls``: ``GET /services?status=1`` (REPLICAS running/desired); ``ps``: ``GET /tasks`` with
  a ``service`` filter, node names from ``GET /nodes``; ``inspect``: ``GET
  /services/<id>?insertDefaults=1`` (``--pretty``: docker's human-readable layout);
  ``logs``: ``GET /services/<id>/logs`` (or a task's) with ``details``, each line prefixed
  ``<service>.<slot>.<task>@<node>    |``; ``rm``: ``DELETE /services/<id>``.
"""
from __future__ import annotations

import json
import sys
import time

from core.cli.client import APIError, CLIError
from core.cli.flags import FORMAT_HELP, INSPECT_FORMAT_HELP, Flags, command, parse_filters
from core.cli.flagvalues import (duration_ns, kv_map, parse_cpus, parse_mount, parse_port_range, parse_uint,
                                split_proto_port, validate_env, validate_label)
from core.cli.format import natural_key, print_inspect, render_format, truncate_id

TYPE_CHECKING = False
if TYPE_CHECKING:
    from typing import Any

NS = 10**9
LS_FORMAT = "table {{.ID}}\t{{.Name}}\t{{.Mode}}\t{{.Replicas}}\t{{.Image}}\t{{.Ports}}"
LS_HEADERS = {"ID": "ID", "Name": "NAME", "Mode": "MODE", "Replicas": "REPLICAS", "Image": "IMAGE",
              "Ports": "PORTS"}
PS_FORMAT = ("table {{.ID}}\t{{.Name}}\t{{.Image}}\t{{.Node}}\t{{.DesiredState}}\t{{.CurrentState}}\t"
             "{{.Error}}\t{{.Ports}}")
PS_HEADERS = {"ID": "ID", "Name": "NAME", "Image": "IMAGE", "Node": "NODE", "DesiredState": "DESIRED STATE",
              "CurrentState": "CURRENT STATE", "Error": "ERROR", "Ports": "PORTS"}
MAX_ERR = 30
# docker's progress: how far along each task state is
PROGRESS = {"new": 1, "allocated": 2, "pending": 3, "assigned": 4, "accepted": 5, "preparing": 6,
            "ready": 7, "starting": 8, "running": 9}
LONGEST_STATE = len("preparing")


def pretty(value: Any) -> str:
    from core.cli.cmd_node import pretty as node_pretty

    return node_pretty(value)


# -- flag values -----------------------------------------------------------------------------------

def _command(text: str) -> str:
    """docker's ``ShlexOpt``: a command line that splits as a shell would."""
    import shlex

    try:
        shlex.split(text)
    except ValueError:
        raise ValueError("EOF found when expecting closing quote") from None
    return text


def _ratio(text: str) -> float:
    try:
        return float(text)
    except ValueError:
        raise ValueError(f'strconv.ParseFloat: parsing "{text}": invalid syntax') from None


def _cpus(text: str) -> int:

    return parse_cpus(text)


def _memory(text: str) -> int:
    from core.units import ram_in_bytes

    return ram_in_bytes(text)


def parse_publish(value: str) -> list[dict[str, Any]]:
    """docker's ``opts.PortOpt``: ``8080:80[/udp]``, ``80`` (published port allocated) or the long
    syntax ``published=8080,target=80,protocol=udp,mode=host``; ranges ``8080-8081:80-81``."""
    if "=" in value:
        port: dict[str, Any] = {"Protocol": "tcp", "PublishMode": "ingress"}
        for field in value.split(","):
            key, eq, val = field.partition("=")
            key = key.strip().lower()
            if not eq:
                raise ValueError(f"invalid field {field} must be a key=value pair")
            if key == "name":
                port["Name"] = val
            elif key == "protocol":
                if val not in ("tcp", "udp", "sctp"):
                    raise ValueError(f"invalid protocol value '{val}'")
                port["Protocol"] = val
            elif key == "mode":
                if val not in ("ingress", "host"):
                    raise ValueError(f"invalid publish mode value ({val}): must be either 'ingress' or 'host'")
                port["PublishMode"] = val
            elif key == "target":
                port["TargetPort"] = _port_number(val, "target")
            elif key == "published":
                port["PublishedPort"] = _port_number(val, "published")
            else:
                raise ValueError(f"invalid field key {key}")
        if not port.get("TargetPort"):
            raise ValueError("missing mandatory field 'target'")
        return [port]

    proto, rest = split_proto_port(value)
    if proto not in ("tcp", "udp", "sctp"):
        raise ValueError(f"invalid proto: {proto}")
    published_text, sep, target_text = rest.rpartition(":")
    if ":" in published_text:  # an IP: not for services
        raise ValueError(f"hostip is not supported: {value}")
    t_start, t_end = parse_port_range(target_text)
    if sep and published_text:
        p_start, p_end = parse_port_range(published_text)
        if p_end - p_start != t_end - t_start and t_end != t_start:
            raise ValueError(f"invalid ranges specified for container and host Ports: {target_text} and "
                             f"{published_text}")
    else:
        p_start = p_end = 0
    out = []
    for i, target in enumerate(range(t_start, t_end + 1)):
        port = {"Protocol": proto, "TargetPort": target, "PublishMode": "ingress"}
        if p_start:
            port["PublishedPort"] = p_start + i
        out.append(port)
    if t_start == t_end and p_end > p_start:  # many published ports to one target
        out = [{"Protocol": proto, "TargetPort": t_start, "PublishedPort": p, "PublishMode": "ingress"}
               for p in range(p_start, p_end + 1)]
    return out


def _port_number(text: str, what: str) -> int:
    if not text or not all("0" <= c <= "9" for c in text) or not 0 < int(text) <= 65535:
        raise ValueError(f"invalid {what} port: {text}")
    return int(text)


def _placement_pref(text: str) -> dict[str, Any]:
    strategy, eq, descriptor = text.partition("=")
    if not eq:
        raise ValueError("placement preference must be of the format \"<strategy>=<arg>\"")
    if strategy.lower() != "spread":
        raise ValueError(f"unsupported placement preference {strategy} (only spread is supported)")
    return {"Spread": {"SpreadDescriptor": descriptor}}


def _mount(text: str) -> dict[str, Any]:

    return parse_mount(text)


def _env(text: str) -> str:

    return validate_env(text)


# -- the flags ---------------------------------------------------------------------------------------

def _spec_flags(f: Flags, update: bool) -> None:
    """The flags ``create`` and ``update`` share (docker's ``addServiceFlags``)."""
    d = (lambda value: None) if update else (lambda value: value)
    f.add("detach", "d", help="Exit immediately instead of waiting for the service to converge")
    f.add("quiet", "q", help="Suppress progress output")
    f.add("replicas", None, "string", convert=parse_uint, typename="uint", help="Number of tasks")
    f.add("replicas-max-per-node", None, "string", convert=parse_uint, typename="uint",
          help="Maximum number of tasks per node (default 0 = unlimited)")
    f.add("workdir", "w", "string", help="Working directory inside the container")
    f.add("user", "u", "string", help="Username or UID (format: <name|uid>[:<group|gid>])")
    f.add("hostname", None, "string", help="Container hostname")
    f.add("entrypoint", None, "string", typename="command", convert=_command,
          help="Overwrite the default ENTRYPOINT of the image")
    f.add("init", None, help="Use an init inside each service container to forward signals and reap processes")
    f.add("tty", "t", help="Allocate a pseudo-TTY")
    f.add("read-only", None, help="Mount the container's root filesystem as read only")
    f.add("stop-signal", None, "string", help="Signal to stop the container")
    f.add("stop-grace-period", None, "string", default=d("10s"), convert=duration_ns, typename="duration",
          help="Time to wait before force killing a container (ns|us|ms|s|m|h)")
    f.add("limit-cpu", None, "string", convert=_cpus, typename="decimal", help="Limit CPUs")
    f.add("limit-memory", None, "string", convert=_memory, typename="bytes", help="Limit Memory")
    f.add("limit-pids", None, "int", help="Limit maximum number of processes (default 0 = unlimited)")
    f.add("reserve-cpu", None, "string", convert=_cpus, typename="decimal", help="Reserve CPUs")
    f.add("reserve-memory", None, "string", convert=_memory, typename="bytes", help="Reserve Memory")
    f.add("restart-condition", None, "string", default=d("any"),
          help='Restart when condition is met ("none", "on-failure", "any")')
    f.add("restart-delay", None, "string", default=d("5s"), convert=duration_ns, typename="duration",
          help="Delay between restart attempts (ns|us|ms|s|m|h)")
    f.add("restart-max-attempts", None, "string", convert=parse_uint, typename="uint",
          help="Maximum number of restarts before giving up")
    f.add("restart-window", None, "string", convert=duration_ns, typename="duration",
          help="Window used to evaluate the restart policy (ns|us|ms|s|m|h)")
    for kind, actions in (("update", '"pause", "continue", "rollback"'), ("rollback", '"pause", "continue"')):
        what = "updates" if kind == "update" else "rollbacks"
        f.add(f"{kind}-parallelism", None, "string", default=d("1"), convert=parse_uint, typename="uint",
              help=f"Maximum number of tasks {'updated' if kind == 'update' else 'rolled back'} "
                   "simultaneously (0 to update all at once)")
        f.add(f"{kind}-delay", None, "string", default=d("0s"), convert=duration_ns, typename="duration",
              help=f"Delay between task {what} (ns|us|ms|s|m|h)", show_default=False)
        f.add(f"{kind}-failure-action", None, "string", default=d("pause"),
              help=f"Action on {kind} failure ({actions})")
        f.add(f"{kind}-monitor", None, "string", default=d("5s"), convert=duration_ns, typename="duration",
              help=f"Duration after each task {kind} to monitor for failure (ns|us|ms|s|m|h)")
        f.add(f"{kind}-max-failure-ratio", None, "string", default=d("0"), convert=_ratio, typename="float",
              help=f"Failure rate to tolerate during {'an update' if kind == 'update' else 'a rollback'}",
              show_default=False)
        f.add(f"{kind}-order", None, "string", default=d("stop-first"),
              help=f'{kind.capitalize()} order ("start-first", "stop-first")')
    f.add("health-cmd", None, "string", help="Command to run to check health")
    f.add("health-interval", None, "string", convert=duration_ns, typename="duration",
          help="Time between running the check (ms|s|m|h)")
    f.add("health-timeout", None, "string", convert=duration_ns, typename="duration",
          help="Maximum time to allow one check to run (ms|s|m|h)")
    f.add("health-retries", None, "int", help="Consecutive failures needed to report unhealthy")
    f.add("health-start-period", None, "string", convert=duration_ns, typename="duration",
          help="Start period for the container to initialize before counting retries towards unstable (ms|s|m|h)")
    f.add("no-healthcheck", None, help="Disable any container-specified HEALTHCHECK")
    f.add("endpoint-mode", None, "string", default=d("vip"), help="Endpoint mode (vip or dnsrr)")
    f.add("with-registry-auth", None, help="Send registry authentication details to swarm agents")
    f.add("no-resolve-image", None, help="Do not query the registry to resolve image digest and supported "
                                         "platforms (core's daemon pins the digest itself)")


def _create_flags(f: Flags) -> None:
    f.add("name", None, "string", help="Service name")
    f.add("mode", None, "string", default="replicated", help='Service mode ("replicated", "global")')
    f.add("env", "e", "list", convert=_env, help="Set environment variables")
    f.add("label", "l", "list", help="Service labels", convert=validate_label)
    f.add("container-label", None, "list", help="Container labels", convert=validate_label)
    f.add("publish", "p", "list", convert=parse_publish, typename="port", help="Publish a port as a node port")
    f.add("mount", None, "list", convert=_mount, typename="mount", help="Attach a filesystem mount to the service")
    f.add("network", None, "list", typename="network", help="Network attachments")
    f.add("constraint", None, "list", help="Placement constraints")
    f.add("placement-pref", None, "list", convert=_placement_pref, typename="pref",
          help="Add a placement preference")


def _update_flags(f: Flags) -> None:
    f.add("image", None, "string", help="Service image tag")
    f.add("args", None, "string", typename="command", help="Service command args")
    f.add("force", None, help="Force update even if no changes require it")
    f.add("rollback", None, help="Rollback to previous specification")
    f.add("env-add", None, "list", convert=_env, help="Add or update an environment variable")
    f.add("env-rm", None, "list", help="Remove an environment variable")
    f.add("label-add", None, "list", help="Add or update a service label", convert=validate_label)
    f.add("label-rm", None, "list", help="Remove a label by its key")
    f.add("container-label-add", None, "list", help="Add or update a container label", convert=validate_label)
    f.add("container-label-rm", None, "list", help="Remove a container label by its key")
    f.add("publish-add", None, "list", convert=parse_publish, typename="port", help="Add or update a published port")
    f.add("publish-rm", None, "list", convert=parse_publish, typename="port",
          help="Remove a published port by its target port")
    f.add("mount-add", None, "list", convert=_mount, typename="mount", help="Add or update a mount on a service")
    f.add("mount-rm", None, "list", help="Remove a mount by its target path")
    f.add("network-add", None, "list", typename="network", help="Add a network")
    f.add("network-rm", None, "list", help="Remove a network")
    f.add("constraint-add", None, "list", help="Add or update a placement constraint")
    f.add("constraint-rm", None, "list", help="Remove a constraint")
    f.add("placement-pref-add", None, "list", convert=_placement_pref, typename="pref",
          help="Add a placement preference")
    f.add("placement-pref-rm", None, "list", convert=_placement_pref, typename="pref",
          help="Remove a placement preference")


def _apply(spec: dict[str, Any], opts: Any, given: Any, creating: bool = False) -> None:
    """Set the spec's fields from the flags in ``given`` (a name → bool test).  On create, an
    update or rollback config with any flag given gets every field, the defaults included (as
    docker's CLI makes it); on update only the flags given change."""
    tt = spec.setdefault("TaskTemplate", {})
    cs = tt.setdefault("ContainerSpec", {})
    if given("replicas"):
        mode = spec.get("Mode") or {}
        if "Replicated" not in mode:
            raise CLIError("replicas can only be used with replicated mode", 1)
        mode["Replicated"]["Replicas"] = opts.replicas
    if given("replicas-max-per-node"):
        tt.setdefault("Placement", {})["MaxReplicas"] = opts.replicas_max_per_node
    for flag, key in (("workdir", "Dir"), ("user", "User"), ("hostname", "Hostname"),
                      ("stop-signal", "StopSignal")):
        if given(flag):
            cs[key] = getattr(opts, flag.replace("-", "_"))
    if given("entrypoint"):
        import shlex

        cs["Command"] = shlex.split(opts.entrypoint)
    for flag, key in (("init", "Init"), ("tty", "TTY"), ("read-only", "ReadOnly")):
        if given(flag):
            cs[key] = getattr(opts, flag.replace("-", "_"))
    if given("stop-grace-period"):
        cs["StopGracePeriod"] = opts.stop_grace_period
    resources = tt.setdefault("Resources", {})
    limits = resources.setdefault("Limits", {})
    reservations = resources.setdefault("Reservations", {})
    if given("limit-cpu"):
        limits["NanoCPUs"] = opts.limit_cpu
    if given("limit-memory"):
        limits["MemoryBytes"] = opts.limit_memory
    if given("limit-pids"):
        limits["Pids"] = opts.limit_pids
    if given("reserve-cpu"):
        reservations["NanoCPUs"] = opts.reserve_cpu
    if given("reserve-memory"):
        reservations["MemoryBytes"] = opts.reserve_memory
    restart_flags = ("restart-condition", "restart-delay", "restart-max-attempts", "restart-window")
    if any(given(f) for f in restart_flags):
        rp = tt.setdefault("RestartPolicy", {})
        if given("restart-condition"):
            if opts.restart_condition not in ("none", "on-failure", "any"):
                raise CLIError(f'invalid argument "{opts.restart_condition}" for "--restart-condition" '
                               'flag: invalid restart condition: must be one of "none", "on-failure", '
                               'or "any"', 125)
            rp["Condition"] = opts.restart_condition
        if given("restart-delay"):
            rp["Delay"] = opts.restart_delay
        if given("restart-max-attempts"):
            rp["MaxAttempts"] = opts.restart_max_attempts
        if given("restart-window"):
            rp["Window"] = opts.restart_window
    for kind, key in (("update", "UpdateConfig"), ("rollback", "RollbackConfig")):
        names = [f"{kind}-{n}" for n in ("parallelism", "delay", "failure-action", "monitor",
                                         "max-failure-ratio", "order")]
        if not any(given(n) for n in names):
            continue
        chosen = set(names) if creating else {n for n in names if given(n)}
        uc = spec.get(key) or {}
        spec[key] = uc
        for name, field in zip(names, ("Parallelism", "Delay", "FailureAction", "Monitor", "MaxFailureRatio",
                                       "Order")):
            if name in chosen:
                uc[field] = getattr(opts, name.replace("-", "_"))
    health_flags = ("health-cmd", "health-interval", "health-timeout", "health-retries", "health-start-period")
    if given("no-healthcheck"):
        if any(given(f) for f in health_flags):
            raise CLIError("--no-healthcheck conflicts with --health-* options", 125)
        if opts.no_healthcheck:
            cs["Healthcheck"] = {"Test": ["NONE"]}
    elif any(given(f) for f in health_flags):
        hc = cs.get("Healthcheck") or {}
        if hc.get("Test") == ["NONE"]:
            hc = {}
        cs["Healthcheck"] = hc
        if given("health-cmd"):
            hc["Test"] = ["CMD-SHELL", opts.health_cmd] if opts.health_cmd else []
        for flag, key in (("health-interval", "Interval"), ("health-timeout", "Timeout"),
                          ("health-start-period", "StartPeriod")):
            if given(flag):
                hc[key] = getattr(opts, flag.replace("-", "_"))
        if given("health-retries"):
            hc["Retries"] = opts.health_retries
    if given("endpoint-mode"):
        if opts.endpoint_mode not in ("vip", "dnsrr"):
            raise CLIError(f'invalid argument "{opts.endpoint_mode}" for "--endpoint-mode" flag: '
                           'invalid endpoint mode: must be "vip" or "dnsrr"', 125)
        spec.setdefault("EndpointSpec", {})["Mode"] = opts.endpoint_mode


def _convert_defaults(f: Flags, opts: Any) -> None:
    """Flag defaults written as the user would ("10s") in the value the flag converts to."""
    for flag in f.flags:
        if flag.convert is not None and flag.long not in opts.changed and isinstance(flag.default, str) \
                and flag.default and flag.kind != "list":
            setattr(opts, flag.dest, flag.convert(flag.default))


def _registry_header(image: str) -> dict[str, str]:
    from core.cli import dockerconfig

    return dockerconfig.header_for(dockerconfig.registry_of(image)) or {"X-Registry-Auth": "e30="}


def _print_warnings(answer: Any) -> None:
    for warning in (answer or {}).get("Warnings") or []:
        sys.stderr.write(warning.rstrip("\n") + "\n")


# -- create ------------------------------------------------------------------------------------------

@command
def create(ctx: Any, argv: list[str], prog: str) -> int:
    f = Flags(prog, "[OPTIONS] IMAGE [COMMAND] [ARG...]", "Create a new service", interspersed=False)
    _spec_flags(f, update=False)
    _create_flags(f)
    opts, args = f.parse(argv)
    f.require(args, least=1)
    _convert_defaults(f, opts)
    if opts.mode not in ("replicated", "global"):
        raise CLIError(f"invalid mode: {opts.mode}", 1)  # docker: 'invalid mode'
    if opts.mode == "global" and "replicas" in opts.changed:
        raise CLIError("replicas can only be used with replicated mode", 1)
    image, command_args = args[0], args[1:]

    cs: dict[str, Any] = {"Image": image}
    if command_args:
        cs["Args"] = command_args
    if opts.env:
        cs["Env"] = list(opts.env)
    if opts.container_label:
        cs["Labels"] = kv_map(opts.container_label)
    if opts.mount:
        cs["Mounts"] = list(opts.mount)
    spec: dict[str, Any] = {
        "Name": opts.name,
        "Labels": kv_map(opts.label),
        "TaskTemplate": {"ContainerSpec": cs, "ForceUpdate": 0},
        "Mode": {"Global": {}} if opts.mode == "global" else {"Replicated": {}},
    }
    placement: dict[str, Any] = {}
    if opts.constraint:
        placement["Constraints"] = list(opts.constraint)
    if opts.placement_pref:
        placement["Preferences"] = list(opts.placement_pref)
    if placement:
        spec["TaskTemplate"]["Placement"] = placement
    if opts.network:
        spec["TaskTemplate"]["Networks"] = [{"Target": n} for n in opts.network]
    ports = [p for group in opts.publish or [] for p in group]
    if ports:
        spec["EndpointSpec"] = {"Mode": "vip", "Ports": ports}
    # as docker's CLI: only what the flags give; the daemon's defaults do the rest (inspect shows them)
    _apply(spec, opts, lambda name: name in opts.changed, creating=True)
    spec.setdefault("EndpointSpec", {"Mode": "vip"})
    headers = _registry_header(image) if opts.with_registry_auth else {}
    resp = ctx.client.request("POST", "/services/create", body=spec, headers=headers)
    try:
        answer = resp.json()
    finally:
        resp.close()
    service_id = answer.get("ID", "")
    return _answered(ctx, answer, service_id, service_id, opts)


# -- waiting for convergence ----------------------------------------------------------------------------

class _Screen:
    """docker's progress output: on a terminal, lines redrawn in place; elsewhere a line is
    printed when it changes."""

    def __init__(self, quiet: bool) -> None:
        self.quiet = quiet
        self.tty = sys.stdout.isatty() and not quiet
        self.lines: list[str] = []
        self.last: dict[str, str] = {}

    def show(self, lines: list[tuple[str, str]]) -> None:
        if self.quiet:
            return
        text = [f"{key}: {value}" for key, value in lines]
        if self.tty:
            if self.lines:
                sys.stdout.write(f"\x1b[{len(self.lines)}A")
            for line in text:
                sys.stdout.write("\x1b[2K\r" + line + "\n")
            self.lines = text
        else:
            for key, value in lines:
                plain = value.split(" [", 1)[0] if key[:1].isdigit() or "/" in key else value
                if self.last.get(key) != plain:
                    self.last[key] = plain
                    sys.stdout.write(f"{key}: {plain}\n")
        sys.stdout.flush()


def _bar(state: str) -> str:
    step = PROGRESS.get(state, 0)
    width = 50
    filled = width if step >= 9 else step * width // 9
    if step >= 9:
        return "[" + "=" * width + ">] "
    return "[" + "=" * filled + ">" + " " * (width - filled) + "] "


#: docker's order of task states (the progress display's ``numberedStates``)
NUMBERED = {state: i + 1 for i, state in enumerate(
    ("new", "allocated", "pending", "assigned", "accepted", "preparing", "ready", "starting", "running",
     "complete", "shutdown", "failed", "rejected"))}
TERMINAL = ("complete", "shutdown", "failed", "rejected", "remove", "orphaned")


def _pick(tasks: list[dict[str, Any]], key: str, active: set[str] | None) -> dict[Any, dict[str, Any]]:
    """One task per slot (or node): the lowest desired state, then the lowest observed state, as
    docker's progress picks them; tasks on nodes that are down are left out."""
    out: dict[Any, dict[str, Any]] = {}
    for t in tasks:
        desired = NUMBERED.get(t.get("DesiredState", ""), 0)
        state = NUMBERED.get((t.get("Status") or {}).get("State", ""), 0)
        if not desired or not state:
            continue
        k = t.get(key) or (0 if key == "Slot" else "")
        old = out.get(k)
        if old is not None:
            old_desired = NUMBERED.get(old.get("DesiredState", ""), 0)
            if old_desired < desired:
                continue
            if old_desired == desired and NUMBERED.get((old.get("Status") or {}).get("State", ""), 0) <= state:
                continue
        if active is not None and t.get("NodeID") and t["NodeID"] not in active:
            continue
        out[k] = t
    return out


def _task_line(t: dict[str, Any]) -> str:
    status = t.get("Status") or {}
    if status.get("Err"):
        err = status["Err"]
        return err if len(err) <= 50 else err[:49] + "…"
    state = status.get("State", "")
    return f"{state:<{LONGEST_STATE}} {_bar(state)}"


def convergence(service: dict[str, Any], tasks: list[dict[str, Any]], active: set[str] | None,
                rollback: bool = False) -> tuple[int, int, list[tuple[str, str]]]:
    """How far a service is, from its up-to-date tasks (docker's ``_up-to-date`` filter): (tasks
    running, tasks wanted, the progress lines: overall, then one per slot or node)."""
    mode = service["Spec"].get("Mode") or {}
    lines: list[tuple[str, str]] = []
    running = 0
    if "Replicated" in mode:
        wanted = mode["Replicated"].get("Replicas", 1)
        picked = _pick(tasks, "Slot", active)
        for i, slot in enumerate(sorted(picked, key=lambda s: s or 0), start=1):
            t = picked[slot]
            if t.get("DesiredState") not in TERMINAL and (t.get("Status") or {}).get("State") == "running":
                running += 1
            if i <= wanted and wanted <= 100 and t.get("DesiredState") not in TERMINAL and \
                    ((t.get("Status") or {}).get("State") not in TERMINAL or (t.get("Status") or {}).get("Err")):
                lines.append((f"{i}/{wanted}", _task_line(t)))
    else:
        picked = _pick(tasks, "NodeID", None)
        wanted = len(picked)
        if not wanted:
            return 0, -1, [("overall progress", "waiting for new tasks")]
        for node_id in sorted(picked):
            t = picked[node_id]
            if active is not None and node_id not in active:
                continue
            if t.get("DesiredState") not in TERMINAL and (t.get("Status") or {}).get("State") == "running":
                running += 1
            if wanted <= 100:
                lines.append((truncate_id(node_id), _task_line(t)))
    overall = (f"rolling back update: {running} out of {wanted} tasks" if rollback
               else f"{running} out of {wanted} tasks")
    return running, wanted, [("overall progress", overall)] + lines


def wait_for_service(ctx: Any, service_id: str, *, quiet: bool = False, poll: float = 0.5) -> None:
    """docker's ``waitOnService``: progress until the service's up-to-date tasks run, then its
    update monitor period (default 5 s) to verify they stay up; a paused update or rollback,
    or a rollback that completed instead, ends it with docker's error."""
    screen = _Screen(quiet)
    converged_at = 0.0
    rollback = False
    notes: list[tuple[str, str]] = []
    while True:
        service = ctx.client.get_json(f"/services/{service_id}")  # as stored: what tasks copy
        tasks = ctx.client.get_json("/tasks", {"filters": json.dumps({"service": [service["ID"]],
                                                                      "_up-to-date": ["true"]})}) or []
        nodes = ctx.client.get_json("/nodes") or []
        active = {n["ID"] for n in nodes if (n.get("Status") or {}).get("State") != "down"}
        status = service.get("UpdateStatus") or {}
        state = status.get("State", "")
        if state == "paused":
            raise CLIError(f"service update paused: {status.get('Message', '')}", 1)
        if state == "rollback_paused":
            raise CLIError(f"service rollback paused: {status.get('Message', '')}", 1)
        if state == "updating":
            rollback = False
        if state == "rollback_started":
            if not rollback and status.get("Message"):
                notes = [("rollback", status["Message"])]
            rollback = True
        running, wanted, lines = convergence(service, tasks, active, rollback)
        converged = running == wanted
        if state == "rollback_completed" and not converged:
            raise CLIError(f"service rolled back: {status.get('Message', '')}", 1)
        monitor = ((service["Spec"].get("UpdateConfig") or {}).get("Monitor") or 5 * NS) / NS
        if converged:
            converged_at = converged_at or time.monotonic()
            waited = time.monotonic() - converged_at
            if waited >= monitor:
                screen.show(notes + lines + [("verify", "Service converged")])
                return
            left = int(monitor - waited + 0.999)
            screen.show(notes + lines + [("verify", f"Waiting {left} seconds to verify that tasks are stable...")])
        else:
            converged_at = 0.0
            screen.show(notes + lines)
        time.sleep(poll)


# -- ls / ps / inspect -------------------------------------------------------------------------------------

def image_of(spec: dict[str, Any]) -> str:
    """docker's service IMAGE column: the familiar name and tag, digest left out."""
    from core.cli.format import familiar

    image = ((spec.get("TaskTemplate") or {}).get("ContainerSpec") or {}).get("Image", "")
    name = image.split("@", 1)[0]
    return familiar(name) if name else image


def ports_text(ports: list[dict[str, Any]] | None) -> str:
    """docker's PORTS of ``service ls``: ingress ports, ranges grouped: ``*:8080->80/tcp``."""
    if not ports:
        return ""
    ordered = sorted(ports, key=lambda p: (p.get("Protocol", ""), p.get("PublishedPort", 0)))
    out: list[str] = []
    cur: list[Any] | None = None  # [pstart, pend, tstart, tend, proto]

    def text(r: list[Any]) -> str:
        pub = f"{r[0]}-{r[1]}" if r[1] > r[0] else str(r[0])
        tgt = f"{r[2]}-{r[3]}" if r[3] > r[2] else str(r[2])
        return f"*:{pub}->{tgt}/{r[4]}"

    for p in ordered:
        if p.get("PublishMode", "ingress") != "ingress":
            continue
        pub, tgt, proto = p.get("PublishedPort", 0), p.get("TargetPort", 0), p.get("Protocol", "tcp")
        if cur is None or proto != cur[4] or pub - cur[1] > 1 or tgt - cur[3] > 1 or \
                (cur[3] != cur[2] and tgt <= cur[3]):
            if cur is not None and cur[0] > 0:
                out.append(text(cur))
            cur = [pub, pub, tgt, tgt, proto]
            continue
        cur[1], cur[3] = pub, tgt
    if cur is not None and cur[0] > 0:
        out.append(text(cur))
    return ", ".join(out)


def service_row(service: dict[str, Any]) -> dict[str, Any]:
    spec = service.get("Spec") or {}
    mode = spec.get("Mode") or {}
    status = service.get("ServiceStatus") or {}
    replicas = f"{status.get('RunningTasks', 0)}/{status.get('DesiredTasks', 0)}"
    max_per_node = ((spec.get("TaskTemplate") or {}).get("Placement") or {}).get("MaxReplicas") or 0
    if "Replicated" in mode and max_per_node:
        replicas += f" (max {max_per_node} per node)"
    return {"ID": truncate_id(service.get("ID", "")), "Name": spec.get("Name", ""),
            "Mode": "global" if "Global" in mode else "replicated" if "Replicated" in mode else "",
            "Replicas": replicas, "Image": image_of(spec),
            "Ports": ports_text((service.get("Endpoint") or {}).get("Ports"))}


@command
def ls(ctx: Any, argv: list[str], prog: str) -> int:
    f = Flags(prog, "[OPTIONS]", "List services", aliases="core service ls, core service list")
    f.add("filter", "f", "list", typename="filter", help="Filter output based on conditions provided")
    f.add("format", None, "string", help=FORMAT_HELP)
    f.add("quiet", "q", help="Only display IDs")
    opts, args = f.parse(argv)
    f.require(args, exact=0)
    filters = parse_filters(opts.filter)
    services = ctx.client.get_json("/services", {"filters": json.dumps(filters) if filters else None,
                                                 "status": "1"}) or []
    services.sort(key=lambda s: natural_key((s.get("Spec") or {}).get("Name", "")))
    rows = [service_row(s) for s in services]
    fmt = opts.format or "table"
    if fmt == "table":
        fmt = "{{.ID}}" if opts.quiet else LS_FORMAT
    elif fmt == "raw":
        fmt = "id: {{.ID}}" if opts.quiet else ("id: {{.ID}}\\nname: {{.Name}}\\nmode: {{.Mode}}\\n"
                                                "replicas: {{.Replicas}}\\nimage: {{.Image}}\\nports: {{.Ports}}\\n")
    render_format(fmt, rows, LS_HEADERS)
    return 0


def _task_ports(task: dict[str, Any]) -> str:
    ports = ((task.get("Status") or {}).get("PortStatus") or {}).get("Ports") or []
    return ", ".join(f"*:{p.get('PublishedPort', 0)}->{p.get('TargetPort', 0)}/{p.get('Protocol', 'tcp')}"
                     for p in ports)


def task_rows(ctx: Any, tasks: list[dict[str, Any]], *, trunc: bool = True, resolve: bool = True,
              now: float | None = None) -> list[dict[str, Any]]:
    """The rows of docker's task table (``service ps``, ``node ps``): sorted by name, the
    newest task of a slot first, older ones as `` \\_ `` history lines."""
    from core.cli.format import familiar, parse_time
    from core.units import human_duration

    now = time.time() if now is None else now
    names: dict[str, str] = {}
    services: dict[str, str] = {}
    if resolve:
        for node in ctx.client.get_json("/nodes") or []:
            names[node["ID"]] = (node.get("Description") or {}).get("Hostname", "") or node["ID"]
    for svc in ctx.client.get_json("/services") or []:
        services[svc["ID"]] = (svc.get("Spec") or {}).get("Name", "")

    def name_of(t: dict[str, Any]) -> str:
        svc = (t.get("ServiceAnnotations") or {}).get("Name") or services.get(t.get("ServiceID", ""), "") \
            or t.get("ServiceID", "")
        return f"{svc}.{t.get('Slot') or t.get('NodeID', '')}"

    ordered = sorted(tasks, key=lambda t: (natural_key(name_of(t)), -parse_time(t.get("CreatedAt"))))
    rows = []
    previous = None
    for t in ordered:
        name = name_of(t)
        shown = name  # docker's --no-trunc leaves the name as it is
        if name == previous:
            shown = " \\_ " + shown
        previous = name
        status = t.get("Status") or {}
        image = ((t.get("Spec") or {}).get("ContainerSpec") or {}).get("Image", "")
        if trunc:
            image = familiar(image.split("@", 1)[0]) if image else image
        err = status.get("Err") or ""
        if trunc and len(err) > MAX_ERR:
            err = err[:MAX_ERR - 1] + "…"
        node_id = t.get("NodeID", "")
        state_since = human_duration(now - parse_time(status.get("Timestamp"))).lower()
        rows.append({
            "ID": truncate_id(t["ID"]) if trunc else t["ID"],
            "Name": shown,
            "Image": image,
            "Node": names.get(node_id, node_id) if resolve else node_id,
            "DesiredState": pretty(t.get("DesiredState", "")),
            "CurrentState": f"{pretty(status.get('State', ''))} {state_since} ago",
            "Error": f'"{err}"' if err else "",
            "Ports": _task_ports(t),
        })
    return rows


def print_tasks(ctx: Any, tasks: list[dict[str, Any]], opts: Any) -> None:
    rows = task_rows(ctx, tasks, trunc=not opts.no_trunc, resolve=not opts.no_resolve)
    fmt = opts.format or "table"
    if fmt == "table":
        fmt = "{{.ID}}" if opts.quiet else PS_FORMAT
    elif fmt == "raw":
        fmt = "id: {{.ID}}" if opts.quiet else ("id: {{.ID}}\\nname: {{.Name}}\\nimage: {{.Image}}\\n"
                                                "node: {{.Node}}\\ndesired_state: {{.DesiredState}}\\n"
                                                "current_state: {{.CurrentState}}\\nerror: {{.Error}}\\n"
                                                "ports: {{.Ports}}\\n")
    render_format(fmt, rows, PS_HEADERS)


def ps_flags(f: Flags) -> None:
    f.add("filter", "f", "list", typename="filter", help="Filter output based on conditions provided")
    f.add("format", None, "string", help="Pretty-print tasks using a Go template")
    f.add("no-resolve", None, help="Do not map IDs to Names")
    f.add("no-trunc", None, help="Do not truncate output")
    f.add("quiet", "q", help="Only display task IDs")


@command
def ps(ctx: Any, argv: list[str], prog: str) -> int:
    f = Flags(prog, "[OPTIONS] SERVICE [SERVICE...]", "List the tasks of one or more services")
    ps_flags(f)
    opts, args = f.parse(argv)
    f.require(args, least=1)
    filters = parse_filters(opts.filter)
    ids, missing = [], []
    for ref in args:
        try:
            ids.append(ctx.client.get_json(f"/services/{ref}")["ID"])
        except APIError as exc:
            if exc.status != 404:
                raise
            missing.append(f"no such service: {ref}")
    if missing:
        raise CLIError("\n".join(missing), 1)
    filters["service"] = ids
    tasks = ctx.client.get_json("/tasks", {"filters": json.dumps(filters)}) or []
    print_tasks(ctx, tasks, opts)
    return 0


def _go_duration(ns: Any) -> str:
    from core.units import go_duration

    return go_duration(int(ns or 0))


def _g(value: Any) -> str:
    """Go's %v of a float: ``0``, ``0.2``, ``1.5``."""
    value = float(value or 0)
    return str(int(value)) if value.is_integer() else f"{value:g}"


def pretty_service(service: dict[str, Any], networks: dict[str, str]) -> str:
    """``service inspect --pretty``: docker's serviceInspectPrettyTemplate, rendered."""
    from core.cli.format import parse_time
    from core.units import bytes_size, human_duration

    spec = service.get("Spec") or {}
    tt = spec.get("TaskTemplate") or {}
    cs = tt.get("ContainerSpec") or {}
    out = ["", f"ID:\t\t{service.get('ID', '')}", f"Name:\t\t{spec.get('Name', '')}"]
    labels = spec.get("Labels") or {}
    if labels:
        out.append("Labels:")
        out += [f" {k}" + (f"={labels[k]}" if labels[k] else "") for k in sorted(labels)]
    mode = spec.get("Mode") or {}
    if "Global" in mode:
        out.append("Service Mode:\tGlobal")
    elif "Replicated" in mode:
        out.append("Service Mode:\tReplicated")
        if mode["Replicated"].get("Replicas") is not None:
            out.append(f" Replicas:\t{mode['Replicated']['Replicas']}")
    else:
        out.append("Service Mode:")
    us = service.get("UpdateStatus") or {}
    if us.get("State"):
        out.append("UpdateStatus:")
        out.append(f" State:\t\t{us['State']}")
        if us.get("StartedAt"):
            out.append(f" Started:\t{human_duration(time.time() - parse_time(us['StartedAt']))} ago")
        if us["State"] == "completed" and us.get("CompletedAt"):
            out.append(f" Completed:\t{human_duration(time.time() - parse_time(us['CompletedAt']))} ago")
        out.append(f" Message:\t{us.get('Message', '')}")
    placement = tt.get("Placement") or {}
    out.append("Placement:")
    if placement.get("Constraints"):
        out.append(f" Constraints:\t[{' '.join(placement['Constraints'])}]")
    prefs = ["spread=" + p["Spread"]["SpreadDescriptor"] for p in placement.get("Preferences") or [] if p.get("Spread")]
    if prefs:
        out.append(f" Preferences:   [{' '.join(prefs)}]")
    if placement.get("MaxReplicas"):
        out.append(f" Max Replicas Per Node:   {placement['MaxReplicas']}")
    for key, title, word in (("UpdateConfig", "UpdateConfig", "Update order:      "),
                             ("RollbackConfig", "RollbackConfig", "Rollback order:    ")):
        uc = spec.get(key)
        if uc is None:
            continue
        out.append(f"{title}:")
        out.append(f" Parallelism:\t{uc.get('Parallelism', 0)}")
        if (uc.get("Delay") or 0) > 0:
            out.append(f" Delay:\t\t{_go_duration(uc['Delay'])}")
        out.append(f" On failure:\t{uc.get('FailureAction', '')}")
        if (uc.get("Monitor") or 0) > 0:
            out.append(f" Monitoring Period: {_go_duration(uc['Monitor'])}")
        out.append(f" Max failure ratio: {_g(uc.get('MaxFailureRatio'))}")
        out.append(f" {word}{uc.get('Order', '')}")
    out.append("ContainerSpec:")
    line = f" Image:\t\t{cs.get('Image', '')}"
    if cs.get("Args"):
        line += "\n Args:\t\t" + "".join(a + " " for a in cs["Args"])
    if cs.get("Env"):
        line += "\n Env:\t\t" + "".join(e + " " for e in cs["Env"])
    if cs.get("Dir"):
        line += f"\n Dir:\t\t{cs['Dir']}"
    if cs.get("Init") is not None:
        line += f"\n Init:\t\t{'true' if cs['Init'] else 'false'}"
    if cs.get("User"):
        line += f"\n User: {cs['User']}"
    out.append(line)
    if cs.get("CapabilityAdd") or cs.get("CapabilityDrop"):
        out.append("Capabilities:")
        if cs.get("CapabilityAdd"):
            out.append(f" Add: {', '.join(cs['CapabilityAdd'])}")
        if cs.get("CapabilityDrop"):
            out.append(f" Drop: {', '.join(cs['CapabilityDrop'])}")
    mounts = cs.get("Mounts") or []
    tail = ""
    if mounts:
        out.append("Mounts:")
        for m in mounts:
            tail += (f"\n Target:\t{m.get('Target', '')}\n  Source:\t{m.get('Source', '')}\n"
                     f"  ReadOnly:\t{'true' if m.get('ReadOnly') else 'false'}\n  Type:\t\t{m.get('Type', '')}")
        out[-1] += tail
    res = tt.get("Resources")
    if res is not None:
        reservations, limits = res.get("Reservations") or {}, res.get("Limits") or {}
        out.append("Resources:")
        if reservations.get("NanoCPUs") or reservations.get("MemoryBytes"):
            out.append(" Reservations:")
            if reservations.get("NanoCPUs"):
                out.append(f"  CPU:\t\t{_g(reservations['NanoCPUs'] / NS)}")
            if reservations.get("MemoryBytes"):
                out.append(f"  Memory:\t{bytes_size(reservations['MemoryBytes'])}")
        if limits.get("NanoCPUs") or limits.get("MemoryBytes") or limits.get("Pids"):
            out.append(" Limits:")
            if limits.get("NanoCPUs"):
                out.append(f"  CPU:\t\t{_g(limits['NanoCPUs'] / NS)}")
            if limits.get("MemoryBytes"):
                out.append(f"  Memory:\t{bytes_size(limits['MemoryBytes'])}")
    pids = ((res or {}).get("Limits") or {}).get("Pids") or 0
    if pids > 0:
        out.append(f"  PIDs:\t\t{pids}")
    nets = [networks.get(n.get("Target", ""), n.get("Target", "")) for n in tt.get("Networks") or []]
    if nets:
        out.append("Networks:" + "".join(f" {n}" for n in nets) + " ")
    out.append(f"Endpoint Mode:\t{(spec.get('EndpointSpec') or {}).get('Mode', '')}")
    ports = (service.get("Endpoint") or {}).get("Ports") or []
    if ports:
        out.append("Ports:")
        for p in ports:
            out.append(f" PublishedPort = {p.get('PublishedPort', 0)}")
            out.append(f"  Protocol = {p.get('Protocol', '')}")
            out.append(f"  TargetPort = {p.get('TargetPort', 0)}")
            out.append(f"  PublishMode = {p.get('PublishMode', '')}")
        out[-1] += " "
    hc = cs.get("Healthcheck")
    if hc:
        out.append(" Healthcheck:")
        out.append(f"  Interval = {_go_duration(hc.get('Interval'))}")
        out.append(f"  Retries = {hc.get('Retries', 0)}")
        out.append(f"  StartPeriod =\t{_go_duration(hc.get('StartPeriod'))}")
        out.append(f"  Timeout =\t{_go_duration(hc.get('Timeout'))}")
        if hc.get("Test"):
            out.append("  Tests:")
            out += [f"\t Test = {t}" for t in hc["Test"]]
            out[-1] += " "
    return "\n".join(out) + "\n\n"  # the template's last line, then the formatter's


@command
def inspect(ctx: Any, argv: list[str], prog: str) -> int:
    f = Flags(prog, "[OPTIONS] SERVICE [SERVICE...]", "Display detailed information on one or more services")
    f.add("format", "f", "string", help=INSPECT_FORMAT_HELP)
    f.add("pretty", None, help="Print the information in a human friendly format")
    opts, args = f.parse(argv)
    f.require(args, least=1)
    if opts.pretty and opts.format:
        raise CLIError("--format is incompatible with human friendly format", 1)
    found, errors = [], []
    for ref in args:
        try:
            found.append(ctx.client.get_json(f"/services/{ref}", {"insertDefaults": "1"}))
        except APIError as exc:
            if exc.status != 404:
                raise
            errors.append(f"Error: no such service: {ref}")
    if opts.pretty:
        if errors:
            raise CLIError(errors[0], 1)
        networks: dict[str, str] = {}
        try:
            for net in ctx.client.get_json("/networks") or []:
                networks[net.get("Id") or net.get("ID", "")] = net.get("Name", "")
        except APIError:
            pass
        sys.stdout.write("".join(pretty_service(s, networks) for s in found))
        return 0
    return print_inspect(opts.format, found, errors)


# -- update / scale / rollback --------------------------------------------------------------------------

def _send_update(ctx: Any, service: dict[str, Any], spec: dict[str, Any], *, rollback: bool = False,
                 headers: dict[str, str] | None = None, auth_from: str | None = None) -> Any:
    # the version read with the service: the daemon itself takes it when only the swarm's own
    # writes (the updater's UpdateStatus) moved it since, as docker's CLI relies on
    version = (service.get("Version") or {}).get("Index", 0)
    params = {"version": str(version), "rollback": "previous" if rollback else None,
              "registryAuthFrom": None if headers else auth_from}
    resp = ctx.client.request("POST", f"/services/{service['ID']}/update", params, body=spec,
                              headers=headers or {})
    try:
        return resp.json()
    except (ValueError, CLIError):
        return None
    finally:
        resp.close()


def _answered(ctx: Any, answer: Any, shown: str, service_id: str, opts: Any) -> int:
    """The end of create, update and rollback: the daemon's warnings, the service as the user
    named it, then (without ``-d``) docker's progress until the service converged."""
    _print_warnings(answer)
    sys.stdout.write(shown + "\n")
    sys.stdout.flush()
    if not opts.detach:
        wait_for_service(ctx, service_id, quiet=opts.quiet)
    return 0


def _remove_by_key(items: list[str], keys: list[str]) -> list[str]:
    drop = set(keys)
    return [i for i in items if i.split("=", 1)[0] not in drop]


@command
def update(ctx: Any, argv: list[str], prog: str) -> int:
    f = Flags(prog, "[OPTIONS] SERVICE", "Update a service")
    _spec_flags(f, update=True)
    _update_flags(f)
    opts, args = f.parse(argv)
    f.require(args, exact=1)
    ref = args[0]
    service = ctx.client.get_json(f"/services/{ref}", {"insertDefaults": "false"})
    if opts.rollback:
        answer = _send_update(ctx, service, service["Spec"], rollback=True)
        return _answered(ctx, answer, ref, service["ID"], opts)
    import copy

    spec = copy.deepcopy(service["Spec"])
    tt = spec.setdefault("TaskTemplate", {})
    cs = tt.setdefault("ContainerSpec", {})
    changed = opts.changed
    if "image" in changed:
        cs["Image"] = opts.image
    if "args" in changed:
        import shlex

        cs["Args"] = shlex.split(opts.args)
    env = cs.get("Env") or []
    if opts.env_rm:
        env = _remove_by_key(env, opts.env_rm)
    if opts.env_add:
        env = _remove_by_key(env, [e.split("=", 1)[0] for e in opts.env_add]) + list(opts.env_add)
    if opts.env_rm or opts.env_add:
        cs["Env"] = env
    for add, rm, holder, key in (("label_add", "label_rm", spec, "Labels"),
                                 ("container_label_add", "container_label_rm", cs, "Labels")):
        labels = holder.get(key) or {}
        for k in getattr(opts, rm) or []:
            labels.pop(k, None)
        labels.update(kv_map(getattr(opts, add)))
        if getattr(opts, add) or getattr(opts, rm):
            holder[key] = labels
    if opts.mount_rm or opts.mount_add:
        mounts = [m for m in cs.get("Mounts") or [] if m.get("Target") not in set(opts.mount_rm or [])]
        for m in opts.mount_add or []:
            mounts = [x for x in mounts if x.get("Target") != m.get("Target")] + [m]
        cs["Mounts"] = mounts
    placement = tt.get("Placement") or {}
    if opts.constraint_rm or opts.constraint_add:
        constraints = [c for c in placement.get("Constraints") or [] if c not in set(opts.constraint_rm or [])]
        constraints += [c for c in opts.constraint_add or [] if c not in constraints]
        placement["Constraints"] = constraints
        tt["Placement"] = placement
    if opts.placement_pref_rm or opts.placement_pref_add:
        prefs = [p for p in placement.get("Preferences") or [] if p not in (opts.placement_pref_rm or [])]
        prefs += list(opts.placement_pref_add or [])
        placement["Preferences"] = prefs
        tt["Placement"] = placement
    if opts.network_rm or opts.network_add:
        nets = tt.get("Networks") or []
        if opts.network_rm:
            gone = set()
            for n in opts.network_rm:
                gone.add(n)
                try:
                    gone.add(ctx.client.get_json(f"/networks/{n}").get("Id", n))
                except APIError:
                    pass
            nets = [n for n in nets if n.get("Target") not in gone]
        nets += [{"Target": n} for n in opts.network_add or []]
        tt["Networks"] = nets
    if opts.publish_rm or opts.publish_add:
        es = spec.get("EndpointSpec") or {"Mode": "vip"}
        ports = es.get("Ports") or []
        for group in opts.publish_rm or []:
            for rm in group:
                ports = [p for p in ports if not (p.get("TargetPort") == rm["TargetPort"]
                                                  and p.get("Protocol", "tcp") == rm["Protocol"])]
        for group in opts.publish_add or []:
            for add in group:
                ports = [p for p in ports if not (add.get("PublishedPort") and
                                                  p.get("PublishedPort") == add["PublishedPort"] and
                                                  p.get("Protocol", "tcp") == add["Protocol"])] + [add]
        es["Ports"] = ports
        spec["EndpointSpec"] = es
    if "replicas" in changed and "Replicated" not in (spec.get("Mode") or {}):
        raise CLIError("replicas can only be used with replicated mode", 1)
    _apply(spec, opts, lambda name: name in changed)
    if opts.force:
        tt["ForceUpdate"] = int(tt.get("ForceUpdate") or 0) + 1
    headers = _registry_header(cs.get("Image", "")) if opts.with_registry_auth else None
    answer = _send_update(ctx, service, spec, headers=headers, auth_from="spec")
    return _answered(ctx, answer, ref, service["ID"], opts)


@command
def rollback(ctx: Any, argv: list[str], prog: str) -> int:
    f = Flags(prog, "[OPTIONS] SERVICE", "Revert changes to a service's configuration")
    f.add("detach", "d", help="Exit immediately instead of waiting for the service to converge")
    f.add("quiet", "q", help="Suppress progress output")
    opts, args = f.parse(argv)
    f.require(args, exact=1)
    service = ctx.client.get_json(f"/services/{args[0]}", {"insertDefaults": "false"})
    answer = _send_update(ctx, service, service["Spec"], rollback=True)
    return _answered(ctx, answer, args[0], service["ID"], opts)


@command
def scale(ctx: Any, argv: list[str], prog: str) -> int:
    f = Flags(prog, "SERVICE=REPLICAS [SERVICE=REPLICAS...]", "Scale one or multiple replicated services")
    f.add("detach", "d", help="Exit immediately instead of waiting for the service to converge")
    opts, args = f.parse(argv)
    f.require(args, least=1)
    for arg in args:
        name, eq, value = arg.partition("=")
        if not eq or not name or not value:
            raise CLIError(f"Invalid scale specifier '{arg}'.\nSee '{prog} --help'.\n\n"
                           f"Usage:  {f.use_line}\n\n{f.short}", 1)
    errors, done = [], []
    for arg in args:
        name, _, value = arg.partition("=")
        try:
            replicas = parse_uint(value)
        except ValueError as exc:
            errors.append(f"{name}: invalid replicas value {value}: {exc}")
            continue
        try:
            service = ctx.client.get_json(f"/services/{name}", {"insertDefaults": "false"})
            mode = (service.get("Spec") or {}).get("Mode") or {}
            if "Replicated" not in mode:
                raise CLIError("scale can only be used with replicated or replicated-job mode", 1)
            spec = service["Spec"]
            spec["Mode"]["Replicated"]["Replicas"] = replicas
            _print_warnings(_send_update(ctx, service, spec))
        except (APIError, CLIError) as exc:
            errors.append(f"{name}: {exc.message}")
            continue
        sys.stdout.write(f"{name} scaled to {replicas}\n")
        sys.stdout.flush()
        done.append(service["ID"])
    if not opts.detach:
        for service_id in done:
            wait_for_service(ctx, service_id)
    if errors:
        raise CLIError("\n".join(errors), 1)
    return 0


# -- rm / logs -----------------------------------------------------------------------------------------------

@command
def rm(ctx: Any, argv: list[str], prog: str) -> int:
    f = Flags(prog, "SERVICE [SERVICE...]", "Remove one or more services",
              aliases="core service rm, core service remove")
    _opts, args = f.parse(argv)
    f.require(args, least=1)
    from core.cli.format import each

    return each(args, lambda ref: ctx.client.request("DELETE", f"/services/{ref}").close())


def _split_frames(chunks: Any, tty: bool) -> Any:
    """The lines of a log stream: (stream, line) from docker's frames, or raw lines with a TTY."""
    import struct

    buf = b""
    for chunk in chunks:
        buf += chunk
        if tty:
            while b"\n" in buf:
                line, buf = buf.split(b"\n", 1)
                yield 1, line + b"\n"
            continue
        while len(buf) >= 8:
            stream, size = struct.unpack(">BxxxL", buf[:8])
            if len(buf) < 8 + size:
                break
            yield stream, buf[8:8 + size]
            buf = buf[8 + size:]
    if buf and tty:
        yield 1, buf


@command
def logs(ctx: Any, argv: list[str], prog: str) -> int:
    f = Flags(prog, "[OPTIONS] SERVICE|TASK", "Fetch the logs of a service or task")
    f.add("details", None, help="Show extra details provided to logs")
    f.add("follow", "f", help="Follow log output")
    f.add("no-resolve", None, help="Do not map IDs to Names in output")
    f.add("no-task-ids", None, help="Do not include task IDs in output")
    f.add("no-trunc", None, help="Do not truncate output")
    f.add("raw", None, help="Do not neatly format logs")
    f.add("since", None, "string", help="Show logs since timestamp (e.g. \"2013-01-02T13:23:37Z\") or relative "
                                        "(e.g. \"42m\" for 42 minutes)")
    f.add("tail", "n", "string", default="all", help="Number of lines to show from the end of the logs")
    f.add("timestamps", "t", help="Show timestamps")
    opts, args = f.parse(argv)
    f.require(args, exact=1)
    ref = args[0]
    tty = False
    try:
        service = ctx.client.get_json(f"/services/{ref}")
        path = f"/services/{service['ID']}/logs"
        tty = bool(((service.get("Spec") or {}).get("TaskTemplate") or {}).get("ContainerSpec", {}).get("TTY"))
    except APIError as exc:
        if exc.status != 404:
            raise
        try:
            task = ctx.client.get_json(f"/tasks/{ref}")
        except APIError:
            raise CLIError(f"no such task or service: {ref}", 1) from None
        path = f"/tasks/{task['ID']}/logs"
        tty = bool(((task.get("Spec") or {}).get("ContainerSpec") or {}).get("TTY"))
    since = None
    if opts.since:
        from core.cli.cmd_container import get_timestamp

        try:
            since = get_timestamp(opts.since)
        except ValueError as exc:  # docker's client refuses it before asking
            raise CLIError(str(exc), 1) from None
    params = {"stdout": "1", "stderr": "1", "follow": "1" if opts.follow else None,
              "tail": opts.tail, "timestamps": "1" if opts.timestamps else None,
              "details": "1", "since": since}
    resp = ctx.client.request("GET", path, params)
    tasks: dict[str, str] = {}
    nodes: dict[str, str] = {}

    def context_of(details: str) -> str:
        attrs = dict(item.split("=", 1) for item in details.split(",") if "=" in item)
        import urllib.parse

        attrs = {urllib.parse.unquote_plus(k): urllib.parse.unquote_plus(v) for k, v in attrs.items()}
        task_id = attrs.get("com.docker.swarm.task.id", "")
        node_id = attrs.get("com.docker.swarm.node.id", "")
        if opts.raw:
            return ""
        if task_id not in tasks:
            name = task_id
            if not opts.no_resolve:
                try:
                    task = ctx.client.get_json(f"/tasks/{task_id}")
                    svc = (task.get("ServiceAnnotations") or {}).get("Name") or task.get("ServiceID", "")
                    name = f"{svc}.{task.get('Slot') or task.get('NodeID', '')}"
                    if not opts.no_task_ids:
                        name += "." + (task_id if opts.no_trunc else truncate_id(task_id))
                except APIError:
                    pass
            tasks[task_id] = name
        if node_id not in nodes:
            nodes[node_id] = node_id
            if not opts.no_resolve:
                try:
                    node = ctx.client.get_json(f"/nodes/{node_id}")
                    nodes[node_id] = (node.get("Description") or {}).get("Hostname", "") or node_id
                except APIError:
                    pass
        return f"{tasks[task_id]}@{nodes[node_id]}    |"

    try:
        for stream, line in _split_frames(resp.iter_chunks(), tty):
            parts = line.split(b" ", 2 if opts.timestamps else 1)
            idx = 1 if opts.timestamps else 0
            if len(parts) > idx:
                context = context_of(parts[idx].decode(errors="replace"))
                if opts.details:
                    context = parts[idx].decode(errors="replace") + " " + context
                parts[idx] = context.encode()
                if opts.raw:
                    parts.pop(idx)
            out = b" ".join(parts)
            target = sys.stderr if stream == 2 else sys.stdout
            target.buffer.write(out)
            target.flush()
    except KeyboardInterrupt:
        pass
    finally:
        resp.close()
    return 0
