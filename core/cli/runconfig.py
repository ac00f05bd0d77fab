"""``run`` and ``create``: their flags, one table (:data:`CONTAINER_FLAGS`), and the body of
``POST /containers/create`` they make (:func:`build_config`, docker's ``parse``).

A row of the table gives a flag's spelling and parsing and, when the flag fills one field of the
body, that field and how (a rule, or a function of the value); adding such a flag is adding a
row.  The fields several flags make together (attach, volumes, health, networking, logging,
security) are the short functions after :func:`build_config`.
"""
from __future__ import annotations

import os

from core.cli.flags import Flags
from core.cli.flagvalues import (duration_ns, is_user_defined_network, labels_map, parse_cpus, parse_device,
                                 parse_expose, parse_memory, parse_mount, parse_port_specs, parse_restart_policy,
                                 parse_security_opts, parse_tmpfs, parse_ulimit, parse_volume, read_env,
                                 validate_attach, validate_device_cgroup_rule, validate_env, validate_extra_host,
                                 validate_ip, validate_label)
from core.units import ram_in_bytes

TYPE_CHECKING = False
if TYPE_CHECKING:
    from typing import Any

PULL_ALWAYS, PULL_MISSING, PULL_NEVER = "always", "missing", "never"


# How a flag's parsed value becomes its body field (the ``rule`` of a :class:`Opt`):
AS_IS = "as-is"            # the value itself ("", False, 0 included)
OR_NONE = "or-none"        # the value, or null when empty ([] → null)
OR_EMPTY = "or-empty"      # a list flag's values, [] when none
OR_ZERO = "or-zero"        # the value, 0 when unset (sizes, NanoCpus)
IF_SET = "if-set"          # the field only when the value is not empty
IF_CHANGED = "if-changed"  # the field only when the flag is on the command line (0 and false count)


def _key_values(values: list[str] | None) -> dict[str, str] | None:
    """``KEY=VALUE`` list flags (``--sysctl``, ``--annotation``) as a map; null when none."""
    return dict(v.partition("=")[::2] for v in values or []) or None


def _storage_opts(values: list[str] | None) -> dict[str, str] | None:
    storage: dict[str, str] = {}
    for o in values or []:
        k, eq, v = o.partition("=")
        if not eq:
            raise ConfigError("invalid storage option")
        storage[k] = v
    return storage or None


class Opt:
    """One flag of ``run``/``create``: how docker spells and parses it (the arguments of
    :meth:`core.cli.flags.Flags.add`) and, when it maps to one field of the create body, that
    field and the :data:`rule <AS_IS>` (or a function of the value) that fills it.

    ``field`` is a Config field (``"Hostname"``) or a HostConfig one (``"HostConfig.Memory"``);
    flags without one (``--publish``, ``--network``, ``--health-*``, ``--detach`` ...) are read by
    the few functions below that combine several flags.  ``default`` may be a function, called
    when the flags are made; ``help`` may hold ``{verb}`` ("running" for run, "creating" for
    create).
    """

    __slots__ = ("long", "short", "kind", "field", "rule", "run_only", "options")

    def __init__(self, long: str, short: str | None = None, kind: str = "bool", field: str | None = None,
                 rule: Any = AS_IS, run_only: bool = False, **options: Any) -> None:
        self.long, self.short, self.kind, self.field, self.rule = long, short, kind, field, rule
        self.run_only = run_only
        self.options = options

    def body_value(self, opts: Any) -> tuple[bool, Any]:
        """(whether the field is set, its value) for the parsed flags ``opts``."""
        dest = self.options.get("dest") or self.long.replace("-", "_")
        value = getattr(opts, dest)
        rule = self.rule
        if rule == AS_IS:
            return True, value
        if rule == OR_NONE:
            return True, value or None
        if rule == OR_EMPTY:
            return True, value or []
        if rule == OR_ZERO:
            return True, value or 0
        if rule == IF_SET:
            return bool(value), value
        if rule == IF_CHANGED:
            return self.long in opts.changed, value
        return True, rule(value)


# docker's addFlags (the options stored in Config/HostConfig) plus run/create's own.  One row a flag.
CONTAINER_FLAGS: list[Opt] = [
    Opt("detach", "d", run_only=True, help="Run container in background and print container ID"),
    Opt("detach-keys", None, "string", run_only=True, help="Override the key sequence for detaching a container"),
    Opt("sig-proxy", None, run_only=True, default=True, help="Proxy received signals to the process"),
    Opt("name", None, "string", help="Assign a name to the container"),
    Opt("pull", None, "string", default=PULL_MISSING,
        help='Pull image before {verb} ("always", "missing", "never")'),
    Opt("quiet", "q", help="Suppress the pull output"),
    Opt("platform", None, "string", default=lambda: os.environ.get("DOCKER_DEFAULT_PLATFORM", ""),
        help="Set platform if server is multi-platform capable"),
    Opt("attach", "a", "list", convert=validate_attach, help="Attach to STDIN, STDOUT or STDERR"),
    Opt("device", None, "list", "HostConfig.Devices", lambda v: [parse_device(d) for d in v or []],
        convert=lambda v: (parse_device(v), v)[1], help="Add a host device to the container"),
    Opt("device-cgroup-rule", None, "list", "HostConfig.DeviceCgroupRules", OR_NONE,
        convert=validate_device_cgroup_rule, help="Add a rule to the cgroup allowed devices list"),
    Opt("env", "e", "list", convert=validate_env, help="Set environment variables"),
    Opt("env-file", None, "list", help="Read in a file of environment variables"),
    Opt("entrypoint", None, "string", help="Overwrite the default ENTRYPOINT of the image"),
    Opt("group-add", None, "list", "HostConfig.GroupAdd", OR_NONE, help="Add additional groups to join"),
    Opt("hostname", "h", "string", "Hostname", help="Container host name"),
    Opt("domainname", None, "string", "Domainname", help="Container NIS domain name"),
    Opt("interactive", "i", "bool", "OpenStdin", help="Keep STDIN open even if not attached"),
    Opt("label", "l", "list", convert=validate_label, help="Set meta data on a container"),
    Opt("label-file", None, "list", help="Read in a line delimited file of labels"),
    Opt("read-only", None, "bool", "HostConfig.ReadonlyRootfs",
        help="Mount the container's root filesystem as read only"),
    Opt("restart", None, "string", default="no", help="Restart policy to apply when a container exits"),
    Opt("stop-signal", None, "string", "StopSignal", IF_SET, help="Signal to stop the container"),
    Opt("stop-timeout", None, "int", "StopTimeout", IF_CHANGED, help="Timeout (in seconds) to stop a container"),
    Opt("sysctl", None, "list", "HostConfig.Sysctls", _key_values, typename="map", help="Sysctl options"),
    Opt("tty", "t", "bool", "Tty", help="Allocate a pseudo-TTY"),
    Opt("ulimit", None, "list", "HostConfig.Ulimits", OR_NONE, typename="ulimit", convert=parse_ulimit,
        help="Ulimit options"),
    Opt("user", "u", "string", "User", help="Username or UID (format: <name|uid>[:<group|gid>])"),
    Opt("workdir", "w", "string", "WorkingDir", help="Working directory inside the container"),
    Opt("rm", None, "bool", "HostConfig.AutoRemove",
        help="Automatically remove the container and its associated anonymous volumes when it exits"),
    Opt("cap-add", None, "list", "HostConfig.CapAdd", OR_NONE, help="Add Linux capabilities"),
    Opt("cap-drop", None, "list", "HostConfig.CapDrop", OR_NONE, help="Drop Linux capabilities"),
    Opt("privileged", None, "bool", "HostConfig.Privileged", help="Give extended privileges to this container"),
    Opt("security-opt", None, "list", help="Security Options"),
    Opt("userns", None, "string", "HostConfig.UsernsMode", help="User namespace to use"),
    Opt("cgroupns", None, "string", "HostConfig.CgroupnsMode", help="Cgroup namespace to use (host|private)"),
    Opt("add-host", None, "list", "HostConfig.ExtraHosts", OR_NONE, convert=validate_extra_host,
        help="Add a custom host-to-IP mapping (host:ip)"),
    Opt("dns", None, "list", "HostConfig.Dns", OR_EMPTY, convert=validate_ip, help="Set custom DNS servers"),
    Opt("dns-option", None, "list", "HostConfig.DnsOptions", OR_EMPTY, help="Set DNS options"),
    Opt("dns-opt", None, "list", dest="dns_option", hidden=True, help="Set DNS options"),
    Opt("dns-search", None, "list", "HostConfig.DnsSearch", OR_EMPTY, help="Set custom DNS search domains"),
    Opt("expose", None, "list", help="Expose a port or a range of ports"),
    Opt("ip", None, "string", help="IPv4 address (e.g., 172.30.100.104)"),
    Opt("ip6", None, "string", help="IPv6 address (e.g., 2001:db8::33)"),
    Opt("link", None, "list", "HostConfig.Links", OR_NONE, help="Add link to another container"),
    Opt("link-local-ip", None, "list", help="Container IPv4/IPv6 link-local addresses"),
    Opt("mac-address", None, "string", help="Container MAC address (e.g., 92:d0:c6:0a:29:33)"),
    Opt("publish", "p", "list", help="Publish a container's port(s) to the host"),
    Opt("publish-all", "P", "bool", "HostConfig.PublishAllPorts", help="Publish all exposed ports to random ports"),
    Opt("network", None, "list", typename="network", help="Connect a container to a network"),
    Opt("net", None, "list", dest="network", hidden=True, help="Connect a container to a network"),
    Opt("network-alias", None, "list", help="Add network-scoped alias for the container"),
    Opt("net-alias", None, "list", dest="network_alias", hidden=True,
        help="Add network-scoped alias for the container"),
    Opt("log-driver", None, "string", help="Logging driver for the container"),
    Opt("log-opt", None, "list", help="Log driver options"),
    Opt("volume-driver", None, "string", "HostConfig.VolumeDriver", help="Optional volume driver for the container"),
    Opt("storage-opt", None, "list", "HostConfig.StorageOpt", _storage_opts,
        help="Storage driver options for the container"),
    Opt("tmpfs", None, "list", "HostConfig.Tmpfs", lambda v: parse_tmpfs(v or []) or None,
        help="Mount a tmpfs directory"),
    Opt("volumes-from", None, "list", "HostConfig.VolumesFrom", OR_NONE,
        help="Mount volumes from the specified container(s)"),
    Opt("volume", "v", "list", help="Bind mount a volume"),
    Opt("mount", None, "list", "HostConfig.Mounts", lambda v: [parse_mount(m) for m in v or []] or None,
        typename="mount", convert=lambda v: (parse_mount(v), v)[1], help="Attach a filesystem mount to the container"),
    Opt("health-cmd", None, "string", help="Command to run to check health"),
    Opt("health-interval", None, "string", typename="duration",
        help="Time between running the check (ms|s|m|h) (default 0s)"),
    Opt("health-retries", None, "int", help="Consecutive failures needed to report unhealthy"),
    Opt("health-timeout", None, "string", typename="duration",
        help="Maximum time to allow one check to run (ms|s|m|h) (default 0s)"),
    Opt("health-start-period", None, "string", typename="duration",
        help="Start period for the container to initialize before starting health-retries countdown "
             "(ms|s|m|h) (default 0s)"),
    Opt("health-start-interval", None, "string", typename="duration",
        help="Time between running the check during the start period (ms|s|m|h) (default 0s)"),
    Opt("no-healthcheck", help="Disable any container-specified HEALTHCHECK"),
    Opt("cidfile", None, "string", "HostConfig.ContainerIDFile", help="Write the container ID to the file"),
    Opt("cpus", None, "string", "HostConfig.NanoCpus", OR_ZERO, typename="decimal", convert=parse_cpus,
        help="Number of CPUs"),
    Opt("cpu-shares", "c", "int", "HostConfig.CpuShares", help="CPU shares (relative weight)"),
    Opt("cpu-period", None, "int", "HostConfig.CpuPeriod", help="Limit CPU CFS (Completely Fair Scheduler) period"),
    Opt("cpu-quota", None, "int", "HostConfig.CpuQuota", help="Limit CPU CFS (Completely Fair Scheduler) quota"),
    Opt("cpuset-cpus", None, "string", "HostConfig.CpusetCpus", help="CPUs in which to allow execution (0-3, 0,1)"),
    Opt("cpuset-mems", None, "string", "HostConfig.CpusetMems", help="MEMs in which to allow execution (0-3, 0,1)"),
    Opt("memory", "m", "string", "HostConfig.Memory", OR_ZERO, typename="bytes", convert=parse_memory,
        help="Memory limit"),
    Opt("memory-reservation", None, "string", "HostConfig.MemoryReservation", OR_ZERO, typename="bytes",
        convert=parse_memory, help="Memory soft limit"),
    Opt("memory-swap", None, "string", "HostConfig.MemorySwap", OR_ZERO, typename="bytes", convert=parse_memory,
        help="Swap limit equal to memory plus swap: '-1' to enable unlimited swap"),
    Opt("memory-swappiness", None, "int", "HostConfig.MemorySwappiness", lambda v: None if v == -1 else v,
        default=-1, help="Tune container memory swappiness (0 to 100)"),
    Opt("oom-kill-disable", None, "bool", "HostConfig.OomKillDisable", help="Disable OOM Killer"),
    Opt("oom-score-adj", None, "int", "HostConfig.OomScoreAdj", help="Tune host's OOM preferences (-1000 to 1000)"),
    Opt("pids-limit", None, "int", "HostConfig.PidsLimit", IF_CHANGED,
        help="Tune container pids limit (set -1 for unlimited)"),
    Opt("shm-size", None, "string", "HostConfig.ShmSize", OR_ZERO, typename="bytes", convert=ram_in_bytes,
        help="Size of /dev/shm"),
    Opt("cgroup-parent", None, "string", "HostConfig.CgroupParent", help="Optional parent cgroup for the container"),
    Opt("ipc", None, "string", "HostConfig.IpcMode", help="IPC mode to use"),
    Opt("pid", None, "string", "HostConfig.PidMode", help="PID namespace to use"),
    Opt("uts", None, "string", "HostConfig.UTSMode", help="UTS namespace to use"),
    Opt("runtime", None, "string", "HostConfig.Runtime", help="Runtime to use for this container"),
    Opt("isolation", None, "string", "HostConfig.Isolation", help="Container isolation technology"),
    Opt("init", None, "bool", "HostConfig.Init", IF_CHANGED,
        help="Run an init inside the container that forwards signals and reaps processes"),
    Opt("annotation", None, "list", "HostConfig.Annotations", _key_values, typename="map",
        help="Add an annotation to the container (passed through to the OCI runtime)"),
]


def container_flags(f: Flags, run: bool) -> Flags:
    """Add :data:`CONTAINER_FLAGS` to ``f`` (the run-only ones for ``run``)."""
    verb = "running" if run else "creating"
    for o in CONTAINER_FLAGS:
        if o.run_only and not run:
            continue
        options = dict(o.options)
        if callable(options.get("default")):
            options["default"] = options["default"]()
        if "{verb}" in options.get("help", ""):
            options["help"] = options["help"].format(verb=verb)
        f.add(o.long, o.short, o.kind, **options)
    return f


class ConfigError(ValueError):
    """A flag combination docker refuses before asking the daemon (exit 125, with help)."""


def build_config(opts: Any, image: str, cmd: list[str], console: tuple[int, int] = (0, 0)) -> dict[str, Any]:
    """docker's ``parse``: the flags as the body of POST /containers/create (Config with
    HostConfig and NetworkingConfig).  Raises ConfigError with docker's message."""
    try:
        return _build_config(opts, image, cmd, console)
    except ConfigError:
        raise
    except ValueError as exc:
        raise ConfigError(str(exc)) from None


def _build_config(opts: Any, image: str, cmd: list[str], console: tuple[int, int]) -> dict[str, Any]:
    """The one-flag fields from :data:`CONTAINER_FLAGS`, then those several flags make together."""
    _check(opts)
    binds, volumes = _volumes(opts)
    exposed, bindings = parse_port_specs(opts.publish or [])
    parse_expose(opts.expose or [], exposed)
    config: dict[str, Any] = {
        **_attach(opts),
        "Env": read_env(opts.env_file or [], opts.env or []),
        "Cmd": list(cmd) if cmd else None,
        "Image": image,
        "Volumes": volumes or None,
        "Entrypoint": [opts.entrypoint] if opts.entrypoint else [""] if "entrypoint" in opts.changed else None,
        "Labels": labels_map(opts.label or [], opts.label_file or []),
        "ExposedPorts": exposed or None,
    }
    health = _healthcheck(opts)
    if health is not None:
        config["Healthcheck"] = health
    network_mode, endpoints = _networking(opts)
    restart = parse_restart_policy(opts.restart)
    if opts.rm and restart.get("Name", "") not in ("", "no"):
        raise ConfigError("conflicting options: cannot specify both --restart and --rm")
    host: dict[str, Any] = {
        "Binds": binds or None,
        "LogConfig": _log_config(opts),
        "NetworkMode": network_mode,
        "PortBindings": bindings or {},
        "RestartPolicy": restart or {"Name": "no", "MaximumRetryCount": 0},
        "ConsoleSize": [console[0], console[1]],
        "Cgroup": "",
        **_security(opts),
    }
    for o in CONTAINER_FLAGS:
        if o.field is not None:
            present, value = o.body_value(opts)
            if present:
                section, _, name = o.field.rpartition(".")
                (host if section else config)[name] = value
    return {**config, "HostConfig": host, "NetworkingConfig": {"EndpointsConfig": endpoints}}


def _check(opts: Any) -> None:
    """The refusals of single flags docker makes before building anything."""
    if opts.mac_address:
        import re

        if not re.fullmatch(r"([0-9A-Fa-f]{2}[:-]){5}[0-9A-Fa-f]{2}", opts.mac_address.strip()):
            raise ConfigError(f"{opts.mac_address} is not a valid mac address")
    if opts.memory_swappiness != -1 and not 0 <= opts.memory_swappiness <= 100:
        raise ConfigError(f"invalid value: {opts.memory_swappiness}. Valid memory swappiness range is 0-100")
    for mode, what in ((opts.pid, "PID"), (opts.uts, "UTS")):
        if mode and mode != "host" and not mode.startswith("container:"):
            raise ConfigError(f"--{what.lower()}: invalid {what} mode")
    if opts.userns and opts.userns != "host":
        raise ConfigError("--userns: invalid USER mode")
    if opts.cgroupns and opts.cgroupns not in ("host", "private"):
        raise ConfigError("--cgroupns: invalid CGROUP mode")


def _attach(opts: Any) -> dict[str, Any]:
    """``-a``, ``-i``: which streams the container's Config attaches."""
    attach = opts.attach or []
    stdin = "stdin" in attach or opts.interactive
    return {"AttachStdin": stdin, "AttachStdout": "stdout" in attach or not attach,
            "AttachStderr": "stderr" in attach or not attach, "StdinOnce": bool(opts.interactive and stdin)}


def _volumes(opts: Any) -> tuple[list[str], dict[str, dict]]:
    """``-v``: binds (HostConfig.Binds) and anonymous volumes (Config.Volumes)."""
    binds: list[str] = []
    volumes: dict[str, dict] = {}
    for spec in opts.volume or []:
        kind, value = parse_volume(spec)
        if kind is None:
            volumes[value] = {}
        else:
            binds.append(value)
    return binds, volumes


def _security(opts: Any) -> dict[str, Any]:
    """``--security-opt``: SecurityOpt, and ``systempaths=unconfined`` as empty masked/read-only paths."""
    security = parse_security_opts(opts.security_opt or [])
    out: dict[str, Any] = {}
    if "systempaths=unconfined" in security:
        security = [s for s in security if s != "systempaths=unconfined"]
        out["MaskedPaths"], out["ReadonlyPaths"] = [], []
    return {"SecurityOpt": security or None, **out}


def _log_config(opts: Any) -> dict[str, Any]:
    """``--log-driver``, ``--log-opt``: LogConfig."""
    log_opts = {}
    for o in opts.log_opt or []:
        k, _, v = o.partition("=")
        log_opts[k] = v
    if opts.log_driver == "none" and log_opts:
        raise ConfigError(f"invalid logging opts for driver {opts.log_driver}")
    return {"Type": opts.log_driver, "Config": log_opts}


_HEALTH_DURATIONS = (("health-interval", "Interval"), ("health-timeout", "Timeout"),
                     ("health-start-period", "StartPeriod"), ("health-start-interval", "StartInterval"))


def _healthcheck(opts: Any) -> dict[str, Any] | None:
    """``--health-*``, ``--no-healthcheck``: Config.Healthcheck (None: the image's)."""
    given = any(f"health-{x}" in opts.changed for x in ("cmd", "interval", "timeout", "start-period", "retries",
                                                         "start-interval"))
    if opts.no_healthcheck:
        if given:
            raise ConfigError("--no-healthcheck conflicts with --health-* options")
        return {"Test": ["NONE"]}
    if not given:
        return None
    health: dict[str, Any] = {}
    if opts.health_cmd:
        health["Test"] = ["CMD-SHELL", opts.health_cmd]
    for flag, key in _HEALTH_DURATIONS:
        text = getattr(opts, flag.replace("-", "_"))
        if text:
            ns = duration_ns(text)
            if ns < 0:
                raise ConfigError(f"--{flag} cannot be negative")
            health[key] = ns
    if opts.health_retries < 0:
        raise ConfigError("--health-retries cannot be negative")
    if opts.health_retries:
        health["Retries"] = opts.health_retries
    return health


def _networking(opts: Any) -> tuple[str, dict[str, dict[str, Any]]]:
    """``--network`` (repeatable), ``--network-alias``, ``--link``, ``--ip``, ``--ip6``,
    ``--mac-address``: HostConfig.NetworkMode and NetworkingConfig.EndpointsConfig."""
    networks = opts.network or []
    if len(networks) > 1:
        user = [is_user_defined_network(n) for n in networks]
        if any(user) and not all(user):
            raise ConfigError("conflicting options: cannot attach both user-defined and non-user-defined "
                              "network-modes")
    endpoints: dict[str, dict[str, Any]] = {}
    for i, name in enumerate(networks or ["default"]):
        if not name.strip():
            raise ConfigError("no name set for network")
        ep: dict[str, Any] = {}
        if i == 0:
            if opts.network_alias:
                if not is_user_defined_network(name):
                    raise ConfigError("network-scoped aliases are only supported for user-defined networks")
                ep["Aliases"] = list(opts.network_alias)
            if opts.link and is_user_defined_network(name):
                ep["Links"] = list(opts.link)
            if opts.ip or opts.ip6 or opts.link_local_ip:
                ep["IPAMConfig"] = {k: v for k, v in (("IPv4Address", opts.ip), ("IPv6Address", opts.ip6),
                                                      ("LinkLocalIPs", list(opts.link_local_ip or []))) if v}
            if opts.mac_address:
                ep["MacAddress"] = opts.mac_address
        if name in endpoints:
            raise ConfigError(f'network "{name}" is specified multiple times')
        if ep or len(networks) > 1:
            endpoints[name] = ep
    return (networks[0] if networks else "default"), endpoints
