"""``run``, ``create``, ``start``, ``attach`` and ``exec``: docker 28's flags turned into the Engine
API's ``POST /containers/create`` body, and the attach / wait / start choreography of its CLI.

``run`` = create (pulling on "No such image", progress on stderr) → attach (unless ``-d``) →
wait for the next exit (or removal with ``--rm``) → start → stream → exit with the container's
status.  Exit codes as docker's: 125 when the daemon refuses (or a flag is wrong), 126 when the
command cannot be invoked, 127 when it is not found, else the container's own.

The flag-value parsers (ports, mounts, env files, ulimits ...; sizes and durations are
:mod:`core.units`') are plain functions so they can be tested without a daemon.  The flags of
``run`` and ``create`` are one table, :data:`CONTAINER_FLAGS`: a row gives a flag's spelling and
parsing and, when the flag fills one field of the create body, that field and how; adding such a
flag is adding a row.
"""
from __future__ import annotations

import os
import sys

from core.cli import lean
from core.cli.client import APIError, CLIError
from core.cli.flags import Flags, command
from core.units import parse_go_duration, ram_in_bytes

TYPE_CHECKING = False
if TYPE_CHECKING:
    from typing import Any

PULL_ALWAYS, PULL_MISSING, PULL_NEVER = "always", "missing", "never"

# ================================================================================================
# Flag values (docker's opts package)
# ================================================================================================


def split_proto_port(raw: str) -> tuple[str, str]:
    """nat.SplitProtoPort: "80/udp" → ("udp", "80"); "80" → ("tcp", "80")."""
    parts = raw.split("/")
    if not raw or not parts[0]:
        return "", ""
    if len(parts) == 1:
        return "tcp", raw
    if not parts[1]:
        return "tcp", parts[0]
    return parts[1], parts[0]


def parse_port_range(ports: str) -> tuple[int, int]:
    """nat.ParsePortRange: "8000-8010" → (8000, 8010); "80" → (80, 80)."""
    if ports == "":
        raise ValueError("empty string specified for ports")

    def one(p: str) -> int:
        if not p.isdigit() or int(p) > 65535:
            raise ValueError(f'strconv.ParseUint: parsing "{p}": invalid syntax')
        return int(p)

    if "-" not in ports:
        start = one(ports)
        return start, start
    a, _, b = ports.partition("-")
    start, end = one(a), one(b)
    if end < start:
        raise ValueError(f"invalid range specified for port: {ports}")
    return start, end


def _valid_ip(text: str) -> bool:
    import ipaddress

    try:
        ipaddress.ip_address(text)
        return True
    except ValueError:
        return False


def parse_port_spec(raw: str) -> list[tuple[str, dict[str, str]]]:
    """nat.ParsePortSpec of ``[ip:][hostPort:]containerPort[/proto]`` (ports may be ranges):
    a list of ("8080/tcp", {"HostIp": ip, "HostPort": "80"})."""
    parts = raw.split(":")
    n = len(parts)
    container_port = parts[-1]
    if n == 1:
        ip, host_port = "", ""
    elif n == 2:
        ip, host_port = "", parts[0]
    elif n == 3:
        ip, host_port = parts[0], parts[1]
    else:
        ip, host_port = ":".join(parts[:n - 2]), parts[n - 2]
    proto, container_port = split_proto_port(container_port)
    if ip.startswith("["):
        if not ip.endswith("]"):
            raise ValueError(f"invalid IP address {ip}: missing ']' in address {ip}:")
        ip = ip[1:-1]
    if ip and not _valid_ip(ip):
        raise ValueError(f"invalid IP address: {ip}")
    if container_port == "":
        raise ValueError(f"no port specified: {raw}<empty>")
    try:
        start, end = parse_port_range(container_port)
    except ValueError:
        raise ValueError(f"invalid containerPort: {container_port}") from None
    hstart = hend = 0
    if host_port:
        try:
            hstart, hend = parse_port_range(host_port)
        except ValueError:
            raise ValueError(f"invalid hostPort: {host_port}") from None
        if (end - start) != (hend - hstart) and end != start:
            raise ValueError(f"invalid ranges specified for container and host Ports: {container_port} and {host_port}")
    if proto.lower() not in ("tcp", "udp", "sctp"):
        raise ValueError(f"invalid proto: {proto}")
    out = []
    for i in range(end - start + 1):
        hp = ""
        if host_port:
            hp = str(hstart + i)
            if start == end and hstart != hend:
                hp = f"{hp}-{hend}"
        out.append((f"{start + i}/{proto.lower()}", {"HostIp": ip, "HostPort": hp}))
    return out


def convert_port_notation(specs: list[str]) -> list[str]:
    """The long syntax ``target=80,published=8080,protocol=udp`` → ``8080:80/udp``."""
    out = []
    for spec in specs:
        if "=" not in spec:
            out.append(spec)
            continue
        params = {"protocol": "tcp"}
        for param in spec.split(","):
            k, eq, v = param.partition("=")
            if not eq or not k:
                raise ValueError(f"invalid publish opts format (should be name=value but got '{param}')")
            params[k] = v
        out.append(f"{params.get('published', '')}:{params.get('target', '')}/{params['protocol']}")
    return out


def parse_port_specs(specs: list[str]) -> tuple[dict[str, dict], dict[str, list[dict[str, str]]]]:
    """``-p`` values → (ExposedPorts, PortBindings) of the create body."""
    exposed: dict[str, dict] = {}
    bindings: dict[str, list[dict[str, str]]] = {}
    for spec in convert_port_notation(specs):
        for port, binding in parse_port_spec(spec):
            exposed.setdefault(port, {})
            bindings.setdefault(port, []).append(binding)
    return exposed, bindings


def parse_expose(values: list[str], exposed: dict[str, dict]) -> None:
    for e in values:
        if ":" in e:
            raise ValueError(f"invalid port format for --expose: {e}")
        proto, p = split_proto_port(e)
        try:
            start, end = parse_port_range(p)
        except ValueError as exc:
            raise ValueError(f"invalid range format for --expose: {e}, error: {exc}") from None
        for i in range(start, end + 1):
            exposed.setdefault(f"{i}/{proto}", {})


def parse_env_lines(lines: list[str], lookup: Any = os.environ.get) -> list[str]:
    """docker's kvfile parser over lines of an env file: comments and blank lines skipped,
    leading whitespace trimmed, ``KEY`` alone taken from ``lookup`` (dropped when unset)."""
    out = []
    for n, raw in enumerate(lines, 1):
        line = raw.rstrip("\r\n")
        if n == 1:
            line = line.removeprefix("\ufeff")
        line = line.lstrip()
        if not line or line.startswith("#"):
            continue
        key, eq, _value = line.partition("=")
        if not key:
            raise ValueError(f"no variable name on line '{line}'")
        if " " in key or "\t" in key:
            raise ValueError(f"variable '{key}' contains whitespaces")
        if eq:
            out.append(line)
            continue
        value = lookup(line)
        if value is not None:
            out.append(f"{key}={value}")
    return out


def parse_env_file(path: str, lookup: Any = os.environ.get) -> list[str]:
    try:
        with open(path, "rb") as f:
            data = f.read()
    except OSError as exc:
        raise ValueError(f"open {path}: {exc.strerror.lower() if exc.strerror else exc}") from None
    lines = data.split(b"\n")
    if lines and lines[-1] == b"":
        lines.pop()
    text = []
    for n, b in enumerate(lines, 1):
        try:
            text.append(b.decode("utf-8"))
        except UnicodeDecodeError:
            raise ValueError(f"invalid env file ({path}): invalid utf8 bytes at line {n}: {list(b)}") from None
    try:
        return parse_env_lines(text, lookup)
    except ValueError as exc:
        raise ValueError(f"invalid env file ({path}): {exc}") from None


def validate_env(value: str) -> str:
    """opts.ValidateEnv: ``KEY=value`` as is; ``KEY`` takes the CLI's own value when it has one."""
    key, eq, _ = value.partition("=")
    if not key:
        raise ValueError(f"invalid environment variable: {value}")
    if eq:
        return value
    env = os.environ.get(key)
    return f"{key}={env}" if env is not None else value


def read_env(files: list[str], values: list[str]) -> list[str]:
    out: list[str] = []
    for path in files:
        out += parse_env_file(path)
    return out + list(values)


def validate_label(value: str) -> str:
    key = value.partition("=")[0]
    if not key.strip():
        raise ValueError(f"invalid label '{value}': empty name")
    return value


def labels_map(values: list[str], files: list[str] = ()) -> dict[str, str]:
    out: dict[str, str] = {}
    lines: list[str] = []
    for path in files:
        try:
            with open(path, encoding="utf-8") as f:
                lines += parse_env_lines(f.read().splitlines(), lambda _k: None)
        except OSError as exc:
            raise ValueError(f"open {path}: {exc.strerror}") from None
    for item in lines + list(values):
        k, _, v = item.partition("=")
        out[k] = v
    return out


def validate_attach(value: str) -> str:
    v = value.lower()
    if v not in ("stdin", "stdout", "stderr"):
        raise ValueError("valid streams are STDIN, STDOUT and STDERR")
    return v


def validate_ip(value: str) -> str:
    if not _valid_ip(value.strip()):
        raise ValueError(f"IP address is not correctly formatted: {value}")
    return value.strip()


def validate_extra_host(value: str) -> str:
    """``host:ip`` or ``host=ip`` (``host-gateway`` allowed) → ``host:ip``."""
    name, sep, ip = value.partition("=")
    if not sep:
        name, sep, ip = value.partition(":")
    if not sep or not name:
        raise ValueError(f'bad format for add-host: "{value}"')
    if ip.startswith("[") and ip.endswith("]"):
        ip = ip[1:-1]
    if ip != "host-gateway" and not _valid_ip(ip):
        raise ValueError(f'invalid IP address in add-host: "{ip}"')
    return f"{name}:{ip}"


def parse_memory(text: str) -> int:
    if text == "-1":
        return -1
    return ram_in_bytes(text)


def parse_cpus(text: str) -> int:
    """``--cpus 1.5`` → NanoCpus 1500000000."""
    from fractions import Fraction

    try:
        value = Fraction(text)
    except (ValueError, ZeroDivisionError):
        raise ValueError(f"failed to parse {text} as a rational number") from None
    nano = value * 1_000_000_000
    if nano.denominator != 1:
        raise ValueError("value is too precise")
    return int(nano)


_ULIMITS = {"core", "cpu", "data", "fsize", "locks", "memlock", "msgqueue", "nice", "nofile", "nproc", "rss",
            "rtprio", "rttime", "sigpending", "stack"}


def parse_ulimit(text: str) -> dict[str, Any]:
    """``nofile=1024:2048`` → {"Name": "nofile", "Soft": 1024, "Hard": 2048}."""
    name, eq, limits = text.partition("=")
    if not eq:
        raise ValueError(f"invalid ulimit argument: {text}")
    if name not in _ULIMITS:
        raise ValueError(f"invalid ulimit type: {name}")
    soft_s, colon, hard_s = limits.partition(":")
    try:
        soft = int(soft_s)
        hard = int(hard_s) if colon else soft
    except ValueError:
        raise ValueError(f"invalid ulimit argument: {text}") from None
    if colon and soft > hard:
        raise ValueError(f"ulimit soft limit must be less than or equal to hard limit: {soft} > {hard}")
    return {"Name": name, "Soft": soft, "Hard": hard}


def parse_restart_policy(text: str) -> dict[str, Any]:
    if not text:
        return {}
    name, colon, count = text.partition(":")
    if colon and not name:
        raise ValueError("invalid restart policy format: no policy provided before colon")
    policy: dict[str, Any] = {"Name": name, "MaximumRetryCount": 0}
    if count:
        try:
            policy["MaximumRetryCount"] = int(count)
        except ValueError:
            raise ValueError("invalid restart policy format: maximum retry count must be an integer") from None
    return policy


def _parse_bool(text: str) -> bool:
    if text in ("1", "t", "T", "TRUE", "true", "True"):
        return True
    if text in ("0", "f", "F", "FALSE", "false", "False"):
        return False
    raise ValueError(f'strconv.ParseBool: parsing "{text}": invalid syntax')


def _mount_bool(key: str, val: str) -> bool:
    try:
        return _parse_bool(val)
    except ValueError:
        raise ValueError(f"invalid value for {key}: {val}") from None


def parse_mount(value: str) -> dict[str, Any]:
    """``--mount type=bind,source=/a,target=/b,readonly`` → an API Mount (opts.MountOpt)."""
    import csv

    try:
        fields = next(csv.reader([value]))
    except (csv.Error, StopIteration):
        raise ValueError(f"invalid mount specification: {value}") from None
    mount: dict[str, Any] = {"Type": "volume"}
    volume: dict[str, Any] | None = None
    bind: dict[str, Any] | None = None
    tmpfs: dict[str, Any] | None = None
    image: dict[str, Any] | None = None

    def vol() -> dict[str, Any]:
        nonlocal volume
        if volume is None:
            volume = {"Labels": {}, "DriverConfig": {}}
        return volume

    def bnd() -> dict[str, Any]:
        nonlocal bind
        if bind is None:
            bind = {}
        return bind

    def tmp() -> dict[str, Any]:
        nonlocal tmpfs
        if tmpfs is None:
            tmpfs = {}
        return tmpfs

    for field in fields:
        key, eq, val = field.partition("=")
        key = key.lower()
        if not eq:
            if key in ("readonly", "ro"):
                mount["ReadOnly"] = True
            elif key == "volume-nocopy":
                vol()["NoCopy"] = True
            elif key == "bind-nonrecursive":
                bnd()["NonRecursive"] = True
            else:
                raise ValueError(f"invalid field '{field}' must be a key=value pair")
            continue
        if key == "type":
            mount["Type"] = val.lower()
        elif key in ("source", "src"):
            src = val
            if not os.path.isabs(val) and val.startswith("."):
                src = os.path.abspath(val)
            mount["Source"] = src
        elif key in ("target", "dst", "destination"):
            mount["Target"] = val
        elif key in ("readonly", "ro"):
            mount["ReadOnly"] = _mount_bool(key, val)
        elif key == "consistency":
            mount["Consistency"] = val.lower()
        elif key == "bind-propagation":
            bnd()["Propagation"] = val.lower()
        elif key == "bind-nonrecursive":
            bnd()["NonRecursive"] = _mount_bool(key, val)
        elif key == "bind-recursive":
            if val == "enabled":
                bnd()
            elif val == "disabled":
                bnd()["NonRecursive"] = True
            elif val == "writable":
                bnd()["ReadOnlyNonRecursive"] = True
            elif val == "readonly":
                bnd()["ReadOnlyForceRecursive"] = True
            else:
                raise ValueError(f'invalid value for {key}: {val} (must be "enabled", "disabled", "writable", '
                                 'or "readonly")')
        elif key == "volume-subpath":
            vol()["Subpath"] = val
        elif key == "volume-nocopy":
            vol()["NoCopy"] = _mount_bool(key, val)
        elif key == "volume-label":
            k, _, v = val.partition("=")
            if k:
                vol()["Labels"][k] = v
        elif key == "volume-driver":
            vol()["DriverConfig"]["Name"] = val
        elif key == "volume-opt":
            k, _, v = val.partition("=")
            if k:
                vol()["DriverConfig"].setdefault("Options", {})[k] = v
        elif key == "image-subpath":
            image = {"Subpath": val}
        elif key == "tmpfs-size":
            try:
                tmp()["SizeBytes"] = ram_in_bytes(val)
            except ValueError:
                raise ValueError(f"invalid value for {key}: {val}") from None
        elif key == "tmpfs-mode":
            try:
                tmp()["Mode"] = int(val, 8)
            except ValueError:
                raise ValueError(f"invalid value for {key}: {val}") from None
        else:
            raise ValueError(f"unexpected key '{key}' in '{field}'")
    if not mount.get("Type"):
        raise ValueError("type is required")
    if not mount.get("Target"):
        raise ValueError("target is required")
    kind = mount["Type"]
    for opts, want, prefix in ((volume, "volume", "volume-*"), (image, "image", "image-*"),
                               (bind, "bind", "bind-*"), (tmpfs, "tmpfs", "tmpfs-*")):
        if opts is not None and kind != want:
            raise ValueError(f"cannot mix '{prefix}' options with mount type '{kind}'")
    if bind is not None:
        if bind.get("ReadOnlyNonRecursive") and not mount.get("ReadOnly"):
            raise ValueError("option 'bind-recursive=writable' requires 'readonly' to be specified in conjunction")
        if bind.get("ReadOnlyForceRecursive"):
            if not mount.get("ReadOnly"):
                raise ValueError("option 'bind-recursive=readonly' requires 'readonly' to be specified in "
                                 "conjunction")
            if bind.get("Propagation") != "rprivate":
                raise ValueError("option 'bind-recursive=readonly' requires 'bind-propagation=rprivate' to be "
                                 "specified in conjunction")
        mount["BindOptions"] = bind
    if volume is not None:
        mount["VolumeOptions"] = volume
    if tmpfs is not None:
        mount["TmpfsOptions"] = tmpfs
    if image is not None:
        mount["ImageOptions"] = image
    return mount


def parse_volume(spec: str) -> tuple[str | None, str]:
    """``-v [SOURCE:]TARGET[:MODE]`` → ("bind-or-named", spec for Binds) or (None, target) for an
    anonymous volume (Config.Volumes)."""
    if not spec:
        raise ValueError("invalid empty volume spec")
    parts = spec.split(":")
    if len(parts) > 3:
        raise ValueError(f"invalid spec: {spec}: too many colons")
    if any(p == "" for p in parts):
        raise ValueError(f"invalid spec: {spec}: empty section between colons")
    if len(parts) == 1:
        return None, spec
    source, rest = parts[0], ":".join(parts[1:])
    if not os.path.isabs(source) and source.startswith("."):
        source = os.path.abspath(source)
    return "bind", f"{source}:{rest}"


def parse_tmpfs(values: list[str]) -> dict[str, str]:
    out: dict[str, str] = {}
    for t in values:
        path, _, options = t.partition(":")
        out[path] = options
    return out


def parse_device(spec: str) -> dict[str, str]:
    """``--device /dev/x[:/dev/y][:rwm]`` → a DeviceMapping."""
    arr = spec.split(":")
    if len(arr) > 3 or not arr[0]:
        raise ValueError(f"invalid device specification: {spec}")
    src, dst, perms = arr[0], "", "rwm"

    def mode_ok(m: str) -> bool:
        return bool(m) and all(c in "rwm" for c in m) and len(set(m)) == len(m)

    if len(arr) == 3:
        dst, perms = arr[1], arr[2]
        if not mode_ok(perms):
            raise ValueError(f"bad mode specified: {perms}")
    elif len(arr) == 2:
        if mode_ok(arr[1]):
            perms = arr[1]
        else:
            dst = arr[1]
    return {"PathOnHost": src, "PathInContainer": dst or src, "CgroupPermissions": perms}


def parse_security_opts(values: list[str]) -> list[str]:
    out = []
    for opt in values:
        k, sep, v = opt.partition("=")
        if not sep and k != "no-new-privileges":
            k, sep, v = opt.partition(":")
        if (not sep or not v) and k != "no-new-privileges":
            raise ValueError(f'Invalid --security-opt: "{opt}"')
        if k == "seccomp" and v not in ("builtin", "unconfined"):
            import json

            try:
                with open(v, encoding="utf-8") as f:
                    profile = json.load(f)
            except OSError as exc:
                raise ValueError(f"opening seccomp profile ({v}) failed: {exc}") from None
            except ValueError as exc:
                raise ValueError(f"compacting json for seccomp profile ({v}) failed: {exc}") from None
            opt = "seccomp=" + json.dumps(profile, separators=(",", ":"))
        out.append(opt)
    return out


def duration_ns(text: str) -> int:
    return int(round(parse_go_duration(text) * 1e9))


def is_user_defined_network(name: str) -> bool:
    return name not in ("default", "bridge", "host", "none") and not name.startswith("container:")


# ================================================================================================
# The run / create flags, and where each lands in the create body
# ================================================================================================

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
            if opts.ip or opts.ip6:
                ep["IPAMConfig"] = {k: v for k, v in (("IPv4Address", opts.ip), ("IPv6Address", opts.ip6)) if v}
            if opts.mac_address:
                ep["MacAddress"] = opts.mac_address
        if name in endpoints:
            raise ConfigError(f'network "{name}" is specified multiple times')
        if ep or len(networks) > 1:
            endpoints[name] = ep
    return (networks[0] if networks else "default"), endpoints


# ================================================================================================
# Errors and images
# ================================================================================================


def with_help(message: str, name: str) -> str:
    return f"core: {message}\n\nRun 'core {name} --help' for more information"


def status_error(exc: CLIError, name: str = "run") -> CLIError:
    """docker's toStatusError: 127 for a command not found, 126 for one that cannot be invoked,
    else 125 — with docker's "Run 'core run --help'" hint."""
    message = exc.message
    if ("executable file not found" in message or "no such file or directory" in message
            or "system cannot find the file specified" in message):
        code = 127
    elif "permission denied" in message or "is a directory" in message:
        code = 126
    else:
        code = 125
    return CLIError(with_help(message, name), code)


def _is_image_id(image: str) -> bool:
    text = image.removeprefix("sha256:")
    return len(text) == 64 and all(c in "0123456789abcdef" for c in text)


def tagged_familiar(image: str) -> str:
    """reference.FamiliarString(TagNameOnly(ref)): ``busybox`` → ``busybox:latest``."""
    from core.cli.format import familiar

    name = image
    last = name.rsplit("/", 1)[-1]
    if "@" not in name and ":" not in last:
        name += ":latest"
    return familiar(name)


def pull_for_run(ctx: Any, image: str, platform: str, quiet: bool) -> None:
    """Pull as ``run`` does: progress on stderr (stdout is for the container's ID and output)."""
    from core.cli.cmd_image import _split_tag, pull_image

    repo, tag = _split_tag(image)
    pull_image(ctx, repo, tag or "latest", platform, quiet, out=sys.stderr)


def create_container(ctx: Any, body: dict[str, Any], name: str, platform: str, pull: str, quiet: bool,
                     cidfile: str = "") -> str:
    """POST /containers/create, pulling the image first (``--pull always``) or when the daemon
    does not have it (``missing``); warnings go to stderr.  Returns the new container's ID."""
    image = body["Image"]
    cid_file = None
    if cidfile:
        if os.path.exists(cidfile):
            raise CLIError(f"container ID file found, make sure the other container isn't running or delete {cidfile}")
        try:
            cid_file = open(cidfile, "w")
        except OSError as exc:
            raise CLIError(f"failed to create the container ID file: {exc}") from None
    written = False
    try:
        if pull == PULL_ALWAYS:
            pull_for_run(ctx, image, platform, quiet)
        params = {"name": name or None, "platform": platform or None}
        try:
            created = ctx.client.post("/containers/create", params, body)
        except APIError as exc:
            if not (exc.status == 404 and pull == PULL_MISSING and not _is_image_id(image)
                    and "image" in exc.detail.lower()):
                raise
            if not quiet:
                sys.stderr.write(f"Unable to find image '{tagged_familiar(image)}' locally\n")
                sys.stderr.flush()
            pull_for_run(ctx, image, platform, quiet)
            created = ctx.client.post("/containers/create", params, body)
        created = created or {}
        warnings = list(created.get("Warnings") or [])
        for dns in (body.get("HostConfig") or {}).get("Dns") or []:
            import ipaddress

            try:
                if ipaddress.ip_address(dns).is_loopback:
                    warnings.append(f"Localhost DNS ({dns}) may fail in containers.")
            except ValueError:
                pass
        for w in warnings:
            sys.stderr.write(f"WARNING: {w}\n")
        ident = created.get("Id") or created.get("ID") or ""
        if cid_file is not None:
            cid_file.write(ident)
            written = True
        return ident
    finally:
        if cid_file is not None:
            cid_file.close()
            if not written:
                try:
                    os.remove(cidfile)
                except OSError:
                    pass


def detach_keys_default(value: str) -> str:
    if value:
        return value
    try:
        from core.cli import dockerconfig

        return str(dockerconfig.load().get("detachKeys") or "")
    except CLIError:
        return ""


def validate_detach_keys(keys: str) -> None:
    if not keys:
        return
    from core.detachkeys import to_bytes

    try:
        to_bytes(keys)
    except ValueError as exc:
        raise CLIError(f"invalid detach keys ({keys}): {exc}", 1) from None


def check_tty(attach_stdin: bool, tty: bool) -> None:
    from core.cli.hijack import isatty

    if tty and attach_stdin and not isatty(0):
        raise CLIError("the input device is not a TTY", 1)


class Waiter:
    """``POST /containers/{id}/wait`` in a thread: registered before the container starts (the
    daemon answers its headers at once), the status when it exits (or is removed)."""

    ACCEPT_TIMEOUT = 2.0

    def __init__(self, ctx: Any, ident: str, condition: str) -> None:
        self.ctx, self.ident, self.condition = ctx, ident, condition
        self.accepted = lean.Event()
        self.done = lean.Event()
        self.code = 125
        self.error: str | None = None  # what docker logs when waiting failed
        self.message: str | None = None  # the daemon's wait error (attach reports just that)
        lean.spawn(self._run)
        self.accepted.wait(self.ACCEPT_TIMEOUT)

    def _run(self) -> None:
        try:
            resp = self.ctx.client.request("POST", f"/containers/{self.ident}/wait",
                                           {"condition": self.condition or None}, raw_body=b"")
            self.accepted.set()
            try:
                data = resp.json() or {}
            finally:
                resp.sock.close()
            message = (data.get("Error") or {}).get("Message")
            if message:
                self.error = f"Error waiting for container: {message}"
                self.message = message
                self.code = 125
            else:
                self.code = int(data.get("StatusCode", 0))
        except CLIError as exc:
            self.error = f"error waiting for container: {exc.message}"
            self.code = 125
        finally:
            self.accepted.set()
            self.done.set()

    def status(self, timeout: float | None = None, report: bool = True) -> int:
        """The exit status (125 if waiting failed, the reason then on stderr unless ``report`` is
        false, as when the start itself already failed)."""
        self.done.wait(timeout)
        if report and self.error:
            sys.stderr.write(self.error + "\n")
        return self.code


def _console_size() -> tuple[int, int]:
    from core.cli.hijack import terminal_size

    return terminal_size(1)


# ================================================================================================
# create, run
# ================================================================================================


def _run_flags(prog: str, run: bool) -> Flags:
    if run:
        f = Flags(prog, "[OPTIONS] IMAGE [COMMAND] [ARG...]", "Create and run a new container from an image",
                  aliases="core container run, core run", interspersed=False, help_shorthand=False)
    else:
        f = Flags(prog, "[OPTIONS] IMAGE [COMMAND] [ARG...]", "Create a new container",
                  aliases="core container create, core create", interspersed=False, help_shorthand=False)
    return container_flags(f, run)


def _prepare(flags: Flags, argv: list[str], name: str) -> tuple[Any, dict[str, Any]]:
    opts, args = flags.parse(argv)
    flags.require(args, least=1)
    if opts.pull not in (PULL_ALWAYS, PULL_MISSING, PULL_NEVER, ""):
        raise CLIError(with_help(f"invalid pull option: '{opts.pull}': must be one of \"always\", \"missing\" "
                                 f"or \"never\"", name), 125)
    if opts.platform:
        parts = opts.platform.split("/")
        if not 1 <= len(parts) <= 3 or not all(parts):
            raise CLIError(with_help(f'error parsing specified platform: "{opts.platform}": unknown operating '
                                     "system or architecture: invalid argument", name), 125)
    try:
        body = build_config(opts, args[0], args[1:], _console_size())
    except ConfigError as exc:
        raise CLIError(with_help(str(exc), name), 125) from None
    return opts, body


@command
def create(ctx: Any, argv: list[str], prog: str) -> int:
    flags = _run_flags(prog, run=False)
    opts, body = _prepare(flags, argv, "create")
    ident = create_container(ctx, body, opts.name, opts.platform, opts.pull or PULL_MISSING, opts.quiet,
                             opts.cidfile)
    sys.stdout.write(ident + "\n")
    return 0


@command
def run(ctx: Any, argv: list[str], prog: str) -> int:
    flags = _run_flags(prog, run=True)
    opts, body = _prepare(flags, argv, "run")
    if not opts.detach:
        check_tty(body["AttachStdin"], body["Tty"])
    else:
        if opts.attach:
            raise CLIError("conflicting options: cannot specify both --attach and --detach", 1)
        body["AttachStdin"] = body["AttachStdout"] = body["AttachStderr"] = False
        body["StdinOnce"] = False
    detach_keys = detach_keys_default(opts.detach_keys)
    validate_detach_keys(opts.detach_keys)
    try:
        ident = create_container(ctx, body, opts.name, opts.platform, opts.pull or PULL_MISSING, opts.quiet,
                                 opts.cidfile)
    except CLIError as exc:
        raise status_error(exc) from None
    return _run_created(ctx, ident, body, opts, detach_keys)


def _run_created(ctx: Any, ident: str, body: dict[str, Any], opts: Any, detach_keys: str) -> int:
    from core.cli import hijack

    tty = bool(body["Tty"])
    attach_in, attach_out, attach_err = body["AttachStdin"], body["AttachStdout"], body["AttachStderr"]
    attached = attach_in or attach_out or attach_err
    auto_remove = bool(body["HostConfig"].get("AutoRemove"))
    signals = hijack.SignalWorker(ctx.client)
    streamer: hijack.Streamer | None = None
    try:
        if opts.sig_proxy:
            signals.proxy(ident, on_force_exit=lambda: streamer and streamer.restore_terminal())
        if not attached:
            sys.stdout.write(ident + "\n")
            sys.stdout.flush()
        else:
            params = {"stream": True, "stdin": attach_in, "stdout": attach_out, "stderr": attach_err,
                      "detachKeys": detach_keys or None}
            conn = hijack.hijack(ctx.client, f"/containers/{ident}/attach", params)
            streamer = hijack.Streamer(conn, tty=tty, stdin=attach_in, stdout=attach_out, stderr=attach_err,
                                       detach_keys=detach_keys, stderr_to_stdout=tty)
        waiter = Waiter(ctx, ident, "removed" if auto_remove else "next-exit")
        try:
            ctx.client.post(f"/containers/{ident}/start")
        except CLIError as exc:
            if streamer is not None:
                streamer.cancel()
                streamer.conn.close()
            if auto_remove:
                waiter.status(timeout=10, report=False)
            raise status_error(exc) from None
        if streamer is None:
            return 0
        if tty and hijack.isatty(1):
            signals.monitor_size(ident, is_exec=False)
        if not attach_out and not attach_err:
            # nothing to read but stdin: the container's exit ends the session
            lean.spawn(lambda: (waiter.done.wait(), streamer.cancel()))
        else:
            _cancel_after_exit(waiter, streamer)
        outcome = streamer.run()
        if outcome == "detached":
            return 0
        return waiter.status()
    finally:
        signals.close()


def _cancel_after_exit(waiter: Waiter, streamer: Any, grace: float = 5.0) -> None:
    """Should the daemon keep an attach open after the process exited, end it after a grace."""

    def watch() -> None:
        waiter.done.wait()
        if not streamer.output_done.wait(grace):
            streamer.cancel()

    lean.spawn(watch)


# ================================================================================================
# start, attach
# ================================================================================================


def _check_state(info: dict[str, Any]) -> None:
    state = info.get("State") or {}
    if not state.get("Running"):
        raise CLIError("You cannot attach to a stopped container, start it first", 1)
    if state.get("Paused"):
        raise CLIError("You cannot attach to a paused container, unpause it first", 1)
    if state.get("Restarting"):
        raise CLIError("You cannot attach to a restarting container, wait until it is running", 1)


@command
def start(ctx: Any, argv: list[str], prog: str) -> int:
    f = Flags(prog, "[OPTIONS] CONTAINER [CONTAINER...]", "Start one or more stopped containers",
              aliases="core container start, core start")
    f.add("attach", "a", help="Attach STDOUT/STDERR and forward signals")
    f.add("checkpoint", None, "string", hidden=True, help="Restore from this checkpoint")
    f.add("checkpoint-dir", None, "string", hidden=True, help="Use a custom checkpoint storage directory")
    f.add("detach-keys", None, "string", help="Override the key sequence for detaching a container")
    f.add("interactive", "i", help="Attach container's STDIN")
    opts, args = f.parse(argv)
    f.require(args, least=1)
    if not (opts.attach or opts.interactive):
        failed = []
        for name in args:
            try:
                ctx.client.post(f"/containers/{name}/start")
            except APIError as exc:
                sys.stderr.write(exc.message + "\n")
                failed.append(name)
                continue
            sys.stdout.write(name + "\n")
            sys.stdout.flush()
        if failed:
            raise CLIError(f"Error: failed to start containers: {', '.join(failed)}", 1)
        return 0
    if len(args) > 1:
        raise CLIError("you cannot start and attach multiple containers at once", 1)
    from core.cli import hijack

    info = ctx.client.get_json(f"/containers/{args[0]}/json")
    ident = info.get("Id") or args[0]
    config = info.get("Config") or {}
    tty = bool(config.get("Tty"))
    detach_keys = detach_keys_default(opts.detach_keys)
    stdin = bool(opts.interactive and config.get("OpenStdin"))
    signals = hijack.SignalWorker(ctx.client)
    try:
        if not tty:
            signals.proxy(ident)
        conn = hijack.hijack(ctx.client, f"/containers/{ident}/attach", {
            "stream": True, "stdin": stdin, "stdout": True, "stderr": True, "detachKeys": detach_keys or None})
        streamer = hijack.Streamer(conn, tty=tty, stdin=stdin, stdout=True, stderr=True, detach_keys=detach_keys)
        auto_remove = bool((info.get("HostConfig") or {}).get("AutoRemove"))
        waiter = Waiter(ctx, ident, "removed" if auto_remove else "next-exit")
        try:
            ctx.client.post(f"/containers/{ident}/start")
        except CLIError:
            streamer.cancel()
            conn.close()
            if auto_remove:
                waiter.status(timeout=10, report=False)
            raise
        if tty and hijack.isatty(1):
            signals.monitor_size(ident, is_exec=False)
        _cancel_after_exit(waiter, streamer)
        if streamer.run() == "detached":
            return 0
        return waiter.status()
    finally:
        signals.close()


@command
def attach(ctx: Any, argv: list[str], prog: str) -> int:
    f = Flags(prog, "[OPTIONS] CONTAINER",
              "Attach local standard input, output, and error streams to a running container",
              aliases="core container attach, core attach")
    f.add("detach-keys", None, "string", help="Override the key sequence for detaching a container")
    f.add("no-stdin", help="Do not attach STDIN")
    f.add("sig-proxy", None, default=True, help="Proxy all received signals to the process")
    opts, args = f.parse(argv)
    f.require(args, exact=1)
    from core.cli import hijack

    waiter = Waiter(ctx, args[0], "")
    info = ctx.client.get_json(f"/containers/{args[0]}/json")
    _check_state(info)
    ident = info.get("Id") or args[0]
    config = info.get("Config") or {}
    tty = bool(config.get("Tty"))
    check_tty(not opts.no_stdin, tty)
    detach_keys = detach_keys_default(opts.detach_keys)
    stdin = bool(not opts.no_stdin and config.get("OpenStdin"))
    signals = hijack.SignalWorker(ctx.client)
    try:
        if opts.sig_proxy and not tty:
            signals.proxy(ident)
        conn = hijack.hijack(ctx.client, f"/containers/{ident}/attach", {
            "stream": True, "stdin": stdin, "stdout": True, "stderr": True, "detachKeys": detach_keys or None})
        try:
            _check_state(ctx.client.get_json(f"/containers/{ident}/json"))
        except CLIError:
            conn.close()
            raise
        streamer = hijack.Streamer(conn, tty=tty, stdin=stdin, stdout=True, stderr=True, detach_keys=detach_keys)
        if tty and hijack.isatty(1):
            signals.monitor_size(ident, is_exec=False, bump=True)
        _cancel_after_exit(waiter, streamer)
        if streamer.run() == "detached":
            raise CLIError(hijack.ESCAPE_MESSAGE, 1)
        code = waiter.status(report=False)
        if waiter.message or waiter.error:
            raise CLIError(waiter.message or waiter.error or "", 1)
        return code
    finally:
        signals.close()


# ================================================================================================
# exec
# ================================================================================================


@command
def exec_(ctx: Any, argv: list[str], prog: str) -> int:
    f = Flags(prog, "[OPTIONS] CONTAINER COMMAND [ARG...]", "Execute a command in a running container",
              aliases="core container exec, core exec", interspersed=False)
    f.add("detach", "d", help="Detached mode: run command in the background")
    f.add("detach-keys", None, "string", help="Override the key sequence for detaching a container")
    f.add("env", "e", "list", convert=validate_env, help="Set environment variables")
    f.add("env-file", None, "list", help="Read in a file of environment variables")
    f.add("interactive", "i", help="Keep STDIN open even if not attached")
    f.add("privileged", help="Give extended privileges to the command")
    f.add("tty", "t", help="Allocate a pseudo-TTY")
    f.add("user", "u", "string", help='Username or UID (format: "<name|uid>[:<group|gid>]")')
    f.add("workdir", "w", "string", help="Working directory inside the container")
    opts, args = f.parse(argv)
    f.require(args, least=2)
    from core.cli import hijack

    try:
        env = read_env(opts.env_file or [], opts.env or [])
    except ValueError as exc:
        raise CLIError(str(exc), 1) from None
    detach_keys = detach_keys_default(opts.detach_keys)
    config: dict[str, Any] = {
        "User": opts.user, "Privileged": opts.privileged, "Tty": opts.tty, "Cmd": args[1:],
        "WorkingDir": opts.workdir, "Env": env or None, "DetachKeys": detach_keys,
        "AttachStdin": bool(opts.interactive and not opts.detach),
        "AttachStdout": not opts.detach, "AttachStderr": not opts.detach,
    }
    ctx.client.get_json(f"/containers/{args[0]}/json")  # "No such container" comes first
    if not opts.detach:
        check_tty(config["AttachStdin"], opts.tty)
    console = None
    if opts.tty:
        h, w = _console_size()
        console = [h, w]
        config["ConsoleSize"] = console
    created = ctx.client.post(f"/containers/{args[0]}/exec", body=config) or {}
    exec_id = created.get("Id") or created.get("ID") or ""
    if not exec_id:
        raise CLIError("exec ID empty", 1)
    start_body = {"Detach": bool(opts.detach), "Tty": bool(opts.tty), "ConsoleSize": console}
    try:
        if opts.detach:
            ctx.client.post(f"/exec/{exec_id}/start", body=start_body)
            return 0
        conn = hijack.hijack(ctx.client, f"/exec/{exec_id}/start", body=start_body)
    except APIError as exc:
        code = status_error(exc).code
        raise CLIError(exc.message, code if code in (126, 127) else exc.code) from None
    signals = hijack.SignalWorker(ctx.client)
    try:
        streamer = hijack.Streamer(conn, tty=opts.tty, stdin=config["AttachStdin"], stdout=True, stderr=True,
                                   detach_keys=detach_keys, stderr_to_stdout=opts.tty)
        if opts.tty and hijack.isatty(0):
            signals.monitor_size(exec_id, is_exec=True)
        if streamer.run() == "detached":
            raise CLIError(hijack.ESCAPE_MESSAGE, 1)
    finally:
        signals.close()
    return exec_exit_code(ctx, exec_id)


def exec_exit_code(ctx: Any, exec_id: str, patience: float = 5.0) -> int:
    """GET /exec/{id}/json's ExitCode once the exec is over (the stream may end a moment before
    the daemon has recorded the exit).  -1 (255) if the daemon is gone, as docker."""
    import time

    deadline = time.monotonic() + patience
    while True:
        try:
            data = ctx.client.get_json(f"/exec/{exec_id}/json")
        except APIError:
            raise
        except CLIError:
            return 255
        if (not data.get("Running") and data.get("ExitCode") is not None) or time.monotonic() > deadline:
            return int(data.get("ExitCode") or 0)
        time.sleep(0.02)
