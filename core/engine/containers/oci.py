"""The OCI runtime spec of a container: from its image config and its create options.

Everything here is a pure function of its arguments.  The users (:func:`resolve_user`,
:func:`read_user_db`) are in :mod:`core.engine.containers.users`, the capabilities, seccomp and
``--security-opt`` in :mod:`core.engine.containers.security`; both are part of this module's
vocabulary.  The rules are docker's:

- **config merge** (:func:`merge_config`): the request's ``Env`` first, then the image's
  variables it does not set; image ``Labels`` under the request's; ``Cmd`` from the image only
  when the request gives neither ``Entrypoint`` nor ``Cmd``; ``Entrypoint`` from the image when
  the request gives none (``[""]`` — ``--entrypoint ""`` — means none at all); ``User``,
  ``WorkingDir``, ``StopSignal``, ``Volumes``, ``ExposedPorts`` from the image unless set.
- **process** (:func:`process_args`, :func:`process_env`): ``Entrypoint + Cmd``; environment
  ``PATH`` (default), ``HOSTNAME``, ``TERM=xterm`` with a tty, then the container's variables
  replacing or adding (a bare ``NAME`` removes one), ``HOME`` from the user's passwd entry when
  nothing set it.
- **user** (:func:`resolve_user`): ``name``, ``uid``, ``name:group``, ``uid:gid``...; names
  looked up in the container's own files, numbers taken as they are; supplementary groups are
  the ``/etc/group`` entries listing the user, plus ``--group-add``.
- **capabilities** (:func:`capabilities`): docker's default set of 14, ``--cap-add`` /
  ``--cap-drop`` with or without the ``CAP_`` prefix and ``ALL``; ``--privileged`` gets every
  capability the kernel knows.
- **seccomp** (:func:`seccomp`): the project's default profile (``core/data/seccomp.json``),
  its rules chosen for this architecture, kernel and capability set; ``seccomp=unconfined``
  and ``--privileged`` run without; a custom profile in docker's JSON format is accepted.
- **mounts** (:func:`default_mounts`): ``/proc``, ``/dev`` (tmpfs), ``/dev/pts``,
  ``/dev/shm`` (64 MiB), ``/dev/mqueue``, ``/sys`` (ro), ``/sys/fs/cgroup`` (ro), then the
  container's ``/etc/hostname``, ``/etc/hosts``, ``/etc/resolv.conf`` and its volumes; a user
  mount replaces a default one at the same place (and ``/dev`` every default below it).
- **namespaces**, **cgroup resources**, **rlimits**, masked and read-only paths, devices: see
  :func:`build_spec`.
"""
from __future__ import annotations

import os
import re
import signal as _signal
import stat
from pathlib import Path
from typing import Any, Iterable

import attrs

from core.engine.containers import health
# part of this module's vocabulary (see __all__)
from core.engine.containers.security import (
    DEFAULT_CAPABILITIES, SecurityOptions, all_capabilities, capabilities, default_seccomp_profile,
    normalize_capabilities, parse_security_opts, seccomp)
from core.engine.containers.users import ExecUser, parse_group, parse_passwd, read_user_db, resolve_user
from core.errors import InvalidArgument

DEFAULT_PATH = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"
OCI_VERSION = "1.1.0"
DEFAULT_SHM_SIZE = 64 * 1024 * 1024
CPU_PERIOD = 100_000  # microseconds: the CFS period --cpus uses
INIT_BINARY = "/usr/bin/tini-static"  # Debian's tini: a static init docker's --init bind-mounts
INIT_PATH = "/sbin/docker-init"  # where docker puts it in the container
INIT_PACKAGE = "tini"

MASKED_PATHS: tuple[str, ...] = (
    "/proc/asound", "/proc/acpi", "/proc/interrupts", "/proc/kcore", "/proc/keys", "/proc/latency_stats",
    "/proc/timer_list", "/proc/timer_stats", "/proc/sched_debug", "/proc/scsi", "/sys/firmware",
    "/sys/devices/virtual/powercap",
)
READONLY_PATHS: tuple[str, ...] = (
    "/proc/bus", "/proc/fs", "/proc/irq", "/proc/sys", "/proc/sysrq-trigger",
)

# what an unprivileged container may do with devices: mknod anything, use the usual few
DEFAULT_DEVICE_RULES: tuple[dict[str, Any], ...] = (
    {"allow": False, "access": "rwm"},
    {"allow": True, "type": "c", "access": "m"},
    {"allow": True, "type": "b", "access": "m"},
    {"allow": True, "type": "c", "major": 1, "minor": 3, "access": "rwm"},    # null
    {"allow": True, "type": "c", "major": 1, "minor": 5, "access": "rwm"},    # zero
    {"allow": True, "type": "c", "major": 1, "minor": 7, "access": "rwm"},    # full
    {"allow": True, "type": "c", "major": 1, "minor": 8, "access": "rwm"},    # random
    {"allow": True, "type": "c", "major": 1, "minor": 9, "access": "rwm"},    # urandom
    {"allow": True, "type": "c", "major": 5, "minor": 0, "access": "rwm"},    # tty
    {"allow": True, "type": "c", "major": 5, "minor": 1, "access": "rwm"},    # console
    {"allow": True, "type": "c", "major": 5, "minor": 2, "access": "rwm"},    # ptmx
    {"allow": True, "type": "c", "major": 136, "access": "rwm"},              # pts/*
    {"allow": True, "type": "c", "major": 10, "minor": 200, "access": "rwm"},  # net/tun
)

RLIMITS = {"as", "core", "cpu", "data", "fsize", "locks", "memlock", "msgqueue", "nice", "nofile", "nproc",
           "rss", "rtprio", "rttime", "sigpending", "stack"}




# --------------------------------------------------------------------------- config
def _str_list(value: Any, what: str) -> list[str] | None:
    """A docker StrSlice: null, a string (one element) or a list of strings."""
    if value is None:
        return None
    if isinstance(value, str):
        return [value]
    if isinstance(value, list) and all(isinstance(v, str) for v in value):
        return list(value)
    raise InvalidArgument(f"invalid {what}: expected a string or a list of strings")


def merge_config(image: dict[str, Any], user: dict[str, Any]) -> dict[str, Any]:
    """The container's effective config: the request's ``Config`` over the image's (docker's
    ``merge``).  Returns a new dict; neither argument is changed."""
    out = dict(user)
    image = image or {}
    out["Cmd"] = _str_list(user.get("Cmd"), "Cmd")
    out["Entrypoint"] = _str_list(user.get("Entrypoint"), "Entrypoint")
    env = user.get("Env") or []
    if not isinstance(env, list) or not all(isinstance(e, str) for e in env):
        raise InvalidArgument("invalid Env: expected a list of strings")
    for e in env:
        if e.split("=", 1)[0] == "":
            raise InvalidArgument(f"invalid environment variable: {e}")
    if not out.get("User"):
        out["User"] = image.get("User") or ""
    image_env = [e for e in (image.get("Env") or []) if isinstance(e, str)]
    if not env:
        out["Env"] = list(image_env)
    else:
        keys = {e.split("=", 1)[0] for e in env}
        out["Env"] = list(env) + [e for e in image_env if e.split("=", 1)[0] not in keys]
    for key in ("Labels", "Volumes", "ExposedPorts"):
        if user.get(key) is not None and not isinstance(user[key], dict):
            raise InvalidArgument(f"invalid {key}: expected a JSON object")
    if not all(isinstance(k, str) and isinstance(v, str) for k, v in (user.get("Labels") or {}).items()):
        raise InvalidArgument("invalid Labels: expected an object of strings")
    labels = dict(user.get("Labels") or {})
    for k, v in (image.get("Labels") or {}).items():
        labels.setdefault(k, v)
    out["Labels"] = labels
    if not out["Entrypoint"]:
        if not out["Cmd"]:
            out["Cmd"] = _str_list(image.get("Cmd"), "image Cmd")
            if image.get("ArgsEscaped"):
                out["ArgsEscaped"] = True
        if out["Entrypoint"] is None:
            out["Entrypoint"] = _str_list(image.get("Entrypoint"), "image Entrypoint")
    if not out.get("WorkingDir"):
        out["WorkingDir"] = image.get("WorkingDir") or ""
    volumes = dict(image.get("Volumes") or {})
    volumes.update(user.get("Volumes") or {})
    out["Volumes"] = volumes or None
    ports = dict(image.get("ExposedPorts") or {})
    ports.update(user.get("ExposedPorts") or {})
    out["ExposedPorts"] = ports or None
    if not out.get("StopSignal") and image.get("StopSignal"):
        out["StopSignal"] = image["StopSignal"]
    health.validate(out.get("Healthcheck"))   # the request's (an image's is taken as it is)
    out["Healthcheck"] = health.merge(out.get("Healthcheck"), image.get("Healthcheck"))
    if out["Healthcheck"] is None:
        del out["Healthcheck"]
    if out.get("OnBuild") is None and image.get("OnBuild") is not None:
        out["OnBuild"] = image["OnBuild"]
    if out.get("Shell") is None and image.get("Shell") is not None:
        out["Shell"] = image["Shell"]
    wd = out.get("WorkingDir") or ""
    if wd and not wd.startswith("/"):
        raise InvalidArgument(f"the working directory '{wd}' is invalid, it needs to be an absolute path")
    return out


def process_args(config: dict[str, Any]) -> list[str]:
    """``Entrypoint + Cmd``; ``InvalidArgument("no command specified")`` when empty."""
    entrypoint = [a for a in (config.get("Entrypoint") or [])]
    if entrypoint == [""]:
        entrypoint = []
    args = entrypoint + list(config.get("Cmd") or [])
    if not args or not args[0]:
        raise InvalidArgument("no command specified")
    return args


def replace_or_append_env(defaults: list[str], overrides: Iterable[str]) -> list[str]:
    """docker's ReplaceOrAppendEnvValues: ``NAME=v`` replaces or adds, a bare ``NAME`` removes."""
    out = list(defaults)
    index = {e.split("=", 1)[0]: i for i, e in enumerate(out)}
    removed: set[str] = set()
    for e in overrides:
        key = e.split("=", 1)[0]
        if "=" not in e:
            removed.add(key)
            continue
        removed.discard(key)
        if key in index:
            out[index[key]] = e
        else:
            index[key] = len(out)
            out.append(e)
    return [e for e in out if e.split("=", 1)[0] not in removed]


def process_env(env: Iterable[str], hostname: str, tty: bool, home: str | None = None) -> list[str]:
    """The process environment: docker's defaults (PATH, HOSTNAME, TERM with a tty), then
    ``env``; ``HOME`` from the user's entry when nobody set it."""
    base = [f"PATH={DEFAULT_PATH}", f"HOSTNAME={hostname}"]
    if tty:
        base.append("TERM=xterm")
    out = replace_or_append_env(base, env)
    if home is not None and not any(e.startswith("HOME=") for e in out):
        out.append(f"HOME={home}")
    return out


# --------------------------------------------------------------------------- signals
def parse_signal(value: Any, default: int = _signal.SIGTERM) -> int:
    """A signal as docker takes it: a number, ``SIGTERM``, ``TERM``, ``sigterm``."""
    if value is None or value == "":
        return default
    if isinstance(value, int) and not isinstance(value, bool):
        number = value
    else:
        text = str(value).strip().upper()
        if text.isdigit():
            number = int(text)
        else:
            name = text if text.startswith("SIG") else "SIG" + text
            rt = re.fullmatch(r"SIGRTMIN(?:\+(\d+))?", name) or re.fullmatch(r"SIGRTMAX(?:-(\d+))?", name)
            try:
                if rt:
                    base = _signal.SIGRTMIN if "MIN" in name else _signal.SIGRTMAX
                    off = int(rt.group(1) or 0)
                    number = base + off if "MIN" in name else base - off
                else:
                    number = int(getattr(_signal.Signals, name))
            except AttributeError:
                raise InvalidArgument(f"Invalid signal: {value}") from None
    if not 0 < number <= 64:
        raise InvalidArgument(f"Invalid signal: {value}")
    return number


# --------------------------------------------------------------------------- init
def init_binary(path: str | None = None) -> str:
    """The host's init binary for ``--init`` (``HostConfig.Init``); ``InvalidArgument`` naming
    the package to install when it is missing."""
    path = path or INIT_BINARY
    if not os.path.isfile(path) or not os.access(path, os.X_OK):
        raise InvalidArgument(f"--init: the init binary {path} is missing: install the Debian package "
                              f"'{INIT_PACKAGE}' (apt-get install {INIT_PACKAGE}) on the host")
    return path


def init_mount(binary: str) -> dict[str, Any]:
    """The read-only bind mount of ``binary`` at :data:`INIT_PATH`."""
    return {"destination": INIT_PATH, "type": "bind", "source": binary,
            "options": ["bind", "ro", "nosuid", "nodev", "rprivate"]}


# --------------------------------------------------------------------------- mounts
def default_mounts(*, privileged: bool = False, shm_size: int = 0, ipc_none: bool = False,
                   readonly_rootfs: bool = False) -> list[dict[str, Any]]:
    """The file systems every container gets (docker's defaults)."""
    ro = [] if privileged else ["ro"]
    mounts = [
        {"destination": "/proc", "type": "proc", "source": "proc", "options": ["nosuid", "noexec", "nodev"]},
        {"destination": "/dev", "type": "tmpfs", "source": "tmpfs",
         "options": ["nosuid", "strictatime", "mode=755", "size=65536k"]},
        {"destination": "/dev/pts", "type": "devpts", "source": "devpts",
         "options": ["nosuid", "noexec", "newinstance", "ptmxmode=0666", "mode=0620", "gid=5"]},
        {"destination": "/sys", "type": "sysfs", "source": "sysfs", "options": ["nosuid", "noexec", "nodev", *ro]},
        {"destination": "/sys/fs/cgroup", "type": "cgroup", "source": "cgroup",
         "options": ["nosuid", "noexec", "nodev", "relatime", *ro]},
        {"destination": "/dev/mqueue", "type": "mqueue", "source": "mqueue", "options": ["nosuid", "noexec", "nodev"]},
    ]
    if not ipc_none:
        mounts.append({"destination": "/dev/shm", "type": "tmpfs", "source": "shm",
                       "options": ["nosuid", "noexec", "nodev", "mode=1777", f"size={shm_size or DEFAULT_SHM_SIZE}"]})
    return mounts


def merge_mounts(defaults: list[dict[str, Any]], user: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Defaults, minus those a user mount replaces (same destination; a user ``/dev`` replaces
    every default below ``/dev``), then the user mounts, parents before children."""
    taken = {m["destination"] for m in user}
    out = []
    for m in defaults:
        dest = m["destination"]
        if dest in taken:
            continue
        if "/dev" in taken and dest.startswith("/dev/"):
            continue
        out.append(m)
    users = sorted(user, key=lambda m: len([p for p in m["destination"].split("/") if p]))
    return out + users


# --------------------------------------------------------------------------- resources
def _int_field(hc: dict[str, Any], key: str) -> int:
    value = hc.get(key) or 0
    if not isinstance(value, int) or isinstance(value, bool):
        raise InvalidArgument(f"invalid {key}: expected an integer")
    return value


def check_resources(hc: dict[str, Any], ncpu: int | None = None) -> list[str]:
    """Validate the resource options of a HostConfig as docker does; returns warnings."""
    warnings: list[str] = []
    device_cgroup_rules(hc.get("DeviceCgroupRules"))   # validates
    memory = _int_field(hc, "Memory")
    if 0 < memory < 6 * 1024 * 1024:
        raise InvalidArgument("Minimum memory limit allowed is 6MB")
    swap = _int_field(hc, "MemorySwap")
    if memory > 0 and swap > 0 and swap < memory:
        raise InvalidArgument("Minimum memoryswap limit should be larger than memory limit, see usage")
    if swap > 0 and memory == 0:
        raise InvalidArgument("You should always set the Memory limit when using Memoryswap limit, see usage")
    reservation = _int_field(hc, "MemoryReservation")
    if memory > 0 and reservation > memory:
        raise InvalidArgument("Minimum memory limit can not be less than memory reservation limit, see usage")
    swappiness = hc.get("MemorySwappiness")
    if swappiness is not None and swappiness != -1 and not 0 <= swappiness <= 100:
        raise InvalidArgument(f"Invalid value: {swappiness}, valid memory swappiness range is 0-100")
    nano = _int_field(hc, "NanoCpus")
    if nano and (_int_field(hc, "CpuQuota") or _int_field(hc, "CpuPeriod")):
        raise InvalidArgument("Conflicting options: Nano CPUs and CPU Period cannot both be set"
                              if _int_field(hc, "CpuPeriod") else
                              "Conflicting options: Nano CPUs and CPU Quota cannot both be set")
    ncpu = ncpu or os.cpu_count() or 1
    if nano < 0 or nano > ncpu * 1_000_000_000:
        raise InvalidArgument(f"Range of CPUs is from 0.01 to {ncpu}.00, as there are only {ncpu} CPUs available")
    period = _int_field(hc, "CpuPeriod")
    if period and not 1000 <= period <= 1_000_000:
        raise InvalidArgument("CPU cfs period can not be less than 1ms (i.e. 1000) or larger than 1s (i.e. 1000000)")
    quota = _int_field(hc, "CpuQuota")
    if quota and quota > 0 and quota < 1000:
        raise InvalidArgument("CPU cfs quota can not be less than 1ms (i.e. 1000)")
    pids = hc.get("PidsLimit")
    if pids is not None and not isinstance(pids, int):
        raise InvalidArgument("invalid PidsLimit: expected an integer")
    oom = hc.get("OomScoreAdj") or 0
    if not isinstance(oom, int) or not -1000 <= oom <= 1000:
        raise InvalidArgument(f"Invalid value {oom}, range for oom score adj is [-1000, 1000]")
    blkio = _int_field(hc, "BlkioWeight")
    if blkio and not 10 <= blkio <= 1000:
        raise InvalidArgument("Range of blkio weight is from 10 to 1000")
    shm = hc.get("ShmSize") or 0
    if not isinstance(shm, int) or shm < 0:
        raise InvalidArgument("SHM size can not be less than 0")
    rlimits(hc.get("Ulimits"))  # validates
    return warnings


def _set_fields(hc: dict[str, Any], *pairs: tuple[str, str]) -> dict[str, Any]:
    """``{field: hc[key]}`` for each ``(key, field)`` whose HostConfig value is set (not zero or
    empty: docker's "unset")."""
    return {field: hc[key] for key, field in pairs if hc.get(key)}


def resources(hc: dict[str, Any], *, privileged: bool = False,
              device_rules: list[dict[str, Any]] | None = None) -> dict[str, Any]:
    """``linux.resources`` from a HostConfig: memory, cpu, pids, blkio, device cgroup rules."""
    res: dict[str, Any] = {}
    if privileged:
        res["devices"] = [{"allow": True, "access": "rwm"}]
    else:
        res["devices"] = [dict(r) for r in DEFAULT_DEVICE_RULES] + list(device_rules or [])
    memory = _set_fields(hc, ("Memory", "limit"), ("MemoryReservation", "reservation"), ("MemorySwap", "swap"))
    if hc.get("MemorySwappiness") not in (None, -1):
        memory["swappiness"] = hc["MemorySwappiness"]
    if hc.get("OomKillDisable"):
        memory["disableOOMKiller"] = True
    if memory:
        res["memory"] = memory
    cpu = _set_fields(hc, ("CpuShares", "shares"))
    if hc.get("NanoCpus"):
        cpu["period"] = CPU_PERIOD
        cpu["quota"] = hc["NanoCpus"] * CPU_PERIOD // 1_000_000_000
    else:
        cpu.update(_set_fields(hc, ("CpuPeriod", "period"), ("CpuQuota", "quota")))
    cpu.update(_set_fields(hc, ("CpuRealtimePeriod", "realtimePeriod"), ("CpuRealtimeRuntime", "realtimeRuntime"),
                           ("CpusetCpus", "cpus"), ("CpusetMems", "mems")))
    if cpu:
        res["cpu"] = cpu
    pids = hc.get("PidsLimit")
    if pids and pids > 0:
        res["pids"] = {"limit": pids}
    if hc.get("BlkioWeight"):
        res["blockIO"] = {"weight": hc["BlkioWeight"]}
    return res


def rlimits(ulimits: Any) -> list[dict[str, Any]]:
    """``--ulimit`` entries (``{"Name": "nofile", "Soft": 1024, "Hard": 2048}``) as OCI
    rlimits.  Without any, the container inherits the limits of its shim (as docker's inherit
    containerd's)."""
    out: dict[str, dict[str, Any]] = {}
    for u in ulimits or []:
        if not isinstance(u, dict) or not isinstance(u.get("Name"), str):
            raise InvalidArgument("invalid ulimit: expected {Name, Soft, Hard}")
        name = u["Name"].lower()
        if name not in RLIMITS:
            raise InvalidArgument(f"invalid ulimit type: {u['Name']}")
        soft, hard = u.get("Soft", 0), u.get("Hard", 0)
        if not isinstance(soft, int) or not isinstance(hard, int):
            raise InvalidArgument(f"invalid ulimit argument: {u['Name']}")
        if soft > hard:
            raise InvalidArgument(f"ulimit soft limit must be less than or equal to hard limit: {soft} > {hard}")
        out[name] = {"type": f"RLIMIT_{name.upper()}", "hard": hard if hard >= 0 else 2**64 - 1,
                     "soft": soft if soft >= 0 else 2**64 - 1}
    return list(out.values())


_NAMESPACED_SYSCTLS = ("kernel.msgmax", "kernel.msgmnb", "kernel.msgmni", "kernel.sem", "kernel.shmall",
                       "kernel.shmmax", "kernel.shmmni", "kernel.shm_rmid_forced")


def check_sysctls(sysctls: Any, *, host_network: bool, host_ipc: bool, host_uts: bool) -> dict[str, str]:
    """Only namespaced sysctls, and only for namespaces the container has of its own."""
    if not sysctls:
        return {}
    if not isinstance(sysctls, dict):
        raise InvalidArgument("Sysctls must be an object of strings")
    out = {}
    for key, value in sysctls.items():
        if not isinstance(value, str):
            raise InvalidArgument(f"sysctl '{key}': the value must be a string")
        if key in _NAMESPACED_SYSCTLS or key.startswith("fs.mqueue."):
            if host_ipc:
                raise InvalidArgument(f"sysctl '{key}' not allowed with host ipc namespace")
        elif key.startswith("net."):
            if host_network:
                raise InvalidArgument(f"sysctl '{key}' not allowed with host net namespace")
        elif key in ("kernel.domainname", "kernel.hostname"):
            if host_uts:
                raise InvalidArgument(f"sysctl '{key}' not allowed with host uts namespace")
            raise InvalidArgument(f"sysctl '{key}' is not allowed as it conflicts with the hostname/domainname options")
        else:
            raise InvalidArgument(f"sysctl '{key}' is not whitelisted")
        out[key] = value
    return out


_DEVICE_CGROUP_RULE = re.compile(r"^([acb]) ([0-9]+|\*):([0-9]+|\*) ([rwm]{1,3})$")


def device_cgroup_rules(values: Any) -> list[dict[str, Any]]:
    """``HostConfig.DeviceCgroupRules`` (``--device-cgroup-rule 'c 1:3 mr'``) as OCI device
    cgroup rules, each an *allow* (``*``: any major or minor; type ``a``: every device)."""
    if values is None:
        return []
    if not isinstance(values, list) or not all(isinstance(v, str) for v in values):
        raise InvalidArgument("invalid DeviceCgroupRules: expected a list of strings")
    out: list[dict[str, Any]] = []
    for value in values:
        m = _DEVICE_CGROUP_RULE.match(value)
        if m is None:
            raise InvalidArgument(f"invalid device cgroup rule format: '{value}'")
        kind, major, minor, access = m.groups()
        rule: dict[str, Any] = {"allow": True, "type": kind, "access": access}
        if major != "*":
            rule["major"] = int(major)
        if minor != "*":
            rule["minor"] = int(minor)
        out.append(rule)
    return out


def device(path_on_host: str, path_in_container: str = "", permissions: str = "rwm") -> tuple[dict[str, Any], dict[str, Any]]:
    """A host device for ``linux.devices`` and the cgroup rule that allows it (``--device``)."""
    try:
        st = os.stat(path_on_host)
    except OSError:
        raise InvalidArgument(f"error gathering device information while adding custom device "
                              f'"{path_on_host}": no such file or directory') from None
    if stat.S_ISCHR(st.st_mode):
        kind = "c"
    elif stat.S_ISBLK(st.st_mode):
        kind = "b"
    else:
        raise InvalidArgument(f'error gathering device information while adding custom device "{path_on_host}": '
                              "not a device node")
    if not permissions or any(c not in "rwm" for c in permissions):
        raise InvalidArgument(f"invalid device cgroup permissions {permissions!r}")
    major, minor = os.major(st.st_rdev), os.minor(st.st_rdev)
    dev = {"path": path_in_container or path_on_host, "type": kind, "major": major, "minor": minor,
           "fileMode": stat.S_IMODE(st.st_mode), "uid": 0, "gid": 0}
    rule = {"allow": True, "type": kind, "major": major, "minor": minor, "access": permissions}
    return dev, rule


def host_devices() -> list[dict[str, Any]]:
    """Every device node under the host's /dev (``--privileged``), but those of a pts or shm."""
    out: list[dict[str, Any]] = []
    for dirpath, dirnames, filenames in os.walk("/dev"):
        dirnames[:] = [d for d in dirnames if os.path.join(dirpath, d) not in ("/dev/pts", "/dev/shm", "/dev/mqueue")]
        for name in filenames:
            path = os.path.join(dirpath, name)
            if path in ("/dev/console", "/dev/ptmx", "/dev/tty"):
                continue
            try:
                st = os.lstat(path)
            except OSError:
                continue
            if stat.S_ISCHR(st.st_mode) or stat.S_ISBLK(st.st_mode):
                out.append({"path": path, "type": "c" if stat.S_ISCHR(st.st_mode) else "b",
                            "major": os.major(st.st_rdev), "minor": os.minor(st.st_rdev),
                            "fileMode": stat.S_IMODE(st.st_mode), "uid": st.st_uid, "gid": st.st_gid})
    return out


def cgroup_v2() -> bool:
    return Path("/sys/fs/cgroup/cgroup.controllers").exists()


# --------------------------------------------------------------------------- the spec
@attrs.frozen
class Namespaces:
    """How the container's namespaces are made: ``"new"``, ``"host"`` or a path to join."""

    pid: str = "new"
    ipc: str = "new"
    uts: str = "new"
    network: str = "new"
    cgroup: str = "new"


def namespaces_for(hc: dict[str, Any], joined: dict[str, str] | None = None) -> Namespaces:
    """The namespaces of a HostConfig (``NetworkMode``, ``PidMode``, ``IpcMode``, ``UTSMode``,
    ``CgroupnsMode``).  ``joined`` maps ``"network"``/``"pid"``/``"ipc"`` to the namespace path
    of a ``container:<name>`` mode, which the caller resolved."""
    joined = joined or {}

    def mode(key: str, kind: str) -> str:
        value = hc.get(key) or ""
        if value == "host":
            return "host"
        if value.startswith("container:"):
            if kind not in joined:
                raise InvalidArgument(f"{key} {value}: the container is not running")
            return joined[kind]
        return "new"

    cgroupns = hc.get("CgroupnsMode") or ("private" if cgroup_v2() else "host")
    if cgroupns not in ("private", "host"):
        raise InvalidArgument(f"invalid cgroup namespace mode: {cgroupns}")
    return Namespaces(pid=mode("PidMode", "pid"), ipc=mode("IpcMode", "ipc"), uts=mode("UTSMode", "uts"),
                      network=mode("NetworkMode", "network"), cgroup="new" if cgroupns == "private" else "host")


def build_spec(*, config: dict[str, Any], host_config: dict[str, Any], rootfs: Path, user: ExecUser,
               hostname: str, mounts: list[dict[str, Any]], namespaces: Namespaces, cgroups_path: str,
               etc_files: dict[str, str] | None = None, terminal_size: tuple[int, int] | None = None,
               init: str | None = None) -> dict[str, Any]:
    """The whole ``config.json`` of a container.

    ``config``/``host_config`` are the container's (merged) docker objects; ``user`` the
    resolved user; ``mounts`` the OCI mounts of its volumes, binds and tmpfs; ``etc_files``
    maps ``/etc/hostname``, ``/etc/hosts``, ``/etc/resolv.conf`` to the files the caller wrote
    for it; ``cgroups_path`` where its cgroup goes; with ``HostConfig.Init`` the init binary
    ``init`` (default :func:`init_binary`) is bind-mounted read-only at :data:`INIT_PATH` and
    runs the process as ``docker-init -- ARGS``, as docker's ``--init`` does.
    """
    hc = host_config
    privileged = bool(hc.get("Privileged"))
    security = parse_security_opts(hc.get("SecurityOpt"))
    caps = capabilities(hc.get("CapAdd"), hc.get("CapDrop"), privileged)
    base = set(all_capabilities())
    caps = [c for c in caps if c in base]  # a default the engine lacks cannot be given
    tty = bool(config.get("Tty"))
    readonly = bool(hc.get("ReadonlyRootfs"))
    args = process_args(config)
    init_mounts: list[dict[str, Any]] = []
    if hc.get("Init"):
        init_mounts = [init_mount(init_binary(init))]
        args = [INIT_PATH, "--", *args]
    process: dict[str, Any] = {
        "terminal": tty,
        "user": {"uid": user.uid, "gid": user.gid,
                 **({"additionalGids": list(user.additional_gids)} if user.additional_gids else {})},
        "args": args,
        "env": process_env(config.get("Env") or [], hostname, tty, user.home),
        "cwd": config.get("WorkingDir") or "/",
        "capabilities": {"bounding": list(caps), "effective": list(caps), "permitted": list(caps)},
        "rlimits": rlimits(hc.get("Ulimits")),
        "noNewPrivileges": security.no_new_privileges,
    }
    if terminal_size and tty:
        process["consoleSize"] = {"height": terminal_size[0], "width": terminal_size[1]}
    if hc.get("OomScoreAdj"):
        process["oomScoreAdj"] = hc["OomScoreAdj"]
    ipc_none = (hc.get("IpcMode") or "") == "none"
    ro_opt = ["ro"] if readonly else []
    etc = [{"destination": dest, "type": "bind", "source": src, "options": ["rbind", "rprivate", *ro_opt]}
           for dest, src in sorted((etc_files or {}).items())]
    user_dests = {m["destination"] for m in mounts}
    etc = [m for m in etc if m["destination"] not in user_dests]
    init_mounts = [m for m in init_mounts if m["destination"] not in user_dests]
    all_mounts = merge_mounts(default_mounts(privileged=privileged, shm_size=hc.get("ShmSize") or 0,
                                             ipc_none=ipc_none or namespaces.ipc not in ("new",)),
                              etc + init_mounts + mounts)
    ns_list: list[dict[str, Any]] = [{"type": "mount"}]
    for kind, value in (("pid", namespaces.pid), ("ipc", namespaces.ipc), ("uts", namespaces.uts),
                        ("network", namespaces.network), ("cgroup", namespaces.cgroup)):
        if value == "host":
            continue
        ns_list.append({"type": kind} if value == "new" else {"type": kind, "path": value})
    devices: list[dict[str, Any]] = []
    rules: list[dict[str, Any]] = []
    for d in hc.get("Devices") or []:
        if not isinstance(d, dict) or not d.get("PathOnHost"):
            raise InvalidArgument("invalid device mapping: PathOnHost is required")
        dev, rule = device(d["PathOnHost"], d.get("PathInContainer") or "", d.get("CgroupPermissions") or "rwm")
        devices.append(dev)
        rules.append(rule)
    rules += device_cgroup_rules(hc.get("DeviceCgroupRules"))
    linux: dict[str, Any] = {
        "resources": resources(hc, privileged=privileged, device_rules=rules),
        "cgroupsPath": cgroups_path,
        "namespaces": ns_list,
    }
    sysctls = check_sysctls(hc.get("Sysctls"), host_network=namespaces.network == "host",
                            host_ipc=namespaces.ipc == "host", host_uts=namespaces.uts == "host")
    if sysctls:
        linux["sysctl"] = sysctls
    if privileged:
        devices = host_devices() + devices
    else:
        linux["maskedPaths"] = list(hc.get("MaskedPaths") if hc.get("MaskedPaths") is not None else MASKED_PATHS)
        linux["readonlyPaths"] = list(hc.get("ReadonlyPaths") if hc.get("ReadonlyPaths") is not None
                                      else READONLY_PATHS)
        if security.seccomp != "unconfined":
            linux["seccomp"] = seccomp(caps, security.seccomp_profile)
    if devices:
        linux["devices"] = devices
    spec: dict[str, Any] = {
        "ociVersion": OCI_VERSION,
        "process": process,
        "root": {"path": str(rootfs), "readonly": readonly},
        "mounts": all_mounts,
        "linux": linux,
    }
    if namespaces.uts != "host":
        spec["hostname"] = hostname
        if config.get("Domainname"):
            spec["domainname"] = config["Domainname"]
    return spec


def exec_process(*, container_spec: dict[str, Any], config: dict[str, Any], hostname: str, cmd: list[str],
                 env: Iterable[str], user: ExecUser, working_dir: str, tty: bool, privileged: bool,
                 terminal_size: tuple[int, int] | None = None) -> dict[str, Any]:
    """The OCI ``process`` of ``docker exec``: the container's process with the exec's command,
    tty, user and working directory; its environment is docker's defaults for the exec's tty,
    the container's ``Env`` over them, then the exec's ``Env``."""
    if not cmd or not cmd[0]:
        raise InvalidArgument("No exec command specified")
    base = container_spec.get("process", {})
    proc = {k: v for k, v in base.items() if k not in ("consoleSize", "args", "env", "user", "terminal", "cwd")}
    proc["terminal"] = tty
    proc["args"] = list(cmd)
    proc["env"] = process_env(replace_or_append_env(list(config.get("Env") or []), env), hostname, tty, user.home)
    proc["user"] = {"uid": user.uid, "gid": user.gid,
                    **({"additionalGids": list(user.additional_gids)} if user.additional_gids else {})}
    proc["cwd"] = working_dir or base.get("cwd") or "/"
    if privileged:
        caps = list(all_capabilities())
        proc["capabilities"] = {"bounding": caps, "effective": caps, "permitted": caps}
    if terminal_size and tty:
        proc["consoleSize"] = {"height": terminal_size[0], "width": terminal_size[1]}
    return proc


__all__ = [
    "DEFAULT_CAPABILITIES", "DEFAULT_PATH", "ExecUser", "MASKED_PATHS", "Namespaces", "READONLY_PATHS",
    "SecurityOptions", "all_capabilities", "build_spec", "capabilities", "check_resources", "check_sysctls",
    "default_mounts", "default_seccomp_profile", "exec_process", "init_binary", "init_mount", "merge_config",
    "merge_mounts", "namespaces_for", "normalize_capabilities", "parse_group", "parse_passwd", "parse_security_opts", "parse_signal",
    "process_args", "process_env", "read_user_db", "replace_or_append_env", "resolve_user", "resources",
    "rlimits", "seccomp",
]
