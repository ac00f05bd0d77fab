"""The values of ``run``, ``create`` and ``exec`` flags, as docker's ``opts`` package reads them:
published ports, env and label files, mounts and volumes, devices, ulimits, restart policies,
security options, CPUs; and the ``key=value`` maps other commands' flags share (:func:`kv_map`).
Plain functions, tested without a daemon; each raises ValueError with docker's message.  Sizes
and durations are :mod:`core.units`'.
"""
from __future__ import annotations

import os

from core.units import parse_go_duration_ns, ram_in_bytes

TYPE_CHECKING = False
if TYPE_CHECKING:
    from typing import Any


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


def parse_uint(text: str, bits: int = 64) -> int:
    """Go's ``strconv.ParseUint(text, 10, bits)``: ASCII digits only, its errors in its words."""
    if not text or not all("0" <= c <= "9" for c in text):
        raise ValueError(f'strconv.ParseUint: parsing "{text}": invalid syntax')
    value = int(text, 10)
    if value >= 1 << bits:
        raise ValueError(f'strconv.ParseUint: parsing "{text}": value out of range')
    return value


def parse_port_range(ports: str) -> tuple[int, int]:
    """nat.ParsePortRange: "8000-8010" → (8000, 8010); "80" → (80, 80)."""
    if ports == "":
        raise ValueError("empty string specified for ports")

    def one(p: str) -> int:
        return parse_uint(p, 16)

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


def kv_map(values: list[str] | None, sep: str = "=") -> dict[str, str]:
    """opts.ConvertKVStringsToMap: ``k=v`` → k: v, ``k`` → k: "" (a later key wins); ``sep``
    splits at another character (``--tmpfs PATH:OPTIONS``)."""
    out: dict[str, str] = {}
    for item in values or []:
        key, _, value = item.partition(sep)
        out[key] = value
    return out


def labels_map(values: list[str], files: list[str] = ()) -> dict[str, str]:
    lines: list[str] = []
    for path in files:
        try:
            with open(path, encoding="utf-8") as f:
                lines += parse_env_lines(f.read().splitlines(), lambda _k: None)
        except OSError as exc:
            raise ValueError(f"open {path}: {exc.strerror}") from None
    return kv_map(lines + list(values))


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
    """``--tmpfs PATH[:OPTIONS]`` (repeatable) as HostConfig.Tmpfs: path → options."""
    return kv_map(values, ":")


def validate_device_cgroup_rule(value: str) -> str:
    """opts.ValidateDeviceCgroupRule: ``TYPE MAJOR:MINOR ACCESS`` (``c 1:3 mr``, ``a *:* rwm``)."""
    import re

    if not re.match(r"^([acb]) ([0-9]+|\*):([0-9]+|\*) ([rwm]{1,3})$", value):
        raise ValueError(f"invalid device cgroup format '{value}'")
    return value


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
    return parse_go_duration_ns(text)


def is_user_defined_network(name: str) -> bool:
    return name not in ("default", "bridge", "host", "none") and not name.startswith("container:")
