"""The daemon's configuration: ``/etc/core/daemon.json`` merged with command-line flags.

The file takes docker's ``daemon.json`` keys where they exist, plus ``drivers``::

    {
      "data-root": "/var/lib/core",
      "exec-root": "/run/core",
      "hosts": ["unix:///run/core/core.sock"],
      "drivers": {"storage": "overlay", "network": "bridge", "executor": "container", "registry": "hub"},
      "storage-driver": "vfs",                       # docker's key, same as drivers.storage
      "storage-opts": ["key=value"],                  # options handed to the storage driver
      "driver-opts": {"network": {"key": "value"}},   # options for any kind
      "registry-mirrors": ["https://mirror.example"], # mirrors of Docker Hub
      "mirrors": {"registry.example:5000": ["http://127.0.0.1:5001"]},  # mirrors of any registry
      "insecure-registries": ["myhost:5000", "10.0.0.0/8"],
      "ipv6": true, "fixed-cidr-v6": "fd00:1::/64"  # IPv6 on the default bridge (when made)
    }

Flags win over the file.  Unknown keys are an error, as in docker.
"""
from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

import attrs

from core.errors import InvalidArgument
from core.hookspecs import KINDS
from core.plugins import check_kind

DEFAULT_CONFIG_FILE = "/etc/core/daemon.json"
DEFAULT_DATA_ROOT = "/var/lib/core"
DEFAULT_EXEC_ROOT = "/run/core"
DEFAULT_SOCKET = "/run/core/core.sock"
# Used when neither the file nor a flag names a driver of a kind.  For storage the first driver
# that can run here is chosen, as docker picks overlay2 before vfs; a driver named explicitly is
# never replaced by another.
DEFAULT_DRIVERS: dict[str, tuple[str, ...]] = {
    "storage": ("overlay", "vfs"),
    "network": ("bridge",),
    "executor": ("container",),
    "registry": ("hub",),
}

KNOWN_KEYS = {
    "data-root", "exec-root", "hosts", "drivers", "storage-driver", "storage-opts", "driver-opts",
    "registry-mirrors", "mirrors", "insecure-registries", "debug", "log-level", "group",
    "ipv6", "fixed-cidr-v6",
}


def parse_driver_flags(values: list[str]) -> dict[str, str]:
    """``["storage=vfs", ...]`` → ``{"storage": "vfs"}``; bad forms raise InvalidArgument."""
    out: dict[str, str] = {}
    for value in values:
        kind, sep, name = value.partition("=")
        if not sep or not kind or not name:
            raise InvalidArgument(f'invalid --driver "{value}": expected KIND=NAME (kinds: {", ".join(KINDS)})')
        out[kind.strip()] = name.strip()
    return out


def parse_host(host: str) -> str:
    """``unix:///path`` or a bare path → the socket path.  Only unix sockets are served."""
    if host.startswith("unix://"):
        path = host[len("unix://"):]
    elif host.startswith("/"):
        path = host
    else:
        raise InvalidArgument(f'invalid host "{host}": only unix:///path sockets are supported')
    if not path.startswith("/"):
        raise InvalidArgument(f'invalid host "{host}": the socket path must be absolute')
    return path


@attrs.define
class DaemonConfig:
    data_root: Path = Path(DEFAULT_DATA_ROOT)
    exec_root: Path = Path(DEFAULT_EXEC_ROOT)
    socket: Path = Path(DEFAULT_SOCKET)
    drivers: dict[str, str] = attrs.field(factory=dict)  # explicitly chosen, by kind
    driver_opts: dict[str, dict[str, str]] = attrs.field(factory=dict)
    registry_mirrors: list[str] = attrs.field(factory=list)
    mirrors: dict[str, list[str]] = attrs.field(factory=dict)
    insecure_registries: list[str] = attrs.field(factory=list)
    group: str = "core"
    debug: bool = False
    config_file: Path | None = None
    ipv6: bool = False                 # the default bridge gets IPv6 (docker's "ipv6")
    fixed_cidr_v6: str | None = None   # ... in this subnet (else a random ULA /64)


def _expect(key: str, value: Any, kind: type | tuple[type, ...], what: str) -> Any:
    if not isinstance(value, kind):
        raise InvalidArgument(f'daemon config: "{key}" must be {what}')
    return value


def _str_list(key: str, value: Any) -> list[str]:
    _expect(key, value, list, "a list of strings")
    if not all(isinstance(v, str) for v in value):
        raise InvalidArgument(f'daemon config: "{key}" must be a list of strings')
    return list(value)


def load(config_file: str | None, *, data_root: str | None = None, exec_root: str | None = None,
         host: str | None = None, drivers: list[str] | None = None, debug: bool = False) -> DaemonConfig:
    """Read the config file (missing is fine unless named explicitly) and apply the flags."""
    cfg = DaemonConfig(debug=debug)
    explicit = config_file is not None
    path = Path(config_file or os.environ.get("CORE_CONFIG_FILE") or DEFAULT_CONFIG_FILE)
    data: dict[str, Any] = {}
    try:
        text = path.read_text()
    except FileNotFoundError:
        if explicit:
            raise InvalidArgument(f"daemon config: {path}: no such file") from None
        text = ""
    except OSError as exc:
        raise InvalidArgument(f"daemon config: {path}: {exc.strerror}") from exc
    if text.strip():
        cfg.config_file = path
        try:
            data = json.loads(text)
        except ValueError as exc:
            raise InvalidArgument(f"daemon config: {path}: invalid JSON: {exc}") from exc
        _expect("(top level)", data, dict, "a JSON object")
        unknown = sorted(set(data) - KNOWN_KEYS)
        if unknown:
            raise InvalidArgument(f"daemon config: {path}: unknown keys: {', '.join(unknown)}")

    if "data-root" in data:
        cfg.data_root = Path(_expect("data-root", data["data-root"], str, "a path"))
    if "exec-root" in data:
        cfg.exec_root = Path(_expect("exec-root", data["exec-root"], str, "a path"))
    if "hosts" in data:
        hosts = _str_list("hosts", data["hosts"])
        if hosts:
            cfg.socket = Path(parse_host(hosts[0]))
    if "drivers" in data:
        for kind, name in _expect("drivers", data["drivers"], dict, "an object of KIND: NAME").items():
            cfg.drivers[kind] = _expect(f"drivers.{kind}", name, str, "a driver name")
    if "storage-driver" in data:
        cfg.drivers["storage"] = _expect("storage-driver", data["storage-driver"], str, "a driver name")
    if "storage-opts" in data:
        for opt in _str_list("storage-opts", data["storage-opts"]):
            k, _, v = opt.partition("=")
            cfg.driver_opts.setdefault("storage", {})[k] = v
    if "driver-opts" in data:
        for kind, opts in _expect("driver-opts", data["driver-opts"], dict, "an object").items():
            _expect(f"driver-opts.{kind}", opts, dict, "an object of strings")
            cfg.driver_opts.setdefault(kind, {}).update({str(k): str(v) for k, v in opts.items()})
    if "registry-mirrors" in data:
        cfg.registry_mirrors = _str_list("registry-mirrors", data["registry-mirrors"])
    if "mirrors" in data:
        for reg, lst in _expect("mirrors", data["mirrors"], dict, "an object").items():
            cfg.mirrors[reg] = _str_list(f"mirrors.{reg}", lst)
    if "insecure-registries" in data:
        cfg.insecure_registries = _str_list("insecure-registries", data["insecure-registries"])
    if "group" in data:
        cfg.group = _expect("group", data["group"], str, "a group name")
    if data.get("debug") is True:
        cfg.debug = True
    if "ipv6" in data:
        cfg.ipv6 = _expect("ipv6", data["ipv6"], bool, "true or false")
    if "fixed-cidr-v6" in data:
        text = _expect("fixed-cidr-v6", data["fixed-cidr-v6"], str, "an IPv6 CIDR")
        import ipaddress

        try:
            network = ipaddress.ip_network(text, strict=False)
        except ValueError:
            network = None
        if not isinstance(network, ipaddress.IPv6Network):
            raise InvalidArgument(f'daemon config: "fixed-cidr-v6": invalid IPv6 CIDR {text!r}')
        if not cfg.ipv6:
            raise InvalidArgument('daemon config: "fixed-cidr-v6" needs "ipv6": true')
        cfg.fixed_cidr_v6 = str(network)

    data_root = data_root or os.environ.get("CORE_DATA_ROOT")
    exec_root = exec_root or os.environ.get("CORE_EXEC_ROOT")
    if data_root:
        cfg.data_root = Path(data_root)
    if exec_root:
        cfg.exec_root = Path(exec_root)
    if host:
        cfg.socket = Path(parse_host(host))
    elif not data.get("hosts") and exec_root:
        cfg.socket = Path(exec_root) / "core.sock"
    cfg.drivers.update(parse_driver_flags(drivers or []))
    for kind in cfg.drivers:
        check_kind(kind)
    cfg.data_root = cfg.data_root.absolute()
    cfg.exec_root = cfg.exec_root.absolute()
    return cfg
