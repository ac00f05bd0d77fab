"""A container's privileges: capabilities (docker's default set of 14, ``--cap-add`` /
``--cap-drop`` with or without the ``CAP_`` prefix and ``ALL``; ``--privileged`` gets every
capability the kernel knows), its seccomp filter (the project's default profile,
``core/data/seccomp.json``, its rules chosen for this architecture, kernel and capability set;
``seccomp=unconfined`` and ``--privileged`` run without; a custom profile in docker's JSON
format is accepted) and ``--security-opt``."""
from __future__ import annotations

import functools
import json
import os
import platform
import re
from pathlib import Path
from typing import Any, Iterable

import attrs

from core.errors import InvalidArgument

# docker's default capability set
DEFAULT_CAPABILITIES: tuple[str, ...] = (
    "CAP_CHOWN", "CAP_DAC_OVERRIDE", "CAP_FSETID", "CAP_FOWNER", "CAP_MKNOD", "CAP_NET_RAW", "CAP_SETGID",
    "CAP_SETUID", "CAP_SETFCAP", "CAP_SETPCAP", "CAP_NET_BIND_SERVICE", "CAP_SYS_CHROOT", "CAP_KILL",
    "CAP_AUDIT_WRITE",
)

# every capability, by number (linux/capability.h)
KNOWN_CAPABILITIES: tuple[str, ...] = (
    "CAP_CHOWN", "CAP_DAC_OVERRIDE", "CAP_DAC_READ_SEARCH", "CAP_FOWNER", "CAP_FSETID", "CAP_KILL",
    "CAP_SETGID", "CAP_SETUID", "CAP_SETPCAP", "CAP_LINUX_IMMUTABLE", "CAP_NET_BIND_SERVICE",
    "CAP_NET_BROADCAST", "CAP_NET_ADMIN", "CAP_NET_RAW", "CAP_IPC_LOCK", "CAP_IPC_OWNER", "CAP_SYS_MODULE",
    "CAP_SYS_RAWIO", "CAP_SYS_CHROOT", "CAP_SYS_PTRACE", "CAP_SYS_PACCT", "CAP_SYS_ADMIN", "CAP_SYS_BOOT",
    "CAP_SYS_NICE", "CAP_SYS_RESOURCE", "CAP_SYS_TIME", "CAP_SYS_TTY_CONFIG", "CAP_MKNOD", "CAP_LEASE",
    "CAP_AUDIT_WRITE", "CAP_AUDIT_CONTROL", "CAP_SETFCAP", "CAP_MAC_OVERRIDE", "CAP_MAC_ADMIN", "CAP_SYSLOG",
    "CAP_WAKE_ALARM", "CAP_BLOCK_SUSPEND", "CAP_AUDIT_READ", "CAP_PERFMON", "CAP_BPF",
    "CAP_CHECKPOINT_RESTORE",
)

GO_ARCH = {"x86_64": "amd64", "aarch64": "arm64", "armv7l": "arm", "i686": "386", "ppc64le": "ppc64le",
           "s390x": "s390x", "riscv64": "riscv64", "mips64": "mips64", "loongarch64": "loong64"}


# --------------------------------------------------------------------------- capabilities
@functools.lru_cache(maxsize=1)
def all_capabilities() -> tuple[str, ...]:
    """Every capability a container can be given here: those this kernel knows (up to
    ``/proc/sys/kernel/cap_last_cap``) that the engine itself holds in its bounding set — an
    engine running inside a restricted container cannot hand out what it lacks (``capset``
    would fail with EPERM)."""
    try:
        last = int(Path("/proc/sys/kernel/cap_last_cap").read_text().strip())
    except (OSError, ValueError):
        last = len(KNOWN_CAPABILITIES) - 1
    known = KNOWN_CAPABILITIES[: last + 1]
    try:
        status = Path("/proc/self/status").read_text()
        bounding = int(status.split("CapBnd:", 1)[1].split()[0], 16)
    except (OSError, ValueError, IndexError):
        return known
    return tuple(c for i, c in enumerate(known) if bounding >> i & 1)


def normalize_capabilities(caps: Iterable[str] | None) -> list[str]:
    """Upper-case, ``CAP_``-prefixed, checked, sorted and unique; ``ALL`` stays ``ALL``."""
    out: set[str] = set()
    for cap in caps or []:
        if not isinstance(cap, str):
            raise InvalidArgument(f"unknown capability: {cap!r}")
        c = cap.strip().upper()
        if c != "ALL" and not c.startswith("CAP_"):
            c = "CAP_" + c
        if c != "ALL" and c not in KNOWN_CAPABILITIES:
            raise InvalidArgument(f'unknown capability: "{c}"')
        out.add(c)
    return sorted(out)


def capabilities(cap_add: Iterable[str] | None = None, cap_drop: Iterable[str] | None = None,
                 privileged: bool = False, base: Iterable[str] = DEFAULT_CAPABILITIES) -> list[str]:
    """docker's TweakCapabilities: privileged gets all; ``--cap-add ALL`` all but the drops;
    ``--cap-drop ALL`` only the adds; else the base minus the drops plus the adds."""
    known = all_capabilities()
    if privileged:
        return list(known)
    adds = normalize_capabilities(cap_add)
    drops = normalize_capabilities(cap_drop)
    if not adds and not drops:
        return list(base)
    missing = [c for c in adds if c != "ALL" and c not in known]
    if missing:
        raise InvalidArgument(f"cannot add capability {missing[0]}: this engine does not hold it itself")
    if "ALL" in adds:
        caps = [c for c in known if c not in drops]
    elif "ALL" in drops:
        caps = [c for c in adds if c != "ALL"]
    else:
        caps = [c for c in base if c not in drops] + [c for c in adds if c not in base]
    out: list[str] = []
    for c in caps:
        if c not in out:
            out.append(c)
    return out


# --------------------------------------------------------------------------- seccomp
DATA = Path(__file__).resolve().parents[2] / "data"   # core/data


@functools.lru_cache(maxsize=1)
def default_seccomp_profile() -> dict[str, Any]:
    return json.loads((DATA / "seccomp.json").read_text())


def host_arch() -> str:
    m = platform.machine()
    return GO_ARCH.get(m, m)


def kernel_version() -> tuple[int, int]:
    m = re.match(r"(\d+)\.(\d+)", os.uname().release)
    return (int(m.group(1)), int(m.group(2))) if m else (0, 0)


_OPS = {"eq": "SCMP_CMP_EQ", "ne": "SCMP_CMP_NE", "lt": "SCMP_CMP_LT", "le": "SCMP_CMP_LE", "gt": "SCMP_CMP_GT",
        "ge": "SCMP_CMP_GE", "masked_eq": "SCMP_CMP_MASKED_EQ"}


def _from_docker_profile(profile: dict[str, Any]) -> dict[str, Any]:
    """A profile in docker's JSON format, turned into the project's schema."""
    if not isinstance(profile.get("syscalls", []), list):
        raise InvalidArgument("invalid seccomp profile: syscalls must be a list")
    arches: dict[str, list[str]] = {}
    seccomp_arch = {"amd64": "SCMP_ARCH_X86_64", "arm64": "SCMP_ARCH_AARCH64", "s390x": "SCMP_ARCH_S390X",
                    "riscv64": "SCMP_ARCH_RISCV64", "ppc64le": "SCMP_ARCH_PPC64LE", "386": "SCMP_ARCH_X86",
                    "arm": "SCMP_ARCH_ARM", "mips64": "SCMP_ARCH_MIPS64", "loong64": "SCMP_ARCH_LOONGARCH64"}
    native = seccomp_arch.get(host_arch(), "")
    for entry in profile.get("archMap") or []:
        if isinstance(entry, dict) and entry.get("architecture") == native:
            arches[host_arch()] = [native] + list(entry.get("subArchitectures") or [])
    if not arches and profile.get("architectures"):
        arches[host_arch()] = list(profile["architectures"])
    rules = []
    for call in profile.get("syscalls") or []:
        if not isinstance(call, dict):
            raise InvalidArgument("invalid seccomp profile: a syscall rule is not an object")
        names = call.get("names") or ([call["name"]] if call.get("name") else [])
        inc, exc = call.get("includes") or {}, call.get("excludes") or {}
        rule: dict[str, Any] = {}
        action = call.get("action", "")
        if action == "SCMP_ACT_ALLOW":
            rule["allow"] = names
        else:
            rule["deny"], rule["action"] = names, action
            if call.get("errnoRet") is not None:
                rule["errno"] = call["errnoRet"]
        for src, key in ((inc, "arches"), (inc, "caps"), (inc, "minKernel")):
            if src.get(key):
                rule[key] = src[key]
        if exc.get("arches"):
            rule["unlessArches"] = exc["arches"]
        if exc.get("caps"):
            rule["unlessCaps"] = exc["caps"]
        if call.get("args"):
            rule["args"] = [{"index": a.get("index", 0), "op": str(a.get("op", "")).replace("SCMP_CMP_", "").lower(),
                             "value": a.get("value", 0), **({"valueTwo": a["valueTwo"]} if a.get("valueTwo") else {})}
                            for a in call["args"]]
        rules.append(rule)
    return {"defaultAction": profile.get("defaultAction", "SCMP_ACT_ERRNO"),
            "defaultErrnoRet": profile.get("defaultErrnoRet"), "architectures": arches, "rules": rules}


def seccomp(caps: Iterable[str], profile: dict[str, Any] | None = None, *, arch: str | None = None,
            kernel: tuple[int, int] | None = None) -> dict[str, Any]:
    """The OCI ``linux.seccomp`` object for a container holding ``caps``.

    ``profile`` is the project's default (``None``), one in the project's schema, or one in
    docker's format (``syscalls``/``archMap``).  Rules whose conditions do not hold here (the
    architecture, the kernel version, the capabilities) are left out, as docker does.
    """
    if profile is None:
        profile = default_seccomp_profile()
    elif "rules" not in profile:
        profile = _from_docker_profile(profile)
    arch = arch or host_arch()
    kernel = kernel or kernel_version()
    held = set(caps)
    syscalls = []
    for rule in profile.get("rules", []):
        if rule.get("arches") and arch not in rule["arches"]:
            continue
        if rule.get("unlessArches") and arch in rule["unlessArches"]:
            continue
        if rule.get("caps") and not all(c in held for c in rule["caps"]):
            continue
        if rule.get("unlessCaps") and any(c in held for c in rule["unlessCaps"]):
            continue
        if rule.get("minKernel"):
            m = re.match(r"(\d+)\.(\d+)", str(rule["minKernel"]))
            if m and kernel < (int(m.group(1)), int(m.group(2))):
                continue
        names = rule.get("allow") if "allow" in rule else rule.get("deny")
        if not names:
            continue
        entry: dict[str, Any] = {"names": list(names)}
        if "allow" in rule:
            entry["action"] = "SCMP_ACT_ALLOW"
        else:
            entry["action"] = rule.get("action") or "SCMP_ACT_ERRNO"
            if rule.get("errno") is not None:
                entry["errnoRet"] = rule["errno"]
        if rule.get("args"):
            entry["args"] = []
            for a in rule["args"]:
                op = _OPS.get(a.get("op", ""))
                if op is None:
                    raise InvalidArgument(f"invalid seccomp profile: unknown comparison {a.get('op')!r}")
                arg = {"index": a["index"], "value": a["value"], "op": op}
                if a.get("valueTwo"):
                    arg["valueTwo"] = a["valueTwo"]
                entry["args"].append(arg)
        syscalls.append(entry)
    out: dict[str, Any] = {"defaultAction": profile.get("defaultAction", "SCMP_ACT_ERRNO"),
                           "architectures": list(profile.get("architectures", {}).get(arch, [])),
                           "syscalls": syscalls}
    if profile.get("defaultErrnoRet") is not None:
        out["defaultErrnoRet"] = profile["defaultErrnoRet"]
    return out


# --------------------------------------------------------------------------- security options
@attrs.frozen
class SecurityOptions:
    no_new_privileges: bool = False
    seccomp: str = "default"          # "default" | "unconfined" | "custom"
    seccomp_profile: dict[str, Any] | None = None
    apparmor: str = ""
    label: tuple[str, ...] = ()


def parse_security_opts(opts: Iterable[str] | None) -> SecurityOptions:
    """``--security-opt`` values: ``no-new-privileges[:true|false]``, ``seccomp=unconfined``
    or a profile's JSON (the CLI sends the file's content), ``apparmor=...`` and ``label=...``
    (accepted and kept, this engine applies no LSM profile)."""
    nnp, mode, profile, apparmor, label = False, "default", None, "", []
    for i, opt in enumerate(opts or []):
        if not isinstance(opt, str):
            raise InvalidArgument(f"invalid --security-opt: {opt!r}")
        if opt in ("no-new-privileges", "no-new-privileges:true", "no-new-privileges=true"):
            nnp = True
            continue
        if opt in ("no-new-privileges:false", "no-new-privileges=false"):
            nnp = False
            continue
        key, sep, value = opt.partition("=")
        if not sep:
            key, sep, value = opt.partition(":")
        if not sep:
            raise InvalidArgument(f'invalid --security-opt 1: "{opt}"')
        if key == "seccomp":
            if value == "unconfined":
                mode, profile = "unconfined", None
            elif value == "builtin":
                mode, profile = "default", None
            else:
                try:
                    profile = json.loads(value)
                except ValueError as exc:
                    raise InvalidArgument(f"decoding seccomp profile failed: {exc}") from None
                if not isinstance(profile, dict):
                    raise InvalidArgument("decoding seccomp profile failed: not a JSON object")
                mode = "custom"
        elif key == "apparmor":
            apparmor = value
        elif key == "label":
            label.append(value)
        elif key == "systempaths" and value == "unconfined":
            label.append("systempaths=unconfined")
        else:
            raise InvalidArgument(f'invalid --security-opt 2: "{opt}"')
    return SecurityOptions(nnp, mode, profile, apparmor, tuple(label))
